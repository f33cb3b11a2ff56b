//! `drover secret`: the project's age-encrypted secrets (docs/secrets.md).
//! Parsing and printing only; the work is in `drover_secrets::ops`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use drover_secrets::{ops, Store};
use zeroize::Zeroizing;

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Create secrets/recipients.txt with your key: an SSH ed25519 public key
    /// (--ssh-key), or an age key generated in ~/.config/drover/identity.txt.
    Init {
        /// Use this SSH public key (e.g. ~/.ssh/id_ed25519.pub) as the recipient.
        #[arg(long, value_name = "FILE.pub")]
        ssh_key: Option<PathBuf>,
        /// Where to keep (or find) the generated age identity.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Encrypt a value to secrets/NAME.age (from stdin, or a prompt on a terminal).
    Set { name: String },
    /// Decrypt a secret to a private temp file, open $EDITOR, re-encrypt, wipe.
    Edit {
        /// A secret's name, or an encrypted file's path in the project.
        file: String,
    },
    /// Encrypt a file (binary is fine) to DEST.age, e.g. a TLS key into a layer.
    AddFile {
        src: PathBuf,
        /// Project-relative destination, e.g. layers/web/etc/ssl/private/site.key.
        dest: PathBuf,
    },
    /// Re-encrypt every encrypted file to the recipients now listed.
    Rekey,
    /// List the project's secrets and encrypted files (names only).
    List,
}

pub fn run(dir: &Path, args: SecretArgs) -> anyhow::Result<ExitStatus> {
    let store = Store::new(dir);
    match args.command {
        SecretCommand::Init { ssh_key, identity } => {
            let r = ops::init(&store, ssh_key.as_deref(), identity)?;
            if let Some(g) = &r.generated {
                println!("generated an age identity in {} (keep it safe: it decrypts this project)", g.display());
            } else if let Some(i) = &r.identity {
                println!("using the age identity in {}", i.display());
            }
            println!("{}: {}", r.recipients.display(), r.recipient);
        }
        SecretCommand::Set { name } => {
            let value = if std::io::stdin().is_terminal() {
                Zeroizing::new(rpassword::prompt_password(format!("value of {name}: "))?.into_bytes())
            } else {
                let mut v = Vec::new();
                std::io::stdin().read_to_end(&mut v)?;
                Zeroizing::new(ops::trim_one_newline(v))
            };
            let p = ops::set(&store, &name, value)?;
            println!("{}", p.display());
        }
        SecretCommand::Edit { file } => {
            let path = match ops::resolve(&store, &file) {
                Ok(p) => p,
                Err(drover_secrets::SecretError::NotDefined(_)) => store.path_of(&file)?,
                Err(e) => return Err(e.into()),
            };
            let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
            let changed = ops::edit(&store, &path, &editor)?;
            println!("{}: {}", path.display(), if changed { "re-encrypted" } else { "unchanged" });
        }
        SecretCommand::AddFile { src, dest } => {
            let out = ops::add_file(&store, &src, &dest)?;
            println!("{} (the clear-text {} is still there: delete it once done)", out.display(), src.display());
        }
        SecretCommand::Rekey => {
            for f in store.rekey()? {
                println!("{}", f.strip_prefix(dir).unwrap_or(&f).display());
            }
        }
        SecretCommand::List => {
            for n in store.names() {
                println!("{n:<24} secrets/{n}.age");
            }
            for f in store.files() {
                let rel = f.strip_prefix(dir).unwrap_or(&f);
                if !rel.starts_with("secrets") {
                    println!("{:<24} {}", "(encrypted file)", rel.display());
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}
