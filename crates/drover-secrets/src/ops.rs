//! What the `drover secret` verbs do (the command only parses and prints).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{io, SecretError};
use crate::keys::{default_identity_path, generate_identity, Recipients};
use crate::store::Store;

/// What `init` did.
pub struct InitReport {
    pub recipients: PathBuf,
    /// The recipient added to the project.
    pub recipient: String,
    /// The identity file generated, if one was (an existing one is reused).
    pub generated: Option<PathBuf>,
    pub identity: Option<PathBuf>,
}

/// Create `secrets/recipients.txt` with one recipient: the given SSH public
/// key, or else the operator's age key at `identity` (generated 0600 if it
/// does not exist yet). An existing recipients file is refused: adding
/// people is an edit plus `rekey`.
pub fn init(
    store: &Store,
    ssh_public_key: Option<&Path>,
    identity: Option<PathBuf>,
) -> Result<InitReport, SecretError> {
    let path = store.recipients_path();
    if path.exists() {
        return Err(SecretError::Exists(path));
    }
    let (recipient, generated, identity) = match ssh_public_key {
        Some(k) => {
            let text = std::fs::read_to_string(k).map_err(io(k))?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
            Recipients::parse(k, line)?;
            (line.to_string(), None, None)
        }
        None => {
            let id = identity.or_else(default_identity_path).ok_or(SecretError::NoHome)?;
            match std::fs::read_to_string(&id) {
                Ok(text) => {
                    let public = crate::keys::public_of(&text).ok_or_else(|| SecretError::BadIdentity {
                        path: id.clone(),
                        message: "holds no age key (AGE-SECRET-KEY-1…); pass --ssh-key FILE.pub instead".into(),
                    })?;
                    (public, None, Some(id))
                }
                Err(_) => {
                    let (text, public) = generate_identity();
                    let dir = id.parent().unwrap_or(Path::new("."));
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&id)
                        .map_err(io(&id))?;
                    f.write_all(text.as_bytes()).map_err(io(&id))?;
                    (public, Some(id.clone()), Some(id))
                }
            }
        }
    };
    let text = format!(
        "# Who can read this project's secrets: one age1… or ssh-ed25519 public key per line.\n\
         # After changing this file, run `drover secret rekey`.\n{recipient}\n"
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(InitReport { recipients: path, recipient, generated, identity })
}

/// Value of `drover secret set NAME`, read from stdin: one trailing newline
/// (as `echo` adds) is dropped; anything else is kept as is.
pub fn trim_one_newline(mut v: Vec<u8>) -> Vec<u8> {
    if v.ends_with(b"\n") {
        v.pop();
        if v.ends_with(b"\r") {
            v.pop();
        }
    }
    v
}

/// `drover secret set NAME`: write `secrets/NAME.age`.
pub fn set(store: &Store, name: &str, value: Zeroizing<Vec<u8>>) -> Result<PathBuf, SecretError> {
    let path = store.path_of(name)?;
    store.write(&path, &value)?;
    Ok(path)
}

/// `drover secret add-file SRC DEST`: encrypt a file (binary is fine) to
/// `DEST.age` (DEST relative to the project, e.g.
/// `layers/web/etc/ssl/private/site.key`). The source is left in place.
pub fn add_file(store: &Store, src: &Path, dest: &Path) -> Result<PathBuf, SecretError> {
    let bytes = Zeroizing::new(std::fs::read(src).map_err(io(src))?);
    let mut out = store.dir.join(dest).into_os_string();
    if !out.to_string_lossy().ends_with(".age") {
        out.push(".age");
    }
    let out = PathBuf::from(out);
    store.write(&out, &bytes)?;
    Ok(out)
}

/// Resolve `FILE` for `edit`: an existing path, or a secret's name.
pub fn resolve(store: &Store, file: &str) -> Result<PathBuf, SecretError> {
    let p = store.dir.join(file);
    if p.is_file() {
        return Ok(p);
    }
    let by_name = store.path_of(file)?;
    if by_name.is_file() {
        return Ok(by_name);
    }
    Err(SecretError::NotDefined(file.into()))
}

/// `drover secret edit FILE`: decrypt into a private temp file (0600 in a
/// 0700 directory, on `/dev/shm` when there is one so it never reaches a
/// disk), run `editor` on it, re-encrypt if it changed, then overwrite the
/// temp file with zeros and remove it, whatever the editor did. Returns
/// whether the secret changed. A new secret (no file yet) starts empty.
pub fn edit(store: &Store, path: &Path, editor: &str) -> Result<bool, SecretError> {
    let before = if path.exists() {
        Zeroizing::new(store.decrypt_file(path, &path.display().to_string())?.expose().to_vec())
    } else {
        Zeroizing::new(Vec::new())
    };
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = tempfile::Builder::new().prefix("drover-edit-").tempdir_in(&base).map_err(io(&base))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(io(dir.path()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().trim_end_matches(".age").to_string());
    let tmp = dir.path().join(name.unwrap_or_else(|| "secret".into()));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        f.write_all(&before).map_err(io(&tmp))?;
        drop(f);
        // The editor gets the file's path, never the value: `sh -c` only so
        // EDITOR may carry arguments ("code --wait").
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&tmp)
            .status()
            .map_err(io(&tmp))?;
        if !status.success() {
            return Err(SecretError::Editor(format!("{editor} exited with {status}; nothing changed")));
        }
        let after = Zeroizing::new(std::fs::read(&tmp).map_err(io(&tmp))?);
        if *after == *before {
            return Ok(false);
        }
        store.write(path, &after)?;
        Ok(true)
    })();
    wipe(&tmp);
    drop(dir);
    result
}

/// Overwrite a file with zeros (its whole length, synced) before removing
/// it, so the clear text is not left in freed blocks of a disk-backed temp.
fn wipe(path: &Path) {
    if let Ok(md) = std::fs::metadata(path) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let zeros = vec![0u8; 64 * 1024];
            let mut left = md.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                if f.write_all(&zeros[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
            let _ = f.sync_all();
        }
    }
    let _ = std::fs::remove_file(path);
}
