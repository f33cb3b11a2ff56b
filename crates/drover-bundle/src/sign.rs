//! Key generation and signing (controller only: the `sign` feature).
//!
//! Keys are minisign's own formats, so `minisign -G` keys work here and keys
//! made here work with `minisign`. `keygen` writes an unencrypted secret key
//! (mode 0600), like `minisign -G -W`; encrypted keys (`minisign -G`) are
//! accepted by `sign`, which asks for the password, or reads it from
//! `DROVER_BUNDLE_KEY_PASSWORD`.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey as MsPublicKey, SecretKey, SecretKeyBox};

use crate::format::Trailer;
use crate::statement::{HostStatement, Signatures};
use crate::{sig_path, Bundle, BundleError, Result};

/// Environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "DROVER_BUNDLE_KEY_PASSWORD";

fn ms_err(path: &Path, e: minisign::PError) -> BundleError {
    BundleError::BadKey { path: path.display().to_string(), what: e.to_string() }
}

/// Create a key pair. Refuses to overwrite an existing secret key.
pub fn keygen(secret: &Path, public: &Path) -> Result<()> {
    let kp = KeyPair::generate_unencrypted_keypair().map_err(|e| ms_err(secret, e))?;
    let sk = kp.sk.to_box(Some("drover bundle signing key")).map_err(|e| ms_err(secret, e))?.into_string();
    let pk = kp.pk.to_box().map_err(|e| ms_err(public, e))?.into_string();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret)
        .map_err(|e| BundleError::io(secret, e))?;
    f.write_all(sk.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| BundleError::io(secret, e))?;
    write_atomic(public, pk.as_bytes())
}

fn load_secret(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).map_err(|e| BundleError::io(path, e))?;
    let sbox = SecretKeyBox::from_string(&text).map_err(|e| ms_err(path, e))?;
    if let Ok(sk) = sbox.clone().into_unencrypted_secret_key() {
        if !sk.is_encrypted() {
            return Ok(sk);
        }
    }
    // `minisign -G -W` (the C tool) writes unencrypted keys whose checksum the
    // Rust crate does not accept; the key material is plain, so take it as is.
    if let Some(sk) = plain_key(&text) {
        return Ok(sk);
    }
    // Encrypted: password from the environment, else minisign prompts.
    let password = std::env::var(PASSWORD_ENV).ok();
    sbox.into_secret_key(password).map_err(|e| ms_err(path, e))
}

