//! Every file operation on a managed path, resolved from the target root one
//! component at a time without following symlinks.
//!
//! Why: the agent runs as root and writes where a manifest says. If it
//! resolved `/srv/app/conf` with the kernel's ordinary path walk, a local user
//! who can replace `/srv/app` with a symlink to `/root` would have root write
//! (or read, or back up) files of their choosing. So every managed path is
//! reached by `openat(…, O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the
//! target root, and an operation names only the final component relative to
//! the descriptor of its parent. A symlink among the parents is never
//! followed: reading reports it, writing refuses it with the path named.
//!
//! Writing also refuses a parent directory that someone other than the
//! agent's own user can write to (owned by another user, or group- or
//! world-writable): whoever can write there can swap what drover writes for
//! something else, or read what it puts there before the mode is set. The
//! trusted user is the one the agent runs as (root on a real host), not a
//! hard-coded uid, so a simulated host under a test user's directory is
//! judged by the same rule.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use drover_proto::Hash;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::process::{getegid, geteuid};

use crate::fsops::StatId;
use crate::{bail, Context, Result};

/// The target root, opened once.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    uid: u32,
    gid: u32,
}

/// Where a managed path's parent directory stands.
pub enum Parent {
    /// The parent exists as a real directory: operate on `name` in `dir`.
    Dir(OwnedFd),
    /// Some parent does not exist (or is a plain file): nothing is at the path.
    Missing,
    /// A parent is a symlink (never followed): `at` names it.
    Symlink { at: String },
}

