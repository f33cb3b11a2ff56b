//! What package sources offer: Debian control stanzas from the controller's
//! apt (`apt-cache dumpavail`, its own configuration and downloaded lists:
//! every architecture dpkg knows, so with `dpkg --add-architecture arm64`
//! the arm64 lists too) or from a directory of `.deb` files (`dpkg-deb -f`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::PackageError;

/// Where a candidate's `.deb` comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// `apt-get download name:arch=version` (`name=version` for `all`).
    Apt,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Depends + Pre-Depends: groups of alternatives.
    pub depends: Vec<Vec<Dep>>,
    pub conflicts: Vec<Dep>,
    /// (virtual name, provided version).
    pub provides: Vec<(String, Option<String>)>,
    /// Essential or Priority: required: on every Debian system already.
    pub base: bool,
    pub filename: String,
    pub origin: Origin,
    /// Position of its source in `[packages] sources`.
    pub source: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    /// (operator, version)
    pub version: Option<(String, String)>,
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some((op, v)) => write!(f, "{} ({op} {v})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Every candidate of every source, by package name, in source order.
#[derive(Debug, Default)]
pub struct Index {
    pub by_name: HashMap<String, Vec<Candidate>>,
    /// Virtual name → real packages providing it.
    pub providers: HashMap<String, Vec<String>>,
}

impl Index {
    pub fn add(&mut self, c: Candidate) {
        for (v, _) in &c.provides {
            self.providers.entry(v.clone()).or_default().push(c.name.clone());
        }
        self.by_name.entry(c.name.clone()).or_default().push(c);
    }
}

/// Read one source: `"apt"` or a directory (relative to the project).
/// Only packages of `arch` or `all` are taken; the count is of those of
/// `arch` itself (none from apt means its lists for `arch` are absent).
pub fn read_source(
    project: &Path,
    source: &str,
    n: usize,
    arch: &str,
    index: &mut Index,
) -> Result<usize, PackageError> {
    let mut own = 0;
    if source == "apt" {
        let out = Command::new("apt-cache").arg("dumpavail").output().map_err(|e| PackageError::Source {
            source_name: "apt".into(),
            detail: format!("cannot run apt-cache: {e} (install apt, or use a directory of .deb files)"),
        })?;
        if !out.status.success() {
            return Err(PackageError::Source {
                source_name: "apt".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        for stanza in text.split("\n\n") {
            if let Some(c) = candidate(stanza, Origin::Apt, n).filter(|c| c.arch == arch || c.arch == "all") {
                own += usize::from(c.arch == arch);
                index.add(c);
            }
        }
        return Ok(own);
    }
    let dir = project.join(source);
    let rd = std::fs::read_dir(&dir).map_err(|e| PackageError::Source {
        source_name: dir.display().to_string(),
        detail: format!("cannot read the directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "deb")).collect();
    files.sort();
    for f in files {
        let out = Command::new("dpkg-deb").arg("-f").arg(&f).output().map_err(|e| PackageError::Source {
            source_name: dir.display().to_string(),
            detail: format!("cannot run dpkg-deb: {e}"),
        })?;
        if !out.status.success() {
            return Err(PackageError::Source {
                source_name: f.display().to_string(),
                detail: format!("not a readable .deb: {}", String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if let Some(mut c) = candidate(&text, Origin::File(f.clone()), n).filter(|c| c.arch == arch || c.arch == "all")
        {
            c.filename = name;
            own += usize::from(c.arch == arch);
            index.add(c);
        }
    }
    Ok(own)
}

/// Fields of one control stanza (continuation lines joined).
fn fields(stanza: &str) -> HashMap<&str, String> {
    let mut out: HashMap<&str, String> = HashMap::new();
    let mut last: Option<&str> = None;
    for line in stanza.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(k) = last {
                out.entry(k).or_default().push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.insert(k, v.trim().to_string());
            last = Some(k);
        }
    }
    out
}

fn candidate(stanza: &str, origin: Origin, source: usize) -> Option<Candidate> {
    let f = fields(stanza);
    let name = f.get("Package")?.clone();
    let version = f.get("Version")?.clone();
    let list = |k: &str| f.get(k).map(|s| parse_deps(s)).unwrap_or_default();
    let mut depends = list("Pre-Depends");
    depends.extend(list("Depends"));
    Some(Candidate {
        base: f.get("Essential").is_some_and(|e| e == "yes") || f.get("Priority").is_some_and(|p| p == "required"),
        arch: f.get("Architecture").cloned().unwrap_or_default(),
        conflicts: list("Conflicts").into_iter().chain(list("Breaks")).flatten().collect(),
        provides: list("Provides")
            .into_iter()
            .flatten()
            .map(|d| (d.name, d.version.filter(|(op, _)| op == "=").map(|(_, v)| v)))
            .collect(),
        filename: f.get("Filename").map(|p| p.rsplit('/').next().unwrap_or(p).to_string()).unwrap_or_default(),
        depends,
        name,
        version,
        origin,
        source,
    })
}

/// `a (>= 1), b | c:any (<< 2) [amd64] <!nocheck>` → groups of alternatives.
pub fn parse_deps(s: &str) -> Vec<Vec<Dep>> {
    s.split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    // `name:arch (op version) [archs] <profiles>`: the
                    // version's `<<`/`<=` must not be read as a profile.
                    let (name, rest) = match (alt.find('('), alt.find(')')) {
                        (Some(i), Some(j)) if j > i => (&alt[..i], Some(alt[i + 1..j].trim())),
                        _ => (alt, None),
                    };
                    let name = name.split(['[', '<']).next().unwrap_or("");
                    let name = name.split(':').next().unwrap_or(name).trim();
                    if name.is_empty() {
                        return None;
                    }
                    let version = rest.and_then(|r| {
                        let op_len = r.chars().take_while(|c| "<>=".contains(*c)).count();
                        let (op, v) = r.split_at(op_len);
                        (!op.is_empty()).then(|| (op.to_string(), v.trim().to_string()))
                    });
                    Some(Dep { name: name.to_string(), version })
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_fields_parse() {
        let d =
            parse_deps("libc6 (>= 2.2.5), libncurses6 (>= 6) | foo, perl:any, bar [amd64] <!nocheck>, k (<= 1.18~)");
        assert_eq!(d.len(), 5);
        assert_eq!(d[4][0], Dep { name: "k".into(), version: Some(("<=".into(), "1.18~".into())) });
        assert_eq!(d[0][0], Dep { name: "libc6".into(), version: Some((">=".into(), "2.2.5".into())) });
        assert_eq!(d[1].len(), 2);
        assert_eq!(d[2][0].name, "perl");
        assert_eq!(d[3][0], Dep { name: "bar".into(), version: None });
    }
}
