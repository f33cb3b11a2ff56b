//! Any file tree applies and rolls back exactly (issue 10).
//!
//! Layer trees are generated as well as written by hand: proptest draws
//! random trees (empty files, dotfiles, names with spaces, unicode, `#`, `%`
//! and a leading `-`, modes, symlinks relative, absolute, dangling and to
//! directories, empty directories) and sequences of them whose paths collide
//! so that a path changes kind between generations. Each sequence is applied
//! generation by generation through the real binary and the simulated
//! transport, and after every step the host's tree is compared, byte for
//! byte, mode and link target, with the tree that was declared — every path
//! under the host root, not a sample; then it is rolled back step by step and
//! compared again.
//!
//! `DROVER_PROPTEST_CASES=500` runs many more cases than CI's default.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{Run, DROVER};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File { content: Vec<u8>, mode: u32 },
    Link(String),
    Dir { mode: u32, children: BTreeMap<String, Node> },
}

const NAMES: &[&str] = &["a", "b c", "ünï", "#h", "%p", "-lead", ".dot", "e"];
const TARGETS: &[&str] = &["a", "../a", "/etc/passwd", "nowhere", "b c/ünï", "..", "/t"];

fn node() -> impl Strategy<Value = Node> {
    let content = prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..48)];
    let leaf = prop_oneof![
        4 => (content, prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o640, 0o4755]))
            .prop_map(|(content, mode)| Node::File { content, mode }),
        2 => prop::sample::select(TARGETS).prop_map(|t| Node::Link(t.to_string())),
        1 => prop::sample::select(vec![0o755u32, 0o700]).prop_map(|mode| Node::Dir { mode, children: BTreeMap::new() }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        proptest::collection::btree_map(prop::sample::select(NAMES).prop_map(str::to_string), inner, 1..4)
            .prop_map(|children| Node::Dir { mode: 0o755, children })
    })
}

fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
    proptest::collection::btree_map(prop::sample::select(NAMES).prop_map(str::to_string), node(), 1..5)
}

