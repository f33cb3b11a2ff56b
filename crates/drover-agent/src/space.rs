//! The filesystems a transition writes to: which one a path is on (its
//! mount point), how much is free there, what a transition needs on each
//! (checked before its first write), and a write the filesystem refused
//! (`ENOSPC`, `EDQUOT`, `EROFS`, `EIO`) turned into a [`StorageFailure`]
//! that names them.
//!
//! Why: a full disk mid-transition used to say only `write .drover-old-…:
//! No space left on device`, leaving the operator to guess which
//! filesystem, and how much was missing. The check before the first write
//! refuses a transition that cannot fit, and a refusal found later says the
//! same things.
//!
//! A leaf: it imports nothing of the agent but its error type.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use drover_proto::{StorageError, StorageFailure, StorageLeft};
use rustix::fs as rfs;

use crate::AgentError;

/// Headroom on every filesystem a transition writes to, for what is not
/// counted file by file: directory entries, the journal, `state.json`, the
/// stat cache, the pending marker.
pub const MARGIN: u64 = 64 << 10;

/// The free space of a filesystem that cannot say: nothing is refused on it.
const UNKNOWN: u64 = u64::MAX;

/// One filesystem, as seen from a path on it.
#[derive(Debug, Clone)]
pub struct Fs {
    pub dev: u64,
    /// Its mount point (the path itself when the mount table cannot say).
    pub mount: String,
    /// Bytes the agent may still write there.
    pub free: u64,
    /// Its allocation unit: every file takes whole ones.
    pub block: u64,
}

/// The filesystem of an open directory (or file).
pub fn of_fd(fd: BorrowedFd<'_>) -> Fs {
    let dev = rfs::fstat(fd).map(|s| s.st_dev).unwrap_or(0);
    let (free, block) = match rfs::fstatvfs(fd) {
        Ok(v) => {
            let unit = if v.f_frsize > 0 { v.f_frsize } else { v.f_bsize };
            // Root may use the blocks kept back for it (ext4's 5%).
            let blocks = if rustix::process::geteuid().is_root() { v.f_bfree } else { v.f_bavail };
            (blocks.saturating_mul(unit), unit)
        }
        // Not known: never a reason to refuse (see [`Needs::check`]).
        Err(_) => (UNKNOWN, 4096),
    };
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = rfs::readlink(link.as_str(), Vec::new()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    Fs { dev, mount: mount_of(&path, dev), free, block: block.max(512) }
}

/// The filesystem `path` is on (or would be: its nearest existing ancestor).
pub fn of_path(path: &Path) -> Fs {
    let mut p = Some(path);
    while let Some(dir) = p {
        if let Ok(f) = std::fs::File::open(dir) {
            return of_fd(f.as_fd());
        }
        p = dir.parent();
    }
    Fs { dev: 0, mount: path.display().to_string(), free: UNKNOWN, block: 4096 }
}

/// The mount point holding `path` on device `dev`: the longest mount
/// point of `/proc/self/mountinfo` above `path`, on that device if any is.
fn mount_of(path: &str, dev: u64) -> String {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let id = format!("{}:{}", rfs::major(dev), rfs::minor(dev));
    let above = |m: &str| m == "/" || path == m || path.strip_prefix(m).is_some_and(|rest| rest.starts_with('/'));
    let mut best: Option<(bool, String)> = None;
    for line in table.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(devno), Some(point)) = (f.get(2), f.get(4)) else { continue };
        let point = point.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
        if !above(&point) {
            continue;
        }
        let cand = (*devno == id, point);
        // Same device first, then the deepest.
        if best.as_ref().is_none_or(|b| (cand.0, cand.1.len()) >= (b.0, b.1.len())) {
            best = Some(cand);
        }
    }
    best.map_or_else(|| if path.is_empty() { "/".into() } else { path.to_string() }, |b| b.1)
}

/// Is this the filesystem refusing, rather than something about the path?
pub fn refusal(e: &io::Error) -> Option<StorageError> {
    match e.raw_os_error()? {
        libc::ENOSPC | libc::EDQUOT => Some(StorageError::NoSpace),
        libc::EROFS => Some(StorageError::ReadOnly),
        libc::EIO => Some(StorageError::Io),
        _ => None,
    }
}

