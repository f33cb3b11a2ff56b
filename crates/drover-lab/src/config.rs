//! Where a lab lives and what its pieces are called.
//!
//! Everything a lab creates is named from two things: its name (paths) and
//! its index 0..=254 (kernel objects, which have 15-character names and no
//! room for a user-chosen string). `down` relies on these rules to find
//! leftovers when the state file is gone, so they are the contract between
//! `up` and `down` and must only ever change together.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::error::LabError;

/// Environment variables the lab reads. The CLI documents them in `--help`.
pub struct EnvVars;

impl EnvVars {
    /// Lab name when `--lab` is not given (default `lab`).
    pub const LAB: &'static str = "DROVER_LAB";
    /// Replaces `/var/lib/drover-lab`, the root of per-lab state.
    pub const DIR: &'static str = "DROVER_LAB_DIR";
    /// Replaces `/var/cache/drover-lab`, where the base root filesystem is cached.
    pub const CACHE: &'static str = "DROVER_LAB_CACHE";
    /// Debian mirror URL for debootstrap (default: read from apt's sources).
    pub const MIRROR: &'static str = "DROVER_LAB_MIRROR";
    /// `kernel`, `userspace` or `auto` (default): how delay/loss/rate faults
    /// are emulated. See [`NetemMode`].
    pub const NETEM: &'static str = "DROVER_LAB_NETEM";
}

/// Default lab name.
pub const DEFAULT_LAB: &str = "lab";
/// Hosts per lab: addresses `.11` to `.250`.
pub const MAX_HOSTS: usize = 240;
/// Lab indexes 0..=254, one /24 each in 10.213.0.0/16.
pub const MAX_INDEX: u8 = 254;

/// How delay, loss and rate faults are emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetemMode {
    /// `tc netem` when the kernel has `sch_netem`, else userspace.
    Auto,
    /// Only `tc netem`; fail if the kernel lacks it.
    Kernel,
    /// Always the userspace link emulator (see [`crate::wire`]).
    Userspace,
}

/// The program `fault` starts as the userspace link emulator: it must end up
/// calling [`crate::wire::run`] with the arguments appended to `args`.
#[derive(Debug, Clone)]
pub struct WireHelper {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Machine-wide settings: where labs and the base cache live.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub state_root: PathBuf,
    pub cache_root: PathBuf,
    pub mirror: Option<String>,
    pub netem: NetemMode,
    /// Needed only for userspace-emulated faults.
    pub wire_helper: Option<WireHelper>,
}

impl LabConfig {
    /// Defaults overridden by [`EnvVars`].
    pub fn from_env() -> LabConfig {
        let var = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        let netem = match std::env::var(EnvVars::NETEM).as_deref() {
            Ok("kernel") => NetemMode::Kernel,
            Ok("userspace") => NetemMode::Userspace,
            _ => NetemMode::Auto,
        };
        LabConfig {
            state_root: var(EnvVars::DIR).map_or_else(|| PathBuf::from("/var/lib/drover-lab"), PathBuf::from),
            cache_root: var(EnvVars::CACHE).map_or_else(|| PathBuf::from("/var/cache/drover-lab"), PathBuf::from),
            mirror: std::env::var(EnvVars::MIRROR).ok().filter(|m| !m.is_empty()),
            netem,
            wire_helper: None,
        }
    }

    /// The directory of lab `name`, after checking the name.
    pub fn lab_paths(&self, name: &str) -> Result<LabPaths, LabError> {
        validate_name(name)?;
        Ok(LabPaths { dir: self.state_root.join(name) })
    }

    /// Serialises index allocation and base builds between labs.
    pub(crate) fn global_lock(&self) -> PathBuf {
        self.state_root.join(".lock")
    }
}

/// A lab name is used in paths and in a link alias.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName(name.to_string()))
    }
}

/// Files of one lab under the state root.
#[derive(Debug, Clone)]
pub struct LabPaths {
    pub dir: PathBuf,
}

impl LabPaths {
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }
    pub fn host_dir(&self, n: u16) -> PathBuf {
        self.dir.join("hosts").join(host_name(n))
    }
    pub fn merged(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("merged")
    }
    pub fn upper(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("upper")
    }
    pub fn work(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("work")
    }
    pub fn console_log(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("console.log")
    }
    pub fn wire_pidfile(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("wire.pid")
    }
    pub fn wire_log(&self, n: u16) -> PathBuf {
        self.host_dir(n).join("wire.log")
    }
}

/// `h<n>`, 1-based.
pub fn host_name(n: u16) -> String {
    format!("h{n}")
}

