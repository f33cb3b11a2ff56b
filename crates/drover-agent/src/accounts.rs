//! User and group names → ids, read from the host's own `/etc/passwd` and
//! `/etc/group`.
//!
//! We parse the files instead of calling `getpwnam`: the agent is linked
//! statically against glibc, where NSS lookups are unreliable, and under a
//! simulated root we want that root's accounts, not the machine's.

use std::collections::HashMap;

use crate::layout::Layout;
use crate::{bail, Result};

/// The id [`Accounts::with_declared`] gives accounts that do not exist yet
/// and declare no id (never a real owner: `(uid_t)-2` is reserved).
pub const NOT_YET_CREATED: u32 = u32::MAX - 1;

#[derive(Debug, Default, Clone)]
pub struct Accounts {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Accounts {
    pub fn load(layout: &Layout) -> Accounts {
        let read = |p: &str| std::fs::read_to_string(layout.target(p)).unwrap_or_default();
        Accounts { users: parse(&read("/etc/passwd")), groups: parse(&read("/etc/group")) }
    }

    pub fn uid(&self, name: &str) -> Result<u32> {
        match self.users.get(name) {
            Some(id) => Ok(*id),
            None if name == "root" => Ok(0),
            None => name.parse().or_else(|_| bail!("user {name:?} does not exist on this host")),
        }
    }

    pub fn gid(&self, name: &str) -> Result<u32> {
        match self.groups.get(name) {
            Some(id) => Ok(*id),
            None if name == "root" => Ok(0),
            None => name.parse().or_else(|_| bail!("group {name:?} does not exist on this host")),
        }
    }

    /// The id of an existing user (no fallbacks: for "does it exist").
    pub fn user_id(&self, name: &str) -> Option<u32> {
        self.users.get(name).copied()
    }

    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied()
    }

    /// These accounts plus the ones `setup` will create, for comparing a
    /// generation with the host before they exist: a declared id is used as
    /// is; an account without one gets an id no file has yet
    /// ([`NOT_YET_CREATED`]), so files it owns count as changing, and the
    /// comparison is made again once the account exists.
    pub fn with_declared(&self, setup: &drover_proto::Setup) -> Accounts {
        let mut a = self.clone();
        for g in &setup.groups {
            a.groups.entry(g.name.clone()).or_insert(g.gid.unwrap_or(NOT_YET_CREATED));
        }
        for u in &setup.users {
            a.users.entry(u.name.clone()).or_insert(u.uid.unwrap_or(NOT_YET_CREATED));
            // useradd -U makes a group named like the user.
            if u.group.is_none() {
                a.groups.entry(u.name.clone()).or_insert(NOT_YET_CREATED);
            }
        }
        a
    }

    /// The name of user `uid`, when the host's `/etc/passwd` has one.
    pub fn user_name(&self, uid: u32) -> Option<String> {
        name_of(&self.users, uid)
    }

    /// The name of group `gid`, when the host's `/etc/group` has one.
    pub fn group_name(&self, gid: u32) -> Option<String> {
        name_of(&self.groups, gid)
    }
}

/// The first name (alphabetically, so the answer is stable) with this id.
fn name_of(map: &HashMap<String, u32>, id: u32) -> Option<String> {
    map.iter().filter(|(_, v)| **v == id).map(|(k, _)| k).min().cloned()
}

/// `name:x:id:...` lines; anything malformed is skipped.
fn parse(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let m = parse("root:x:0:0:root:/root:/bin/sh\nop:x:1000:1000::/home/op:/bin/sh\nbroken\n");
        assert_eq!(m["op"], 1000);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn ids_map_back_to_names() {
        let a = Accounts { users: parse("root:x:0:0::/:/bin/sh\nop:x:1000:1000::/:/bin/sh\n"), groups: HashMap::new() };
        assert_eq!(a.user_name(1000).as_deref(), Some("op"));
        assert_eq!(a.user_name(4242), None);
        assert_eq!(a.group_name(0), None);
    }

    #[test]
    fn unknown_names_are_errors_but_numbers_pass() {
        let a = Accounts::default();
        assert_eq!(a.uid("root").unwrap(), 0);
        assert_eq!(a.uid("1234").unwrap(), 1234);
        assert!(a.uid("www-data").unwrap_err().0.contains("does not exist"));
    }
}
