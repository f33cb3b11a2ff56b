//! Secret-bearing files from a bundle: sealed to this host's SSH ed25519
//! host key (`drover_bundle::seal`), opened here with the private key sshd
//! keeps at `/etc/ssh/ssh_host_ed25519_key`.
//!
//! The order keeps "nothing half-applied":
//! 1. [`check`], before anything is written: the signed host entry says which
//!    key its secrets are sealed to; a host whose key is another (re-keyed, or
//!    not the host the entry is for) is refused here.
//! 2. The ciphertext travels as an ordinary blob (hash-checked on arrival):
//!    [`redirect_missing`] asks for it instead of the clear content.
//! 3. [`open_received`], before the transition: each ciphertext is decrypted
//!    and checked against the clear hash of the signed manifest, and only
//!    then stored as that blob (0600 in the private store, like any blob:
//!    the store needs it for exact rollback). The ciphertext is dropped.

use std::collections::HashMap;

use drover_bundle::seal::{self, HostIdentity, HOST_SSH_KEY};
use drover_bundle::{HostEntry, SealedEntry};
use drover_proto::Hash;

use crate::diff::Candidate;
use crate::layout::Layout;
use crate::{blobs, AgentError, Context, Result};

/// Refuse an entry whose secrets are sealed to a key this host does not
/// have; with sealed content, return the host's identity to open it with.
/// Reads only.
pub fn check(layout: &Layout, entry: &HostEntry) -> Result<Option<HostIdentity>> {
    if entry.sealed.is_empty() {
        return Ok(None);
    }
    entry.validate_sealed().map_err(AgentError)?;
    let sealed_to = entry.recipient.as_deref().unwrap_or_default();
    let key = layout.target(HOST_SSH_KEY);
    let id = HostIdentity::load(&key).map_err(|e| {
        AgentError(format!(
            "this bundle holds secrets sealed to host {}'s SSH key, and this host's key cannot be read ({e})",
            entry.name
        ))
    })?;
    seal::check_recipient(&entry.name, sealed_to, &id.public).map_err(|e| AgentError(e.to_string()))?;
    Ok(Some(id))
}

/// The clear blobs a candidate lacks, with each sealed one replaced by its
/// ciphertext (and the ciphertext's size made known, so its chunks are
/// accepted).
pub fn redirect_missing(
    layout: &Layout,
    sealed: &[SealedEntry],
    cand: &mut Candidate,
    missing: Vec<(Hash, u64)>,
) -> Vec<(Hash, u64)> {
    let by_clear: HashMap<Hash, &SealedEntry> = sealed.iter().map(|s| (s.clear, s)).collect();
    let mut out = Vec::with_capacity(missing.len());
    for (h, have) in missing {
        match by_clear.get(&h) {
            // Received already (an earlier attempt): opened at `Apply`.
            Some(s) if blobs::has(layout, &s.cipher) => {}
            Some(s) => {
                cand.sizes.insert(s.cipher, s.cipher_size);
                out.push((s.cipher, blobs::partial_len(layout, &s.cipher)));
            }
            None => out.push((h, have)),
        }
    }
    out
}

