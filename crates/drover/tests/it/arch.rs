//! Hosts of an architecture drover carries no agent for (#30 item 1): the
//! bootstrap asks each host's `uname -m` before anything is uploaded, and
//! refuses such a host with a message naming its machine, while the other
//! hosts of the run converge. The simulated transport's hosts run on the
//! controller's machine and say so.
//!
//! The lab test needs root (the lab does).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::{sim_project, Fleet, Run, DROVER};
use drover::agent_bin::{self, Arch};
use drover::transport::bootstrap;

/// What this test fakes, and only that: h3's `uname -m` says `armv7l` (a
/// 32-bit ARM board), through a wrapper placed first in root's `PATH`
/// (`/usr/local/sbin`, ahead of coreutils' `/usr/bin/uname`, for root's
/// SSH sessions: that is where the bootstrap's `uname` is looked up). Every
/// other `uname` call is the real one. The host really is this machine, so
/// an agent pushed to it would run: only a controller that believes the
/// probe and stops there leaves it untouched.
const FAKE_UNAME: &str = "#!/bin/sh\n\
# drover test (tests/it/arch.rs): this host pretends to be a 32-bit ARM board.\n\
if [ \"$1\" = -m ]; then echo armv7l; else exec /bin/uname \"$@\"; fi\n";

/// The message the refused host gets, as the run's table and `--json` show it.
fn refusal() -> String {
    format!(
        "architecture armv7l is not supported: drover carries agents for {}; nothing was uploaded",
        agent_bin::arch_list(&agent_bin::carried())
    )
}

/// The host's report in a `--json` run.
fn report(run: &Run, host: &str) -> serde_json::Value {
    run.hosts().into_iter().find(|h| h["host"] == host).unwrap_or_else(|| panic!("no report for {host}"))
}

/// h3 says it is an `armv7l`: `apply` refuses it with the message in
/// `--json` and in the table, tries it once only, sends it nothing (0 bytes,
/// no agent on its disk, no upload left in its /tmp, no file of the
/// project), and h1 and h2 converge in the same run, then are unchanged.
#[test]
fn a_host_of_an_unsupported_architecture_is_refused_before_any_upload_and_the_others_converge() {
    let f = Fleet::new("arch-refused", 3);
    let uname = f.host_file(2, "/usr/local/sbin/uname");
    fs::create_dir_all(uname.parent().unwrap()).unwrap();
    fs::write(&uname, FAKE_UNAME).unwrap();
    fs::set_permissions(&uname, fs::Permissions::from_mode(0o755)).unwrap();

    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "one host failed, the others converged\n{}\n{}", r.stdout, r.stderr);
    for host in ["h1", "h2"] {
        assert_eq!(report(&r, host)["outcome"], "changed", "{}", r.stdout);
    }
    let h3 = report(&r, "h3");
    assert_eq!(h3["outcome"], "failed", "{h3}");
    let err = h3["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&refusal()),
        "h3 is refused naming its machine (if h3 converged, the fake uname was not the one root's PATH finds): {h3}"
    );
    assert_eq!(h3["attempts"], 1, "a refusal is never retried: {h3}");
    assert!(h3.get("retried").is_none(), "{h3}");
    assert_eq!((h3["bytes_sent"].as_u64(), h3["blobs_sent"].as_u64()), (Some(0), Some(0)), "{h3}");
    assert_nothing_uploaded(&f);
    assert!(f.host_file(0, &bootstrap::agent_path()).is_file(), "h1 got the agent");

    // The table says the same, and the others are now unchanged.
    let again = f.drover(&["apply"]);
    assert_eq!(again.code, 2, "{}\n{}", again.stdout, again.stderr);
    let row = again.stdout.lines().find(|l| l.starts_with("h3 ")).unwrap_or_else(|| panic!("{}", again.stdout));
    assert!(row.contains("failed") && row.contains(&refusal()), "{row}");
    for host in ["h1 ", "h2 "] {
        let row = again.stdout.lines().find(|l| l.starts_with(host)).unwrap();
        assert!(row.contains("unchanged"), "{row}");
    }
    assert_nothing_uploaded(&f);
}

