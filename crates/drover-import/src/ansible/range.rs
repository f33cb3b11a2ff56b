//! Host patterns: Ansible's ranges (`web[01:03].example.com`,
//! `db-[a:c]`, `node[0:10:5]`) and a trailing `:port`.
//!
//! The rules are Ansible's `expand_hostname_range` and `parse_address`: a
//! zero-padded start pads every name to its width (and then the end must have
//! the same width); letters range over `a-zA-Z`; ranges may repeat.

/// One host pattern → (names, port if the pattern had `:port`). `Err` is the
/// reason, for the caller to place at the line.
pub fn expand(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (host, port) = split_port(pattern)?;
    Ok((expand_ranges(&host)?, port))
}

/// `name:port` → (name, port). IPv6 literals have colons of their own: a
/// bare one has no port, a bracketed one may (`[fe80::1]:2222`).
fn split_port(pattern: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = pattern.strip_prefix('[') {
        if let Some((inner, after)) = rest.split_once(']') {
            if inner.contains(':') && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                let port = match after.strip_prefix(':') {
                    Some(p) => Some(parse_port(p, pattern)?),
                    None if after.is_empty() => None,
                    None => return Err(format!("`{pattern}`: unexpected text after the IPv6 address")),
                };
                return Ok((inner.to_string(), port));
            }
        }
    }
    let outside: Vec<usize> = colons_outside_brackets(pattern);
    match outside.as_slice() {
        [i] => Ok((pattern[..*i].to_string(), Some(parse_port(&pattern[i + 1..], pattern)?))),
        _ => Ok((pattern.to_string(), None)),
    }
}

fn colons_outside_brackets(s: &str) -> Vec<usize> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => out.push(i),
            _ => {}
        }
    }
    out
}

fn parse_port(p: &str, pattern: &str) -> Result<u16, String> {
    p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| format!("`{pattern}`: `{p}` is not a port number (1-65535)"))
}

/// Expand the first `[beg:end(:step)]` and recurse on the rest.
fn expand_ranges(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else { return Ok(vec![name.to_string()]) };
    let close = name[open..].find(']').map(|i| open + i).ok_or_else(|| format!("`{name}`: `[` without `]`"))?;
    let (head, spec, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let parts: Vec<&str> = spec.split(':').collect();
    let (beg, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, 1usize),
        [b, e, s] => (*b, *e, s.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("`{name}`: bad step `{s}`"))?),
        _ => return Err(format!("`{name}`: a host range is [begin:end] or [begin:end:step]")),
    };
    let beg = if beg.is_empty() { "0" } else { beg };
    if end.is_empty() {
        return Err(format!("`{name}`: the host range has no end value"));
    }
    let items = range_items(name, beg, end, step)?;
    let mut out = Vec::new();
    for item in items {
        out.extend(expand_ranges(&format!("{head}{item}{tail}"))?);
    }
    Ok(out)
}

fn range_items(name: &str, beg: &str, end: &str, step: usize) -> Result<Vec<String>, String> {
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let letter = |s: &str| (s.len() == 1).then(|| LETTERS.find(s)).flatten();
    if let (Some(b), Some(e)) = (letter(beg), letter(end)) {
        if b > e {
            return Err(format!("`{name}`: the range's begin `{beg}` is after its end `{end}`"));
        }
        return Ok(LETTERS[b..=e].chars().step_by(step).map(String::from).collect());
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("`{name}`: `{s}` is neither a number nor a letter"));
    let (b, e) = (num(beg)?, num(end)?);
    let width = if beg.len() > 1 && beg.starts_with('0') {
        if beg.len() != end.len() {
            return Err(format!("`{name}`: a zero-padded range needs begin and end of the same width"));
        }
        beg.len()
    } else {
        0
    };
    if b > e {
        return Err(format!("`{name}`: the range's begin {b} is after its end {e}"));
    }
    Ok((b..=e).step_by(step).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn names(p: &str) -> Vec<String> {
        expand(p).unwrap().0
    }

    #[test]
    fn ranges_expand_as_ansible_does() {
        assert_eq!(names("web[01:03].example.com"), ["web01.example.com", "web02.example.com", "web03.example.com"]);
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(names("n[0:10:5]"), ["n0", "n5", "n10"]);
        assert_eq!(names("r[1:2]u[a:b]"), ["r1ua", "r1ub", "r2ua", "r2ub"]);
        assert_eq!(names("x[:2]"), ["x0", "x1", "x2"]);
        assert_eq!(names("plain"), ["plain"]);
    }

    #[test]
    fn ports_split_off_but_not_from_ipv6() {
        assert_eq!(expand("web1:2222").unwrap(), (vec!["web1".to_string()], Some(2222)));
        assert_eq!(expand("web[1:2]:2200").unwrap().1, Some(2200));
        assert_eq!(expand("fe80::1").unwrap(), (vec!["fe80::1".to_string()], None));
        assert_eq!(expand("[fe80::1]:22").unwrap(), (vec!["fe80::1".to_string()], Some(22)));
    }

    #[test]
    fn bad_ranges_say_why() {
        for (p, why) in [
            ("w[1:]", "no end value"),
            ("w[01:100]", "same width"),
            ("w[3:1]", "after its end"),
            ("w[1:2:3:4]", "[begin:end]"),
            ("w[1:x]", "neither a number"),
            ("w[1:3", "without `]`"),
            ("w1:99999", "not a port"),
        ] {
            let e = expand(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
