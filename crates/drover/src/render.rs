//! `drover render HOST PATH`: one host's copy of one file, rendered here
//! exactly as `apply` would ship it, with the facts the host last reported
//! (placeholders when it never reported any). Secret values are replaced by
//! `<secret NAME>` unless asked for.

use drover_proto::{EntryKind, Facts, Supervisor};
use drover_spec::{BlobSource, Project};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no host {host:?} in the inventory (hosts: {known})")]
    UnknownHost { host: String, known: String },
    #[error("{path} is not among the files host {host} gets{hint}")]
    UnknownPath { host: String, path: String, hint: String },
    #[error("{path} is a {kind} on the host, not a file")]
    NotAFile { path: String, kind: &'static str },
    #[error(transparent)]
    Spec(#[from] Box<drover_spec::SpecError>),
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("secret {0}: {1}")]
    Secret(String, String),
}

/// What was rendered, and how.
pub struct Rendered {
    pub content: Vec<u8>,
    /// The host never reported facts: templates saw placeholders.
    pub placeholder_facts: bool,
    /// Secrets whose values were replaced by `<secret NAME>`.
    pub redacted: Vec<String>,
}

/// `path` (absolute, as on the host) as `host` would get it.
pub fn file(
    project: &Project,
    host: &str,
    path: &str,
    generation: u64,
    show_secrets: bool,
) -> Result<Rendered, RenderError> {
    let Some(h) = project.hosts.iter().find(|h| h.name == host) else {
        let known = project.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(RenderError::UnknownHost { host: host.into(), known });
    };
    let cached = project.cached_facts(host).cloned();
    let placeholder_facts = cached.is_none();
    let facts = cached.unwrap_or(Facts { supervisor: Some(Supervisor::Runit), ..Default::default() });
    let compiled = project.compile(h, &facts, generation).map_err(Box::new)?;
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let Some(entry) = compiled.manifest.entry(&path) else {
        // Files in the same directory, or with the same name elsewhere.
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let near: Vec<&str> = compiled
            .manifest
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .filter(|e| e.path.rsplit_once('/').is_some_and(|(d, n)| d == dir || n == name))
            .map(|e| e.path.as_str())
            .take(5)
            .collect();
        let hint = if near.is_empty() { String::new() } else { format!("; did you mean {}?", near.join(", ")) };
        return Err(RenderError::UnknownPath { host: host.into(), path, hint });
    };
    let hash = match &entry.kind {
        EntryKind::File { hash, .. } => *hash,
        EntryKind::Symlink { .. } => return Err(RenderError::NotAFile { path, kind: "symlink" }),
        EntryKind::Dir => return Err(RenderError::NotAFile { path, kind: "directory" }),
    };
    let mut content = match compiled.blobs.get(&hash) {
        Some(BlobSource::Bytes(b)) => b.to_vec(),
        Some(BlobSource::File(f)) => std::fs::read(f).map_err(|e| RenderError::Read(f.display().to_string(), e))?,
        None => Vec::new(),
    };
    let mut redacted = Vec::new();
    if !show_secrets {
        for name in compiled.secrets.get(&path).into_iter().flatten() {
            // An encrypted layer file (named by its `layers/…` path) is a
            // secret as a whole; a template holds named secrets' values.
            content = if name.starts_with("layers/") {
                format!("<secret {name}>\n").into_bytes()
            } else {
                let secret =
                    project.secret_store().get(name).map_err(|e| RenderError::Secret(name.clone(), e.to_string()))?;
                replace_all(&content, secret.expose(), format!("<secret {name}>").as_bytes())
            };
            redacted.push(name.clone());
        }
    }
    Ok(Rendered { content, placeholder_facts, redacted })
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_all;

    #[test]
    fn every_occurrence_is_replaced() {
        assert_eq!(replace_all(b"a=s3cr3t b=s3cr3t", b"s3cr3t", b"<secret x>"), b"a=<secret x> b=<secret x>");
        assert_eq!(replace_all(b"nothing", b"", b"!"), b"nothing");
        assert_eq!(replace_all(b"s3cr3t", b"s3cr3t", b"<secret x>"), b"<secret x>");
    }
}
