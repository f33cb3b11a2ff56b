//! What a lab host is: its init, its CPU architecture and its userland.
//!
//! The fleets drover deploys to are not all amd64 Debian: ARM boards and
//! cloud instances run aarch64, small VPSes run Alpine (busybox, OpenRC).
//! A [`Kind`] is one such host; each kind has its own cached base, and a
//! lab may mix kinds (`drover lab up 4 --kinds runit,systemd,arm64-runit,openrc`).
//!
//! A kind is written `[ARCH-][busybox-]INIT`: `runit`, `arm64-runit`,
//! `busybox-openrc`, `arm64-busybox-runit`. The architecture left out is
//! this machine's own ([`Arch::native`]).

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

/// One kind of lab host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kind {
    pub init: Init,
    pub arch: Arch,
    pub userland: Userland,
}

impl Kind {
    /// A native Debian host running `init`: what `--init` alone asks for.
    pub fn native(init: Init) -> Kind {
        Kind { init, arch: Arch::native(), userland: Userland::Debian }
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
        write!(f, "{}", self.init)
    }
}

impl FromStr for Kind {
    type Err = String;

    /// `[ARCH-][busybox-]INIT` (also `debian-`, and the native
    /// architecture named).
    fn from_str(s: &str) -> Result<Kind, String> {
        let bad = |why: String| {
            format!(
                "bad host kind {s:?}: {why}; a kind is [ARCH-][busybox-]INIT, e.g. runit, arm64-runit, busybox-openrc"
            )
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
                    let k = Kind { init, arch, userland };
                    assert_eq!(k.to_string().parse::<Kind>(), Ok(k), "{k}");
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
        for bad in ["", "sysv", "arm64-", "arm64-alpine-runit", "arm64-busybox-x-runit", "busybox-arm64-runit"] {
            assert!(bad.parse::<Kind>().unwrap_err().contains("[ARCH-][busybox-]INIT"), "{bad}");
        }
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
