//! Which Debian mirror debootstrap downloads from.
//!
//! No mirror is written in the source: the controller's own apt
//! configuration already names one that works from this machine (often the
//! only network it can reach), so we read it, in apt's two formats, and let
//! `DROVER_LAB_MIRROR` override it.

use std::fs;
use std::path::Path;

use crate::error::LabError;

/// The mirror for `suite`: `override_` (from [`crate::EnvVars::MIRROR`]), else the first apt source
/// of type `deb` that lists `suite` itself (not `suite-security` etc.).
pub fn find(override_: Option<&str>, suite: &'static str) -> Result<String, LabError> {
    if let Some(m) = override_.filter(|m| !m.is_empty()) {
        return Ok(m.to_string());
    }
    let mut files: Vec<_> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    for path in &files {
        let Ok(text) = fs::read_to_string(path) else { continue };
        let found = match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => from_deb822(&text, suite),
            Some("list") => from_one_line(&text, suite),
            _ => None,
        };
        if let Some(url) = found {
            return Ok(url);
        }
    }
    fs::read_to_string(Path::new("/etc/apt/sources.list"))
        .ok()
        .and_then(|text| from_one_line(&text, suite))
        .ok_or(LabError::NoMirror { suite })
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`), separated by blank lines.
pub fn from_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v.first().is_none_or(|e| e != "no"));
        let is_deb = field("Types")?.iter().any(|t| t == "deb");
        let has_suite = field("Suites")?.iter().any(|s| s == suite);
        if enabled && is_deb && has_suite {
            field("URIs")?.into_iter().next()
        } else {
            None
        }
    })
}

/// One-line format: `deb [options] URL suite components…`.
pub fn from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb")?;
        if !rest.starts_with(char::is_whitespace) {
            return None; // deb-src
        }
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            rest = rest.split_once(']')?.1.trim_start();
        }
        let mut words = rest.split_whitespace();
        let url = words.next()?;
        (words.next()? == suite).then(|| url.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_picks_the_suite_not_security() {
        let text = "Types: deb\n# http://snapshot.example/archive/debian/20250520T000000Z\n\
                    URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(from_deb822(text, "bookworm").as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(from_deb822(text, "bookworm-security").as_deref(), Some("http://mirror.example/debian-security"));
        assert_eq!(from_deb822(text, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_and_source_only() {
        let text = "Types: deb-src\nURIs: http://a/\nSuites: bookworm\n\n\
                    Types: deb\nURIs: http://b/\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb deb-src\nURIs: http://c/ http://d/\nSuites: bookworm\n";
        assert_eq!(from_deb822(text, "bookworm").as_deref(), Some("http://c/"));
    }

    #[test]
    fn one_line_format() {
        let text = "# deb http://commented/ bookworm main\n\
                    deb-src http://src/ bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n";
        assert_eq!(from_one_line(text, "bookworm").as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(from_one_line("deb http://x/ bookworm-updates main", "bookworm"), None);
    }

    #[test]
    fn override_wins() {
        assert_eq!(find(Some("http://local/debian"), "bookworm").unwrap(), "http://local/debian");
    }
}
