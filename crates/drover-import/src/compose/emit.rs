//! The generated files: `services/NAME.toml` per compose service and
//! `roles/ROLE.toml` listing them.

use std::path::PathBuf;

use super::{Imported, Service};

pub(super) fn files(imp: &Imported) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> =
        imp.services.iter().map(|s| (PathBuf::from(format!("services/{}.toml", s.name)), service(imp, s))).collect();
    let names: Vec<String> = imp.services.iter().map(|s| q(&s.name)).collect();
    let role = format!(
        "# Imported from {} by `drover import compose`: every service of the app.\n# Give hosts this role (roles = [\"{}\"]), or split the services over roles to spread them.\nservices = [{}]\n",
        imp.source,
        imp.role,
        names.join(", ")
    );
    out.push((PathBuf::from(format!("roles/{}.toml", imp.role)), role));
    out
}

fn service(imp: &Imported, s: &Service) -> String {
    let mut t = format!("# Imported from {} (service {}) by `drover import compose`.\n", imp.source, s.name);
    let n = imp.findings.iter().filter(|f| f.service.as_deref() == Some(&s.name) && !f.kept).count();
    if n > 0 {
        t.push_str(&format!("# {n} compose setting(s) were not imported; the import listed them.\n"));
    }
    for note in &s.notes {
        t.push_str(&format!("# {note}\n"));
    }
    match &s.image {
        Some(i) => t.push_str(&format!("image = {}\n", q(i))),
        None => t.push_str(&format!(
            "# built by compose (`build:`): put the image's root filesystem here, or push it and write image = \"REF\"\nimage = {{ dir = {} }}\n",
            q(&format!("images/{}", s.name))
        )),
    }
    if let Some(e) = &s.entrypoint {
        t.push_str(&format!("entrypoint = {}\n", list(e)));
    }
    if let Some(c) = &s.command {
        t.push_str(&format!("command = {}\n", list(c)));
    }
    if let Some(w) = &s.workdir {
        t.push_str(&format!("workdir = {}\n", q(w)));
    }
    if let Some(u) = &s.user {
        t.push_str(&format!("user = {}\n", q(u)));
    }
    if !s.after.is_empty() {
        t.push_str(&format!("after = {}\n", list(&s.after)));
    }
    if let Some(n) = s.instances {
        t.push_str(&format!("instances = {n}\n"));
    }
    if !s.volumes.is_empty() {
        t.push_str(&format!("volumes = {}\n", list(&s.volumes)));
    }
    if let Some(m) = &s.memory {
        t.push_str(&format!("memory = {}\n", q(m)));
    }
    if let Some(p) = s.pids {
        t.push_str(&format!("pids = {p}\n"));
    }
    if let Some(g) = &s.stop_grace_period {
        t.push_str(&format!("stop-grace-period = {}\n", q(g)));
    }
    if !s.env.is_empty() {
        t.push_str("\n[env]\n");
        for (k, v) in &s.env {
            t.push_str(&format!("{} = {}\n", key(k), q(v)));
        }
    }
    if let Some(h) = &s.health {
        t.push_str(&format!("\n[health]\ncommand = {}\n", q(&h.command)));
        if let Some(i) = &h.interval {
            t.push_str(&format!("interval = {}\n", q(i)));
        }
        if let Some(i) = &h.timeout {
            t.push_str(&format!("timeout = {}\n", q(i)));
        }
        if let Some(r) = h.retries {
            t.push_str(&format!("retries = {r}\n"));
        }
    }
    t
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// A bare key when TOML allows one, else quoted.
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        q(k)
    }
}
