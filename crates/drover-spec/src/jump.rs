//! `proxy-jump = "user@bastion:22"`: the jump hosts a host is reached
//! through, as OpenSSH's `ProxyJump` writes them (`[user@]host[:port]`,
//! several comma-separated, first hop first).
//!
//! Set per host, per group (`[groups.NAME] proxy-jump`), in inventory.toml's
//! `[defaults]` or drover.toml's `[defaults]`; the most specific wins, and
//! `proxy-jump = ""` on a host means "direct" even when a default sets one.
//! A hop without `user@` logs in as the host's own user. Each hop's host key
//! is pinned like any host's: a `known_hosts` line naming the hop's address
//! (`drover trust` writes it).

use crate::diag::SpecError;

/// One jump host on the way to a host, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    pub user: String,
    pub address: String,
    pub port: u16,
    /// Pinned host keys (OpenSSH public key lines) from `known_hosts`,
    /// looked up by `address`. Empty: the hop is refused until trusted.
    pub host_keys: Vec<String>,
}

/// A hop as written: user (if given), address, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    pub user: Option<String>,
    pub address: String,
    pub port: u16,
}

/// Parse a `proxy-jump` value. Empty (or only spaces): no jump.
pub fn parse(value: &str) -> Result<Vec<HopSpec>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value.split(',').map(|part| parse_hop(part.trim())).collect()
}

fn parse_hop(s: &str) -> Result<HopSpec, String> {
    if s.is_empty() {
        return Err("an empty hop (two commas, or a comma at an end)".into());
    }
    if s.contains("://") {
        return Err(format!("{s:?}: write a hop as user@host:port, not a URL"));
    }
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() && !u.contains(char::is_whitespace) => (Some(u.to_string()), r),
        Some(_) => return Err(format!("{s:?}: empty or malformed user before '@'")),
        None => (None, s),
    };
    let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
        // [v6]:port or [v6]
        let (a, after) = inner.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (a, Some(p)),
            None if after.is_empty() => (a, None),
            None => return Err(format!("{s:?}: unexpected text after ']'")),
        }
    } else {
        match rest.split_once(':') {
            Some((a, p)) if !p.contains(':') => (a, Some(p)),
            Some(_) => return Err(format!("{s:?}: an IPv6 address needs brackets: [addr]:port")),
            None => (rest, None),
        }
    };
    if address.is_empty() || address.contains(char::is_whitespace) || address.contains('/') {
        return Err(format!("{s:?}: no host (or a malformed one)"));
    }
    let port = match port {
        None => 22,
        Some(p) => {
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{s:?}: port {p:?} is not 1-65535"))?
        }
    };
    Ok(HopSpec { user, address: address.to_string(), port })
}

/// `value` (written at `span` of file `name`, whose text is `text`)
/// resolved for a host logging in as `user`; `keys_of(address)` gives a
/// hop's pinned keys. A malformed value is an error at its line.
pub(crate) fn resolve(
    value: &toml::Spanned<String>,
    name: &str,
    text: &str,
    user: &str,
    keys_of: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<JumpHop>, SpecError> {
    let hops = parse(value.get_ref()).map_err(|why| {
        SpecError::at(
            name,
            text,
            value.span(),
            format!("proxy-jump: {why}"),
            "this value",
            "write the jump hosts as \"user@host:port\", several comma-separated (\"admin@a:22,admin@b\"), first hop first",
        )
    })?;
    Ok(hops
        .into_iter()
        .map(|h| JumpHop {
            user: h.user.unwrap_or_else(|| user.to_string()),
            host_keys: keys_of(&h.address),
            address: h.address,
            port: h.port,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, address: &str, port: u16) -> HopSpec {
        HopSpec { user: user.map(String::from), address: address.into(), port }
    }

    #[test]
    fn parses_openssh_proxy_jump_forms() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("bastion").unwrap(), vec![hop(None, "bastion", 22)]);
        assert_eq!(parse("ops@10.0.0.1:2222").unwrap(), vec![hop(Some("ops"), "10.0.0.1", 2222)]);
        assert_eq!(
            parse("a@one, two:23").unwrap(),
            vec![hop(Some("a"), "one", 22), hop(None, "two", 23)],
            "chains are comma-separated, first hop first"
        );
        assert_eq!(parse("u@[fd00::1]:22").unwrap(), vec![hop(Some("u"), "fd00::1", 22)]);
    }

    #[test]
    fn refuses_malformed_hops_saying_why() {
        for (bad, why) in [
            ("a,,b", "empty hop"),
            ("@host", "user"),
            ("host:0", "port"),
            ("host:ssh", "port"),
            ("fd00::1", "brackets"),
            ("ssh://host", "URL"),
            ("u@", "no host"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn an_error_names_file_and_line() {
        let text = "[defaults]\nuser = \"root\"\nproxy-jump = \"a,,b\"\n";
        let start = text.find("\"a,,b\"").unwrap();
        let v = toml::Spanned::new(start..start + 6, "a,,b".to_string());
        let err = resolve(&v, "inventory.toml", text, "root", &|_| vec![]).unwrap_err();
        assert!(err.to_string().starts_with("inventory.toml:3: proxy-jump"), "{err}");
    }
}
