//! The project-level entry points: pull an image into the project's cache
//! through `images.lock`, flatten it and count what it shares; re-resolve
//! pins. Synchronous (they run their own small tokio runtime): call them
//! from a plain thread, never from inside a tokio runtime.

use std::path::Path;

use crate::cache::Cache;
use crate::error::OciError;
use crate::flatten::{flatten_cached, Tree};
use crate::lock::ImageLock;
use crate::manifest::Image;
use crate::source::registry::{Puller, RegistryOptions};
use crate::source::{file::load_file, Source};

/// What [`pull`] did with `images.lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// A file in the project: nothing to pin (the file is the pin).
    File,
    /// The reference was pinned for this architecture: pulled as pinned.
    Kept,
    /// First use on this architecture: resolved and pinned now.
    New,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    pub tree: Tree,
    pub pin: Pin,
    /// Distinct file contents of this image that another flattened image
    /// in the cache also has.
    pub shared_files: usize,
}

fn runtime() -> Result<tokio::runtime::Runtime, OciError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| OciError::Io { path: "tokio runtime".into(), error: e })
}

/// Pull `source` for `arch` into `<project>/.drover/images/` and flatten
/// it. A registry reference goes through `images.lock`: pulled at its pin
/// if it has one for `arch` (from the cache alone when all its blobs are
/// there), else resolved now and pinned. A file is relative to `project`.
/// An image flattened before is not flattened again (see
/// [`crate::flatten::flatten_cached`]).
pub fn pull(project: &Path, source: &Source, arch: &str, options: &RegistryOptions) -> Result<Pulled, OciError> {
    let arch = crate::oci_arch(arch)?;
    let cache = Cache::for_project(project);
    let (image, pin) = match source {
        Source::File(p) => (load_file(&cache, &project.join(p), arch)?, Pin::File),
        Source::Registry(r) => {
            let mut lock = ImageLock::read(project)?;
            let pinned = lock.pinned(r, arch).map(str::to_string);
            let puller = Puller::new(cache.clone(), options.clone());
            let image = runtime()?.block_on(puller.pull(r, arch, pinned.as_deref()))?;
            if pinned.is_some() {
                (image, Pin::Kept)
            } else {
                lock.pin(r, arch, &image.manifest_digest);
                lock.write(project)?;
                (image, Pin::New)
            }
        }
    };
    let tree = flatten_cached(&cache, &image)?;
    let hashes = tree.file_hashes();
    cache.record_tree(&image.manifest_digest, &hashes)?;
    let shared_files = cache.shared_files(&image.manifest_digest, &hashes)?;
    Ok(Pulled { image, tree, pin, shared_files })
}

/// One pin [`update`] looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub reference: String,
    pub arch: String,
    pub old: Option<String>,
    pub new: String,
}

/// Resolve `references` again (none: every reference in the lock) for
/// the architectures each is pinned for (the controller's if none) and
/// rewrite `images.lock`. Nothing is written unless every one resolved.
/// Nothing is pulled: the next pull fetches what changed.
pub fn update(project: &Path, references: &[String], options: &RegistryOptions) -> Result<Vec<Update>, OciError> {
    let mut lock = ImageLock::read(project)?;
    let refs: Vec<String> = if references.is_empty() {
        lock.images.iter().map(|i| i.reference.clone()).collect()
    } else {
        references.to_vec()
    };
    let puller = Puller::new(Cache::for_project(project), options.clone());
    let rt = runtime()?;
    let mut out = Vec::new();
    for r in &refs {
        let mut arches = lock.arches(r);
        if arches.is_empty() {
            arches.push(crate::host_arch().to_string());
        }
        for arch in arches {
            let new = rt.block_on(puller.resolve(r, &arch))?;
            out.push(Update { reference: r.clone(), old: lock.pinned(r, &arch).map(str::to_string), arch, new });
        }
    }
    for u in &out {
        lock.pin(&u.reference, &u.arch, &u.new);
    }
    lock.write(project)?;
    Ok(out)
}