fn write_tree(dir: &Path, tree: &BTreeMap<String, Node>) {
    for (name, n) in tree {
        let p = dir.join(name);
        match n {
            Node::File { content, mode } => {
                fs::write(&p, content).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Link(t) => symlink(t, &p).unwrap(),
            Node::Dir { mode, children } => {
                fs::create_dir(&p).unwrap();
                write_tree(&p, children);
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
    }
}

/// What must be on the host: path → (kind, content or target, mode). Parent
/// directories holding entries are listed with no mode (drover creates them
/// 0755 and leaves existing ones alone); empty directories are managed, mode
/// and all.
fn expected(prefix: &str, tree: &BTreeMap<String, Node>, out: &mut BTreeMap<String, (String, Vec<u8>, Option<u32>)>) {
    for (name, n) in tree {
        let p = format!("{prefix}/{name}");
        match n {
            Node::File { content, mode } => {
                out.insert(p, ("file".into(), content.clone(), Some(*mode)));
            }
            Node::Link(t) => {
                out.insert(p, ("link".into(), t.as_bytes().to_vec(), None));
            }
            Node::Dir { mode, children } if children.is_empty() => {
                out.insert(p, ("dir".into(), vec![], Some(*mode)));
            }
            Node::Dir { children, .. } => {
                out.insert(p.clone(), ("dir".into(), vec![], None));
                expected(&p, children, out);
            }
        }
    }
}

/// Everything under the host root but the agent's state and the simulated
/// host's skeleton.
fn actual(root: &Path) -> BTreeMap<String, (String, Vec<u8>, Option<u32>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, Vec<u8>, Option<u32>)>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().to_str().unwrap());
            if rel.starts_with("/var")
                || ["/etc", "/usr"].iter().any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            let mode = Some(md.mode() & 0o7777);
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    ("link".into(), fs::read_link(&p).unwrap().to_str().unwrap().as_bytes().to_vec(), None),
                );
            } else if md.is_dir() {
                out.insert(rel, ("dir".into(), vec![], mode));
                walk(root, &p, out);
            } else {
                out.insert(rel, ("file".into(), fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn same(
    want: &BTreeMap<String, (String, Vec<u8>, Option<u32>)>,
    got: &BTreeMap<String, (String, Vec<u8>, Option<u32>)>,
) -> Result<(), String> {
    let wk: Vec<&String> = want.keys().collect();
    let gk: Vec<&String> = got.keys().collect();
    if wk != gk {
        return Err(format!("paths differ:\n want {wk:?}\n  got {gk:?}"));
    }
    for (p, (k, c, m)) in want {
        let (gk, gc, gm) = &got[p];
        if k != gk || c != gc || (m.is_some() && m != gm) {
            return Err(format!("{p}: want {k} {m:?} {c:?}, got {gk} {gm:?} {gc:?} (modes in decimal)"));
        }
    }
    Ok(())
}

struct Sim {
    _tmp: tempfile::TempDir,
    proj: PathBuf,
    hosts: PathBuf,
}

impl Sim {
    fn new() -> Sim {
        let tmp = tempfile::tempdir().unwrap();
        let proj = tmp.path().join("project");
        fs::create_dir_all(proj.join("roles")).unwrap();
        fs::create_dir_all(proj.join("layers")).unwrap();
        fs::write(proj.join("drover.toml"), "[defaults]\nroles = [\"t\"]\n\n[apply]\nconfirm-timeout = \"0s\"\n")
            .unwrap();
        fs::write(proj.join("roles/t.toml"), "layers = [\"t\"]\n").unwrap();
        fs::write(proj.join("inventory.toml"), "[hosts.s1]\naddress = \"10.99.0.1\"\n").unwrap();
        let hosts = tmp.path().join("hosts");
        Sim { _tmp: tmp, proj, hosts }
    }

    fn layer(&self, tree: &BTreeMap<String, Node>) {
        let l = self.proj.join("layers/t");
        if l.exists() {
            fs::remove_dir_all(&l).unwrap();
        }
        fs::create_dir_all(l.join("t")).unwrap();
        write_tree(&l.join("t"), tree);
    }

    fn drover(&self, verb: &str) -> Run {
        let out = Command::new(DROVER)
            .arg("-C")
            .arg(&self.proj)
            .args([verb, "--json", "--simulate"])
            .arg(&self.hosts)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }

    fn root(&self) -> PathBuf {
        self.hosts.join("s1")
    }
}

fn want_of(tree: &BTreeMap<String, Node>) -> BTreeMap<String, (String, Vec<u8>, Option<u32>)> {
    let mut w = BTreeMap::new();
    w.insert("/t".to_string(), ("dir".to_string(), vec![], None));
    expected("/t", tree, &mut w);
    w
}

/// Apply each tree in turn, then roll back one generation at a time.
fn apply_and_roll_back(gens: &[BTreeMap<String, Node>]) -> Result<(), String> {
    let sim = Sim::new();
    for (i, t) in gens.iter().enumerate() {
        sim.layer(t);
        let run = sim.drover("apply");
        if run.code != 0 {
            return Err(format!("apply of generation {} failed:\n{}\n{}", i + 1, run.stdout, run.stderr));
        }
        same(&want_of(t), &actual(&sim.root())).map_err(|e| format!("after applying generation {}: {e}", i + 1))?;
    }
    for i in (1..gens.len()).rev() {
        let run = sim.drover("rollback");
        if run.code != 0 {
            return Err(format!("rollback to generation {i} failed:\n{}\n{}", run.stdout, run.stderr));
        }
        same(&want_of(&gens[i - 1]), &actual(&sim.root()))
            .map_err(|e| format!("after rolling back to generation {i}: {e}"))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("DROVER_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_apply_and_roll_back_exactly(gens in proptest::collection::vec(tree(), 1..4)) {
        if let Err(e) = apply_and_roll_back(&gens) {
            return Err(TestCaseError::fail(e));
        }
    }
}

fn file(content: &[u8], mode: u32) -> Node {
    Node::File { content: content.to_vec(), mode }
}

fn dir(children: Vec<(&str, Node)>) -> Node {
    Node::Dir { mode: 0o755, children: children.into_iter().map(|(n, c)| (n.to_string(), c)).collect() }
}

fn tree_of(children: Vec<(&str, Node)>) -> BTreeMap<String, Node> {
    children.into_iter().map(|(n, c)| (n.to_string(), c)).collect()
}

/// Regression: `agent: /.die: content af1349b9f5f9 was not received; apply
/// again` — any project with an empty file failed on every host (a
/// zero-length blob never got a chunk).
#[test]
fn an_empty_file_applies() {
    let t = tree_of(vec![("empty", file(b"", 0o644)), ("full", file(b"x", 0o644))]);
    apply_and_roll_back(&[t]).unwrap();
}

/// One path through every kind and back: file → symlink → directory → file.
#[test]
fn a_path_changes_kind_across_generations_and_back_on_rollback() {
    let gens = vec![
        tree_of(vec![("x", file(b"a file", 0o600))]),
        tree_of(vec![("x", Node::Link("/etc".into()))]),
        tree_of(vec![(
            "x",
            dir(vec![("y", file(b"inside", 0o644)), ("z", Node::Dir { mode: 0o700, children: BTreeMap::new() })]),
        )]),
        tree_of(vec![("x", file(b"a file again", 0o755))]),
    ];
    apply_and_roll_back(&gens).unwrap();
}

/// Deep nesting, awkward names, and symlinks of every sort in one tree.
#[test]
fn awkward_names_deep_nesting_and_every_kind_of_symlink() {
    let mut deep = file(b"bottom", 0o644);
    for i in (0..40).rev() {
        deep = dir(vec![(["d", "ü", "#", "%", "-x"][i % 5], deep)]);
    }
    let t = tree_of(vec![
        ("deep", deep),
        (
            "names",
            dir(vec![
                ("with space", file(b"1", 0o644)),
                ("ünïcødé ✓", file(b"2", 0o644)),
                ("#hash", file(b"3", 0o644)),
                ("100%", file(b"4", 0o644)),
                ("-leading-dash", file(b"5", 0o644)),
                (".dotfile", file(b"6", 0o600)),
                ("exec", file(b"#!/bin/sh\n", 0o755)),
                ("setuid", file(b"", 0o4755)),
            ]),
        ),
        (
            "links",
            dir(vec![
                ("relative", Node::Link("../names/with space".into())),
                ("absolute", Node::Link("/etc/passwd".into())),
                ("dangling", Node::Link("does/not/exist".into())),
                ("to-dir", Node::Link("../names".into())),
                ("chain", Node::Link("relative".into())),
            ]),
        ),
        ("empty-dir", Node::Dir { mode: 0o700, children: BTreeMap::new() }),
    ]);
    apply_and_roll_back(&[t.clone(), tree_of(vec![("names", dir(vec![("with space", file(b"changed", 0o600))]))]), t])
        .unwrap();
}

/// 20,000 files in one layer apply, and a second run is a no-op.
#[test]
fn twenty_thousand_files_in_one_layer() {
    let sim = Sim::new();
    let l = sim.proj.join("layers/t/t");
    for d in 0..100 {
        let sub = l.join(format!("d{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..200 {
            fs::write(sub.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    let run = sim.drover("apply");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let got = actual(&sim.root());
    assert_eq!(got.values().filter(|(k, _, _)| k == "file").count(), 20_000);
    assert_eq!(fs::read_to_string(sim.root().join("t/d99/f199")).unwrap(), "99/199");
    let again = sim.drover("apply");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.hosts()[0]["outcome"], "unchanged", "{}", again.stdout);
}

/// What cannot be deployed is refused before any host is contacted, with
/// the file named.
#[test]
fn a_fifo_or_a_file_beneath_a_symlink_is_refused_naming_the_file() {
    let sim = Sim::new();
    sim.layer(&tree_of(vec![("ok", file(b"x", 0o644))]));
    let fifo = sim.proj.join("layers/t/t/pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let run = sim.drover("apply");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("layers/t/t/pipe") && run.stderr.contains("fifo"), "{}", run.stderr);
    assert!(!sim.root().exists(), "no host was contacted");

    fs::remove_file(&fifo).unwrap();
    // A second layer puts a file beneath the first layer's symlink.
    fs::write(sim.proj.join("roles/t.toml"), "layers = [\"t\", \"u\"]\n").unwrap();
    symlink("/root", sim.proj.join("layers/t/t/link")).unwrap();
    fs::create_dir_all(sim.proj.join("layers/u/t/link")).unwrap();
    fs::write(sim.proj.join("layers/u/t/link/payload"), "x").unwrap();
    let run = sim.drover("apply");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("layers/u/t/link/payload") && run.stderr.contains("symlink"), "{}", run.stderr);
    assert!(!sim.root().exists(), "no host was contacted");
}
