//! Debian version comparison, as `dpkg --compare-versions` does it
//! (deb-version(7)): epoch, then upstream version, then revision, each
//! compared in alternating non-digit and digit runs, `~` sorting first.
//!
//! Here because both sides need it: the controller to resolve dependency
//! constraints, the agent to never downgrade an installed package.

use std::cmp::Ordering;

pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| runs(ua, ub)).then_with(|| runs(ra, rb))
}

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn runs(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit()) || b.first().is_some_and(|c| !c.is_ascii_digit()) {
            let (ca, cb) = (order(a.first().copied()), order(b.first().copied()));
            if ca != cb {
                return ca.cmp(&cb);
            }
            a = &a[1.min(a.len())..];
            b = &b[1.min(b.len())..];
        }
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = std::str::from_utf8(&a[..da]).unwrap_or("0").trim_start_matches('0');
        let nb = std::str::from_utf8(&b[..db]).unwrap_or("0").trim_start_matches('0');
        let c = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if c != Ordering::Equal {
            return c;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

/// Does `have` satisfy `op want` (`<<`, `<=`, `=`, `>=`, `>>`)?
pub fn satisfies(have: &str, op: &str, want: &str) -> bool {
    let c = compare(have, want);
    match op {
        "<<" | "<" => c == Ordering::Less,
        "<=" => c != Ordering::Greater,
        "=" => c == Ordering::Equal,
        ">=" => c != Ordering::Less,
        ">>" | ">" => c == Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_dpkg() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1:0.1", "2.0", Greater),
            ("2.2.7-1", "2.2.7-1+deb12u1", Less),
            ("6.4-4", "6.4-10", Less),
            ("5.02-1+b1", "5.02-1", Greater),
            ("1.0a", "1.0+", Less),
            ("1.001", "1.1", Equal),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
        }
        assert!(satisfies("2.36-9", ">=", "2.2.5"));
        assert!(!satisfies("6.4-4", "=", "6.4-5"));
    }
}
