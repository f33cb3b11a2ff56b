//! Secret-bearing files from a bundle: sealed to this host's SSH ed25519
//! host key (`drover_bundle::seal`), opened here with the private key sshd
//! keeps at `/etc/ssh/ssh_host_ed25519_key`.
//!
//! The order keeps "nothing half-applied":
//! 1. [`open_entry`], before anything is written: the signed host entry says
//!    which key its secrets are sealed to; a host whose key is another
//!    (re-keyed, or not the host the entry is for) is refused here. Then the
//!    sealed clear hashes are opened and put back into the manifest (the
//!    bundle shows only the ciphertexts' hashes).
//! 2. The ciphertext travels as an ordinary blob (hash-checked on arrival):
//!    [`redirect_missing`] asks for it instead of the clear content.
//! 3. [`open_received`], before the transition: each ciphertext is decrypted
//!    and checked against the clear hash, and only then stored as that blob
//!    (0600 in the private store, like any blob: the store needs it for exact
//!    rollback). The ciphertext is dropped.

use std::collections::HashMap;

use drover_bundle::seal::{self, HostIdentity, HOST_SSH_KEY};
use drover_bundle::{HostEntry, SealedClear};
use drover_proto::{EntryKind, Hash};

use crate::diff::Candidate;
use crate::layout::Layout;
use crate::{blobs, AgentError, Context, Result};

/// A sealed file once its clear hash is known: where it goes, what it must
/// hash to, and the ciphertext blob it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub path: String,
    pub clear: Hash,
    pub cipher: Hash,
    pub cipher_size: u64,
}

fn load_identity(layout: &Layout, host: &str) -> Result<HostIdentity> {
    HostIdentity::load(&layout.target(HOST_SSH_KEY)).map_err(|e| {
        AgentError::new(format!(
            "this bundle holds secrets sealed to host {host}'s SSH key, and this host's key cannot be read ({e})"
        ))
    })
}

/// Refuse an entry whose secrets are sealed to a key this host does not
/// have; otherwise put the sealed clear hashes (and template sources) back
/// into its manifest. Returns the entry, its sealed files and, when there
/// are any, the host's identity to open them with. Reads only.
pub fn open_entry(layout: &Layout, mut entry: HostEntry) -> Result<(HostEntry, Vec<Opened>, Option<HostIdentity>)> {
    if entry.sealed.is_empty() {
        return Ok((entry, vec![], None));
    }
    entry.validate_sealed().map_err(AgentError::new)?;
    let id = load_identity(layout, &entry.name)?;
    let sealed_to = entry.recipient.as_deref().unwrap_or_default();
    seal::check_recipient(&entry.name, sealed_to, &id.public).map_err(|e| AgentError::new(e.to_string()))?;
    let clear = id.open_clear(&entry.sealed_clear, &entry.name).map_err(|e| AgentError::new(e.to_string()))?;
    let by_path: HashMap<&str, &SealedClear> = clear.iter().map(|c| (c.path.as_str(), c)).collect();
    let mut opened = Vec::with_capacity(entry.sealed.len());
    for s in &entry.sealed {
        let c = by_path.get(s.path.as_str()).ok_or_else(|| {
            AgentError::new(format!("host {}: no sealed hash for {}; the bundle is damaged", entry.name, s.path))
        })?;
        opened.push(Opened { path: s.path.clone(), clear: c.hash, cipher: s.cipher, cipher_size: s.cipher_size });
    }
    let sealed: std::collections::HashSet<&str> = opened.iter().map(|o| o.path.as_str()).collect();
    for e in &mut entry.manifest.entries {
        let Some(c) = by_path.get(e.path.as_str()).filter(|_| sealed.contains(e.path.as_str())) else { continue };
        if let EntryKind::File { hash, .. } = &mut e.kind {
            *hash = c.hash;
        }
        e.source = c.source;
    }
    Ok((entry, opened, Some(id)))
}

/// The clear blobs a candidate lacks, with each sealed one replaced by its
/// ciphertext (and the ciphertext's size made known, so its chunks are
/// accepted). `repair` as in [`blobs::resume_from`].
pub fn redirect_missing(
    layout: &Layout,
    sealed: &[Opened],
    cand: &mut Candidate,
    missing: Vec<(Hash, u64)>,
    repair: bool,
) -> Vec<(Hash, u64)> {
    let by_clear: HashMap<Hash, &Opened> = sealed.iter().map(|s| (s.clear, s)).collect();
    let mut out = Vec::with_capacity(missing.len());
    for (h, have) in missing {
        match by_clear.get(&h) {
            // Received already (an earlier attempt): opened at `Apply`.
            Some(s) if blobs::has(layout, &s.cipher) => {}
            Some(s) => {
                cand.sizes.insert(s.cipher, s.cipher_size);
                out.extend(blobs::resume_from(layout, &s.cipher, s.cipher_size, repair).map(|have| (s.cipher, have)));
            }
            None => out.push((h, have)),
        }
    }
    out
}

