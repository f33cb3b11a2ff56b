//! ssh_config and known_hosts patterns: `*` any run, `?` one character.

/// Whether `text` matches `pattern` (iterative, with backtracking to the
/// last `*`: linear in practice, no recursion).
pub(crate) fn wildmatch(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A comma list of patterns (`web*,!web3,10.0.0.?`) as in known_hosts:
/// some pattern matches one of `names` and no negated one does.
pub(crate) fn list_matches(list: &str, names: &[&str]) -> bool {
    let mut hit = false;
    for pat in list.split(',') {
        let (neg, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if names.iter().any(|n| wildmatch(&pat.to_ascii_lowercase(), &n.to_ascii_lowercase())) {
            if neg {
                return false;
            }
            hit = true;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_openssh_does() {
        assert!(wildmatch("*", "anything"));
        assert!(wildmatch("web*", "web12"));
        assert!(!wildmatch("web*", "db1"));
        assert!(wildmatch("h?", "h1"));
        assert!(!wildmatch("h?", "h12"));
        assert!(wildmatch("*.example.com", "a.b.example.com"));
        assert!(wildmatch("10.0.*.1", "10.0.7.1"));
        assert!(!wildmatch("", "x"));
    }

    #[test]
    fn negation_in_a_list_wins() {
        assert!(list_matches("web*,!web3", &["web1"]));
        assert!(!list_matches("web*,!web3", &["web3"]));
        assert!(list_matches("h1,10.0.0.1", &["x", "10.0.0.1"]));
    }
}
