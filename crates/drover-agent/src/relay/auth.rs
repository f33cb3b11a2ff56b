//! Relay authentication: a challenge answered with a keyed hash, so the
//! per-run secret never crosses the relay network and an answer is good for
//! one connection only.
//!
//! ```text
//! server → client   DROVER-RELAY/2 <nonce: 32 hex>\n          fresh per connection
//! client → server   <blob hash hex> <offset> <mac: 64 hex>\n
//!                   mac = blake3-keyed(K, "drover-relay/2" nonce hash offset)
//!                   K   = blake3-derive-key("drover relay v2 auth key", secret)
//! ```
//!
//! The secret travels only inside SSH (`RelayServe`, `RelayFetch`). Someone
//! on the network sees nonces and MACs: a MAC names one nonce, one blob and
//! one offset, and the server never issues a nonce twice, so a captured
//! answer replayed on a new connection is refused.

use drover_proto::Hash;

pub const PROTO: &str = "DROVER-RELAY/2";
const CONTEXT: &str = "drover relay v2 auth key";

pub type Nonce = [u8; 16];

/// A fresh nonce from the kernel's CSPRNG.
pub fn nonce() -> crate::Result<Nonce> {
    let mut n = [0u8; 16];
    let mut got = 0;
    while got < n.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `n`,
        // which lives across the call; getrandom writes at most that many bytes.
        let r = unsafe { libc::getrandom(n[got..].as_mut_ptr().cast(), n.len() - got, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            crate::bail!("relay: getrandom: {e}");
        }
        got += usize::try_from(r).unwrap_or(0);
    }
    Ok(n)
}

/// The answer to `nonce` for a request of `blob` from `offset`.
pub fn mac(secret: &str, nonce: &Nonce, blob: &Hash, offset: u64) -> [u8; 32] {
    let key = blake3::derive_key(CONTEXT, secret.as_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(b"drover-relay/2\0");
    h.update(nonce);
    h.update(&blob.0);
    h.update(&offset.to_le_bytes());
    *h.finalize().as_bytes()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Constant-time equality (a MAC is compared against a secret-derived value).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_binds_secret_nonce_blob_and_offset() {
        let (n1, n2) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(n1, n2, "nonces repeat");
        let h = Hash([1; 32]);
        let m = mac("s3cret-s3cret-s3cret", &n1, &h, 0);
        assert_eq!(m, mac("s3cret-s3cret-s3cret", &n1, &h, 0));
        assert_ne!(m, mac("other-other-other-xx", &n1, &h, 0));
        assert_ne!(m, mac("s3cret-s3cret-s3cret", &n2, &h, 0));
        assert_ne!(m, mac("s3cret-s3cret-s3cret", &n1, &Hash([2; 32]), 0));
        assert_ne!(m, mac("s3cret-s3cret-s3cret", &n1, &h, 1));
        assert_eq!(unhex::<32>(&hex(&m)), Some(m));
        assert_eq!(unhex::<16>("zz"), None);
    }
}
