//! Small filesystem primitives for the agent's own files (its state
//! directory), with the durability the transitions rely on: atomic replace
//! (temp file + rename + fsync of the directory), private directories, and
//! content hashing. Managed paths on the host are [`crate::safefs`]'s.
//!
//! A leaf: it imports nothing of the agent but its error type, the fault
//! points of [`crate::hooks`] and the filesystem names of [`crate::space`].

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use drover_proto::Hash;

use crate::{hooks, space, Context, Result};

/// Write `bytes` to `path` atomically: readers see the old or the new content,
/// never a torn file, even if we are killed. A write that fails leaves no
/// temporary file taking space; one the filesystem refused names it (see
/// [`crate::space`]). If the error comes after the rename, `path` holds the
/// new content (a caller for whom that matters reads it back).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| crate::AgentError::new(format!("{}: no parent", path.display())))?;
    private_dir(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    let failed =
        |e: std::io::Error, p: &Path| space::write_error(e, "write", &p.display().to_string(), || space::of_path(dir));
    let written = hooks::fault("state").and_then(|()| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(failed(e, path));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(failed(e, path));
    }
    sync_dir(dir)
}

/// Make a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    hooks::fault("sync")
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| space::write_error(e, "fsync", &dir.display().to_string(), || space::of_path(dir)))
}

/// Hash a file's content by streaming it.
pub fn hash_file(path: &Path) -> Result<(Hash, u64)> {
    let mut f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    hash_reader(&mut f).ctx(|| format!("read {}", path.display()))
}

/// Hash everything `r` yields, in 256 KiB reads: a file of any size costs
/// one buffer.
pub fn hash_reader(r: &mut dyn Read) -> std::io::Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Hash(*hasher.finalize().as_bytes()), total))
}

/// Remove one of the agent's own files; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::AgentError::new(format!("remove {}: {e}", path.display()))),
    }
}

/// Make everything under `dir` private to the agent's user: directories
/// 0700, files 0600 (0700 where the owner may execute, e.g. the agent
/// itself). Repairs installations made before the store was private.
pub fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = fs::symlink_metadata(dir).ctx(|| format!("stat {}", dir.display()))?;
    if !md.is_dir() {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ctx(|| format!("chmod {}", dir.display()))?;
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        let ft = e.file_type().ctx(|| format!("stat {}", e.path().display()))?;
        if ft.is_dir() {
            make_private(&e.path())?;
        } else if ft.is_file() {
            let mode = e.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
            let want = if mode & 0o100 != 0 { 0o700 } else { 0o600 };
            if mode & 0o7777 != want {
                fs::set_permissions(e.path(), fs::Permissions::from_mode(want))
                    .ctx(|| format!("chmod {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Create `dir` (and its parents) as directories only the agent's user can
/// enter: the state directory holds secrets' blobs and prior contents.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| space::write_error(e, "create", &dir.display().to_string(), || space::of_path(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_whole_and_privately() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temp file left");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
