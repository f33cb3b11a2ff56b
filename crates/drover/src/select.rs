//! Choosing hosts: `--hosts a,b` matches host names, group names and role
//! names; no selection means every host. Drained hosts are skipped by the
//! commands that change things (see the state store).

use drover_spec::Host;

/// Hosts matching any of the comma-separated selectors. A selector that
/// matches nothing is an error: a typo must not silently shrink a rollout.
pub fn select(hosts: &[Host], selectors: Option<&str>) -> anyhow::Result<Vec<Host>> {
    let Some(sel) = selectors else { return Ok(hosts.to_vec()) };
    let wanted: Vec<&str> = sel.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for w in &wanted {
        if !hosts.iter().any(|h| matches(h, w)) {
            anyhow::bail!("--hosts {w}: no host, group or role of that name in the inventory");
        }
    }
    Ok(hosts.iter().filter(|h| wanted.iter().any(|w| matches(h, w))).cloned().collect())
}

fn matches(h: &Host, w: &str) -> bool {
    h.name == w || h.address == w || h.groups.iter().any(|g| g == w) || h.roles.iter().any(|r| r == w)
}
