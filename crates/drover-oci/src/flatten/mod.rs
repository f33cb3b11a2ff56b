//! Flattening: an image's layers applied in order into one tree, as a
//! container runtime's extraction would leave it on disk, but in memory,
//! with every regular file's bytes in the cache under its blake3.
//!
//! Kept: directories, regular files (mode incl. setuid/setgid/sticky,
//! uid/gid, size, content hash), symlinks, hard links (as links to the
//! same content: the first path in order is the file, later paths link to
//! it), character and block devices and fifos (as metadata: kind, mode,
//! owner, major/minor; nothing is created until [`Tree::write_to`]), and
//! extended attributes from PAX `SCHILY.xattr.*` records (so
//! `security.capability` file capabilities survive). Applied and then
//! dropped: whiteouts (`.wh.NAME` deletes NAME of lower layers) and opaque
//! markers (`.wh..wh..opq` empties its directory of lower layers' entries),
//! both acting on lower layers only as the OCI spec says, whatever their
//! place in the tar. Dropped: mtimes/atimes (irrelevant to content
//! addressing), other `.wh..wh.*` aufs metadata, PAX global headers.
//! Refused: sparse files, paths that are not UTF-8, hard links to a
//! directory or to nothing.
//!
//! A parent that is a symlink is followed inside the image's root (as
//! `tar` extraction into a chroot would): a layer adding `bin/sh` over a
//! `bin -> usr/bin` symlink adds `usr/bin/sh`.

mod apply;
mod layer;
pub mod stored;
mod write;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

pub use apply::Flattener;
pub use stored::flatten_cached;

use crate::cache::Cache;
use crate::error::OciError;
use crate::manifest::Image;

/// One path of a flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the image root, `/`-separated, no leading `/`.
    pub path: String,
    /// Permission bits and setuid/setgid/sticky (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Extended attributes (e.g. `security.capability`), raw values.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file; its bytes are [`Cache::open_file`]`(hash)`.
    File {
        hash: blake3::Hash,
        size: u64,
    },
    /// Another name of the file at `target` (earlier in the list): the
    /// same inode, hence the same content, mode and owner.
    HardLink {
        target: String,
        hash: blake3::Hash,
        size: u64,
    },
    Symlink {
        target: String,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// A flattened image: entries in path order, every parent before its
/// children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

impl Tree {
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// The distinct contents of the regular files.
    pub fn file_hashes(&self) -> HashSet<blake3::Hash> {
        self.entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { hash, .. } => Some(hash),
                _ => None,
            })
            .collect()
    }

    /// Regular files (hard links are not counted again).
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.kind, EntryKind::File { .. })).count()
    }

    /// Bytes of the regular files (each inode once).
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Write the tree under `dir` (which must be empty or missing):
    /// contents from `cache`; owners, device nodes and xattrs only when
    /// running as root (else they are skipped: the tree is for reading).
    pub fn write_to(&self, cache: &Cache, dir: &std::path::Path) -> Result<(), OciError> {
        write::write_tree(self, cache, dir)
    }
}

/// Flatten `image`, whose blobs are in `cache`, storing its files' bytes
/// in `cache` too. Each layer is checked against its diff_id while read.
pub fn flatten(cache: &Cache, image: &Image) -> Result<Tree, OciError> {
    let mut f = Flattener::new();
    for l in &image.layers {
        let path = cache.blob_path(&l.digest)?;
        let file = std::fs::File::open(&path).map_err(OciError::io(&path))?;
        f.apply_layer(cache, &image.source, &l.digest, file, l.diff_id.as_deref())?;
    }
    Ok(f.finish())
}

/// Flatten layer tars given as readers (tests, tools): no diff_id checks.
pub fn flatten_readers<R: Read>(cache: &Cache, layers: impl IntoIterator<Item = R>) -> Result<Tree, OciError> {
    let mut f = Flattener::new();
    for (i, r) in layers.into_iter().enumerate() {
        f.apply_layer(cache, "layers", &format!("#{i}"), r, None)?;
    }
    Ok(f.finish())
}