/// A failed write of `writing` (`verb` says how): the filesystem's
/// refusal as data, with the filesystem `fs` names; any other error as words.
pub fn write_error(e: io::Error, verb: &str, writing: &str, fs: impl FnOnce() -> Fs) -> AgentError {
    let message = format!("{verb} {writing}: {e}");
    match refusal(&e) {
        Some(error) => {
            let fs = fs();
            let failure = StorageFailure {
                error,
                mount: fs.mount,
                free: fs.free,
                needed: 0,
                writing: writing.to_string(),
                left: StorageLeft::Untouched,
                generation: None,
            };
            AgentError(message, Some(Box::new(failure)))
        }
        None => AgentError::new(message),
    }
}

impl AgentError {
    /// Say where the failure left the host and what the transition needed
    /// on the refusing filesystem (when the failure is the filesystem's;
    /// other errors pass unchanged).
    pub fn settle(mut self, left: StorageLeft, generation: Option<u64>, needs: &Needs) -> AgentError {
        if let Some(f) = self.1.as_deref_mut() {
            f.left = left;
            f.generation = generation;
            if let Some((_, need)) = needs.on.values().find(|(fs, _)| fs.mount == f.mount) {
                f.needed = f.needed.max(*need);
            }
        }
        self
    }
}

impl AgentError {
    /// Name the managed path a refused write was for (rather than its
    /// temporary name).
    pub fn writing(mut self, path: &str) -> AgentError {
        if let Some(f) = self.1.as_deref_mut() {
            f.writing = path.to_string();
        }
        self
    }
}

/// What a transition needs on each filesystem it writes to.
#[derive(Debug, Default)]
pub struct Needs {
    on: BTreeMap<u64, (Fs, u64)>,
}

impl Needs {
    /// `bytes` more on `fs`.
    pub fn add(&mut self, fs: &Fs, bytes: u64) {
        self.on.entry(fs.dev).or_insert_with(|| (fs.clone(), MARGIN)).1 += bytes;
    }

    /// A file of `size` bytes on `fs`: whole blocks.
    pub fn file(&mut self, fs: &Fs, size: u64) {
        self.add(fs, size.div_ceil(fs.block) * fs.block);
    }

    /// Each filesystem with what is needed there.
    pub fn each(&self) -> impl Iterator<Item = (&Fs, u64)> {
        self.on.values().map(|(fs, n)| (fs, *n))
    }

    /// Refuse, naming the first filesystem that lacks room, before anything
    /// is written; the host stays on `generation`.
    pub fn check(&self, generation: Option<u64>) -> crate::Result<()> {
        for (fs, need) in self.each() {
            if fs.free != UNKNOWN && need > fs.free {
                let failure = StorageFailure {
                    error: StorageError::NoSpace,
                    mount: fs.mount.clone(),
                    free: fs.free,
                    needed: need,
                    writing: String::new(),
                    left: StorageLeft::Untouched,
                    generation,
                };
                return Err(AgentError(failure.to_string(), Some(Box::new(failure))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_on_the_deepest_mount_above_it() {
        let fs = of_path(Path::new("/proc/self"));
        assert_eq!(fs.mount, "/proc");
        let fs = of_path(Path::new("/no/such/dir/here"));
        assert_eq!(fs.mount, "/");
    }

    #[test]
    fn needs_are_whole_blocks_plus_a_margin_and_refused_when_over() {
        let fs = Fs { dev: 7, mount: "/srv".into(), free: MARGIN + 8192, block: 4096 };
        let mut n = Needs::default();
        n.file(&fs, 1);
        n.file(&fs, 4096);
        assert_eq!(n.each().next().unwrap().1, MARGIN + 8192);
        n.check(Some(1)).unwrap();
        n.file(&fs, 1);
        let e = n.check(Some(1)).unwrap_err();
        let f = e.storage().unwrap();
        assert_eq!(
            (f.mount.as_str(), f.free, f.needed, f.left),
            ("/srv", MARGIN + 8192, MARGIN + 12288, StorageLeft::Untouched)
        );
    }
}
