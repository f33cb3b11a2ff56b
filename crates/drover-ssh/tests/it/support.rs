//! What the tests share: a host key and a target on loopback.

use std::time::Duration;

use drover_ssh::{Auth, Secret, Target, Timeouts};

/// An Ed25519 public key (no server holds it: tests that need a real
/// server run on the lab fleet).
pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQnWNfZyVYm3Jm3P3XNSnjcmvO1Ul1b4vZ4zq3fCAfA";

/// root@127.0.0.1:`port` with a password, [`KEY`] pinned, and `connect`
/// as its connect timeout.
pub fn target(port: u16, connect: Duration) -> Target {
    Target {
        address: "127.0.0.1".into(),
        port,
        user: "root".into(),
        auth: Auth::Password(Secret::new("x")),
        host_keys: vec![KEY.into()],
        timeouts: Timeouts { connect, ..Default::default() },
        proxy_jump: Vec::new(),
    }
}
