//! `drover.toml [registries."host:port"]`: how the controller reaches an
//! image registry beyond `~/.docker/config.json` (docs/containers.md,
//! "Registry credentials"). Read before the project loads (the controller
//! pulls images first), like `[state]`.
//!
//! ```toml
//! [registries."registry.example:5000"]
//! credential = "registry_token"   # secrets/registry_token.age: "user:password" or a token
//! insecure = true                 # plain HTTP (loopback registries always are)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::diag::SpecError;
use crate::files::ProjectFile;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Registry {
    /// A drover secret (`secrets/<name>.age`) holding `user:password`, or
    /// a bearer token; wins over `~/.docker/config.json`.
    pub credential: Option<String>,
    /// Reach it over plain HTTP.
    #[serde(default)]
    pub insecure: bool,
}

/// The project's `[registries]`, by `host:port`. Checked: a credential
/// names a secret (`secrets.NAME`'s rules).
pub fn settings(dir: &Path) -> Result<BTreeMap<String, Registry>, SpecError> {
    let Ok(text) = std::fs::read_to_string(dir.join("drover.toml")) else { return Ok(BTreeMap::new()) };
    let pf: ProjectFile = toml::from_str(&text).map_err(|e| SpecError::toml("drover.toml", &text, &e))?;
    for (host, r) in &pf.registries {
        if let Some(c) = r.credential.as_ref().filter(|c| !drover_secrets::is_secret_name(c)) {
            let at = text.find(&format!("\"{c}\"")).unwrap_or(0);
            return Err(SpecError::at(
                "drover.toml",
                &text,
                at..at + c.len() + 2,
                format!("[registries.{host:?}] credential {c:?} is not a secret name"),
                "here",
                "name a secret of secrets/ (letters, digits and _), e.g. credential = \"registry_token\"",
            ));
        }
    }
    Ok(pf.registries)
}
