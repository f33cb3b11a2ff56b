//! Port ranges (`[ports] p2p = "30300-30399"`) and giving each instance on a
//! host its own port from each.
//!
//! Why by index: instance `i` prefers port `start + i mod size`, so while a
//! range has at least as many ports as the service has instances, an
//! instance's port is `start + i` on whatever host it runs, whatever else
//! moves or scales. A smaller range still works as long as each host's
//! instances fit in it: an instance whose preferred port is taken on its
//! host (by a lower index) takes the next free one.

use std::collections::BTreeSet;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// `"30300-30399"` or `"8080"`.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{:?} is not a port (1-65535)", p.trim())),
                Ok(n) => Ok(n),
            }
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if a > b {
            return Err(format!("{s:?} runs backwards ({a} > {b})"));
        }
        Ok(PortRange { start: a, end: b })
    }

    pub fn size(&self) -> u32 {
        u32::from(self.end - self.start) + 1
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ports for the instances of one service on one host, given by their
/// indexes in ascending order; `None` when they do not fit in the range.
pub fn allocate(range: PortRange, indexes: &[u32]) -> Option<Vec<u16>> {
    let size = range.size();
    if indexes.len() as u64 > u64::from(size) {
        return None;
    }
    let mut used = BTreeSet::new();
    let mut out = Vec::with_capacity(indexes.len());
    for &i in indexes {
        let mut p = i % size;
        while !used.insert(p) {
            p = (p + 1) % size;
        }
        out.push(range.start + u16::try_from(p).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_say_why() {
        assert_eq!(PortRange::parse("30300-30399"), Ok(PortRange { start: 30300, end: 30399 }));
        assert_eq!(PortRange::parse("8080").map(|r| r.size()), Ok(1));
        assert!(PortRange::parse("9-1").unwrap_err().contains("backwards"));
        assert!(PortRange::parse("0-10").unwrap_err().contains("not a port"));
        assert!(PortRange::parse("70000").unwrap_err().contains("not a port"));
        assert!(PortRange::parse("a-b").unwrap_err().contains("not a port"));
    }

    #[test]
    fn an_instance_keeps_start_plus_index_while_the_range_covers_the_count() {
        let r = PortRange::parse("30300-30399").unwrap();
        assert_eq!(allocate(r, &[3, 7, 50]), Some(vec![30303, 30307, 30350]));
        assert_eq!(allocate(r, &[7]), Some(vec![30307]));
    }

    #[test]
    fn a_small_range_wraps_and_refuses_more_instances_than_ports() {
        let r = PortRange::parse("100-102").unwrap();
        assert_eq!(allocate(r, &[0, 3, 4]), Some(vec![100, 101, 102]));
        assert_eq!(allocate(r, &[0, 1, 2, 3]), None);
    }
}
