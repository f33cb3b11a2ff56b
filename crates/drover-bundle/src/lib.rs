//! Air-gapped bundles: everything a fleet (or one host) needs to install, in
//! one file, signed with minisign.
//!
//! It must not import the controller, the spec (a bundle holds compiled
//! manifests, not projects) or anything async: the agent links it to open
//! bundles on hosts, and stays small and synchronous.
//!
//! A bundle holds, per selected host, the compiled [`Manifest`] (plus the
//! host's inventory entry, without secrets), every blob those manifests
//! reference (content-addressed by blake3, zstd-compressed in independent
//! 1 MiB chunks, deduplicated across hosts), the static agents (one per
//! machine, [`Index::agent_for`] a host's `uname -m`), and the project
//! revision. The layout is in [`format`]; [`Writer`] streams one out,
//! [`Bundle`] reads one by seeking (never loading blobs in memory).
//!
//! Secret-bearing files are the exception to sharing: their content is
//! stored only encrypted to the one host it is for ([`seal`]).
//!
//! Signing is minisign's prehashed Ed25519, so `minisign -Vm site.drv -p
//! ops.pub` checks a bundle with the standard tool. Verification
//! ([`verify`]) depends only on `minisign-verify` (no dependencies), so the
//! agent can do it; key generation and signing are behind the `sign`
//! feature, which only the controller enables.
//!
//! [`Manifest`]: drover_proto::Manifest

pub mod format;
mod read;
pub mod seal;
#[cfg(feature = "sign")]
pub mod sign;
pub mod statement;
pub mod verify;
mod write;

use std::path::{Path, PathBuf};

pub use format::{AgentRef, BaseRef, BlobEntry, HostEntry, Index, SealedClear, SealedEntry, Settings};
pub use read::{Bundle, PackedChunks};
pub use statement::{HostStatement, Signatures};
pub use verify::PublicKey;
pub use write::{BlobInput, Writer};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}: not a drover bundle (bad magic)")]
    NotABundle(String),
    #[error("{path}: a bundle of an older format ({version}, {what}); build it again with this drover")]
    OldFormat { path: String, version: u8, what: &'static str },
    #[error("{0}: truncated or damaged bundle (no valid trailer at the end); copy it again")]
    Truncated(String),
    #[error("{path}: bad bundle: {what}")]
    Corrupt { path: String, what: String },
    #[error("{0}: no signature; sign the bundle with `drover bundle sign` (or pass --sig)")]
    Unsigned(String),
    #[error("{path}: signature check FAILED: the bundle was altered or truncated after signing ({detail})")]
    BadSignature { path: String, detail: String },
    #[error("{path}: signed by a different key than {pubkey}")]
    WrongKey { path: String, pubkey: String },
    #[error("{path}: {what}")]
    BadKey { path: String, what: String },
    #[error("blob {hash}: content does not match its hash (got {got}); the bundle is damaged")]
    BlobMismatch { hash: String, got: String },
    #[error("{0}")]
    Invalid(String),
    /// Sealing or opening a host's secret content (`seal`).
    #[error("{0}")]
    Secret(String),
}

impl BundleError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BundleError {
        BundleError::Io { path: path.display().to_string(), err: source }
    }
}

pub type Result<T, E = BundleError> = std::result::Result<T, E>;

/// Where the detached signature of `bundle` lives: `<bundle>.minisig`, the
/// name `minisign -Vm <bundle>` looks for.
pub fn sig_path(bundle: &Path) -> PathBuf {
    let mut s = bundle.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}
