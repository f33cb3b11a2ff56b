//! The project's encrypted files: `secrets/<NAME>.age` (named secrets) and
//! `layers/**.age` (encrypted layer files), all encrypted to
//! `secrets/recipients.txt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{io, SecretError};
use crate::keys::{Identities, Recipients};
use crate::value::Secret;

/// Names usable as `secrets.NAME` in a template (and as file names).
pub fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A project's secrets. Nothing is decrypted until asked for; each file is
/// decrypted at most once per `Store` (one run), so a thousand hosts using
/// one secret cost one decryption.
pub struct Store {
    pub dir: PathBuf,
    identities: OnceLock<Result<Arc<Identities>, String>>,
    cache: Mutex<HashMap<PathBuf, Arc<Secret>>>,
}

impl Store {
    /// The secrets of the project at `project_dir`; identities come from the
    /// environment when first needed ([`Identities::from_environment`]).
    pub fn new(project_dir: &Path) -> Store {
        Store { dir: project_dir.to_path_buf(), identities: OnceLock::new(), cache: Mutex::default() }
    }

    /// The same, decrypting with these identities.
    pub fn with_identities(project_dir: &Path, ids: Identities) -> Store {
        let s = Store::new(project_dir);
        let _ = s.identities.set(Ok(Arc::new(ids)));
        s
    }

    pub fn recipients_path(&self) -> PathBuf {
        self.dir.join("secrets").join("recipients.txt")
    }

    pub fn recipients(&self) -> Result<Recipients, SecretError> {
        Recipients::load(&self.recipients_path())
    }

    pub fn path_of(&self, name: &str) -> Result<PathBuf, SecretError> {
        if !is_secret_name(name) {
            return Err(SecretError::BadName(name.into()));
        }
        Ok(self.dir.join("secrets").join(format!("{name}.age")))
    }

    /// Names of the secrets in `secrets/`, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("secrets"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".age").map(str::to_owned))
            .filter(|n| is_secret_name(n))
            .collect();
        v.sort();
        v
    }

    /// Every encrypted file of the project: `secrets/*.age`,
    /// `layers/**.age` and `inventory.csv.age`, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&p, out),
                    Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "age") => out.push(p),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.join("secrets"), &mut out);
        walk(&self.dir.join("layers"), &mut out);
        let inventory = self.dir.join("inventory.csv.age");
        if inventory.is_file() {
            out.push(inventory);
        }
        out.sort();
        out
    }

    /// The secret `name` (`secrets/<name>.age`), decrypted.
    pub fn get(&self, name: &str) -> Result<Arc<Secret>, SecretError> {
        let path = self.path_of(name)?;
        if !path.is_file() {
            return Err(SecretError::NotDefined(name.into()));
        }
        self.decrypt_file(&path, name)
    }

    /// Any encrypted file, decrypted; `label` names it in messages and in
    /// the [`Secret`]'s redacted form.
    pub fn decrypt_file(&self, path: &Path, label: &str) -> Result<Arc<Secret>, SecretError> {
        if let Some(s) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            return Ok(s.clone());
        }
        let ids = self.identities()?;
        let armored = std::fs::read(path).map_err(io(path))?;
        let Some(plain) = ids.decrypt(path, &armored)? else {
            let recipients = match self.recipients() {
                Ok(r) => format!("{} (per {})", r.describe(), r.path.display()),
                Err(e) => format!("the project's recipients (unreadable: {e})"),
            };
            return Err(SecretError::NoMatchingIdentity {
                what: format!("secret {label} ({})", path.display()),
                recipients,
                tried: ids.describe_tried(),
            });
        };
        let s = Arc::new(Secret::new(label, plain));
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), s.clone());
        Ok(s)
    }

    fn identities(&self) -> Result<Arc<Identities>, SecretError> {
        match self.identities.get_or_init(|| Identities::from_environment().map(Arc::new).map_err(|e| e.to_string())) {
            Ok(i) => Ok(i.clone()),
            Err(m) => Err(SecretError::BadIdentity { path: "DROVER_IDENTITY".into(), message: m.clone() }),
        }
    }

    /// Encrypt `plain` to the project's recipients and write it to `path`
    /// (armored, atomically: a temp file beside it, then rename).
    pub fn write(&self, path: &Path, plain: &[u8]) -> Result<(), SecretError> {
        let text = self.recipients()?.encrypt(plain)?;
        write_atomic(path, text.as_bytes())
    }

    /// Re-encrypt every encrypted file to the current recipients. All files
    /// are decrypted first, so a file this operator cannot read stops the
    /// rekey before anything is rewritten. Returns the files rewritten.
    pub fn rekey(&self) -> Result<Vec<PathBuf>, SecretError> {
        let recipients = self.recipients()?;
        let files = self.files();
        let mut plain = Vec::with_capacity(files.len());
        for f in &files {
            plain.push(self.decrypt_file(f, &f.display().to_string())?);
        }
        for (f, s) in files.iter().zip(&plain) {
            write_atomic(f, recipients.encrypt(s.expose())?.as_bytes())?;
        }
        Ok(files)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.persist(path).map_err(|e| SecretError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let (id, public) = crate::generate_identity();
        std::fs::create_dir_all(d.path().join("secrets")).unwrap();
        std::fs::write(d.path().join("secrets/recipients.txt"), format!("{public}\n")).unwrap();
        std::fs::write(d.path().join("id.txt"), id.as_bytes()).unwrap();
        let ids = Identities::from_paths(&[d.path().join("id.txt")], true).unwrap();
        let s = Store::with_identities(d.path(), ids);
        (d, s)
    }

    #[test]
    fn a_secret_round_trips_armored_and_a_stranger_cannot_read_it() {
        let (d, s) = project();
        let p = s.path_of("db").unwrap();
        s.write(&p, b"hunter2").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{text}");
        assert!(!text.contains("hunter2"));
        assert_eq!(s.get("db").unwrap().expose(), b"hunter2");
        assert_eq!(s.names(), vec!["db".to_string()]);

        let (other, _) = crate::generate_identity();
        std::fs::write(d.path().join("other.txt"), other.as_bytes()).unwrap();
        let stranger =
            Store::with_identities(d.path(), Identities::from_paths(&[d.path().join("other.txt")], true).unwrap());
        let e = stranger.get("db").unwrap_err().to_string();
        assert!(e.contains("secret db") && e.contains("age1") && e.contains("recipients.txt"), "{e}");
        assert!(matches!(s.get("nope"), Err(SecretError::NotDefined(_))));
    }

    #[test]
    fn bad_recipient_lines_name_the_file_and_line() {
        let e = Recipients::parse(Path::new("secrets/recipients.txt"), "# me\nage1zzz\n").err().unwrap().to_string();
        assert!(e.starts_with("secrets/recipients.txt:2:"), "{e}");
        let e = Recipients::parse(Path::new("r.txt"), "# nobody\n").err().unwrap().to_string();
        assert!(e.contains("no recipients"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = Store::new(d.path()).write(&d.path().join("secrets/x.age"), b"v").unwrap_err().to_string();
        assert!(e.contains("recipients.txt does not exist") && e.contains("drover secret init"), "{e}");
    }
}
