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
