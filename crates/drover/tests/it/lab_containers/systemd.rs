//! systemd on a container host manages the host's cgroup controllers.

use drover_lab::Init;

use super::ssh;
use crate::support::Fleet;

/// On a `systemd+containers` host every controller is mounted before
/// systemd starts, so systemd manages them: it reaches `running` with no
/// failed unit, and a unit's `MemoryMax=` and `TasksMax=` become limits in
/// the host's memory and pids hierarchies, which the controller sees below
/// the host's own cgroup (on an ordinary systemd host they have no effect).
#[test]
fn systemd_on_a_container_host_applies_memorymax_and_tasksmax() {
    let f = Fleet::up_kind("ctr-sd", 1, drover_lab::Kind::native(Init::Systemd).with_containers());
    assert_eq!(ssh(&f, 0, "systemctl is-system-running --wait"), "running");
    assert_eq!(ssh(&f, 0, "systemctl --failed --no-legend"), "");
    ssh(&f, 0, "systemd-run --unit probe -p MemoryMax=50M -p TasksMax=20 sleep 600");
    let unit = "system.slice/probe.service";
    assert_eq!(ssh(&f, 0, &format!("cat /sys/fs/cgroup/memory/{unit}/memory.limit_in_bytes")), "52428800");
    assert_eq!(ssh(&f, 0, &format!("cat /sys/fs/cgroup/pids/{unit}/pids.max")), "20");
    let outside = std::path::Path::new("/sys/fs/cgroup/memory/drover-lab").join(f.lab_name()).join("h1").join(unit);
    assert_eq!(std::fs::read_to_string(outside.join("memory.limit_in_bytes")).unwrap().trim(), "52428800");
}
