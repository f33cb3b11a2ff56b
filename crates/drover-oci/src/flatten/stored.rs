//! Flattened trees kept in the cache (`trees/<manifest hex>.tree.json`),
//! so a pinned image already flattened is not read again: a run that
//! finds it reads one small file instead of decompressing every layer.
//! Its blobs were verified when they were stored; the tree is used only
//! while every file it names is still in the cache.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{flatten, Entry, EntryKind, Tree};
use crate::cache::Cache;
use crate::error::OciError;
use crate::manifest::Image;

/// Bumped whenever flattening rules change, so trees flattened by older
/// rules are flattened again rather than trusted.
const TREE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    entries: Vec<SEntry>,
}

#[derive(Serialize, Deserialize)]
struct SEntry {
    path: String,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Values base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    xattrs: BTreeMap<String, String>,
    kind: SKind,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum SKind {
    Dir,
    File { hash: String, size: u64 },
    HardLink { target: String, hash: String, size: u64 },
    Symlink { target: String },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn to_stored(tree: &Tree) -> Stored {
    let entries = tree
        .entries
        .iter()
        .map(|e| SEntry {
            path: e.path.clone(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            xattrs: e.xattrs.iter().map(|(k, v)| (k.clone(), b64().encode(v))).collect(),
            kind: match &e.kind {
                EntryKind::Dir => SKind::Dir,
                EntryKind::File { hash, size } => SKind::File { hash: hash.to_hex().to_string(), size: *size },
                EntryKind::HardLink { target, hash, size } => {
                    SKind::HardLink { target: target.clone(), hash: hash.to_hex().to_string(), size: *size }
                }
                EntryKind::Symlink { target } => SKind::Symlink { target: target.clone() },
                EntryKind::CharDevice { major, minor } => SKind::CharDevice { major: *major, minor: *minor },
                EntryKind::BlockDevice { major, minor } => SKind::BlockDevice { major: *major, minor: *minor },
                EntryKind::Fifo => SKind::Fifo,
            },
        })
        .collect();
    Stored { format: TREE_FORMAT, entries }
}

/// `None` for anything unreadable: the tree is flattened again.
fn from_stored(s: Stored) -> Option<Tree> {
    if s.format != TREE_FORMAT {
        return None;
    }
    let hash = |h: &str| blake3::Hash::from_hex(h).ok();
    let mut entries = Vec::with_capacity(s.entries.len());
    for e in s.entries {
        let kind = match e.kind {
            SKind::Dir => EntryKind::Dir,
            SKind::File { hash: h, size } => EntryKind::File { hash: hash(&h)?, size },
            SKind::HardLink { target, hash: h, size } => EntryKind::HardLink { target, hash: hash(&h)?, size },
            SKind::Symlink { target } => EntryKind::Symlink { target },
            SKind::CharDevice { major, minor } => EntryKind::CharDevice { major, minor },
            SKind::BlockDevice { major, minor } => EntryKind::BlockDevice { major, minor },
            SKind::Fifo => EntryKind::Fifo,
        };
        let mut xattrs = BTreeMap::new();
        for (k, v) in e.xattrs {
            xattrs.insert(k, b64().decode(v).ok()?);
        }
        entries.push(Entry { path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, xattrs, kind });
    }
    Some(Tree { entries })
}

/// The kept tree of `manifest_digest`, if there is one whose files are
/// all still in the cache.
pub fn load(cache: &Cache, manifest_digest: &str) -> Result<Option<Tree>, OciError> {
    let p = cache.tree_file(manifest_digest, "tree.json")?;
    let Ok(bytes) = std::fs::read(&p) else { return Ok(None) };
    let Some(tree) = serde_json::from_slice(&bytes).ok().and_then(from_stored) else { return Ok(None) };
    let complete = tree.entries.iter().all(|e| match &e.kind {
        EntryKind::File { hash, .. } => cache.file_path(hash).is_file(),
        _ => true,
    });
    Ok(complete.then_some(tree))
}

/// Keep `tree` as the flattening of `manifest_digest`.
pub fn save(cache: &Cache, manifest_digest: &str, tree: &Tree) -> Result<(), OciError> {
    let p = cache.tree_file(manifest_digest, "tree.json")?;
    let (tmp, f) = cache.temp()?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer(&mut w, &to_stored(tree)).map_err(|e| OciError::Io { path: tmp.clone(), error: e.into() })?;
    w.flush().map_err(OciError::io(&tmp))?;
    let dir = p.parent().expect("trees dir");
    std::fs::create_dir_all(dir).map_err(OciError::io(dir))?;
    std::fs::rename(&tmp, &p).map_err(OciError::io(&p))
}

/// [`flatten`], reusing the tree kept from an earlier flattening of the
/// same manifest, and keeping this one otherwise.
pub fn flatten_cached(cache: &Cache, image: &Image) -> Result<Tree, OciError> {
    if let Some(t) = load(cache, &image.manifest_digest)? {
        return Ok(t);
    }
    let tree = flatten(cache, image)?;
    save(cache, &image.manifest_digest, &tree)?;
    Ok(tree)
}
