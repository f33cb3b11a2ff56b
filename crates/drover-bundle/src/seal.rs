//! Sealing: a host's secret-bearing content, encrypted to that host only.
//!
//! A bundle is one file carried around (USB sticks, shared drives), so it
//! must not hold a secret in clear. Each secret-bearing file of a host is
//! stored as an age file whose one recipient is the host's **pinned SSH
//! ed25519 host key** (`ssh-ed25519` recipients, as `age -R` takes them):
//! the controller already pins that key (inventory `host-key`, `drover
//! trust`), and the agent, running as root, decrypts with
//! `/etc/ssh/ssh_host_ed25519_key`. No new key to generate, store, back up
//! or rotate; a re-keyed host is re-pinned anyway, and the next bundle is
//! sealed to the new key.
//!
//! Why not a per-host key generated at first contact in `/etc/drover/`: it
//! would need a first contact (a USB-installed host may never have had one),
//! a new request to fetch its public key, and a second pin on the controller
//! that must be kept in step with the SSH one.
//!
//! What a sealed entry binds: the signed host entry names the ciphertext's
//! blake3 (the blob, also the manifest entry's stand-in hash) and carries,
//! sealed too, the clear content's blake3 (`HostEntry::sealed_clear`), which
//! the host puts back into the manifest. The host checks the first while
//! receiving and the second after decrypting, so a sealed file is activated
//! only if it is exactly what was signed. The clear hash is sealed because a
//! hash of a short secret (a password alone in a file) can be confirmed by
//! guessing: a leaked bundle must not allow even that.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use drover_proto::Hash;
use sha2::Digest as _;

use crate::format::SealedClear;
use crate::{BundleError, Result};

/// The private host key the agent decrypts with, and its public half.
pub const HOST_SSH_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";

fn err(m: String) -> BundleError {
    BundleError::Secret(m)
}

/// `ssh-ed25519 <base64>` of an OpenSSH public key line (the comment
/// dropped), or `None` for another key type.
pub fn ed25519_key(line: &str) -> Option<String> {
    let mut p = line.split_whitespace();
    match (p.next(), p.next()) {
        (Some("ssh-ed25519"), Some(b64)) => Some(format!("ssh-ed25519 {b64}")),
        _ => None,
    }
}

/// The key a host's secrets are sealed to: its pinned ed25519 host key.
pub fn recipient_of(host_keys: &[String]) -> Option<String> {
    host_keys.iter().find_map(|k| ed25519_key(k))
}

/// OpenSSH's `SHA256:…` fingerprint of a public key line, what `drover
/// trust` and `ssh-keygen -l` print (the key itself if it does not decode).
pub fn fingerprint(line: &str) -> String {
    let b64 = line.split_whitespace().nth(1).unwrap_or(line);
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(blob) => {
            let d = sha2::Sha256::digest(&blob);
            format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(d))
        }
        Err(_) => line.to_string(),
    }
}

/// Encrypt `plain` to `recipient` (`ssh-ed25519 …`): binary age format.
pub fn seal(recipient: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let r = age::ssh::Recipient::from_str(recipient)
        .map_err(|e| err(format!("host key {recipient:?} is not an age recipient: {e:?}")))?;
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|e| err(format!("encrypt: {e}")))?;
    let mut w = enc.wrap_output(Vec::with_capacity(plain.len() + 256)).map_err(|e| err(format!("encrypt: {e}")))?;
    w.write_all(plain).map_err(|e| err(format!("encrypt: {e}")))?;
    w.finish().map_err(|e| err(format!("encrypt: {e}")))
}

/// A host's private SSH ed25519 key, to open what was sealed to it.
pub struct HostIdentity {
    inner: age::ssh::Identity,
    /// `ssh-ed25519 <base64>` of the matching public key.
    pub public: String,
}

impl std::fmt::Debug for HostIdentity {
    /// The public half only: the private key never reaches a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostIdentity({})", fingerprint(&self.public))
    }
}

impl HostIdentity {
    /// Read `private` (unencrypted OpenSSH ed25519, as sshd keeps it) and
    /// `private.pub`.
    pub fn load(private: &Path) -> Result<HostIdentity> {
        let public = public_key(private)?;
        let f = std::fs::File::open(private).map_err(|e| BundleError::io(private, e))?;
        let inner = age::ssh::Identity::from_buffer(BufReader::new(f), Some(private.display().to_string()))
            .map_err(|e| BundleError::io(private, e))?;
        match inner {
            age::ssh::Identity::Unencrypted(_) => Ok(HostIdentity { inner, public }),
            _ => Err(err(format!("{}: not an unencrypted OpenSSH ed25519 key", private.display()))),
        }
    }

