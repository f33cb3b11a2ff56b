//! The lab network: one bridge per lab in the root namespace, one veth per
//! host into its own namespace.
//!
//! ```text
//! root ns:  dl<i>br 10.213.<i>.1/24 ── dl<i>v<n> ══ eth0 10.213.<i>.<10+n>/24  (ns dl<i>h<n>)
//! ```
//!
//! Hosts get no default route and the bridge has IPv4 forwarding off, so a
//! host can reach the controller and its lab mates and nothing else. IPv6 is
//! off on the root-side links (no router solicitations, no DAD delays).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::cmd::{self, ip};
use crate::config::{LabConfig, LabObject, Naming, MAX_INDEX};
use crate::error::LabError;
use crate::state::LabState;
use crate::sys;

/// Lowest index no lab uses: not in any state file, and no kernel object
/// carries it (a crashed lab's leftovers keep their index until `down`).
/// Call with the global lock held.
pub(crate) fn free_index(config: &LabConfig) -> Result<u8, LabError> {
    let mut used = BTreeSet::new();
    if let Ok(dir) = fs::read_dir(&config.state_root) {
        for e in dir.flatten() {
            if let Ok(Some(s)) = LabState::load(&e.path().join("state.json")) {
                used.insert(s.index);
            }
        }
    }
    used.extend(sys::links().iter().chain(&sys::netns_names()).filter_map(|n| Naming::parse(n)).map(|(i, _)| i));
    (0..=MAX_INDEX).find(|i| !used.contains(i)).ok_or(LabError::NoFreeIndex)
}

/// The lab's bridge, tagged with the lab name (see [`Naming::bridge_alias`]).
pub(crate) fn ensure_bridge(naming: Naming, lab: &str) -> Result<(), LabError> {
    let br = naming.bridge();
    if !sys::link_exists(&br) {
        ip(["link", "add", &br, "type", "bridge"])?;
    }
    no_ipv6(&br)?;
    sys::sysctl(&format!("net/ipv4/conf/{br}/forwarding"), "0")?;
    ip(["link", "set", &br, "alias", &Naming::bridge_alias(lab)])?;
    ip(["addr", "replace", &format!("{}/24", naming.gateway()), "dev", &br])?;
    ip(["link", "set", &br, "up"])?;
    Ok(())
}

/// A lab behind a bastion: the controller's namespace keeps a route to the
/// bastion (host 0) alone. The bridge's address shrinks to a /32, a host
/// route leads to the bastion, and the rest of the lab's /24 is an
/// `unreachable` route, so connecting to a host fails at once with "no route
/// to host" (not a timeout through the default route). The hosts still see
/// the bastion and each other on the bridge.
pub(crate) fn isolate_behind_bastion(naming: Naming) -> Result<(), LabError> {
    let br = naming.bridge();
    let gw = naming.gateway();
    ip(["addr", "replace", &format!("{gw}/32"), "dev", &br])?;
    let _ = ip(["addr", "del", &format!("{gw}/24"), "dev", &br]);
    ip(["route", "replace", &format!("{}/32", naming.address(Naming::BASTION)), "dev", &br, "src", &gw.to_string()])?;
    ip(["route", "replace", "unreachable", &subnet(naming)])?;
    Ok(())
}

/// Undo [`isolate_behind_bastion`] (`up` waits for hosts directly, then
/// isolates them again; `down` removes the route, which outlives the bridge).
/// "Not there" is success.
pub(crate) fn unisolate(naming: Naming) {
    let _ = ip(["route", "del", "unreachable", &subnet(naming)]);
    let br = naming.bridge();
    if sys::link_exists(&br) {
        let _ = ip(["addr", "del", &format!("{}/32", naming.gateway()), "dev", &br]);
    }
}

fn subnet(naming: Naming) -> String {
    format!("10.213.{}.0/24", naming.idx)
}

/// Host `n`'s namespace and link. Creates what is missing. An existing link
/// is configured again only if `configure` (a host `up` has not recorded
/// yet, perhaps half made by an interrupted run); a recorded host's link is
/// left alone, since it may carry a fault.
pub(crate) fn ensure_host_link(naming: Naming, n: u16, configure: bool) -> Result<(), LabError> {
    let ns = naming.netns(n);
    let veth = naming.veth(n);
    if !Path::new("/run/netns").join(&ns).exists() {
        ip(["netns", "add", &ns])?;
    }
    if sys::link_exists(&veth) && !configure {
        return Ok(());
    }
    if !sys::link_exists(&veth) {
        ip(["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
    }
    no_ipv6(&veth)?;
    ip(["link", "set", &veth, "master", &naming.bridge(), "up"])?;
    let batch = format!("addr replace {}/24 dev eth0\nlink set eth0 up\nlink set lo up\n", naming.address(n));
    cmd::run_with_input("ip", ["-n", &ns, "-batch", "-"], Some(batch.as_bytes()))?;
    Ok(())
}

/// Splice host `n`'s link through a fresh `x`/`y` veth pair for the
/// userspace link emulator (see [`crate::wire`]); returns once the host's
/// veth is out of the bridge. Idempotent.
pub(crate) fn splice_for_wire(naming: Naming, n: u16) -> Result<(), LabError> {
    let (v, x, y) = (naming.veth(n), naming.wire_bridge_side(n), naming.wire_side(n));
    if !sys::link_exists(&x) {
        ip(["link", "add", &x, "type", "veth", "peer", "name", &y])?;
    }
    no_ipv6(&x)?;
    no_ipv6(&y)?;
    ip(["link", "set", &y, "arp", "off", "up"])?;
    ip(["link", "set", &x, "master", &naming.bridge(), "up"])?;
    ip(["link", "set", &v, "nomaster", "arp", "off"])?;
    Ok(())
}

/// Undo [`splice_for_wire`]: the host's veth back in the bridge.
pub(crate) fn unsplice(naming: Naming, n: u16) -> Result<(), LabError> {
    let (v, x) = (naming.veth(n), naming.wire_bridge_side(n));
    if sys::link_exists(&x) {
        delete_link(&x)?;
    }
    if sys::link_exists(&v) {
        ip(["link", "set", &v, "arp", "on", "master", &naming.bridge()])?;
    }
    Ok(())
}

/// `ip link del`, where "already gone" is success.
pub(crate) fn delete_link(name: &str) -> Result<(), LabError> {
    match ip(["link", "del", name]) {
        Err(e) if !cmd::is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// `ip netns del`, where "already gone" is success.
pub(crate) fn delete_netns(name: &str) -> Result<(), LabError> {
    match ip(["netns", "del", name]) {
        Err(e) if !cmd::is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Kernel objects (links and namespaces) whose names carry one of `indexes`.
pub(crate) fn objects_of(indexes: &BTreeSet<u8>) -> (Vec<(String, LabObject)>, Vec<String>) {
    let ours = |n: &String| Naming::parse(n).filter(|(i, _)| indexes.contains(i)).map(|(_, o)| (n.clone(), o));
    let links = sys::links().iter().filter_map(ours).collect();
    let netns = sys::netns_names().iter().filter_map(ours).map(|(n, _)| n).collect();
    (links, netns)
}

/// Best effort: a kernel without IPv6 has nothing to turn off.
fn no_ipv6(link: &str) -> Result<(), LabError> {
    if !Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    sys::sysctl(&format!("net/ipv6/conf/{link}/disable_ipv6"), "1")
}
