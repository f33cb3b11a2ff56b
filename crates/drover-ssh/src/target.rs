//! Where and how to connect.

use std::path::PathBuf;
use std::time::Duration;

/// A password or passphrase. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Overwritten with zeros when dropped (`zeroize`), so a freed password
/// does not linger in the heap.
impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub enum Auth {
    Key {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    /// Password (tried as `password`, then as keyboard-interactive answers).
    Password(Secret),
    /// Keys offered by the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For each of TCP connect, SSH handshake and authentication.
    pub connect: Duration,
    /// Keepalive probe interval once connected.
    pub keepalive: Duration,
    /// Unanswered keepalives before the link counts as dead.
    pub keepalive_max: usize,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { connect: Duration::from_secs(10), keepalive: Duration::from_secs(5), keepalive_max: 3 }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// Pinned host keys as OpenSSH lines (`ssh-ed25519 AAAA… [comment]`).
    /// Empty: the host is refused until its key is pinned.
    pub host_keys: Vec<String>,
    pub timeouts: Timeouts,
    /// Jump hosts on the way, in order (OpenSSH's `ProxyJump`): empty means
    /// a direct TCP connection. Each hop is logged into as its own
    /// [`Hop::user`] with this target's [`Auth`].
    pub proxy_jump: Vec<Hop>,
}

/// One jump host (a bastion): the first hop is reached over TCP, every
/// later hop and then the target through the previous hop's `direct-tcpip`
/// channel. Its host key is pinned like any host's: empty `host_keys` means
/// it is refused. Authentication uses the target's [`Auth`] (a bastion and
/// the hosts behind it normally accept the same key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    pub user: String,
    pub address: String,
    pub port: u16,
    /// Pinned host keys as OpenSSH lines, as [`Target::host_keys`].
    pub host_keys: Vec<String>,
}

impl Hop {
    /// `user@address:port`, as the hop is named in errors.
    pub fn label(&self) -> String {
        format!("{}@{}", self.user, join_addr(&self.address, self.port))
    }
}

/// `address:port`, with brackets for IPv6.
pub(crate) fn join_addr(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

impl Target {
    /// `address:port`, with brackets for IPv6.
    pub fn addr(&self) -> String {
        join_addr(&self.address, self.port)
    }
}
