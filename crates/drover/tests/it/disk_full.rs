//! A full filesystem on a lab host (#26): a target directory that is a
//! 1 MiB tmpfs inside the host (mounted from the host's own shell, so in
//! its mount namespace), asked to hold a 2 MiB file. The agent refuses
//! before writing anything, and the run's table and `--json` say which
//! filesystem, its free space and what the change needs; `status` still
//! reads the host; once the filesystem has room, the next apply converges
//! and the one after it has nothing to do.

use crate::support::{noise, Fleet};

#[test]
fn a_full_target_filesystem_is_named_in_the_report_and_the_host_converges_once_it_has_room() {
    const SIZE: usize = 2 << 20;
    let fleet = Fleet::new("disk-full", 1);
    fleet.host_sh(0, "mkdir -p /srv/tiny && mount -t tmpfs -o size=1m,mode=0755 tmpfs /srv/tiny");
    let first = fleet.apply_ok();
    assert_eq!(first[0]["generation"], 1, "{:#}", first[0]);
    let dest = fleet.project().join("layers/site/srv/tiny/big.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, noise(SIZE)).unwrap();

    let run = fleet.apply_json(&[]);
    assert_eq!(run.code, 2, "the host failed, so exit 2:\n{}\n{}", run.stdout, run.stderr);
    let hosts = run.hosts();
    let h = &hosts[0];
    assert_eq!(h["outcome"], "failed", "{h:#}");
    let storage = &h["storage"];
    assert_eq!((storage["error"].as_str(), storage["mount"].as_str()), (Some("no-space"), Some("/srv/tiny")), "{h:#}");
    assert_eq!((&storage["left"], &storage["generation"]), (&"untouched".into(), &1.into()), "{h:#}");
    let free = storage["free"].as_u64().unwrap();
    let needed = storage["needed"].as_u64().unwrap();
    assert!(free <= 1 << 20 && needed > SIZE as u64 && needed > free, "{h:#}");
    let error = h["error"].as_str().unwrap();
    for part in ["not enough space on /srv/tiny", &format!("({free} bytes) free"), &format!("({needed} bytes)")] {
        assert!(error.contains(part), "{part:?} not in {error:?}");
    }
    assert!(error.contains("nothing was changed, the host stays on generation 1"), "{error}");
    assert_eq!(fleet.host_sh(0, "ls -A /srv/tiny"), "", "nothing was written to the full filesystem");

    // The table says the same; `status` still reads the host.
    let table = fleet.drover(&["apply"]);
    assert_eq!(table.code, 2, "{}\n{}", table.stdout, table.stderr);
    assert!(table.stdout.contains("not enough space on /srv/tiny"), "{}", table.stdout);
    let status = fleet.drover(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e}):\n{}\n{}", status.stdout, status.stderr));
    let row = &v[0];
    assert!(row["error"].is_null() && row["generation"] == 1, "status reads the host: {row:#}");

    // Room again: the same apply converges, and then has nothing to do.
    fleet.host_sh(0, "mount -o remount,size=8m /srv/tiny");
    let hosts = fleet.apply_ok();
    assert_eq!((&hosts[0]["outcome"], &hosts[0]["generation"]), (&"changed".into(), &2.into()), "{:#}", hosts[0]);
    assert_eq!(fleet.host_sh(0, "wc -c < /srv/tiny/big.bin"), SIZE.to_string());
    let again = fleet.apply_ok();
    assert_eq!(again[0]["outcome"], "unchanged", "the file is exactly the project's: {:#}", again[0]);
    fleet.host_sh(0, "umount /srv/tiny");
}
