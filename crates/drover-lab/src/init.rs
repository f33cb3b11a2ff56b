//! Which init runs as pid 1 of a lab's hosts.
//!
//! Most production hosts run systemd, and drover drives it through
//! `systemctl` and reads logs through `journalctl`; runit is small and starts
//! in milliseconds; OpenRC is the init of Alpine's small VPSes (here
//! Debian's `openrc` package, with its own `openrc-init` as pid 1). A lab is
//! one of them (the choice is made at the first `up` and kept in the state
//! file), so a test or a user picks the supervisor drover will find on
//! every host.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// pid 1 of every host of a lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// `runsvdir` supervising `/etc/service` (sshd is `/etc/service/sshd`).
    #[default]
    Runit,
    /// systemd as pid 1 in the host's own pid, mount and cgroup namespaces,
    /// with journald; sshd is Debian's `ssh.service`.
    Systemd,
    /// `openrc-init` as pid 1 in the host's own pid namespace, running
    /// OpenRC's runlevels; sshd is the OpenRC service `sshd`, kept up by
    /// `supervise-daemon`.
    #[serde(rename = "openrc")]
    OpenRc,
}

impl Init {
    pub const ALL: [Init; 3] = [Init::Runit, Init::Systemd, Init::OpenRc];

    pub fn as_str(self) -> &'static str {
        match self {
            Init::Runit => "runit",
            Init::Systemd => "systemd",
            Init::OpenRc => "openrc",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> Result<Init, String> {
        Init::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| format!("unknown init {s:?}: use runit, systemd or openrc"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in Init::ALL {
            assert_eq!(i.as_str().parse::<Init>(), Ok(i));
            assert_eq!(serde_json::to_string(&i).unwrap(), format!("\"{i}\""));
        }
        assert!("sysv".parse::<Init>().unwrap_err().contains("runit, systemd or openrc"));
    }
}
