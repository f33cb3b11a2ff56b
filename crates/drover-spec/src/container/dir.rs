//! `image = { dir = "images/web" }`: a root filesystem kept as a directory
//! in the project, which is what a flattened image is. Its files belong to
//! root inside the container (a checkout's owners mean nothing on a host),
//! with the modes they have in the project; its config is whatever the
//! service file says (an image directory has no config of its own).

use std::path::{Path, PathBuf};

use drover_proto::Hash;

use super::{FlatImage, Flattened, ImageFile, ImageFileKind, ImageSource, ANY_ARCH};
use crate::diag::SpecError;
use crate::project::BlobSource;

pub struct DirSource {
    /// As written, relative to the project.
    pub rel: String,
}

impl ImageSource for DirSource {
    fn describe(&self) -> String {
        self.rel.clone()
    }

    /// One tree for every architecture: the directory is what it is.
    fn flatten(&self, project: &Path, limits: &crate::Limits) -> Result<Flattened, SpecError> {
        let root = project.join(&self.rel);
        let mut files = Vec::new();
        walk(&root, &root, limits, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let flat = FlatImage { files, config: Default::default() };
        Ok(Flattened { by_arch: [(ANY_ARCH.to_string(), flat)].into(), missing: Default::default() })
    }
}

fn walk(root: &Path, dir: &Path, limits: &crate::Limits, out: &mut Vec<ImageFile>) -> Result<(), SpecError> {
    let io = |p: &Path, e: std::io::Error| SpecError::file(p, format!("cannot read: {e}"), "check permissions");
    let rd = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for e in rd {
        let e = e.map_err(|err| io(dir, err))?;
        let path: PathBuf = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let Some(rel) = rel.to_str() else {
            return Err(SpecError::file(&path, "the name is not valid UTF-8", "rename the file (paths are text)"));
        };
        let md = std::fs::symlink_metadata(&path).map_err(|err| io(&path, err))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
        let kind = if md.is_dir() {
            walk(root, &path, limits, out)?;
            ImageFileKind::Dir
        } else if md.file_type().is_symlink() {
            let t = std::fs::read_link(&path).map_err(|err| io(&path, err))?;
            let Some(t) = t.to_str() else {
                return Err(SpecError::file(&path, "the symlink's target is not UTF-8", "point it at a UTF-8 path"));
            };
            ImageFileKind::Symlink(t.to_string())
        } else if md.is_file() {
            if md.len() > limits.file_size {
                return Err(SpecError::file(
                    &path,
                    format!("{} is larger than [limits] file-size", crate::limits::human(md.len())),
                    "raise [limits] file-size in drover.toml, or leave the file out of the image",
                ));
            }
            let bytes = std::fs::read(&path).map_err(|err| io(&path, err))?;
            let hash = Hash(*blake3::hash(&bytes).as_bytes());
            ImageFileKind::File { hash, size: md.len(), bytes: BlobSource::File(path.clone()) }
        } else {
            return Err(SpecError::file(
                &path,
                "a device, socket or FIFO cannot be shipped",
                "remove it from the image directory (the container gets /dev from runc)",
            ));
        };
        out.push(ImageFile { path: format!("/{rel}"), mode, uid: 0, gid: 0, kind });
    }
    Ok(())
}
