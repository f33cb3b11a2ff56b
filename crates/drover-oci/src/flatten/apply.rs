//! The tree being built: layers' operations applied to a path-ordered map.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;

use super::layer::{normalize, read_ops, Add, Meta, Op};
use super::{Entry, EntryKind, Tree};
use crate::cache::Cache;
use crate::error::OciError;

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    /// `inode` ties hard links together.
    File {
        hash: blake3::Hash,
        size: u64,
        inode: u64,
    },
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
struct Node {
    meta: Meta,
    kind: Kind,
}

/// Applies layers one by one; [`Flattener::finish`] gives the tree.
#[derive(Debug, Default)]
pub struct Flattener {
    nodes: BTreeMap<String, Node>,
    next_inode: u64,
}

/// Symlinks followed at most this many times resolving one path (Linux's
/// limit); past it the path is taken literally.
const MAX_HOPS: usize = 40;

impl Flattener {
    pub fn new() -> Flattener {
        Flattener::default()
    }

    /// Apply one layer (a tar, gzip- or zstd-compressed or not), storing
    /// its files in `cache`; `image` and `layer` name it in errors.
    /// Whiteouts and opaque markers act first (on lower layers only), then
    /// the layer's entries in tar order.
    pub fn apply_layer(
        &mut self,
        cache: &Cache,
        image: &str,
        layer: &str,
        blob: impl Read,
        diff_id: Option<&str>,
    ) -> Result<(), OciError> {
        let ops = read_ops(cache, image, layer, blob, diff_id)?;
        for op in &ops {
            match op {
                Op::Whiteout(p) => {
                    let p = self.resolve_parent(p);
                    self.remove_subtree(&p, true);
                }
                Op::Opaque(d) => {
                    let d = self.resolve_dir(d);
                    self.remove_subtree(&d, false);
                }
                Op::Add(..) => {}
            }
        }
        for op in ops {
            let Op::Add(path, meta, add) = op else { continue };
            let path = self.resolve_parent(&path);
            let kind = match add {
                Add::Dir => Kind::Dir,
                Add::File { hash, size } => {
                    self.next_inode += 1;
                    Kind::File { hash, size, inode: self.next_inode }
                }
                Add::Symlink(t) => Kind::Symlink(t),
                Add::Char(a, b) => Kind::Char(a, b),
                Add::Block(a, b) => Kind::Block(a, b),
                Add::Fifo => Kind::Fifo,
                Add::HardLink(target) => {
                    let t = self.resolve_parent(&target);
                    let bad = |detail: String| OciError::Layer { image: image.into(), layer: layer.into(), detail };
                    match self.nodes.get(&t) {
                        None => return Err(bad(format!("{path}: hard link to {target}, which does not exist"))),
                        Some(Node { kind: Kind::Dir, .. }) => {
                            return Err(bad(format!("{path}: hard link to the directory {target}")))
                        }
                        // A link to itself changes nothing.
                        Some(_) if t == path => continue,
                        // Same inode: same content, mode and owner.
                        Some(n) => {
                            let n = n.clone();
                            self.put(path, n);
                            continue;
                        }
                    }
                }
            };
            self.put(path, Node { meta, kind });
        }
        Ok(())
    }

    fn put(&mut self, path: String, node: Node) {
        self.ensure_parents(&path);
        match (self.nodes.get_mut(&path), &node.kind) {
            // A directory over a directory keeps its contents.
            (Some(old @ Node { kind: Kind::Dir, .. }), Kind::Dir) => old.meta = node.meta,
            _ => {
                self.remove_subtree(&path, true);
                self.nodes.insert(path, node);
            }
        }
    }

    fn ensure_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let p = &path[..end + i];
            if !matches!(self.nodes.get(p), Some(Node { kind: Kind::Dir, .. })) {
                self.remove_subtree(p, true);
                self.nodes.insert(p.to_string(), Node { meta: Meta::implicit_dir(), kind: Kind::Dir });
            }
            end += i + 1;
        }
    }

    /// Remove everything under `path`, and `path` itself if `itself`.
    fn remove_subtree(&mut self, path: &str, itself: bool) {
        if path.is_empty() {
            self.nodes.clear();
            return;
        }
        let prefix = format!("{path}/");
        let under: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.nodes.remove(&k);
        }
        if itself {
            self.nodes.remove(path);
        }
    }

    /// `path` with symlinks in its parents followed inside the root; the
    /// last component is not followed.
    fn resolve_parent(&self, path: &str) -> String {
        let mut comps: VecDeque<String> = path.split('/').map(str::to_string).collect();
        let last = comps.pop_back().unwrap_or_default();
        let mut cur = self.walk(comps);
        cur.push(last);
        normalize(&cur.join("/"))
    }

    /// A directory path with every symlink in it followed.
    fn resolve_dir(&self, path: &str) -> String {
        self.walk(path.split('/').map(str::to_string).collect()).join("/")
    }

    fn walk(&self, mut comps: VecDeque<String>) -> Vec<String> {
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = comps.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => cur.push(c),
            }
            if let Some(Node { kind: Kind::Symlink(t), .. }) = self.nodes.get(&cur.join("/")) {
                hops += 1;
                if hops > MAX_HOPS {
                    cur.extend(comps);
                    return cur;
                }
                cur.pop();
                if t.starts_with('/') {
                    cur.clear();
                }
                for tc in t.split('/').rev() {
                    comps.push_front(tc.to_string());
                }
            }
        }
        cur
    }

    /// The tree: in path order; the first path of each inode is the file,
    /// later ones hard links to it.
    pub fn finish(self) -> Tree {
        let mut first: HashMap<u64, String> = HashMap::new();
        let entries = self
            .nodes
            .into_iter()
            .map(|(path, n)| {
                let kind = match n.kind {
                    Kind::Dir => EntryKind::Dir,
                    Kind::File { hash, size, inode } => match first.get(&inode) {
                        Some(t) => EntryKind::HardLink { target: t.clone(), hash, size },
                        None => {
                            first.insert(inode, path.clone());
                            EntryKind::File { hash, size }
                        }
                    },
                    Kind::Symlink(target) => EntryKind::Symlink { target },
                    Kind::Char(major, minor) => EntryKind::CharDevice { major, minor },
                    Kind::Block(major, minor) => EntryKind::BlockDevice { major, minor },
                    Kind::Fifo => EntryKind::Fifo,
                };
                Entry { path, mode: n.meta.mode, uid: n.meta.uid, gid: n.meta.gid, xattrs: n.meta.xattrs, kind }
            })
            .collect();
        Tree { entries }
    }
}
