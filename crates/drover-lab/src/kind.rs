//! What a lab host is: its init, its CPU architecture and its userland.
//!
//! The fleets drover deploys to are not all amd64 Debian: ARM boards and
//! cloud instances run aarch64, small VPSes run Alpine (busybox, OpenRC).
//! A [`Kind`] is one such host; each kind has its own cached base, and a
//! lab may mix kinds (`drover lab up 4 --kinds runit,systemd,arm64-runit,openrc`).
//!
//! A kind is written `[ARCH-][busybox-]INIT`: `runit`, `arm64-runit`,
//! `busybox-openrc`, `arm64-busybox-runit`. The architecture left out is
//! this machine's own ([`Arch::native`]). A `+containers` suffix
//! (`runit+containers`, `systemd+containers`) asks for a host that can run
//! containers (see `crate::containers`): an opt-in, because it costs a
//! cgroup per controller per host and a store on the controller's disk,
//! and every other host keeps the setup the suite was proven on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::init::Init;

/// A host's CPU architecture, by its Debian name. A foreign one runs under
/// qemu-user through the kernel's binfmt_misc (see `preflight::binfmt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The architecture this program was built for: the machine's own.
    pub fn native() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    /// Debian's name (`--arch` of debootstrap, dpkg's architecture).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name, what `uname -m` prints on such a host.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Arch, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown architecture {s:?}: use amd64 or arm64"))
    }
}

/// The programs a host's shell finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Userland {
    /// Debian's: bash, dash as `/bin/sh`, GNU coreutils.
    #[default]
    Debian,
    /// Alpine's minimal userland, on Debian: `/bin/sh` is busybox ash, the
    /// core utilities are busybox applets, there is no bash. sshd, libc,
    /// the init and sudo stay Debian's.
    Busybox,
}

impl Userland {
    pub const ALL: [Userland; 2] = [Userland::Debian, Userland::Busybox];

    pub fn as_str(self) -> &'static str {
        match self {
            Userland::Debian => "debian",
            Userland::Busybox => "busybox",
        }
    }
}

impl fmt::Display for Userland {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Userland {
    type Err = String;

    fn from_str(s: &str) -> Result<Userland, String> {
        Userland::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| format!("unknown userland {s:?}: use debian or busybox"))
    }
}

/// What a kind's name ends with when the host can run containers.
const CONTAINERS_SUFFIX: &str = "+containers";

/// One kind of lab host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kind {
    pub init: Init,
    pub arch: Arch,
    pub userland: Userland,
    /// Whether the host can run containers (runc, dockerd): its own cgroup
    /// in every hierarchy mounted inside it, `pivot_root` into its root,
    /// and a store on the controller's file system (not the overlay). Left
    /// out of the JSON when false, so a state file or `lab status --json`
    /// of an ordinary host reads as it always did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub containers: bool,
}

impl Kind {
    /// A native Debian host running `init`: what `--init` alone asks for.
    pub fn native(init: Init) -> Kind {
        Kind { init, arch: Arch::native(), userland: Userland::Debian, containers: false }
    }

    /// The default host: native, Debian, runit.
    pub fn runit() -> Kind {
        Kind::native(Init::Runit)
    }

    pub fn with_arch(self, arch: Arch) -> Kind {
        Kind { arch, ..self }
    }

    pub fn with_userland(self, userland: Userland) -> Kind {
        Kind { userland, ..self }
    }

    /// The same host, able to run containers (`KIND+containers`).
    pub fn with_containers(self) -> Kind {
        Kind { containers: true, ..self }
    }

    /// The kind whose base this host stacks on: container capability is
    /// set up per host at `up`, never in the base, so a container host
    /// shares the cached base of its init, architecture and userland.
    pub fn base_kind(self) -> Kind {
        Kind { containers: false, ..self }
    }

    /// Whether the host's programs run under qemu-user.
    pub fn is_emulated(self) -> bool {
        self.arch != Arch::native()
    }

    /// Why this kind cannot run here, if it cannot. systemd under
    /// qemu-user is refused: qemu-user emulates one process's system
    /// calls, not what systemd as pid 1 needs of a kernel (not attempted;
    /// a refusal is clearer than a host that never answers). Hosts of a
    /// foreign architecture run only on amd64 machines (the qemu-user
    /// entry `preflight::binfmt` registers is qemu-aarch64's).
    pub fn unsupported(self) -> Option<String> {
        if self.init == Init::Systemd && self.is_emulated() {
            return Some(format!(
                "{self}: systemd cannot run as pid 1 under qemu-user emulation; \
                 use --init runit or openrc for {} hosts",
                self.arch
            ));
        }
        if self.containers && (self.is_emulated() || self.init == Init::OpenRc) {
            return Some(format!(
                "{self}: container hosts are made for native runit and systemd hosts only \
                 (runc and dockerd under qemu-user, and OpenRC's cgroup setup, are not done); \
                 use runit+containers or systemd+containers"
            ));
        }
        if self.is_emulated() && Arch::native() != Arch::Amd64 {
            return Some(format!(
                "{self}: only an amd64 machine runs hosts of another architecture (arm64 by qemu-user)"
            ));
        }
        None
    }
}

impl Default for Kind {
    fn default() -> Kind {
        Kind::runit()
    }
}

impl From<Init> for Kind {
    fn from(init: Init) -> Kind {
        Kind::native(init)
    }
}

