//! `volumes = ["data:/var/lib/db", "/srv/shared:/shared:ro"]`, compose's
//! short syntax: a name is a managed directory on the host
//! (`/var/lib/drover/volumes/<service>/<name>`), created when missing and
//! never touched by a generation; an absolute path is a bind mount of a
//! host directory.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    Named(String),
    Bind(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub kind: VolumeKind,
    /// Where it appears inside the container.
    pub target: String,
    pub readonly: bool,
}

impl Volume {
    /// One entry of `volumes`; the error says what is wrong (the caller
    /// adds file and line).
    pub fn parse(s: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [src, tgt] => (*src, *tgt, None),
            [src, tgt, m] => (*src, *tgt, Some(*m)),
            [_] => return Err(format!("{s:?} has no source: anonymous volumes are not supported")),
            _ => return Err(format!("{s:?} has too many ':'")),
        };
        let readonly = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(format!("{s:?}: mode {m:?} is neither ro nor rw")),
        };
        if !clean_absolute(target) || target == "/" {
            return Err(format!("{s:?}: the target {target:?} must be an absolute path inside the container, not /"));
        }
        let kind = if source.starts_with('/') {
            if !clean_absolute(source) {
                return Err(format!("{s:?}: the host path {source:?} must be a clean absolute path"));
            }
            VolumeKind::Bind(source.to_string())
        } else if valid_name(source) {
            VolumeKind::Named(source.to_string())
        } else {
            return Err(format!(
                "{s:?}: {source:?} is neither a volume name (letters, digits, - _ .) nor an absolute host path"
            ));
        };
        Ok(Volume { kind, target: target.trim_end_matches('/').to_string(), readonly })
    }

    /// The host directory mounted: a named volume's managed directory or the
    /// bind mount's source.
    pub fn host_path(&self, service: &str) -> String {
        match &self.kind {
            VolumeKind::Named(n) => format!("{}/{service}/{n}", super::VOLUMES),
            VolumeKind::Bind(p) => p.clone(),
        }
    }
}

/// A volume (or service) name: safe as one path component and in a shell word.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty() && !n.starts_with('.') && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && p[1..].split('/').all(|c| !matches!(c, "." | ".."))
        && !p.contains("//")
        && !p.contains(['\n', '\0', ','])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_compose_short_syntax_and_refuse_the_rest() {
        let v = Volume::parse("data:/var/lib/db").unwrap();
        assert_eq!(v, Volume { kind: VolumeKind::Named("data".into()), target: "/var/lib/db".into(), readonly: false });
        assert_eq!(v.host_path("db"), "/var/lib/drover/volumes/db/data");
        let b = Volume::parse("/srv/shared:/shared:ro").unwrap();
        assert_eq!(
            b,
            Volume { kind: VolumeKind::Bind("/srv/shared".into()), target: "/shared".into(), readonly: true }
        );
        for (bad, why) in [
            ("/var/lib/db", "anonymous"),
            ("data:relative", "absolute path inside"),
            ("data:/x:rx", "neither ro nor rw"),
            ("../up:/x", "neither a volume name"),
            ("/srv/../etc:/x", "clean absolute"),
            ("data:/", "not /"),
        ] {
            let e = Volume::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
