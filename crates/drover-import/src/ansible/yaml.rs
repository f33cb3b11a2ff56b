//! Ansible's YAML inventory format, as its `yaml` inventory plugin reads it.
//!
//! ```yaml
//! all:
//!   vars: { ntp_server: ntp.example.com }
//!   children:
//!     web:
//!       hosts:
//!         web[01:03].example.com: { http_port: 8080 }
//! ```
//!
//! Every top-level key is a group; a group has only `hosts`, `vars` and
//! `children`, each a mapping (or empty). YAML nodes carry no positions once
//! parsed, so the line of a group, host or variable is found by looking for
//! `name:` in the text from the enclosing entry on: right for any inventory
//! that does not repeat a name in an unusual layout, and only used in
//! messages.

use drover_spec::SpecError;
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::{ini::range_help, range, value, Model, Src, Var, Vars};

pub fn parse(src: &Src<'_>) -> Result<Model, SpecError> {
    let doc: Yaml = serde_yaml_ng::from_str(src.text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        src.err_line(
            line,
            format!("not valid YAML: {msg}"),
            "fix the YAML at the marked line (indentation, a missing `:` or quote)",
        )
    })?;
    let mut p = Parser { src, lines: src.text.lines().collect(), m: Model::default() };
    match doc {
        Yaml::Null => {}
        Yaml::Mapping(top) => {
            let mut cursor = 1;
            for (k, v) in &top {
                let name = p.name(k, cursor)?;
                cursor = p.find(&name, cursor);
                p.group(&name, v, cursor, &mut vec![])?;
            }
        }
        _ => {
            return Err(src.err_line(
                1,
                "the inventory must be a mapping of group names (e.g. `all:`)",
                "start with `all:` and put hosts under `hosts:` and groups under `children:`",
            ))
        }
    }
    Ok(p.m)
}

struct Parser<'a, 's> {
    src: &'a Src<'s>,
    /// The text's lines, so that finding a name does not rescan from the
    /// start (10,000 hosts would make that quadratic).
    lines: Vec<&'s str>,
    m: Model,
}

impl Parser<'_, '_> {
    /// One group entry; `path` is the chain of enclosing groups, to refuse a
    /// group nested inside itself.
    fn group(&mut self, name: &str, v: &Yaml, line: usize, path: &mut Vec<String>) -> Result<(), SpecError> {
        self.m.group(name, line);
        if path.iter().any(|p| p == name) {
            return Err(self.src.err_line(
                line,
                format!("group {name} is nested inside itself ({} → {name})", path.join(" → ")),
                "remove the inner entry",
            ));
        }
        let body = match v {
            Yaml::Null => return Ok(()),
            Yaml::Mapping(m) => m,
            _ => return Err(self.not_a_mapping(&format!("group {name}"), line)),
        };
        let mut cursor = line;
        for (k, v) in body {
            let key = self.name(k, cursor)?;
            let at = self.find(&key, cursor);
            cursor = at;
            match key.as_str() {
                "hosts" => self.hosts(name, v, at)?,
                "vars" => {
                    let vars = self.vars(v, at, &format!("vars of group {name}"))?;
                    self.m.group(name, line).vars.extend(vars);
                }
                "children" => {
                    let children = self.mapping(v, at, &format!("children of group {name}"))?;
                    path.push(name.to_string());
                    let mut ccursor = at;
                    for (ck, cv) in children.iter() {
                        let child = self.name(ck, ccursor)?;
                        let cline = self.find(&child, ccursor);
                        ccursor = cline;
                        self.m.group(name, line).children.insert(child.clone());
                        self.group(&child, cv, cline, path)?;
                    }
                    path.pop();
                }
                other => {
                    return Err(self.src.err_line(
                        at,
                        format!("group {name} has an unknown key `{other}`"),
                        "a group has only `hosts:`, `vars:` and `children:`",
                    ))
                }
            }
        }
        Ok(())
    }

    fn hosts(&mut self, group: &str, v: &Yaml, line: usize) -> Result<(), SpecError> {
        let hosts = self.mapping(v, line, &format!("hosts of group {group}"))?;
        let mut cursor = line;
        for (k, hv) in hosts.iter() {
            let pattern = self.name(k, cursor)?;
            let at = self.find(&pattern, cursor);
            cursor = at;
            let (names, port) = range::expand(&pattern).map_err(|e| self.src.err_line(at, e, range_help()))?;
            let mut vars = Vars::new();
            if let Some(p) = port {
                vars.insert("ansible_port".into(), Var { value: Ok(toml::Value::Integer(p.into())), line: at });
            }
            vars.extend(self.vars(hv, at, &format!("host {pattern}"))?);
            for n in names {
                self.m.add_host(group, &n, vars.clone(), at);
            }
        }
        Ok(())
    }

    fn vars(&self, v: &Yaml, line: usize, what: &str) -> Result<Vars, SpecError> {
        let mut out = Vars::new();
        let mut cursor = line;
        for (k, val) in self.mapping(v, line, what)?.iter() {
            let key = self.name(k, cursor)?;
            cursor = self.find(&key, cursor);
            out.insert(key, Var { value: value::yaml(val), line: cursor });
        }
        Ok(out)
    }

    /// A mapping, or empty for null (`hosts:` with nothing under it).
    fn mapping(&self, v: &Yaml, line: usize, what: &str) -> Result<Mapping, SpecError> {
        match v {
            Yaml::Null => Ok(Mapping::new()),
            Yaml::Mapping(m) => Ok(m.clone()),
            _ => Err(self.not_a_mapping(what, line)),
        }
    }

    fn not_a_mapping(&self, what: &str, line: usize) -> SpecError {
        self.src.err_line(
            line,
            format!("{what} must be a mapping (name: value), not a list or a single value"),
            "write entries as `name:` lines (a host without vars is `web1:` with nothing after it)",
        )
    }

    fn name(&self, k: &Yaml, line: usize) -> Result<String, SpecError> {
        value::key(k).map_err(|e| self.src.err_line(line, e, "use a plain name"))
    }

    /// The first line at or after `from` whose text starts with `key:`
    /// (bare or quoted); `from` if there is none. Entries of one mapping are
    /// looked for in order, each from the previous one's line.
    fn find(&self, key: &str, from: usize) -> usize {
        let starts = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")];
        let skip = from.saturating_sub(1);
        let rest = self.lines.get(skip..).unwrap_or_default();
        rest.iter()
            .position(|l| {
                let t = l.trim_start().trim_start_matches("- ").trim_start_matches(['{', ' ']);
                starts.iter().any(|s| t.starts_with(s.as_str()))
            })
            .map_or(from, |i| skip + i + 1)
    }
}
