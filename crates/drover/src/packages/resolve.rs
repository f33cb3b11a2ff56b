//! The dependency closure of each role's packages against one index.
//!
//! Packages every Debian system has (Essential, Priority: required) count
//! as present and are not part of a closure; a host that has a closure
//! member at the locked version already skips it. One selection serves all
//! roles, so a host with several roles gets one consistent set.
//!
//! A base package a closure member needs at a *version* (perl needs
//! perl-base (= 5.36.0-7+deb12u4)) is recorded with that need: a host whose
//! base is behind the source's gets it (the agent decides, see
//! `drover_proto::Package::needed_by`). A base package a role asks for by
//! name is an ordinary member of its closure: installed, or upgraded to the
//! locked version, like any other.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::index::{Candidate, Dep, Index};
use super::PackageError;
use drover_proto::debversion::{compare, satisfies};

pub struct Resolution {
    /// Every package of every closure, by name.
    pub selected: BTreeMap<String, Candidate>,
    /// role → names in its closure (sorted).
    pub roles: BTreeMap<String, Vec<String>>,
    /// Base packages some locked package needs at a version: the candidate,
    /// and each need as `by (op version)`.
    pub base: BTreeMap<String, (Candidate, BTreeSet<String>)>,
}

pub fn resolve(index: &Index, requests: &BTreeMap<String, Vec<String>>) -> Result<Resolution, PackageError> {
    let base = base_system(index);
    let mut needs: BTreeMap<String, (Candidate, BTreeSet<String>)> = BTreeMap::new();
    let mut selected: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (role, reqs) in requests {
        let mut closure = BTreeSet::new();
        let mut queue = VecDeque::new();
        for req in reqs {
            let (name, version) = drover_spec::setup::split_request(req);
            let cands = index.by_name.get(name).map(|v| v.as_slice()).unwrap_or(&[]);
            if cands.is_empty() && !index.providers.contains_key(name) {
                return Err(PackageError::Unknown { package: name.into(), role: role.clone() });
            }
            let pick = match version {
                Some(v) => cands.iter().find(|c| c.version == v),
                None => best(cands.iter()),
            };
            let Some(c) = pick.or_else(|| version.is_none().then(|| provider(index, name, None)).flatten()) else {
                let available: Vec<&str> = cands.iter().map(|c| c.version.as_str()).collect();
                return Err(PackageError::Version {
                    package: name.into(),
                    version: version.unwrap_or("").into(),
                    role: role.clone(),
                    available: if available.is_empty() { "none".into() } else { available.join(", ") },
                });
            };
            select(&mut selected, c, role)?;
            if closure.insert(c.name.clone()) {
                queue.push_back(c.name.clone());
            }
        }
        while let Some(name) = queue.pop_front() {
            let c = selected[&name].clone();
            for group in &c.depends {
                let present = group.iter().any(|d| {
                    satisfied(d, selected.values()) || base.get(d.name.as_str()).is_some_and(|b| matches(d, b))
                });
                if present {
                    if !group.iter().any(|d| satisfied(d, selected.values())) {
                        need_base(&base, &mut needs, &c, group);
                    }
                    for d in group {
                        if let Some(s) = selected.get(&d.name).filter(|s| matches(d, s)) {
                            if closure.insert(s.name.clone()) {
                                queue.push_back(s.name.clone());
                            }
                        }
                    }
                    continue;
                }
                let pick = group.iter().find_map(|d| {
                    let real = index.by_name.get(&d.name).and_then(|cs| best(cs.iter().filter(|c| matches(d, c))));
                    real.or_else(|| if d.version.is_none() { provider(index, &d.name, None) } else { None })
                });
                let Some(p) = pick else {
                    let want: Vec<String> = group.iter().map(|d| d.to_string()).collect();
                    return Err(PackageError::Dependency {
                        package: c.name.clone(),
                        dep: want.join(" | "),
                        role: role.clone(),
                    });
                };
                select(&mut selected, p, role)?;
                if closure.insert(p.name.clone()) {
                    queue.push_back(p.name.clone());
                }
            }
        }
        roles.insert(role.clone(), closure.into_iter().collect());
    }
    for c in selected.values() {
        for d in &c.conflicts {
            let hit = selected.values().chain(base.values().copied()).find(|o| o.name != c.name && matches(d, o));
            if let Some(o) = hit {
                let role = roles.iter().find(|(_, n)| n.contains(&c.name)).map(|(r, _)| r.clone()).unwrap_or_default();
                return Err(PackageError::Conflict { package: c.name.clone(), other: o.name.clone(), role });
            }
        }
    }
    // What the recorded base packages need in turn, of other base packages.
    let mut queue: VecDeque<String> = needs.keys().cloned().collect();
    while let Some(name) = queue.pop_front() {
        let c = needs[&name].0.clone();
        for group in &c.depends {
            let before = needs.len();
            need_base(&base, &mut needs, &c, group);
            if needs.len() > before {
                queue.extend(group.iter().map(|d| d.name.clone()).filter(|n| n != &name));
            }
        }
    }
    Ok(Resolution { selected, roles, base: needs })
}

