//! OCI and Docker images on the controller (docs/containers.md#images).
//!
//! An image comes from a registry reference (`registry.example/app:1.4`,
//! `name@sha256:…`, pulled with `oci-client`) or from a file in the project
//! (a `docker save` tarball, an OCI image layout directory or tar). Either
//! way it becomes an [`Image`]: the manifest digest for one architecture,
//! the config ([`ImageConfig`]) and the layers, whose blobs sit
//! digest-verified in the project's [`Cache`] (`.drover/images/`).
//! [`flatten`] applies the layers in order into a [`Tree`]: an ordered list
//! of entries whose regular files are blake3-addressed in the same cache,
//! so two images sharing a base share every unchanged file's hash.
//! [`ImageLock`] (`images.lock`) pins each reference to a manifest digest
//! per architecture so a run resolves a tag once.
//!
//! Layering: `source` (registry, files) → `cache`/`manifest`/`config`;
//! `flatten` reads the cache only. Nothing here talks to hosts.

mod auth;
mod cache;
mod config;
mod digest;
mod error;
pub mod flatten;
mod lock;
mod manifest;
pub mod project;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{Auth, Credential};
pub use cache::Cache;
pub use config::{Healthcheck, ImageConfig};
pub use digest::sha256_digest;
pub use error::OciError;
pub use flatten::{flatten, flatten_cached, Entry, EntryKind, Tree};
pub use lock::{ImageLock, LockedImage, IMAGES_LOCK, IMAGES_LOCK_VERSION};
pub use manifest::{Image, Layer};
pub use project::{Pin, Pulled, Update};
pub use source::registry::{Puller, RegistryOptions};
pub use source::{file::load_file, Source};

/// The OCI architecture (`amd64`, `arm64`) of a name drover uses
/// (`uname -m`: `x86_64`, `aarch64`) or of an OCI name itself.
pub fn oci_arch(arch: &str) -> Result<&'static str, OciError> {
    match arch {
        "x86_64" | "amd64" => Ok("amd64"),
        "aarch64" | "arm64" => Ok("arm64"),
        other => Err(OciError::Arch(other.to_string())),
    }
}

/// The controller's own architecture, in OCI's name.
pub fn host_arch() -> &'static str {
    oci_arch(std::env::consts::ARCH).unwrap_or("amd64")
}
