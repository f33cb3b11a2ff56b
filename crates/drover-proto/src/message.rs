//! Requests (controller → agent) and responses (agent → controller).
//!
//! One session is: `Hello`, then either `Check` (the cheap no-op probe: only
//! the manifest hash travels), or `Diff` → pipelined `Chunk`s (and `Delta`s,
//! then one `Missing` to learn which deltas did not verify) → `Apply`.
//! Chunks get no individual reply, so a transfer costs no round trip per
//! file; the agent reports problems once, at `Apply`.
//!
//! New variants are only ever appended: postcard encodes the variant index.

use serde::{Deserialize, Serialize};

pub use crate::host::{Facts, HostState, HostStatus, LogLine, Unconfirmable};
use crate::{Hash, Manifest, ServiceFailure};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Hello {
        protocol: u32,
        controller: String,
        /// The controller's longest silence (its op timeout). Once a session
        /// holds the host lock, the agent ends it after this long without a
        /// word, so a controller lost to a cut link cannot keep the host
        /// locked. 0: no limit.
        idle_ms: u64,
        /// A session that only looks (`drover plan`): the agent takes no
        /// lock, runs no recovery, creates nothing, and refuses every request
        /// that could change the host. `plan` must be safe on a host in any
        /// state, including one with a generation awaiting confirmation,
        /// which recovery could revert.
        read_only: bool,
    },
    /// Is the host on a generation with this manifest hash, undrifted?
    Check {
        manifest: Hash,
    },
    /// Compare this desired manifest with the host; it becomes the candidate
    /// for `Apply` in this session. `generation` is the number it will get.
    Diff {
        manifest: Manifest,
        generation: u64,
    },
    /// Part of a blob the agent said it was missing.
    Chunk(BlobChunk),
    /// Activate the candidate. With `confirm_timeout_ms > 0` the agent reverts
    /// by itself unless `Confirm` arrives (over a new connection) in time.
    Apply {
        confirm_timeout_ms: u64,
        /// Stop services that will restart *before* swapping files in, so the
        /// old process never runs against new files (rollout `order =
        /// "stop-first"`); otherwise files are swapped first and services
        /// restarted after ("start-first").
        stop_first: bool,
    },
    Confirm {
        generation: u64,
    },
    /// Re-activate a kept generation (the previous one when `to` is `None`).
    Rollback {
        to: Option<u64>,
        confirm_timeout_ms: u64,
    },
    Bye,
    /// Generation, drift, services and their health, drained or not.
    Status,
    /// Lines of a service's log (runit/svlogd: `/var/log/drover/<name>/current`).
    /// With `follow`, new lines keep coming as `LogLines` until the
    /// controller closes the session.
    Logs {
        service: String,
        lines: u32,
        since_ms: Option<u64>,
        follow: bool,
    },
    /// Run a command through `/bin/sh -c` as root on the host.
    Exec {
        command: String,
        timeout_ms: u64,
    },
    /// Stop every managed service and mark the host drained (applies and
    /// rollouts skip it); `Undrain` starts them again and clears the mark.
    Drain {
        reason: String,
    },
    Undrain,
    /// The manifest of the current generation (for per-file generation
    /// stability in templates; see `drover-spec`).
    CurrentManifest,
    /// Peer relay: serve these blobs (the ones the host holds) on TCP
    /// `bind:port` (the host's own address, never all of them), to peers
    /// that prove they know `secret` (a challenge per connection: the secret
    /// itself never crosses the relay network), at most `max_conns` at once,
    /// until idle for `idle_ms`. Reply `RelayServing`. See `drover-agent`'s
    /// `relay` module.
    RelayServe {
        bind: String,
        port: u16,
        secret: String,
        blobs: Vec<Hash>,
        idle_ms: u64,
        max_conns: u32,
    },
    /// Peer relay: fetch blobs (hash, size) from the relay server at `peer`
    /// (`address:port`) into the blob store, each verified against its hash.
    /// Reply `RelayFetched`, with `Progress` on the way.
    RelayFetch {
        peer: String,
        secret: String,
        blobs: Vec<(Hash, u64)>,
    },
    /// `Diff` for a manifest taken from a signed bundle: `statement` is the
    /// host's own entry from the bundle (a `drover_bundle::HostStatement`,
    /// never the whole index: a host learns nothing about other hosts), and
    /// `signature` the bundle signer's minisign signature of those bytes. The
    /// agent checks it with its `/etc/drover/bundle.pub` when it has one, and
    /// diffs the manifest from the statement. Reply as to `Diff`.
    BundleDiff {
        statement: Vec<u8>,
        signature: String,
        generation: u64,
    },
    /// Keepalive for a session that holds the lock but has nothing to say
    /// for a while (a relay waiting for a peer). Answered with `Pong`.
    Ping,
    /// What is at these paths on the host now, with the content of regular
    /// files no larger than `max_bytes` (`plan --diff` shows the host's real
    /// content, so drift shows). Reads only. Reply `Paths`.
    ReadPaths {
        paths: Vec<String>,
        max_bytes: u64,
    },
    /// Reboot the host (after `Apply`, in the same session: the generation
    /// it activated is then confirmed after the boot). The agent installs
    /// its boot-time hook, gives a pending generation `boot_timeout_ms +
    /// confirm_timeout_ms` to get through the reboot and, at boot, a fresh
    /// `confirm_timeout_ms`; replies `Rebooting` and reboots.
    Reboot {
        confirm_timeout_ms: u64,
        boot_timeout_ms: u64,
        /// The agent's sha256 (hex), which the boot-time hook checks before
        /// running it as root, as the controller's bootstrap does.
        agent_sha256: String,
    },
    /// Part of a blob sent as a binary delta against a blob the host said it
    /// holds (`Response::Diff::bases`). Pipelined like `Chunk`, no reply:
    /// once the last part is in, the agent rebuilds the blob from its base,
    /// and stores it only if its blake3 is the wanted hash.
    Delta(BlobDelta),
    /// Of these blobs (sent as deltas), which does the host still lack?
    /// Reply `Missing`: the controller sends those whole.
    Missing {
        blobs: Vec<Hash>,
    },
    /// End the session, keep the agent: it lets go of the lock, answers `Detached`, awaits a `Hello`.
    Detach,
}

