//! Applying and healing faults (see [`crate::fault`] for their meaning).
//!
//! Every change is recorded in the state file as soon as it is made, so
//! `status` and `heal` know about it even if a later host fails.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{parse_host_name, Naming, NetemMode};
use crate::error::LabError;
use crate::fault::{Fault, Netem};
use crate::lab::Lab;
use crate::state::{FaultRecord, LabState};
use crate::sys::FileLock;
use crate::wire::{WireSpec, MARKER};
use crate::{cmd, net, preflight, sys};

const KERNEL: &str = "kernel";
const USERSPACE: &str = "userspace";

impl Lab {
    /// Apply `fault` to the hosts named by `targets` (`all`, `h3`, `h1,h2`).
    pub fn fault(&mut self, targets: &str, fault: Fault) -> Result<(), LabError> {
        self.for_each_host(targets, |lab, n, rec| match fault {
            Fault::Netem(netem) => lab.apply_netem(n, netem, rec),
            Fault::Down => {
                cmd::ip(["link", "set", &lab.naming().veth(n), "down"])?;
                rec.down = true;
                Ok(())
            }
            Fault::Freeze => {
                freeze(&lab.naming().netns(n));
                rec.frozen = true;
                Ok(())
            }
            Fault::Thaw => {
                signal_netns(&lab.naming().netns(n), libc::SIGCONT);
                rec.frozen = false;
                Ok(())
            }
        })
    }

    /// Remove every fault from the hosts named by `targets`.
    pub fn heal(&mut self, targets: &str) -> Result<(), LabError> {
        self.for_each_host(targets, |lab, n, rec| {
            let naming = lab.naming();
            signal_netns(&naming.netns(n), libc::SIGCONT);
            let veth = naming.veth(n);
            if sys::link_exists(&veth) && !sys::link_is_up(&veth) {
                cmd::ip(["link", "set", &veth, "up"])?;
            }
            lab.remove_netem(n, rec)?;
            *rec = FaultRecord::default();
            Ok(())
        })
    }

    fn naming(&self) -> Naming {
        Naming { idx: self.state.index }
    }

    /// Run `f` per selected host under the lab lock, saving the state after each.
    fn for_each_host(
        &mut self,
        targets: &str,
        mut f: impl FnMut(&Lab, u16, &mut FaultRecord) -> Result<(), LabError>,
    ) -> Result<(), LabError> {
        preflight::check(preflight::NET)?;
        let _lock = FileLock::acquire(&self.paths.lock_file())?;
        let state_file = self.paths.state_file();
        self.state = LabState::load(&state_file)?
            .ok_or_else(|| LabError::NotUp { name: self.name().into(), path: state_file.clone() })?;
        let names: Vec<String> = self.select(targets)?.into_iter().map(|h| h.name.clone()).collect();
        for name in names {
            let n = parse_host_name(&name).expect("state host names are valid");
            let mut rec = self.state.faults.get(&name).cloned().unwrap_or_default();
            let result = f(self, n, &mut rec);
            if rec.is_healthy() {
                self.state.faults.remove(&name);
            } else {
                self.state.faults.insert(name.clone(), rec);
            }
            self.state.save(&state_file)?;
            result?;
        }
        Ok(())
    }

    fn apply_netem(&self, n: u16, netem: Netem, rec: &mut FaultRecord) -> Result<(), LabError> {
        let engine = match self.config.netem {
            NetemMode::Kernel => {
                self.set_kernel_netem(n, netem, false)?;
                KERNEL
            }
            NetemMode::Userspace => USERSPACE,
            NetemMode::Auto if self.set_kernel_netem(n, netem, true)? => KERNEL,
            NetemMode::Auto => USERSPACE,
        };
        if rec.engine.as_deref().is_some_and(|e| e != engine) {
            self.remove_netem(n, rec)?; // the other engine's leftovers
        }
        if engine == USERSPACE {
            self.start_wire(n, netem)?;
        }
        rec.netem = Some(netem);
        rec.engine = Some(engine.to_string());
        Ok(())
    }