/// What `lstat` says is at a path, as far as drover cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Absent,
    File {
        id: StatId,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Special,
    /// Beneath a symlink at `at`; what is really there is not looked at.
    BeneathSymlink {
        at: String,
    },
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn split(path: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let name = parts.pop().unwrap_or("");
    (parts, name)
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno)
            .ctx(|| format!("open target root {}", path.display()))?;
        Ok(Root { fd, path: path.to_path_buf(), uid: geteuid().as_raw(), gid: getegid().as_raw() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is a directory with this owner and mode writable only by us?
    fn trusted(&self, st: &rfs::Stat) -> bool {
        let mode = st.st_mode;
        st.st_uid == self.uid && mode & 0o002 == 0 && (mode & 0o020 == 0 || st.st_gid == self.gid)
    }

    /// Walk to the parent directory of `path` (absolute, validated). With
    /// `write`, every directory on the way must be trusted.
    pub fn parent(&self, path: &str, write: bool) -> Result<Parent> {
        self.walk(&split(path).0, write)
    }

    /// Walk to directory `path` itself ("" is the root).
    pub fn dir(&self, path: &str, write: bool) -> Result<Parent> {
        let comps: Vec<&str> = path.trim_start_matches('/').split('/').filter(|c| !c.is_empty()).collect();
        self.walk(&comps, write)
    }

    /// What is at `path` now (no cache: for the few paths a transition touches).
    pub fn look(&self, path: &str) -> Result<Found> {
        look_in(&self.parent(path, false)?, path)
    }

    fn walk(&self, dirs: &[&str], write: bool) -> Result<Parent> {
        let mut cur: Option<OwnedFd> = None;
        let mut walked = String::new();
        if write {
            let st = rfs::fstat(&self.fd).map_err(errno).ctx(|| format!("stat {}", self.path.display()))?;
            if !self.trusted(&st) {
                bail!("refusing to write under {}: the target root is writable by other users", self.path.display());
            }
        }
        for &comp in dirs {
            walked.push('/');
            walked.push_str(comp);
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match rfs::openat(at, comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(Parent::Missing),
                Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => {
                    // Either a plain file (nothing can be beneath it) or a
                    // symlink (which we must not follow): look without following.
                    let st = rfs::statat(at, comp, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(errno)
                        .ctx(|| format!("lstat {walked}"))?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                        return Ok(Parent::Symlink { at: walked });
                    }
                    return Ok(Parent::Missing);
                }
                Err(e) => return Err(errno(e)).ctx(|| format!("open directory {walked}")),
            };
            if write {
                let st = rfs::fstat(&next).map_err(errno).ctx(|| format!("stat {walked}"))?;
                if !self.trusted(&st) {
                    bail!(
                        "refusing to write under {walked}: it is writable by users other than the agent's (owner uid {}, mode {:o}); other users could redirect what drover writes there. Make it owned by root and not group- or world-writable, or manage the file elsewhere",
                        st.st_uid,
                        st.st_mode & 0o7777
                    );
                }
            }
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(Parent::Dir(fd)),
            None => Ok(Parent::Dir(
                rfs::openat(&self.fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(errno)
                    .ctx(|| "open target root".into())?,
            )),
        }
    }

    /// The parent for a write: it must exist as a trusted real directory.
    pub fn parent_for_write(&self, path: &str) -> Result<OwnedFd> {
        match self.parent(path, true)? {
            Parent::Dir(fd) => Ok(fd),
            Parent::Missing => bail!("{path}: parent directory is missing"),
            Parent::Symlink { at } => bail!(
                "refusing to write {path}: {at} is a symlink, and drover never writes through symlinks (manage the real path instead)"
            ),
        }
    }
}

/// The final component of `path`.
pub fn name(path: &str) -> &OsStr {
    OsStr::from_bytes(split(path).1.as_bytes())
}

/// What is at `path`, given the walk to its parent.
fn look_in(parent: &Parent, path: &str) -> Result<Found> {
    match parent {
        Parent::Dir(fd) => look(fd.as_fd(), name(path)),
        Parent::Missing => Ok(Found::Absent),
        Parent::Symlink { at } => Ok(Found::BeneathSymlink { at: at.clone() }),
    }
}

/// Look at `name` in `dir` without following it.
pub fn look(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Found> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(Found::Absent),
        Err(e) => return Err(errno(e)).ctx(|| format!("lstat {}", name.to_string_lossy())),
    };
    let mode = st.st_mode & 0o7777;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Found::File { id: StatId::from_stat(&st), mode, uid: st.st_uid, gid: st.st_gid },
        FileType::Symlink => {
            let t = rfs::readlinkat(dir, name, Vec::new())
                .map_err(errno)
                .ctx(|| format!("readlink {}", name.to_string_lossy()))?;
            Found::Symlink { target: t.to_string_lossy().into_owned() }
        }
        FileType::Directory => Found::Dir { mode, uid: st.st_uid, gid: st.st_gid },
        _ => Found::Special,
    })
}

/// Open a regular file for reading, refusing anything that is not one.
pub fn open_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<std::fs::File> {
    let fd =
        rfs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())
            .map_err(errno)
            .ctx(|| format!("open {}", name.to_string_lossy()))?;
    Ok(std::fs::File::from(fd))
}

/// Hash the regular file `name` in `dir`.
pub fn hash_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Hash> {
    let mut f = open_file(dir, name)?;
    Ok(crate::fsops::hash_reader(&mut f).ctx(|| format!("read {}", name.to_string_lossy()))?.0)
}

/// Create `name` in `dir` (which must not exist) with `src`'s content, owner
/// and mode, durably. The file is created 0600 and only then given its mode,
/// after its owner: chown clears setuid bits, and nobody may open it early.
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr, src: &mut dyn Read, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
        .map_err(errno)
        .ctx(|| format!("create {}", name.to_string_lossy()))?;
    let mut f = std::fs::File::from(fd);
    io::copy(src, &mut f).ctx(|| format!("write {}", name.to_string_lossy()))?;
    f.flush().ctx(|| format!("write {}", name.to_string_lossy()))?;
    rfs::fchown(&f, Some(uid_of(uid)), Some(gid_of(gid)))
        .map_err(errno)
        .ctx(|| format!("chown {}", name.to_string_lossy()))?;
    rfs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(errno).ctx(|| format!("chmod {}", name.to_string_lossy()))?;
    f.sync_all().ctx(|| format!("fsync {}", name.to_string_lossy()))
}

