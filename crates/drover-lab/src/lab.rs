//! [`Lab`]: a lab that is up, as the rest of drover and its tests see it.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::USER;
use crate::config::{parse_host_name, LabConfig, LabPaths, Naming};
use crate::error::LabError;
use crate::state::LabState;
use crate::sys;

/// One host of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// `h1`, `h2`, …
    pub name: String,
    pub address: Ipv4Addr,
    /// Its network namespace (`ip netns exec <netns> …`).
    pub netns: String,
    /// The host's root file system as the controller sees it (overlay).
    pub root: PathBuf,
    /// The overlay's upper layer: every file the host wrote or changed.
    pub upper: PathBuf,
    /// `ssh-ed25519 AAAA…`, to pin in known_hosts.
    pub host_key: String,
    /// Its init, architecture and userland.
    pub kind: crate::Kind,
}

/// A lab that has been brought up (`drover lab up`).
#[derive(Debug, Clone)]
pub struct Lab {
    pub(crate) config: LabConfig,
    pub(crate) paths: LabPaths,
    pub(crate) state: LabState,
    hosts: Vec<LabHost>,
    bastion: Option<LabHost>,
    password: Redacted,
}

/// The lab password, kept out of `{:?}` output and logs.
#[derive(Clone)]
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Lab {
    /// Open lab `name` with settings from the environment ([`crate::EnvVars`]).
    pub fn open(name: &str) -> Result<Lab, LabError> {
        Lab::open_with(&LabConfig::from_env(), name)
    }

    /// Open lab `name`; fails with [`LabError::NotUp`] if it has no state.
    pub fn open_with(config: &LabConfig, name: &str) -> Result<Lab, LabError> {
        let paths = config.lab_paths(name)?;
        let state_file = paths.state_file();
        let state =
            LabState::load(&state_file)?.ok_or_else(|| LabError::NotUp { name: name.into(), path: state_file })?;
        let pw_path = paths.password_file();
        let password = fs::read_to_string(&pw_path).map_err(LabError::io("read", &pw_path))?.trim().to_string();
        let naming = Naming { idx: state.index };
        let host = |h: &crate::state::HostRecord| LabHost {
            name: h.name.clone(),
            address: h.address,
            netns: naming.netns(h.n),
            root: paths.merged(h.n),
            upper: paths.upper(h.n),
            host_key: h.host_key.clone(),
            kind: state.kind_of(h),
        };
        let hosts = state.hosts.iter().map(host).collect();
        let bastion = state.bastion.as_ref().map(host);
        Ok(Lab { config: config.clone(), paths, state, hosts, bastion, password: Redacted(password) })
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// pid 1 of the lab's hosts (of its first kind, in a mixed lab; see
    /// [`LabHost::kind`]).
    pub fn init(&self) -> crate::Init {
        self.state.init
    }

    /// The lab's index: its subnet is `10.213.<index>.0/24`.
    pub fn index(&self) -> u8 {
        self.state.index
    }

    /// The controller's address on the lab network.
    pub fn gateway(&self) -> Ipv4Addr {
        Naming { idx: self.state.index }.gateway()
    }

    /// The jump host of a lab brought up with `--bastion`: the one lab
    /// address the controller can reach. Not among [`Lab::hosts`].
    pub fn bastion(&self) -> Option<&LabHost> {
        self.bastion.as_ref()
    }

    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The lab's state directory.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// Private key that logs in as root on every host.
    pub fn key_path(&self) -> PathBuf {
        self.paths.key()
    }

    /// Password of the non-root user [`Lab::user`] on every host (who needs
    /// it for sudo too).
    pub fn password(&self) -> &str {
        &self.password.0
    }

    /// The non-root user with a password and sudo.
    pub fn user(&self) -> &'static str {
        USER
    }

    /// Hosts named by `spec`: `all`, or a comma list such as `h1,h3`.
    pub fn select(&self, spec: &str) -> Result<Vec<&LabHost>, LabError> {
        if spec == "all" {
            return Ok(self.hosts.iter().collect());
        }
        spec.split(',')
            .map(str::trim)
            .map(|name| {
                self.host(name).ok_or_else(|| LabError::UnknownHost {
                    lab: self.name().into(),
                    host: name.into(),
                    count: self.hosts.len(),
                })
            })
            .collect()
    }

    /// An inventory.toml for the lab: root by key, host keys pinned. A lab
    /// made with `--ssh-ca` pins nothing: `cert-authority` trusts the lab CA's
    /// host certificates, and the key's certificate (`id_ed25519-cert.pub`,
    /// beside it) is what logs in.
    pub fn inventory_toml(&self) -> String {
        let mut out = format!("# Generated by `drover lab inventory` for lab {}.\n", toml_string(self.name()));
        let _ =
            write!(out, "[defaults]\nuser = \"root\"\nkey = {}\n", toml_string(&self.key_path().display().to_string()));
        let ca = self.ssh_ca();
        if let Some(ca) = &ca {
            let _ = writeln!(out, "cert-authority = {}", toml_string(ca));
        }
        if let Some(b) = &self.bastion {
            // Its key goes to the project's known_hosts (`drover trust`
            // pins it), where every jump host's key is looked up.
            let _ = write!(
                out,
                "# Every host is reached through the lab's bastion; pin its key with `drover trust`\n\
                 # (or add this line to known_hosts: {} {}).\nproxy-jump = \"root@{}\"\n",
                b.address, b.host_key, b.address
            );
        }
        for h in &self.hosts {
            let _ = write!(
                out,
                "\n[hosts.{}]\naddress = \"{}\"\ngroups = [{}]\n",
                h.name,
                h.address,
                toml_string(self.name()),
            );
            if ca.is_none() {
                let _ = writeln!(out, "host-key = {}", toml_string(&h.host_key));
            }
        }
        out
    }

    /// The lab CA's public key line, for a lab made with `--ssh-ca`.
    pub fn ssh_ca(&self) -> Option<String> {
        if !self.state.ssh_ca {
            return None;
        }
        crate::ca::public_line(&self.paths).ok()
    }

    /// `address,user,password` per host, no header: the non-root user.
    pub fn inventory_csv(&self) -> String {
        self.hosts.iter().map(|h| format!("{},{},{}\n", h.address, USER, self.password())).collect()
    }

    /// What each host is doing right now.
    pub fn status(&self) -> Vec<HostStatus> {
        let naming = Naming { idx: self.state.index };
        self.hosts
            .iter()
            .map(|h| {
                let n = parse_host_name(&h.name).expect("state host names are valid");
                let pids = sys::netns_pids(&h.netns);
                let record = self.state.faults.get(&h.name).cloned().unwrap_or_default();
                let state = if pids.is_empty() {
                    HostState::Stopped
                } else if pids.iter().all(|p| matches!(sys::process_state(*p), Some('T' | 't'))) {
                    HostState::Frozen
                } else if !sys::link_is_up(&naming.veth(n)) {
                    HostState::Down
                } else {
                    HostState::Up
                };
                let faults = match (&record.netem, &record.engine) {
                    (Some(n), Some(e)) => format!("{n} ({e})"),
                    (Some(n), None) => n.to_string(),
                    _ => String::new(),
                };
                HostStatus {
                    host: h.name.clone(),
                    address: h.address,
                    kind: h.kind,
                    state,
                    faults,
                    processes: pids.len(),
                }
            })
            .collect()
    }
}

