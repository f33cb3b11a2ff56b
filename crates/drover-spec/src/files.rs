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
    pub packages: PackagesSection,
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default)]
    pub alert: Vec<crate::alert::AlertFile>,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub limits: crate::limits::LimitsSection,
    #[serde(default)]
    pub ssh: SshSection,
    /// `[registries."host:port"]` (see `container::registries`).
    #[serde(default)]
    pub registries: std::collections::BTreeMap<String, crate::container::registries::Registry>,
}

/// `[ssh]`: how hosts are reached beyond the inventory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SshSection {
    /// An ssh_config file read instead of `~/.ssh/config` (relative to the
    /// project directory); `drover -F FILE` overrides it.
    pub config: Option<String>,
    /// How long a resident process keeps hosts' sessions after the last
    /// command used them (`"10m"`; `"0"` or absent: off). docs/ssh.md,
    /// "Persistent connections".
    pub persist: Option<Spanned<String>>,
}

/// `[state]`: where runs, locks and history are kept (see
/// `crate::state::settings`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSection {
    pub url: Option<Spanned<String>>,
    pub lock_lease: Option<Spanned<String>>,
}

/// `[serve]`: what `drover serve --reconcile` does with what it finds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSection {
    pub reconcile: Option<ReconcilePolicy>,
}

/// `report` only records and shows drift; `heal` also re-applies drifted
/// hosts, hosts without a current generation and hosts behind the project
/// (not those a `drover rollback` holds). Default `report`: a
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
    /// An SSH certificate authority's public key (`ssh-ed25519 AAAA…`):
    /// host certificates it signed are accepted without a pinned host key.
    pub cert_authority: Option<String>,
    /// Jump hosts, `"user@bastion:22"` or a chain `"a,b"` (`crate::jump`).
    pub proxy_jump: Option<Spanned<String>>,
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
    /// Absent: the address is ssh_config's `HostName` for the host's name,
    /// or the name itself.
    pub address: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<String>,
    pub password: Option<Password>,
    pub roles: Option<Vec<Spanned<String>>>,
    pub groups: Option<Vec<String>>,
    pub cert_authority: Option<String>,
    /// Pinned SSH host key ("ssh-ed25519 AAAA…").
    pub host_key: Option<String>,
    pub proxy_jump: Option<Spanned<String>>,
    #[serde(default)]
    pub vars: Vars,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupEntry {
    #[serde(default)]
    pub vars: Vars,
    /// Jump hosts for the group's hosts that set none themselves.
    pub proxy_jump: Option<Spanned<String>>,
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
    /// Debian packages, `name` or `name=version` (see docs/project.md).
    #[serde(default)]
    pub packages: Vec<Spanned<String>>,
    /// Package names removed when installed.
    #[serde(default)]
    pub packages_absent: Vec<Spanned<String>>,
    #[serde(default)]
    pub users: BTreeMap<String, Spanned<UserFile>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<GroupFile>>,
    /// Managed directories: `[dirs."/srv/app"] owner = "app", mode = "0750"`.
    #[serde(default)]
    pub dirs: BTreeMap<String, Spanned<FileAttrs>>,
}

/// `[users.<name>]` in a role.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserFile {
    pub uid: Option<u32>,
    /// Primary group; default: a group named like the user.
    pub group: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    #[serde(default)]
    pub system: bool,
}

/// `[groups.<name>]` in a role.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupFile {
    pub gid: Option<u32>,
    #[serde(default)]
    pub system: bool,
}

/// `drover.toml [packages]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackagesSection {
    /// Where packages come from, first match wins: `"apt"` (the
    /// controller's apt configuration) or a directory of `.deb` files
    /// (relative to the project). Default: `["apt"]`.
    pub sources: Option<Vec<String>>,
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
    /// What to run; drover writes the supervisor unit for it. For an image
    /// service: the container's command (an argv, or a string split like
    /// shell words), replacing the image's.
    pub command: Option<Spanned<crate::container::Argv>>,
    /// Or: run a container from an image (docs/containers.md).
    pub image: Option<Spanned<crate::container::ImageRef>>,
    /// An image service's entrypoint, replacing the image's.
    pub entrypoint: Option<Spanned<crate::container::Argv>>,
    /// An image service's working directory inside the container.
    pub workdir: Option<Spanned<String>>,
    /// An image service's volumes, compose's short syntax:
    /// `"data:/var/lib/db"` (a named volume) or `"/srv/x:/x:ro"` (a bind mount).
    #[serde(default)]
    pub volumes: Vec<Spanned<String>>,
    /// An image service's memory limit, e.g. "256M".
    pub memory: Option<Spanned<String>>,
    /// An image service's limit on processes (and threads).
    pub pids: Option<Spanned<i64>>,
    /// How long an image service's container has to exit after SIGTERM
    /// before it is killed (default 5s).
    pub stop_grace_period: Option<Spanned<String>>,
    /// What runs an image service's container: `"runc"` (the default, no
    /// daemon) or the host's `"docker"` / `"podman"` engine
    /// (`crate::container::engine`).
    pub runtime: Option<Spanned<String>>,
    /// Or: an existing supervisor unit that drover only restarts.
    pub unit: Option<String>,
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Globs over target paths; a change to a matching file restarts the service.
    #[serde(default)]
    pub restart_on: Vec<Spanned<String>>,
    /// Globs over target paths; a change to a matching file only reloads
    /// the service (unless a `restart-on` path changed too).
    #[serde(default)]
    pub reload_on: Vec<Spanned<String>>,
    pub health: Option<Spanned<HealthFile>>,
    /// Instances on every host whose roles include the service (default 1).
    pub instances: Option<Spanned<u32>>,
    /// Port name → range ("30300-30399" or one port): each instance gets one
    /// port per name, stable across applies.
    #[serde(default)]
    pub ports: BTreeMap<String, Spanned<String>>,
    /// Instead of `instances`: `count` instances placed over the hosts.
    pub placement: Option<Spanned<PlacementFile>>,
    /// Services of the project this one starts after on a host (compose's
    /// `depends_on`); checked at load (`project::order`).
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// `[placement]` of a service (docs/project.md#placement).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlacementFile {
    pub count: u32,
    pub max_per_host: Option<u32>,
    /// A host var, or `group:<prefix>`, whose values instances spread across.
    pub spread: Option<Spanned<String>>,
    pub requires: Option<Spanned<RequiresFile>>,
    /// Instance i runs on `pinned[i]`.
    #[serde(default)]
    pub pinned: Vec<Spanned<String>>,
}

/// `requires = { cpus = 2, mem = "4GiB" }`, checked against cached facts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequiresFile {
    pub cpus: Option<u32>,
    pub mem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthFile {
    pub command: Option<String>,
    /// A port, or a template of the instance (`"{{ instance.ports.p2p }}"`).
    pub tcp: Option<TcpPort>,
    pub http: Option<String>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<u32>,
    pub interval: Option<Spanned<String>>,
}

/// `tcp = 8080` or `tcp = "{{ instance.ports.p2p }}"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TcpPort {
    Port(u16),
    Template(String),
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
            cert_authority: self.cert_authority.clone(),
            proxy_jump: self.proxy_jump.clone(),
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
            cert_authority: over.cert_authority.clone().or_else(|| self.cert_authority.clone()),
            proxy_jump: over.proxy_jump.clone().or_else(|| self.proxy_jump.clone()),
        }
    }
}
