//! `drover lab up N --ssh-ca`: the lab as a team with an SSH certificate
//! authority runs it. One CA key per lab signs every host's host key
//! (sshd `HostCertificate`, principals: the host's name and address) and the
//! lab's login key (`id_ed25519-cert.pub` beside it, principals `root` and
//! the non-root user); hosts trust it for logins (`TrustedUserCAKeys`) and
//! root's authorized_keys stays empty, so a login works only by certificate.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::base::{write_file, USER};
use crate::cmd;
use crate::config::LabPaths;
use crate::error::LabError;

/// Where the CA's private key lives (its public half is `.pub`).
pub(crate) fn ca_key(paths: &LabPaths) -> PathBuf {
    paths.dir.join("ssh_ca")
}

/// Where sshd reads the CA on each host.
const HOST_CA: &str = "etc/ssh/drover-lab-user-ca.pub";
const DROP_IN: &str = "etc/ssh/sshd_config.d/drover-lab-ca.conf";

/// Make the CA once, and sign the lab's login key (again when the key or
/// its certificate is newer than the certificate, or it is missing).
pub(crate) fn ensure(paths: &LabPaths, lab: &str) -> Result<(), LabError> {
    let ca = ca_key(paths);
    if !ca.exists() {
        let comment = format!("drover-lab-{lab}-ca");
        keygen(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"], &ca)?;
    }
    let key = paths.key();
    let cert = cert_path(&key);
    if !cert.exists() {
        let principals = format!("root,{USER}");
        sign(&ca, &format!("drover-lab-{lab}-user"), &principals, false, &pub_path(&key))?;
    }
    Ok(())
}

/// Sign host `name`'s host key and configure its sshd for certificates.
pub(crate) fn certify_host(paths: &LabPaths, root: &Path, name: &str, address: &str) -> Result<(), LabError> {
    let host_key = root.join("etc/ssh/ssh_host_ed25519_key");
    if !cert_path(&host_key).exists() {
        sign(&ca_key(paths), name, &format!("{name},{address}"), true, &pub_path(&host_key))?;
    }
    let ca_pub = pub_path(&ca_key(paths));
    let text = fs::read_to_string(&ca_pub).map_err(LabError::io("read", &ca_pub))?;
    write_file(&root.join(HOST_CA), &text, 0o644)?;
    let conf = format!(
        "# drover lab --ssh-ca: host certificate, and logins by certificate from the lab CA.\nHostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\nTrustedUserCAKeys /{HOST_CA}\n"
    );
    write_file(&root.join(DROP_IN), &conf, 0o644)
}

/// The CA's public key line (`ssh-ed25519 AAAA…`), for inventories.
pub(crate) fn public_line(paths: &LabPaths) -> Result<String, LabError> {
    let p = pub_path(&ca_key(paths));
    let text = fs::read_to_string(&p).map_err(LabError::io("read", &p))?;
    Ok(text.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

fn sign(ca: &Path, id: &str, principals: &str, host: bool, public: &Path) -> Result<(), LabError> {
    let mut args: Vec<OsString> = vec!["-q".into(), "-s".into(), ca.into(), "-I".into(), id.into()];
    if host {
        args.push("-h".into());
    }
    args.extend(["-n".into(), principals.into(), public.into()]);
    cmd::run("ssh-keygen", args).map(|_| ())
}

fn keygen<const N: usize>(args: [&str; N], out: &Path) -> Result<(), LabError> {
    let mut v: Vec<OsString> = args.iter().map(Into::into).collect();
    v.push(out.into());
    cmd::run("ssh-keygen", v).map(|_| ())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn cert_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push("-cert.pub");
    PathBuf::from(s)
}
