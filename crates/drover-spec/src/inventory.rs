//! Hosts: `inventory.toml`, `inventory.csv` (`address,user,password[,roles]`,
//! as a list of donated servers usually arrives) and pinned host keys.
//!
//! Connection settings resolve as: `drover.toml [defaults]` <
//! `inventory.toml [defaults]` < the host's own entry. CSV hosts are named by
//! their address. `inventory.csv.age` is the same list encrypted
//! (docs/secrets.md); its errors never show its lines, which hold passwords.
//! A password may be a secret: `password = { secret = "NAME" }`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

pub fn load(src: &Sources<'_>) -> Result<(Vec<RawHost>, BTreeMap<String, Vars>), SpecError> {
    let mut hosts = Vec::new();
    let mut groups = BTreeMap::new();
    let toml_path = src.dir.join("inventory.toml");
    let csv_path = src.dir.join("inventory.csv");
    let known = load_known_hosts(&src.dir.join("known_hosts"));
    if toml_path.exists() {
        let text = read(&toml_path)?;
        let inv: InventoryFile = toml::from_str(&text).map_err(|e| SpecError::toml("inventory.toml", &text, &e))?;
        let defaults = src.project_defaults.overlay(&inv.defaults);
        let sources = RefSources {
            inventory: format!("inventory.toml\u{0}{text}").into(),
            project: format!("{}\u{0}{}", src.project_name, src.project_text).into(),
        };
        let lines = LineIndex::new(&text);
        for (name, entry) in &inv.hosts {
            let span = entry.span();
            let entry = entry.get_ref();
            let f = defaults.overlay(&entry.fields());
            let mut keys: Vec<String> = entry.host_key.iter().cloned().collect();
            keys.extend(known_for(&known, name, &entry.address));
            let role_refs = role_refs(&f, entry.fields().roles.is_some(), &inv.defaults, &sources);
            let origin = format!("inventory.toml:{}", lines.line_of(span.start));
            let password = password(src.secrets, f.password.as_ref(), name, &origin)?;
            let mut host = build(src.dir, name, &entry.address, &f, password, keys, entry.vars.clone(), origin);
            // The most specific setting wins: the host's, its first group's
            // that sets one, inventory.toml's [defaults], drover.toml's.
            let group_jump = || f.groups.iter().flatten().find_map(|g| inv.groups.get(g)?.proxy_jump.as_ref());
            let jump = entry.proxy_jump.as_ref().or_else(group_jump).or(inv.defaults.proxy_jump.as_ref());
            host.proxy_jump = match jump {
                Some(v) => jump::resolve(v, "inventory.toml", &text, &host.user, &|a| known_for(&known, a, a))?,
                None => project_jump(src, &host.user, &known)?,
            };
            hosts.push(RawHost { host, role_refs });
        }
        for (name, g) in inv.groups {
            groups.insert(name, g.vars);
        }
    }
    if csv_path.exists() {
        let text = read(&csv_path)?;
        hosts.extend(parse_csv(src, "inventory.csv", &text, &known)?);
    }
    let age_path = src.dir.join("inventory.csv.age");
    if age_path.exists() {
        let secret = src.secrets.decrypt_file(&age_path, "inventory.csv.age").map_err(|e| {
            SpecError::file(&age_path, e.to_string(), "set DROVER_IDENTITY to a key listed in secrets/recipients.txt")
        })?;
        let text = secret.expose_str().ok_or_else(|| {
            SpecError::file(&age_path, "decrypts to something that is not UTF-8 text", "encrypt a CSV file")
        })?;
        hosts.extend(parse_csv(src, "inventory.csv.age", text, &known)?);
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

#[allow(clippy::too_many_arguments)]
fn build(
    dir: &Path,
    name: &str,
    address: &str,
    f: &HostFields,
    password: Option<String>,
    host_keys: Vec<String>,
    vars: Vars,
    origin: String,
) -> Host {
    Host {
        name: name.to_string(),
        address: address.to_string(),
        port: f.port.unwrap_or(22),
        user: f.user.clone().unwrap_or_else(|| "root".into()),
        auth: Auth { key: f.key.as_ref().map(|k| expand(dir, k)), password },
        host_keys,
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
fn parse_csv(src: &Sources<'_>, name: &str, text: &str, known: &[(String, String)]) -> Result<Vec<RawHost>, SpecError> {
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
        let keys = known_for(known, cols[0], address);
        let password = Some(cols[2].to_string());
        let mut host = build(src.dir, cols[0], address, &f, password, keys, Vars::new(), format!("{name}:{lineno}"));
        host.proxy_jump = project_jump(src, &host.user, known)?;
        out.push(RawHost { host, role_refs: refs });
    }
    match SpecError::many(errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// drover.toml's `[defaults] proxy-jump`, for a host that sets none closer.
fn project_jump(src: &Sources<'_>, user: &str, known: &[(String, String)]) -> Result<Vec<JumpHop>, SpecError> {
    match &src.project_defaults.proxy_jump {
        Some(v) => jump::resolve(v, src.project_name, src.project_text, user, &|a| known_for(known, a, a)),
        None => Ok(Vec::new()),
    }
}

/// `known_hosts` in the project: `name-or-address keytype base64 [comment]`,
/// written by `drover trust`.
fn load_known_hosts(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (who, key) = l.trim().split_once(' ')?;
            Some((who.to_string(), key.trim().to_string()))
        })
        .collect()
}

fn known_for(known: &[(String, String)], name: &str, address: &str) -> Vec<String> {
    known.iter().filter(|(who, _)| who.split(',').any(|w| w == name || w == address)).map(|(_, k)| k.clone()).collect()
}
