//! A flattened image as manifest entries: every file of the image at
//! `/var/lib/drover/containers/<service>/rootfs/<path>`, content-addressed
//! like any managed file, so dedup, deltas, the atomic swap, rollback and
//! GC apply to images unchanged.

use std::sync::Arc;

use drover_proto::{Entry, EntryKind, Hash};

use super::{bundle, rootfs_dir, Container, ImageFileKind};
use crate::project::BlobSource;

/// The entries of service `service`'s rootfs, sorted by path, with the
/// blobs of its files. Mount points the image lacks are added (empty), so
/// runc has nothing to create in the read-only, managed tree.
pub fn entries(service: &str, c: &Container) -> Vec<(Entry, Option<(Hash, BlobSource)>)> {
    let root = rootfs_dir(service);
    let owner = |id: u32| if id == 0 { "root".to_string() } else { id.to_string() };
    let mut out = vec![(dir_entry(root.clone(), 0o755), None)];
    for f in c.files.iter() {
        let (kind, blob) = match &f.kind {
            ImageFileKind::Dir => (EntryKind::Dir, None),
            ImageFileKind::Symlink(t) => (EntryKind::Symlink { target: t.clone() }, None),
            ImageFileKind::File { hash, size, bytes } => {
                (EntryKind::File { size: *size, hash: *hash }, Some((*hash, bytes.clone())))
            }
        };
        let e = Entry {
            path: format!("{root}{}", f.path),
            kind,
            mode: f.mode,
            owner: owner(f.uid),
            group: owner(f.gid),
            source: None,
        };
        out.push((e, blob));
    }
    let has = |p: &str| c.files.iter().any(|f| f.path == p);
    let empty: Arc<Vec<u8>> = Arc::new(Vec::new());
    let empty_hash = Hash(*blake3::hash(&empty).as_bytes());
    for (p, is_dir) in bundle::mount_points(c) {
        // Parents first: `/var/lib/db` needs `/var` and `/var/lib`.
        let mut at = String::new();
        let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push('/');
            at.push_str(part);
            if has(&at) || out.iter().any(|(e, _)| e.path == format!("{root}{at}")) {
                continue;
            }
            let last = i + 1 == parts.len();
            let e = if last && !is_dir {
                let kind = EntryKind::File { size: 0, hash: empty_hash };
                (
                    Entry {
                        path: format!("{root}{at}"),
                        kind,
                        mode: 0o644,
                        owner: "root".into(),
                        group: "root".into(),
                        source: None,
                    },
                    Some((empty_hash, BlobSource::Bytes(empty.clone()))),
                )
            } else {
                (dir_entry(format!("{root}{at}"), 0o755), None)
            };
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    out
}

/// `/var/lib/drover/containers` itself, owned by root and searchable by
/// nobody else. Why: an image's directories may belong to its own users
/// (postgres's `/var/lib/postgresql`); the agent writes into directories
/// owned by others only below a directory no other user can search, where
/// nobody else can reach them (the agent's safefs).
pub fn containers_dir() -> Entry {
    dir_entry(super::CONTAINERS.to_string(), 0o700)
}

fn dir_entry(path: String, mode: u32) -> Entry {
    Entry { path, kind: EntryKind::Dir, mode, owner: "root".into(), group: "root".into(), source: None }
}
