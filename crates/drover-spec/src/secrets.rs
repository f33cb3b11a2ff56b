//! Secrets in compilation: `secrets.NAME` in templates and `*.age` layer
//! files (docs/secrets.md).
//!
//! Which templates read which secrets is known from their text at load, so
//! a secret referenced but not defined stops `Project::load` with the
//! template's file and line, and the files that hold a secret get 0600 and
//! are marked before any host is contacted. Values are decrypted only when a
//! host's compile needs them (once per run: the store caches), so commands
//! that render nothing never ask for a key; without one, the preflight
//! compile fails naming the secret and its recipients, before any host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use drover_secrets::{Secret, SecretError, Store};

use crate::diag::SpecError;
use crate::render::Templates;

/// The mode of a file holding a secret when the role does not set one.
pub const SECRET_MODE: u32 = 0o600;

/// Every secret a template names must exist as `secrets/NAME.age`.
pub fn check_defined<'a>(
    templates: &Templates,
    names: impl Iterator<Item = &'a String>,
    store: &Store,
) -> Result<(), SpecError> {
    let defined: BTreeSet<String> = store.names().into_iter().collect();
    let mut errors = Vec::new();
    for t in names {
        let Some(refs) = templates.secret_refs(t) else { continue };
        for name in refs.iter().filter(|n| *n != "*" && !defined.contains(*n)) {
            let src = templates.source(t).unwrap_or_default();
            let needle = format!("secrets.{name}");
            let at = src.find(&needle).map_or(0..0, |i| i..i + needle.len());
            errors.push(SpecError::at(
                t,
                &src,
                at,
                format!("secret {name:?} is not defined (no secrets/{name}.age)"),
                "undefined secret",
                format!(
                    "create it with `drover secret set {name}`, or fix the name; defined: {}",
                    if defined.is_empty() {
                        "(none)".into()
                    } else {
                        defined.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        }
    }
    SpecError::many(errors).map_or(Ok(()), Err)
}

/// The `secrets` template value for templates that read `names` (`*`: all).
pub fn context(store: &Store, names: &BTreeSet<String>) -> Result<minijinja::Value, SpecError> {
    let all: Vec<String> = if names.contains("*") { store.names() } else { names.iter().cloned().collect() };
    let mut map = BTreeMap::new();
    for n in all {
        let s = store.get(&n).map_err(|e| error(&store.dir.join(format!("secrets/{n}.age")), e))?;
        let text = s.expose_str().ok_or_else(|| {
            SpecError::file(
                &store.dir.join(format!("secrets/{n}.age")),
                format!("secret {n} is not UTF-8 text, so a template cannot use it"),
                "install binary secrets as an encrypted layer file (`drover secret add-file SRC layers/…`)",
            )
        })?;
        map.insert(n, minijinja::Value::from(text));
    }
    Ok(minijinja::Value::from(map))
}

/// An encrypted layer file, decrypted (`rel` names it).
pub fn layer_file(store: &Store, path: &Path, rel: &str) -> Result<Arc<Secret>, SpecError> {
    store.decrypt_file(path, rel).map_err(|e| error(path, e))
}

fn error(path: &Path, e: SecretError) -> SpecError {
    let help = match &e {
        SecretError::NoMatchingIdentity { .. } => {
            "set DROVER_IDENTITY to a key listed in secrets/recipients.txt (see docs/secrets.md)"
        }
        SecretError::NotDefined(_) => "create it with `drover secret set NAME`",
        _ => "see docs/secrets.md",
    };
    SpecError::file(path, e.to_string(), help)
}

/// A file holding a secret may be world-readable only when its role says
/// `allow-world-readable = true` for it.
pub fn world_readable(path: &str, mode: u32, allowed: bool) -> Option<String> {
    (mode & 0o004 != 0 && !allowed).then(|| {
        format!(
            "{path} holds a secret but would be world-readable (mode {mode:04o}); drover refuses that unless the role's \
             [files] entry for it says allow-world-readable = true"
        )
    })
}
