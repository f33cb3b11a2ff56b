//! One lab host: its overlay root, the few files that make it unique, and
//! its process tree.
//!
//! The overlay (lower = shared base, upper = this host's writes) is mounted
//! in the root mount namespace at `hosts/h<n>/merged`, so the controller can
//! inspect a host's files and `upper` shows exactly what the host changed.
//! The processes run in the host's network namespace and in new pid, mount,
//! uts and ipc namespaces, chrooted into `merged`, with
//! [`crate::base::INIT_PATH`] as pid 1 (container hosts: `pivot_root`
//! into it instead of chroot, see [`crate::containers`]); it mounts /proc, /dev and /run
//! privately and execs `runsvdir`, which supervises sshd, or (systemd
//! hosts, also in a new cgroup namespace) `systemd`, which starts
//! `ssh.service`, or (OpenRC hosts) `openrc-init`, whose default runlevel
//! starts the OpenRC service `sshd`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::base::{write_file, INIT_PATH, USER};
use crate::config::{host_name, LabPaths, Naming};
use crate::error::LabError;
use crate::state::HostRecord;
use crate::{cgroup, cmd, net, sys};

/// What starting and waiting for a host's processes needs: `up` and
/// `reboot` alike.
#[derive(Clone, Copy)]
pub(crate) struct HostRun<'a> {
    pub lab: &'a str,
    /// Set for systemd hosts: the controller's cgroup layout, which each
    /// host gets a delegated part of (see [`crate::cgroup`]).
    pub cgroups: Option<cgroup::Layout>,
    /// A container host (`crate::containers`): its own cgroup in every
    /// hierarchy, and `pivot_root` instead of `chroot`.
    pub containers: bool,
    pub paths: &'a LabPaths,
    pub naming: Naming,
}

/// What one host of an `up` needs; all but `run`, `base` and `kind` are
/// the same for every host.
pub(crate) struct HostSetup<'a> {
    pub run: HostRun<'a>,
    pub base: &'a Path,
    pub kind: crate::Kind,
    /// The lab's public key, for root's authorized_keys.
    pub authorized_key: &'a str,
    pub password: &'a str,
    /// `op`'s /etc/shadow line: hashed by the first host (chpasswd is slow
    /// on purpose), copied to the others.
    pub shadow_line: &'a Mutex<Option<String>>,
    /// `--ssh-ca`: certify the host key, trust the CA for logins.
    pub ssh_ca: bool,
}

impl HostSetup<'_> {
    /// Network, overlay and per-host files for host `n`; idempotent.
    /// `recorded`: the lab state already lists the host.
    pub(crate) fn prepare(&self, n: u16, recorded: bool) -> Result<HostRecord, LabError> {
        let HostRun { naming, paths, cgroups, .. } = self.run;
        net::ensure_host_link(naming, n, !recorded)?;
        let (upper, work, merged) = (paths.upper(n), paths.work(n), paths.merged(n));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).map_err(LabError::io("create", d))?;
        }
        if !sys::is_mount_point(&merged)? {
            sys::mount_overlay(self.base, &upper, &work, &merged)?;
        }
        self.write_identity(n, &merged)?;
        if self.ssh_ca {
            crate::ca::certify_host(paths, &merged, &host_name(n), &naming.address(n).to_string())?;
        }
        if cgroups.is_some() {
            write_machine_id(&merged)?;
        }
        if self.kind.containers {
            crate::containers::prepare(paths, n, &merged, self.kind.init)?;
        }
        self.set_password(&merged)?;
        let host_key = read_host_key(&merged)?;
        Ok(HostRecord {
            n,
            name: host_name(n),
            address: naming.address(n),
            host_key,
            kind: Some(self.kind),
            base: Some(self.base.to_path_buf()),
        })
    }

    fn write_identity(&self, n: u16, root: &Path) -> Result<(), LabError> {
        let name = host_name(n);
        write_file(&root.join("etc/hostname"), &format!("{name}\n"), 0o644)?;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{name}\n{}\tcontroller\n",
            self.run.naming.address(n),
            self.run.naming.gateway()
        );
        write_file(&root.join("etc/hosts"), &hosts, 0o644)?;
        let ssh_dir = root.join("root/.ssh");
        fs::create_dir_all(&ssh_dir).map_err(LabError::io("create", &ssh_dir))?;
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).map_err(LabError::io("chmod", &ssh_dir))?;
        write_file(&ssh_dir.join("authorized_keys"), &format!("{}\n", self.authorized_key.trim()), 0o600)?;
        // The host key is made once and kept in the upper layer, so it stays
        // pinned in inventories across `up` calls.
        let key = root.join("etc/ssh/ssh_host_ed25519_key");
        if !key.exists() {
            let mut args: Vec<std::ffi::OsString> =
                ["-q", "-t", "ed25519", "-N", "", "-C", &name, "-f"].iter().map(Into::into).collect();
            args.push(key.into_os_string());
            cmd::run("ssh-keygen", args)?;
        }
        Ok(())
    }

    fn set_password(&self, root: &Path) -> Result<(), LabError> {
        let shadow = root.join("etc/shadow");
        let mut cached = self.shadow_line.lock().expect("shadow lock");
        if let Some(line) = cached.as_deref() {
            let text = fs::read_to_string(&shadow).map_err(LabError::io("read", &shadow))?;
            let prefix = format!("{USER}:");
            let new: String =
                text.lines().map(|l| if l.starts_with(&prefix) { line } else { l }).flat_map(|l| [l, "\n"]).collect();
            // Writing in place keeps the file's owner and mode (root:shadow 0640).
            return fs::write(&shadow, new).map_err(LabError::io("write", &shadow));
        }
        let input = format!("{USER}:{}\n", self.password);
        cmd::run_with_input("chroot", [root.as_os_str(), "chpasswd".as_ref()], Some(input.as_bytes()))?;
        let text = fs::read_to_string(&shadow).map_err(LabError::io("read", &shadow))?;
        *cached = text.lines().find(|l| l.starts_with(&format!("{USER}:"))).map(str::to_string);
        Ok(())
    }
}

