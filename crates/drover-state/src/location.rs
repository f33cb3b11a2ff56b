//! Where a project's state lives: a SQLite file or a PostgreSQL URL.

use std::path::{Path, PathBuf};

use crate::StateError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// The full URL (with its password, if any: never print it, use
    /// [`redact_url`]).
    Postgres(String),
}

impl Location {
    /// The project's store: `DROVER_STATE_URL` when set (so CI and a shared
    /// daemon can point every command at one database without editing the
    /// project), else `configured` (`[state] url` in drover.toml), else
    /// `<project>/.drover/state.db`. A relative SQLite path is relative to
    /// the project.
    pub fn resolve(project_dir: &Path, configured: Option<&str>) -> Result<Location, StateError> {
        let env = std::env::var("DROVER_STATE_URL").ok().filter(|s| !s.is_empty());
        match env.as_deref().or(configured) {
            None => Ok(Location::Sqlite(project_dir.join(".drover/state.db"))),
            Some(u) => Location::parse(project_dir, u),
        }
    }

    pub fn parse(project_dir: &Path, url: &str) -> Result<Location, StateError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Location::Postgres(url.to_string()));
        }
        if let Some(p) = url.strip_prefix("sqlite://") {
            return Ok(Location::Sqlite(project_dir.join(p)));
        }
        if url.contains("://") {
            return Err(StateError::BadUrl {
                url: redact_url(url),
                reason: "unsupported scheme: use postgres://user@host/db, sqlite://path, or leave it unset for .drover/state.db".into(),
            });
        }
        Ok(Location::Sqlite(project_dir.join(url)))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(u) => redact_url(u),
        }
    }
}

/// `url` with any password replaced by `***`: in the user-info part
/// (`postgres://u:secret@h/db`) and in a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(auth_end);
    let auth = match auth.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => auth.to_string(),
        },
        None => auth.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> =
                query
                    .split('&')
                    .map(|kv| {
                        if kv.to_ascii_lowercase().starts_with("password=") {
                            "password=***".into()
                        } else {
                            kv.into()
                        }
                    })
                    .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{auth}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_a_described_url() {
        for (u, want) in [
            ("postgres://drover:s3cret@db.example:5432/fleet", "postgres://drover:***@db.example:5432/fleet"),
            (
                "postgres://drover@db/fleet?password=s3cret&sslmode=require",
                "postgres://drover@db/fleet?password=***&sslmode=require",
            ),
            ("postgresql://u:p%40ss@h", "postgresql://u:***@h"),
            ("postgres://h/db", "postgres://h/db"),
        ] {
            assert_eq!(redact_url(u), want);
        }
    }

    #[test]
    fn urls_and_paths_pick_their_backend() {
        let d = Path::new("/p");
        assert!(Location::parse(d, "postgres://h/db").unwrap().is_postgres());
        assert_eq!(Location::parse(d, "sqlite://x.db").unwrap(), Location::Sqlite("/p/x.db".into()));
        assert_eq!(Location::parse(d, "/abs/s.db").unwrap(), Location::Sqlite("/abs/s.db".into()));
        let e = Location::parse(d, "mysql://u:pw@h/db").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme") && e.contains("mysql://u:***@h/db") && !e.contains("pw"), "{e}");
    }
}