/// A host's condition, from the kernel rather than the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    /// Processes running, link up.
    Up,
    /// Link cut (`fault down`).
    Down,
    /// Every process stopped (`fault freeze`).
    Frozen,
    /// No process at all (crashed or killed): `drover lab up` restarts it.
    Stopped,
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostState::Up => "up",
            HostState::Down => "down",
            HostState::Frozen => "frozen",
            HostState::Stopped => "stopped",
        })
    }
}

/// One row of `drover lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostStatus {
    pub host: String,
    pub address: Ipv4Addr,
    /// Its init, architecture and userland (`{"init":"runit","arch":"arm64","userland":"debian"}`).
    pub kind: crate::Kind,
    pub state: HostState,
    /// Link impairment, e.g. `delay 100ms loss 1% (userspace)`; empty if none.
    pub faults: String,
    pub processes: usize,
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HostRecord;

    fn lab() -> Lab {
        let config = LabConfig { state_root: "/var/lib/drover-lab".into(), ..LabConfig::from_env() };
        let paths = config.lab_paths("lab").unwrap();
        let mut state = LabState::new("lab", 0, crate::Init::Runit, "/base".into());
        state.hosts = (1..=2)
            .map(|n| HostRecord {
                n,
                name: format!("h{n}"),
                address: Naming { idx: 0 }.address(n),
                host_key: format!("ssh-ed25519 AAAAkey{n}"),
                kind: None,
                base: None,
            })
            .collect();
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("drover-lab-unit-{}-{seq}", std::process::id()));
        fs::create_dir_all(dir.join("lab")).unwrap();
        fs::write(dir.join("lab/state.json"), serde_json::to_string(&state).unwrap()).unwrap();
        fs::write(dir.join("lab/password"), "pw123\n").unwrap();
        let config = LabConfig { state_root: dir.clone(), ..config };
        let mut lab = Lab::open_with(&config, "lab").unwrap();
        lab.paths = paths; // show the default paths in the output
        fs::remove_dir_all(&dir).unwrap();
        lab
    }

    #[test]
    fn inventory_has_the_agreed_shape() {
        let lab = lab();
        let text = lab.inventory_toml();
        assert!(text.starts_with(
            "# Generated by `drover lab inventory` for lab \"lab\".\n[defaults]\nuser = \"root\"\n\
             key = \"/var/lib/drover-lab/lab/id_ed25519\"\n\n[hosts.h1]\naddress = \"10.213.0.11\"\n\
             groups = [\"lab\"]\nhost-key = \"ssh-ed25519 AAAAkey1\"\n"
        ));
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["hosts"]["h2"]["address"].as_str(), Some("10.213.0.12"));
        assert_eq!(lab.inventory_csv(), "10.213.0.11,op,pw123\n10.213.0.12,op,pw123\n");
        assert!(!format!("{lab:?}").contains("pw123"));
    }

    #[test]
    fn a_bastion_lab_inventory_jumps_through_the_bastion() {
        let mut lab = lab();
        assert!(!lab.inventory_toml().contains("proxy-jump"));
        let b = Naming { idx: 0 }.address(Naming::BASTION);
        lab.bastion = Some(LabHost {
            name: "bastion".into(),
            address: b,
            host_key: "ssh-ed25519 AAAAb".into(),
            ..lab.hosts[0].clone()
        });
        let parsed: toml::Table = toml::from_str(&lab.inventory_toml()).unwrap();
        assert_eq!(parsed["defaults"]["proxy-jump"].as_str(), Some("root@10.213.0.10"));
        assert!(lab.inventory_toml().contains("10.213.0.10 ssh-ed25519 AAAAb"), "the known_hosts line, to copy");
        assert!(parsed["hosts"].get("bastion").is_none(), "the bastion is no deploy target");
    }

    /// Hosts recorded before kinds existed (no `kind` in their record) are
    /// what every host was then: native Debian hosts of the lab's init.
    #[test]
    fn hosts_recorded_without_a_kind_are_native_debian_of_the_labs_init() {
        let lab = lab();
        assert!(lab.hosts().iter().all(|h| h.kind == crate::Kind::runit()));
        assert_eq!(lab.status()[0].kind, crate::Kind::runit());
    }

    #[test]
    fn select_hosts() {
        let lab = lab();
        assert_eq!(lab.select("all").unwrap().len(), 2);
        assert_eq!(lab.select("h2, h1").unwrap()[0].name, "h2");
        assert!(matches!(lab.select("h3"), Err(LabError::UnknownHost { .. })));
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    }
}
