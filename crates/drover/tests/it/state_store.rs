//! The state store as the `drover` binary uses it: `[state]` /
//! `DROVER_STATE_URL` select PostgreSQL, an unreachable database stops a
//! run before any host is contacted (naming the URL without its password),
//! and `drover state migrate` copies a SQLite history into PostgreSQL.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
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

/// Every leaf subcommand of the binary (`rollout start`, `bundle build`,
/// `plan`, …), read from its `--help`, so that a new one shows up here.
fn subcommands(prefix: &[&str]) -> Vec<String> {
    let help = Command::new(DROVER).args(prefix).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let Some((_, list)) = help.split_once("\nCommands:\n") else {
        return vec![prefix.join(" ")];
    };
    let names = list.lines().take_while(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next());
    let mut out = vec![];
    for name in names.filter(|n| *n != "help") {
        out.extend(subcommands(&[prefix, &[name]].concat()));
    }
    out
}

/// The subcommands that never open the state store, and why.
const WITHOUT_STORE: &[(&str, &str)] = &[
    ("init", "writes a new project"),
    ("trust", "writes the project's known_hosts"),
    ("inventory import ansible", "converts an inventory file"),
    ("import compose", "converts a compose file into project files"),
    ("inventory show", "reads the project and ssh_config only"),
    ("secret init", "secrets are files of the project"),
    ("secret set", "secrets are files of the project"),
    ("secret edit", "secrets are files of the project"),
    ("secret add-file", "secrets are files of the project"),
    ("secret rekey", "secrets are files of the project"),
    ("secret list", "secrets are files of the project"),
    ("bundle keygen", "writes a key pair"),
    ("bundle sign", "works on a bundle file"),
    ("bundle verify", "works on a bundle file"),
    ("bundle inspect", "works on a bundle file"),
    ("bundle agent", "works on a bundle file"),
    ("image pull", "images are files of the project (.drover/images/, images.lock)"),
    ("image update", "images are files of the project (.drover/images/, images.lock)"),
    ("lab up", "a lab keeps its own state"),
    ("lab inventory", "a lab keeps its own state"),
    ("lab fault", "a lab keeps its own state"),
    ("lab reboot", "a lab keeps its own state"),
    ("lab heal", "a lab keeps its own state"),
    ("lab status", "a lab keeps its own state"),
    ("lab down", "a lab keeps its own state"),
];

/// The arguments after the subcommand that take each of the others to the
/// point where it opens the store (`serve` is tried apart: it keeps running).
fn store_args(cmd: &str, bundle: &Path, url: &str) -> Vec<String> {
    let args: &[&str] = match cmd {
        "plan" | "apply" | "rollback" | "status" | "history" | "endpoints" | "packages lock" | "worker" => &[],
        "rollout start" | "rollout pause" | "rollout resume" | "rollout abort" | "rollout status" => &[],
        "exec" => &["all", "--", "true"],
        // They read the fact cache: the architectures images are prepared for.
        "logs" => &["web"],
        "volume ls" => &[],
        "reboot" => &["all"],
        "drain" | "undrain" => &["web1"],
        "render" => &["web1", "/etc/motd"],
        "scale" => &["node", "2"],
        "volume rm" => &["web", "data"],
        "bundle build" => &["-o", bundle.to_str().unwrap()],
        "state migrate" => &["--to", url],
        other => panic!("`drover {other}`: add it to WITHOUT_STORE (saying why) or give it arguments here"),
    };
    cmd.split(' ').chain(args.iter().copied()).map(String::from).collect()
}

/// `serve` with the store unreachable: its first check pass stops at the
/// store, which it says (without the password); killed once it did.
fn serve_stops_at_the_store(p: &Path, url: &str) {
    let mut c = Command::new(DROVER);
    c.arg("-C").arg(p).args(["serve", "--listen", "127.0.0.1:0"]).env("DROVER_STATE_URL", url);
    let mut child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let said = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains("check pass") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("serve never said its check pass stopped: {seen:#?}"),
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(said.contains("postgres://drover:***@127.0.0.1:1/fleet") && said.contains("cannot connect"), "{said}");
    seen.extend(rx.try_iter());
    assert!(seen.iter().chain([&said]).all(|l| !l.contains("hunter2")), "serve leaked the password: {seen:#?}");
}

/// Every subcommand that uses the state store (all of `drover --help` but
/// those in [`WITHOUT_STORE`]) stops at an unreachable database with exit 1,
/// naming the URL without its password, and no host is contacted; `serve`
/// keeps running, and its check pass stops there.
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
    // A service with instances (for `scale`), and a SQLite history (for
    // `state migrate`, which copies it into the database).
    std::fs::write(p.join("services/node.toml"), "command = \"sleep infinity\"\ninstances = 1\n").unwrap();
    drop(Store::open(&p.join(".drover/state.db")).unwrap());
    let url = "postgres://drover:hunter2@127.0.0.1:1/fleet?sslmode=disable";
    let bundle = d.path().join("site.drv");

    let all = subcommands(&[]);
    let exempt: BTreeSet<&str> = WITHOUT_STORE.iter().map(|(c, _)| *c).collect();
    assert!(exempt.iter().all(|c| all.iter().any(|a| a == c)), "WITHOUT_STORE names a command drover lacks: {all:?}");
    let tried: Vec<&String> = all.iter().filter(|c| !exempt.contains(c.as_str()) && *c != "serve").collect();
    assert!(tried.len() >= 20, "the help lists the commands: {all:?}");
    for cmd in tried {
        let args = store_args(cmd, &bundle, url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = drover(&p, Some(url), &args);
        assert_eq!(r.code, 1, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("postgres://drover:***@127.0.0.1:1/fleet") && r.stderr.contains("cannot connect"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"), "{args:?} leaked the password");
    }
    serve_stops_at_the_store(&p, url);
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
            outcome: drover_state::Outcome::Changed,
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
    s.finish_run(id, drover_state::RunStatus::Ok).unwrap();
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
