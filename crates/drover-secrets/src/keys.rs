//! Who may read the project's secrets (recipients) and what this operator
//! can decrypt with (identities).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use crate::error::{io, SecretError};

/// The parsed `secrets/recipients.txt`: one public key per line, `#`
/// comments and blank lines ignored. The text of each line is kept to name
/// the recipients in messages.
pub struct Recipients {
    pub path: PathBuf,
    keys: Vec<(String, Box<dyn age::Recipient + Send + Sync>)>,
}

impl Recipients {
    pub fn load(path: &Path) -> Result<Recipients, SecretError> {
        let text = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::NoRecipientsFile(path.to_path_buf()))
            }
            r => r.map_err(io(path))?,
        };
        Recipients::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Recipients, SecretError> {
        let mut keys: Vec<(String, Box<dyn age::Recipient + Send + Sync>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| SecretError::BadRecipient { path: path.to_path_buf(), line: i + 1, message };
            if line.starts_with("age1") {
                let r = age::x25519::Recipient::from_str(line)
                    .map_err(|e| bad(format!("not an age X25519 recipient: {e}")))?;
                keys.push((line.to_string(), Box::new(r)));
            } else if line.starts_with("ssh-ed25519 ") {
                let r = age::ssh::Recipient::from_str(line)
                    .map_err(|e| bad(format!("not a usable SSH public key: {e:?}")))?;
                keys.push((line.to_string(), Box::new(r)));
            } else {
                return Err(bad("expected an age recipient (age1…) or an SSH public key (ssh-ed25519 AAAA…)".into()));
            }
        }
        if keys.is_empty() {
            return Err(SecretError::NoRecipients(path.to_path_buf()));
        }
        Ok(Recipients { path: path.to_path_buf(), keys })
    }

    /// The recipients as written (an SSH key's comment included), for messages.
    pub fn describe(&self) -> String {
        self.keys.iter().map(|(t, _)| short(t)).collect::<Vec<_>>().join(", ")
    }

    pub(crate) fn encrypt(&self, plain: &[u8]) -> Result<String, SecretError> {
        use std::io::Write;
        let enc = age::Encryptor::with_recipients(self.keys.iter().map(|(_, r)| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| SecretError::Encrypt(e.to_string()))?;
        let armor = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor)
            .map_err(|e| SecretError::Encrypt(e.to_string()))?;
        let mut w = enc.wrap_output(armor).map_err(|e| SecretError::Encrypt(e.to_string()))?;
        w.write_all(plain).map_err(|e| SecretError::Encrypt(e.to_string()))?;
        let out = w.finish().and_then(|a| a.finish()).map_err(|e| SecretError::Encrypt(e.to_string()))?;
        String::from_utf8(out).map_err(|e| SecretError::Encrypt(e.to_string()))
    }
}

/// `age1abc…xyz` / `ssh-ed25519 AAAA…xyz comment`: enough to recognise a key.
fn short(t: &str) -> String {
    let mut parts = t.split_whitespace();
    let first = parts.next().unwrap_or_default();
    let (kind, key) =
        if first == "ssh-ed25519" { ("ssh-ed25519 ", parts.next().unwrap_or_default()) } else { ("", first) };
    let key = if key.len() > 20 { format!("{}…{}", &key[..12], &key[key.len() - 6..]) } else { key.to_string() };
    let comment: Vec<&str> = parts.collect();
    if comment.is_empty() {
        format!("{kind}{key}")
    } else {
        format!("{kind}{key} ({})", comment.join(" "))
    }
}

/// The identities this operator decrypts with, and where they came from.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Every file looked at, found or not, for the "no identity" message.
    pub tried: Vec<PathBuf>,
}

/// `$XDG_CONFIG_HOME/drover/identity.txt` (or `~/.config/drover/…`): where
/// `drover secret init` keeps the age key it generates.
pub fn default_identity_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("drover").join("identity.txt"))
}

impl Identities {
    /// `DROVER_IDENTITY` (a file, or several separated by `:`) if set;
    /// otherwise the generated key at [`default_identity_path`] and
    /// `~/.ssh/id_ed25519`, each if it exists.
    pub fn from_environment() -> Result<Identities, SecretError> {
        let paths: Vec<PathBuf> = match std::env::var_os("DROVER_IDENTITY").filter(|v| !v.is_empty()) {
            Some(v) => std::env::split_paths(&v).collect(),
            None => default_identity_path()
                .into_iter()
                .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519")))
                .collect(),
        };
        let explicit = std::env::var_os("DROVER_IDENTITY").is_some_and(|v| !v.is_empty());
        Identities::from_paths(&paths, explicit)
    }

    /// Load each file; a missing file is an error only when `required`.
    pub fn from_paths(paths: &[PathBuf], required: bool) -> Result<Identities, SecretError> {
        let mut keys = Vec::new();
        for p in paths {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => return Err(SecretError::Io { path: p.clone(), source: e }),
            };
            keys.extend(parse_identity(p, &text)?);
        }
        Ok(Identities { keys, tried: paths.to_vec() })
    }

    pub(crate) fn decrypt(&self, path: &Path, armored: &[u8]) -> Result<Option<Vec<u8>>, SecretError> {
        use std::io::Read;
        let bad = |m: String| SecretError::Decrypt { path: path.to_path_buf(), message: m };
        let dec = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(armored))
            .map_err(|e| bad(format!("{e} (is it an age file?)")))?;
        match dec.decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)) {
            Ok(mut r) => {
                let mut out = Vec::new();
                r.read_to_end(&mut out).map_err(|e| bad(e.to_string()))?;
                Ok(Some(out))
            }
            Err(age::DecryptError::NoMatchingKeys) => Ok(None),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    pub fn describe_tried(&self) -> String {
        if self.tried.is_empty() {
            return "no identity file (set DROVER_IDENTITY)".into();
        }
        self.tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

fn parse_identity(path: &Path, text: &str) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, SecretError> {
    let bad = |m: String| SecretError::BadIdentity { path: path.to_path_buf(), message: m };
    if text.trim_start().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let id = age::ssh::Identity::from_buffer(BufReader::new(text.as_bytes()), Some(path.display().to_string()))
            .map_err(|e| bad(e.to_string()))?;
        return match id {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(id)]),
            age::ssh::Identity::Encrypted(_) => {
                Err(bad("the SSH key is passphrase-protected; drover cannot prompt for it here: use an age identity \
                 (`drover secret init` generates one) or an unencrypted key"
                    .into()))
            }
            age::ssh::Identity::Unsupported(_) => Err(bad("unsupported SSH key type (use ed25519)".into())),
        };
    }
    // An age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments.
    let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
    for (i, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| bad(format!("line {}: expected AGE-SECRET-KEY-1… or an OpenSSH private key", i + 1)))?;
        out.push(Box::new(id));
    }
    if out.is_empty() {
        return Err(bad("holds no key".into()));
    }
    Ok(out)
}

/// Generate an age X25519 identity; returns (identity file text, recipient).
/// The caller writes the identity 0600.
pub fn generate_identity() -> (zeroize::Zeroizing<String>, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!("# drover identity; public key: {public}\n{}\n", id.to_string().expose_secret());
    (zeroize::Zeroizing::new(text), public)
}

/// The recipient of the first age key in an identity file's text.
pub fn public_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| age::x25519::Identity::from_str(l).ok())
        .map(|id| id.to_public().to_string())
}
