//! From what the file says to what each host is, by Ansible's rules.
//!
//! Every group hangs under `all` (directly or through `children`), a host in
//! no group is in `ungrouped`, and a group's depth is its longest path from
//! `all`. Ansible merges vars over a host's groups sorted by (depth,
//! `ansible_group_priority`, name), then the host's own: the same order is
//! used here for connection settings and written as the host's `groups`.

use std::collections::{BTreeMap, BTreeSet};

use drover_spec::SpecError;

use super::mapping::{classify, proxy_jump, Conn, Kind};
use super::{value, Finding, Imported, Model, Src, Var, Vars};

/// Where a variable was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Host(String),
    Group(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Host(_) => "host",
            Scope::Group(_) => "group",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Host(n) | Scope::Group(n) => n,
        }
    }
}

/// A host as drover's inventory will have it. `None`: drover's default.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedHost {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key: Option<String>,
    pub password: Option<String>,
    /// `proxy-jump`, from a ProxyJump in the SSH arguments.
    pub proxy_jump: Option<String>,
    /// In Ansible's var precedence order, lowest first.
    pub groups: Vec<String>,
    /// The host's own (non-connection) vars.
    pub vars: toml::Table,
}

pub fn resolve(src: &Src<'_>, mut m: Model) -> Result<Imported, SpecError> {
    m.group("all", 1);
    m.group("ungrouped", 1);
    let parents = hang_under_all(&mut m);
    let depth = depths(src, &m)?;
    if m.hosts.is_empty() {
        return Err(SpecError::file(
            std::path::Path::new(src.name),
            "no hosts in this inventory",
            "check it is the right file: an Ansible inventory lists hosts (under [group] sections, or `hosts:` in YAML)",
        ));
    }
    let priority = |g: &str| -> i64 {
        let v = m.groups[g].vars.get("ansible_group_priority");
        v.and_then(|v| v.value.as_ref().ok()).and_then(toml::Value::as_integer).unwrap_or(1)
    };
    let mut findings = Vec::new();
    let mut group_vars = BTreeMap::new();
    for (name, g) in &m.groups {
        let t = plain_vars(src, &Scope::Group(name.clone()), &g.vars, &mut findings);
        if !t.is_empty() {
            group_vars.insert(name.clone(), t);
        }
    }
    let mut direct: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (g, group) in &m.groups {
        for h in &group.hosts {
            direct.entry(h.as_str()).or_default().insert(g.as_str());
        }
    }
    let mut hosts = Vec::new();
    let mut used = BTreeSet::new();
    for (name, decl) in &m.hosts {
        let mut member = direct.remove(name.as_str()).unwrap_or_default();
        if member.iter().all(|g| *g == "all") {
            member.insert("ungrouped");
        }
        let mut todo: Vec<&str> = member.iter().copied().collect();
        while let Some(g) = todo.pop() {
            for p in parents.get(g).into_iter().flatten() {
                if member.insert(p) {
                    todo.push(p);
                }
            }
        }
        member.insert("all");
        let mut order: Vec<&str> = member.into_iter().collect();
        order.sort_by_key(|g| (depth[*g], priority(g), g.to_string()));
        let layers: Vec<&Vars> = order.iter().map(|g| &m.groups[*g].vars).chain([&decl.vars]).collect();
        let conn = connection(src, &layers)?;
        let scope = Scope::Host(name.clone());
        let groups: Vec<String> = order
            .iter()
            .filter(|g| !matches!(**g, "all" | "ungrouped") || group_vars.contains_key(**g))
            .map(|g| g.to_string())
            .collect();
        used.extend(groups.iter().cloned());
        hosts.push(ImportedHost {
            name: name.clone(),
            address: conn.address.unwrap_or_else(|| name.clone()),
            port: conn.port,
            user: conn.user,
            key: conn.key,
            password: conn.password,
            proxy_jump: conn.proxy_jump,
            groups,
            vars: plain_vars(src, &scope, &decl.vars, &mut findings),
        });
    }
    group_vars.retain(|g, _| used.contains(g));
    Ok(Imported { source: src.name.to_string(), hosts, groups: used, group_vars, findings })
}

/// Parent groups of each group; groups nobody lists as a child become
/// children of `all`, as in Ansible.
fn hang_under_all(m: &mut Model) -> BTreeMap<String, BTreeSet<String>> {
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, g) in &m.groups {
        for c in &g.children {
            parents.entry(c.clone()).or_default().insert(name.clone());
        }
    }
    let tops: Vec<String> = m.groups.keys().filter(|g| *g != "all" && !parents.contains_key(*g)).cloned().collect();
    for t in tops {
        m.group("all", 1).children.insert(t.clone());
        parents.entry(t).or_default().insert("all".into());
    }
    parents
}

/// Longest path from `all` per group; a cycle through `children` is an error.
fn depths(src: &Src<'_>, m: &Model) -> Result<BTreeMap<String, usize>, SpecError> {
    let mut depth = BTreeMap::new();
    let mut stack = vec![];
    visit(src, m, "all", 0, &mut depth, &mut stack)?;
    // Groups that only have each other as parents are unreachable from
    // `all`: walking from one of them finds the cycle and names it.
    let unreached: Vec<&String> = m.groups.keys().filter(|n| !depth.contains_key(*n)).collect();
    for name in unreached {
        visit(src, m, name, 1, &mut depth, &mut stack)?;
    }
    Ok(depth)
}

