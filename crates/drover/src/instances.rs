//! Instance changes for people: what `drover scale` and `drover plan` say
//! about service instances (added, removed, moved to another host), and the
//! edit `drover scale` makes.
//!
//! `scale` compares the placement before and after its edit (no host is
//! contacted: placement is a function of the project and the fact cache).
//! `plan` reads it from what the hosts report: an instance whose unit a host
//! would stop while another would start it is a move.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use drover_proto::{ServiceAction, ServiceRestart};
use drover_spec::Endpoints;
use serde::Serialize;

/// One instance's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum InstanceChange {
    Added { name: String, host: String },
    Removed { name: String, host: String },
    Moved { name: String, from: String, to: String },
}

impl InstanceChange {
    fn name(&self) -> &str {
        match self {
            InstanceChange::Added { name, .. }
            | InstanceChange::Removed { name, .. }
            | InstanceChange::Moved { name, .. } => name,
        }
    }
}

/// Changes from the hosts each instance name leaves and joins: one host
/// left and one joined is a move; anything else is adds and removes.
fn changes(
    left: BTreeMap<String, BTreeSet<String>>,
    joined: BTreeMap<String, BTreeSet<String>>,
) -> Vec<InstanceChange> {
    let names: BTreeSet<&String> = left.keys().chain(joined.keys()).collect();
    let none = BTreeSet::new();
    let mut out = Vec::new();
    for n in names {
        let (l, j) = (left.get(n).unwrap_or(&none), joined.get(n).unwrap_or(&none));
        if l.len() == 1 && j.len() == 1 {
            let (from, to) =
                (l.iter().next().cloned().unwrap_or_default(), j.iter().next().cloned().unwrap_or_default());
            out.push(InstanceChange::Moved { name: n.clone(), from, to });
            continue;
        }
        out.extend(l.iter().map(|h| InstanceChange::Removed { name: n.clone(), host: h.clone() }));
        out.extend(j.iter().map(|h| InstanceChange::Added { name: n.clone(), host: h.clone() }));
    }
    out.sort_by_cached_key(|c| natural(c.name()));
    out
}

/// Sort node-2 before node-10.
fn natural(s: &str) -> (String, u64) {
    match s.rsplit_once('-') {
        Some((a, b)) if b.bytes().all(|c| c.is_ascii_digit()) => (a.to_string(), b.parse().unwrap_or(0)),
        _ => (s.to_string(), 0),
    }
}

/// Placement before and after (e.g. of a `scale` edit), for instances with
/// an index suffix (services with `instances` or `[placement]`).
pub fn diff(before: &Endpoints, after: &Endpoints) -> Vec<InstanceChange> {
    let hosts = |e: &Endpoints| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for i in e.values().flatten().filter(|i| i.name != i.service) {
            m.entry(i.name.clone()).or_default().insert(i.host.clone());
        }
        m
    };
    let (b, a) = (hosts(before), hosts(after));
    let minus = |x: &BTreeMap<String, BTreeSet<String>>, y: &BTreeMap<String, BTreeSet<String>>| {
        x.iter()
            .map(|(n, hs)| (n.clone(), hs.difference(y.get(n).unwrap_or(&BTreeSet::new())).cloned().collect()))
            .filter(|(_, hs): &(String, BTreeSet<String>)| !hs.is_empty())
            .collect()
    };
    changes(minus(&b, &a), minus(&a, &b))
}

/// What `plan` found: instance units hosts would stop and start
/// (`name:stop`, `name:start` in their reports). Only names of the form
/// `<service>-<index>` for a service of the project count.
pub fn from_restarts<'a>(
    hosts: impl IntoIterator<Item = (&'a str, &'a [ServiceRestart])>,
    services: &BTreeSet<String>,
) -> Vec<InstanceChange> {
    let is_instance = |n: &str| {
        n.rsplit_once('-')
            .is_some_and(|(s, i)| services.contains(s) && !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()))
    };
    let mut left: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut joined: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (host, restarts) in hosts {
        for s in restarts {
            let (map, name) = match s.action {
                ServiceAction::Stop => (&mut left, s.name.as_str()),
                ServiceAction::Start => (&mut joined, s.name.as_str()),
                ServiceAction::Restart | ServiceAction::Reload => continue,
            };
            if is_instance(name) {
                map.entry(name.to_string()).or_default().insert(host.to_string());
            }
        }
    }
    changes(left, joined)
}

/// The changes as lines for people ("" when there are none).
pub fn render(changes: &[InstanceChange]) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut out = String::from("\ninstances:\n");
    for c in changes {
        let _ = match c {
            InstanceChange::Added { name, host } => writeln!(out, "  + {name} on {host}"),
            InstanceChange::Removed { name, host } => writeln!(out, "  - {name} on {host}"),
            InstanceChange::Moved { name, from, to } => writeln!(out, "  > {name} moves {from} -> {to}"),
        };
    }
    let count = |f: fn(&InstanceChange) -> bool| changes.iter().filter(|c| f(c)).count();
    let _ = writeln!(
        out,
        "{} added, {} removed, {} moved",
        count(|c| matches!(c, InstanceChange::Added { .. })),
        count(|c| matches!(c, InstanceChange::Removed { .. })),
        count(|c| matches!(c, InstanceChange::Moved { .. }))
    );
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{0}: no such service file (services: {1})")]
    NoService(PathBuf, String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid TOML: {source}")]
    Parse { path: PathBuf, source: toml_edit::TomlError },
    #[error(
        "{0}: service {1} runs one instance per host (no `instances`, no [placement]); \
         add `instances = N` (N on every host with its role) or a [placement] table with `count = N` (N over those hosts) first"
    )]
    NotScalable(PathBuf, String),
}