/// `h7` -> 7.
pub fn parse_host_name(name: &str) -> Option<u16> {
    let n: u16 = name.strip_prefix('h')?.parse().ok()?;
    (n >= 1 && usize::from(n) <= MAX_HOSTS && name == host_name(n)).then_some(n)
}

/// Kernel object names of the lab with index `idx`. All start with `dl<idx>`
/// and fit in IFNAMSIZ (15 characters).
#[derive(Debug, Clone, Copy)]
pub struct Naming {
    pub idx: u8,
}

/// What a kernel object name means, when it belongs to a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabObject {
    Bridge,
    /// Root-side end of host n's veth (the host's `eth0` is its peer).
    Veth(u16),
    /// Bridge port of host n's link emulator pair.
    WireBridgeSide(u16),
    /// Link emulator side of that pair.
    WireSide(u16),
    /// Host n's network namespace.
    Netns(u16),
}

impl Naming {
    pub fn bridge(self) -> String {
        format!("dl{}br", self.idx)
    }
    pub fn netns(self, n: u16) -> String {
        format!("dl{}h{n}", self.idx)
    }
    pub fn veth(self, n: u16) -> String {
        format!("dl{}v{n}", self.idx)
    }
    pub fn wire_bridge_side(self, n: u16) -> String {
        format!("dl{}x{n}", self.idx)
    }
    pub fn wire_side(self, n: u16) -> String {
        format!("dl{}y{n}", self.idx)
    }
    /// The bastion of a lab brought up with `--bastion` is host number 0.
    pub const BASTION: u16 = 0;
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.idx, 1)
    }
    pub fn address(self, n: u16) -> Ipv4Addr {
        // n <= MAX_HOSTS (240) is checked before any address is made.
        let last = u8::try_from(10 + usize::from(n)).expect("host number checked against MAX_HOSTS");
        Ipv4Addr::new(10, 213, self.idx, last)
    }
    /// The link alias that ties the bridge (and so the index) to a lab name,
    /// so `down` can find the index when the state file is lost.
    pub fn bridge_alias(lab: &str) -> String {
        format!("drover-lab:{lab}")
    }

    /// Parse any lab object name (`dl3v12`, `dl3br`, `dl3h12`) into its
    /// index and meaning.
    pub fn parse(name: &str) -> Option<(u8, LabObject)> {
        let rest = name.strip_prefix("dl")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (idx, rest) = rest.split_at(digits);
        if idx.is_empty() || (idx.len() > 1 && idx.starts_with('0')) {
            return None;
        }
        let idx: u8 = idx.parse().ok().filter(|i| *i <= MAX_INDEX)?;
        if rest == "br" {
            return Some((idx, LabObject::Bridge));
        }
        let kind = rest.chars().next()?;
        let n: u16 = rest[1..].parse().ok()?;
        // n = 0 is the bastion (`up --bastion`).
        if rest[1..] != n.to_string() {
            return None;
        }
        let obj = match kind {
            'v' => LabObject::Veth(n),
            'x' => LabObject::WireBridgeSide(n),
            'y' => LabObject::WireSide(n),
            'h' => LabObject::Netns(n),
            _ => return None,
        };
        Some((idx, obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_round_trip() {
        let n = Naming { idx: MAX_INDEX };
        let last = u16::try_from(MAX_HOSTS).unwrap();
        for name in [n.bridge(), n.netns(last), n.veth(last), n.wire_bridge_side(last), n.wire_side(last)] {
            assert!(name.len() <= 15, "{name}");
        }
        assert_eq!(Naming::parse(&n.veth(7)), Some((254, LabObject::Veth(7))));
        assert_eq!(Naming::parse(&n.bridge()), Some((254, LabObject::Bridge)));
        assert_eq!(Naming::parse("dl1h3"), Some((1, LabObject::Netns(3))));
        assert_eq!(Naming::parse("dl12v5").map(|p| p.0), Some(12));
        assert_eq!(Naming::parse("dl1h0"), Some((1, LabObject::Netns(0))), "the bastion's namespace");
        for bad in ["dl", "dlbr", "dl01br", "dl1v05", "dl300br", "dl1q2", "eth0", "dl1br2"] {
            assert_eq!(Naming::parse(bad), None, "{bad}");
        }
        assert_eq!(n.address(240), Ipv4Addr::new(10, 213, 254, 250));
    }

    #[test]
    fn lab_names() {
        for ok in ["lab", "t-1_x", "9"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-x", "A", "a/b", "..", &"x".repeat(33)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_host_name("h3"), Some(3));
        assert_eq!(parse_host_name("h03"), None);
        assert_eq!(parse_host_name("h0"), None);
        assert_eq!(parse_host_name("h241"), None);
    }
}
