//! The on-disk schema of every project file, as serde types.
//!
//! `deny_unknown_fields` everywhere: a misspelt key is an error with its line,
//! not a silently ignored setting. `Spanned` marks values whose later
//! validation (a role that does not exist, a bad duration) must point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type Vars = toml::Table;

/// `drover.toml`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectFile {
    #[serde(default)]
    pub project: ProjectSection,
    #[serde(default)]
    pub defaults: HostFields,
    #[serde(default)]
    pub vars: Vars,
    #[serde(default)]
    pub apply: ApplySection,
    pub rollout: Option<crate::rollout::RolloutFile>,
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default)]
    pub alert: Vec<crate::alert::AlertFile>,
}

/// `[serve]`: what `drover serve --reconcile` does with what it finds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSection {
    pub reconcile: Option<ReconcilePolicy>,
}

/// `report` only records and shows drift; `heal` also re-applies drifted
/// hosts and hosts without a current generation. Default `report`: a
/// server that starts writing to hosts must be asked to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcilePolicy {
    #[default]
    Report,
    Heal,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectSection {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApplySection {
    /// Revert by itself unless confirmed within this time ("0s" disables).
    pub confirm_timeout: Option<Spanned<String>>,
    /// Hosts handled at once.
    pub parallel: Option<usize>,
    pub connect_timeout: Option<Spanned<String>>,
}

/// Connection and membership settings shared by `[defaults]` and hosts.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostFields {
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key file (relative to the project directory).
    pub key: Option<String>,
    pub password: Option<Password>,
    pub roles: Option<Vec<Spanned<String>>>,
    pub groups: Option<Vec<String>>,
}

/// A login password: in clear (`password = "…"`), or one of the project's
/// secrets (`password = { secret = "NAME" }`, docs/secrets.md).
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Password {
    Plain(String),
    Secret { secret: String },
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Plain(_) => f.write_str("Plain(***)"),
            Password::Secret { secret } => write!(f, "Secret({secret})"),
        }
    }
}

/// `inventory.toml`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InventoryFile {
    #[serde(default)]
    pub defaults: HostFields,
    #[serde(default)]
    pub hosts: BTreeMap<String, Spanned<HostEntry>>,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupEntry>,
}

/// One host. Its connection fields mirror [`HostFields`] (spelt out because
/// serde's `flatten` would disable `deny_unknown_fields`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostEntry {
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<String>,
    pub password: Option<Password>,
    pub roles: Option<Vec<Spanned<String>>>,
    pub groups: Option<Vec<String>>,
    /// Pinned SSH host key ("ssh-ed25519 AAAA…").
    pub host_key: Option<String>,
    #[serde(default)]
    pub vars: Vars,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupEntry {
    #[serde(default)]
    pub vars: Vars,
}

/// `roles/<role>.toml`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RoleFile {
    #[serde(default)]
    pub layers: Vec<Spanned<String>>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub vars: Vars,
    /// Ownership and mode for files matching a glob: `"/srv/**" = { owner = "www-data" }`.
    #[serde(default)]
    pub files: BTreeMap<String, Spanned<FileAttrs>>,
    pub rollout: Option<crate::rollout::RolloutFile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileAttrs {
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Octal string, e.g. "0640".
    pub mode: Option<String>,
    /// Let a file that holds a secret be world-readable (refused otherwise).
    pub allow_world_readable: Option<bool>,
}

/// `services/<name>.toml`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceFile {
    /// What to run; drover writes the supervisor unit for it.
    pub command: Option<String>,
    /// Or: an existing supervisor unit that drover only restarts.
    pub unit: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Globs over target paths; a change to a matching file restarts the service.
    #[serde(default)]
    pub restart_on: Vec<Spanned<String>>,
    pub health: Option<Spanned<HealthFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthFile {
    pub command: Option<String>,
    pub tcp: Option<u16>,
    pub http: Option<String>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<u32>,
    pub interval: Option<Spanned<String>>,
}

impl HostEntry {
    pub fn fields(&self) -> HostFields {
        HostFields {
            user: self.user.clone(),
            port: self.port,
            key: self.key.clone(),
            password: self.password.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
        }
    }
}

impl HostFields {
    /// `self` overridden by whatever `over` sets.
    pub fn overlay(&self, over: &HostFields) -> HostFields {
        HostFields {
            user: over.user.clone().or_else(|| self.user.clone()),
            port: over.port.or(self.port),
            key: over.key.clone().or_else(|| self.key.clone()),
            password: over.password.clone().or_else(|| self.password.clone()),
            roles: over.roles.clone().or_else(|| self.roles.clone()),
            groups: over.groups.clone().or_else(|| self.groups.clone()),
        }
    }
}
