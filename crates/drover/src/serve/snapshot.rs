//! The fleet as the dashboard shows it: every host's last probe, its last
//! recorded run, and the state the grid colours it by. Built once per check
//! pass and shared read-only (`Arc`), so pages and `/metrics` never touch
//! the hosts or wait for the state store.

use std::collections::BTreeMap;

use drover_proto::HostStatus;
use drover_spec::Host;
use drover_state::{HostResult, Rollout};
use serde::Serialize;

use crate::run::status::{Currency, Verdict};

/// The grid's colours, worst first: a host shows the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unreachable,
    Failed,
    /// Whether it is on the project's desired state could not be told
    /// (the project does not compile for it, say).
    Unknown,
    Unhealthy,
    Drifted,
    /// Not on the project's desired state: an apply would make a new
    /// generation (a missed release, a rollback, never applied).
    Behind,
    Drained,
    Converged,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Unreachable,
        State::Failed,
        State::Unknown,
        State::Unhealthy,
        State::Drifted,
        State::Behind,
        State::Drained,
        State::Converged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Unreachable => "unreachable",
            State::Failed => "failed",
            State::Unknown => "unknown",
            State::Unhealthy => "unhealthy",
            State::Drifted => "drifted",
            State::Behind => "behind",
            State::Drained => "drained",
            State::Converged => "converged",
        }
    }

    /// `drover status`'s verdict ([`Verdict::of`]: the same probe, the same
    /// rules), and `failed` when the host's last recorded run failed.
    /// Drained wins over what a drained host looks like (its services are
    /// stopped on purpose).
    pub fn of(probe: &Result<HostStatus, String>, currency: Option<&Currency>, last: Option<&HostResult>) -> State {
        let s = match probe {
            Err(_) => return State::Unreachable,
            Ok(s) => s,
        };
        let unknown = Currency::Unknown("not checked".into());
        let verdict = Verdict::of(s, currency.unwrap_or(&unknown));
        if verdict != Verdict::Drained && last.is_some_and(|l| is_failure(l.outcome)) {
            return State::Failed;
        }
        match verdict {
            Verdict::Unreachable => State::Unreachable,
            Verdict::Unknown => State::Unknown,
            Verdict::Unhealthy => State::Unhealthy,
            Verdict::Drifted => State::Drifted,
            Verdict::Behind => State::Behind,
            Verdict::Drained => State::Drained,
            Verdict::Converged => State::Converged,
        }
    }
}

/// Whether the last run colours the host `failed`: it failed or rolled
/// back. Not `unreachable`: whether the host answers is the probe's to say
/// now (the grid's `unreachable`), not an old run's.
fn is_failure(outcome: drover_state::Outcome) -> bool {
    use drover_state::Outcome as O;
    match outcome {
        O::Failed | O::RolledBack => true,
        // Activated: a run still going (or abandoned) between activation and
        // its end; not a failure of the host (it reverts by itself unless
        // confirmed, and the probe then says where it is).
        O::Unreachable | O::Unchanged | O::Planned | O::Changed | O::Activated | O::Rebooted | O::Skipped => false,
    }
}

#[derive(Debug, Clone)]
pub struct HostView {
    pub host: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub state: State,
    pub probe: Result<HostStatus, String>,
    /// Whether it runs the project's desired state (`None`: not reached).
    pub currency: Option<Currency>,
    /// The last recorded result (without its `detail` report: not shown,
    /// and the largest part of a row).
    pub last: Option<HostResult>,
    /// Why healing leaves it behind on purpose (`None`: it is healed).
    pub held: Option<Hold>,
}

/// Why `reconcile = "heal"` leaves a host behind the project on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum Hold {
    /// Its newest successful run was `drover rollback` (run `run`): an
    /// operator took it off a release; healing must not put that release
    /// back. Held until the next apply or rollout reaches it.
    Rollback { run: i64 },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Rollback { run } => write!(f, "held by rollback {run}"),
        }
    }
}