/// The argv[0] of the shell that boots host `n` of `lab` and boots it again
/// when it reboots itself: how `down` and `reboot` find it (it lives in the
/// root namespaces, outside the host).
pub(crate) fn boot_marker(lab: &str, n: u16) -> String {
    format!("drover-lab-boot:{lab}:{}", host_name(n))
}

/// What the boot shell does. `reboot(2)` inside a pid namespace other than
/// the first ends the namespace's init as if killed by SIGHUP (restart) or
/// SIGINT (halt, power-off); `unshare` re-raises that signal, so the shell
/// sees status 129 for a reboot and starts the host again, from its root as
/// it is on disk. Any other end (halt, `down`, `reboot` from outside, which
/// SIGKILLs everything) ends the shell too.
const BOOT_LOOP: &str = r#"while :; do
  "$@"
  rc=$?
  [ "$rc" -eq 129 ] || exit "$rc"
  echo "drover-lab: the host rebooted itself; booting it again" >&2
done"#;

impl HostRun<'_> {
    /// Start host `n`'s processes unless some are running. Returns whether
    /// it started them.
    pub(crate) fn start_if_stopped(&self, n: u16) -> Result<bool, LabError> {
        let ns = self.naming.netns(n);
        if !sys::netns_pids(&ns).is_empty() || !self.boot_shells(n).is_empty() {
            return Ok(false);
        }
        let log_path = self.paths.console_log(n);
        let open_log =
            || OpenOptions::new().create(true).append(true).open(&log_path).map_err(LabError::io("open", &log_path));
        // The cgroups the host's first process joins (see below): a
        // container host's in every hierarchy, a systemd host's in those
        // systemd tracks.
        let procs = match self.cgroups {
            _ if self.containers => Some(cgroup::prepare_host_all(self.lab, n)?),
            Some(layout) => Some(cgroup::prepare_host(layout, self.lab, n)?),
            None => None,
        };
        let mut unshare = vec!["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc"];
        if procs.is_some() {
            unshare.push("--cgroup");
        }
        unshare.extend(["--kill-child", "--propagation", "private"]);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", BOOT_LOOP, &boot_marker(self.lab, n), "ip", "netns", "exec", &ns]).args(unshare);
        if self.containers {
            cmd.args(["sh", "-c", crate::containers::PIVOT_SCRIPT, "drover-lab-pivot"]);
        } else {
            cmd.arg("chroot");
        }
        cmd.arg(self.paths.merged(n))
            .arg(INIT_PATH)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            // Its own process group: a Ctrl-C on `drover lab up` must not kill hosts.
            .process_group(0);
        if let Some(procs) = procs {
            // The cgroup namespace's root is the cgroup we are in when
            // `unshare` runs: join the host's own first, so systemd (and a
            // container runtime) sees only its part of the tree.
            // SAFETY: the closure only calls async-signal-safe functions
            // (open, write, close) on data prepared before the fork.
            unsafe { cmd.pre_exec(move || cgroup::join_in_child(&procs)) };
        }
        if let Some(layout) = self.cgroups {
            cmd.env("container", "drover-lab").env("DROVER_LAB_CGROUP", layout.as_str());
        }
        tracing::debug!(command = %cmd::render(&cmd), "start host");
        let mut child = cmd.spawn().map_err(|source| LabError::Spawn { program: "sh".into(), source })?;
        // Reap it if it exits while we are still running (no zombies in
        // long-lived callers); afterwards, init adopts it.
        std::thread::spawn(move || child.wait());
        Ok(true)
    }

    /// The shell that boots host `n` (see [`BOOT_LOOP`]), if it runs.
    pub(crate) fn boot_shells(&self, n: u16) -> Vec<i32> {
        let marker = boot_marker(self.lab, n);
        sys::pids_with_args(|args| args.contains(&marker))
    }

    /// Wait until host `n`'s sshd sends its banner; on failure say why,
    /// with the end of the host's console log.
    pub(crate) fn wait_ready(&self, n: u16, deadline: Instant) -> Result<(), String> {
        let addr = SocketAddr::from((self.naming.address(n), 22));
        let ns = self.naming.netns(n);
        let started = Instant::now();
        let mut last_err = String::from("no answer");
        // Each attempt waits longer for the banner than the one before: on a
        // loaded machine an sshd can need more than a second per connection,
        // and abandoning every connection after a fixed short wait would
        // start a fresh (as slow) sshd child each time, forever.
        let mut wait = Duration::from_millis(500);
        while Instant::now() < deadline {
            match ssh_banner(addr, wait) {
                Ok(b) if b.starts_with("SSH-") => return Ok(()),
                Ok(b) => last_err = format!("unexpected banner {b:?}"),
                Err(e) => last_err = format!("{e} after waiting {wait:?}"),
            }
            wait = (wait * 2).min(Duration::from_secs(8));
            if started.elapsed() > Duration::from_secs(2) && sys::netns_pids(&ns).is_empty() {
                return Err(format!("its processes exited; {}", self.console_tail(n)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no SSH banner on {addr} ({last_err}); {}", self.console_tail(n)))
    }

    fn console_tail(&self, n: u16) -> String {
        let path = self.paths.console_log(n);
        let text = fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("console {}: {}", path.display(), if tail.is_empty() { "(empty)".into() } else { tail.join(" | ") })
    }
}

/// systemd hosts each need their own machine id (journald names its files
/// after it; D-Bus and logs use it): made once, kept in the upper layer.
fn write_machine_id(root: &Path) -> Result<(), LabError> {
    let path = root.join("etc/machine-id");
    let current = fs::read_to_string(&path).unwrap_or_default();
    if current.trim().len() == 32 {
        return Ok(());
    }
    let id: String = sys::random_bytes(16)?.iter().map(|b| format!("{b:02x}")).collect();
    write_file(&path, &format!("{id}\n"), 0o444)
}

/// `ssh-ed25519 AAAA…` of the host, without its comment.
fn read_host_key(root: &Path) -> Result<String, LabError> {
    let path = root.join("etc/ssh/ssh_host_ed25519_key.pub");
    let text = fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
    Ok(text.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

/// Connect to `addr` and read the SSH identification line the server sends
/// first (`SSH-2.0-OpenSSH_9.2p1 …`). A frozen host accepts the connection
/// (the kernel does that) but never sends it.
pub fn ssh_banner(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while buf.len() < 255 {
        match stream.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => buf.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// The base a lab's hosts stack on must be complete before any host uses it.
pub(crate) fn check_base(base_dir: &Path) -> Result<(), LabError> {
    if base_dir.join(INIT_PATH.trim_start_matches('/')).is_file() {
        Ok(())
    } else {
        Err(LabError::Io {
            action: "base root filesystem missing or incomplete:",
            path: base_dir.to_path_buf(),
            source: io::ErrorKind::NotFound.into(),
        })
    }
}
