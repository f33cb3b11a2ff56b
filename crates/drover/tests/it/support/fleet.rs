//! A lab fleet of its own for one test, with a fresh quickstart project
//! for it, driven through the real `drover` binary; taken down when the
//! test ends, however it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use drover_lab::{Init, Kind, LabHost};

use super::lab_name::LabName;
use super::{Run, DROVER};

/// One lab (network namespaces with sshd, runit, systemd or OpenRC as pid 1,
/// amd64 or arm64, Debian or busybox userland; one kind or mixed) and a
/// project whose inventory is the lab's.
pub struct Fleet {
    name: LabName,
    init: Init,
    /// How `lab up` was asked for the hosts' kinds (`--init X` or
    /// `--kinds ...`), for [`Fleet::grow`].
    kind_args: Vec<String>,
    dir: tempfile::TempDir,
    hosts: Vec<LabHost>,
    /// The jump host of a fleet made by [`Fleet::behind_bastion`].
    bastion: Option<LabHost>,
    /// With `DROVER_TEST_STATE=postgres`: the database every command of
    /// this fleet uses (`DROVER_STATE_URL`), on the test process's own
    /// throwaway server; else the project's SQLite file.
    state_url: Option<String>,
}

/// The host-lock lease of fleets on PostgreSQL (`[state] lock-lease`):
/// short, so a test that kills a controller waits little for its locks.
pub const PG_LEASE: std::time::Duration = std::time::Duration::from_secs(2);

impl Fleet {
    /// A runit lab of `n` hosts named `name`, and a quickstart project for it.
    pub fn new(name: &str, n: usize) -> Fleet {
        Fleet::with_init(name, n, Init::Runit, false)
    }

    /// A runit lab of `n` hosts behind a bastion (`lab up --bastion`: this
    /// machine has no route to them), its inventory's `proxy-jump`, and the
    /// bastion's key pinned by `drover trust`.
    pub fn behind_bastion(name: &str, n: usize) -> Fleet {
        let f = Fleet::with_init(name, n, Init::Runit, true);
        let trust = f.drover(&["trust"]);
        assert_eq!(trust.code, 0, "trust failed:\n{}\n{}", trust.stdout, trust.stderr);
        f
    }

    /// The bastion of a [`Fleet::behind_bastion`].
    pub fn bastion(&self) -> &LabHost {
        self.bastion.as_ref().expect("a fleet made by Fleet::behind_bastion")
    }

    /// The same on hosts whose pid 1 is `init`. The lab is named
    /// `<name>-<init>` so both variants of a scenario can run side by side.
    pub fn on(name: &str, n: usize, init: Init) -> Fleet {
        Fleet::with_init(&format!("{name}-{init}"), n, init, false)
    }

    /// A lab of `n` hosts of `kind` (`lab up N --kinds KIND`): arm64 hosts
    /// under qemu-user, busybox-only userlands, any init. Named
    /// `<name>-<kind>`, as [`Fleet::on`] does. An arm64 host needs an
    /// aarch64 agent for anything that pushes one.
    pub fn up_kind(name: &str, n: usize, kind: Kind) -> Fleet {
        // A lab name has no '+' (`runit+containers`).
        Fleet::build_kinds(&format!("{name}-{kind}").replace('+', "-"), n, &[kind], &[])
    }

    /// A lab of `n` native hosts of `init` that can run containers
    /// (`lab up N --kinds INIT+containers`: own cgroups for every
    /// controller, pivot_root, a store off the overlay at
    /// /var/lib/drover-containers and /var/lib/docker; no runtime
    /// installed; any init). Named `<name>-<init>-containers`.
    pub fn containers(name: &str, n: usize, init: Init) -> Fleet {
        Fleet::up_kind(name, n, Kind::native(init).with_containers())
    }

    /// A mixed lab: host h<i+1> of `kinds[i]`, all on one bridge, in one
    /// inventory (`lab up N --kinds K1,K2,...`).
    pub fn mixed(name: &str, kinds: &[Kind]) -> Fleet {
        Fleet::build_kinds(name, kinds.len(), kinds, &[])
    }

