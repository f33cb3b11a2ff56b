//! One image service on hosts of several architectures: the controller
//! pulls and flattens the image once per architecture the fleet has
//! (`images.lock` pins one manifest digest per architecture), and each
//! host's compile picks the [`Container`] of the architecture its facts
//! report: its own root filesystem, entrypoint, command, env, user and
//! workdir. Which architecture a host is only matters here; every other
//! part of a service (volumes, limits, runtime) is the same for all.

use std::collections::BTreeMap;

use super::{Container, Runtime};

/// The key of an image without an architecture (`image = { dir = … }`):
/// the same tree for every host.
pub const ANY_ARCH: &str = "";

/// An image service's containers, one per architecture its image has.
#[derive(Debug, Clone)]
pub struct Containers {
    /// What `image` names (for messages).
    pub image: String,
    /// By architecture as hosts report it (`x86_64`, `aarch64`), or
    /// [`ANY_ARCH`] alone. Never empty.
    pub by_arch: BTreeMap<String, Container>,
    /// Architectures the image was asked for but does not have, with what
    /// it has instead (`linux/amd64`), as the registry said.
    pub missing: BTreeMap<String, String>,
}

/// Why a host gets no container of an image service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoArch {
    pub message: String,
    pub help: String,
}

impl Containers {
    /// The container for a host reporting `arch`. An empty `arch` (facts
    /// not known yet: the preflight compile, `drover render` before any
    /// apply) takes the controller's architecture, else the first.
    pub fn for_arch(&self, arch: &str) -> Result<&Container, NoArch> {
        if let Some(k) = self.key_for(arch) {
            return Ok(&self.by_arch[k]);
        }
        let prepared: Vec<&str> = self.by_arch.keys().map(String::as_str).collect();
        Err(match self.missing.get(arch) {
            Some(have) => NoArch {
                message: format!(
                    "image {} has no {arch} image (it has: {have}), and this host is {arch}",
                    self.image
                ),
                help: format!(
                    "build and push the image for {arch} too (an image index), or place the service on hosts of an architecture it has ({})",
                    prepared.join(", ")
                ),
            },
            None => NoArch {
                message: format!(
                    "image {} was not pulled for {arch} (only for {}): no host had reported {arch} when this run began",
                    self.image,
                    prepared.join(", ")
                ),
                help: "run the command again: the host's architecture is cached now, and the image is pulled for it"
                    .into(),
            },
        })
    }

    /// The key in [`Containers::by_arch`] of the container
    /// [`Containers::for_arch`] gives, if any.
    pub fn key_for(&self, arch: &str) -> Option<&str> {
        let key = if self.by_arch.contains_key(ANY_ARCH) {
            ANY_ARCH
        } else if arch.is_empty() {
            match self.by_arch.contains_key(std::env::consts::ARCH) {
                true => std::env::consts::ARCH,
                false => self.by_arch.keys().next()?,
            }
        } else {
            arch
        };
        self.by_arch.get_key_value(key).map(|(k, _)| k.as_str())
    }

    /// Any one of the containers: for what does not depend on the
    /// architecture (the runtime, volumes, unit file paths).
    pub fn any(&self) -> &Container {
        self.by_arch.values().next().expect("a service has at least one container")
    }

    pub fn all(&self) -> impl Iterator<Item = &Container> {
        self.by_arch.values()
    }

    pub fn runtime(&self) -> Runtime {
        self.any().runtime
    }
}
