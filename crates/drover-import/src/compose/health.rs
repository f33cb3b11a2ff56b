//! `healthcheck` → `[health]` with a command run inside the container.
//!
//! `CMD a b` runs `a b`; `CMD-SHELL x` (or a string) runs `/bin/sh -c x`;
//! `NONE` and `disable: true` mean no check. Compose's defaults (interval
//! 30s, timeout 30s, 3 retries) are written out, since drover's differ;
//! `start_period` has no key of its own: it is added to the attempts
//! (`retries` + start_period / interval), so the gate waits as long.

use super::yaml::{Node, V};
use super::Health;

pub(super) fn convert(v: &Node, line: usize, note: &mut dyn FnMut(usize, &str, String, bool)) -> Option<Health> {
    if matches!(v.get("disable").map(|d| &d.v), Some(V::Bool(true))) {
        return None;
    }
    let test = v.get("test")?;
    let words: Vec<String> = match &test.v {
        V::Seq(items) => items.iter().filter_map(Node::scalar).collect(),
        _ => vec!["CMD-SHELL".into(), test.scalar()?],
    };
    let command = match words.split_first() {
        Some((k, rest)) if k == "CMD" && !rest.is_empty() => shlex::try_join(rest.iter().map(String::as_str)).ok()?,
        Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
            let script = rest.join(" ");
            shlex::try_join(["/bin/sh", "-c", script.as_str()]).ok()?
        }
        Some((k, _)) if k == "NONE" => return None,
        _ => {
            note(test.line, "healthcheck.test", "not CMD, CMD-SHELL or NONE followed by a command".into(), false);
            return None;
        }
    };
    let ms = |k: &str| v.get(k).and_then(Node::scalar).and_then(|d| millis(&d));
    let interval = ms("interval").unwrap_or(30_000).max(1);
    let timeout = ms("timeout").unwrap_or(30_000);
    let mut retries = v.get("retries").and_then(Node::scalar).and_then(|r| r.parse::<u32>().ok()).unwrap_or(3);
    if let Some(sp) = ms("start_period").filter(|sp| *sp > 0) {
        let extra = u32::try_from(sp.div_ceil(interval)).unwrap_or(u32::MAX);
        retries = retries.saturating_add(extra);
        let l = v.entries().iter().find(|(k, _, _)| k == "start_period").map_or(line, |(_, l, _)| *l);
        note(
            l,
            "healthcheck.start_period",
            format!(
                "drover has no start period: {extra} attempt(s) added to retries, so the health gate waits as long"
            ),
            true,
        );
    }
    if let Some((_, l, _)) = v.entries().iter().find(|(k, _, _)| k == "start_interval") {
        note(*l, "healthcheck.start_interval", "probes run at `interval` during the start period too".into(), false);
    }
    Some(Health { command, interval: Some(fmt(interval)), timeout: Some(fmt(timeout)), retries: Some(retries) })
}

/// A compose duration (`1m30s`, `500ms`, `10s`, `1h`) in drover's syntax.
pub(super) fn duration(d: &str) -> Option<String> {
    millis(d).map(fmt)
}

fn fmt(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Go's duration syntax, as compose reads it: numbers with units, summed.
fn millis(d: &str) -> Option<u64> {
    let mut rest = d.trim();
    if rest.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty() {
        // A bare number is seconds in compose's older formats.
        return rest.parse::<u64>().ok().map(|s| s * 1000);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let num: f64 = rest[..n].parse().ok()?;
        let u = rest[n..].find(|c: char| c.is_ascii_digit()).map_or(rest.len(), |i| n + i);
        let unit = match &rest[n..u] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += num * unit;
        rest = &rest[u..];
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_become_drovers() {
        assert_eq!(duration("1m30s").as_deref(), Some("90s"));
        assert_eq!(duration("1.5s").as_deref(), Some("1500ms"));
        assert_eq!(duration("250ms").as_deref(), Some("250ms"));
        assert_eq!(duration("2h").as_deref(), Some("7200s"));
        assert_eq!(duration("10").as_deref(), Some("10s"));
        assert_eq!(duration("soon"), None);
    }
}