/// `{host, roles, groups, state, status}` (and `state_error` when the state
/// could not be told; `held: {by, run, why}` when healing leaves it behind), `status` being exactly `drover status --json`'s
/// row, built when sent rather than kept: 10,000 JSON trees would be most
/// of the server's memory.
impl Serialize for HostView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let status =
            crate::run::status::row(&self.host, &self.probe, &crate::run::status::last_run(self.last.as_ref()));
        let mut m = s.serialize_struct("HostView", 7)?;
        m.serialize_field("host", &self.host)?;
        m.serialize_field("roles", &self.roles)?;
        m.serialize_field("groups", &self.groups)?;
        m.serialize_field("state", &self.state)?;
        match &self.currency {
            Some(Currency::Unknown(why)) => m.serialize_field("state_error", why)?,
            _ => m.skip_field("state_error")?,
        }
        match &self.held {
            Some(h) => m.serialize_field("held", &HoldView { why: h.to_string(), hold: h })?,
            None => m.skip_field("held")?,
        }
        m.serialize_field("status", &status)?;
        m.end()
    }
}

/// A [`Hold`] as sent: its fields and the sentence the page shows.
#[derive(Serialize)]
struct HoldView<'a> {
    #[serde(flatten)]
    hold: &'a Hold,
    why: String,
}

impl HostView {
    /// What a page shows of it changed (the SSE stream sends only these).
    pub fn differs(&self, o: &HostView) -> bool {
        self.state != o.state
            || self.probe != o.probe
            || self.currency != o.currency
            || self.last != o.last
            || self.held != o.held
    }
}

/// What the server last learned; `at_ms` 0 until the first pass ends.
#[derive(Debug, Default, Serialize)]
pub struct Snapshot {
    pub at_ms: i64,
    /// Check passes so far (the SSE stream names them).
    pub pass: u64,
    pub hosts: Vec<HostView>,
    pub rollout: Option<RolloutView>,
    /// Why the last pass could not read or write the state store, the
    /// project or the hosts (the page shows it; data is from before).
    pub problems: Vec<String>,
    /// Why the project does not load now (a typo in drover.toml…): the
    /// rollout box says so, as nothing can be rolled out until it is fixed.
    pub project_error: Option<String>,
    pub check_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub status: drover_state::RolloutStatus,
    pub next_batch: i64,
    pub batches: Vec<Vec<String>>,
}

impl RolloutView {
    pub fn of(r: &Rollout) -> RolloutView {
        let batches = serde_json::from_str::<crate::run::rollout::Plan>(&r.plan).map(|p| p.batches).unwrap_or_default();
        RolloutView { id: r.id, status: r.status, next_batch: r.next_batch, batches }
    }
}

impl Snapshot {
    pub fn host(&self, name: &str) -> Option<&HostView> {
        self.hosts.iter().find(|h| h.host == name)
    }

    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m: BTreeMap<&'static str, usize> = State::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for h in &self.hosts {
            *m.entry(h.state.as_str()).or_default() += 1;
        }
        m
    }
}

/// One host's view from its probe (status and currency), last recorded
/// result, and hold (kept only while it is behind: a hold is about
/// healing's choice, shown with the state it explains).
pub fn view(
    host: &Host,
    probe: Result<(HostStatus, Currency), String>,
    last: Option<HostResult>,
    held: Option<Hold>,
) -> HostView {
    let (probe, currency) = match probe {
        Ok((s, c)) => (Ok(s), Some(c)),
        Err(e) => (Err(e), None),
    };
    let state = State::of(&probe, currency.as_ref(), last.as_ref());
    let last = last.map(|l| HostResult { detail: String::new(), ..l });
    let held = held.filter(|_| matches!(state, State::Behind | State::Drifted));
    HostView {
        host: host.name.clone(),
        roles: host.roles.clone(),
        groups: host.groups.clone(),
        state,
        probe,
        currency,
        last,
        held,
    }
}
