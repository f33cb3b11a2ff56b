//! Hosts: `inventory.toml`, `inventory.csv` (`address,user,password[,roles]`,
//! as a list of donated servers usually arrives) and pinned host keys.
//!
//! Connection settings resolve as: `drover.toml [defaults]` <
//! `inventory.toml [defaults]` < the host's own entry. CSV hosts are named by
//! their address. `inventory.csv.age` is the same list encrypted
//! (docs/secrets.md); its errors never show its lines, which hold passwords.
//! A password may be a secret: `password = { secret = "NAME" }`.
//! What a host's entry leaves out (even its address: an inventory may list
//! bare names) comes from ssh_config, and pins and CA keys from known_hosts
//! files: see [`crate::connect`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::connect::{self, key_line, table_range, Ctx, Known, KnownHosts, Reached, SshSettings, Stated};
use crate::diag::{line_span, SpecError};
use crate::files::{HostFields, InventoryFile, Password, Vars};
use crate::jump::{self, JumpHop};

/// A host, resolved: everything needed to reach it and compile for it.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// Pinned host keys (OpenSSH public key lines). Empty: unknown, refused.
    pub host_keys: Vec<String>,
    /// ssh_config's settings, CA keys and where every value came from.
    pub ssh: SshSettings,
    /// Jump hosts to reach it through, first hop first; empty: direct.
    pub proxy_jump: Vec<JumpHop>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub vars: Vars,
    /// Where the host was declared, for error messages.
    pub origin: String,
}

/// How to log in. A password also answers `sudo` for non-root users.
#[derive(Clone)]
pub struct Auth {
    pub key: Option<PathBuf>,
    pub password: Option<String>,
}