impl fmt::Display for Kind {
    /// `[ARCH-][busybox-]INIT`, the architecture only when foreign.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_emulated() {
            write!(f, "{}-", self.arch)?;
        }
        if self.userland != Userland::Debian {
            write!(f, "{}-", self.userland)?;
        }
        write!(f, "{}", self.init)?;
        if self.containers {
            f.write_str(CONTAINERS_SUFFIX)?;
        }
        Ok(())
    }
}

impl FromStr for Kind {
    type Err = String;

    /// `[ARCH-][busybox-]INIT[+containers]` (also `debian-`, and the
    /// native architecture named).
    fn from_str(full: &str) -> Result<Kind, String> {
        let bad = |why: String| {
            format!(
                "bad host kind {full:?}: {why}; a kind is [ARCH-][busybox-]INIT[+containers], \
                 e.g. runit, arm64-runit, busybox-openrc, systemd+containers"
            )
        };
        let (s, containers) = match full.split_once('+') {
            Some((s, "containers")) => (s, true),
            Some((_, other)) => return Err(bad(format!("unknown attribute +{other}"))),
            None => (full, false),
        };
        let mut parts: Vec<&str> = s.split('-').collect();
        let init = parts.pop().filter(|p| !p.is_empty()).ok_or_else(|| bad("no init".into()))?;
        let mut kind = Kind::native(init.parse().map_err(bad)?);
        let mut rest = parts.into_iter().peekable();
        if let Some(arch) = rest.peek().and_then(|p| p.parse::<Arch>().ok()) {
            kind.arch = arch;
            rest.next();
        }
        if let Some(userland) = rest.next() {
            kind.userland = userland.parse().map_err(bad)?;
        }
        if let Some(extra) = rest.next() {
            return Err(bad(format!("unexpected {extra:?}")));
        }
        kind.containers = containers;
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for init in Init::ALL {
            for arch in Arch::ALL {
                for userland in Userland::ALL {
                    for containers in [false, true] {
                        let k = Kind { init, arch, userland, containers };
                        assert_eq!(k.to_string().parse::<Kind>(), Ok(k), "{k}");
                    }
                }
            }
        }
        let foreign = if Arch::native() == Arch::Amd64 { Arch::Arm64 } else { Arch::Amd64 };
        assert_eq!("runit".parse::<Kind>(), Ok(Kind::runit()));
        assert_eq!(
            format!("{foreign}-busybox-openrc").parse::<Kind>().unwrap().to_string(),
            format!("{foreign}-busybox-openrc")
        );
        assert_eq!(format!("{}-debian-runit", Arch::native()).parse::<Kind>(), Ok(Kind::runit()));
        assert_eq!(Kind::runit().with_arch(foreign).to_string(), format!("{foreign}-runit"));
        assert_eq!("systemd+containers".parse::<Kind>(), Ok(Kind::native(Init::Systemd).with_containers()));
        assert_eq!(Kind::runit().with_containers().to_string(), "runit+containers");
        for bad in [
            "",
            "sysv",
            "arm64-",
            "arm64-alpine-runit",
            "arm64-busybox-x-runit",
            "busybox-arm64-runit",
            "runit+docker",
            "runit+",
            "+containers",
        ] {
            assert!(bad.parse::<Kind>().unwrap_err().contains("[ARCH-][busybox-]INIT"), "{bad}");
        }
    }

    /// An ordinary host's kind serializes as it did before container hosts
    /// existed (state files and `lab status --json` unchanged); a container
    /// host's says so; both read back. Its base is its plain kind's.
    #[test]
    fn containers_is_left_out_of_json_unless_set_and_shares_the_base() {
        let plain = Kind::runit();
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            serde_json::json!({"init": "runit", "arch": Arch::native(), "userland": "debian"})
        );
        let ct = Kind::native(Init::Systemd).with_containers();
        let json = serde_json::to_value(ct).unwrap();
        assert_eq!(json["containers"], true);
        assert_eq!(serde_json::from_value::<Kind>(json).unwrap(), ct);
        assert_eq!(ct.base_kind(), Kind::native(Init::Systemd));
        assert_eq!(crate::base::recipe_id(ct.base_kind()), crate::base::recipe_id(Kind::native(Init::Systemd)));
    }

    #[test]
    fn containers_are_refused_on_openrc_and_emulated_hosts_only() {
        assert!(Kind::runit().with_containers().unsupported().is_none());
        assert!(Kind::native(Init::Systemd).with_containers().unsupported().is_none());
        let why = Kind::native(Init::OpenRc).with_containers().unsupported().unwrap();
        assert!(why.contains("runit+containers"), "{why}");
        let foreign = if Arch::native() == Arch::Amd64 { Arch::Arm64 } else { Arch::Amd64 };
        assert!(Kind::runit().with_arch(foreign).with_containers().unsupported().is_some());
    }

    #[test]
    fn systemd_is_refused_under_emulation_only() {
        let foreign = if Arch::native() == Arch::Amd64 { Arch::Arm64 } else { Arch::Amd64 };
        assert!(Kind::native(Init::Systemd).unsupported().is_none());
        let why = Kind::native(Init::Systemd).with_arch(foreign).unsupported().unwrap();
        assert!(why.contains("qemu-user") && why.contains("--init runit"), "{why}");
        if Arch::native() == Arch::Amd64 {
            assert!(Kind::runit().with_arch(Arch::Arm64).unsupported().is_none());
        }
    }
}
