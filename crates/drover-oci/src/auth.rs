//! Registry credentials: anonymous, a credential the caller gives (drover
//! secrets) or the `auths` entries of Docker's `config.json`, in that
//! order of precedence. Credential helpers (`credsStore`, `credHelpers`)
//! are not run: drover does not execute programs named by a config file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::error::OciError;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// A bearer token used as is (an identity token from a cloud's CLI).
    Token(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::Token(_) => write!(f, "Token(***)"),
        }
    }
}

/// How pulls authenticate, per registry host (`registry.example:5000`).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Given by the caller (from drover secrets); wins over the file.
    pub credentials: BTreeMap<String, Credential>,
    /// Docker's `config.json`, read for `auths` entries; `None`: none.
    pub docker_config: Option<PathBuf>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl Auth {
    /// No credentials: every pull is anonymous.
    pub fn anonymous() -> Auth {
        Auth::default()
    }

    /// Docker's own config: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json` (a missing file means anonymous).
    pub fn docker_default() -> Auth {
        let path = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
            .map(|d| d.join("config.json"));
        Auth { credentials: BTreeMap::new(), docker_config: path }
    }

    pub fn with(mut self, registry: &str, credential: Credential) -> Auth {
        self.credentials.insert(registry.into(), credential);
        self
    }

    /// The credential for `registry` (a host, with port if any).
    pub fn credential(&self, registry: &str) -> Result<Option<Credential>, OciError> {
        if let Some(c) = self.credentials.get(registry) {
            return Ok(Some(c.clone()));
        }
        let Some(path) = &self.docker_config else { return Ok(None) };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OciError::Io { path: path.clone(), error: e }),
        };
        let bad = |detail: String| OciError::File { path: path.clone(), detail };
        let config: DockerConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("not Docker's config.json: {e}")))?;
        let Some(a) = config.auths.iter().find(|(k, _)| auths_key_host(k) == docker_host(registry)).map(|(_, a)| a)
        else {
            return Ok(None);
        };
        if let Some(t) = &a.identitytoken {
            return Ok(Some(Credential::Token(t.clone())));
        }
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            return Ok(Some(Credential::Basic { username: u.clone(), password: p.clone() }));
        }
        let Some(enc) = &a.auth else { return Ok(None) };
        let dec = base64::engine::general_purpose::STANDARD
            .decode(enc.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| bad(format!("auths.{registry:?}.auth is not base64 of `user:password`")))?;
        let (u, p) = dec.split_once(':').ok_or_else(|| bad(format!("auths.{registry:?}.auth has no `:`")))?;
        Ok(Some(Credential::Basic { username: u.into(), password: p.into() }))
    }

    pub(crate) fn registry_auth(&self, registry: &str) -> Result<RegistryAuth, OciError> {
        Ok(match self.credential(registry)? {
            None => RegistryAuth::Anonymous,
            Some(Credential::Basic { username, password }) => RegistryAuth::Basic(username, password),
            Some(Credential::Token(t)) => RegistryAuth::Bearer(t),
        })
    }
}

/// An `auths` key is a host or a URL (`https://index.docker.io/v1/`).
fn auths_key_host(key: &str) -> &str {
    let k = key.split_once("://").map_or(key, |(_, rest)| rest);
    docker_host(k.split('/').next().unwrap_or(k))
}

/// Docker Hub goes by several names.
fn docker_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}