/// h3's disk has no agent, no agent directory, no upload in its /tmp and
/// none of the project's files.
fn assert_nothing_uploaded(f: &Fleet) {
    for agent in agent_bin::agents() {
        assert!(!f.host_file(2, &bootstrap::path_of(agent)).exists(), "an agent was installed on h3");
    }
    assert!(!f.host_file(2, bootstrap::AGENT_DIR).exists(), "h3 has an agent directory");
    let uploads: Vec<_> = fs::read_dir(f.host_file(2, "/tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("drover-agent"))
        .map(|e| e.path())
        .collect();
    assert!(uploads.is_empty(), "an agent was uploaded to h3: {uploads:?}");
    assert!(!f.host_file(2, "/srv/site/index.html").exists(), "the project reached h3");
}

/// Simulated hosts run on the controller's machine, in-process or as agent
/// processes (`--sim-processes`), and their facts say so: a template's
/// `facts.arch` is the controller's architecture in both.
#[test]
fn simulated_hosts_report_the_controllers_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 1);
    fs::create_dir_all(proj.join("layers/site/etc")).unwrap();
    fs::write(proj.join("layers/site/etc/drover-arch.j2"), "{{ facts.arch }}\n").unwrap();
    for (dir, extra) in [("in-process", &[][..]), ("processes", &["--sim-processes"][..])] {
        let hosts = tmp.path().join(dir);
        let out = std::process::Command::new(DROVER)
            .arg("-C")
            .arg(&proj)
            .args(["apply", "--json", "--simulate"])
            .arg(&hosts)
            .args(["--sim-latency", "0", "--sim-bandwidth", "0", "--sim-failure-rate", "0"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 0, "{dir}: {}\n{}", r.stdout, r.stderr);
        let said = fs::read_to_string(hosts.join("s1/etc/drover-arch")).unwrap();
        assert_eq!(said.trim(), Arch::controller().to_string(), "{dir}");
        assert_eq!(said.trim(), std::env::consts::ARCH, "{dir}");
    }
}

/// What the next test fakes: h2's `uname -m` says `aarch64`, as an ARM
/// board's does (the wrapper as in [`FAKE_UNAME`]).
const AARCH64_UNAME: &str = "#!/bin/sh\n\
# drover test (tests/it/arch.rs): this host says it is a 64-bit ARM machine.\n\
if [ \"$1\" = -m ]; then echo aarch64; else exec /bin/uname \"$@\"; fi\n";

/// A controller built with several agents (`DROVER_AGENTS_DIR`, as
/// scripts/test builds it) gives each host the agent for its machine: h2
/// says `aarch64` and gets the aarch64 agent, which really runs there
/// (this machine runs aarch64 binaries under qemu-user through
/// binfmt_misc, as `scripts/deps --test --cross-agents` sets up) and
/// reports `aarch64` in its facts; h1 gets this machine's. Neither gets the
/// other's, and a second apply finds both unchanged. The lab with real
/// arm64 roots (`drover lab up --arch arm64`) repeats this with nothing
/// faked.
#[test]
fn each_host_gets_and_runs_the_agent_for_its_machine() {
    let arm = agent_bin::for_arch(&Arch::Aarch64).unwrap_or_else(|| {
        panic!(
            "this drover carries no aarch64 agent (it carries {}): build the tests with DROVER_AGENTS_DIR \
             (scripts/build-agents --test-hooks; scripts/test does)",
            agent_bin::arch_list(&agent_bin::carried())
        )
    });
    assert!(
        std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
        "this machine cannot run aarch64 binaries: run scripts/deps --test --cross-agents"
    );
    let native = agent_bin::native();
    assert!(native != arm);
    let f = Fleet::new("arch-aarch64", 2);
    let uname = f.host_file(1, "/usr/local/sbin/uname");
    fs::create_dir_all(uname.parent().unwrap()).unwrap();
    fs::write(&uname, AARCH64_UNAME).unwrap();
    fs::set_permissions(&uname, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(f.project().join("layers/site/etc/drover-arch.j2"), "{{ facts.arch }}\n").unwrap();

    let reports = f.apply_ok();
    for h in &reports {
        assert_eq!(h["outcome"], "changed", "{h}");
    }
    for (i, (mine, other, machine)) in [(native, arm, "x86_64"), (arm, native, "aarch64")].into_iter().enumerate() {
        let installed = fs::read(f.host_file(i, &bootstrap::path_of(mine)))
            .unwrap_or_else(|e| panic!("h{}: no {machine} agent installed: {e}", i + 1));
        assert!(installed == mine.bytes(), "h{}: the installed agent is not the {machine} one", i + 1);
        assert!(!f.host_file(i, &bootstrap::path_of(other)).exists(), "h{}: got the other machine's agent", i + 1);
        let said = fs::read_to_string(f.host_file(i, "/etc/drover-arch")).unwrap();
        assert_eq!(said.trim(), machine, "h{}: the agent that ran reports its machine", i + 1);
    }

    let again = f.apply_ok();
    for h in &again {
        assert_eq!(h["outcome"], "unchanged", "{h}");
    }
}
