//! Ansible inventories (INI and YAML) → `inventory.toml`.
//!
//! Both formats are parsed into one [`Model`] (groups with hosts, children
//! and vars; hosts with vars), then [`resolve`] works out what Ansible would:
//! each host's groups through `children`, and its connection settings by
//! Ansible's precedence (`all` < parent < child group, ties by
//! `ansible_group_priority` then name, < host). The host's `groups` are
//! written in that same order, because drover merges group vars in the
//! host's group order: the imported vars come out as Ansible computes them.
//!
//! What has no drover meaning (`ansible_become`, `ansible_connection=local`,
//! `ansible_python_interpreter`, a vault-encrypted or null value) is left out
//! and listed in [`Imported::findings`] with where it was and why; nothing is
//! dropped silently.

mod emit;
mod ini;
mod mapping;
mod range;
mod resolve;
mod value;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use drover_spec::SpecError;

pub use resolve::{ImportedHost, Scope};

/// The result of an import: the hosts and group vars to write, and what
/// could not be carried over.
#[derive(Debug)]
pub struct Imported {
    /// The input file as named on the command line (for the header comment).
    pub source: String,
    pub hosts: Vec<ImportedHost>,
    /// Every Ansible group a host is in (except the implicit `all` and
    /// `ungrouped`, unless they carry vars).
    pub groups: BTreeSet<String>,
    /// Group vars (non-connection), by group; groups without any are absent.
    pub group_vars: BTreeMap<String, toml::Table>,
    pub findings: Vec<Finding>,
}

/// Something in the Ansible inventory that drover does not take over as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `file:line` where it was written.
    pub at: String,
    pub scope: Scope,
    pub key: String,
    pub why: String,
    /// True: imported, with a caveat (literal Jinja text, a relative key
    /// path); false: left out.
    pub kept: bool,
}

impl Imported {
    /// Findings that were left out of the generated inventory.
    pub fn unmapped(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.kept)
    }

    /// Findings that were imported, with a caveat.
    pub fn caveats(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kept)
    }

    /// The generated `inventory.toml`.
    pub fn to_toml(&self) -> String {
        emit::inventory_toml(self)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kept { "imported with a caveat" } else { "not imported" };
        write!(f, "{}: {} {}: {} {what}: {}", self.at, self.scope.kind(), self.scope.name(), self.key, self.why)
    }
}

/// Read and convert an Ansible inventory file. YAML is recognised by a
/// `.yml`/`.yaml`/`.json` extension (as Ansible's own yaml plugin does) or,
/// for other names, by a first line that is a YAML key (`all:`) or `---`.
pub fn import_file(path: &Path) -> Result<Imported, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecError::file(path, format!("cannot read: {e}"), "check the path; the inventory must be UTF-8 text")
    })?;
    import_str(&path.display().to_string(), &text)
}

/// Convert inventory text; `name` is used in messages and decides the format
/// like [`import_file`].
pub fn import_str(name: &str, text: &str) -> Result<Imported, SpecError> {
    let src = Src { name, text };
    let model = if looks_like_yaml(name, text) { yaml::parse(&src)? } else { ini::parse(&src)? };
    resolve::resolve(&src, model)
}

fn looks_like_yaml(name: &str, text: &str) -> bool {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yml" | "yaml" | "json") {
        return true;
    }
    if matches!(ext, "ini" | "cfg") {
        return false;
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    first.is_some_and(|l| l == "---" || l.starts_with('{') || (l.ends_with(':') && !l.starts_with('[')))
}

/// The input file, for diagnostics.
pub(crate) struct Src<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl Src<'_> {
    /// An error at a 1-based line, underlining it.
    pub fn err_line(&self, line: usize, message: impl Into<String>, help: impl Into<String>) -> SpecError {
        let span = line_span(self.text, line.max(1));
        SpecError::at(self.name, self.text, span, message, "here", help)
    }

    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.name)
    }
}

/// Both formats parse into this: what the file says, before any resolution.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub groups: BTreeMap<String, Group>,
    pub hosts: BTreeMap<String, HostDecl>,
}

#[derive(Debug, Default)]
pub(crate) struct Group {
    pub vars: Vars,
    pub children: BTreeSet<String>,
    pub hosts: BTreeSet<String>,
    /// Where it was first declared (or referenced).
    pub line: usize,
}

#[derive(Debug, Default)]
pub(crate) struct HostDecl {
    pub vars: Vars,
}

pub(crate) type Vars = BTreeMap<String, Var>;

/// One variable as written: its value in TOML terms, or why it has none.
#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub value: Result<toml::Value, String>,
    pub line: usize,
}

impl Model {
    pub fn group(&mut self, name: &str, line: usize) -> &mut Group {
        self.groups.entry(name.to_string()).or_insert_with(|| Group { line, ..Group::default() })
    }

    /// Declare `host` (again: Ansible merges repeated declarations, later
    /// vars winning) in `group`.
    pub fn add_host(&mut self, group: &str, host: &str, vars: Vars, line: usize) {
        self.group(group, line).hosts.insert(host.to_string());
        self.hosts.entry(host.to_string()).or_default().vars.extend(vars);
    }
}

/// Byte range of 1-based `line` in `text` (its end when past the last line).
fn line_span(text: &str, line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return start..start + l.trim_end_matches(['\n', '\r']).len();
        }
        start += l.len();
    }
    text.len()..text.len()
}
