//! Roles and services as loaded from `roles/*.toml` and `services/*.toml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use drover_proto::{HealthCheck, HealthProbe};
use globset::{Glob, GlobMatcher};
use toml::Spanned;

use crate::diag::SpecError;
use crate::duration::parse_duration;
use crate::files::{FileAttrs, PlacementFile, ServiceFile, Vars};
use crate::instances::ports::PortRange;
use crate::instances::{parse_size, Placement, Requires, Scale, Spread};
use crate::read::{is_template, list_names};

pub(super) struct Role {
    pub(super) layers: Vec<String>,
    pub(super) services: Vec<String>,
    pub(super) vars: Vars,
    pub(super) files: Vec<(GlobMatcher, FileAttrs, Option<u32>)>,
    /// Packages, users, groups and directories (see `crate::setup`).
    pub(super) setup: crate::setup::RoleSetup,
}

pub(super) struct Service {
    /// A native service's shell command (`None` for an image service).
    pub(super) command: Option<String>,
    /// An image service (docs/containers.md): its image and how it runs,
    /// per architecture.
    pub(super) container: Option<crate::container::Containers>,
    pub(super) unit: Option<String>,
    pub(super) user: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) restart_on: Vec<GlobMatcher>,
    pub(super) reload_on: Vec<GlobMatcher>,
    pub(super) health: Option<HealthCheck>,
    /// One per host (as before), `instances = N`, or placed by count.
    pub(super) scale: Scale,
    /// `[ports]`: name → range.
    pub(super) ports: Vec<(String, PortRange)>,
    /// Compiled per host and instance rather than in the shared plan: it has
    /// instances, ports, or template strings (`{{` in command, env, health).
    pub(super) instanced: bool,
    /// `[health] tcp = "{{ … }}"`: the port, rendered per instance.
    pub(super) tcp_template: Option<String>,
    /// `services/<name>.toml` and its text, for errors found later
    /// (placement) that point into it.
    pub(super) file: String,
    pub(super) text: Arc<str>,
    /// `restart-on` and `reload-on` as written, with where (see
    /// `super::unmatched`: a pattern matching no managed path is an error).
    pub(super) globs: Vec<(GlobMatcher, std::ops::Range<usize>, String)>,
    /// `after`: the services this one starts after, with where.
    pub(super) after: Vec<(String, std::ops::Range<usize>)>,
}

pub(super) fn load_service(
    dir: &Path,
    name: &Spanned<String>,
    role_file: &str,
    role_text: &str,
    limits: &crate::Limits,
) -> Result<Service, SpecError> {
    let n = name.get_ref();
    let fname = format!("services/{n}.toml");
    let path = dir.join(&fname);
    let Some(text) = crate::read::read_text(&path, &fname)? else {
        return Err(SpecError::at(
            role_file,
            role_text,
            name.span(),
            format!("service {n:?} is not defined"),
            "unknown service",
            format!(
                "create {fname} (with command = \"…\" or unit = \"…\"); existing: {}",
                list_names(&dir.join("services")).join(", ")
            ),
        ));
    };
    let sf: ServiceFile = toml::from_str(&text).map_err(|e| SpecError::toml(&fname, &text, &e))?;
    let whole = 0..text.len().min(1);
    if !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) || n.starts_with('.') {
        return Err(SpecError::file(
            &path,
            format!("service name {n:?} has characters a supervisor will not accept"),
            "use letters, digits, - _ . @",
        ));
    }
    let container = crate::container::load(dir, &sf, &fname, &text, limits)?;
    if container.is_none() && sf.command.is_some() == sf.unit.is_some() {
        return Err(SpecError::at(
            &fname,
            &text,
            whole,
            "a service needs exactly one of `command`, `unit` or `image`",
            "here",
            "command = \"…\" to have drover run it, unit = \"name\" to restart an existing unit, image = { dir = \"images/NAME\" } to run a container",
        ));
    }
    let command = match (&container, &sf.command) {
        (None, Some(c)) => Some(match c.get_ref() {
            crate::container::Argv::Line(l) => l.clone(),
            // An argv for a native service: each word quoted for /bin/sh.
            crate::container::Argv::List(v) => shlex::try_join(v.iter().map(String::as_str)).map_err(|e| {
                SpecError::at(
                    &fname,
                    &text,
                    c.span(),
                    format!("command: {e}"),
                    "here",
                    "remove NUL bytes from the command",
                )
            })?,
        }),
        _ => None,
    };
    let mut restart_on = Vec::new();
    let mut reload_on = Vec::new();
    let mut globs = Vec::new();
    for (g, reload) in sf.restart_on.iter().map(|g| (g, false)).chain(sf.reload_on.iter().map(|g| (g, true))) {
        let m = Glob::new(g.get_ref()).map_err(|e| {
            SpecError::at(
                &fname,
                &text,
                g.span(),
                format!("bad glob: {e}"),
                "here",
                "fix the glob, e.g. \"/etc/myapp/**\"",
            )
        })?;
        let key = if reload { "reload-on" } else { "restart-on" };
        globs.push((m.compile_matcher(), g.span(), format!("{key} {:?}", g.get_ref())));
        if reload {
            reload_on.push(m.compile_matcher());
        } else {
            restart_on.push(m.compile_matcher());
        }
    }
    let health = sf.health.as_ref().map(|h| health(h, &fname, &text)).transpose()?;
    let tcp_template = match sf.health.as_ref().and_then(|h| h.get_ref().tcp.clone()) {
        Some(crate::files::TcpPort::Template(t)) => Some(t),
        _ => None,
    };
    let scale = match (&sf.instances, &sf.placement) {
        (Some(_), Some(p)) => {
            return Err(SpecError::at(
                &fname,
                &text,
                p.span(),
                "a service has `instances` or `[placement]`, not both",
                "here",
                "instances = N runs N on every host with the role; [placement] count = N places N over those hosts",
            ))
        }
        (Some(n), None) => Scale::Fixed(*n.get_ref()),
        (None, Some(p)) => Scale::Placed(placement(p.get_ref(), p.span(), &fname, &text)?),
        (None, None) => Scale::Plain,
    };
    let mut ports = Vec::new();
    for (pname, r) in &sf.ports {
        let range = PortRange::parse(r.get_ref()).map_err(|m| {
            SpecError::at(
                &fname,
                &text,
                r.span(),
                format!("port range {pname}: {m}"),
                "here",
                "write a range such as \"30300-30399\" (or one port, \"8080\")",
            )
        })?;
        ports.push((pname.clone(), range));
    }
    let templated = command.as_deref().is_some_and(is_template)
        || container.as_ref().is_some_and(|c| c.all().any(|c| c.process.args.iter().any(|a| is_template(a))))
        || sf.env.values().any(|v| is_template(v))
        || health.as_ref().is_some_and(|h| match &h.probe {
            HealthProbe::Command(c) => is_template(c),
            HealthProbe::Http { url } => is_template(url),
            HealthProbe::Tcp { .. } => tcp_template.is_some(),
        });
    let instanced = !matches!(scale, Scale::Plain) || !ports.is_empty() || templated;
    if instanced && sf.unit.is_some() {
        return Err(SpecError::at(
            &fname,
            &text,
            whole,
            "instances, ports, placement and templates need a service drover runs (`command`), not an existing `unit`",
            "here",
            "replace unit = \"…\" with command = \"…\", or drop instances/[ports]/[placement]",
        ));
    }
    Ok(Service {
        command,
        container,
        unit: sf.unit,
        user: sf.user.map_or_else(|| "root".into(), |u| u.into_inner()),
        env: sf.env,
        restart_on,
        reload_on,
        globs,
        health,
        scale,
        ports,
        instanced,
        tcp_template,
        after: sf.after.iter().map(|a| (a.get_ref().clone(), a.span())).collect(),
        file: fname,
        text: text.into(),
    })
}