fn visit(
    src: &Src<'_>,
    m: &Model,
    g: &str,
    d: usize,
    depth: &mut BTreeMap<String, usize>,
    stack: &mut Vec<String>,
) -> Result<(), SpecError> {
    if let Some(i) = stack.iter().position(|s| s == g) {
        let mut path = stack[i..].to_vec();
        path.push(g.to_string());
        return Err(cycle(src, m.groups[g].line, &path));
    }
    if depth.get(g).is_some_and(|&old| old >= d) {
        return Ok(());
    }
    depth.insert(g.to_string(), d);
    stack.push(g.to_string());
    for c in &m.groups[g].children {
        visit(src, m, c, d + 1, depth, stack)?;
    }
    stack.pop();
    Ok(())
}

fn cycle(src: &Src<'_>, line: usize, path: &[String]) -> SpecError {
    src.err_line(
        line,
        format!("groups contain each other: {}", path.join(" → ")),
        "a group cannot be its own child, directly or through others; remove one of the children entries",
    )
}

/// Vars that become drover vars; everything else at this scope becomes a
/// finding (connection settings are taken per host in [`connection`]).
fn plain_vars(src: &Src<'_>, scope: &Scope, vars: &Vars, findings: &mut Vec<Finding>) -> toml::Table {
    let mut out = toml::Table::new();
    for (k, var) in vars {
        let mut note = |why: &str, kept| {
            findings.push(Finding { at: src.at(var.line), scope: scope.clone(), key: k.clone(), why: why.into(), kept })
        };
        let v = match &var.value {
            Err(why) => {
                note(why, false);
                continue;
            }
            Ok(v) => v,
        };
        match classify(k, Some(v)) {
            Kind::Plain => {
                if value::templated(v) {
                    note("a Jinja expression Ansible would evaluate; drover keeps the text as is", true);
                }
                out.insert(k.clone(), v.clone());
            }
            Kind::Unmapped(why) => note(why, false),
            Kind::Conn(_) if value::templated(v) => {
                note("a Jinja expression drover cannot evaluate; set this connection setting by hand", false)
            }
            Kind::Conn(Conn::Key) if v.as_str().is_some_and(|p| !p.starts_with(['/', '~'])) => note(
                "a relative path: drover reads it from the project directory, Ansible from where it runs; check it",
                true,
            ),
            Kind::Conn(Conn::ProxyJump) => {
                let rest = v.as_str().and_then(|a| proxy_jump(a).ok()).map(|(_, rest)| rest).unwrap_or_default();
                if !rest.is_empty() {
                    let why = format!(
                        "its ProxyJump became proxy-jump; the other OpenSSH options ({}) were not imported: \
                         drover's SSH client is built in",
                        rest.join(" ")
                    );
                    note(&why, true);
                }
            }
            Kind::Conn(_) | Kind::Priority | Kind::Redundant => {}
        }
    }
    out
}

#[derive(Default)]
struct Connection {
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key: Option<String>,
    password: Option<String>,
    proxy_jump: Option<String>,
}

/// The host's connection settings: the last layer that sets each wins.
fn connection(src: &Src<'_>, layers: &[&Vars]) -> Result<Connection, SpecError> {
    let mut winners: BTreeMap<Conn, (&str, &Var, &toml::Value)> = BTreeMap::new();
    for vars in layers {
        for (k, var) in *vars {
            let Ok(v) = &var.value else { continue };
            if let Kind::Conn(c) = classify(k, Some(v)) {
                if !value::templated(v) {
                    winners.insert(c, (k, var, v));
                }
            }
        }
    }
    let mut out = Connection::default();
    for (c, (k, var, v)) in winners {
        let text = match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            _ => None,
        };
        let bad =
            |what: &str| src.err_line(var.line, format!("{k} must be {what}, found {v}"), format!("set {k} to {what}"));
        match c {
            Conn::Port => {
                let p = text.and_then(|t| t.parse::<u16>().ok()).filter(|&p| p > 0);
                out.port = Some(p.ok_or_else(|| bad("a port number (1-65535)"))?);
            }
            Conn::Address => out.address = Some(text.ok_or_else(|| bad("a host name or IP address"))?),
            Conn::User => out.user = Some(text.ok_or_else(|| bad("a user name"))?),
            Conn::Key => out.key = Some(text.ok_or_else(|| bad("a file path"))?),
            Conn::Password => out.password = Some(text.ok_or_else(|| bad("a string"))?),
            Conn::ProxyJump => {
                let (jump, _) = text.as_deref().and_then(|t| proxy_jump(t).ok()).ok_or_else(|| bad("SSH arguments"))?;
                drover_spec::jump::parse(&jump).map_err(|why| {
                    src.err_line(var.line, format!("{k}: ProxyJump {why}"), "write the jump as user@host:port")
                })?;
                out.proxy_jump = Some(jump);
            }
        }
    }
    Ok(out)
}