/// One part of a binary delta: a zstd frame compressed with the base blob
/// as its reference prefix (what `zstd --patch-from` makes), cut into parts
/// of at most [`crate::CHUNK_SIZE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobDelta {
    /// The blob it rebuilds.
    pub hash: Hash,
    /// The blob it is a delta against, held by the host.
    pub base: Hash,
    /// Offset of `data` in the delta; parts arrive in order, and a part at
    /// offset 0 starts the delta afresh.
    pub offset: u64,
    /// Length of the whole delta: the blob is rebuilt when it is all in.
    pub total: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobChunk {
    pub hash: Hash,
    /// Offset in the uncompressed blob; chunks arrive in order.
    pub offset: u64,
    /// zstd-compressed bytes.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello {
        protocol: u32,
        agent_version: String,
        facts: Facts,
        state: HostState,
    },
    Check {
        up_to_date: bool,
        drift: Vec<String>,
    },
    Diff {
        changes: Vec<Change>,
        restarts: Vec<ServiceRestart>,
        /// Blobs to send, with how many bytes of each the host already holds
        /// from an interrupted transfer (resume from there).
        missing: Vec<(Hash, u64)>,
        /// What the host lacks of the generation's packages, users and
        /// groups, one line each (`package sl 5.02-1+b1 not installed`):
        /// work for `Apply` that no path change shows.
        setup: Vec<String>,
        /// For missing blobs of [`crate::DELTA_MIN_SIZE`] to
        /// [`crate::DELTA_MAX_SIZE`] bytes with nothing received yet: a blob
        /// the host holds for the same path (its live generation's content)
        /// or package (the version it has), as (missing, base). The
        /// controller may send a `Delta` against it instead of the blob.
        bases: Vec<(Hash, Hash)>,
    },
    /// Human-readable progress from a long operation.
    Progress(String),
    Applied(ApplyOutcome),
    Confirmed {
        generation: u64,
    },
    /// `Confirm` of a generation that is no longer live, and why: the
    /// controller reports what happened to it, not a guess.
    NotConfirmed {
        generation: u64,
        /// The generation the host is on now.
        current: Option<u64>,
        why: Unconfirmable,
    },
    Error {
        message: String,
    },
    Bye,
    Status(HostStatus),
    /// Complete lines, oldest first; `at_ms` is when each was logged.
    LogLines(Vec<LogLine>),
    /// End of a non-follow log read.
    LogEnd,
    ExecResult {
        code: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        timed_out: bool,
    },
    /// Drain or undrain done; the services it acted on.
    Drained {
        drained: bool,
        services: Vec<String>,
    },
    CurrentManifest(Option<Manifest>),
    /// The blobs of a `RelayServe` that this host holds and now serves.
    RelayServing {
        holding: Vec<Hash>,
    },
    RelayFetched {
        blobs: u64,
        bytes: u64,
    },
    Pong,
    /// Another session holds the host lock; worth retrying later (unlike
    /// `Error`).
    Busy {
        message: String,
    },
    /// The answer to `ReadPaths`, in the order asked.
    Paths(Vec<PathInfo>),
    /// The host reboots now; `boots`: boots its hook has counted so far
    /// (after the reboot, `HostState::boots` is higher).
    Rebooting {
        boots: u64,
    },
    /// A request failed because the host's storage refused a write (or the
    /// free-space check before a transition found too little): which
    /// filesystem, its free space, what was needed, where the host is.
    StorageFailed(crate::StorageFailure),
    /// The answer to `Request::Missing`: the blobs still lacking, with the
    /// bytes of each already held (as `Diff::missing`), and why each failed
    /// delta did (its base gone, a part lost, a rebuilt blob whose hash was
    /// wrong).
    Missing {
        missing: Vec<(Hash, u64)>,
        failed: Vec<(Hash, String)>,
    },
    Detached, // the answer to `Detach` (docs/ssh.md "Persistent connections")
}

