//! The states the store records as text: a run's status, a rollout's
//! status, a job's state and a host's outcome. Each is an enum here, parsed
//! once where a row is read and written from its variant, so no caller
//! compares strings and a `match` that forgets a variant does not compile.
//!
//! Each variant's text is written once, in [`text_states!`]: `as_str`, the
//! parser, `Display` and serde all use it, so the stored strings and the
//! JSON output (`--json`, `drover serve`'s API) stay exactly what they were
//! when these were strings.
//!
//! Text this drover does not know (a newer drover wrote it) is not guessed
//! at: reading such a row fails with [`UnknownState`], naming the column
//! and the value, as a newer schema version is refused
//! ([`crate::StateError::TooNew`]). There is no catch-all variant: it would
//! have to be handled (or silently mishandled) at every `match`.

/// A stored state whose text this drover does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} (written by a newer drover?); upgrade drover")]
pub struct UnknownState {
    /// Which state: "run status", "rollout status", "job state", "outcome".
    pub kind: &'static str,
    pub value: String,
}

/// The [`UnknownState`] behind a database error, if that is what it is:
/// both database crates wrap what a column conversion failed with.
pub(crate) fn unknown_in(e: &(dyn std::error::Error + 'static)) -> Option<UnknownState> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(u) = c.downcast_ref::<UnknownState>() {
            return Some(u.clone());
        }
        cur = c.source();
    }
    None
}

/// One enum per stored state, with its text per variant.
macro_rules! text_states {
    ($(
        $(#[$meta:meta])*
        $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    )+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and shown in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<$name, UnknownState> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    other => Err(UnknownState { kind: $kind, value: other.to_string() }),
                }
            }
        }

        /// The stored text; width and alignment apply (`{:<12}` in tables).
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    )+};
}

// Used by the backends to write the `FromSql`/`ToSql` impls of each one.
macro_rules! for_each_state {
    ($m:ident) => {
        $m!(crate::RunStatus);
        $m!(crate::RolloutStatus);
        $m!(crate::JobState);
        $m!(crate::Outcome);
    };
}
pub(crate) use for_each_state;

text_states! {
    /// Where a run is: `running` from `begin_run` until `finish_run`.
    RunStatus ("run status") {
        Running = "running",
        /// Every host succeeded.
        Ok = "ok",
        /// At least one host failed.
        Failed = "failed",
        /// Another drover held some of its hosts; nothing was done.
        Refused = "refused",
        /// Its controller stopped renewing the run's lease (killed, its
        /// machine lost, or hung) before finishing it: marked so by the
        /// next run. Its hosts' rows say how far each got.
        Abandoned = "abandoned",
    }

    /// Where a rollout is. `running` and `paused` are unfinished (a
    /// `resume` continues them); the others are final.
    RolloutStatus ("rollout status") {
        Running = "running",
        /// Stops between batches until resumed or aborted.
        Paused = "paused",
        /// Stopped by the operator; later batches stay untouched.
        Aborted = "aborted",
        /// A batch (or a hook) failed; later batches stay untouched.
        Failed = "failed",
        /// Every batch passed.
        Done = "done",
    }

    /// A host's job in a run split across workers.
    JobState ("job state") {
        /// Waiting for a worker.
        Queued = "queued",
        /// Held by a worker, on a lease.
        Claimed = "claimed",
        /// Its result is recorded.
        Done = "done",
    }

    /// What happened on one host in one run (the controller's report and
    /// the `host_results` row both carry it).
    Outcome ("outcome") {
        /// Already on the desired state; nothing was sent or written.
        Unchanged = "unchanged",
        /// `plan` only: these changes would be made.
        Planned = "planned",
        /// A new generation is live (and confirmed).
        Changed = "changed",
        /// The new generation failed its checks; the host is back on the old one.
        RolledBack = "rolled-back",
        /// Something went wrong; the host is on one whole generation, old or new
        /// as `generation` says.
        Failed = "failed",
        /// Could not be reached at all.
        Unreachable = "unreachable",
        /// `drover reboot`: rebooted and back, healthy.
        Rebooted = "rebooted",
        /// A new generation was activated, not yet confirmed: recorded the
        /// moment the host's agent reported it, and replaced by the host's
        /// final outcome when the run finishes. Left standing, the run died
        /// (or was abandoned) between activation and its end; the host
        /// reverts by itself unless a later run confirms the generation.
        Activated = "activated",
        /// Left alone: `drover reboot` after an earlier batch failed, or any run
        /// that lost its state store (and so its host-lock lease) before this
        /// host's turn.
        Skipped = "skipped",
    }
}

impl RolloutStatus {
    /// Running or paused: `drover rollout resume` continues it, and a new
    /// rollout is refused while it exists.
    pub fn is_unfinished(self) -> bool {
        match self {
            RolloutStatus::Running | RolloutStatus::Paused => true,
            RolloutStatus::Aborted | RolloutStatus::Failed | RolloutStatus::Done => false,
        }
    }
}

impl Outcome {
    /// The host did not end on what was asked of it.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::RolledBack | Outcome::Failed | Outcome::Unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr<Err = UnknownState> + serde::Serialize,
        T: std::fmt::Display,
    {
        for v in all {
            let text = v.to_string();
            assert_eq!(text.parse::<T>(), Ok(*v));
            // serde writes the same text as the database column.
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn each_state_reads_back_what_it_writes_and_serializes_the_same_text() {
        round_trips(RunStatus::ALL);
        round_trips(RolloutStatus::ALL);
        round_trips(JobState::ALL);
        round_trips(Outcome::ALL);
        assert_eq!(Outcome::RolledBack.as_str(), "rolled-back");
        assert_eq!(format!("{:<9}|", Outcome::Changed), "changed  |");
    }

    #[test]
    fn unknown_text_is_an_error_naming_it() {
        let e = "exploded".parse::<Outcome>().unwrap_err();
        assert_eq!(e, UnknownState { kind: "outcome", value: "exploded".into() });
        assert!(e.to_string().contains("unknown outcome \"exploded\""), "{e}");
    }
}
