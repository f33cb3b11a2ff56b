//! Every change to a managed path: made relative to the descriptor of its
//! parent directory (which [`super::Root::parent_for_write`] walked to and
//! checked), never through a path the kernel resolves.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use super::errno;
use crate::{hooks, space, Context, Result};

/// A write in `dir` that failed: the filesystem's refusal names it (see
/// [`space::write_error`]).
fn failed(dir: BorrowedFd<'_>, verb: &str, name: &OsStr, e: io::Error) -> crate::AgentError {
    space::write_error(e, verb, &name.to_string_lossy(), || space::of_fd(dir))
}

/// Create `name` in `dir` (which must not exist) with `src`'s content, owner
/// and mode, durably. The file is created 0600 and only then given its mode,
/// after its owner: chown clears setuid bits, and nobody may open it early.
/// A failed write leaves nothing behind: the space it took is given back.
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr, src: &mut dyn Read, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = hooks::fault("create")
        .and_then(|()| rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map_err(errno))
        .map_err(|e| failed(dir, "create", name, e))?;
    let mut f = std::fs::File::from(fd);
    let written = hooks::fault("write")
        .and_then(|()| io::copy(src, &mut f))
        .and_then(|_| f.flush())
        .and_then(|()| hooks::fault("fsync"))
        .map_err(|e| failed(dir, "write", name, e))
        .and_then(|()| {
            rfs::fchown(&f, Some(uid_of(uid)), Some(gid_of(gid)))
                .map_err(errno)
                .ctx(|| format!("chown {}", name.to_string_lossy()))?;
            rfs::fchmod(&f, Mode::from_raw_mode(mode))
                .map_err(errno)
                .ctx(|| format!("chmod {}", name.to_string_lossy()))?;
            f.sync_all().map_err(|e| failed(dir, "fsync", name, e))
        });
    if written.is_err() {
        drop(f);
        let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    }
    written
}

pub fn create_symlink(dir: BorrowedFd<'_>, name: &OsStr, target: &str) -> Result<()> {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    hooks::fault("symlink")
        .and_then(|()| rfs::symlinkat(target, dir, name).map_err(errno))
        .map_err(|e| failed(dir, "symlink", name, e))
}

/// Make directory `name` with exactly this mode and owner (the umask does
/// not apply). One already there with them is left alone: nothing is
/// written (a read-only filesystem holding the right directory is fine).
pub fn create_dir(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<()> {
    if let Ok(st) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
        if is_dir && st.st_mode & 0o7777 == mode && st.st_uid == uid && st.st_gid == gid {
            return Ok(());
        }
    }
    let made = hooks::fault("mkdir").and_then(|()| match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(errno(e)),
    });
    made.map_err(|e| failed(dir, "create directory", name, e))?;
    set_dir_attrs(dir, name, mode, uid, gid)
}

/// Owner then mode of the directory `name` (opened without following).
pub fn set_dir_attrs(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty())
        .map_err(errno)
        .ctx(|| format!("open directory {}", name.to_string_lossy()))?;
    rfs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(|e| failed(dir, "chown", name, errno(e)))?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| failed(dir, "chmod", name, errno(e)))
}

/// Remove a file or symlink; absent is fine.
pub fn remove_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    let gone = hooks::fault("remove").and_then(|()| match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)),
    });
    gone.map_err(|e| failed(dir, "remove", name, e))
}

/// Remove directory `name` if it is empty; absent is fine. Returns whether
/// it is gone: something that appeared in it meanwhile (a supervisor's
/// `supervise/`, a user's file) keeps it, since drover deletes nothing it
/// does not manage.
pub fn remove_dir_if_empty(dir: BorrowedFd<'_>, name: &OsStr) -> Result<bool> {
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(true),
        Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(failed(dir, "remove directory", name, errno(e))),
    }
}

/// Remove an empty directory; absent is fine, a non-empty one is an error.
pub fn remove_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(failed(dir, "remove directory", name, errno(e))),
    }
}

pub fn rename(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> Result<()> {
    hooks::fault("rename")
        .and_then(|()| rfs::renameat(dir, from, dir, to).map_err(errno))
        .map_err(|e| failed(dir, "rename into", to, e))
}

pub fn sync(dir: BorrowedFd<'_>) -> Result<()> {
    hooks::fault("sync")
        .and_then(|()| rfs::fsync(dir).map_err(errno))
        .map_err(|e| failed(dir, "fsync", OsStr::new("directory"), e))
}

fn uid_of(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid_of(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}
