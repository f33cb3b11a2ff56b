//! Manifests built from file contents, and ways to look at what a session
//! left under a target root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use drover_proto::{Entry, EntryKind, Hash, Manifest};

/// Managed files: path → content.
pub type Files = BTreeMap<&'static str, &'static str>;

pub fn files(pairs: &[(&'static str, &'static str)]) -> Files {
    pairs.iter().copied().collect()
}

pub fn hash(b: &[u8]) -> Hash {
    Hash(*blake3::hash(b).as_bytes())
}

/// A root-owned 0644 file entry with `content`.
pub fn file_entry(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.to_string(),
        kind: EntryKind::File { size: content.len() as u64, hash: hash(content) },
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        source: None,
    }
}

/// The manifest of `files`, and each content by hash (what a controller
/// sends when the agent says it misses it).
pub fn manifest(files: &Files) -> (Manifest, BTreeMap<Hash, Vec<u8>>) {
    let blobs = files.values().map(|c| (hash(c.as_bytes()), c.as_bytes().to_vec())).collect();
    let entries = files.iter().map(|(p, c)| file_entry(p, c.as_bytes())).collect();
    (Manifest { entries, ..Default::default() }, blobs)
}

/// The content of manifest path `p` under `root`, if it is a readable file.
pub fn read(root: &Path, p: &str) -> Option<String> {
    fs::read_to_string(root.join(p.trim_start_matches('/'))).ok()
}

/// Every file under `root` with size, mtime and ctime: any write shows up
/// here.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                e.path(),
                (md.size(), md.mtime() * 1_000_000_000 + md.mtime_nsec(), md.ctime() * 1_000_000_000 + md.ctime_nsec()),
            );
        }
    }
    out
}

/// Incompressible, deterministic bytes (xorshift from `seed`).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
