//! Small filesystem primitives with the durability the transitions rely on:
//! atomic replace (temp file + rename + fsync of the directory) and "what is
//! at this path right now" as a comparable value.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use drover_proto::Hash;
use serde::{Deserialize, Serialize};

use crate::{bail, Context, Result};

/// What occupies a path. Owners are numeric here: names are resolved against
/// the host's own account files before a transition starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathState {
    Absent,
    File {
        hash: Hash,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
    /// A directory, device, socket…: drover never replaces or removes these.
    Other {
        what: String,
    },
}

/// Write `bytes` to `path` atomically: readers see the old or the new content,
/// never a torn file, even if we are killed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| crate::AgentError(format!("{}: no parent", path.display())))?;
    fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    {
        let mut f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(bytes).ctx(|| format!("write {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).ctx(|| format!("rename into {}", path.display()))?;
    sync_dir(dir)
}

/// Make a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(|| format!("fsync {}", dir.display()))
}

/// Hash a file's content by streaming it.
pub fn hash_file(path: &Path) -> Result<(Hash, u64)> {
    let mut f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).ctx(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Hash(*hasher.finalize().as_bytes()), total))
}

/// The identity of a file's inode and content as far as `lstat` can tell.
/// If it has not changed since we hashed the file, the hash still holds: any
/// write, chmod, chown or replacement changes ctime or the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatId {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatId {
    pub fn of(md: &fs::Metadata) -> StatId {
        StatId {
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

/// Read what is at `path`, using `cached` (a previously computed hash for a
/// stat identity) to avoid re-hashing unchanged files.
pub fn read_state(path: &Path, cached: Option<(StatId, Hash)>) -> Result<(PathState, Option<StatId>)> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((PathState::Absent, None)),
        // A parent that is a file, not a directory: nothing can be there.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok((PathState::Absent, None)),
        Err(e) => bail!("lstat {}: {e}", path.display()),
    };
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).ctx(|| format!("readlink {}", path.display()))?;
        return Ok((PathState::Symlink { target: target.to_string_lossy().into_owned() }, None));
    }
    if !ft.is_file() {
        let what = if ft.is_dir() { "a directory" } else { "a special file" };
        return Ok((PathState::Other { what: what.into() }, None));
    }
    let id = StatId::of(&md);
    let hash = match cached {
        Some((cid, h)) if cid == id => h,
        _ => hash_file(path)?.0,
    };
    let state = PathState::File { hash, mode: md.permissions().mode() & 0o7777, uid: md.uid(), gid: md.gid() };
    Ok((state, Some(id)))
}

/// Create `tmp` as a copy of `blob` with the given mode and owner, durably.
pub fn stage_file(tmp: &Path, blob: &Path, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let _ = fs::remove_file(tmp);
    let mut src = File::open(blob).ctx(|| format!("open blob {}", blob.display()))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    io::copy(&mut src, &mut dst).ctx(|| format!("copy into {}", tmp.display()))?;
    std::os::unix::fs::fchown(&dst, Some(uid), Some(gid)).ctx(|| format!("chown {}", tmp.display()))?;
    // chmod after chown: chown clears setuid/setgid bits.
    dst.set_permissions(fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", tmp.display()))?;
    dst.sync_all().ctx(|| format!("fsync {}", tmp.display()))
}

/// Create `tmp` as a symlink to `target`.
pub fn stage_symlink(tmp: &Path, target: &str) -> Result<()> {
    let _ = fs::remove_file(tmp);
    std::os::unix::fs::symlink(target, tmp).ctx(|| format!("symlink {}", tmp.display()))
}

/// Remove a file or symlink; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("remove {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_state_sees_files_links_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"hello").unwrap();
        let (st, id) = read_state(&f, None).unwrap();
        match st {
            PathState::File { hash, .. } => assert_eq!(hash.0, *blake3::hash(b"hello").as_bytes()),
            other => panic!("{other:?}"),
        }
        // A stale cache entry is ignored: identity differs after a rewrite.
        fs::write(&f, b"hello, world").unwrap();
        let (st2, _) = read_state(&f, Some((id.unwrap(), Hash([0; 32])))).unwrap();
        assert_ne!(st2, PathState::Absent);
        if let PathState::File { hash, .. } = st2 {
            assert_eq!(hash.0, *blake3::hash(b"hello, world").as_bytes());
        }
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        assert_eq!(read_state(&dir.path().join("l"), None).unwrap().0, PathState::Symlink { target: "f".into() });
        assert_eq!(read_state(&dir.path().join("nope"), None).unwrap().0, PathState::Absent);
        assert!(matches!(read_state(dir.path(), None).unwrap().0, PathState::Other { .. }));
    }

    #[test]
    fn write_atomic_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temp file left");
    }
}
