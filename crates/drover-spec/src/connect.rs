//! How a host is reached: the inventory's connection fields merged with
//! ssh_config ([`crate::ssh_config`]), and the known_hosts lines (pins and
//! `@cert-authority`) that apply to it, each value remembering where it came
//! from (`drover inventory show HOST`).
//!
//! Precedence: a value the inventory states (the host's entry, then
//! `inventory.toml [defaults]`, then `drover.toml [defaults]`) wins; then
//! ssh_config; then drover's default (address = the name, port 22, user
//! root). Key files are all tried: the inventory's `key` first, then
//! ssh_config's `IdentityFile`s in their order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::SpecError;
use crate::ssh_config::{self, list_matches, Resolved, Tokens};

/// Connection settings beyond address, port, user and inventory key.
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    /// ssh_config `IdentityFile`s, tried after the inventory's key.
    pub identity_files: Vec<PathBuf>,
    /// ssh_config `CertificateFile`s (else `<key>-cert.pub` beside a key).
    pub certificate_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: the ssh-agent's other keys are not offered.
    pub identities_only: bool,
    /// `ProxyJump` as written (`user@host:port,…`), for the jump-host
    /// connector to parse; None when unset or `none`.
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub server_alive_interval: Option<Duration>,
    /// Certificate authorities trusted for this host's host certificate:
    /// `@cert-authority` lines (project known_hosts, `UserKnownHostsFile`)
    /// and the inventory's `cert-authority`.
    pub cert_authorities: Vec<String>,
    /// Where each value came from, in display order.
    pub provenance: Vec<Provenance>,
}

/// One resolved value and its source (`inventory.toml:12`,
/// `/home/u/.ssh/config:4`, `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub field: &'static str,
    pub value: String,
    pub source: String,
}

/// A value the inventory states, with where.
pub(crate) type Given<T> = Option<(T, String)>;

/// What the inventory says about one host's connection.
pub(crate) struct Stated<'a> {
    pub name: &'a str,
    pub address: Given<String>,
    pub user: Given<String>,
    pub port: Given<u16>,
    pub key: Given<PathBuf>,
    pub cert_authority: Given<String>,
}

/// The merged result: address, port, user, the inventory key, the rest.
pub(crate) struct Reached {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key: Option<PathBuf>,
    pub ssh: SshSettings,
}

pub(crate) fn merge(s: Stated<'_>, r: &Resolved) -> Reached {
    let mut prov = Vec::new();
    let mut note = |field, value: String, source: String| prov.push(Provenance { field, value, source });
    let pick = |given: Given<String>, conf: Option<(String, String)>, default: String| match (given, conf) {
        (Some(g), _) => g,
        (None, Some(c)) => c,
        (None, None) => (default, "default".into()),
    };
    let from_conf = |v: &Option<ssh_config::Val<String>>| v.as_ref().map(|v| (v.value.clone(), v.origin.to_string()));
    let (address, a_src) = pick(s.address, from_conf(&r.hostname), s.name.to_string());
    note("address", address.clone(), a_src);
    let (user, u_src) = pick(s.user, from_conf(&r.user), "root".into());
    note("user", user.clone(), u_src);
    let (port, p_src) = match (s.port, &r.port) {
        (Some(g), _) => g,
        (None, Some(v)) => (v.value, v.origin.to_string()),
        (None, None) => (22, "default".into()),
    };
    note("port", port.to_string(), p_src);
    let tokens = Tokens { name: s.name, host: &address, user: &user, port };
    if let Some((k, src)) = &s.key {
        note("key", k.display().to_string(), src.clone());
    }
    let mut ssh = SshSettings::default();
    for f in &r.identity_files {
        let p = ssh_config::expand(&f.value, &tokens);
        note("identity-file", p.display().to_string(), f.origin.to_string());
        ssh.identity_files.push(p);
    }
    for f in &r.certificate_files {
        let p = ssh_config::expand(&f.value, &tokens);
        note("certificate-file", p.display().to_string(), f.origin.to_string());
        ssh.certificate_files.push(p);
    }
    if let Some(v) = &r.identities_only {
        ssh.identities_only = v.value;
        note("identities-only", v.value.to_string(), v.origin.to_string());
    }
    if let Some(v) = &r.proxy_jump {
        ssh.proxy_jump = Some(v.value.clone());
        note("proxy-jump", v.value.clone(), v.origin.to_string());
    }
    if let Some(v) = &r.connect_timeout {
        ssh.connect_timeout = Some(v.value);
        note("connect-timeout", format!("{}s", v.value.as_secs()), v.origin.to_string());
    }
    if let Some(v) = &r.server_alive_interval {
        ssh.server_alive_interval = Some(v.value);
        note("server-alive-interval", format!("{}s", v.value.as_secs()), v.origin.to_string());
    }
    if let Some((ca, src)) = s.cert_authority {
        note("cert-authority", ca.clone(), src);
        ssh.cert_authorities.push(ca);
    }
    ssh.provenance = prov;
    Reached { address, port, user, key: s.key.map(|(k, _)| k), ssh }
}

/// A key line that applies, and where it was found (`file:line`).
pub(crate) type Found = (String, String);

/// known_hosts files: the project's, and those ssh_config names
/// (`UserKnownHostsFile`), each read once.
#[derive(Default)]
pub(crate) struct Known {
    pub project: KnownHosts,
    pub user: BTreeMap<PathBuf, KnownHosts>,
}

