//! One compose service → drover's service keys, key by key; what has no
//! equivalent becomes a [`Finding`] with its line and what to do.

use std::collections::BTreeMap;
use std::path::Path;

use drover_spec::SpecError;

use super::deploy::{deploy, memory};
use super::keys::{IGNORED, UNMAPPED};
use super::ports::{self, Port};
use super::yaml::{Node, V};
use super::{health, Finding, Service};
use crate::Src;

#[allow(clippy::too_many_arguments)]
pub(super) fn convert(
    src: &Src<'_>,
    name: &str,
    line: usize,
    body: &Node,
    dir: &Path,
    names: &[&str],
    volumes: &BTreeMap<String, usize>,
    vars: &super::Env,
    findings: &mut Vec<Finding>,
) -> Result<Service, SpecError> {
    let mut s = Service { name: name.to_string(), ..Service::default() };
    let mut note = |line: usize, key: &str, why: String, kept: bool| {
        findings.push(Finding { at: src.at(line), service: Some(name.into()), key: key.into(), why, kept })
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.') {
        return Err(src.err_line(
            line,
            format!("service name {name:?} is not a name drover accepts"),
            "use letters, digits, - _ .",
        ));
    }
    let mut env_files = BTreeMap::new();
    let mut environment = BTreeMap::new();
    let mut has_build = None;
    for (key, kline, v) in body.entries() {
        let kline = *kline;
        let bad = |what: &str| {
            src.err_line(
                kline,
                format!("service {name}: `{key}` must be {what}"),
                "see the compose specification for its forms",
            )
        };
        match key.as_str() {
            "image" => s.image = Some(v.scalar().ok_or_else(|| bad("a string"))?),
            "command" => s.command = Some(argv(v).ok_or_else(|| bad("a string or a list of strings"))?),
            "entrypoint" => s.entrypoint = Some(argv(v).ok_or_else(|| bad("a string or a list of strings"))?),
            "working_dir" => s.workdir = v.scalar(),
            "user" => {
                let u = v.scalar().ok_or_else(|| bad("a string"))?;
                if u.split(':').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                    && u.split(':').count() <= 2
                {
                    s.user = Some(u);
                } else {
                    note(kline, key, format!("{u:?}: a container's user is numeric uid[:gid] (names are not looked up in the image); write user = \"UID:GID\" with the image's ids"), false);
                }
            }
            "environment" => {
                for (k, value, l) in env_map(v).ok_or_else(|| bad("a mapping or a list of KEY=VALUE"))? {
                    match value.or_else(|| vars.get(&k).cloned()) {
                        Some(val) => {
                            environment.insert(k, val);
                        }
                        None => note(
                            l,
                            key,
                            format!("{k} has no value here and is not set in the environment: left out"),
                            false,
                        ),
                    }
                }
            }
            "env_file" => read_env_files(src, v, kline, dir, &mut env_files)?,
            "ports" => {
                let V::Seq(items) = &v.v else { return Err(bad("a list")) };
                let mut same = Vec::new();
                for p in items {
                    match ports::parse(p) {
                        Port::Same(c) => same.push(c),
                        Port::Remapped(h, c) => note(p.line, key, format!("publishes container port {c} on host port {h}: drover runs containers on the host's network (no port mapping), so the service answers on {c} of the host; make the app listen on {h} (its command or config), or point its clients at {c}"), false),
                        Port::Bad(m) => return Err(src.err_line(p.line, format!("service {name}: {m}"), "write \"HOST:CONTAINER\", e.g. \"8080:8080\"")),
                    }
                }
                if !same.is_empty() {
                    s.notes.push(format!(
                        "answers on the host's port {} (host network: no mapping needed)",
                        same.join(", ")
                    ));
                }
            }
            "volumes" => {
                let V::Seq(items) = &v.v else { return Err(bad("a list")) };
                for it in items {
                    match volume(it, volumes) {
                        Ok(vol) => s.volumes.push(vol),
                        Err((why, kept)) => note(it.line, key, why, kept),
                    }
                }
            }
            "healthcheck" => s.health = health::convert(v, kline, &mut |l, k, w, kept| note(l, k, w, kept)),
            "depends_on" => {
                let deps: Vec<(String, usize, Option<&Node>)> = match &v.v {
                    V::Seq(items) => items.iter().filter_map(|i| i.scalar().map(|n| (n, i.line, None))).collect(),
                    V::Map(m) => m.iter().map(|(k, l, n)| (k.clone(), *l, Some(n))).collect(),
                    _ => return Err(bad("a list or a mapping")),
                };
                for (dep, dline, long) in deps {
                    if !names.contains(&dep.as_str()) {
                        return Err(src.err_line(
                            dline,
                            format!("service {name} depends on {dep:?}, which is not a service of this file"),
                            format!("services: {}", names.join(", ")),
                        ));
                    }
                    let cond = long.and_then(|l| l.get("condition")).and_then(Node::scalar);
                    if cond.as_deref() == Some("service_completed_successfully") {
                        note(dline, "depends_on", format!("{dep}: condition service_completed_successfully (a one-shot job) has no equivalent: drover services run until stopped; run the job with `drover exec` before the apply"), false);
                        continue;
                    }
                    for (k, kl, kv) in long.map(Node::entries).unwrap_or_default() {
                        match k.as_str() {
                            "restart" if matches!(kv.v, V::Bool(true)) => note(
                                *kl,
                                "depends_on.restart",
                                format!("{name} is not restarted when {dep} restarts"),
                                false,
                            ),
                            "required" if matches!(kv.v, V::Bool(false)) => note(
                                *kl,
                                "depends_on.required",
                                format!("{dep} is required: the project must have it"),
                                true,
                            ),
                            _ => {}
                        }
                    }
                    s.after.push(dep);
                }
            }
            "restart" => {
                let r = v.scalar().unwrap_or_default();
                if !matches!(r.as_str(), "always" | "unless-stopped") {
                    note(
                        kline,
                        key,
                        format!("{r:?}: the supervisor always restarts a service that exits (as `always`)"),
                        true,
                    );
                }
            }
            "deploy" => deploy(v, &mut s, &mut |l, k, w, kept| note(l, k, w, kept)),
            "scale" => s.instances = v.scalar().and_then(|r| r.parse().ok()),
            "mem_limit" => s.memory = v.scalar().and_then(|m| memory(&m)),
            "pids_limit" => s.pids = v.scalar().and_then(|p| p.parse().ok()).filter(|p: &i64| *p > 0),
            "stop_grace_period" => s.stop_grace_period = v.scalar().and_then(|d| health::duration(&d)),
            "read_only" => {
                if !matches!(v.v, V::Bool(true)) {
                    note(
                        kline,
                        key,
                        "a container's root filesystem is always read-only: data goes in volumes, scratch in /tmp"
                            .into(),
                        true,
                    );
                }
            }
            "networks" => {
                let nets: Vec<(String, usize)> = match &v.v {
                    V::Seq(items) => items.iter().filter_map(|i| i.scalar().map(|n| (n, i.line))).collect(),
                    _ => v.entries().iter().map(|(k, l, _)| (k.clone(), *l)).collect(),
                };
                for (n, l) in nets.into_iter().filter(|(n, _)| n != "default") {
                    note(l, key, format!("{n}: containers run on the host's network and reach each other by name through /etc/hosts; remove it"), false);
                }
            }
            k if k.starts_with("x-") => {}
            k => {
                if k == "build" {
                    has_build = Some(kline);
                }
                if let Some((_, why)) = IGNORED.iter().find(|(i, _)| *i == k) {
                    note(kline, key, (*why).into(), true);
                } else {
                    let why = UNMAPPED.iter().find(|(u, _)| *u == k).map_or("no drover equivalent", |(_, w)| w);
                    note(kline, key, why.into(), false);
                }
            }
        }
    }
    env_files.extend(environment);
    s.env = env_files;
    if s.image.is_none() && has_build.is_none() {
        return Err(src.err_line(
            line,
            format!("service {name} has neither `image` nor `build`"),
            "give it image: NAME:TAG",
        ));
    }
    Ok(s)
}

