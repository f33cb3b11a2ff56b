//! `drover lab down`: remove everything a lab created, even after a crash.
//!
//! The state file is only a hint. What exists is found from the kernel and
//! the mount table by the naming rules in [`crate::config`]:
//! - the lab index comes from the state file *or* from the bridge whose
//!   alias is `drover-lab:<name>`;
//! - processes: everything in a `dl<i>h*` namespace, everything chrooted
//!   under the lab directory, and link emulators whose argv names a `dl<i>`
//!   link;
//! - mounts: every mount point under the lab directory, deepest first;
//! - namespaces and links: every `dl<i>…` name;
//! - cgroups (systemd hosts): `drover-lab/<name>` in each hierarchy, with
//!   every process in them.
//!
//! The base cache is kept. The order matters: processes first (they pin
//! mounts and namespaces), then mounts, then links and namespaces, then the
//! directory, and the directory only once nothing is mounted below it.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{validate_name, LabConfig, LabObject, Naming};
use crate::error::LabError;
use crate::state::LabState;
use crate::sys::FileLock;
use crate::{base, cgroup, net, preflight, sys, wire};

/// What `down` removed.
#[derive(Debug, Clone)]
pub struct DownReport {
    pub name: String,
    /// False if there was nothing to remove.
    pub existed: bool,
    pub processes: usize,
    pub mounts: usize,
    pub netns: usize,
    pub links: usize,
}

/// Remove lab `name`.
pub fn down(config: &LabConfig, name: &str) -> Result<DownReport, LabError> {
    preflight::check(&[preflight::Tool::Ip])?;
    let paths = config.lab_paths(name)?;
    let _lock = if paths.dir.is_dir() { Some(FileLock::acquire(&paths.lock_file())?) } else { None };
    let mut indexes = BTreeSet::new();
    if let Ok(Some(state)) = LabState::load(&paths.state_file()) {
        indexes.insert(state.index);
    }
    let alias = Naming::bridge_alias(name);
    for link in sys::links() {
        if let Some((idx, LabObject::Bridge)) = Naming::parse(&link) {
            if sys::link_alias(&link).as_deref() == Some(alias.as_str()) {
                indexes.insert(idx);
            }
        }
    }
    let existed = paths.dir.exists() || !indexes.is_empty() || !cgroup::lab_dirs(name).is_empty();
    // No index is handed out while ours goes: between removing our state
    // file and the final sweep of `dl<i>` leftovers, another lab could
    // otherwise be given index i, and the sweep would delete its links.
    fs::create_dir_all(&config.state_root).map_err(LabError::io("create", &config.state_root))?;
    let _global = FileLock::acquire(&config.global_lock())?;
    let mut report = teardown(name, &indexes, Some(&paths.dir))?;
    report.existed = existed;
    Ok(report)
}

/// Remove every lab: all lab directories, all labs named by a bridge alias,
/// then any `dl<i>…` object left without an owner.
pub fn down_all(config: &LabConfig) -> Result<Vec<DownReport>, LabError> {
    preflight::check(&[preflight::Tool::Ip])?;
    let mut names = BTreeSet::new();
    if let Ok(dir) = fs::read_dir(&config.state_root) {
        for e in dir.flatten() {
            if let Some(n) = e.file_name().to_str().filter(|n| validate_name(n).is_ok() && e.path().is_dir()) {
                names.insert(n.to_string());
            }
        }
    }
    for link in sys::links() {
        if let Some(name) = sys::link_alias(&link).and_then(|a| a.strip_prefix("drover-lab:").map(str::to_string)) {
            if validate_name(&name).is_ok() {
                names.insert(name);
            }
        }
    }
    names.extend(cgroup::lab_names().into_iter().filter(|n| validate_name(n).is_ok()));
    let mut reports = names.iter().map(|n| down(config, n)).collect::<Result<Vec<_>, _>>()?;
    let orphans: BTreeSet<u8> =
        sys::links().iter().chain(&sys::netns_names()).filter_map(|n| Naming::parse(n)).map(|(i, _)| i).collect();
    if !orphans.is_empty() {
        reports.push(teardown("(orphans)", &orphans, None)?);
    }
    Ok(reports)
}

