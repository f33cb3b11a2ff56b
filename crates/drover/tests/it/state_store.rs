//! The state store as the `drover` binary uses it: `[state]` /
//! `DROVER_STATE_URL` select PostgreSQL, an unreachable database stops a
//! run before any host is contacted (naming the URL without its password),
//! and `drover state migrate` copies a SQLite history into PostgreSQL.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_state::{HostResult, NewRun, Store};

use crate::support::{init_project, Run, DROVER};

fn drover(project: &Path, url: Option<&str>, args: &[&str]) -> Run {
    let mut c = Command::new(DROVER);
    c.arg("-C").arg(project).args(args).stdin(Stdio::null());
    match url {
        Some(u) => c.env("DROVER_STATE_URL", u),
        None => c.env_remove("DROVER_STATE_URL"),
    };
    Run::from(c.output().unwrap())
}

fn project(d: &Path) -> std::path::PathBuf {
    let p = d.join("proj");
    init_project(&p);
    p
}

#[test]
fn an_unreachable_state_database_stops_every_command_before_any_host_is_touched() {
    let d = tempfile::tempdir().unwrap();
    let p = project(d.path());
    // The only host: a listener that counts who connects to it.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    host.set_nonblocking(true).unwrap();
    let contacts = Arc::new(AtomicUsize::new(0));
    let counter = contacts.clone();
    std::thread::spawn(move || loop {
        if host.accept().is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(20));
    });
    std::fs::write(
        p.join("inventory.toml"),
        format!("[hosts.web1]\naddress = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\nhost-key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFbtzdOtLCTbyeHPD9lM3YJlg6Qv3bGz1I9FPkpvNkT9\"\n"),
    )
    .unwrap();
    let url = "postgres://drover:hunter2@127.0.0.1:1/fleet?sslmode=disable";
    for args in [&["apply"][..], &["status"], &["exec", "all", "--", "true"], &["rollout", "start"], &["history"]] {
        let r = drover(&p, Some(url), args);
        assert_eq!(r.code, 1, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("postgres://drover:***@127.0.0.1:1/fleet") && r.stderr.contains("cannot connect"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"), "{args:?} leaked the password");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(contacts.load(Ordering::SeqCst), 0, "a host was contacted");
    // The same URL from drover.toml, and a bad one there pointing at its line.
    let toml = p.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[state]\nurl = \"{url}\"\n")).unwrap();
    let r = drover(&p, None, &["apply"]);
    assert!(r.code == 1 && r.stderr.contains("postgres://drover:***@127.0.0.1:1/fleet"), "{}", r.stderr);
    std::fs::write(&toml, format!("{text}\n[state]\nurl = \"mysql://db/x\"\n")).unwrap();
    let r = drover(&p, None, &["history"]);
    assert!(
        r.code == 1 && r.stderr.contains("not a state store URL") && r.stderr.contains("drover.toml:"),
        "{}",
        r.stderr
    );
    assert_eq!(contacts.load(Ordering::SeqCst), 0);
}

#[test]
fn state_migrate_copies_a_sqlite_history_that_drover_then_reads_from_postgres() {
    let d = tempfile::tempdir().unwrap();
    let p = project(d.path());
    let mut s = Store::open(&p.join(".drover/state.db")).unwrap();
    let id = s
        .begin_run(&NewRun {
            command: "apply".into(),
            args: String::new(),
            user: "op".into(),
            project_rev: "r1".into(),
        })
        .unwrap();
    for h in ["h1", "h2"] {
        s.record_host(&HostResult {
            run_id: id,
            host: h.into(),
            outcome: "changed".into(),
            generation: Some(2),
            changes: 1,
            bytes_sent: 10,
            files_written: 1,
            duration_ms: 3,
            error: None,
            detail: "{}".into(),
            at_ms: 1000,
        })
        .unwrap();
    }
    s.finish_run(id, "ok").unwrap();
    s.set_drained("h2", Some("disk swap")).unwrap();
    s.save_facts("h1", "{}").unwrap();
    s.create_rollout(Some(id), "{}", "inputs:x").unwrap();
    drop(s);
    let before = drover(&p, None, &["history", "--json"]);
    assert_eq!(before.code, 0, "{}", before.stderr);

    let url = drover_pgtest::shared().fresh_db();
    let r = drover(&p, None, &["state", "migrate", "--to", &url]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("copied 1 runs, 2 host results, 1 audit entries, 1 hosts' facts, 1 drain marks, 1 rollouts"),
        "{}",
        r.stdout
    );
    // drover reads the same history from PostgreSQL.
    let after = drover(&p, Some(&url), &["history", "--json"]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(after.stdout, before.stdout);
    // Copying again would mix two histories: refused, nothing written.
    let again = drover(&p, None, &["state", "migrate", "--to", &url]);
    assert!(again.code == 1 && again.stderr.contains("already has runs"), "{}", again.stderr);
    // Only into PostgreSQL, and only from a store that exists.
    let r = drover(&p, None, &["state", "migrate", "--to", "other.db"]);
    assert!(r.code == 1 && r.stderr.contains("give the PostgreSQL database"), "{}", r.stderr);
    let r = drover(&p, None, &["state", "migrate", "--to", &url, "--from", "/nonexistent/state.db"]);
    assert!(r.code == 1 && r.stderr.contains("no SQLite state store to copy"), "{}", r.stderr);
}