    /// `tc qdisc replace … netem` on both ends of the host's link. With
    /// `probe`, a kernel without netem is `Ok(false)` instead of an error.
    fn set_kernel_netem(&self, n: u16, netem: Netem, probe: bool) -> Result<bool, LabError> {
        let naming = self.naming();
        let args = netem.tc_args();
        let root_side =
            ["qdisc", "replace", "dev", &naming.veth(n), "root"].map(String::from).into_iter().chain(args.clone());
        match cmd::run("tc", root_side) {
            Err(LabError::Command { stderr, .. }) if is_no_netem(&stderr) => {
                return if probe { Ok(false) } else { Err(LabError::NoKernelNetem) };
            }
            r => r?,
        };
        let ns = naming.netns(n);
        let host_side =
            ["-n", &ns, "qdisc", "replace", "dev", "eth0", "root"].map(String::from).into_iter().chain(args);
        cmd::run("tc", host_side)?;
        Ok(true)
    }

    /// Undo [`Lab::apply_netem`] whichever engine did it.
    fn remove_netem(&self, n: u16, rec: &FaultRecord) -> Result<(), LabError> {
        let naming = self.naming();
        if rec.engine.as_deref() == Some(KERNEL) {
            let ns = naming.netns(n);
            for args in [
                vec!["qdisc", "del", "dev", &naming.veth(n), "root"],
                vec!["-n", &ns, "qdisc", "del", "dev", "eth0", "root"],
            ] {
                match cmd::run("tc", args) {
                    Err(e) if !cmd::is_not_found(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        self.stop_wire(n);
        if sys::link_exists(&naming.wire_bridge_side(n)) {
            net::unsplice(naming, n)?;
        }
        Ok(())
    }

    /// Splice the userspace link emulator into host `n`'s link.
    fn start_wire(&self, n: u16, netem: Netem) -> Result<(), LabError> {
        let host = crate::config::host_name(n);
        let err = |detail: String| LabError::Wire { host: host.clone(), detail };
        let helper = self.config.wire_helper.clone().ok_or_else(|| {
            err("the kernel has no sch_netem and no link emulator program is configured; use `drover lab fault`".into())
        })?;
        self.stop_wire(n);
        let naming = self.naming();
        net::splice_for_wire(naming, n)?;
        let (pidfile, log) = (self.paths.wire_pidfile(n), self.paths.wire_log(n));
        let _ = fs::remove_file(&pidfile);
        let (delay, jitter) = netem.one_way();
        let spec = WireSpec {
            host_if: naming.veth(n),
            bridge_if: naming.wire_side(n),
            pidfile: pidfile.clone(),
            delay,
            jitter,
            loss_ppm: netem.loss_ppm,
            rate_bps: netem.rate_bps,
        };
        let open_log = || OpenOptions::new().create(true).append(true).open(&log).map_err(LabError::io("open", &log));
        let mut child = Command::new(&helper.program)
            .args(&helper.args)
            .args(spec.to_args())
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            .process_group(0)
            .spawn()
            .map_err(|e| err(format!("start {}: {e}", helper.program.display())))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() == child.id().to_string()) {
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let tail = fs::read_to_string(&log).unwrap_or_default();
                return Err(err(format!("exited ({status}): {}", tail.lines().last().unwrap_or(""))));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(err(format!("not ready after 5s; see {}", log.display())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop host `n`'s link emulator, if one runs.
    fn stop_wire(&self, n: u16) {
        let veth = self.naming().veth(n);
        let find = || {
            sys::pids_with_args(|a| {
                a.iter().any(|x| x == MARKER) && a.windows(2).any(|w| w[0] == "--host-if" && w[1] == veth)
            })
            .into_iter()
            .filter(|p| sys::process_state(*p).is_some_and(|s| s != 'Z'))
            .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sig = libc::SIGTERM;
        loop {
            let pids = find();
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                sig = libc::SIGKILL;
            }
            for p in pids {
                sys::signal(p, sig);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(self.paths.wire_pidfile(n));
    }
}

/// `tc` saying the kernel has no netem qdisc.
fn is_no_netem(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("qdisc kind is unknown") || s.contains("unknown qdisc")
}

fn signal_netns(ns: &str, sig: i32) {
    for p in sys::netns_pids(ns) {
        sys::signal(p, sig);
    }
}

/// SIGSTOP until every process of the namespace is stopped (one may fork
/// between our scan and its signal).
fn freeze(ns: &str) {
    for _ in 0..20 {
        signal_netns(ns, libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(10));
        if sys::netns_pids(ns).iter().all(|p| matches!(sys::process_state(*p), Some('T' | 't' | 'Z') | None)) {
            return;
        }
    }
}
