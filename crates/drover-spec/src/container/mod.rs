//! Services from images: a root filesystem shipped as the generation's
//! ordinary managed files, an OCI runtime bundle's `config.json` beside it,
//! and a supervisor unit that runs it with `runc` (docs/containers.md,
//! "Services from images").
//!
//! Where an image comes from is an [`ImageSource`]: anything that yields the
//! flattened image, a list of files plus the image's config ([`FlatImage`]).
//! A directory in the project (`image = { dir = "images/web" }`, [`dir`]) is
//! the one source today; registry references and `docker save`/OCI-layout
//! archives (drover-oci) plug in as further sources in
//! [`load::source_for`], and everything after it (paths, blobs, bundle,
//! units, restarts, rollback, GC) stays as it is.

mod arches;
pub mod bundle;
mod dir;
pub mod engine;
pub mod hosts;
mod load;
pub mod prepared;
pub mod registries;
pub mod rootfs;
mod seccomp;
pub mod units;
mod user;
mod volume;

use std::collections::BTreeMap;
use std::path::Path;

use drover_proto::Hash;

use crate::diag::SpecError;
use crate::project::BlobSource;

pub use arches::{Containers, NoArch, ANY_ARCH};
pub use engine::Runtime;
pub(crate) use load::load;
pub use load::DEFAULT_PATH;
pub use volume::{valid_name, Volume, VolumeKind};

/// Where every container's bundle lives on a host: `<CONTAINERS>/<name>/`
/// holds `config.json`, and the service's `rootfs/` (shared by its instances).
pub const CONTAINERS: &str = "/var/lib/drover/containers";
/// Where named volumes live on a host: `<VOLUMES>/<service>/<volume>`,
/// outside every generation.
pub const VOLUMES: &str = "/var/lib/drover/volumes";

/// `image = …` as written in a service file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    /// `image = "registry.example/app:1.4"`.
    Registry(String),
    /// `image = { dir = "images/web" }` or `image = { file = "images/app.tar" }`.
    Table(ImageTable),
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTable {
    pub dir: Option<String>,
    pub file: Option<String>,
}

/// An argv as written: `["httpd", "-f"]`, or a string split like shell
/// words (`"httpd -f -p 8080"`), never run through a shell.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Argv {
    Line(String),
    List(Vec<String>),
}

/// What one file of a flattened image is.
#[derive(Debug, Clone)]
pub enum ImageFileKind {
    Dir,
    File { hash: Hash, size: u64, bytes: BlobSource },
    Symlink(String),
}

/// One file of a flattened image, at its path inside the image
/// (`/bin/busybox`), with the owner and mode it has there.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: ImageFileKind,
}

/// What an image's config says about how to run it (OCI image config's
/// `Entrypoint`, `Cmd`, `Env`, `User`, `WorkingDir`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `user[:group]`, names or numbers (resolved in the image's
    /// /etc/passwd and /etc/group).
    pub user: Option<String>,
    pub workdir: Option<String>,
}

/// A flattened image: every file of its root filesystem, sorted by path,
/// and its config.
#[derive(Debug, Clone, Default)]
pub struct FlatImage {
    pub files: Vec<ImageFile>,
    pub config: ImageConfig,
}

/// What an image source yields: one flattened image per architecture
/// (as hosts report it: `x86_64`, `aarch64`; [`ANY_ARCH`] for an image
/// that has none, a `dir`), and the architectures the image was asked for
/// but lacks, each with what it has instead (for the message a host of
/// that architecture gets).
#[derive(Debug, Clone, Default)]
pub struct Flattened {
    pub by_arch: BTreeMap<String, FlatImage>,
    pub missing: BTreeMap<String, String>,
}

/// Something that yields a flattened image. Called once per project load;
/// errors name the service file (`file`, `text`, `span` of its `image`).
pub trait ImageSource {
    /// What to call the image in messages (`images/web`, `registry/app:1.4`).
    fn describe(&self) -> String;
    fn flatten(&self, project: &Path, limits: &crate::Limits) -> Result<Flattened, SpecError>;
}

/// How a container's process runs, after the service file's keys replaced
/// the image config's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
}

/// An image service for hosts of one architecture, resolved at load (see
/// [`Containers`] for the service's set).
#[derive(Debug, Clone)]
pub struct Container {
    /// What `image` names (for messages).
    pub image: String,
    pub files: std::sync::Arc<Vec<ImageFile>>,
    pub process: Process,
    pub volumes: Vec<Volume>,
    /// Bytes; `None`: no limit.
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    /// Seconds between SIGTERM and SIGKILL when the container is stopped.
    pub stop_grace_secs: u64,
    /// runc (the default), or the host's docker or podman engine.
    pub runtime: Runtime,
}

/// The runc container id of a service or instance.
pub fn container_id(name: &str) -> String {
    format!("drover-{name}")
}

/// The bundle directory of a service or instance on a host.
pub fn bundle_dir(name: &str) -> String {
    format!("{CONTAINERS}/{name}")
}

/// The shared root filesystem of a service (all its instances).
pub fn rootfs_dir(service: &str) -> String {
    format!("{CONTAINERS}/{service}/rootfs")
}