fn teardown(name: &str, indexes: &BTreeSet<u8>, dir: Option<&Path>) -> Result<DownReport, LabError> {
    let processes = kill_all(name, indexes, dir);
    let mut mounts = 0;
    if let Some(dir) = dir {
        for m in sys::mounts_under(dir)? {
            sys::unmount(&m)?;
            mounts += 1;
        }
    }
    for &idx in indexes {
        net::unisolate(Naming { idx }); // the bastion's `unreachable` route outlives the bridge
    }
    let (links, netns) = net::objects_of(indexes);
    for ns in &netns {
        net::delete_netns(ns)?;
    }
    // Bridges last: deleting a veth also removes its bridge port.
    let (bridges, others): (Vec<_>, Vec<_>) = links.iter().partition(|(_, o)| *o == LabObject::Bridge);
    for (link, _) in others.iter().chain(&bridges) {
        net::delete_link(link)?;
    }
    if let Some(dir) = dir {
        base::remove_tree(dir)?;
    }
    // Namespaces are freed asynchronously; their veth peers go with them.
    // A cgroup can be removed only once its last process is reaped.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if dir.is_some() {
            cgroup::remove_lab(name);
        }
        let left = leftovers(name, indexes, dir)?;
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(LabError::Leftovers { lab: name.to_string(), left });
        }
        for (link, _) in net::objects_of(indexes).0 {
            let _ = net::delete_link(&link);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(DownReport { name: name.to_string(), existed: true, processes, mounts, netns: netns.len(), links: links.len() })
}

/// Every process of the lab: in its namespaces, chrooted in its directory,
/// in its cgroups (systemd hosts), or a link emulator on its links.
fn lab_pids(name: &str, indexes: &BTreeSet<u8>, dir: Option<&Path>) -> Vec<i32> {
    let (_, netns) = net::objects_of(indexes);
    let mut pids: Vec<i32> = netns.iter().flat_map(|ns| sys::netns_pids(ns)).collect();
    if let Some(dir) = dir {
        pids.extend(sys::pids_rooted_under(dir));
        pids.extend(cgroup::lab_pids(name));
    }
    // The shells that boot hosts again when they reboot themselves.
    let boot = crate::host::boot_marker(name, 0);
    let boot_prefix = boot.trim_end_matches("h0");
    pids.extend(sys::pids_with_args(|args| args.iter().any(|a| a.starts_with(boot_prefix))));
    pids.extend(sys::pids_with_args(|args| {
        args.iter().any(|a| a == wire::MARKER)
            && args
                .windows(2)
                .any(|w| w[0] == "--host-if" && Naming::parse(&w[1]).is_some_and(|(i, _)| indexes.contains(&i)))
    }));
    pids.retain(|p| sys::process_state(*p).is_some_and(|s| s != 'Z'));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILL until none is left (a dying supervisor may fork once more).
fn kill_all(name: &str, indexes: &BTreeSet<u8>, dir: Option<&Path>) -> usize {
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = lab_pids(name, indexes, dir);
        if pids.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        for p in pids {
            sys::signal(p, libc::SIGKILL);
            killed.insert(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leftovers(name: &str, indexes: &BTreeSet<u8>, dir: Option<&Path>) -> Result<Vec<String>, LabError> {
    let (links, netns) = net::objects_of(indexes);
    let mut left: Vec<String> = netns.into_iter().map(|n| format!("netns {n}")).collect();
    left.extend(links.into_iter().map(|(l, _)| format!("link {l}")));
    left.extend(lab_pids(name, indexes, dir).into_iter().map(|p| format!("process {p}")));
    if let Some(dir) = dir {
        left.extend(cgroup::lab_dirs(name).into_iter().map(|c| format!("cgroup {}", c.display())));
        left.extend(sys::mounts_under(dir)?.into_iter().map(|m| format!("mount {}", m.display())));
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
    }
    Ok(left)
}
