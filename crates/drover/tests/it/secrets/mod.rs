//! `drover secret` and secrets in use, through the real binary: age files
//! one per secret, templates and encrypted layer files on simulated hosts,
//! modes, errors naming file and line or secret and recipients, and a grep
//! of every byte drover wrote for the clear-text value.
//!
//! By topic: the `secret` verbs (`verbs`), secrets on simulated hosts
//! (`sim`), on lab hosts (`lab_hosts`), and in bundles (`bundle`).

mod bundle;
mod lab_hosts;
mod registry;
mod render;
mod sim;
mod verbs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{init_project, Run, DROVER};

/// An operator: a home of their own (the generated identity lands in its
/// config dir) and no DROVER_IDENTITY unless given.
struct Op {
    home: PathBuf,
    proj: PathBuf,
    identity: Option<PathBuf>,
}

impl Op {
    fn new(dir: &Path) -> Op {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let proj = dir.join("project");
        Op { home, proj, identity: None }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(&self.proj).args(args);
        c.env("HOME", &self.home).env("XDG_CONFIG_HOME", self.home.join(".config")).env_remove("DROVER_IDENTITY");
        c.env("TMPDIR", self.home.join("tmp"));
        std::fs::create_dir_all(self.home.join("tmp")).unwrap();
        if let Some(i) = &self.identity {
            c.env("DROVER_IDENTITY", i);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).stdin(Stdio::null()).output().unwrap())
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "drover {args:?}\n{}\n{}", r.stdout, r.stderr);
        r
    }
}

/// `needle` in `hay`, ignoring whitespace and miette's wrapping (`│`).
fn has(hay: &str, needle: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    squash(hay).contains(&squash(needle))
}

const VALUE: &str = "Zq8-clear-SECRET-4711";

/// A quickstart project on two simulated hosts with one secret in a
/// template (`/etc/app.conf`, line 2) and one encrypted binary layer file.
fn secret_project(tmp: &Path) -> Op {
    let op = Op::new(tmp);
    init_project(&op.proj);
    std::fs::write(
        op.proj.join("inventory.toml"),
        "[hosts.s1]\naddress = \"10.0.0.1\"\n[hosts.s2]\naddress = \"10.0.0.2\"\n",
    )
    .unwrap();
    op.ok(&["secret", "init"]);
    let r = op.run_stdin(&["secret", "set", "db_password"], format!("{VALUE}\n").as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(
        op.proj.join("layers/site/etc/app.conf.j2"),
        "# app\npassword={{ secrets.db_password }}\nhost={{ host.name }}\n",
    )
    .unwrap();
    let key = tmp.join("site.key");
    std::fs::write(&key, format!("\x00key-{VALUE}\x01")).unwrap();
    op.ok(&["secret", "add-file", key.to_str().unwrap(), "layers/site/etc/ssl/site.key"]);
    std::fs::remove_file(&key).unwrap();
    op
}

fn sim(op: &Op, verb: &str, hosts: &Path, extra: &[&str]) -> Run {
    let mut args = vec![verb, "--simulate", hosts.to_str().unwrap()];
    if verb == "apply" {
        args.extend(["--confirm-timeout", "0s"]);
    }
    args.extend(extra);
    op.run(&args)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}
