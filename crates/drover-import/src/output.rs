//! Writing the generated inventory without clobbering one by accident.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the generated inventory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0} already exists; pass --force to replace it, or -o FILE / --stdout to write elsewhere")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write `text` to `path` whole or not at all: a temporary file beside it is
/// filled, synced, then linked into place. Without `force` the link (which
/// fails if the name exists) is what refuses to overwrite, so a file that
/// appears meanwhile is not clobbered either; with it, a rename replaces.
pub fn write_inventory(path: &Path, text: &str, force: bool) -> Result<(), WriteError> {
    if !force && path.exists() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let io = |source| WriteError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.import-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let placed =
        written.and_then(|()| if force { std::fs::rename(&tmp, path) } else { std::fs::hard_link(&tmp, path) });
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(WriteError::Exists(path.to_path_buf())),
        other => other.map_err(io),
    }
}
