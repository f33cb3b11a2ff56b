//! The typed, versioned protocol between the controller and the on-host agent,
//! and the manifest both sides agree on.
//!
//! Why a crate of its own: the agent is a small static binary that must not
//! pull in the controller's dependencies (tokio, russh, minijinja), and both
//! sides must encode exactly the same types. This crate is a leaf: serde and
//! postcard only.
//!
//! The wire format is a stream of frames (see [`frame`]); the first exchange is
//! always [`Request::Hello`] / [`Response::Hello`], which carries
//! [`PROTOCOL_VERSION`] so either side can refuse a peer it does not speak.

mod access;
pub mod debversion;
pub mod frame;
pub mod hash;
pub mod host;
pub mod manifest;
pub mod message;
pub mod service;
pub mod setup;
pub mod storage;

pub use frame::{read_frame, write_frame, FrameError, MAGIC, MAX_FRAME};
pub use hash::Hash;
pub use manifest::{
    check_link_target, check_name, check_path, service_log_file, Entry, EntryKind, HealthCheck, HealthProbe, Manifest,
    ServiceSpec, Supervisor, HOLD_DIR,
};
pub use message::{
    ApplyOutcome, BlobChunk, BlobDelta, Change, ChangeKind, Facts, HostState, HostStatus, LogLine, PathInfo, PathNow,
    Request, Response, ServiceAction, ServiceRestart, ServiceTimes, Unconfirmable,
};
pub use service::{
    tail_lines, CommandOutput, Exit, FailureCause, ServiceFailure, ServiceStatus, SupervisorState, LOG_TAIL_BYTES,
    LOG_TAIL_LINES,
};
pub use setup::{check_word, GroupSpec, Need, Package, Setup, UserSpec};
pub use storage::{bytes_text, StorageError, StorageFailure, StorageLeft};

/// Bumped whenever a message changes shape. Peers with different versions
/// refuse each other in the hello exchange rather than misreading frames.
/// 5: directories in manifests, read-only sessions and `ReadPaths` (plan),
/// revert errors, per-host bundle statements, authenticated relay requests.
/// 6: `Reboot`/`Rebooting` and `HostState.boots` (magic rollback across a reboot).
/// 7: packages, users and groups in manifests (`Setup`), `reload-on`
/// triggers and the `Reload` service action.
/// 8: `ServiceTimes` in `ApplyOutcome` (per-phase timing in `--json`).
/// 9: `ServiceStatus.state` a `SupervisorState`; `ServiceFailure` in
/// `ApplyOutcome::RolledBack` (why a health gate or a restart failed).
/// 10: `HostState.pending_deadline_ms` (a controller learns in the hello
/// that the host waits for another generation's confirmation, and until
/// when); `Response::NotConfirmed` with its `Unconfirmable` reason.
/// 11: `Response::StorageFailed` (a write the host's storage refused, or
/// the free-space check before a transition, as data).
/// 12: binary deltas: `Response::Diff.bases`, `Request::Delta`,
/// `Request::Missing` / `Response::Missing`.
/// 13: `ServiceSpec.after` (start order within one apply).
/// 14: `Request::Detach` / `Response::Detached` (an agent kept between
/// sessions by the resident).
pub const PROTOCOL_VERSION: u32 = 14;

/// Most paths in one `Request::ReadPaths`: at 64 KiB of content each, a
/// reply stays far below [`MAX_FRAME`]. Ask in batches.
pub const READ_PATHS_MAX: usize = 256;

/// Size of one blob chunk before compression. Small enough that a cut link
/// loses little, large enough that per-frame overhead is noise.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Smallest blob sent as a binary delta. Below it the whole blob, zstd
/// compressed, costs about what the round trip that checks the deltas costs
/// on a slow link (10 Mbit/s, 50 ms: 62 KB), and the deltas' CPU is wasted
/// (docs/benchmarks.md, "Binary deltas").
pub const DELTA_MIN_SIZE: u64 = 128 << 10;

/// Largest blob (and base) sent as a binary delta. Rebuilding one holds the
/// base and the result in the agent's memory at once (and on the
/// controller, the base, the file and the match finder's tables): 64 MiB
/// keeps the agent's peak near 130 MiB on hosts that may have 512 MiB. A
/// larger file travels whole.
pub const DELTA_MAX_SIZE: u64 = 64 << 20;
