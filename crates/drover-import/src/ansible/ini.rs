//! Ansible's INI inventory format, as its `ini` inventory plugin reads it.
//!
//! ```ini
//! web1 ansible_host=10.0.0.1      # before any section: ungrouped
//! [web]                           # hosts of group `web`, with inline vars
//! web[01:03].example.com http_port=8080
//! [web:vars]                      # group vars, one key=value per line
//! ntp_server=ntp.example.com
//! [prod:children]                 # nested groups
//! web
//! ```
//!
//! Like Ansible, a `[x:children]` naming a group that is never declared, or a
//! `[x:vars]` for one, is an error (a typo would otherwise drop hosts).

use std::collections::BTreeMap;

use drover_spec::SpecError;

use super::{range, value, Model, Src, Var, Vars};

#[derive(Clone, Copy, PartialEq)]
enum State {
    Hosts,
    Vars,
    Children,
}

pub fn parse(src: &Src<'_>) -> Result<Model, SpecError> {
    let mut m = Model::default();
    // Implicit in every inventory: [all:vars] needs no [all].
    m.group("all", 1);
    m.group("ungrouped", 1);
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    // Groups referenced by `:vars`/`:children` before (or without) being
    // declared: (line, section) of the first reference.
    let mut pending: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, raw) in src.text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let (name, kind) = header(line).ok_or_else(|| {
                src.err_line(n, "not a section header", "write [group], [group:vars] or [group:children]")
            })?;
            state = match kind {
                None | Some("hosts") => State::Hosts,
                Some("vars") => State::Vars,
                Some("children") => State::Children,
                Some(other) => {
                    return Err(src.err_line(
                        n,
                        format!("section [{name}:{other}] has an unknown type `{other}`"),
                        "a section is [group], [group:vars] or [group:children]",
                    ))
                }
            };
            // [x] and [x:children] declare x; [x:vars] needs x declared somewhere.
            if state != State::Vars {
                pending.remove(&name);
                m.group(&name, n);
            } else if !m.groups.contains_key(&name) {
                pending.entry(name.clone()).or_insert((n, format!("[{name}:{}]", kind.unwrap_or(""))));
                m.group(&name, n);
            }
            group = name;
            continue;
        }
        match state {
            State::Hosts => host_line(src, &mut m, &group, line, n)?,
            State::Vars => {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    src.err_line(
                        n,
                        format!("expected key=value in [{group}:vars], found `{line}`"),
                        "write one key=value per line",
                    )
                })?;
                let var = Var { value: value::ini(v), line: n };
                m.group(&group, n).vars.insert(k.trim().to_string(), var);
            }
            State::Children => {
                let child = group_name(line).ok_or_else(|| {
                    src.err_line(n, format!("`{line}` is not a group name"), "list one child group name per line")
                })?;
                if child == group {
                    return Err(src.err_line(n, format!("group {group} lists itself as a child"), "remove the line"));
                }
                if !m.groups.contains_key(child) {
                    pending.entry(child.to_string()).or_insert((n, format!("[{group}:children]")));
                }
                m.group(child, n);
                m.group(&group, n).children.insert(child.to_string());
            }
        }
    }
    if let Some((name, (line, section))) = pending.into_iter().min_by_key(|(_, (l, _))| *l) {
        return Err(src.err_line(
            line,
            format!("{section} refers to group {name}, which is never declared"),
            format!("declare it with a [{name}] section (it may be empty), or fix the name"),
        ));
    }
    Ok(m)
}

/// `[name]`, `[name:kind]`, optionally followed by a `#` comment.
fn header(line: &str) -> Option<(String, Option<&str>)> {
    let end = line.find(']')?;
    let rest = line[end + 1..].trim();
    if !(rest.is_empty() || rest.starts_with('#') || rest.starts_with(';')) {
        return None;
    }
    let inner = &line[1..end];
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    let name = group_name(name)?;
    Some((name.to_string(), kind))
}

/// A group name: one word without `:`, `[`, `]`, optionally commented.
fn group_name(line: &str) -> Option<&str> {
    let word = line.split('#').next()?.trim();
    let ok = !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || matches!(c, ':' | '[' | ']'));
    ok.then_some(word)
}

/// `pattern [key=value …]`
fn host_line(src: &Src<'_>, m: &mut Model, group: &str, line: &str, n: usize) -> Result<(), SpecError> {
    let words = value::shell_words(line).map_err(|e| src.err_line(n, e, "close the quote"))?;
    let Some((pattern, assignments)) = words.split_first() else { return Ok(()) };
    let (names, port) = range::expand(pattern).map_err(|e| src.err_line(n, e, range_help()))?;
    let mut vars = Vars::new();
    if let Some(p) = port {
        vars.insert("ansible_port".into(), Var { value: Ok(toml::Value::Integer(p.into())), line: n });
    }
    for a in assignments {
        let (k, v) = a.split_once('=').ok_or_else(|| {
            src.err_line(
                n,
                format!("expected key=value after the host name, found `{a}`"),
                "write host variables as key=value (quote values that contain spaces)",
            )
        })?;
        vars.insert(k.to_string(), Var { value: value::ini(v), line: n });
    }
    for name in names {
        m.add_host(group, &name, vars.clone(), n);
    }
    Ok(())
}

pub fn range_help() -> &'static str {
    "write a range as name[01:03] (begin:end, or begin:end:step; letters as [a:f]) and a port as name:2222"
}
