//! The reference model of layer application, written as plainly as the
//! OCI image spec states it: per layer, first every whiteout and opaque
//! marker removes lower layers' entries, then the layer's entries are
//! added in order (a missing parent becomes a 0755 root directory, a
//! non-directory in the way of a parent is replaced, a directory over a
//! directory keeps its contents, anything else replaces the subtree); a
//! hard link is another name of the same file. It does not follow
//! symlinks in parents: the generator never puts a symlink where a
//! directory is used (tests in `cases` and `umoci` cover that).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MNode {
    Dir { mode: u32 },
    File { content: Vec<u8>, mode: u32, inode: u64 },
    Symlink(String),
}

#[derive(Debug, Default, Clone)]
pub struct Model {
    pub map: BTreeMap<String, MNode>,
    next: u64,
}

impl Model {
    fn remove_under(&mut self, p: &str) {
        let prefix = format!("{p}/");
        self.map.retain(|k, _| !k.starts_with(&prefix));
    }

    pub fn whiteout(&mut self, p: &str) {
        self.remove_under(p);
        self.map.remove(p);
    }

    pub fn opaque(&mut self, d: &str) {
        self.remove_under(d);
    }

    fn add(&mut self, p: &str, node: MNode) {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 1..parts.len() {
            let a = parts[..i].join("/");
            if !matches!(self.map.get(&a), Some(MNode::Dir { .. })) {
                self.whiteout(&a);
                self.map.insert(a, MNode::Dir { mode: 0o755 });
            }
        }
        match (self.map.get_mut(p), &node) {
            (Some(MNode::Dir { mode }), MNode::Dir { mode: m }) => *mode = *m,
            _ => {
                self.whiteout(p);
                self.map.insert(p.to_string(), node);
            }
        }
    }

    pub fn dir(&mut self, p: &str, mode: u32) {
        self.add(p, MNode::Dir { mode });
    }

    pub fn file(&mut self, p: &str, mode: u32, content: &[u8]) {
        self.next += 1;
        self.add(p, MNode::File { content: content.to_vec(), mode, inode: self.next });
    }

    pub fn symlink(&mut self, p: &str, target: &str) {
        self.add(p, MNode::Symlink(target.into()));
    }

    /// Whether `target` is a regular file (so a hard link to it is valid).
    pub fn is_file(&self, target: &str) -> bool {
        matches!(self.map.get(target), Some(MNode::File { .. }))
    }

    pub fn hardlink(&mut self, p: &str, target: &str) {
        let n = self.map[target].clone();
        self.add(p, n);
    }
}
