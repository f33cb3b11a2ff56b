//! Every change to a managed path: made relative to the descriptor of its
//! parent directory (which [`super::Root::parent_for_write`] walked to and
//! checked), never through a path the kernel resolves.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use super::errno;
use crate::{Context, Result};

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

fn uid_of(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid_of(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}