pub fn create_symlink(dir: BorrowedFd<'_>, name: &OsStr, target: &str) -> Result<()> {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    rfs::symlinkat(target, dir, name).map_err(errno).ctx(|| format!("symlink {}", name.to_string_lossy()))
}

/// Make directory `name` with exactly this mode and owner (the umask does not apply).
pub fn create_dir(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<()> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(errno(e)).ctx(|| format!("create directory {}", name.to_string_lossy())),
    }
    set_dir_attrs(dir, name, mode, uid, gid)
}

/// Owner then mode of the directory `name` (opened without following).
pub fn set_dir_attrs(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty())
        .map_err(errno)
        .ctx(|| format!("open directory {}", name.to_string_lossy()))?;
    rfs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid)))
        .map_err(errno)
        .ctx(|| format!("chown {}", name.to_string_lossy()))?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno).ctx(|| format!("chmod {}", name.to_string_lossy()))
}

/// Remove a file or symlink; absent is fine.
pub fn remove_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)).ctx(|| format!("remove {}", name.to_string_lossy())),
    }
}

/// Remove directory `name` if it is empty; absent is fine. Returns whether
/// it is gone: something that appeared in it meanwhile (a supervisor's
/// `supervise/`, a user's file) keeps it, since drover deletes nothing it
/// does not manage.
pub fn remove_dir_if_empty(dir: BorrowedFd<'_>, name: &OsStr) -> Result<bool> {
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(true),
        Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(errno(e)).ctx(|| format!("remove directory {}", name.to_string_lossy())),
    }
}

/// Remove an empty directory; absent is fine, a non-empty one is an error.
pub fn remove_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)).ctx(|| format!("remove directory {}", name.to_string_lossy())),
    }
}

pub fn rename(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> Result<()> {
    rfs::renameat(dir, from, dir, to).map_err(errno).ctx(|| format!("rename into {}", to.to_string_lossy()))
}

pub fn sync(dir: BorrowedFd<'_>) -> Result<()> {
    rfs::fsync(dir).map_err(errno).ctx(|| "fsync directory".into())
}

/// Names in directory `name` of `dir` (without following it).
pub fn list(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Vec<String>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty())
        .map_err(errno)
        .ctx(|| format!("open directory {}", name.to_string_lossy()))?;
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(&fd).map_err(errno).ctx(|| format!("read directory {}", name.to_string_lossy()))? {
        let e = e.map_err(errno).ctx(|| format!("read directory {}", name.to_string_lossy()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(String::from_utf8_lossy(n).into_owned());
        }
    }
    Ok(out)
}

fn uid_of(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid_of(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// Parent directories opened during one read-only pass (drift check, diff),
/// so a tree of 20,000 files walks each directory once, not once per file.
pub struct Walker<'r> {
    root: &'r Root,
    dirs: HashMap<String, Parent>,
}

impl<'r> Walker<'r> {
    pub fn new(root: &'r Root) -> Walker<'r> {
        Walker { root, dirs: HashMap::new() }
    }

    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// The (cached) walk to `path`'s parent.
    fn parent(&mut self, path: &str) -> Result<&Parent> {
        let key = split(path).0.join("/");
        if !self.dirs.contains_key(&key) {
            let p = self.root.parent(path, false)?;
            self.dirs.insert(key.clone(), p);
        }
        Ok(&self.dirs[&key])
    }

    /// What is at `path` now.
    pub fn look(&mut self, path: &str) -> Result<Found> {
        look_in(self.parent(path)?, path)
    }

    /// Hash the file at `path` (which [`Walker::look`] found to be a file).
    pub fn hash(&mut self, path: &str) -> Result<Hash> {
        match self.parent(path)? {
            Parent::Dir(fd) => hash_at(fd.as_fd(), name(path)),
            _ => bail!("{path}: not a file"),
        }
    }
}
