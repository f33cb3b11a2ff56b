//! Choosing hosts: `--hosts a,b` (or a command's TARGET) matches host names,
//! addresses, group names and role names; no selection means every host.
//! Drained hosts are skipped by the commands that change things (see the
//! state store).

use std::collections::BTreeSet;

use drover_spec::Host;

/// A selector that matches nothing: a typo must not silently shrink a run.
#[derive(Debug, thiserror::Error)]
#[error("no host, group or role named {selector:?} in the inventory ({known})")]
pub struct NoMatch {
    pub selector: String,
    /// What would have matched, by kind.
    pub known: String,
}

/// Hosts matching any of the comma-separated selectors.
pub fn select(hosts: &[Host], selectors: Option<&str>) -> Result<Vec<Host>, NoMatch> {
    let Some(sel) = selectors else { return Ok(hosts.to_vec()) };
    let wanted: Vec<&str> = sel.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for w in &wanted {
        if !hosts.iter().any(|h| matches(h, w)) {
            return Err(NoMatch { selector: w.to_string(), known: known(hosts) });
        }
    }
    Ok(hosts.iter().filter(|h| wanted.iter().any(|w| matches(h, w))).cloned().collect())
}

fn matches(h: &Host, w: &str) -> bool {
    h.name == w || h.address == w || h.groups.iter().any(|g| g == w) || h.roles.iter().any(|r| r == w)
}

/// "hosts: a, b; groups: g; roles: r", each list cut after 10 names.
fn known(hosts: &[Host]) -> String {
    let list = |names: BTreeSet<&str>| {
        let n = names.len();
        let mut s = names.into_iter().take(10).collect::<Vec<_>>().join(", ");
        if n > 10 {
            s.push_str(&format!(" and {} more", n - 10));
        }
        if s.is_empty() {
            "none".into()
        } else {
            s
        }
    };
    let names = list(hosts.iter().map(|h| h.name.as_str()).collect());
    let groups = list(hosts.iter().flat_map(|h| h.groups.iter().map(String::as_str)).collect());
    let roles = list(hosts.iter().flat_map(|h| h.roles.iter().map(String::as_str)).collect());
    format!("hosts: {names}; groups: {groups}; roles: {roles}")
}
