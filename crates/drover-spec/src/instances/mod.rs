//! Service instances: several per host (`instances = N`) or placed over the
//! fleet by count (`[placement]`), each with its own ports, supervisor unit
//! and health check (docs/project.md#service-instances).
//!
//! An instance is `<service>-<index>` (`node-3`), its index 0-based and
//! stable: scaling 12 → 18 adds node-12..node-17, 18 → 9 removes
//! node-9..node-17. A service with neither `instances` nor `[placement]`
//! is one instance per host, named as the service, exactly as before.

pub mod placement;
pub mod ports;

use std::collections::BTreeMap;
use std::ops::Range;

use drover_proto::Facts;
use serde::{Deserialize, Serialize};

/// One instance, as templates (`fleet.services.<s>[i]`, `instance`) and
/// `drover endpoints --json` see it. Fields in alphabetical order, so the
/// JSON of both is the same byte for byte whatever the serialiser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The host's address (from the inventory).
    pub address: String,
    pub host: String,
    pub index: u32,
    pub name: String,
    pub ports: BTreeMap<String, u16>,
    pub service: String,
}

/// Every service's instances, ordered by index (then host, for services
/// with one instance per host).
pub type Endpoints = BTreeMap<String, Vec<Instance>>;

/// How many instances a service has, and where.
#[derive(Debug, Clone)]
pub(crate) enum Scale {
    /// One per host with the service's role, named as the service.
    Plain,
    /// `instances = N` on every host with the service's role.
    Fixed(u32),
    Placed(Placement),
}

/// A service's `[placement]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub count: u32,
    pub max_per_host: Option<u32>,
    pub spread: Option<(Spread, Range<usize>)>,
    pub requires: Option<(Requires, Range<usize>)>,
    pub pinned: Vec<(String, Range<usize>)>,
}

/// What `spread` groups hosts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spread {
    /// A host var (`spread = "rack"`).
    Var(String),
    /// The host's first group whose name starts with the prefix
    /// (`spread = "group:rack-"`).
    Group(String),
}

impl Spread {
    pub fn parse(s: &str) -> Spread {
        match s.strip_prefix("group:") {
            Some(p) => Spread::Group(p.to_string()),
            None => Spread::Var(s.to_string()),
        }
    }
}

/// `requires`: what a host's facts must show.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requires {
    pub cpus: Option<u32>,
    /// Bytes, and as written (for messages).
    pub mem: Option<(u64, String)>,
}

impl Requires {
    /// Why a host with these (cached) facts does not qualify, if it does not.
    pub fn unmet(&self, facts: Option<&Facts>) -> Option<String> {
        let Some(f) = facts else { return Some("have no cached facts".into()) };
        if let Some(c) = self.cpus.filter(|c| f.cpus < *c) {
            return Some(format!("lack cpus >= {c}"));
        }
        if let Some((_, text)) = self.mem.as_ref().filter(|(m, _)| f.mem_bytes < *m) {
            return Some(format!("lack mem >= {text}"));
        }
        None
    }
}

/// `"4GiB"`, `"512MiB"`, `"2G"`, `"1048576"`: bytes (binary units).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("4 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("GiB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn requires_names_what_a_host_lacks() {
        let r = Requires { cpus: Some(2), mem: Some((4 << 30, "4GiB".into())) };
        assert_eq!(r.unmet(None).as_deref(), Some("have no cached facts"));
        let f = Facts { cpus: 1, mem_bytes: 8 << 30, ..Default::default() };
        assert_eq!(r.unmet(Some(&f)).as_deref(), Some("lack cpus >= 2"));
        let f = Facts { cpus: 4, mem_bytes: 1 << 30, ..Default::default() };
        assert_eq!(r.unmet(Some(&f)).as_deref(), Some("lack mem >= 4GiB"));
        let f = Facts { cpus: 4, mem_bytes: 8 << 30, ..Default::default() };
        assert_eq!(r.unmet(Some(&f)), None);
    }
}
