//! Expected SSH host-key fingerprints (`drover trust --expect FILE`).
//!
//! `drover trust` learns a host's key over the network, so on its own it
//! trusts whoever answers at that address the first time. An operator who can
//! get the fingerprints another way (the provider's console, `ssh-keygen -lf
//! /etc/ssh/ssh_host_ed25519_key.pub` on the host's own console) writes them
//! into a file, and `trust` pins only keys that match it.
//!
//! The format, one host per line (a host may have several lines, one per key
//! type):
//!
//! ```text
//! # comments and blank lines are ignored
//! h1          SHA256:8v2Qh3...    # name as in the inventory
//! 10.0.0.12   SHA256:Zp1c0...     # or its address
//! ```
//!
//! The fingerprint is OpenSSH's (`SHA256:` and unpadded base64), exactly what
//! `ssh-keygen -l` and `drover trust` print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "{path}:{line}: {what}; expected `HOST SHA256:…` (the fingerprint `ssh-keygen -lf` prints for the host key)"
    )]
    Syntax { path: PathBuf, line: usize, what: String },
}

/// One expected fingerprint and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub fingerprint: String,
    pub line: usize,
}

/// The expected fingerprints, by host name or address.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    pub path: PathBuf,
    by_host: BTreeMap<String, Vec<Pin>>,
}

/// What the file says about one scanned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key's fingerprint is listed for this host.
    Match,
    /// The host is listed, with other fingerprints only.
    Mismatch { expected: Vec<Pin> },
    /// Neither the host's name nor its address is in the file.
    Missing,
}

impl Pins {
    pub fn load(path: &Path) -> Result<Pins, PinsError> {
        let text = std::fs::read_to_string(path).map_err(|err| PinsError::Io { path: path.into(), err })?;
        Pins::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Pins, PinsError> {
        let mut pins = Pins { path: path.into(), by_host: BTreeMap::new() };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |what: String| PinsError::Syntax { path: path.into(), line, what };
            let content = raw.split_once('#').map_or(raw, |(c, _)| c).trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [host, fp] = fields[..] else {
                return Err(err(format!("{} fields", fields.len())));
            };
            if !valid_fingerprint(fp) {
                return Err(err(format!("{fp:?} is not a SHA256 fingerprint")));
            }
            pins.by_host.entry(host.to_string()).or_default().push(Pin { fingerprint: fp.to_string(), line });
        }
        Ok(pins)
    }

    /// Judge `fingerprint`, the key `name` (at `address`) presented.
    pub fn check(&self, name: &str, address: &str, fingerprint: &str) -> Verdict {
        let expected: Vec<Pin> =
            [name, address].iter().filter_map(|k| self.by_host.get(*k)).flatten().cloned().collect();
        if expected.is_empty() {
            Verdict::Missing
        } else if expected.iter().any(|p| p.fingerprint == fingerprint) {
            Verdict::Match
        } else {
            Verdict::Mismatch { expected }
        }
    }

    /// The refusal for a verdict other than `Match`, naming the file and the fix.
    pub fn refusal(&self, name: &str, fingerprint: &str, v: &Verdict) -> Option<String> {
        let file = self.path.display();
        match v {
            Verdict::Match => None,
            Verdict::Missing => Some(format!(
                "{name}: not pinned: {file} has no fingerprint for this host (presented {fingerprint}); \
                 add a line `{name} SHA256:…` with the fingerprint from the host's console"
            )),
            Verdict::Mismatch { expected } => {
                let want: Vec<String> =
                    expected.iter().map(|p| format!("{} ({file}:{})", p.fingerprint, p.line)).collect();
                Some(format!(
                    "{name}: not pinned: presented {fingerprint}, which does NOT match the expected {}; \
                     the connection may be intercepted, or the host was reinstalled (then update {file})",
                    want.join(" or ")
                ))
            }
        }
    }
}

/// `SHA256:` then 43 characters of unpadded base64 (a 32-byte digest).
fn valid_fingerprint(fp: &str) -> bool {
    fp.strip_prefix("SHA256:")
        .is_some_and(|b| b.len() == 43 && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "SHA256:8v2Qh3nKq1Jq0W0m7b2iYqB0n2vF1i1mXr1S2mQy3Yw";
    const B: &str = "SHA256:Zp1c0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn parses_names_addresses_comments_and_judges() {
        let text = format!("# pins\n\nh1 {A}   # console\n10.0.0.12\t{B}\n");
        let p = Pins::parse(&text, Path::new("fp.txt")).unwrap();
        assert_eq!(p.check("h1", "10.0.0.11", A), Verdict::Match);
        assert_eq!(p.check("h2", "10.0.0.12", B), Verdict::Match, "by address");
        assert_eq!(p.check("h3", "10.0.0.13", A), Verdict::Missing);
        let v = p.check("h1", "10.0.0.11", B);
        assert_eq!(v, Verdict::Mismatch { expected: vec![Pin { fingerprint: A.into(), line: 3 }] });
        let msg = p.refusal("h1", B, &v).unwrap();
        assert!(msg.contains("does NOT match") && msg.contains("fp.txt:3"), "{msg}");
        assert!(p.refusal("h3", A, &Verdict::Missing).unwrap().contains("no fingerprint for this host"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, what) in [("h1\n", "1 fields"), (format!("h1 {A}\nh2 MD5:ab\n").as_str(), "not a SHA256")] {
            let e = Pins::parse(text, Path::new("fp.txt")).unwrap_err().to_string();
            assert!(e.contains(what) && e.starts_with("fp.txt:"), "{e}");
        }
        let e = Pins::parse("h1 SHA256:short\n", Path::new("x")).unwrap_err().to_string();
        assert!(e.starts_with("x:1:"), "{e}");
        let e = Pins::load(Path::new("/nonexistent/fp.txt")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/fp.txt: "), "{e}");
    }
}
