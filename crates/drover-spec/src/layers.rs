//! Layer trees: `layers/<layer>/<absolute target path>`.
//!
//! Files are copied as they are (mode kept); symlinks are kept as symlinks
//! (never followed: a link to a directory is a link, not a copy of the
//! directory); `*.j2` files are templates, rendered per host, installed
//! without the suffix; `*.age` files are age-encrypted (docs/secrets.md),
//! installed decrypted without the suffix. Plain files are hashed once per load, however many
//! hosts use them. An empty directory is a managed directory (mode kept).
//! `.gitkeep` files (empty-directory markers for git) are skipped, so a
//! directory holding only one is an empty directory.
//!
//! Refused, naming the file: names that are not UTF-8 (manifest paths are
//! text), and devices, sockets and fifos (there is nothing to copy; reading a
//! fifo would hang).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use drover_proto::{check_link_target, check_path, Hash};

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
    Plain {
        hash: Hash,
        size: u64,
    },
    Template,
    /// An age-encrypted file (`*.age`), installed decrypted without the
    /// suffix; decrypted only when a host needs it.
    Encrypted,
    Symlink(String),
    Dir,
}

pub fn scan(project: &Path, layer: &str, limits: &crate::Limits) -> Result<Vec<LayerFile>, SpecError> {
    let root = project.join("layers").join(layer);
    if !root.is_dir() {
        return Err(SpecError::file(
            &root,
            "layer directory not found",
            format!("create layers/{layer}/ or remove the layer from the role"),
        ));
    }
    let mut out = Vec::new();
    walk(&root, &root, layer, limits, &mut out)?;
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    layer: &str,
    limits: &crate::Limits,
    out: &mut Vec<LayerFile>,
) -> Result<(), SpecError> {
    let io = |p: &Path, e: std::io::Error| SpecError::file(p, format!("cannot read: {e}"), "check permissions");
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?.collect::<Result<_, _>>().map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    let mut contents = 0;
    for e in entries {
        let path = e.path();
        let Some(rel_in_layer) = path.strip_prefix(root).unwrap_or(&path).to_str().map(str::to_owned) else {
            return Err(SpecError::file(
                &path,
                "the name is not valid UTF-8",
                "rename the file: target paths are text (convert the name to UTF-8)",
            ));
        };
        let md = std::fs::symlink_metadata(&path).map_err(|err| io(&path, err))?;
        if md.is_dir() {
            walk(root, &path, layer, limits, out)?;
            contents += 1;
            continue;
        }
        if e.file_name() == ".gitkeep" {
            continue;
        }
        contents += 1;
        let rel = format!("layers/{layer}/{rel_in_layer}");
        let ft = md.file_type();
        let (target, kind) = if ft.is_symlink() {
            let t = std::fs::read_link(&path).map_err(|err| io(&path, err))?;
            let Some(t) = t.to_str() else {
                return Err(SpecError::file(
                    &path,
                    "the symlink's target is not valid UTF-8",
                    "point the link at a UTF-8 path",
                ));
            };
            (format!("/{rel_in_layer}"), LayerKind::Symlink(t.to_owned()))
        } else if !ft.is_file() {
            return Err(SpecError::file(
                &path,
                "a device, socket or fifo cannot be deployed",
                "remove it from the layer (drover deploys files, symlinks and directories)",
            ));
        } else if let Some(stripped) = rel_in_layer.strip_suffix(".j2") {
            (format!("/{stripped}"), LayerKind::Template)
        } else if let Some(stripped) = rel_in_layer.strip_suffix(".age") {
            (format!("/{stripped}"), LayerKind::Encrypted)
        } else {
            check_size(&path, &md, limits)?;
            // Streamed: a large file is hashed without holding it in memory.
            let mut hasher = blake3::Hasher::new();
            let f = std::fs::File::open(&path).map_err(|err| io(&path, err))?;
            let size = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut hasher)
                .map_err(|err| io(&path, err))?;
            (format!("/{rel_in_layer}"), LayerKind::Plain { hash: Hash(*hasher.finalize().as_bytes()), size })
        };
        check_path(&target).map_err(|m| SpecError::file(&path, m, "rename the file"))?;
        if let LayerKind::Symlink(t) = &kind {
            check_link_target(&target, t).map_err(|m| SpecError::file(&path, m, "fix the link's target"))?;
        }
        out.push(LayerFile { target, source: path, rel, kind, mode: md.permissions().mode() & 0o7777 });
    }
    if contents == 0 && dir != root {
        let rel_in_layer = dir.strip_prefix(root).unwrap_or(dir).to_string_lossy().into_owned();
        let md = std::fs::metadata(dir).map_err(|err| io(dir, err))?;
        out.push(LayerFile {
            target: format!("/{rel_in_layer}"),
            source: dir.to_path_buf(),
            rel: format!("layers/{layer}/{rel_in_layer}"),
            kind: LayerKind::Dir,
            mode: md.permissions().mode() & 0o7777,
        });
    }
    Ok(())
}

/// A layer file over `[limits] file-size`, or sparse, is refused: drover
/// ships files whole and the host stores them whole, so a 2 GiB sparse file
/// of 4 KiB on disk would cost every host 2 GiB (twice: blob and target).
/// Refused rather than preserved as sparse: the agent's blob store and
/// generations would have to keep holes through compression, transfer,
/// verification and atomic swap; a file like that is better made on the
/// host by the service that needs it.
fn check_size(path: &Path, md: &std::fs::Metadata, limits: &crate::Limits) -> Result<(), SpecError> {
    use std::os::unix::fs::MetadataExt;
    let (size, on_disk) = (md.len(), md.blocks() * 512);
    if size > limits.file_size {
        return Err(SpecError::file(
            path,
            format!(
                "{} is larger than the {} a layer file may be",
                crate::limits::human(size),
                crate::limits::human(limits.file_size)
            ),
            "ship it another way (a package, or fetched by the service), or raise `[limits] file-size` in drover.toml",
        ));
    }
    if size >= 1 << 20 && on_disk < size / 2 {
        return Err(SpecError::file(
            path,
            format!(
                "is a sparse file ({} long, {} on disk): every host would store it whole",
                crate::limits::human(size),
                crate::limits::human(on_disk)
            ),
            "drover ships files whole: create the file on the host instead (e.g. `truncate -s` in the service's start command), or make it dense if its size is meant",
        ));
    }
    Ok(())
}
