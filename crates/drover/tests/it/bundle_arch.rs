//! Bundles for a fleet of several machines (#30 item 1): a bundle carries
//! one agent per machine its hosts run on (every agent this drover has when
//! a host's machine is not known), and an offline install on a host runs
//! and installs the one for its own `uname -m`, or refuses, naming the
//! machine and the ones carried, before changing anything.
//!
//! One amd64 host and one emulated arm64 host (qemu-user: slow, so only
//! one). Needs root (the lab does), qemu-user-static and the aarch64 agent
//! (`scripts/build-agents`, `DROVER_AGENTS_DIR`).

use std::fs;
use std::path::Path;

use crate::bundle::{build_and_sign, inspect, Keys};
use crate::support::{drover_in, ok, usb_stick, Fleet};
use drover_lab::{Arch, Kind};

/// The `e_machine` of the ELF file(s) matching `glob` on host `i`, read by
/// the host's own `od`: `3e 00` is x86_64, `b7 00` aarch64.
fn elf_machine_on_host(f: &Fleet, i: usize, glob: &str) -> String {
    let r = f.in_host(i, &["sh", "-c", &format!("for a in {glob}; do od -An -tx1 -j18 -N2 \"$a\"; done")]);
    ok(&r);
    r.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn agent_hash(v: &serde_json::Value, arch: &str) -> String {
    let a = v["agents"].as_array().unwrap().iter().find(|a| a["arch"] == arch);
    a.unwrap_or_else(|| panic!("no {arch} agent: {v}"))["hash"].as_str().unwrap().to_string()
}

/// Built before any apply (machines not known), the bundle carries every
/// agent and says why; `bundle agent` writes a launcher and one agent per
/// machine; each host's offline install runs and installs the agent of its
/// own machine (ELF `e_machine` read on the host), which a controller then
/// finds in place. Once the machines are cached, a bundle carries exactly
/// theirs; one for the amd64 host alone is refused on the arm64 host, by
/// the launcher and by the x86_64 agent run directly, naming both
/// machines, with nothing changed.
#[test]
fn a_mixed_fleet_bundle_carries_an_agent_per_machine_and_each_host_installs_its_own() {
    assert!(
        drover::agent_bin::for_arch(&drover::agent_bin::Arch::Aarch64).is_some(),
        "this drover carries no aarch64 agent: build it with `bash scripts/build-agents --test-hooks` and DROVER_AGENTS_DIR"
    );
    let f = Fleet::mixed("bundle-arch", &[Kind::runit(), Kind::runit().with_arch(Arch::Arm64)]);
    let keys = Keys::new();
    let site = keys.path("site.drv");
    let built = f.drover(&["bundle", "build", "-o", site.to_str().unwrap()]);
    ok(&built);
    assert!(
        built
            .stdout
            .contains("agents for aarch64, x86_64: every agent this drover has, as the machine of h1, h2 is not known"),
        "{}",
        built.stdout
    );
    ok(&drover_in(Path::new("/"), &["bundle", "sign", site.to_str().unwrap(), "--key", keys.key().to_str().unwrap()]));
    let v = inspect(&site);
    let arches: Vec<&str> = v["agents"].as_array().unwrap().iter().map(|a| a["arch"].as_str().unwrap()).collect();
    assert_eq!(arches, ["aarch64", "x86_64"], "{v}");

    for (i, (machine, elf)) in [("x86_64", "3e 00"), ("aarch64", "b7 00")].into_iter().enumerate() {
        usb_stick(&f, i, &site, &keys.public(), "all");
        assert_eq!(elf_machine_on_host(&f, i, "/media/usb/all/drover-agent.*"), "b7 00 3e 00", "one per machine");
        assert!(!f.host_file(i, "/var/lib/drover/agent").exists(), "h{}: an agent before the install", i + 1);
        let r = f.in_host(
            i,
            &[
                "/media/usb/all/drover-agent",
                "install",
                "/media/usb/all/site.drv",
                "--pubkey",
                "/media/usb/all/ops.pub",
            ],
        );
        ok(&r);
        let hash = agent_hash(&v, machine);
        assert!(r.stdout.contains(&format!("host h{}: generation", i + 1)), "{}", r.stdout);
        assert!(
            r.stdout.contains(&format!("agent for {machine} ({}) installed at", &hash[..12])),
            "h{} installs its machine's agent: {}",
            i + 1,
            r.stdout
        );
        assert!(f.host_file(i, "/srv/site/index.html").exists());
        let dir: Vec<String> = fs::read_dir(f.host_file(i, "/var/lib/drover/agent"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(dir, [format!("agent-{hash}")], "h{}", i + 1);
        assert_eq!(elf_machine_on_host(&f, i, "/var/lib/drover/agent/agent-*"), elf, "h{} ({machine})", i + 1);
    }

    // A controller finds each host's agent in place (same file, not
    // uploaded again), and caches the hosts' machines.
    let ino = |i: usize| {
        use std::os::unix::fs::MetadataExt;
        let p = f.host_file(i, &format!("/var/lib/drover/agent/agent-{}", agent_hash(&v, ["x86_64", "aarch64"][i])));
        fs::metadata(p).unwrap().ino()
    };
    let before = [ino(0), ino(1)];
    ok(&f.drover(&["apply"]));
    assert_eq!([ino(0), ino(1)], before, "the controller replaced an agent the install put in place");

    let both = keys.path("both.drv");
    let built = f.drover(&["bundle", "build", "-o", both.to_str().unwrap()]);
    ok(&built);
    assert!(
        built.stdout.contains("agents for aarch64, x86_64 (the machines of its hosts, by their cached facts)"),
        "{}",
        built.stdout
    );
    let amd = keys.path("amd.drv");
    build_and_sign(&f, &keys, &amd, &["--hosts", "h1"]);
    let v = inspect(&amd);
    let arches: Vec<&str> = v["agents"].as_array().unwrap().iter().map(|a| a["arch"].as_str().unwrap()).collect();
    assert_eq!(arches, ["x86_64"], "{v}");

    usb_stick(&f, 1, &amd, &keys.public(), "amd");
    let snapshot = f.upper_snapshot(1);
    let why = "this host's machine is aarch64 (uname -m), and this bundle carries agents for x86_64 only";
    let args = ["install", "/media/usb/amd/site.drv", "--pubkey", "/media/usb/amd/ops.pub", "--host", "h1"];
    let launched = f.in_host(1, &[&["/media/usb/amd/drover-agent"][..], &args].concat());
    // The x86_64 agent itself runs on this machine (the lab emulates only
    // the arm64 userland), and asks the host's `uname`.
    let direct = f.in_host(1, &[&["/media/usb/amd/drover-agent.x86_64"][..], &args].concat());
    for (how, r) in [("launcher", launched), ("x86_64 agent", direct)] {
        assert_ne!(r.code, 0, "{how}: installed\n{}", r.stdout);
        let err = r.stderr.replace('`', "");
        assert!(err.contains(why) && err.contains("nothing was changed on this host"), "{how}: {}", r.stderr);
    }
    assert_eq!(snapshot, f.upper_snapshot(1), "the arm64 host changed");
}
