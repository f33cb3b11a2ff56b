//! runc in a container host, without a daemon (what drover's runtime will
//! do, #29 item 2), on runit and systemd hosts.

use drover_lab::Init;

use super::{busybox_rootfs, down_leaves_nothing, http_get, install, scp, ssh, ssh_try, wait_http};
use crate::support::Fleet;

/// The port the container's httpd listens on, on the host's address.
const PORT: u16 = 18080;

/// Edits `runc spec`'s config.json, with the host's python3: no terminal,
/// the host's network (no network namespace), the host directory
/// /var/lib/drover-containers/data bound at /data, memory and pids limits;
/// the process writes to /data and serves /www on [`PORT`].
const CONFIGURE: &str = r#"import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/sh", "-c", "echo started by $(id -u) > /data/started; exec /bin/busybox httpd -f -p 18080 -h /www"]
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
c["mounts"].append({"destination": "/data", "type": "bind", "source": "/var/lib/drover-containers/data", "options": ["rbind", "rw"]})
c["linux"].setdefault("resources", {})["memory"] = {"limit": 64 * 1024 * 1024}
c["linux"]["resources"]["pids"] = {"limit": 32}
json.dump(c, open("config.json", "w"), indent=1)
"#;

/// A container host has no runc; with Debian's runc installed from the
/// controller's packages, `runc run` of a busybox bundle (config.json from
/// `runc spec`, host networking) answers on a TCP port of the host, writes
/// to a bind-mounted directory of the host's store, gets its memory and
/// pids limits in cgroups nested under the host's own (seen from the
/// controller), and `runc kill`/`runc delete` stop and remove it; user
/// namespaces work (the host was pivot_root'ed, not chrooted). After `lab
/// reboot` the host runs a container again (cgroups mounted at boot, the
/// store kept). Then `lab down`, with that container running, leaves no
/// mount, cgroup, process, namespace or store behind.
fn runc_runs_a_bundle_that_answers_and_down_cleans_up(init: Init) {
    let f = Fleet::containers("ctr", 1, init);
    let (has_runc, ..) = ssh_try(&f, 0, "command -v runc");
    assert!(!has_runc, "a container host comes without runc");
    assert_eq!(ssh(&f, 0, "stat -fc %T /var/lib/drover-containers /var/lib/docker"), "ext2/ext3\next2/ext3");
    install(&f, 0, &["runc"]);
    assert!(ssh(&f, 0, "runc --version").starts_with("runc version"));

    let rootfs = f.project().join("rootfs");
    busybox_rootfs(&rootfs, "hello from runc");
    let tar = f.project().join("rootfs.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    scp(&f, 0, &[tar], "/root/web");
    ssh(&f, 0, &format!(
        "cd /root/web && mkdir rootfs && tar -C rootfs -xf rootfs.tar && runc spec && python3 - <<'EOF'\n{CONFIGURE}EOF\n\
         mkdir -p /var/lib/drover-containers/data && runc run -d web </dev/null >/run/web.log 2>&1 || {{ cat /run/web.log; exit 1; }}"
    ));
    assert_eq!(wait_http(&f, 0, PORT, "/index.html"), "hello from runc");
    assert_eq!(ssh(&f, 0, "cat /var/lib/drover-containers/data/started"), "started by 0");
    assert!(ssh(&f, 0, "runc state web").contains("\"status\": \"running\""));

    // Its limits, in cgroups below the host's own (what `down` removes).
    let memory = ssh(&f, 0, "cd /root/web && grep -E '^[0-9]+:memory:' /proc/$(runc state web | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pid\"])')/cgroup | cut -d: -f3");
    assert!(memory.len() > 1, "the container has a memory cgroup of its own: {memory:?}");
    let limit = ssh(&f, 0, &format!("cat /sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"));
    assert_eq!(limit, (64 * 1024 * 1024).to_string());
    let outside = std::path::Path::new("/sys/fs/cgroup/memory/drover-lab")
        .join(f.lab_name())
        .join("h1")
        .join(memory.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(outside.join("memory.limit_in_bytes")).unwrap().trim(), limit);
    assert_eq!(ssh(&f, 0, &format!("cat /sys/fs/cgroup/pids{memory}/pids.max")), "32");
    assert_eq!(ssh(&f, 0, "unshare --user --map-root-user sh -c 'id -u'"), "0");

    ssh(&f, 0, "runc kill web KILL && for i in $(seq 50); do runc state web | grep -q '\"stopped\"' && break; sleep 0.1; done && runc delete web");
    assert_eq!(ssh(&f, 0, "runc list -q"), "");
    assert!(http_get(&f, 0, PORT, "/index.html").is_err(), "the port closes with the container");

    // The host stays a container host: `lab status` says so, and after a
    // reboot its cgroups are mounted again and its store is still there.
    let status = f.lab(&["status", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows[0]["kind"]["containers"], true, "{}", status.stdout);
    let reboot = f.lab(&["reboot", "h1"]);
    assert_eq!(reboot.code, 0, "{}", reboot.stderr);
    assert_eq!(ssh(&f, 0, "cat /var/lib/drover-containers/data/started"), "started by 0");

    ssh(&f, 0, "cd /root/web && runc run -d web2 </dev/null >/run/web.log 2>&1");
    wait_http(&f, 0, PORT, "/index.html");
    down_leaves_nothing(&f);
}

#[test]
fn runc_runs_a_bundle_that_answers_and_down_cleans_up_runit() {
    runc_runs_a_bundle_that_answers_and_down_cleans_up(Init::Runit);
}

#[test]
fn runc_runs_a_bundle_that_answers_and_down_cleans_up_systemd() {
    runc_runs_a_bundle_that_answers_and_down_cleans_up(Init::Systemd);
}
