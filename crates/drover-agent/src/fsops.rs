//! Small filesystem primitives with the durability the transitions rely on:
//! atomic replace of the agent's own files (temp file + rename + fsync of the
//! directory), and "what is at this managed path right now" as a comparable
//! value, read through [`crate::safefs`] so that no symlink is followed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use drover_proto::Hash;
use serde::{Deserialize, Serialize};

use crate::safefs::{Found, Walker};
use crate::{Context, Result};

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
    /// A directory. Managed ones are compared by mode and owner; directories
    /// drover creates as parents get 0755 and the agent's owner.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A device, socket, fifo, or a path beneath a symlink: drover never
    /// replaces, removes or looks through these.
    Other {
        what: String,
    },
}

/// Write `bytes` to `path` atomically: readers see the old or the new content,
/// never a torn file, even if we are killed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| crate::AgentError(format!("{}: no parent", path.display())))?;
    private_dir(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
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

    pub fn from_stat(st: &rustix::fs::Stat) -> StatId {
        StatId {
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
        }
    }
}

/// Read what is at managed `path`, using `cached` (a previously computed
/// hash for a stat identity) to avoid re-hashing unchanged files.
pub fn read_state(
    w: &mut Walker<'_>,
    path: &str,
    cached: Option<(StatId, Hash)>,
) -> Result<(PathState, Option<StatId>)> {
    Ok(match w.look(path)? {
        Found::Absent => (PathState::Absent, None),
        Found::Symlink { target } => (PathState::Symlink { target }, None),
        Found::Dir { mode, uid, gid } => (PathState::Dir { mode, uid, gid }, None),
        Found::Special => (PathState::Other { what: "a special file".into() }, None),
        Found::BeneathSymlink { at } => (PathState::Other { what: format!("beneath the symlink {at}") }, None),
        Found::File { id, mode, uid, gid } => {
            let hash = match cached {
                Some((cid, h)) if cid == id => h,
                _ => w.hash(path)?,
            };
            (PathState::File { hash, mode, uid, gid }, Some(id))
        }
    })
}

/// Remove one of the agent's own files; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::AgentError(format!("remove {}: {e}", path.display()))),
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
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).ctx(|| format!("create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safefs::Root;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn read_state_sees_files_links_dirs_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut w = Walker::new(&root);
        fs::write(dir.path().join("f"), b"hello").unwrap();
        let (st, id) = read_state(&mut w, "/f", None).unwrap();
        match st {
            PathState::File { hash, .. } => assert_eq!(hash.0, *blake3::hash(b"hello").as_bytes()),
            other => panic!("{other:?}"),
        }
        // A stale cache entry is ignored: identity differs after a rewrite.
        fs::write(dir.path().join("f"), b"hello, world").unwrap();
        let (st2, _) = read_state(&mut w, "/f", Some((id.unwrap(), Hash([0; 32])))).unwrap();
        let PathState::File { hash, .. } = st2 else { panic!("{st2:?}") };
        assert_eq!(hash.0, *blake3::hash(b"hello, world").as_bytes());
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        assert_eq!(read_state(&mut w, "/l", None).unwrap().0, PathState::Symlink { target: "f".into() });
        assert_eq!(read_state(&mut w, "/nope", None).unwrap().0, PathState::Absent);
        fs::create_dir(dir.path().join("d")).unwrap();
        assert!(matches!(read_state(&mut w, "/d", None).unwrap().0, PathState::Dir { .. }));
        // Beneath a symlink to a directory: not looked through.
        std::os::unix::fs::symlink("d", dir.path().join("ld")).unwrap();
        fs::write(dir.path().join("d/x"), b"x").unwrap();
        let mut w = Walker::new(&root);
        assert_eq!(
            read_state(&mut w, "/ld/x", None).unwrap().0,
            PathState::Other { what: "beneath the symlink /ld".into() }
        );
    }

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
