//! Reading ssh_config files into `Host` blocks, `Include`s expanded in
//! place, each setting with the file and line it was written on.

use std::path::{Path, PathBuf};

use super::pattern::wildmatch;
use crate::diag::SpecError;

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One keyword line: the keyword lower-cased, its arguments unquoted.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    pub key: String,
    pub args: Vec<String>,
    pub origin: Origin,
}

/// The lines under one `Host` line (or before the first: patterns `*`).
/// `Match` blocks are not supported: their settings apply to no host.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// (negated, pattern), lower-cased.
    pub patterns: Vec<(bool, String)>,
    pub settings: Vec<Setting>,
}

impl Block {
    /// OpenSSH's rule: some pattern matches and no negated one does.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let mut hit = false;
        for (neg, p) in &self.patterns {
            if wildmatch(p, &host) {
                if *neg {
                    return false;
                }
                hit = true;
            }
        }
        hit
    }
}

const MAX_DEPTH: usize = 16;

/// Parse `path` (and what it includes) into blocks, in file order.
pub(crate) fn parse_file(path: &Path, home: &Path) -> Result<Vec<Block>, SpecError> {
    let mut blocks = vec![Block { patterns: vec![(false, "*".into())], settings: vec![] }];
    read_into(path, home, &mut blocks, 0)?;
    Ok(blocks)
}

fn read_into(path: &Path, home: &Path, blocks: &mut Vec<Block>, depth: usize) -> Result<(), SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecError::file(path, format!("cannot read ssh_config: {e}"), "check the path (-F, [ssh] config)")
    })?;
    // The Host line this file was included under.
    let outer = blocks.last().map(|b| b.patterns.clone()).unwrap_or_default();
    for (i, raw) in text.lines().enumerate() {
        let origin = Origin { file: path.to_path_buf(), line: i + 1 };
        let Some((key, args)) = split(raw) else { continue };
        let bad = |what: String| SpecError::file(Path::new(&origin.to_string()), what, "see ssh_config(5)");
        match key.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(bad("`Host` needs at least one pattern".into()));
                }
                let patterns = args
                    .iter()
                    .map(|a| match a.strip_prefix('!') {
                        Some(p) => (true, p.to_ascii_lowercase()),
                        None => (false, a.to_ascii_lowercase()),
                    })
                    .collect();
                blocks.push(Block { patterns, settings: vec![] });
            }
            // Unsupported: a block that applies to no host.
            "match" => blocks.push(Block { patterns: vec![], settings: vec![] }),
            "include" => {
                if depth >= MAX_DEPTH {
                    return Err(bad("Include nested too deeply (a loop?)".into()));
                }
                for arg in &args {
                    for file in include_targets(arg, path, home) {
                        read_into(&file, home, blocks, depth + 1)?;
                    }
                }
            }
            _ => {
                if args.is_empty() {
                    return Err(bad(format!("`{key}` has no value")));
                }
                blocks.last_mut().expect("a block").settings.push(Setting { key, args, origin });
            }
        }
    }
    // An included file's Host blocks end with it: what follows the Include
    // in the including file continues under that file's own Host line.
    if depth > 0 && blocks.last().map(|b| &b.patterns) != Some(&outer) {
        blocks.push(Block { patterns: outer, settings: vec![] });
    }
    Ok(())
}

/// `Include` arguments: `~` expanded, relative to `~/.ssh` (as OpenSSH does
/// for user configs; here also relative to the including file's directory
/// when that is not `~/.ssh`), a `*`/`?` glob in the file name.
fn include_targets(arg: &str, from: &Path, home: &Path) -> Vec<PathBuf> {
    let p = super::expand_tilde(arg, home);
    let p = if p.is_absolute() { p } else { from.parent().unwrap_or(Path::new(".")).join(p) };
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if p.exists() { vec![p] } else { vec![] };
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildmatch(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

/// `Keyword args…` or `Keyword=args…`; comments and blank lines are None.
fn split(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let cut = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let key = line[..cut].to_ascii_lowercase();
    let rest = line[cut..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((key, words(rest)))
}

/// Whitespace-separated words; double quotes group.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            '#' if !quoted && !any => break,
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}