/// `command`/`entrypoint`: a list, or a string split like shell words (as
/// compose splits it).
fn argv(v: &Node) -> Option<Vec<String>> {
    match &v.v {
        V::Seq(items) => items.iter().map(Node::scalar).collect(),
        V::Null => Some(Vec::new()),
        _ => shlex::split(&v.scalar()?),
    }
}

/// `environment`: `{K: V}` or `["K=V"]`, with each entry's line; a key
/// without a value (`K`, `K:`) is `None`: compose takes it from the
/// environment.
fn env_map(v: &Node) -> Option<Vec<(String, Option<String>, usize)>> {
    match &v.v {
        V::Map(m) => Some(m.iter().map(|(k, l, v)| (k.clone(), v.scalar(), *l)).collect()),
        V::Seq(items) => Some(
            items
                .iter()
                .filter_map(|i| i.scalar().map(|s| (s, i.line)))
                .map(|(s, l)| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string()), l),
                    None => (s, None, l),
                })
                .collect(),
        ),
        V::Null => Some(Vec::new()),
        _ => None,
    }
}

fn read_env_files(
    src: &Src<'_>,
    v: &Node,
    line: usize,
    dir: &Path,
    env: &mut BTreeMap<String, String>,
) -> Result<(), SpecError> {
    let items: Vec<&Node> = match &v.v {
        V::Seq(items) => items.iter().collect(),
        _ => vec![v],
    };
    for it in items {
        let (path, required) = match &it.v {
            V::Map(_) => (
                it.get("path").and_then(Node::scalar),
                !matches!(it.get("required").map(|r| &r.v), Some(V::Bool(false))),
            ),
            _ => (it.scalar(), true),
        };
        let Some(path) = path else { continue };
        let full = dir.join(&path);
        match std::fs::read_to_string(&full) {
            Ok(t) => {
                env.extend(super::interp::parse_env_file(&t).into_iter().filter_map(|(k, v, _)| v.map(|v| (k, v))))
            }
            Err(_) if !required => {}
            Err(e) => {
                return Err(src.err_line(
                    it.line.max(line),
                    format!("env_file {}: {e}", full.display()),
                    "the file is read now and its values written into the service (env = { … })",
                ))
            }
        }
    }
    Ok(())
}

