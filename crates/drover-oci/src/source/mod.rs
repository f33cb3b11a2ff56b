//! Where images come from: a registry ([`registry`]) or a file in the
//! project ([`file`]). Both leave every blob in the [`crate::Cache`] and
//! give an [`crate::Image`].

pub mod file;
pub mod registry;

use std::path::PathBuf;

/// A service's `image`: a registry reference or a file in the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `registry.example/app:1.4`, `app@sha256:…` (Docker Hub when no
    /// registry host is given).
    Registry(String),
    /// A `docker save` tarball, an OCI image layout directory, or a tar of
    /// one.
    File(PathBuf),
}