/// Record that `c` needs the base package of `group` at a version: only a
/// single dependency with a version (an alternative is not guessed at, as
/// in [`base_system`]) on a base package whose candidate satisfies it.
fn need_base(
    base: &BTreeMap<&str, &Candidate>,
    needs: &mut BTreeMap<String, (Candidate, BTreeSet<String>)>,
    c: &Candidate,
    group: &[Dep],
) {
    let [d] = group else { return };
    let Some((op, v)) = &d.version else { return };
    let Some(b) = base.get(d.name.as_str()).filter(|b| b.name == d.name && matches(d, b)) else { return };
    let entry = needs.entry(b.name.clone()).or_insert_with(|| ((*b).clone(), BTreeSet::new()));
    entry.1.insert(format!("{} ({op} {v})", c.name));
}

/// What every Debian system of the source's release surely has: the
/// Essential and Priority: required packages and, recursively, their
/// dependencies that have no alternative. These are never shipped.
///
/// An alternative (`usrmerge | usr-is-merged`) is not followed: which one
/// a host has depends on how it was installed (debootstrap picks
/// usr-is-merged, apt would pick usrmerge and perl with it). Guessing wrong
/// would leave a dependency unshipped and the install failing on the host;
/// not guessing ships a package the host may already have, which the agent
/// then skips.
fn base_system(index: &Index) -> BTreeMap<&str, &Candidate> {
    let seeds: Vec<&Candidate> = index.by_name.values().filter_map(|cs| best(cs.iter().filter(|c| c.base))).collect();
    let mut base: BTreeMap<&str, &Candidate> = seeds.iter().map(|c| (c.name.as_str(), *c)).collect();
    let mut queue: VecDeque<&Candidate> = seeds.into_iter().collect();
    while let Some(c) = queue.pop_front() {
        for group in c.depends.iter().filter(|g| g.len() == 1) {
            let d = &group[0];
            if base.values().any(|b| matches(d, b)) {
                continue;
            }
            let real = index.by_name.get(&d.name).and_then(|cs| best(cs.iter().filter(|c| matches(d, c))));
            if let Some(p) = real {
                base.insert(p.name.as_str(), p);
                queue.push_back(p);
            }
        }
    }
    base
}

/// The first source that has the package wins; within it, the highest version.
fn best<'a>(cs: impl Iterator<Item = &'a Candidate>) -> Option<&'a Candidate> {
    let all: Vec<&Candidate> = cs.collect();
    let first = all.iter().map(|c| c.source).min()?;
    all.into_iter().filter(|c| c.source == first).max_by(|a, b| compare(&a.version, &b.version))
}

fn provider<'a>(index: &'a Index, name: &str, _v: Option<&str>) -> Option<&'a Candidate> {
    let names = index.providers.get(name)?;
    names.iter().find_map(|n| best(index.by_name.get(n)?.iter().filter(|c| c.provides.iter().any(|(p, _)| p == name))))
}

/// Does package `c` satisfy `d` (by name and version, or by what it provides)?
fn matches(d: &Dep, c: &Candidate) -> bool {
    let ok = |v: &str| d.version.as_ref().is_none_or(|(op, want)| satisfies(v, op, want));
    (c.name == d.name && ok(&c.version))
        || c.provides.iter().any(|(p, pv)| p == &d.name && (d.version.is_none() || pv.as_deref().is_some_and(ok)))
}

fn satisfied<'a>(d: &Dep, mut set: impl Iterator<Item = &'a Candidate>) -> bool {
    set.any(|c| matches(d, c))
}

fn select(selected: &mut BTreeMap<String, Candidate>, c: &Candidate, role: &str) -> Result<(), PackageError> {
    match selected.get(&c.name) {
        Some(s) if s.version != c.version => Err(PackageError::Version {
            package: c.name.clone(),
            version: c.version.clone(),
            role: role.into(),
            available: format!("{} is already chosen for another role", s.version),
        }),
        Some(_) => Ok(()),
        None => {
            selected.insert(c.name.clone(), c.clone());
            Ok(())
        }
    }
}
