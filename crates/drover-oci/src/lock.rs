//! `images.lock`: each image reference pinned to its manifest digest per
//! architecture. The first run that meets a reference resolves it and
//! writes the pin; later runs pull by the pinned digest (no tag lookup), so
//! a moved tag changes nothing until `drover image update`. Deterministic
//! TOML (references sorted, architectures sorted), to commit and review
//! like `packages.lock`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;
use crate::error::OciError;

pub const IMAGES_LOCK: &str = "images.lock";
pub const IMAGES_LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLock {
    pub version: u32,
    #[serde(default, rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<LockedImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// As written in the project (`registry.example/app:1.4`).
    pub reference: String,
    /// OCI architecture (`amd64`, `arm64`) → manifest digest.
    pub digests: BTreeMap<String, String>,
}

impl Default for ImageLock {
    fn default() -> Self {
        ImageLock { version: IMAGES_LOCK_VERSION, images: vec![] }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl ImageLock {
    /// The project's lock; empty when there is none yet.
    pub fn read(project: &Path) -> Result<ImageLock, OciError> {
        let path = project.join(IMAGES_LOCK);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ImageLock::default()),
            Err(e) => return Err(OciError::Io { path, error: e }),
        };
        let fix = "correct it by hand, or delete images.lock and run `drover image update` to pin every image again";
        let lock: ImageLock = toml::from_str(&text).map_err(|e| OciError::Lock {
            path: path.clone(),
            line: e.span().map_or(1, |s| line_of(&text, s.start)),
            detail: e.message().to_string(),
            fix: fix.into(),
        })?;
        if lock.version != IMAGES_LOCK_VERSION {
            return Err(OciError::Lock {
                path,
                line: text.find("version").map_or(1, |o| line_of(&text, o)),
                detail: format!("lock format version {} is not {IMAGES_LOCK_VERSION}", lock.version),
                fix: "run `drover image update` to write it again".into(),
            });
        }
        for i in &lock.images {
            for (arch, d) in &i.digests {
                if sha256_hex(d).is_none() || crate::oci_arch(arch).ok() != Some(arch.as_str()) {
                    return Err(OciError::Lock {
                        path,
                        line: text.find(d.as_str()).map_or(1, |o| line_of(&text, o)),
                        detail: format!(
                            "{}: `{arch} = {d:?}` is not an architecture (amd64, arm64) and a sha256 digest",
                            i.reference
                        ),
                        fix: fix.into(),
                    });
                }
            }
        }
        Ok(lock)
    }

    /// Write it (atomically), sorted.
    pub fn write(&self, project: &Path) -> Result<(), OciError> {
        let mut sorted = self.clone();
        sorted.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        let body = toml::to_string(&sorted).expect("a lock serializes");
        let text = format!(
            "# Written by drover (`drover image pull`, `drover image update`): the manifest each image\n# reference is pinned to, per architecture. Commit it.\n{body}"
        );
        let tmp = project.join(format!("{IMAGES_LOCK}.tmp"));
        std::fs::write(&tmp, text).map_err(OciError::io(&tmp))?;
        let path = project.join(IMAGES_LOCK);
        std::fs::rename(&tmp, &path).map_err(OciError::io(path))
    }

    /// The pinned manifest digest of `reference` on `arch` (OCI name).
    pub fn pinned(&self, reference: &str, arch: &str) -> Option<&str> {
        let i = self.images.iter().find(|i| i.reference == reference)?;
        i.digests.get(arch).map(String::as_str)
    }

    /// Pin `reference` on `arch`; whether the lock changed.
    pub fn pin(&mut self, reference: &str, arch: &str, digest: &str) -> bool {
        let i = match self.images.iter_mut().position(|i| i.reference == reference) {
            Some(n) => &mut self.images[n],
            None => {
                self.images.push(LockedImage { reference: reference.into(), digests: BTreeMap::new() });
                self.images.last_mut().expect("just pushed")
            }
        };
        i.digests.insert(arch.into(), digest.into()) != Some(digest.into())
    }

    /// The architectures `reference` is pinned for.
    pub fn arches(&self, reference: &str) -> Vec<String> {
        self.images.iter().filter(|i| i.reference == reference).flat_map(|i| i.digests.keys().cloned()).collect()
    }
}
