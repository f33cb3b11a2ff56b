//! Facts about the host, sent in the hello reply and used by templates.

use std::path::Path;

use drover_proto::{Facts, Supervisor};

use crate::boot::HostEnv;
use crate::layout::Layout;

/// The facts of the host `layout` serves in environment `env`: what the
/// kernel says (hostname, pid 1) only on a real host; a simulated host's
/// come from its root.
pub fn gather(layout: &Layout, env: HostEnv) -> Facts {
    let read = |p: &str| std::fs::read_to_string(layout.target(p)).unwrap_or_default().trim().to_string();
    let os = read("/etc/os-release");
    let field = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .trim_matches('"')
            .to_string()
    };
    let mut hostname = if env == HostEnv::System { read("/proc/sys/kernel/hostname") } else { String::new() };
    if hostname.is_empty() {
        hostname = read("/etc/hostname");
    }
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Facts {
        hostname,
        os_id: field("ID"),
        os_version: field("VERSION_ID"),
        arch: std::env::consts::ARCH.to_string(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        supervisor: detect_supervisor(layout, env),
        cpus: std::thread::available_parallelism().map(|n| u32::try_from(n.get()).unwrap_or(1)).unwrap_or(1),
        mem_bytes: mem_kb * 1024,
    }
}

/// systemd if it is running, runit if runsvdir is (or `/etc/service` exists
/// with `sv` installed), OpenRC if its tools are there.
fn detect_supervisor(layout: &Layout, env: HostEnv) -> Option<Supervisor> {
    let t = |p: &str| layout.target(p);
    if t("/run/systemd/system").is_dir() {
        return Some(Supervisor::Systemd);
    }
    if matches!(env.init_name().as_str(), "runit" | "runsvdir")
        || (t("/etc/service").is_dir() && exists_any(layout, &["/usr/bin/sv", "/sbin/sv", "/bin/sv"]))
    {
        return Some(Supervisor::Runit);
    }
    if exists_any(layout, &["/sbin/openrc-run", "/usr/sbin/openrc-run", "/sbin/openrc"]) {
        return Some(Supervisor::OpenRc);
    }
    None
}

fn exists_any(layout: &Layout, paths: &[&str]) -> bool {
    paths.iter().any(|p| Path::new(&layout.target(p)).exists())
}
