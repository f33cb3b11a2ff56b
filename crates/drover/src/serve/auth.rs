//! Who may do what: a token file (`name role token` per line; roles
//! `viewer` reads, `operator` may also act), and CSRF protection for every
//! action.
//!
//! A browser presents its token once (`/login?token=…` sets an HttpOnly,
//! SameSite=Strict cookie); scripts send `Authorization: Bearer …`.
//! Actions are POSTs that must also carry `X-Drover-CSRF`: a value derived
//! from the server's per-start secret and the token's name, which the page
//! reads from `/api/session`. Another site can make a browser send the
//! cookie, but cannot read that value nor set the header cross-origin.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "{path}:{line}: {msg}; each line is `name role token` (role viewer or operator, token at least 16 characters)"
    )]
    Line { path: String, line: usize, msg: String },
    #[error("token file {0} has no tokens; add lines `name role token`")]
    Empty(String),
}

pub struct Tokens {
    /// (token, identity); few entries, compared in constant time.
    entries: Vec<(String, Identity)>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: p.clone(), source })?;
        Tokens::parse(&p, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Tokens, TokenError> {
        let mut entries: Vec<(String, Identity)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |msg: String| TokenError::Line { path: path.into(), line: i + 1, msg };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let [name, role, token] = f[..] else {
                return Err(err(format!("expected 3 fields, found {}", f.len())));
            };
            let role = match role {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                other => return Err(err(format!("unknown role `{other}`"))),
            };
            if token.len() < 16 {
                return Err(err(format!("token for `{name}` is too short ({} characters)", token.len())));
            }
            if entries.iter().any(|(t, id)| t == token || id.name == name) {
                return Err(err(format!("`{name}` or its token appears twice")));
            }
            entries.push((token.into(), Identity { name: name.into(), role }));
        }
        if entries.is_empty() {
            return Err(TokenError::Empty(path.into()));
        }
        Ok(Tokens { entries })
    }

    pub fn check(&self, token: &str) -> Option<&Identity> {
        self.entries.iter().find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes())).map(|(_, id)| id)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSRF value for `name` under this server's secret.
pub fn csrf(key: &[u8; 32], name: &str) -> String {
    blake3::keyed_hash(key, name.as_bytes()).to_hex().to_string()
}

pub fn csrf_ok(key: &[u8; 32], name: &str, given: &str) -> bool {
    constant_time_eq(csrf(key, name).as_bytes(), given.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_errors_name_the_line() {
        let e = Tokens::parse("t", "# c\nalice operator 0123456789abcdef\nbob admin 0123456789abcdeX\n").err().unwrap();
        assert!(e.to_string().starts_with("t:3: unknown role `admin`"), "{e}");
        let e = Tokens::parse("t", "alice viewer short\n").err().unwrap();
        assert!(e.to_string().starts_with("t:1: token for `alice` is too short"), "{e}");
        let e = Tokens::parse("t", "alice viewer\n").err().unwrap();
        assert!(e.to_string().starts_with("t:1: expected 3 fields"), "{e}");
        let e = Tokens::parse("t", "a viewer 0123456789abcdef\nb viewer 0123456789abcdef\n").err().unwrap();
        assert!(e.to_string().starts_with("t:2:"), "{e}");
        assert!(matches!(Tokens::parse("t", "# nothing\n"), Err(TokenError::Empty(_))));
        let t = Tokens::parse("t", "alice operator 0123456789abcdef\n").unwrap();
        assert_eq!(t.check("0123456789abcdef").map(|i| i.role), Some(Role::Operator));
        assert!(t.check("0123456789abcdeX").is_none());
    }
}
