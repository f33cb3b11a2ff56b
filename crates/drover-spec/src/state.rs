//! `[state]` in drover.toml, read on its own: commands that only touch the
//! state store (`history`, `drain`, `rollout status`) must not need the
//! whole project to load.

use std::path::Path;
use std::time::Duration;

use crate::files::ProjectFile;
use crate::{parse_duration, SpecError};

/// Where the project's state lives and how long PostgreSQL host locks last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSettings {
    /// `postgres://…`, `sqlite://path`, a path, or `None` for
    /// `.drover/state.db`.
    pub url: Option<String>,
    pub lock_lease: Option<Duration>,
}

/// The `[state]` section of `dir/drover.toml` (defaults when the file or
/// the section is absent).
pub fn settings(dir: &Path) -> Result<StateSettings, SpecError> {
    let Ok(text) = std::fs::read_to_string(dir.join("drover.toml")) else { return Ok(StateSettings::default()) };
    let pf: ProjectFile = toml::from_str(&text).map_err(|e| SpecError::toml("drover.toml", &text, &e))?;
    let url = match pf.state.url {
        Some(u) => {
            let v = u.get_ref();
            let ok =
                ["postgres://", "postgresql://", "sqlite://"].iter().any(|p| v.starts_with(p)) || !v.contains("://");
            if !ok || v.is_empty() {
                return Err(SpecError::at(
                    "drover.toml",
                    &text,
                    u.span(),
                    "not a state store URL",
                    "here",
                    "write postgres://user@host/db (PostgreSQL), or a path / sqlite://path (SQLite); leave it out for .drover/state.db",
                ));
            }
            Some(v.clone())
        }
        None => None,
    };
    let lock_lease = match pf.state.lock_lease {
        Some(l) => {
            Some(parse_duration(l.get_ref()).ok().filter(|d| *d >= Duration::from_secs(1)).ok_or_else(|| {
                SpecError::at(
                    "drover.toml",
                    &text,
                    l.span(),
                    "not a lock lease",
                    "here",
                    "write a duration of at least 1s, such as 30s (the default)",
                )
            })?)
        }
        None => None,
    };
    Ok(StateSettings { url, lock_lease })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_section_is_read_and_bad_values_point_at_their_line() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(settings(d.path()).unwrap(), StateSettings::default());
        std::fs::write(d.path().join("drover.toml"), "[state]\nurl = \"postgres://db/fleet\"\nlock-lease = \"10s\"\n")
            .unwrap();
        let s = settings(d.path()).unwrap();
        assert_eq!((s.url.as_deref(), s.lock_lease), (Some("postgres://db/fleet"), Some(Duration::from_secs(10))));
        std::fs::write(d.path().join("drover.toml"), "[state]\nurl = \"mysql://db/fleet\"\n").unwrap();
        let e = format!("{:?}", miette::Report::new(settings(d.path()).unwrap_err()));
        assert!(e.contains("not a state store URL") && e.contains("drover.toml") && e.contains("postgres://"), "{e}");
        std::fs::write(d.path().join("drover.toml"), "[state]\nlock-lease = \"0s\"\n").unwrap();
        let e = format!("{:?}", miette::Report::new(settings(d.path()).unwrap_err()));
        assert!(e.contains("not a lock lease") && e.contains("at least 1s"), "{e}");
    }
}
