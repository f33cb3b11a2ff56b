//! Property: any generated layer stack (adds, overwrites, whiteouts,
//! opaque directories, hard links, symlinks, across layers, each layer
//! plain, gzip or zstd) flattens to what the reference model says.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use drover_oci::flatten::flatten_readers;
use drover_oci::testing::images::LayerBuilder;
use drover_oci::{Cache, EntryKind, Tree};
use proptest::prelude::*;

use crate::model::{MNode, Model};

#[derive(Debug, Clone)]
enum GOp {
    Dir(String, u32),
    File(String, u32, u8),
    Symlink(String, String),
    HardLink(String, String),
    Whiteout(String),
    Opaque(String),
}

/// Directory paths: `a`, `b`, `a/b`, … (never a symlink's name).
fn dir_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b"]), 1..=2).prop_map(|v| v.join("/"))
}

/// Any path a file may take: leaves may be directory names (a file over
/// a directory, a directory over a file).
fn node_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop::sample::select(vec!["a", "b"]), 0..=2), prop::sample::select(vec!["x", "y", "a", "b"]))
        .prop_map(|(d, l)| if d.is_empty() { l.to_string() } else { format!("{}/{l}", d.join("/")) })
}

fn link_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop::sample::select(vec!["a", "b"]), 0..=1), prop::sample::select(vec!["l1", "l2"]))
        .prop_map(|(d, l)| if d.is_empty() { l.to_string() } else { format!("{}/{l}", d.join("/")) })
}

fn gop() -> impl Strategy<Value = GOp> {
    let mode = prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755]);
    prop_oneof![
        1 => (dir_path(), prop::sample::select(vec![0o755u32, 0o700, 0o1777])).prop_map(|(p, m)| GOp::Dir(p, m)),
        3 => (node_path(), mode, 0u8..4).prop_map(|(p, m, c)| GOp::File(p, m, c)),
        1 => (link_path(), prop::sample::select(vec!["x", "/a/x", "../y", "nowhere"])).prop_map(|(p, t)| GOp::Symlink(p, t.into())),
        2 => (node_path(), node_path()).prop_map(|(p, t)| GOp::HardLink(p, t)),
        2 => prop_oneof![node_path(), link_path()].prop_map(GOp::Whiteout),
        1 => dir_path().prop_map(GOp::Opaque),
    ]
}

fn content(c: u8) -> Vec<u8> {
    format!("content {c}\n").repeat(c as usize + 1).into_bytes()
}

/// Apply `layers` to the model, dropping hard links the model says are
/// invalid at their point (target not a regular file); the tars of what
/// was kept.
fn build(layers: &[Vec<GOp>]) -> (Model, Vec<Vec<u8>>) {
    let mut m = Model::default();
    let mut tars = Vec::new();
    for ops in layers {
        let mut b = LayerBuilder::new();
        for op in ops {
            match op {
                GOp::Whiteout(p) => {
                    m.whiteout(p);
                    b = b.whiteout(p);
                }
                GOp::Opaque(d) => {
                    m.opaque(d);
                    b = b.opaque(d);
                }
                _ => {}
            }
        }
        for op in ops {
            match op {
                GOp::Dir(p, mode) => {
                    m.dir(p, *mode);
                    b = b.dir(p, *mode);
                }
                GOp::File(p, mode, c) => {
                    m.file(p, *mode, &content(*c));
                    b = b.file(p, *mode, &content(*c));
                }
                GOp::Symlink(p, t) => {
                    m.symlink(p, t);
                    b = b.symlink(p, t);
                }
                GOp::HardLink(p, t) if p != t && m.is_file(t) => {
                    m.hardlink(p, t);
                    b = b.hardlink(p, t);
                }
                _ => {}
            }
        }
        tars.push(b.build());
    }
    (m, tars)
}

fn compress(tar: Vec<u8>, how: u8) -> Vec<u8> {
    match how % 3 {
        0 => tar,
        1 => {
            let mut out = Vec::new();
            flate2::read::GzEncoder::new(&tar[..], flate2::Compression::fast()).read_to_end(&mut out).unwrap();
            out
        }
        _ => zstd::encode_all(&tar[..], 1).unwrap(),
    }
}

/// The tree in the model's terms, with hard-link groups (paths sharing an
/// inode) apart.
fn as_model(tree: &Tree, cache: &Cache) -> (BTreeMap<String, MNode>, BTreeSet<BTreeSet<String>>) {
    let mut map = BTreeMap::new();
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &tree.entries {
        assert_eq!((e.uid, e.gid), (0, 0), "{}", e.path);
        let node = match &e.kind {
            EntryKind::Dir => MNode::Dir { mode: e.mode },
            EntryKind::File { hash, .. } | EntryKind::HardLink { hash, .. } => {
                let mut content = Vec::new();
                cache.open_file(hash).unwrap().read_to_end(&mut content).unwrap();
                let first = match &e.kind {
                    EntryKind::HardLink { target, .. } => target.clone(),
                    _ => e.path.clone(),
                };
                groups.entry(first).or_default().insert(e.path.clone());
                MNode::File { content, mode: e.mode, inode: 0 }
            }
            EntryKind::Symlink { target } => MNode::Symlink(target.clone()),
            other => panic!("{}: unexpected {other:?}", e.path),
        };
        map.insert(e.path.clone(), node);
    }
    (map, groups.into_values().collect())
}

fn model_view(m: &Model) -> (BTreeMap<String, MNode>, BTreeSet<BTreeSet<String>>) {
    let mut groups: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let map = m
        .map
        .iter()
        .map(|(p, n)| {
            let n = match n {
                MNode::File { content, mode, inode } => {
                    groups.entry(*inode).or_default().insert(p.clone());
                    MNode::File { content: content.clone(), mode: *mode, inode: 0 }
                }
                n => n.clone(),
            };
            (p.clone(), n)
        })
        .collect();
    (map, groups.into_values().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn flattening_any_layer_stack_matches_the_reference_model(
        layers in prop::collection::vec(prop::collection::vec(gop(), 0..8), 1..5),
        compression in prop::collection::vec(0u8..3, 5),
    ) {
        let (model, tars) = build(&layers);
        let (_d, cache) = crate::temp_cache();
        let blobs: Vec<Vec<u8>> = tars.into_iter().zip(&compression).map(|(t, c)| compress(t, *c)).collect();
        let tree = flatten_readers(&cache, blobs.iter().map(|b| &b[..])).unwrap();
        // Parents come before children, paths are unique and sorted.
        prop_assert!(tree.entries.windows(2).all(|w| w[0].path < w[1].path));
        for e in &tree.entries {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                prop_assert!(matches!(tree.get(parent).map(|p| &p.kind), Some(EntryKind::Dir)), "{} has no parent dir", e.path);
            }
        }
        prop_assert_eq!(as_model(&tree, &cache), model_view(&model));
    }
}