/// The password is overwritten with zeros when dropped (it may have come
/// decrypted from a secret).
impl Drop for Auth {
    fn drop(&mut self) {
        if let Some(p) = &mut self.password {
            zeroize::Zeroize::zeroize(p);
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("key", &self.key)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A host before role names are checked: the spans say where each came from.
pub struct RawHost {
    pub host: Host,
    /// (role, "file\0text", span) for validation errors. The text is shared
    /// by every host declared in the same file (10,000 hosts must not mean
    /// 10,000 copies of the inventory).
    pub role_refs: Vec<(String, Arc<str>, std::ops::Range<usize>)>,
}

pub struct Sources<'a> {
    pub dir: &'a Path,
    pub project_defaults: &'a HostFields,
    pub project_name: &'a str,
    pub project_text: &'a str,
    pub secrets: &'a drover_secrets::Store,
    /// drover.toml's `[ssh] config`.
    pub ssh_config: Option<&'a str>,
}

pub fn load(src: &Sources<'_>) -> Result<(Vec<RawHost>, BTreeMap<String, Vars>), SpecError> {
    let mut hosts = Vec::new();
    let mut groups = BTreeMap::new();
    let toml_path = src.dir.join("inventory.toml");
    let csv_path = src.dir.join("inventory.csv");
    let known = Known { project: KnownHosts::load(&src.dir.join("known_hosts"), "known_hosts"), ..Known::default() };
    let mut ctx = Ctx { ssh: connect::ssh_config(src.dir, src.ssh_config)?, known };
    if toml_path.exists() {
        let text = read(&toml_path)?;
        let inv: InventoryFile = toml::from_str(&text).map_err(|e| SpecError::toml("inventory.toml", &text, &e))?;
        let defaults = src.project_defaults.overlay(&inv.defaults);
        let sources = RefSources {
            inventory: format!("inventory.toml\u{0}{text}").into(),
            project: format!("{}\u{0}{}", src.project_name, src.project_text).into(),
        };
        let lines = LineIndex::new(&text);
        let inv_defaults = table_range(&text, "[defaults]");
        let proj_defaults = table_range(src.project_text, "[defaults]");
        for (name, entry) in &inv.hosts {
            let span = entry.span();
            let entry = entry.get_ref();
            let own = entry.fields();
            let f = defaults.overlay(&own);
            let line = lines.line_of(span.start);
            // A `[hosts.X]` table's span is its header: its keys run to the next header.
            let body = span.start..text[span.end..].find("\n[").map_or(text.len(), |i| span.end + i);
            // Where a field set for this host was written.
            let at = |key: &str, mine: bool, inv_default: bool| {
                if mine {
                    format!("inventory.toml:{}", key_line(&text, body.clone(), key).unwrap_or(line))
                } else if inv_default {
                    format!("inventory.toml:{}", key_line(&text, inv_defaults.clone(), key).unwrap_or(0))
                } else {
                    let l = key_line(src.project_text, proj_defaults.clone(), key).unwrap_or(0);
                    format!("{}:{l}", src.project_name)
                }
            };
            let stated = Stated {
                name,
                address: entry.address.clone().map(|a| (a, at("address", true, false))),
                user: f.user.clone().map(|u| (u, at("user", own.user.is_some(), inv.defaults.user.is_some()))),
                port: f.port.map(|p| (p, at("port", own.port.is_some(), inv.defaults.port.is_some()))),
                key: f
                    .key
                    .as_ref()
                    .map(|k| (expand(src.dir, k), at("key", own.key.is_some(), inv.defaults.key.is_some()))),
                cert_authority: f.cert_authority.clone().map(|c| {
                    (c, at("cert-authority", own.cert_authority.is_some(), inv.defaults.cert_authority.is_some()))
                }),
            };
            let mut pins: Vec<(String, String)> =
                entry.host_key.iter().map(|k| (k.clone(), at("host-key", true, false))).collect();
            let reached = ctx.reach(stated, &mut pins)?;
            let role_refs = role_refs(&f, entry.fields().roles.is_some(), &inv.defaults, &sources);
            let origin = format!("inventory.toml:{line}");
            let password = password(src.secrets, f.password.as_ref(), name, &origin)?;
            let mut host = build(name, reached, &f, password, pins, entry.vars.clone(), origin);
            // The most specific setting wins: the host's, its first group's
            // that sets one, inventory.toml's [defaults], drover.toml's, then
            // ssh_config's ProxyJump.
            let group_jump = || f.groups.iter().flatten().find_map(|g| inv.groups.get(g)?.proxy_jump.as_ref());
            let jump = entry.proxy_jump.as_ref().or_else(group_jump).or(inv.defaults.proxy_jump.as_ref());
            host.proxy_jump = match jump {
                Some(v) => {
                    let at = format!("inventory.toml:{}", lines.line_of(v.span().start));
                    note_jump(&mut host, v.get_ref(), at);
                    jump::resolve(v, "inventory.toml", &text, &host.user, &|a| ctx.pins_of(a))?
                }
                None => project_jump(src, &mut host, &ctx)?,
            };
            hosts.push(RawHost { host, role_refs });
        }
        for (name, g) in inv.groups {
            groups.insert(name, g.vars);
        }
    }
    if csv_path.exists() {
        let text = read(&csv_path)?;
        hosts.extend(parse_csv(src, "inventory.csv", &text, &mut ctx)?);
    }
    let age_path = src.dir.join("inventory.csv.age");
    if age_path.exists() {
        let secret = src.secrets.decrypt_file(&age_path, "inventory.csv.age").map_err(|e| {
            SpecError::file(&age_path, e.to_string(), "set DROVER_IDENTITY to a key listed in secrets/recipients.txt")
        })?;
        let text = secret.expose_str().ok_or_else(|| {
            SpecError::file(&age_path, "decrypts to something that is not UTF-8 text", "encrypt a CSV file")
        })?;
        hosts.extend(parse_csv(src, "inventory.csv.age", text, &mut ctx)?);
    }
    if !toml_path.exists() && !csv_path.exists() && !age_path.exists() {
        return Err(SpecError::file(
            &toml_path,
            "no inventory",
            "create inventory.toml (for the local lab: `drover lab inventory > inventory.toml`) or inventory.csv with address,user,password lines",
        ));
    }
    let mut seen = BTreeMap::new();
    for h in &hosts {
        if let Some(prev) = seen.insert(h.host.name.clone(), h.host.origin.clone()) {
            return Err(SpecError::file(
                Path::new(&h.host.origin),
                format!("host {} is declared twice (also at {prev})", h.host.name),
                "keep one declaration per host",
            ));
        }
    }
    Ok((hosts, groups))
}

fn read(path: &Path) -> Result<String, SpecError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    crate::read::read_text(path, &name)?.ok_or_else(|| SpecError::file(path, "does not exist", "check the file exists"))
}

/// Line numbers by binary search over the newline offsets (counting newlines
/// from the start for every host is quadratic in the inventory's size).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// The two files a host's role names can come from, as `file\0text`.
struct RefSources {
    inventory: Arc<str>,
    project: Arc<str>,
}

/// Where each of a host's role names was written, so an unknown role is
/// reported at the line that names it.
fn role_refs(
    f: &HostFields,
    own: bool,
    inv_defaults: &HostFields,
    sources: &RefSources,
) -> Vec<(String, Arc<str>, std::ops::Range<usize>)> {
    let src = if own || inv_defaults.roles.is_some() { &sources.inventory } else { &sources.project };
    f.roles.iter().flatten().map(|r| (r.get_ref().clone(), src.clone(), r.span())).collect()
}

/// A host's password, decrypted when it is a secret.
fn password(
    store: &drover_secrets::Store,
    p: Option<&Password>,
    host: &str,
    origin: &str,
) -> Result<Option<String>, SpecError> {
    match p {
        None => Ok(None),
        Some(Password::Plain(s)) => Ok(Some(s.clone())),
        Some(Password::Secret { secret }) => {
            let s = store.get(secret).map_err(|e| {
                SpecError::file(
                    Path::new(origin),
                    format!("host {host}: password: {e}"),
                    "define it with `drover secret set NAME`, or set DROVER_IDENTITY to a key that can decrypt it",
                )
            })?;
            let text = s.expose_str().ok_or_else(|| {
                SpecError::file(
                    Path::new(origin),
                    format!("host {host}: secret {secret} is not UTF-8 text"),
                    "set it again",
                )
            })?;
            Ok(Some(text.to_string()))
        }
    }
}

fn build(
    name: &str,
    reached: Reached,
    f: &HostFields,
    password: Option<String>,
    host_keys: Vec<(String, String)>,
    vars: Vars,
    origin: String,
) -> Host {
    let mut ssh = reached.ssh;
    for (k, at) in &host_keys {
        ssh.provenance.push(connect::Provenance { field: "host-key", value: k.clone(), source: at.clone() });
    }
    Host {
        name: name.to_string(),
        address: reached.address,
        port: reached.port,
        user: reached.user,
        auth: Auth { key: reached.key, password },
        host_keys: host_keys.into_iter().map(|(k, _)| k).collect(),
        ssh,
        proxy_jump: Vec::new(),
        roles: f.roles.iter().flatten().map(|r| r.get_ref().clone()).collect(),
        groups: f.groups.clone().unwrap_or_default(),
        vars,
        origin,
    }
}

/// `~/x` → home; relative → project directory.
fn expand(dir: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    dir.join(p)
}

/// `name` is `inventory.csv` or `inventory.csv.age`; the encrypted one's
/// errors name the line but never show it (it holds passwords).
fn parse_csv(src: &Sources<'_>, name: &str, text: &str, ctx: &mut Ctx) -> Result<Vec<RawHost>, SpecError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let secret = name.ends_with(".age");
    let project_src: Arc<str> = format!("{}\u{0}{}", src.project_name, src.project_text).into();
    let csv_src: Arc<str> = if secret { format!("{name}\u{0}").into() } else { format!("{name}\u{0}{text}").into() };
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || (i == 0 && t.starts_with("address")) {
            continue;
        }
        let cols: Vec<&str> = t.split(',').map(str::trim).collect();
        if cols.len() < 3 || cols.len() > 4 || cols[..3].iter().any(|c| c.is_empty()) {
            let what = format!("expected address,user,password[,roles], found {} column(s)", cols.len());
            let help = "write one host per line as address,user,password or address,user,password,role1;role2";
            errors.push(if secret {
                SpecError::file(
                    Path::new(&format!("{name}:{lineno}")),
                    what,
                    format!("{help} (`drover secret edit {name}`)"),
                )
            } else {
                SpecError::at(name, text, line_span(text, lineno), what, "this line", help)
            });
            continue;
        }
        let (address, port) = match cols[0].rsplit_once(':') {
            Some((a, p)) if p.parse::<u16>().is_ok() => (a, p.parse().ok()),
            _ => (cols[0], None),
        };
        // `line` is a slice of `text`: its offset, without rescanning.
        let line_start = line.as_ptr() as usize - text.as_ptr() as usize;
        let mut f = src.project_defaults.clone();
        f.user = Some(cols[1].to_string());
        f.password = Some(Password::Plain(cols[2].to_string()));
        f.port = port.or(f.port);
        let mut refs: Vec<(String, Arc<str>, std::ops::Range<usize>)> =
            f.roles.iter().flatten().map(|r| (r.get_ref().clone(), project_src.clone(), r.span())).collect();
        if let Some(roles) = cols.get(3) {
            let names: Vec<String> = roles.split([';', ' ']).filter(|r| !r.is_empty()).map(String::from).collect();
            let span = if secret { 0..0 } else { line_start..line_start + line.len() };
            refs = names.iter().map(|r| (r.clone(), csv_src.clone(), span.clone())).collect();
            f.roles = Some(names.into_iter().map(|n| toml::Spanned::new(0..0, n)).collect());
        }
        let at = format!("{name}:{lineno}");
        let stated = Stated {
            name: cols[0],
            address: Some((address.to_string(), at.clone())),
            user: Some((cols[1].to_string(), at.clone())),
            port: port
                .map(|p| (p, at.clone()))
                .or_else(|| f.port.map(|p| (p, format!("{}:[defaults]", src.project_name)))),
            key: f.key.as_ref().map(|k| (expand(src.dir, k), format!("{}:[defaults]", src.project_name))),
            cert_authority: f.cert_authority.clone().map(|c| (c, format!("{}:[defaults]", src.project_name))),
        };
        let mut pins = Vec::new();
        let reached = ctx.reach(stated, &mut pins)?;
        let password = Some(cols[2].to_string());
        let mut host = build(cols[0], reached, &f, password, pins, Vars::new(), at);
        host.proxy_jump = project_jump(src, &mut host, ctx)?;
        out.push(RawHost { host, role_refs: refs });
    }
    match SpecError::many(errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// drover.toml's `[defaults] proxy-jump`, else ssh_config's `ProxyJump`,
/// for a host that sets none closer.
fn project_jump(src: &Sources<'_>, host: &mut Host, ctx: &Ctx) -> Result<Vec<JumpHop>, SpecError> {
    if let Some(v) = &src.project_defaults.proxy_jump {
        let line = src.project_text[..v.span().start.min(src.project_text.len())].matches('\n').count() + 1;
        note_jump(host, v.get_ref(), format!("{}:{line}", src.project_name));
        return jump::resolve(v, src.project_name, src.project_text, &host.user, &|a| ctx.pins_of(a));
    }
    let Some(raw) = host.ssh.proxy_jump.clone() else { return Ok(Vec::new()) };
    // Errors name the ssh_config line the value came from.
    let at = host.ssh.provenance.iter().find(|p| p.field == "proxy-jump").map(|p| p.source.clone()).unwrap_or_default();
    let spanned = toml::Spanned::new(0..raw.len(), raw.clone());
    jump::resolve(&spanned, &at, &raw, &host.user, &|a| ctx.pins_of(a))
}

/// The inventory's `proxy-jump` wins over ssh_config's: say so in the
/// host's provenance.
fn note_jump(host: &mut Host, value: &str, at: String) {
    host.ssh.provenance.retain(|p| p.field != "proxy-jump");
    host.ssh.proxy_jump = Some(value.to_string());
    host.ssh.provenance.push(connect::Provenance { field: "proxy-jump", value: value.to_string(), source: at });
}
