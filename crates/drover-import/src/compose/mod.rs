//! docker-compose files → `services/NAME.toml` per compose service and a
//! role listing them (docs/containers.md, "Importing docker-compose").
//!
//! The file is read with line numbers ([`yaml`]), its values interpolated
//! as compose does ([`interp`]: the environment, then `.env` beside the
//! file), and each service converted key by key ([`service`]). What has no
//! drover equivalent is left out and listed in [`Imported::findings`] with
//! `file:line` and what to do; what is imported with a difference (a port
//! that needs no mapping on the host's network, a start period folded into
//! the retries) is listed too, as a caveat. Nothing is dropped silently.

mod deploy;
mod emit;
mod health;
pub mod interp;
mod keys;
mod ports;
mod service;
mod top;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drover_spec::SpecError;

pub use interp::Env;

/// The result of an import: the services to write and what could not be
/// carried over.
#[derive(Debug)]
pub struct Imported {
    /// The input file as named on the command line (for the header comment).
    pub source: String,
    /// The role that lists every service: compose's project name.
    pub role: String,
    pub services: Vec<Service>,
    pub findings: Vec<Finding>,
}

/// One compose service, as drover's service keys.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// A registry reference; `None`: the service has only `build`, and is
    /// written as `image = { dir = "images/NAME" }` for its root filesystem.
    pub image: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub memory: Option<String>,
    pub pids: Option<i64>,
    pub stop_grace_period: Option<String>,
    pub instances: Option<u32>,
    /// `depends_on`: the services this one starts after.
    pub after: Vec<String>,
    pub health: Option<Health>,
    /// Comment lines for the service file (the ports it answers on).
    pub notes: Vec<String>,
}

/// `[health]`: a command run inside the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub command: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
}

/// Something in the compose file that drover does not take over as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `file:line` where it was written.
    pub at: String,
    /// The compose service, `None` for top-level keys.
    pub service: Option<String>,
    pub key: String,
    pub why: String,
    /// True: imported, with a caveat; false: left out.
    pub kept: bool,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kept { "imported with a caveat" } else { "not imported" };
        match &self.service {
            Some(s) => write!(f, "{}: service {s}: {} {what}: {}", self.at, self.key, self.why),
            None => write!(f, "{}: {} {what}: {}", self.at, self.key, self.why),
        }
    }
}

impl Imported {
    /// Findings that were left out of the generated files.
    pub fn unmapped(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.kept)
    }

    /// Findings that were imported, with a caveat.
    pub fn caveats(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kept)
    }

    /// The files to write, relative to the project: `services/NAME.toml`
    /// per service, then `roles/ROLE.toml`.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        emit::files(self)
    }

    /// Write [`Imported::files`] under `dir`; nothing is written if any of
    /// them exists (unless `force`).
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, crate::WriteError> {
        let files = self.files();
        if !force {
            if let Some((p, _)) = files.iter().find(|(p, _)| dir.join(p).exists()) {
                return Err(crate::WriteError::Exists(dir.join(p)));
            }
        }
        let mut written = Vec::new();
        for (rel, text) in files {
            let path = dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| crate::WriteError::Io { path: parent.to_path_buf(), source })?;
            }
            crate::write_inventory(&path, &text, force)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Read and convert a compose file, interpolating from the environment and
/// the `.env` beside it (the environment wins). `env_file`s are read
/// relative to the compose file's directory.
pub fn import_file(path: &Path) -> Result<Imported, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecError::file(path, format!("cannot read: {e}"), "check the path; the compose file must be UTF-8 text")
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut env = Env::new();
    let dotenv = dir.join(".env");
    if let Ok(t) = std::fs::read_to_string(&dotenv) {
        for (k, v, _) in interp::parse_env_file(&t) {
            if let Some(v) = v {
                env.insert(k, v);
            }
        }
    }
    env.extend(std::env::vars());
    let default_name =
        std::fs::canonicalize(&dir).ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    import_str(&path.display().to_string(), &text, &env, &dir, default_name.as_deref().unwrap_or("app"))
}

/// Convert compose text; `name` is used in messages, `env` for
/// interpolation, `dir` to read `env_file`s, `default_role` when the file
/// has no top-level `name:` (compose uses the directory's name).
pub fn import_str(name: &str, text: &str, env: &Env, dir: &Path, default_role: &str) -> Result<Imported, SpecError> {
    let src = crate::Src { name, text };
    let mut doc = yaml::parse(&src)?;
    let mut unset = BTreeMap::new();
    doc.strings_mut(&mut |s, line| {
        let mut out = interp::Outcome::default();
        *s = interp::interpolate(s, env, &mut out).map_err(|m| {
            src.err_line(
                line,
                format!("interpolation: {m}"),
                "set the variable in the environment or in .env beside the file",
            )
        })?;
        for u in out.unset {
            unset.entry(u).or_insert(line);
        }
        Ok(())
    })?;
    let mut findings: Vec<Finding> = unset
        .into_iter()
        .map(|(var, line)| Finding {
            at: src.at(line),
            service: None,
            key: format!("${{{var}}}"),
            why: format!("{var} is not set (environment or .env) and has no default: imported as an empty string"),
            kept: true,
        })
        .collect();
    let (role, services) = top::convert(&src, &doc, dir, default_role, env, &mut findings)?;
    findings.sort_by_key(|f| line_of(&f.at));
    Ok(Imported { source: name.to_string(), role, services, findings })
}

fn line_of(at: &str) -> usize {
    at.rsplit(':').next().and_then(|l| l.parse().ok()).unwrap_or(0)
}
