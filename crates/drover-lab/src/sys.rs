//! Thin, checked wrappers over the system calls and `/proc` files the lab
//! uses directly instead of spawning a tool for each (100 hosts would mean
//! hundreds of extra processes): locks, overlay mounts, finding the processes
//! of a namespace, signals.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::LabError;

/// Effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Block until the lock at `path` is ours. The file may be unlinked by
    /// `down` while we wait; then the lock we got protects nothing, so we
    /// retry on the new file.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, LabError> {
        loop {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(LabError::io("create", parent))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .map_err(LabError::io("open lock", path))?;
            // SAFETY: the fd is valid for the lifetime of `file`; flock has no
            // memory-safety preconditions.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(LabError::io("lock", path)(io::Error::last_os_error()));
            }
            let held = file.metadata().map_err(LabError::io("stat", path))?;
            match fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(FileLock { _file: file }),
                _ => continue,
            }
        }
    }
}

fn cstring(path: &Path) -> Result<CString, LabError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LabError::io("path has a NUL byte:", path)(io::ErrorKind::InvalidInput.into()))
}

/// Mount an overlay of `lower` with `upper`/`work` at `target`.
pub(crate) fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), LabError> {
    for p in [lower, upper, work] {
        let s = p.as_os_str().as_bytes();
        if s.contains(&b',') || s.contains(&b':') {
            return Err(LabError::io("overlay paths may not contain ',' or ':':", p)(
                io::ErrorKind::InvalidInput.into(),
            ));
        }
    }
    let mut opts = b"lowerdir=".to_vec();
    opts.extend_from_slice(lower.as_os_str().as_bytes());
    opts.extend_from_slice(b",upperdir=");
    opts.extend_from_slice(upper.as_os_str().as_bytes());
    opts.extend_from_slice(b",workdir=");
    opts.extend_from_slice(work.as_os_str().as_bytes());
    let opts = CString::new(opts).expect("paths checked for NUL");
    let target_c = cstring(target)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc =
        unsafe { libc::mount(c"overlay".as_ptr(), target_c.as_ptr(), c"overlay".as_ptr(), 0, opts.as_ptr().cast()) };
    if rc != 0 {
        return Err(LabError::io("mount overlay at", target)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Bind-mount `source` at `target` (both directories).
pub(crate) fn bind_mount(source: &Path, target: &Path) -> Result<(), LabError> {
    let (s, t) = (cstring(source)?, cstring(target)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if rc != 0 {
        return Err(LabError::io("bind-mount at", target)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Unmount `target`; if it is busy, detach it lazily.
pub(crate) fn unmount(target: &Path) -> Result<(), LabError> {
    let c = cstring(target)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let first = io::Error::last_os_error();
    if first.raw_os_error() == Some(libc::EINVAL) || first.raw_os_error() == Some(libc::ENOENT) {
        return Ok(()); // not a mount point (any more)
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    Err(LabError::io("unmount", target)(io::Error::last_os_error()))
}

/// Mount points at or under `dir` in our mount namespace, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(LabError::io("read", "/proc/self/mountinfo"))?;
    let mut found: Vec<PathBuf> = parse_mountinfo(&text).into_iter().filter(|p| p.starts_with(dir)).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// The mount point (5th field) of every line, with `\040`-style escapes decoded.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(field))))
        .collect()
}

fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// True if `path` is a mount point in our namespace.
pub(crate) fn is_mount_point(path: &Path) -> Result<bool, LabError> {
    Ok(mounts_under(path)?.iter().any(|p| p == path))
}

/// Pids of every live process whose network namespace is the one bound at
/// `/run/netns/<name>` (what `ip netns pids` prints, without a process).
pub(crate) fn netns_pids(name: &str) -> Vec<i32> {
    let Ok(ns) = fs::metadata(Path::new("/run/netns").join(name)) else {
        return Vec::new();
    };
    pids_where(|pid| {
        fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
    })
}

/// Pids of processes chrooted at or below `dir` (hosts whose namespace is gone).
pub(crate) fn pids_rooted_under(dir: &Path) -> Vec<i32> {
    pids_where(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|root| root.starts_with(dir)))
}

/// Pids whose argv satisfies `pred`.
pub(crate) fn pids_with_args(pred: impl Fn(&[String]) -> bool) -> Vec<i32> {
    pids_where(|pid| {
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
        let args: Vec<String> =
            raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        pred(&args)
    })
}

fn pids_where(pred: impl Fn(i32) -> bool) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter(|pid| pred(*pid))
        .collect()
}

/// Send `sig` to `pid`, ignoring processes that are already gone.
pub(crate) fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions; a stale pid is at worst ESRCH.
    unsafe { libc::kill(pid, sig) };
}

/// Process state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, …).
pub(crate) fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True if the root-namespace interface `name` exists.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Names of all root-namespace interfaces.
pub(crate) fn links() -> Vec<String> {
    fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// True if the interface is administratively up.
pub(crate) fn link_is_up(name: &str) -> bool {
    fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & 1 != 0)
}

/// The interface's alias (`ip link set … alias`), if any.
pub(crate) fn link_alias(name: &str) -> Option<String> {
    let a = fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifalias")).ok()?;
    let a = a.trim();
    (!a.is_empty()).then(|| a.to_string())
}

/// Names of all network namespaces bound under `/run/netns`.
pub(crate) fn netns_names() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Write a root-namespace sysctl such as `net/ipv6/conf/<if>/disable_ipv6`.
pub(crate) fn sysctl(key: &str, value: &str) -> Result<(), LabError> {
    let path = Path::new("/proc/sys").join(key);
    fs::write(&path, value).map_err(LabError::io("write", path))
}

/// `len` bytes from the kernel's CSPRNG.
pub(crate) fn random_bytes(len: usize) -> Result<Vec<u8>, LabError> {
    let mut buf = vec![0; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(LabError::io("read", "/dev/urandom"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /var/lib/drover-lab/x/hosts/h1/merged rw - overlay overlay rw\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![PathBuf::from("/mnt/a b"), PathBuf::from("/var/lib/drover-lab/x/hosts/h1/merged")]
        );
    }
}