    /// A runit lab made with `lab up --ssh-ca` (host certificates, logins by
    /// user certificate only), with the inventory `lab inventory` writes.
    pub fn with_ssh_ca(name: &str, n: usize) -> Fleet {
        Fleet::build(name, n, Init::Runit, &["--ssh-ca"])
    }

    fn with_init(name: &str, n: usize, init: Init, bastion: bool) -> Fleet {
        Fleet::build(name, n, init, if bastion { &["--bastion"] } else { &[] })
    }

    fn build(name: &str, n: usize, init: Init, up_args: &[&str]) -> Fleet {
        let mut args = vec!["--init", init.as_str()];
        args.extend_from_slice(up_args);
        Fleet::build_args(name, n, init, &args)
    }

    fn build_kinds(name: &str, n: usize, kinds: &[Kind], up_args: &[&str]) -> Fleet {
        let list = kinds.iter().map(Kind::to_string).collect::<Vec<_>>().join(",");
        let mut args = vec!["--kinds", list.as_str()];
        args.extend_from_slice(up_args);
        Fleet::build_args(name, n, kinds[0].init, &args)
    }

    fn build_args(name: &str, n: usize, init: Init, up_args: &[&str]) -> Fleet {
        assert!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "the end-to-end tests need root (they run a lab fleet of network namespaces)"
        );
        let name = LabName::claim(name);
        let _ = lab_cmd(name.as_str(), &["down"]);
        let count = n.to_string();
        let kind_args: Vec<String> = up_args.iter().take(2).map(|a| a.to_string()).collect();
        let mut args = vec!["up", &count];
        args.extend_from_slice(up_args);
        let up = lab_cmd(name.as_str(), &args);
        assert_eq!(up.code, 0, "lab up failed:\n{}\n{}", up.stdout, up.stderr);
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("proj");
        let scaffold = Run::from(Command::new(DROVER).arg("init").arg(&proj).output().unwrap());
        assert_eq!(scaffold.code, 0, "{}", scaffold.stderr);
        let inv = lab_cmd(name.as_str(), &["inventory"]);
        assert_eq!(inv.code, 0, "{}", inv.stderr);
        std::fs::write(proj.join("inventory.toml"), inv.stdout).unwrap();
        let lab = drover_lab::Lab::open(name.as_str()).expect("lab state");
        let (hosts, bastion) = (lab.hosts().to_vec(), lab.bastion().cloned());
        let state_url = match std::env::var("DROVER_TEST_STATE").as_deref() {
            Ok("postgres") => {
                let toml = proj.join("drover.toml");
                let mut text = std::fs::read_to_string(&toml).unwrap();
                text.push_str(&format!("\n[state]\nlock-lease = \"{}s\"\n", PG_LEASE.as_secs()));
                std::fs::write(&toml, text).unwrap();
                Some(drover_pgtest::shared().fresh_db())
            }
            Ok("sqlite") | Err(_) => None,
            Ok(other) => panic!("DROVER_TEST_STATE={other}: use postgres or sqlite"),
        };
        Fleet { name, init, kind_args, dir, hosts, bastion, state_url }
    }

    /// pid 1 of the hosts (of h1, in a mixed fleet).
    pub fn init(&self) -> Init {
        self.init
    }

    /// Host `i`'s kind: init, architecture, userland.
    pub fn kind(&self, i: usize) -> Kind {
        self.hosts[i].kind
    }

    /// Grow the lab to `n` hosts (`lab up N` adds h<k+1>..h<n>, never
    /// removes any) and return the lab's new inventory.toml; the project's
    /// inventory is left for the test to change. Not for a
    /// [`Fleet::mixed`] one, whose `--kinds` name one kind per host.
    pub fn grow(&mut self, n: usize) -> String {
        let count = n.to_string();
        let mut args = vec!["up", count.as_str()];
        args.extend(self.kind_args.iter().map(String::as_str));
        let up = lab_cmd(self.name.as_str(), &args);
        assert_eq!(up.code, 0, "lab up {n} failed:\n{}\n{}", up.stdout, up.stderr);
        self.hosts = drover_lab::Lab::open(self.name.as_str()).expect("lab state").hosts().to_vec();
        let inv = lab_cmd(self.name.as_str(), &["inventory"]);
        assert_eq!(inv.code, 0, "{}", inv.stderr);
        inv.stdout
    }

    /// A running service's state in `drover status --json`: one word for
    /// every supervisor (runit's `run`, systemd's `active`).
    pub fn running_state(&self) -> &'static str {
        "running"
    }

    /// The same for a stopped service (runit's `down`, systemd's `inactive`).
    pub fn stopped_state(&self) -> &'static str {
        "down"
    }

    pub fn project(&self) -> PathBuf {
        self.dir.path().join("proj")
    }

    pub fn lab_hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    pub fn drover(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `drover` with `env` set (and SSH_AUTH_SOCK unset unless `env` sets
    /// it: which ssh-agent a run sees is the test's choice).
    pub fn drover_env(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Run {
        let mut c = self.command(args);
        c.env_remove("SSH_AUTH_SOCK");
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(self.project()).args(args).stdin(Stdio::null());
        match &self.state_url {
            Some(u) => c.env("DROVER_STATE_URL", u),
            None => c.env_remove("DROVER_STATE_URL"),
        };
        c
    }

    /// After SIGKILLing a controller: on PostgreSQL its host locks stay
    /// until their lease runs out (a pid proves nothing across machines),
    /// so wait that long; on SQLite a dead pid frees them at once.
    pub fn wait_for_dead_controllers_leases(&self) {
        if self.state_url.is_some() {
            std::thread::sleep(PG_LEASE + std::time::Duration::from_millis(500));
        }
    }

    pub fn spawn_drover(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn apply_json(&self, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "--json"];
        args.extend_from_slice(extra);
        self.drover(&args)
    }

    /// `apply --json`, which must succeed: its per-host reports.
    pub fn apply_ok(&self) -> Vec<serde_json::Value> {
        let r = self.apply_json(&[]);
        assert_eq!(r.code, 0, "apply failed:\n{}\n{}", r.stdout, r.stderr);
        r.hosts()
    }

    /// Replace the project by a copy of the repository's `examples/<name>`
    /// (the caller fits its inventory to the lab).
    pub fn use_example(&self, name: &str) {
        let proj = self.project();
        std::fs::remove_dir_all(&proj).unwrap();
        super::copy_tree(&super::example(name), &proj);
    }

    /// Run `args` inside lab host `i`: in its network namespace, chrooted
    /// into its root (what an operator with a shell on the host runs).
    pub fn in_host(&self, i: usize, args: &[&str]) -> Run {
        let h = &self.hosts[i];
        Run::from(
            Command::new("ip")
                .args(["netns", "exec", &h.netns, "chroot"])
                .arg(&h.root)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }

    pub fn lab_name(&self) -> &str {
        self.name.as_str()
    }

    pub fn lab(&self, args: &[&str]) -> Run {
        lab_cmd(self.name.as_str(), args)
    }

    /// A path inside host `i`'s root filesystem, as seen from the controller.
    pub fn host_file(&self, i: usize, path: &str) -> PathBuf {
        self.hosts[i].root.join(path.trim_start_matches('/'))
    }

    /// Make the next generation lock root out of host `i`: `layer`'s
    /// `/root/.ssh/authorized_keys` becomes a key nobody has, so an apply
    /// activates it but no new login can confirm it (the magic rollback's
    /// test). Returns the host's keys before, for [`Fleet::wait_keys_restored`].
    pub fn lock_root_out(&self, i: usize, layer: &Path) -> String {
        let keys = std::fs::read_to_string(self.host_file(i, "/root/.ssh/authorized_keys")).unwrap();
        let dir = layer.join("root/.ssh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("authorized_keys"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQnWNfZyVYm3Jm3P3XNSnjcmvO1Ul1b4vZ4zq3fCAfA nobody\n",
        )
        .unwrap();
        keys
    }

    /// Wait (20 s at most) until host `i`'s root `authorized_keys` is `keys`
    /// again: the unconfirmed generation reverted by itself.
    pub fn wait_keys_restored(&self, i: usize, keys: &str) {
        let path = self.host_file(i, "/root/.ssh/authorized_keys");
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&path).unwrap_or_default() != keys {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "authorized_keys was not restored");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Every file the host has written since boot (its overlay upper dir),
    /// with sizes and mtimes.
    pub fn upper_snapshot(&self, i: usize) -> BTreeMap<PathBuf, (u64, i128)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![self.hosts[i].upper.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    stack.push(e.path());
                    continue;
                }
                let t = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
                out.insert(e.path(), (md.size(), t));
            }
        }
        out
    }

    /// The pid the host's supervisor reports for a service on host `i`
    /// (runit's `supervise/pid`, systemd's `MainPID`, the `child_pid`
    /// OpenRC's supervise-daemon records, on the host's own `/run`); empty
    /// if none.
    pub fn service_pid(&self, i: usize, service: &str) -> String {
        match self.hosts[i].kind.init {
            Init::Runit => std::fs::read_to_string(self.host_file(i, &format!("/etc/sv/{service}/supervise/pid")))
                .unwrap_or_default()
                .trim()
                .to_string(),
            Init::OpenRc => self.host_sh(
                i,
                &format!("p=$(cat /run/openrc/options/{service}/child_pid 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo \"$p\" || true"),
            ),
            Init::Systemd => {
                let pid = self.host_sh(i, &format!("systemctl show --property=MainPID --value {service}"));
                if pid == "0" {
                    String::new()
                } else {
                    pid
                }
            }
        }
    }

    /// Run `script` with /bin/sh on host `i` (through `drover exec`) and
    /// return its trimmed stdout; panics if it fails.
    pub fn host_sh(&self, i: usize, script: &str) -> String {
        let host = &self.hosts[i].name;
        let r = self.drover(&["exec", host, "--", script]);
        assert_eq!(r.code, 0, "exec on {host}: {script}\n{}\n{}", r.stdout, r.stderr);
        // `=== h1 (exit 0)` then the output.
        r.stdout.split_once('\n').map(|(_, out)| out).unwrap_or("").trim().to_string()
    }

    /// SIGKILL every `drover-agent serve` process of host `i`. Returns how many.
    pub fn kill_agent(&self, i: usize) -> usize {
        let pids = self.agent_pids(i);
        pids.iter().for_each(|p| drop(Command::new("kill").args(["-9", &p.to_string()]).status()));
        pids.len()
    }

    /// The `drover-agent serve` processes running on host `i` (not their sudo).
    pub fn agent_pids(&self, i: usize) -> Vec<u32> {
        let out = Command::new("ip").args(["netns", "pids", &self.hosts[i].netns]).output().unwrap();
        let agent = |pid: &&str| {
            let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
                .replace('\0', " ");
            cmd.contains("/agent-") && cmd.ends_with(" serve ") && !cmd.starts_with("sudo")
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut pids: Vec<u32> = stdout.split_whitespace().filter(agent).filter_map(|p| p.parse().ok()).collect();
        pids.sort_unstable();
        pids
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let r = lab_cmd(self.name.as_str(), &["down"]);
        if r.code != 0 {
            eprintln!("lab down {} failed: {}", self.name.as_str(), r.stderr);
        }
    }
}

fn lab_cmd(name: &str, args: &[&str]) -> Run {
    let mut c = Command::new(DROVER);
    c.arg("lab").args(args).arg("--lab").arg(name).stdin(Stdio::null());
    Run::from(c.output().unwrap())
}