/// An unencrypted minisign secret key (KDF "none"), read without its checksum.
fn plain_key(text: &str) -> Option<SecretKey> {
    use ct_codecs::{Base64, Decoder};
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    let bytes = Base64::decode_to_vec(line, None).ok()?;
    // sig_alg "Ed", then kdf_alg: [0, 0] means not encrypted.
    if bytes.get(..4)? != b"Ed\0\0" {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok().filter(|sk| !sk.is_encrypted())
}

/// Sign `bundle` with the secret key at `key`: embed the index signature and
/// one signature per host statement in the bundle (replacing earlier ones),
/// then write the detached signature of the whole file to `<bundle>.minisig`.
/// Returns that path.
pub fn sign(bundle: &Path, key: &Path) -> Result<PathBuf> {
    let sk = load_secret(key)?;
    let pk = MsPublicKey::from_secret_key(&sk).map_err(|e| ms_err(key, e))?;
    let b = Bundle::open(bundle)?;
    let t = b.trailer();
    let tc =
        format!("drover-bundle-index {} project:{} revision:{}", b.index_hash(), b.index.project, b.index.revision);
    let isig = minisign::sign(Some(&pk), &sk, b.index_bytes(), Some(&tc), Some("drover bundle index signature"))
        .map_err(|e| ms_err(key, e))?
        .into_string();
    // One signature per host over its statement (its own entry, bound to
    // this index), so a host can be sent its entry alone: see `statement`.
    let mut hosts = Vec::with_capacity(b.index.hosts.len());
    for h in &b.index.hosts {
        let bytes = HostStatement::encode(&b.index, b.index_hash(), h);
        let tc = format!("drover-host {} index {} project:{}", h.name, b.index_hash(), b.index.project);
        let sig = minisign::sign(Some(&pk), &sk, &bytes[..], Some(&tc), Some("drover host statement signature"))
            .map_err(|e| ms_err(key, e))?
            .into_string();
        hosts.push((h.name.clone(), sig));
    }
    hosts.sort();
    let area = Signatures { index: isig, hosts }.encode();
    let file_tc = format!(
        "timestamp:{}\tfile:{}\tprehashed\tproject:{}\trevision:{}",
        now_s(),
        bundle.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        b.index.project,
        b.index.revision
    );
    drop(b);

    let index_end = t.index_off + t.index_len;
    let mut f = OpenOptions::new().write(true).open(bundle).map_err(|e| BundleError::io(bundle, e))?;
    let nt = Trailer { sig_off: index_end, sig_len: area.len() as u64, ..t };
    let io = |e| BundleError::io(bundle, e);
    f.set_len(index_end).map_err(io)?;
    f.seek(SeekFrom::Start(index_end)).map_err(io)?;
    f.write_all(&area).map_err(io)?;
    f.write_all(&nt.encode()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);

    let f = File::open(bundle).map_err(io)?;
    let sig = minisign::sign(Some(&pk), &sk, BufReader::with_capacity(1 << 20, f), Some(&file_tc), None)
        .map_err(|e| ms_err(key, e))?
        .into_string();
    let out = sig_path(bundle);
    write_atomic(&out, sig.as_bytes())?;
    Ok(out)
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| BundleError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BundleError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Index, Settings};
    use crate::verify::verify_index;
    use crate::{BlobInput, PublicKey, Writer};
    use drover_proto::Hash;

    fn index() -> Index {
        Index {
            created_ms: 1,
            project: "p".into(),
            revision: "r".into(),
            base: None,
            agents: vec![],
            settings: Settings { confirm_timeout_ms: 0, parallel: 1, connect_timeout_ms: 1 },
            hosts: vec![],
            blobs: vec![],
            external: vec![],
        }
    }

    fn h(b: &[u8]) -> Hash {
        Hash(*blake3::hash(b).as_bytes())
    }

    #[test]
    fn build_sign_verify_and_refuse_tampering() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.drv");
        let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut w = Writer::create(&p).unwrap();
        assert!(w.add(h(b"small"), BlobInput::Bytes(b"small")).unwrap());
        assert!(!w.add(h(b"small"), BlobInput::Bytes(b"small")).unwrap(), "dedup");
        assert!(w.add(h(&big), BlobInput::Bytes(&big)).unwrap());
        assert!(w.add(h(b"x"), BlobInput::Bytes(b"y")).is_err(), "hash mismatch accepted");
        w.finish(index()).unwrap();

        let (sk, pk) = (d.path().join("k.key"), d.path().join("k.pub"));
        keygen(&sk, &pk).unwrap();
        assert!(keygen(&sk, &pk).is_err(), "overwrote a key");
        let sig = sign(&p, &sk).unwrap();
        let key = PublicKey::from_file(&pk).unwrap();
        let b = Bundle::open_verified(&p, &sig, &key).unwrap();
        verify_index(b.index_bytes(), b.index_signature(), &key, &p).unwrap();
        let e = b.blob(&h(&big)).unwrap().clone();
        assert_eq!(e.chunks.len(), 4);
        let mut out = Vec::new();
        b.extract(&e, &mut out).unwrap();
        assert_eq!(out, big);
        // Resume mid-chunk: the rest, recompressed, at the right offset.
        let rest: Vec<(u64, Vec<u8>)> = b.packed_chunks(&e, (1 << 20) + 7).map(|c| c.unwrap()).collect();
        assert_eq!(rest[0].0, (1 << 20) + 7);
        assert_eq!(zstd::decode_all(&rest[0].1[..]).unwrap(), big[(1 << 20) + 7..2 << 20]);
        assert_eq!(rest.len(), 3);
        drop(b);

        // Signing again replaces the embedded signature (no growth).
        let len = std::fs::metadata(&p).unwrap().len();
        sign(&p, &sk).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len);

        // Another key: refused as such.
        let (sk2, pk2) = (d.path().join("o.key"), d.path().join("o.pub"));
        keygen(&sk2, &pk2).unwrap();
        let other = PublicKey::from_file(&pk2).unwrap();
        assert!(matches!(Bundle::open_verified(&p, &sig, &other), Err(BundleError::WrongKey { .. })));

        // One flipped byte in a blob, or a truncated file: bad signature.
        let orig = std::fs::read(&p).unwrap();
        let mut bad = orig.clone();
        bad[100] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(Bundle::open_verified(&p, &sig, &key), Err(BundleError::BadSignature { .. })));
        std::fs::write(&p, &orig[..orig.len() - 10]).unwrap();
        assert!(matches!(Bundle::open_verified(&p, &sig, &key), Err(BundleError::BadSignature { .. })));
        assert!(matches!(Bundle::open(&p), Err(BundleError::Truncated(_))));
    }

    fn host(name: &str) -> crate::HostEntry {
        crate::HostEntry {
            host_keys: vec![format!("ssh-ed25519 AAAA-{name}")],
            ..crate::HostEntry::bare(name, &format!("10.1.{}.{}", name.len(), name.len()))
        }
    }

    /// Each host gets its own entry alone, signed: the bytes it receives do
    /// not grow with the fleet and name no other host; a statement moved to
    /// another host, or altered, fails its signature.
    #[test]
    fn host_statements_are_per_host_small_and_signed() {
        let d = tempfile::tempdir().unwrap();
        let (sk, pk) = (d.path().join("k.key"), d.path().join("k.pub"));
        keygen(&sk, &pk).unwrap();
        let key = PublicKey::from_file(&pk).unwrap();
        let mut sizes = Vec::new();
        for n in [2usize, 2000] {
            let p = d.path().join(format!("b{n}.drv"));
            let mut idx = index();
            idx.hosts = (0..n).map(|i| host(&format!("h{i:05}"))).collect();
            Writer::create(&p).unwrap().finish(idx).unwrap();
            sign(&p, &sk).unwrap();
            let b = Bundle::open(&p).unwrap();
            b.verify_embedded(&key).unwrap();
            let (bytes, sig) = b.host_statement("h00001").unwrap();
            verify_index(&bytes, Some(sig), &key, &p).unwrap();
            let st = crate::HostStatement::decode(&bytes).unwrap();
            assert_eq!((st.host.name.as_str(), st.index), ("h00001", b.index_hash()));
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("h00000") && !text.contains("AAAA-h00000"), "another host disclosed");
            sizes.push(bytes.len() + sig.len());
            // h00000's signature does not cover h00001's statement.
            let (_, other_sig) = b.host_statement("h00000").unwrap();
            assert!(verify_index(&bytes, Some(other_sig), &key, &p).is_err(), "statement moved to another host");
            let mut altered = bytes.clone();
            let last = altered.len() - 1;
            altered[last] ^= 1;
            assert!(verify_index(&altered, Some(sig), &key, &p).is_err(), "altered statement accepted");
        }
        assert_eq!(sizes[0], sizes[1], "what one host receives grows with the fleet: {sizes:?}");
        assert!(sizes[0] < 2048, "{sizes:?}");
    }
}