fn placement(p: &PlacementFile, span: std::ops::Range<usize>, fname: &str, text: &str) -> Result<Placement, SpecError> {
    if p.max_per_host == Some(0) {
        return Err(SpecError::at(
            fname,
            text,
            span,
            "max-per-host = 0 leaves no room for any instance",
            "here",
            "set max-per-host to 1 or more, or remove it (no limit)",
        ));
    }
    let requires = match &p.requires {
        None => None,
        Some(r) => {
            let mem = match &r.get_ref().mem {
                None => None,
                Some(m) => Some((
                    parse_size(m).map_err(|e| {
                        SpecError::at(
                            fname,
                            text,
                            r.span(),
                            format!("requires.mem: {e}"),
                            "here",
                            "write e.g. mem = \"4GiB\" or \"512MiB\"",
                        )
                    })?,
                    m.clone(),
                )),
            };
            Some((Requires { cpus: r.get_ref().cpus, mem }, r.span()))
        }
    };
    Ok(Placement {
        count: p.count,
        max_per_host: p.max_per_host,
        spread: p.spread.as_ref().map(|s| (Spread::parse(s.get_ref()), s.span())),
        requires,
        pinned: p.pinned.iter().map(|h| (h.get_ref().clone(), h.span())).collect(),
    })
}

fn health(h: &Spanned<crate::files::HealthFile>, fname: &str, text: &str) -> Result<HealthCheck, SpecError> {
    let hf = h.get_ref();
    let probes = [hf.command.is_some(), hf.tcp.is_some(), hf.http.is_some()].iter().filter(|b| **b).count();
    if probes != 1 {
        return Err(SpecError::at(
            fname,
            text,
            h.span(),
            "a health check needs exactly one of command, tcp or http",
            "here",
            "e.g. http = \"http://127.0.0.1:8080/\"",
        ));
    }
    let probe = if let Some(c) = &hf.command {
        HealthProbe::Command(c.clone())
    } else if let Some(crate::files::TcpPort::Port(p)) = hf.tcp {
        HealthProbe::Tcp { port: p }
    } else if let Some(crate::files::TcpPort::Template(t)) = &hf.tcp {
        if !t.contains("{{") {
            return Err(SpecError::at(
                fname,
                text,
                h.span(),
                format!("tcp = {t:?}: a port is a number, or a template such as \"{{{{ instance.ports.p2p }}}}\""),
                "here",
                "write tcp = 8080 (no quotes) or tcp = \"{{ instance.ports.NAME }}\"",
            ));
        }
        // Rendered per instance (see `instance_units`).
        HealthProbe::Tcp { port: 0 }
    } else {
        let url = hf.http.clone().unwrap_or_default();
        if !url.starts_with("http://") {
            return Err(SpecError::at(
                fname,
                text,
                h.span(),
                format!("{url:?}: health URLs must be plain http://"),
                "here",
                "probe the service on the host itself, e.g. http://127.0.0.1:PORT/",
            ));
        }
        HealthProbe::Http { url }
    };
    let dur = |v: &Option<Spanned<String>>, d: u64| -> Result<u64, SpecError> {
        match v {
            None => Ok(d),
            Some(s) => parse_duration(s.get_ref())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|m| SpecError::at(fname, text, s.span(), m, "here", "write e.g. 500ms or 2s")),
        }
    };
    Ok(HealthCheck {
        probe,
        timeout_ms: dur(&hf.timeout, 2000)?,
        retries: hf.retries.unwrap_or(10),
        interval_ms: dur(&hf.interval, 500)?,
    })
}
