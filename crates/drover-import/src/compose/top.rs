//! The compose file's top level: `name`, `services`, `volumes`, `networks`
//! and what has no drover equivalent (`secrets`, `configs`, `include`).

use std::collections::BTreeMap;
use std::path::Path;

use drover_spec::SpecError;

use super::yaml::{Node, V};
use super::{service, Finding, Service};
use crate::Src;

/// The role name and the converted services, in the file's order.
pub(super) fn convert(
    src: &Src<'_>,
    doc: &Node,
    dir: &Path,
    default_role: &str,
    vars: &super::Env,
    findings: &mut Vec<Finding>,
) -> Result<(String, Vec<Service>), SpecError> {
    if !matches!(doc.v, V::Map(_)) {
        return Err(src.err_line(doc.line, "a compose file is a mapping with `services:`", "start with `services:`"));
    }
    let mut note = |line: usize, key: &str, why: &str, kept: bool| {
        findings.push(Finding { at: src.at(line), service: None, key: key.into(), why: why.into(), kept })
    };
    let mut role = role_name(default_role);
    let mut volumes = BTreeMap::new();
    let mut services_node = None;
    for (key, line, v) in doc.entries() {
        match key.as_str() {
            "version" => {}
            k if k.starts_with("x-") => {}
            "name" => role = role_name(&v.scalar().unwrap_or_default()),
            "services" => services_node = Some(v),
            "volumes" => {
                for (name, vline, spec) in v.entries() {
                    volumes.insert(name.clone(), *vline);
                    for (k, kline, _) in spec.entries() {
                        match k.as_str() {
                            "external" => note(*kline, &format!("volumes.{name}.external"), "drover makes the volume's directory on each host (/var/lib/drover/volumes/SERVICE/NAME); an external volume's existing data is not moved there", true),
                            "name" | "labels" => {}
                            _ => note(*kline, &format!("volumes.{name}.{k}"), "drover's named volumes are directories on the host: no drivers or driver options", false),
                        }
                    }
                }
            }
            "networks" => {
                for (name, nline, _) in v.entries() {
                    if name != "default" {
                        note(*nline, &format!("networks.{name}"), "containers run on the host's network; services reach each other by name through /etc/hosts (generated from where they run), so no network is needed: remove it", false);
                    }
                }
            }
            "secrets" => note(*line, key, "use drover secrets (docs/secrets.md) and a template or env value instead", false),
            "configs" => note(*line, key, "ship the file with a layer (files/…) and bind-mount it, e.g. volumes = [\"/etc/app/app.conf:/app.conf:ro\"]", false),
            "include" => note(*line, key, "import each included compose file on its own", false),
            _ => note(*line, key, "no drover equivalent", false),
        }
    }
    let Some(services_node) = services_node else {
        return Err(src.err_line(
            1,
            "the compose file has no `services:`",
            "a compose file lists its services under `services:`",
        ));
    };
    let names: Vec<&str> = services_node.entries().iter().map(|(k, _, _)| k.as_str()).collect();
    let mut out = Vec::new();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, line, body) in services_node.entries() {
        let svc = service::convert(src, name, *line, body, dir, &names, &volumes, vars, findings)?;
        for v in &svc.volumes {
            if let Some((vol, _)) = v.split_once(':').filter(|(s, _)| !s.starts_with('/')) {
                users.entry(vol.to_string()).or_default().push(name.clone());
            }
        }
        out.push(svc);
    }
    for (vol, who) in users.iter().filter(|(_, w)| w.len() > 1) {
        let line = volumes.get(vol).copied().unwrap_or(services_node.line);
        findings.push(Finding {
            at: src.at(line),
            service: None,
            key: format!("volumes.{vol}"),
            why: format!(
                "used by {}: a drover named volume belongs to one service (/var/lib/drover/volumes/SERVICE/{vol}), so each gets its own; to share data, bind-mount one host directory in each (\"/srv/{vol}:/path\")",
                who.join(" and ")
            ),
            kept: true,
        });
    }
    Ok((role, out))
}

/// Compose's project name rules: lowercase letters, digits, `-` and `_`.
fn role_name(n: &str) -> String {
    let s: String = n.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    let s = s.trim_start_matches(['-', '_']).to_string();
    if s.is_empty() {
        "app".into()
    } else {
        s
    }
}