/// What every host is resolved against.
pub(crate) struct Ctx {
    pub ssh: ssh_config::SshConfig,
    pub known: Known,
}

impl Ctx {
    /// Pinned keys of a jump host at `address` (the project's known_hosts,
    /// where `drover trust` pins hops).
    pub fn pins_of(&self, address: &str) -> Vec<String> {
        self.known.project.for_host(&[address]).0.into_iter().map(|(k, _)| k).collect()
    }

    /// Merge what the inventory states with ssh_config, and add the pins and
    /// CA keys known_hosts files hold for the result.
    pub fn reach(&mut self, stated: Stated<'_>, pins: &mut Vec<(String, String)>) -> Result<Reached, SpecError> {
        let name = stated.name.to_string();
        let r = self.ssh.resolve(&name)?;
        let mut reached = merge(stated, &r);
        let bracketed = format!("[{}]:{}", reached.address, reached.port);
        let names = [name.as_str(), reached.address.as_str(), bracketed.as_str()];
        let mut files = vec![&self.known.project];
        let tokens =
            ssh_config::Tokens { name: &name, host: &reached.address, user: &reached.user, port: reached.port };
        let paths: Vec<PathBuf> = r.known_hosts_files.iter().map(|f| ssh_config::expand(&f.value, &tokens)).collect();
        for p in &paths {
            if !self.known.user.contains_key(p) {
                self.known.user.insert(p.clone(), KnownHosts::load(p, &p.display().to_string()));
            }
        }
        files.extend(paths.iter().filter_map(|p| self.known.user.get(p)));
        for k in files {
            let (keys, cas) = k.for_host(&names);
            pins.extend(keys);
            for (ca, at) in cas {
                reached.ssh.provenance.push(Provenance { field: "cert-authority", value: ca.clone(), source: at });
                reached.ssh.cert_authorities.push(ca);
            }
        }
        Ok(reached)
    }
}

/// One known_hosts file: pinned keys and `@cert-authority` keys by pattern.
#[derive(Debug, Default)]
pub(crate) struct KnownHosts {
    /// (patterns, key, `file:line`)
    keys: Vec<(String, String, String)>,
    authorities: Vec<(String, String, String)>,
}

impl KnownHosts {
    /// `[@cert-authority] patterns keytype base64 [comment]`; hashed names
    /// (`|1|…`) and `@revoked` lines are skipped. A missing file is empty.
    pub fn load(path: &Path, shown: &str) -> KnownHosts {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut k = KnownHosts::default();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (ca, rest) = match l.strip_prefix("@cert-authority") {
                Some(r) => (true, r.trim_start()),
                None if l.starts_with('@') || l.starts_with('|') => continue,
                None => (false, l),
            };
            let Some((who, key)) = rest.split_once(char::is_whitespace) else { continue };
            let entry = (who.to_string(), key.trim().to_string(), format!("{shown}:{}", i + 1));
            if ca {
                k.authorities.push(entry);
            } else {
                k.keys.push(entry);
            }
        }
        k
    }

    /// Pinned keys and CA keys for a host known by `names` (name, address,
    /// `[address]:port`), with where each was found.
    pub fn for_host(&self, names: &[&str]) -> (Vec<Found>, Vec<Found>) {
        let pick = |v: &[(String, String, String)]| {
            v.iter().filter(|(who, _, _)| list_matches(who, names)).map(|(_, k, at)| (k.clone(), at.clone())).collect()
        };
        (pick(&self.keys), pick(&self.authorities))
    }
}

/// The ssh_config in force: `DROVER_SSH_CONFIG` (set by `drover -F`), then
/// drover.toml's `[ssh] config`, then `~/.ssh/config` if it exists.
pub(crate) fn ssh_config(dir: &Path, configured: Option<&str>) -> Result<ssh_config::SshConfig, SpecError> {
    if let Some(p) = std::env::var_os("DROVER_SSH_CONFIG").filter(|p| !p.is_empty()) {
        return ssh_config::SshConfig::load(Path::new(&p), true);
    }
    if let Some(p) = configured {
        let p = ssh_config::expand_tilde(p, &ssh_config::home());
        let p = if p.is_absolute() { p } else { dir.join(p) };
        return ssh_config::SshConfig::load(&p, true);
    }
    ssh_config::SshConfig::load(&ssh_config::home().join(".ssh/config"), false)
}

/// The line within `text[range]` that sets `key` (`key = …`), 1-based in
/// the whole text.
pub(crate) fn key_line(text: &str, range: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let start = range.start.min(text.len());
    let end = range.end.min(text.len());
    let mut offset = start;
    for l in text.get(start..end)?.split_inclusive('\n') {
        let t = l.trim_start();
        if t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(text[..offset].matches('\n').count() + 1);
        }
        offset += l.len();
    }
    None
}

/// The byte range of a `[table]` in a TOML text (to its next header).
pub(crate) fn table_range(text: &str, header: &str) -> std::ops::Range<usize> {
    let Some(start) = text
        .lines()
        .scan(0, |off, l| {
            let at = *off;
            *off += l.len() + 1;
            Some((at, l))
        })
        .find(|(_, l)| l.trim() == header)
        .map(|(at, _)| at)
    else {
        return 0..0;
    };
    let after = start + header.len();
    let end = text[after.min(text.len())..].find("\n[").map(|i| after + i).unwrap_or(text.len());
    start..end
}
