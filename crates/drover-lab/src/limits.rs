//! Kernel limits a lab of many hosts outgrows.
//!
//! Each systemd host's init holds about five inotify instances, and every
//! lab process runs as root in the root user namespace, so all of them
//! count against root's `fs.inotify.max_user_instances` — 128 by default:
//! the 25th systemd host's init fails to start and the host dies with an
//! empty console. `up` raises that limit before starting hosts (never
//! lowers it) and says so in its report, the way it already sets the
//! bridges' sysctls.

use std::path::Path;

use crate::error::LabError;

const INOTIFY: &str = "fs/inotify/max_user_instances";
/// Instances reserved per systemd host: five measured at 100 hosts, with room.
const PER_SYSTEMD_HOST: u64 = 8;
/// Left free for everything else on the machine.
const SLACK: u64 = 64;

/// A limit `up` raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedLimit {
    /// The sysctl, as `sysctl` names it.
    pub name: &'static str,
    pub from: u64,
    pub to: u64,
}

/// Make room for `systemd_hosts` more systemd inits beside the inotify
/// instances in use now (by any user: a generous count).
pub(crate) fn inotify_for(systemd_hosts: usize) -> Result<Option<RaisedLimit>, LabError> {
    if systemd_hosts == 0 {
        return Ok(None);
    }
    let path = Path::new("/proc/sys").join(INOTIFY);
    let now: u64 = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?.trim().parse().unwrap_or(0);
    let need = needed(in_use(), systemd_hosts);
    if now >= need {
        return Ok(None);
    }
    crate::sys::sysctl(INOTIFY, &need.to_string())?;
    Ok(Some(RaisedLimit { name: "fs.inotify.max_user_instances", from: now, to: need }))
}

fn needed(in_use: u64, systemd_hosts: usize) -> u64 {
    in_use + PER_SYSTEMD_HOST * systemd_hosts as u64 + SLACK
}

/// Inotify instances open now, counted by descriptor (a shared one counts
/// twice: more room, never less).
fn in_use() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify") {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn room_grows_with_the_systemd_hosts_beside_what_is_in_use() {
        assert_eq!(super::needed(500, 100), 500 + 800 + 64);
        assert_eq!(super::needed(0, 1), 8 + 64);
    }

    #[test]
    fn the_descriptors_counted_include_an_inotify_instance_we_open() {
        let before = super::in_use();
        // SAFETY: inotify_init1 takes flags only; the descriptor is closed below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let with = super::in_use();
        // SAFETY: fd is ours and open.
        unsafe { libc::close(fd) };
        assert!(with >= 1, "ours is open, yet counted {with} (before it: {before})");
    }
}