/// Decrypt every received ciphertext whose clear content the store lacks,
/// check it against the signed manifest's hash, store it, drop the
/// ciphertext. Any failure stops before the transition.
pub fn open_received(layout: &Layout, entry_name: &str, sealed: &[SealedEntry]) -> Result<()> {
    let todo: Vec<&SealedEntry> =
        sealed.iter().filter(|s| blobs::needs_transfer(layout, &s.clear) && blobs::has(layout, &s.cipher)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let id = HostIdentity::load(&layout.target(HOST_SSH_KEY))
        .map_err(|e| AgentError(format!("cannot open the secrets for host {entry_name}: {e}")))?;
    for s in todo {
        let cipher = std::fs::read(layout.blob(&s.cipher)).ctx(|| format!("read sealed {}", s.path))?;
        let plain = id.open(&cipher, &s.clear, &s.path).map_err(|e| AgentError(e.to_string()))?;
        blobs::ingest(layout, &mut plain.as_slice(), &s.clear)?;
        let _ = std::fs::remove_file(layout.blob(&s.cipher));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::{Entry, EntryKind, Manifest};
    use std::os::unix::fs::PermissionsExt;

    fn h(b: &[u8]) -> Hash {
        Hash(*blake3::hash(b).as_bytes())
    }

    /// A host root with an SSH host key, and an entry for `/etc/x` holding
    /// `plain`, sealed to `sealed_to` (this host's key when `None`).
    fn setup(plain: &[u8], sealed_to: Option<&str>) -> (tempfile::TempDir, Layout, HostEntry, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("etc/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(ssh.join("ssh_host_ed25519_key"))
            .status()
            .unwrap();
        assert!(st.success());
        let layout = Layout::new(dir.path());
        let own = seal::public_key(&layout.target(HOST_SSH_KEY)).unwrap();
        let recipient = sealed_to.map_or(own, str::to_string);
        let cipher = seal::seal(&recipient, plain).unwrap();
        let entry = HostEntry {
            name: "h1".into(),
            address: "10.0.0.1".into(),
            port: 22,
            user: "root".into(),
            key: None,
            host_keys: vec![],
            roles: vec![],
            groups: vec![],
            generation: 1,
            facts: "placeholder".into(),
            manifest: Manifest {
                entries: vec![Entry {
                    path: "/etc/x".into(),
                    kind: EntryKind::File { size: plain.len() as u64, hash: h(plain) },
                    mode: 0o600,
                    owner: "root".into(),
                    group: "root".into(),
                    source: None,
                }],
                services: vec![],
            },
            recipient: Some(recipient),
            sealed: vec![SealedEntry {
                path: "/etc/x".into(),
                names: vec!["db".into()],
                clear: h(plain),
                cipher: h(&cipher),
                cipher_size: cipher.len() as u64,
            }],
        };
        (dir, layout, entry, cipher)
    }

    #[test]
    fn the_ciphertext_is_asked_for_then_opened_into_a_private_blob() {
        let plain = b"password=s3cret\n";
        let (_d, layout, entry, cipher) = setup(plain, None);
        assert!(check(&layout, &entry).unwrap().is_some());
        let mut cand = Candidate {
            manifest: entry.manifest.clone(),
            generation: 1,
            wants: vec![],
            changes: vec![],
            restarts: vec![],
            sizes: HashMap::new(),
        };
        let other = h(b"plain");
        let missing = redirect_missing(&layout, &entry.sealed, &mut cand, vec![(h(plain), 0), (other, 3)]);
        assert_eq!(missing, vec![(h(&cipher), 0), (other, 3)], "clear content asked for");
        assert_eq!(cand.sizes.get(&h(&cipher)), Some(&(cipher.len() as u64)));

        crate::fsops::private_dir(&layout.blobs()).unwrap();
        std::fs::write(layout.blob(&h(&cipher)), &cipher).unwrap();
        // Received already: nothing more to send.
        assert!(redirect_missing(&layout, &entry.sealed, &mut cand, vec![(h(plain), 0)]).is_empty());
        open_received(&layout, "h1", &entry.sealed).unwrap();
        assert_eq!(std::fs::read(layout.blob(&h(plain))).unwrap(), plain);
        let mode = std::fs::metadata(layout.blob(&h(plain))).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!layout.blob(&h(&cipher)).exists(), "ciphertext kept");
    }

    #[test]
    fn another_key_a_missing_key_and_a_wrong_clear_hash_are_refused_storing_nothing() {
        let other = tempfile::tempdir().unwrap();
        let k = other.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&k)
            .status()
            .unwrap();
        assert!(st.success());
        let foreign = seal::public_key(&k).unwrap();
        let (_d, layout, entry, _) = setup(b"v", Some(&foreign));
        let e = check(&layout, &entry).unwrap_err().0;
        assert!(e.contains("sealed to host key") && e.contains(&seal::fingerprint(&foreign)), "{e}");

        let (_d, layout, mut entry, _) = setup(b"v", None);
        std::fs::remove_file(layout.target(HOST_SSH_KEY)).unwrap();
        let e = check(&layout, &entry).unwrap_err().0;
        assert!(e.contains("this host's key cannot be read") && e.contains(HOST_SSH_KEY), "{e}");

        // Sealed content whose clear hash is not the signed one.
        let (_d, layout, _, _) = setup(b"v", None);
        let sealed_to = seal::public_key(&layout.target(HOST_SSH_KEY)).unwrap();
        let cipher2 = seal::seal(&sealed_to, b"not v").unwrap();
        entry.sealed[0].cipher = h(&cipher2);
        crate::fsops::private_dir(&layout.blobs()).unwrap();
        std::fs::write(layout.blob(&h(&cipher2)), &cipher2).unwrap();
        let e = open_received(&layout, "h1", &entry.sealed).unwrap_err().0;
        assert!(e.contains("/etc/x") && e.contains("does not match the signed manifest"), "{e}");
        assert!(!layout.blob(&h(b"v")).exists() && !layout.blob(&h(b"not v")).exists());
    }
}
