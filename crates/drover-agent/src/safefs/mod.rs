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
//!
//! One exception makes container images possible: below a trusted directory
//! that no other user can even search (mode 0700, owned by the agent's user;
//! drover makes `/var/lib/drover/containers` so), directories of any owner
//! are written into, because nobody else can reach them by path. An image's
//! `/var/lib/postgresql` owned by uid 999 is such a directory. The exception
//! ends at a mount: a directory on another mount than the sealed one (a bind
//! mount of some user's directory, say) is judged by the ordinary rule
//! again. It does not cover a process that already held a working directory
//! or descriptor below the directory before it became 0700 (see
//! docs/security.md).
//!
//! - this file: the target [`Root`] and the walk to a path's parent, looking
//!   at what is there ([`Found`]), reading;
//! - `write.rs`: every change to a managed path (create, remove, rename);
//! - `walker.rs`: one read-only pass over many paths, with directories
//!   opened once, and a path's [`PathState`] through the stat cache.
//!
//! Below everything that touches a managed path; above only [`crate::fsops`]
//! and [`crate::pathstate`].

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use drover_proto::Hash;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::process::{getegid, geteuid};

#[cfg(doc)]
use crate::pathstate::PathState;
use crate::pathstate::{Found, StatId};
use crate::{bail, Context, Result};

mod walker;
mod write;
pub use walker::Walker;
pub use write::{
    create_dir, create_file, create_symlink, remove_dir, remove_dir_if_empty, remove_file, rename, set_dir_attrs, sync,
};

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

    /// Does a trusted directory with this stat keep every other user out of
    /// what lies below it (no search permission for group or others)?
    fn seals(&self, st: &rfs::Stat) -> bool {
        self.trusted(st) && st.st_mode & 0o077 == 0
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
        // The mount of the nearest sealing directory walked through, if any.
        let mut sealed: Option<Mount> = None;
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
                // The mount is looked up only where a seal is at stake.
                let below_seal = sealed.is_some_and(|m| m == Mount::of(&next, &st));
                if !below_seal {
                    // Not below a directory only we can search, on its mount
                    // (or never): the ordinary rule, and maybe a new seal.
                    sealed = None;
                    if self.seals(&st) {
                        sealed = Some(Mount::of(&next, &st));
                    } else if !self.trusted(&st) {
                        bail!(
                            "refusing to write under {walked}: it is writable by users other than the agent's (owner uid {}, mode {:o}); other users could redirect what drover writes there. Make it owned by root and not group- or world-writable, or manage the file elsewhere",
                            st.st_uid,
                            st.st_mode & 0o7777
                        );
                    }
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

/// Which mount a directory is on: the mount id where the kernel tells it
/// (statx, Linux 5.8+), else the device, which cannot tell a bind mount of
/// the same filesystem apart (documented in docs/security.md).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mount {
    Id(u64),
    Dev(u64),
}

impl Mount {
    fn of(fd: &OwnedFd, st: &rfs::Stat) -> Mount {
        match rfs::statx(fd, "", AtFlags::EMPTY_PATH, rfs::StatxFlags::MNT_ID) {
            Ok(x) if x.stx_mask & rfs::StatxFlags::MNT_ID.bits() != 0 => Mount::Id(x.stx_mnt_id),
            _ => Mount::Dev(st.st_dev),
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
        FileType::RegularFile => Found::File { content: StatId::from_stat(&st), mode, uid: st.st_uid, gid: st.st_gid },
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

#[cfg(test)]
mod tests;
