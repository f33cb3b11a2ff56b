//! Signature checks with `minisign-verify` (pure Rust, no dependencies), so
//! the agent can verify too.
//!
//! Two signatures, both standard minisign (prehashed Ed25519), by the same key:
//! - the detached `<bundle>.minisig`, over the whole file: what `minisign
//!   -Vm` checks, and what `drover-agent install` and the controller check;
//! - the index signature embedded in the bundle, over the index bytes: what a
//!   host checks when a controller sends it a manifest from a bundle (the
//!   host does not have the whole file).

use std::path::Path;

use minisign_verify::{Error as MsError, Signature, StreamVerifier};

use crate::{BundleError, Result};

/// A minisign public key (`minisign.pub` file: an untrusted comment line and
/// the base64 key; or the base64 key alone).
pub struct PublicKey {
    inner: minisign_verify::PublicKey,
    source: String,
}

impl PublicKey {
    pub fn from_file(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    /// `source` names the key in messages (a path).
    pub fn parse(text: &str, source: &str) -> Result<PublicKey> {
        let bad = || BundleError::BadKey { path: source.into(), what: "not a minisign public key".into() };
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"));
        let inner = minisign_verify::PublicKey::from_base64(line.ok_or_else(bad)?).map_err(|_| bad())?;
        Ok(PublicKey { inner, source: source.into() })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

fn map_err(e: MsError, path: &Path, key: &PublicKey) -> BundleError {
    let path = path.display().to_string();
    match e {
        MsError::UnexpectedKeyId => BundleError::WrongKey { path, pubkey: key.source.clone() },
        MsError::InvalidEncoding => {
            BundleError::BadSignature { path, detail: "the signature file is not a minisign signature".into() }
        }
        MsError::UnexpectedAlgorithm | MsError::UnsupportedAlgorithm | MsError::UnsupportedLegacyMode => {
            BundleError::BadSignature { path, detail: "not a prehashed (minisign -S) signature".into() }
        }
        MsError::InvalidSignature => BundleError::BadSignature { path, detail: "Ed25519 check failed".into() },
        MsError::IoError(e) => BundleError::Io { path, err: e },
    }
}

pub(crate) fn parse_signature(text: &str, path: &Path, key: &PublicKey) -> Result<Signature> {
    Signature::decode(text).map_err(|e| map_err(e, path, key))
}

pub(crate) fn stream<'a>(key: &'a PublicKey, sig: &'a Signature, path: &Path) -> Result<StreamVerifier<'a>> {
    key.inner.verify_stream(sig).map_err(|e| map_err(e, path, key))
}

pub(crate) fn finish(mut v: StreamVerifier<'_>, path: &Path, key: &PublicKey) -> Result<()> {
    v.finalize().map_err(|e| map_err(e, path, key))
}

/// Check an embedded signature (the index's, or a host statement's):
/// `index` must be exactly the signed bytes. `what` names the bundle in
/// messages.
pub fn verify_index(index: &[u8], signature: Option<&str>, key: &PublicKey, what: &Path) -> Result<()> {
    let Some(text) = signature else { return Err(BundleError::Unsigned(what.display().to_string())) };
    let sig = parse_signature(text, what, key)?;
    key.inner.verify(index, &sig, false).map_err(|e| map_err(e, what, key))
}
