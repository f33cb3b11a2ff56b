//! OpenSSH client configuration (`~/.ssh/config`, or the file given by
//! `drover -F FILE` / `[ssh] config` in drover.toml), read so hosts are
//! reached the way `ssh HOST` reaches them.
//!
//! Semantics are OpenSSH's without `Match`: `Host` lines with `*`/`?`
//! patterns and `!` negation; for each keyword the first value obtained
//! wins (so specific blocks go first, `Host *` last); `IdentityFile` and
//! `CertificateFile` accumulate; `Include` (with `~`, relative to the
//! including file's directory, globs in the file name) is read in place.
//! Keywords drover uses: HostName, User, Port, IdentityFile,
//! CertificateFile, IdentitiesOnly, ProxyJump, UserKnownHostsFile,
//! ConnectTimeout, ServerAliveInterval; others are ignored. Every value
//! keeps the file and line it came from, for `drover inventory show`.
//!
//! Written here rather than taken from crates.io: the maintained parsers
//! (`ssh2-config`, `ssh_config`) return merged values without where each
//! came from, which `inventory show` must print.

mod parse;
mod pattern;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::Origin;
pub(crate) use pattern::list_matches;

use crate::diag::SpecError;
use parse::Block;

/// A parsed ssh_config (with its includes).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct Val<T> {
    pub value: T,
    pub origin: Origin,
}

/// What ssh_config says for one host (before the inventory overrides it).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub hostname: Option<Val<String>>,
    pub user: Option<Val<String>>,
    pub port: Option<Val<u16>>,
    /// Raw, with `~` and `%` tokens still in them (expanded once the
    /// host's final user and address are known: [`expand`]).
    pub identity_files: Vec<Val<String>>,
    pub certificate_files: Vec<Val<String>>,
    pub identities_only: Option<Val<bool>>,
    /// The raw `ProxyJump` spec (`user@host:port,…`); `none` is absent.
    pub proxy_jump: Option<Val<String>>,
    pub known_hosts_files: Vec<Val<String>>,
    pub connect_timeout: Option<Val<Duration>>,
    pub server_alive_interval: Option<Val<Duration>>,
}

impl SshConfig {
    /// Read `path`. A missing file is an error when it was named
    /// (`explicit`), and an empty config when it is only the default.
    pub fn load(path: &Path, explicit: bool) -> Result<SshConfig, SpecError> {
        if !explicit && !path.exists() {
            return Ok(SshConfig::default());
        }
        Ok(SshConfig { blocks: parse::parse_file(path, &home())? })
    }

    /// The settings that apply to `host` (the name as the inventory gives it).
    pub fn resolve(&self, host: &str) -> Result<Resolved, SpecError> {
        let mut r = Resolved::default();
        for b in self.blocks.iter().filter(|b| b.matches(host)) {
            for s in &b.settings {
                let arg = s.args[0].clone();
                fn val<T>(value: T, s: &parse::Setting) -> Option<Val<T>> {
                    Some(Val { value, origin: s.origin.clone() })
                }
                let bad = |what: &str| {
                    SpecError::file(
                        Path::new(&s.origin.to_string()),
                        format!("{}: {what}, found {arg:?}", s.key),
                        "see ssh_config(5)",
                    )
                };
                match s.key.as_str() {
                    "hostname" if r.hostname.is_none() => r.hostname = val(arg.replace("%h", host), s),
                    "user" if r.user.is_none() => r.user = val(arg, s),
                    "port" if r.port.is_none() => {
                        r.port = val(arg.parse().map_err(|_| bad("expected a port number"))?, s);
                    }
                    "identityfile" => r.identity_files.push(Val { value: arg, origin: s.origin.clone() }),
                    "certificatefile" => r.certificate_files.push(Val { value: arg, origin: s.origin.clone() }),
                    "identitiesonly" if r.identities_only.is_none() => {
                        r.identities_only = val(yes_no(&arg).ok_or_else(|| bad("expected yes or no"))?, s);
                    }
                    "proxyjump" if r.proxy_jump.is_none() => {
                        // `none` still counts as the first value obtained.
                        r.proxy_jump = val(arg, s);
                    }
                    "userknownhostsfile" if r.known_hosts_files.is_empty() => {
                        r.known_hosts_files =
                            s.args.iter().map(|a| Val { value: a.clone(), origin: s.origin.clone() }).collect();
                    }
                    "connecttimeout" if r.connect_timeout.is_none() => {
                        r.connect_timeout = val(seconds(&arg).ok_or_else(|| bad("expected seconds"))?, s);
                    }
                    "serveraliveinterval" if r.server_alive_interval.is_none() => {
                        r.server_alive_interval = val(seconds(&arg).ok_or_else(|| bad("expected seconds"))?, s);
                    }
                    _ => {}
                }
            }
        }
        if r.proxy_jump.as_ref().is_some_and(|p| p.value.eq_ignore_ascii_case("none")) {
            r.proxy_jump = None;
        }
        Ok(r)
    }
}

fn yes_no(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

fn seconds(s: &str) -> Option<Duration> {
    s.parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

pub(crate) fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if p == "~" => home.to_path_buf(),
        None => PathBuf::from(p),
    }
}

/// The values `%` tokens stand for.
pub struct Tokens<'a> {
    /// `%n`: the name as given.
    pub name: &'a str,
    /// `%h`: the address connected to.
    pub host: &'a str,
    /// `%r`: the remote user.
    pub user: &'a str,
    /// `%p`
    pub port: u16,
}

/// A path from ssh_config with `~` and `%h %n %r %u %p %d %%` expanded.
pub fn expand(raw: &str, t: &Tokens<'_>) -> PathBuf {
    let home = home();
    let local = std::env::var("USER").unwrap_or_default();
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(t.host),
            Some('n') => out.push_str(t.name),
            Some('r') => out.push_str(t.user),
            Some('u') => out.push_str(&local),
            Some('p') => out.push_str(&t.port.to_string()),
            Some('d') => out.push_str(&home.to_string_lossy()),
            Some(other) => out.push(other),
            None => out.push('%'),
        }
    }
    expand_tilde(&out, &home)
}

#[cfg(test)]
mod tests;
