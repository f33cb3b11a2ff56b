//! Layer trees: `layers/<layer>/<absolute target path>`.
//!
//! Files are copied as they are (mode kept); symlinks are kept as symlinks;
//! `*.j2` files are templates, rendered per host, installed without the
//! suffix. Plain files are hashed once per load, however many hosts use them.
//! `.gitkeep` files (empty-directory markers for git) are skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use drover_proto::{check_path, Hash};

use crate::diag::SpecError;

#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Absolute target path on the host.
    pub target: String,
    pub source: PathBuf,
    /// `layers/<layer>/…` as written in the project, for messages and as the
    /// template name.
    pub rel: String,
    pub kind: LayerKind,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub enum LayerKind {
    Plain { hash: Hash, size: u64 },
    Template,
    Symlink(String),
}

pub fn scan(project: &Path, layer: &str) -> Result<Vec<LayerFile>, SpecError> {
    let root = project.join("layers").join(layer);
    if !root.is_dir() {
        return Err(SpecError::file(
            &root,
            "layer directory not found",
            format!("create layers/{layer}/ or remove the layer from the role"),
        ));
    }
    let mut out = Vec::new();
    walk(&root, &root, layer, &mut out)?;
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, layer: &str, out: &mut Vec<LayerFile>) -> Result<(), SpecError> {
    let io = |p: &Path, e: std::io::Error| SpecError::file(p, format!("cannot read: {e}"), "check permissions");
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?.collect::<Result<_, _>>().map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let md = std::fs::symlink_metadata(&path).map_err(|err| io(&path, err))?;
        if md.is_dir() {
            walk(root, &path, layer, out)?;
            continue;
        }
        if e.file_name() == ".gitkeep" {
            continue;
        }
        let rel_in_layer = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let rel = format!("layers/{layer}/{rel_in_layer}");
        let (target, kind) = if md.file_type().is_symlink() {
            let t = std::fs::read_link(&path).map_err(|err| io(&path, err))?;
            (format!("/{rel_in_layer}"), LayerKind::Symlink(t.to_string_lossy().into_owned()))
        } else if let Some(stripped) = rel_in_layer.strip_suffix(".j2") {
            (format!("/{stripped}"), LayerKind::Template)
        } else {
            let bytes = std::fs::read(&path).map_err(|err| io(&path, err))?;
            (
                format!("/{rel_in_layer}"),
                LayerKind::Plain { hash: Hash(*blake3::hash(&bytes).as_bytes()), size: bytes.len() as u64 },
            )
        };
        check_path(&target).map_err(|m| SpecError::file(&path, m, "rename the file"))?;
        out.push(LayerFile { target, source: path, rel, kind, mode: md.permissions().mode() & 0o7777 });
    }
    Ok(())
}
