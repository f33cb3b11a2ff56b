//! One error type for the crate: each variant says what failed, on which
//! image, layer or file, and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("architecture {0:?} is not one drover runs images for (x86_64/amd64, aarch64/arm64)")]
    Arch(String),
    #[error("image reference {reference:?}: {detail}")]
    Reference { reference: String, detail: String },
    #[error(
        "{reference}: not found in the registry ({detail}); check the name and tag (`skopeo list-tags docker://…`)"
    )]
    NotFound { reference: String, detail: String },
    #[error("{reference}: {detail}")]
    Registry { reference: String, detail: String },
    #[error("{reference}: the image index has no linux/{arch} manifest (it has: {have}); build or push the image for {arch}, or place the service on hosts of an architecture it has")]
    NoPlatform { reference: String, arch: String, have: String },
    #[error("{image}: blob {digest} is corrupt: its content hashes to {actual}; refusing it (pull again, or rebuild the image)")]
    Digest { image: String, digest: String, actual: String },
    #[error("{image}: layer {digest} does not unpack to its recorded diff_id {expected} (got {actual}); the image is inconsistent, rebuild it")]
    DiffId { image: String, digest: String, expected: String, actual: String },
    #[error("{image}: {detail}")]
    Format { image: String, detail: String },
    #[error("{image}: layer {layer}: {detail}")]
    Layer { image: String, layer: String, detail: String },
    #[error("{}: {detail}", path.display())]
    File { path: PathBuf, detail: String },
    #[error("{}:{line}: {detail}; fix: {fix}", path.display())]
    Lock { path: PathBuf, line: usize, detail: String, fix: String },
    /// `error` is not a `#[source]`: the message already says it, and a
    /// chain printer would say it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OciError {
        let path = path.into();
        move |error| OciError::Io { path, error }
    }
}
