//! Facts about the host, sent in the hello reply and used by templates.

use std::path::Path;
use std::sync::OnceLock;

use drover_proto::{Facts, Supervisor};

use crate::hostenv::HostEnv;
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
    let m = machine();
    Facts {
        hostname,
        os_id: field("ID"),
        os_version: field("VERSION_ID"),
        arch: std::env::consts::ARCH.to_string(),
        kernel: m.kernel.clone(),
        supervisor: detect_supervisor(layout, env),
        cpus: m.cpus,
        mem_bytes: m.mem_bytes,
    }
}

/// What the kernel says about the machine, the same for every session of
/// this process.
struct Machine {
    kernel: String,
    cpus: u32,
    mem_bytes: u64,
}

/// Read once per process. A real agent serves one session per process, so
/// this changes nothing there; in-process simulated hosts (thousands of
/// sessions in the controller's process, all on its machine) no longer
/// re-read `/proc/meminfo` and the cgroup files behind
/// `available_parallelism` on every session: that was about a quarter of
/// a simulated no-op agent's CPU.
fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            cpus: std::thread::available_parallelism().map(|n| u32::try_from(n.get()).unwrap_or(1)).unwrap_or(1),
            mem_bytes: mem_kb * 1024,
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Machine facts are read once per process and shared; a host's own
    /// (hostname, OS, supervisor) still come from each host's root.
    #[test]
    fn host_facts_come_from_each_root_and_machine_facts_are_shared() {
        let roots: Vec<_> = ["alpha", "beta"]
            .iter()
            .map(|name| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::create_dir_all(dir.path().join("etc/service")).unwrap();
                std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
                std::fs::write(dir.path().join("usr/bin/sv"), b"").unwrap();
                std::fs::write(dir.path().join("etc/hostname"), format!("{name}\n")).unwrap();
                let os =
                    if *name == "alpha" { "ID=debian\nVERSION_ID=\"12\"\n" } else { "ID=alpine\nVERSION_ID=3.20\n" };
                std::fs::write(dir.path().join("etc/os-release"), os).unwrap();
                dir
            })
            .collect();
        let facts: Vec<Facts> =
            roots.iter().map(|d| gather(&Layout::new(d.path().to_path_buf()), HostEnv::Simulated)).collect();
        assert_eq!(
            (facts[0].hostname.as_str(), facts[0].os_id.as_str(), facts[0].os_version.as_str()),
            ("alpha", "debian", "12")
        );
        assert_eq!(
            (facts[1].hostname.as_str(), facts[1].os_id.as_str(), facts[1].os_version.as_str()),
            ("beta", "alpine", "3.20")
        );
        assert!(facts.iter().all(|f| f.supervisor == Some(Supervisor::Runit)), "{facts:?}");
        assert_eq!(
            (&facts[0].kernel, facts[0].cpus, facts[0].mem_bytes),
            (&facts[1].kernel, facts[1].cpus, facts[1].mem_bytes)
        );
        assert!(facts[0].cpus >= 1 && facts[0].mem_bytes > 0 && !facts[0].kernel.is_empty(), "{:?}", facts[0]);
    }
}
