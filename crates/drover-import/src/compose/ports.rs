//! `ports:`: drover runs containers on the host's network, so a container
//! answers on its own port of every host address. A port published on the
//! same number needs nothing; one published on another number cannot be
//! mapped and is reported with what to change.

use super::yaml::{Node, V};

/// What one `ports` entry means on the host's network.
#[derive(Debug, PartialEq)]
pub(super) enum Port {
    /// The container's port(s), reachable as they are (`"8080:8080"`,
    /// `"3000"`, `"127.0.0.1:5432:5432"`): the note for the service file.
    Same(String),
    /// Published on another port: (host, container) as written.
    Remapped(String, String),
    Bad(String),
}

pub(super) fn parse(n: &Node) -> Port {
    match &n.v {
        V::Map(_) => {
            let target = n.get("target").and_then(Node::scalar).unwrap_or_default();
            let published = n.get("published").and_then(Node::scalar);
            let proto = n.get("protocol").and_then(Node::scalar).unwrap_or_else(|| "tcp".into());
            check(published.as_deref(), &target, &proto)
        }
        _ => match n.scalar() {
            None => Port::Bad("a port is a string such as \"8080:80\" or a mapping with `target`".into()),
            Some(s) => {
                let (spec, proto) = s.split_once('/').map_or((s.as_str(), "tcp"), |(a, b)| (a, b));
                // [IP:][HOST:]CONTAINER; an IPv6 address is in brackets.
                let spec = match spec.rfind(']') {
                    Some(i) => spec[i + 1..].trim_start_matches(':'),
                    None => spec,
                };
                let parts: Vec<&str> = spec.split(':').collect();
                let (host, container) = match parts.as_slice() {
                    [c] => (None, *c),
                    [h, c] => (Some(*h), *c),
                    [_, h, c] => (Some(*h), *c),
                    _ => return Port::Bad(format!("{s:?} is not a port mapping")),
                };
                check(host.filter(|h| !h.is_empty()), container, proto)
            }
        },
    }
}

fn check(host: Option<&str>, container: &str, proto: &str) -> Port {
    if container.is_empty() || !container.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Port::Bad(format!("{container:?} is not a container port"));
    }
    match host {
        Some(h) if h != container => Port::Remapped(format!("{h}/{proto}"), format!("{container}/{proto}")),
        _ => Port::Same(format!("{container}/{proto}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Node {
        Node { line: 1, v: V::Str(t.into()) }
    }

    #[test]
    fn short_syntax_tells_same_ports_from_remapped_ones() {
        assert_eq!(parse(&s("8080:8080")), Port::Same("8080/tcp".into()));
        assert_eq!(parse(&s("3000")), Port::Same("3000/tcp".into()));
        assert_eq!(parse(&s("127.0.0.1:5432:5432")), Port::Same("5432/tcp".into()));
        assert_eq!(parse(&s("[::1]:53:53/udp")), Port::Same("53/udp".into()));
        assert_eq!(parse(&s("127.0.0.1::80")), Port::Same("80/tcp".into()));
        assert_eq!(parse(&s("80:8000")), Port::Remapped("80/tcp".into(), "8000/tcp".into()));
        assert_eq!(parse(&s("9000-9001:9000-9001")), Port::Same("9000-9001/tcp".into()));
        assert!(matches!(parse(&s("a:b:c:d")), Port::Bad(_)));
    }
}
