//! `deploy` (replicas, resource limits) and compose's byte values.

use super::yaml::Node;
use super::Service;

/// `deploy`: replicas and resource limits; the rest is swarm's.
pub(super) fn deploy(v: &Node, s: &mut Service, note: &mut dyn FnMut(usize, &str, String, bool)) {
    for (k, l, d) in v.entries() {
        match k.as_str() {
            "replicas" => match d.scalar().and_then(|r| r.parse::<u32>().ok()) {
                Some(0) | None => note(
                    *l,
                    "deploy.replicas",
                    "drover runs at least one instance; remove the service from the role to run none".into(),
                    false,
                ),
                Some(n) => s.instances = Some(n),
            },
            "resources" => {
                for (rk, rl, r) in d.entries() {
                    if rk != "limits" {
                        note(*rl, &format!("deploy.resources.{rk}"), "no reservations (limits are kept)".into(), false);
                        continue;
                    }
                    for (lk, ll, lim) in r.entries() {
                        match lk.as_str() {
                            "memory" => s.memory = lim.scalar().and_then(|m| memory(&m)),
                            "pids" => s.pids = lim.scalar().and_then(|p| p.parse().ok()).filter(|p: &i64| *p > 0),
                            _ => note(
                                *ll,
                                &format!("deploy.resources.limits.{lk}"),
                                "only memory and pids are limited".into(),
                                false,
                            ),
                        }
                    }
                }
            }
            "restart_policy" => {
                note(*l, "deploy.restart_policy", "the supervisor always restarts a service that exits".into(), true)
            }
            "placement" => note(
                *l,
                "deploy.placement",
                "give hosts roles (or use [placement]) to say where a service runs".into(),
                false,
            ),
            "update_config" | "rollback_config" => note(
                *l,
                &format!("deploy.{k}"),
                "rollouts are drover's: [rollout] in the role or drover.toml".into(),
                false,
            ),
            _ => note(*l, &format!("deploy.{k}"), "no drover equivalent".into(), false),
        }
    }
}

/// Compose's byte values (`512m`, `1g`, `1.5g`, `1048576`) in drover's
/// size syntax.
pub(super) fn memory(m: &str) -> Option<String> {
    let t = m.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1048576.0,
        "g" => 1073741824.0,
        _ => return None,
    };
    if !num.contains('.') {
        return Some(format!("{num}{}", unit.to_uppercase()));
    }
    let bytes = num.parse::<f64>().ok()? * mult;
    Some(format!("{}", bytes.round() as u64))
}
