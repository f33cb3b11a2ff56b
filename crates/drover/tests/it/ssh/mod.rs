//! Issue #25 items 2-4: hosts reached the way operators' own `ssh` reaches
//! them: ssh_config, the ssh-agent, RSA/ECDSA and passphrase-protected keys,
//! user and host certificates. Real binary, real sshd lab hosts.

mod auth;
mod certs;
mod config;
mod tools;
