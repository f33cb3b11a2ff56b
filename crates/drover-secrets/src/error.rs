use std::path::PathBuf;

/// Why a secret could not be read or written. Messages name the file and
/// say what to do; none ever contains a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    BadRecipient { path: PathBuf, line: usize, message: String },
    #[error(
        "{0}: lists no recipients; add an age1… or ssh-ed25519 public key (one per line), or run `drover secret init`"
    )]
    NoRecipients(PathBuf),
    #[error("{0} does not exist: run `drover secret init` first (it says who can read the project's secrets)")]
    NoRecipientsFile(PathBuf),
    #[error("{path}: not a usable identity: {message}")]
    BadIdentity { path: PathBuf, message: String },
    #[error(
        "no identity can decrypt {what}: it is encrypted to {recipients}; tried {tried}. \
         Point DROVER_IDENTITY at a matching key (age identity file or unencrypted SSH ed25519 key), \
         or ask someone listed to add your key to secrets/recipients.txt and run `drover secret rekey`"
    )]
    NoMatchingIdentity { what: String, recipients: String, tried: String },
    #[error("{path}: cannot decrypt: {message}")]
    Decrypt { path: PathBuf, message: String },
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    #[error("secret name {0:?} is not allowed: use letters, digits and _ (it is used as secrets.NAME in templates)")]
    BadName(String),
    #[error("{0}: already exists; add recipients by editing it, then run `drover secret rekey`")]
    Exists(PathBuf),
    #[error(
        "no home directory to keep the generated identity in: set HOME, or pass --identity FILE or --ssh-key FILE.pub"
    )]
    NoHome,
    #[error("editor failed: {0}")]
    Editor(String),
    #[error("secret {0:?} is not defined; create it with `drover secret set {0}`")]
    NotDefined(String),
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SecretError {
    let path = path.into();
    move |source| SecretError::Io { path, source }
}