/// A `volumes` entry as drover's short syntax, or why it is left out.
fn volume(it: &Node, named: &BTreeMap<String, usize>) -> Result<String, (String, bool)> {
    let (source, target, ro, kind) = match &it.v {
        V::Map(_) => {
            let get = |k: &str| it.get(k).and_then(Node::scalar);
            let ro = matches!(it.get("read_only").map(|r| &r.v), Some(V::Bool(true)));
            (get("source"), get("target").unwrap_or_default(), ro, get("type").unwrap_or_else(|| "volume".into()))
        }
        _ => {
            let s = it.scalar().unwrap_or_default();
            let parts: Vec<&str> = s.split(':').collect();
            let (src, tgt, mode) = match parts.as_slice() {
                [t] => (None, t.to_string(), ""),
                [a, b] => (Some(a.to_string()), b.to_string(), ""),
                [a, b, m] => (Some(a.to_string()), b.to_string(), *m),
                _ => return Err((format!("{s:?} is not SOURCE:TARGET[:MODE]"), false)),
            };
            let kind = match &src {
                Some(x) if x.starts_with(['/', '.', '~']) => "bind",
                _ => "volume",
            };
            (src, tgt, mode.split(',').any(|m| m == "ro"), kind.to_string())
        }
    };
    let ro = if ro { ":ro" } else { "" };
    match (kind.as_str(), source) {
        ("volume", None) => Err((format!("anonymous volume {target}: drover has named volumes only; name it, e.g. \"data:{target}\""), false)),
        ("volume", Some(n)) if !named.contains_key(&n) => Err((format!("{n}: not declared under the top-level `volumes:`"), false)),
        ("volume", Some(n)) => Ok(format!("{n}:{target}{ro}")),
        ("bind", Some(p)) if p.starts_with('/') => Ok(format!("{p}:{target}{ro}")),
        ("bind", Some(p)) => Err((format!("{p}: a path relative to the compose file is on this machine, not the host; ship it with a layer (files/…) to an absolute path and mount that, e.g. \"/etc/app/x:{target}{ro}\""), false)),
        (k, _) => Err((format!("a {k} volume at {target}: drover mounts named volumes and host directories only"), false)),
    }
}
