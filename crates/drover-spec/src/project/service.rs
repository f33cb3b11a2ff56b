//! Roles and services as loaded from `roles/*.toml` and `services/*.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use drover_proto::{HealthCheck, HealthProbe};
use globset::{Glob, GlobMatcher};
use toml::Spanned;

use super::load::list_names;
use crate::diag::SpecError;
use crate::duration::parse_duration;
use crate::files::{FileAttrs, ServiceFile, Vars};

pub(super) struct Role {
    pub(super) layers: Vec<String>,
    pub(super) services: Vec<String>,
    pub(super) vars: Vars,
    pub(super) files: Vec<(GlobMatcher, FileAttrs, Option<u32>)>,
    /// Packages, users, groups and directories (see `crate::setup`).
    pub(super) setup: crate::setup::RoleSetup,
}

pub(super) struct Service {
    pub(super) command: Option<String>,
    pub(super) unit: Option<String>,
    pub(super) user: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) restart_on: Vec<GlobMatcher>,
    pub(super) reload_on: Vec<GlobMatcher>,
    pub(super) health: Option<HealthCheck>,
}

pub(super) fn load_service(
    dir: &Path,
    name: &Spanned<String>,
    role_file: &str,
    role_text: &str,
) -> Result<Service, SpecError> {
    let n = name.get_ref();
    let fname = format!("services/{n}.toml");
    let path = dir.join(&fname);
    let Ok(text) = std::fs::read_to_string(&path) else {
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
    if sf.command.is_some() == sf.unit.is_some() {
        return Err(SpecError::at(
            &fname,
            &text,
            whole,
            "a service needs exactly one of `command` or `unit`",
            "here",
            "command = \"…\" to have drover run it, unit = \"name\" to restart an existing unit",
        ));
    }
    let mut restart_on = Vec::new();
    let mut reload_on = Vec::new();
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
        if reload {
            reload_on.push(m.compile_matcher());
        } else {
            restart_on.push(m.compile_matcher());
        }
    }
    let health = sf.health.as_ref().map(|h| health(h, &fname, &text)).transpose()?;
    Ok(Service {
        command: sf.command,
        unit: sf.unit,
        user: sf.user.unwrap_or_else(|| "root".into()),
        env: sf.env,
        restart_on,
        reload_on,
        health,
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
    } else if let Some(p) = hf.tcp {
        HealthProbe::Tcp { port: p }
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