/// What a `scale` edit changed.
pub struct ScaleEdit {
    pub path: PathBuf,
    /// `placement.count` or `instances`.
    pub key: &'static str,
    pub old: i64,
    /// The file as it was, to put back if the new count cannot be placed.
    pub original: String,
}

/// Set `placement.count` (or `instances`) of `services/<service>.toml` to
/// `n`, keeping every comment and the layout (toml_edit).
pub fn edit_count(project: &Path, service: &str, n: u32) -> Result<ScaleEdit, ScaleError> {
    let path = project.join("services").join(format!("{service}.toml"));
    let original = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut names: Vec<String> = std::fs::read_dir(project.join("services"))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            return Err(ScaleError::NoService(path, names.join(", ")));
        }
        Err(source) => return Err(ScaleError::Io { path, source }),
    };
    let mut doc: toml_edit::DocumentMut =
        original.parse().map_err(|source| ScaleError::Parse { path: path.clone(), source })?;
    let (key, item) = if let Some(p) = doc.get_mut("placement").and_then(|p| p.as_table_like_mut()) {
        ("placement.count", p.get_mut("count"))
    } else {
        ("instances", doc.get_mut("instances"))
    };
    let Some(item) = item else { return Err(ScaleError::NotScalable(path, service.to_string())) };
    let old = item.as_integer().unwrap_or(0);
    // Keep the comment and spacing around the number.
    let decor = item.as_value().map(|v| v.decor().clone());
    let mut v = toml_edit::Value::from(i64::from(n));
    if let Some(d) = decor {
        *v.decor_mut() = d;
    }
    *item = toml_edit::Item::Value(v);
    std::fs::write(&path, doc.to_string()).map_err(|source| ScaleError::Io { path: path.clone(), source })?;
    Ok(ScaleEdit { path, key, old, original })
}

/// `drover endpoints`: one service's instances, or every service's.
pub fn select(all: &Endpoints, service: Option<&str>) -> Result<Endpoints, String> {
    match service {
        None => Ok(all.clone()),
        Some(s) => match all.get(s) {
            Some(list) => Ok([(s.to_string(), list.clone())].into()),
            None => Err(format!(
                "no service {s:?} runs on any host of the inventory (services: {})",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
    }
}

/// The instances as a table for people.
pub fn table(e: &Endpoints) -> String {
    let rows: Vec<[String; 5]> = e
        .values()
        .flatten()
        .map(|i| {
            let ports: Vec<String> = i.ports.iter().map(|(n, p)| format!("{n}={p}")).collect();
            [i.service.clone(), i.name.clone(), i.host.clone(), i.address.clone(), ports.join(" ")]
        })
        .collect();
    let head = ["SERVICE", "INSTANCE", "HOST", "ADDRESS", "PORTS"].map(String::from);
    let w: Vec<usize> = (0..4).map(|c| rows.iter().chain([&head]).map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let _ = writeln!(
            out,
            "{:<a$}  {:<b$}  {:<c$}  {:<d$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_edits_only_the_count_and_keeps_comments() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("services")).unwrap();
        let text = "# nodes\ncommand = \"x\" # run it\n\n[placement]\ncount = 12   # a dozen\nmax-per-host = 4\n";
        std::fs::write(t.path().join("services/node.toml"), text).unwrap();
        let e = edit_count(t.path(), "node", 18).unwrap();
        assert_eq!((e.key, e.old), ("placement.count", 12));
        let now = std::fs::read_to_string(t.path().join("services/node.toml")).unwrap();
        assert_eq!(now, text.replace("count = 12 ", "count = 18 "));

        std::fs::write(t.path().join("services/fixed.toml"), "command = \"x\"\ninstances = 2 # two\n").unwrap();
        edit_count(t.path(), "fixed", 3).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("services/fixed.toml")).unwrap(),
            "command = \"x\"\ninstances = 3 # two\n"
        );

        std::fs::write(t.path().join("services/web.toml"), "command = \"x\"\n").unwrap();
        assert!(matches!(edit_count(t.path(), "web", 3), Err(ScaleError::NotScalable(..))));
        let e = edit_count(t.path(), "nope", 3).err().unwrap().to_string();
        assert!(e.contains("no such service file (services: fixed, node, web)"), "{e}");
    }

    #[test]
    fn one_host_left_and_one_joined_is_a_move() {
        let parse = |s: &str| {
            let (name, action) = match s.split_once(':') {
                Some((n, "stop")) => (n, ServiceAction::Stop),
                Some((n, "start")) => (n, ServiceAction::Start),
                _ => (s, ServiceAction::Restart),
            };
            ServiceRestart { name: name.into(), action }
        };
        let r = |host: &'static str, restarts: &[&str]| (host, restarts.iter().map(|s| parse(s)).collect::<Vec<_>>());
        let reports = [
            r("h1", &["node-3:stop", "web"]),
            r("h2", &["node-9:stop"]),
            r("h5", &["node-3:start", "node-12:start", "web:start"]),
        ];
        let services: BTreeSet<String> = ["node".to_string(), "web".to_string()].into();
        let c = from_restarts(reports.iter().map(|(h, r)| (*h, r.as_slice())), &services);
        assert_eq!(
            c,
            [
                InstanceChange::Moved { name: "node-3".into(), from: "h1".into(), to: "h5".into() },
                InstanceChange::Removed { name: "node-9".into(), host: "h2".into() },
                InstanceChange::Added { name: "node-12".into(), host: "h5".into() },
            ]
        );
        let text = render(&c);
        assert!(
            text.contains(
                "  > node-3 moves h1 -> h5\n  - node-9 on h2\n  + node-12 on h5\n1 added, 1 removed, 1 moved"
            ),
            "{text}"
        );
    }
}