/// Decrypt every received ciphertext whose clear content the store lacks,
/// check it against the clear hash, store it, drop the ciphertext. Any
/// failure stops before the transition.
pub fn open_received(layout: &Layout, host: &str, sealed: &[Opened]) -> Result<()> {
    let todo: Vec<&Opened> =
        sealed.iter().filter(|s| blobs::needs_transfer(layout, &s.clear) && blobs::has(layout, &s.cipher)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let id = load_identity(layout, host)?;
    for s in todo {
        let cipher = std::fs::read(layout.blob(&s.cipher)).ctx(|| format!("read sealed {}", s.path))?;
        let plain = id.open(&cipher, &s.clear, &s.path).map_err(|e| AgentError::new(e.to_string()))?;
        blobs::ingest(layout, &mut plain.as_slice(), &s.clear)?;
        let _ = std::fs::remove_file(layout.blob(&s.cipher));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_bundle::SealedEntry;
    use drover_proto::{Entry, Manifest};
    use std::os::unix::fs::PermissionsExt;

    fn h(b: &[u8]) -> Hash {
        Hash(*blake3::hash(b).as_bytes())
    }

    /// A host root with an SSH host key, and an entry for `/etc/x` holding
    /// `plain` (its sealed clear hash: `clear`'s), sealed to `sealed_to`
    /// (this host's key when `None`).
    fn setup_with(
        plain: &[u8],
        clear: &[u8],
        sealed_to: Option<&str>,
    ) -> (tempfile::TempDir, Layout, HostEntry, Vec<u8>) {
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
        let sealed_clear = seal::seal_clear(
            &recipient,
            &[SealedClear { path: "/etc/x".into(), hash: h(clear), source: Some(Hash([5; 32])) }],
        )
        .unwrap();
        let entry = HostEntry {
            manifest: Manifest {
                entries: vec![Entry {
                    path: "/etc/x".into(),
                    kind: EntryKind::File { size: plain.len() as u64, hash: h(&cipher) },
                    mode: 0o600,
                    owner: "root".into(),
                    group: "root".into(),
                    source: None,
                }],
                ..Default::default()
            },
            recipient: Some(recipient),
            sealed: vec![SealedEntry {
                path: "/etc/x".into(),
                names: vec!["db".into()],
                cipher: h(&cipher),
                cipher_size: cipher.len() as u64,
            }],
            sealed_clear,
            ..HostEntry::bare("h1", "10.0.0.1")
        };
        (dir, layout, entry, cipher)
    }

    fn setup(plain: &[u8], sealed_to: Option<&str>) -> (tempfile::TempDir, Layout, HostEntry, Vec<u8>) {
        setup_with(plain, plain, sealed_to)
    }

    #[test]
    fn the_ciphertext_is_asked_for_then_opened_into_a_private_blob() {
        let plain = b"password=s3cret\n";
        let (_d, layout, entry, cipher) = setup(plain, None);
        let (entry, opened, id) = open_entry(&layout, entry).unwrap();
        assert!(id.is_some());
        // The clear hash and the source are back in the manifest.
        let e = entry.manifest.entry("/etc/x").unwrap();
        assert_eq!(
            (&e.kind, e.source),
            (&EntryKind::File { size: plain.len() as u64, hash: h(plain) }, Some(Hash([5; 32])))
        );
        let want =
            Opened { path: "/etc/x".into(), clear: h(plain), cipher: h(&cipher), cipher_size: cipher.len() as u64 };
        assert_eq!(opened, vec![want]);
        let mut cand = Candidate {
            manifest: entry.manifest.clone(),
            generation: 1,
            wants: vec![],
            changes: vec![],
            restarts: vec![],
            sizes: HashMap::new(),
        };
        let other = h(b"plain");
        let missing = redirect_missing(&layout, &opened, &mut cand, vec![(h(plain), 0), (other, 3)], true);
        assert_eq!(missing, vec![(h(&cipher), 0), (other, 3)], "clear content asked for");
        assert_eq!(cand.sizes.get(&h(&cipher)), Some(&(cipher.len() as u64)));

        crate::fsops::private_dir(&layout.blobs()).unwrap();
        std::fs::write(layout.blob(&h(&cipher)), &cipher).unwrap();
        // Received already: nothing more to send.
        assert!(redirect_missing(&layout, &opened, &mut cand, vec![(h(plain), 0)], true).is_empty());
        open_received(&layout, "h1", &opened).unwrap();
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
        let e = open_entry(&layout, entry).unwrap_err().0;
        assert!(e.contains("sealed to host key") && e.contains(&seal::fingerprint(&foreign)), "{e}");

        let (_d, layout, entry, _) = setup(b"v", None);
        std::fs::remove_file(layout.target(HOST_SSH_KEY)).unwrap();
        let e = open_entry(&layout, entry).unwrap_err().0;
        assert!(e.contains("this host's key cannot be read") && e.contains(HOST_SSH_KEY), "{e}");

        // Sealed content that is not what the sealed clear hash says.
        let (_d, layout, entry, cipher) = setup_with(b"not v", b"v", None);
        let (_, opened, _) = open_entry(&layout, entry).unwrap();
        crate::fsops::private_dir(&layout.blobs()).unwrap();
        std::fs::write(layout.blob(&h(&cipher)), &cipher).unwrap();
        let e = open_received(&layout, "h1", &opened).unwrap_err().0;
        assert!(e.contains("/etc/x") && e.contains("does not match the signed manifest"), "{e}");
        assert!(!layout.blob(&h(b"v")).exists() && !layout.blob(&h(b"not v")).exists());
    }
}