    /// Decrypt `cipher`. `what` names it in messages.
    pub fn open_raw(&self, cipher: &[u8], what: &str) -> Result<Vec<u8>> {
        let dec = age::Decryptor::new(cipher).map_err(|e| err(format!("{what}: sealed content unreadable: {e}")))?;
        let mut r = dec.decrypt(std::iter::once(&self.inner as &dyn age::Identity)).map_err(|e| {
            err(format!(
                "{what}: cannot decrypt with this host's key {} ({e}); the bundle was sealed to another key",
                fingerprint(&self.public)
            ))
        })?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| err(format!("{what}: sealed content damaged: {e}")))?;
        Ok(out)
    }

    /// Decrypt `cipher` and check the clear content against `clear` (the
    /// hash the host put back into the signed manifest).
    pub fn open(&self, cipher: &[u8], clear: &Hash, what: &str) -> Result<Vec<u8>> {
        let out = self.open_raw(cipher, what)?;
        if Hash(*blake3::hash(&out).as_bytes()) != *clear {
            return Err(err(format!(
                "{what}: decrypted content does not match the signed manifest; build the bundle again"
            )));
        }
        Ok(out)
    }

    /// The clear hashes of a host entry's sealed files (`sealed_clear`).
    pub fn open_clear(&self, sealed_clear: &[u8], host: &str) -> Result<Vec<SealedClear>> {
        let what = format!("host {host}: the sealed file hashes");
        let raw = self.open_raw(sealed_clear, &what)?;
        postcard::from_bytes(&raw).map_err(|e| err(format!("{what}: {e}")))
    }
}

/// Seal the clear hashes of a host's sealed files (`HostEntry::sealed_clear`).
pub fn seal_clear(recipient: &str, items: &[SealedClear]) -> Result<Vec<u8>> {
    let raw = postcard::to_stdvec(items).map_err(|e| err(format!("encode sealed hashes: {e}")))?;
    seal(recipient, &raw)
}

/// `private.pub`'s key as `ssh-ed25519 <base64>`.
pub fn public_key(private: &Path) -> Result<String> {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    let p = std::path::PathBuf::from(p);
    let text = std::fs::read_to_string(&p).map_err(|e| BundleError::io(&p, e))?;
    ed25519_key(&text).ok_or_else(|| err(format!("{}: not an ssh-ed25519 public key", p.display())))
}

/// Is the host whose key is `own` the one `entry`'s secrets are sealed to?
/// The message says what happened and what to do.
pub fn check_recipient(host: &str, sealed_to: &str, own: &str) -> Result<()> {
    if ed25519_key(sealed_to).as_deref() == Some(own) {
        return Ok(());
    }
    Err(err(format!(
        "the secrets for host {host} in this bundle are sealed to host key {}, but this host's key is {} \
         (the host was re-keyed, or it is not {host}); pin its current key (`drover trust --replace --hosts {host}`) \
         and build the bundle again",
        fingerprint(sealed_to),
        fingerprint(own)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
            .arg(&p)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        p
    }

    #[test]
    fn sealed_content_opens_only_with_its_host_key_and_only_as_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (keygen(dir.path(), "a"), keygen(dir.path(), "b"));
        let pub_a = std::fs::read_to_string(a.with_extension("pub")).unwrap();
        let recipient = recipient_of(&["ssh-rsa AAAAB3".into(), pub_a.trim().into()]).unwrap();
        assert!(!recipient.ends_with("host"), "comment dropped: {recipient}");
        let plain = b"password=hunter2-very-secret\n";
        let clear = Hash(*blake3::hash(plain).as_bytes());
        let sealed = seal(&recipient, plain).unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "clear text in the ciphertext");

        let id_a = HostIdentity::load(&a).unwrap();
        assert_eq!(id_a.public, recipient);
        assert_eq!(id_a.open(&sealed, &clear, "/etc/x").unwrap(), plain);
        check_recipient("h1", &recipient, &id_a.public).unwrap();

        // Another host's key: refused by the recipient check, and by age.
        let id_b = HostIdentity::load(&b).unwrap();
        let e = check_recipient("h1", &recipient, &id_b.public).unwrap_err().to_string();
        assert!(e.contains(&fingerprint(&recipient)) && e.contains(&fingerprint(&id_b.public)), "{e}");
        assert!(e.contains("drover trust"), "{e}");
        let e = id_b.open(&sealed, &clear, "/etc/x").unwrap_err().to_string();
        assert!(e.contains("/etc/x") && e.contains("sealed to another key"), "{e}");

        // A clear hash that is not the content's (a builder bug or a forged
        // entry) is refused after decrypting.
        let e = id_a.open(&sealed, &Hash([0; 32]), "/etc/x").unwrap_err().to_string();
        assert!(e.contains("does not match the signed manifest"), "{e}");
        // A flipped ciphertext byte does not decrypt.
        let mut bad = sealed.clone();
        let n = bad.len() - 5;
        bad[n] ^= 1;
        assert!(id_a.open(&bad, &clear, "/etc/x").is_err());
    }

    #[test]
    fn fingerprints_are_openssh_style() {
        let dir = tempfile::tempdir().unwrap();
        let a = keygen(dir.path(), "a");
        let out = std::process::Command::new("ssh-keygen").arg("-lf").arg(a.with_extension("pub")).output().unwrap();
        let want = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string();
        assert_eq!(fingerprint(&public_key(&a).unwrap()), want);
    }
}
