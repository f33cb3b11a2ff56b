//! Project secrets: age-encrypted, one text-armored file per secret. A
//! leaf: it must not import the spec, the controller or the agent (they
//! import it).
//!
//! A project's `secrets/recipients.txt` lists who can read its secrets (age
//! X25519 recipients `age1…`, or SSH `ssh-ed25519` public keys, so an operator
//! can use the key they already have). `secrets/<NAME>.age` holds one secret;
//! any `layers/**.age` file is an encrypted layer file. One file per secret
//! keeps git diffs to the secret that changed.
//!
//! Clear text only ever lives in a [`Secret`], which redacts itself in
//! `Debug`/`Display` and is zeroised on drop: a stray `{:?}` in a log line or
//! an error prints `<secret NAME>`, never the value.

mod error;
mod keys;
pub mod ops;
mod store;
mod value;

pub use error::SecretError;
pub use keys::{default_identity_path, generate_identity, Identities, Recipients};
pub use store::{is_secret_name, Store};
pub use value::Secret;
