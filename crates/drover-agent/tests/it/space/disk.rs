//! Small filesystems for the tests of a full, read-only or failing disk: a
//! tmpfs mounted over a test's directory (root only), filled to leave a
//! given number of bytes, remounted read-only; and the two generations the
//! tests move between, with files large enough to fill one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use drover_proto::{Hash, Manifest};

use crate::support::files::{file_entry, hash};

/// A tmpfs of `size` bytes at `at` (mode 0755: the agent refuses to write
/// under a directory others can write to), unmounted when dropped.
pub struct Tmpfs {
    pub at: PathBuf,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Tmpfs {
    pub fn mount(at: &Path, size: u64) -> Tmpfs {
        assert!(is_root(), "the full-disk tests mount tmpfs filesystems: run them as root (bash scripts/test)");
        fs::create_dir_all(at).unwrap();
        let opts = format!("size={size},mode=0755");
        mount(&["-t", "tmpfs", "-o", &opts, "tmpfs", at.to_str().unwrap()]);
        Tmpfs { at: at.to_path_buf() }
    }

    pub fn read_only(&self, ro: bool) {
        let opts = if ro { "remount,ro" } else { "remount,rw" };
        mount(&["-o", opts, self.at.to_str().unwrap()]);
    }

    /// Bytes free (whole pages).
    pub fn free(&self) -> u64 {
        let v = rustix::fs::statvfs(&self.at).unwrap();
        v.f_bfree * v.f_frsize
    }

    /// Fill it until `leave` bytes are free (a file `fill` at its top).
    pub fn fill_to(&self, leave: u64) {
        let want = self.free().saturating_sub(leave);
        let mut f = fs::File::create(self.at.join("fill")).unwrap();
        let block = vec![0u8; 4096];
        let mut done = 0;
        while done < want {
            if f.write_all(&block).is_err() {
                break;
            }
            done += 4096;
        }
        f.sync_all().ok();
    }

    pub fn unfill(&self) {
        let _ = fs::remove_file(self.at.join("fill"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn mount(args: &[&str]) {
    let st = Command::new("mount").args(args).status().unwrap();
    assert!(st.success(), "mount {args:?} failed");
}

/// The mount point holding `p`, as `stat` says.
pub fn mount_of(p: &Path) -> String {
    let out = Command::new("stat").args(["-c", "%m"]).arg(p).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `n` bytes of `b`.
pub fn bytes(b: u8, n: usize) -> Vec<u8> {
    vec![b; n]
}

/// Managed files with their content (path → bytes).
pub type Tree = Vec<(&'static str, Vec<u8>)>;

/// Generation 1: three files in /srv and one in /etc.
pub fn v1() -> Tree {
    vec![
        ("/etc/keep.conf", b"keep 1".to_vec()),
        ("/srv/a", bytes(b'a', 64 << 10)),
        ("/srv/b", bytes(b'b', 64 << 10)),
        ("/srv/c", bytes(b'c', 64 << 10)),
    ]
}

/// Generation 2: two files changed (one grows), one dropped, one in a new
/// directory, and `/srv/u` taken over from an unmanaged file of that name
/// (kept in the blob store and backed up first).
pub fn v2() -> Tree {
    vec![
        ("/etc/keep.conf", b"keep 2".to_vec()),
        ("/srv/a", bytes(b'A', 64 << 10)),
        ("/srv/b", bytes(b'B', 96 << 10)),
        ("/srv/new/d", bytes(b'd', 32 << 10)),
        ("/srv/u", bytes(b'U', 32 << 10)),
    ]
}

/// What was at `/srv/u` before drover managed it.
pub fn unmanaged_u() -> Vec<u8> {
    bytes(b'u', 32 << 10)
}

pub fn manifest(tree: &Tree) -> (Manifest, BTreeMap<Hash, Vec<u8>>) {
    let blobs = tree.iter().map(|(_, c)| (hash(c), c.clone())).collect();
    let entries = tree.iter().map(|(p, c)| file_entry(p, c)).collect();
    (Manifest { entries, ..Default::default() }, blobs)
}

/// Is the host under `root` wholly on `tree` (managed files exactly it,
/// nothing of the other generation, no temporaries, no journal)? Returns
/// what differs.
pub fn differs(root: &Path, tree: &Tree, other: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, c) in tree {
        if fs::read(root.join(&p[1..])).ok().as_ref() != Some(c) {
            out.push(format!("{p} is not as this generation has it"));
        }
    }
    for (p, _) in other.iter().filter(|(p, _)| !tree.iter().any(|(q, _)| q == p)) {
        let now = fs::read(root.join(&p[1..])).ok();
        if *p == "/srv/u" {
            if now != Some(unmanaged_u()) {
                out.push("/srv/u is not the unmanaged file it was".into());
            }
        } else if now.is_some() {
            out.push(format!("{p} of the other generation is there"));
        }
    }
    if !tree.iter().any(|(p, _)| p.starts_with("/srv/new/")) && root.join("srv/new").exists() {
        out.push("/srv/new is there".into());
    }
    for t in temporaries(root) {
        out.push(format!("temporary left: {}", t.display()));
    }
    for f in ["journal.json", "pending.json"] {
        if root.join("var/lib/drover").join(f).exists() {
            out.push(format!("{f} left"));
        }
    }
    out
}

/// The transition's temporaries (`.drover-…`) and half copies
/// (`partial/ingest-…`) anywhere under `root`.
pub fn temporaries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".drover-") || name.starts_with("ingest-") || name.ends_with(".tmp") {
                out.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The generation `state.json` says the host is on.
pub fn current(root: &Path) -> Option<u64> {
    let text = fs::read_to_string(root.join("var/lib/drover/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["current"].as_u64()
}
