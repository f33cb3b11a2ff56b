//! Secrets and login passwords on real lab hosts: out of every process's
//! arguments and environment, of the output and of every file but the
//! targets and the agent's private blob store.

use std::path::Path;

use super::{mode, Op, VALUE};
use crate::support::{files_containing, Fleet, Run};

/// Every command line and environment of every process on this machine
/// (controller, sudo, agents on lab hosts) holding any of `needles`.
fn processes_showing(needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(e.path().join(what)).unwrap_or_default();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    out.push(format!("{}/{what}: {}", e.path().display(), String::from_utf8_lossy(&bytes)));
                }
            }
        }
    }
    out
}

/// Real lab hosts: one logged into from `inventory.csv.age`, one with
/// `password = { secret = … }` (both non-root, so the password also feeds
/// `sudo`). The secret reaches its target 0600 root; neither it nor the
/// login password is in any process's arguments or environment while the
/// apply runs, nor in its output (`-vv`, `RUST_LOG=trace`, `--json`), nor
/// in anything drover wrote on the controller, nor
/// anywhere a host wrote (its overlay upper directory) outside the target
/// and the private blob store.
#[test]
fn on_lab_hosts_secrets_and_passwords_stay_out_of_args_env_and_files() {
    let f = Fleet::new("sec-secrets", 2);
    let keys = tempfile::tempdir().unwrap();
    let id = keys.path().join("identity.txt");
    let op = Op { home: keys.path().join("home"), proj: f.project(), identity: Some(id.clone()) };
    std::fs::create_dir_all(&op.home).unwrap();
    op.ok(&["secret", "init", "--identity", id.to_str().unwrap()]);
    let lab = drover_lab::Lab::open("sec-secrets").unwrap();
    let password = lab.password().to_string();
    let csv = lab.inventory_csv();
    let mut lines = csv.lines();
    let (first, second) = (lines.next().unwrap(), lines.next().unwrap());
    let plain = keys.path().join("inv.csv");
    std::fs::write(&plain, format!("{first}\n")).unwrap();
    op.ok(&["secret", "add-file", plain.to_str().unwrap(), "inventory.csv"]);
    std::fs::remove_file(&plain).unwrap();
    let cols: Vec<&str> = second.split(',').collect();
    assert_eq!(op.run_stdin(&["secret", "set", "h2_password"], cols[2].as_bytes()).code, 0);
    std::fs::write(
        op.proj.join("inventory.toml"),
        format!(
            "[hosts.h2]\naddress = \"{}\"\nuser = \"{}\"\npassword = {{ secret = \"h2_password\" }}\n",
            cols[0], cols[1]
        ),
    )
    .unwrap();
    assert_eq!(op.run_stdin(&["secret", "set", "db_password"], VALUE.as_bytes()).code, 0);
    std::fs::write(op.proj.join("layers/site/etc/app.conf.j2"), "password={{ secrets.db_password }}\n").unwrap();
    let t = op.run(&["trust"]);
    assert_eq!(t.code, 0, "{}\n{}", t.stdout, t.stderr);

    let needles = [VALUE, password.as_str()];
    // Output to files (not pipes, which would fill while the loop samples).
    let (out_path, err_path) = (keys.path().join("apply.out"), keys.path().join("apply.err"));
    let mut child = op
        .cmd(&["apply", "--json", "-vv"])
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut samples = 0;
    while child.try_wait().unwrap().is_none() {
        seen.extend(processes_showing(&needles));
        samples += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    };
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(samples > 5, "the apply was sampled while it ran ({samples})");
    assert!(r.stderr.lines().count() > 100, "trace logs were written and searched:\n{}", r.stderr);
    assert!(seen.is_empty(), "in a process's args or environment: {seen:?}");
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed", "{h}");
    }
    for v in needles {
        assert!(!r.stdout.contains(v) && !r.stderr.contains(v), "printed:\n{}\n{}", r.stdout, r.stderr);
        let found = files_containing(&op.proj, v.as_bytes());
        assert!(found.is_empty(), "in clear in the project: {found:?}");
        let found = files_containing(&op.home, v.as_bytes());
        assert!(found.is_empty(), "in clear in the controller's temp dir: {found:?}");
    }
    use std::os::unix::fs::MetadataExt;
    for (i, host) in f.lab_hosts().iter().enumerate() {
        let conf = f.host_file(i, "/etc/app.conf");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), format!("password={VALUE}\n"));
        let md = std::fs::metadata(&conf).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 0, 0), "{}", host.name);
        for v in needles {
            for p in files_containing(&host.upper, v.as_bytes()) {
                let rel = p.strip_prefix(&host.upper).unwrap();
                if v == VALUE && rel == Path::new("etc/app.conf") {
                    continue;
                }
                assert!(
                    v == VALUE && rel.starts_with("var/lib/drover/blobs") && mode(&p) == 0o600,
                    "{} wrote a secret in clear to /{}",
                    host.name,
                    rel.display()
                );
            }
        }
    }
}
