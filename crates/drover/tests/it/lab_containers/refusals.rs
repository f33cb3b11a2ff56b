//! Container hosts the lab does not make are refused before anything is.

use crate::support::lab::TestLab;

/// `--containers` on OpenRC hosts and `+containers` on an emulated arm64
/// host are refused (exit 3) naming the kinds that work, with no state
/// made; an unknown `+attribute` is a usage error naming the syntax.
#[test]
fn container_hosts_are_refused_on_openrc_and_arm64_and_bad_attributes() {
    let lab = TestLab::new("ctr-refusals");
    for args in
        [&["up", "1", "--init", "openrc", "--containers"][..], &["up", "1", "--kinds", "arm64-runit+containers"]]
    {
        let out = lab.drover(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("+containers:") && err.contains("use runit+containers or systemd+containers"), "{err}");
        assert!(!lab.dir().join("state.json").exists(), "nothing made for {args:?}");
    }
    let out = lab.drover(&["up", "1", "--kinds", "runit+docker"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown attribute +docker") && err.contains("[ARCH-][busybox-]INIT[+containers]"), "{err}");
}
