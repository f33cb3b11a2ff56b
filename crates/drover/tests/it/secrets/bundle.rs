//! Secrets and bundles: a host without a pinned ed25519 key gets none.

use super::{has, secret_project, VALUE};
use crate::support::files_containing;

/// Bundles seal each host's secrets to its pinned SSH ed25519 host key
/// (`bundle_secrets.rs`); a host with secrets and no such key pinned
/// is refused at build time, naming the host, the paths and the fix, and
/// nothing is written (no bundle, no clear text).
#[test]
fn a_bundle_for_a_host_without_a_pinned_ed25519_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let out = tmp.path().join("b.drover");
    let r = op.run(&["bundle", "build", "-o", out.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for want in ["host s1", "/etc/app.conf", "no ssh-ed25519 key", "drover trust --hosts s1"] {
        assert!(has(&r.stderr, want), "{want}: {}", r.stderr);
    }
    assert!(!r.stderr.contains(VALUE));
    assert!(!out.exists() && !tmp.path().join("b.drover.partial").exists(), "a bundle was left behind");
    assert!(files_containing(tmp.path(), VALUE.as_bytes()).is_empty(), "nothing written in clear");
}