/// One path on the host as it is now (see `Request::ReadPaths`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    pub path: String,
    pub now: PathNow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathNow {
    Absent,
    File {
        size: u64,
        hash: Hash,
        mode: u32,
        uid: u32,
        gid: u32,
        /// Owner and group names from the host's account files, when known.
        owner: Option<String>,
        group: Option<String>,
        /// The whole content, when no larger than the asked `max_bytes`.
        content: Option<Vec<u8>>,
    },
    Symlink {
        target: String,
    },
    /// A directory, device, socket…
    Other {
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Add,
    Modify,
    Remove,
    /// Managed by drover, but edited on the host since; will be restored.
    Restore,
}

impl ChangeKind {
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Add => '+',
            ChangeKind::Modify => '~',
            ChangeKind::Remove => '-',
            ChangeKind::Restore => '!',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRestart {
    pub name: String,
    pub action: ServiceAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceAction {
    Start,
    Restart,
    Stop,
    /// The supervisor's reload (a change matched only `reload-on`).
    Reload,
}

impl ServiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Start => "start",
            ServiceAction::Restart => "restart",
            ServiceAction::Stop => "stop",
            ServiceAction::Reload => "reload",
        }
    }
}

/// How long the agent spent driving the supervisor and probing health during
/// an activation. Only the agent sees these: to the controller they are one
/// `Apply` round trip, and a slow restart must be told apart from a slow
/// fsync (`--json`'s per-host `phases`, `docs/operations.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTimes {
    /// Starting, restarting and reloading services after the swap.
    pub restart_us: u64,
    /// Health probes of the services that were (re)started.
    pub health_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The candidate is live and healthy.
    Activated { generation: u64, restarted: Vec<String>, files_written: u64, times: ServiceTimes },
    /// Nothing to do: the host already runs this manifest.
    UpToDate { generation: u64 },
    /// The candidate failed (health check, supervisor) and the host is back
    /// on `to`, whole.
    /// `revert_errors`: services the revert could not put back (stop or
    /// start failed); the files are back, these may not be running.
    /// `failure`: the service that failed, as data (its supervisor state,
    /// exit code, last log lines); `reason` is its one-line form.
    RolledBack {
        failed: u64,
        to: Option<u64>,
        reason: String,
        revert_errors: Vec<String>,
        times: ServiceTimes,
        /// Boxed: rare, and large next to the other outcomes.
        failure: Option<Box<ServiceFailure>>,
    },
}
