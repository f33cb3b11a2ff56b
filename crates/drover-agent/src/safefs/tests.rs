//! The write-safety rule's exception for directories below a seal (a
//! directory only the agent's user can search), and where it ends.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command};

use super::*;

fn mode(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

/// `/box/a/b` under a fresh root, `/box` with `seal_mode`, `a` and `b`
/// writable by everyone (and owned by uid 999 where we may chown).
fn tree(seal_mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("box/a/b")).unwrap();
    mode(&dir.path().join("box"), seal_mode);
    for d in ["box/a", "box/a/b"] {
        mode(&dir.path().join(d), 0o777);
        if is_root() {
            chown(dir.path().join(d), Some(999), Some(999)).unwrap();
        }
    }
    dir
}

fn is_root() -> bool {
    geteuid().is_root()
}

fn refusal(root: &Root, path: &str) -> String {
    match root.parent_for_write(path) {
        Ok(_) => panic!("{path}: written into"),
        Err(e) => e.0,
    }
}

#[test]
fn below_a_directory_only_we_can_search_any_owner_and_mode_is_written_into() {
    let dir = tree(0o700);
    let root = Root::open(dir.path()).unwrap();
    for path in ["/box/a/f", "/box/a/b/f"] {
        let parent = root.parent_for_write(path).unwrap();
        let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
        write::create_file(parent.as_fd(), name(path), &mut &b"x"[..], 0o644, uid, gid).unwrap();
    }
    assert_eq!(fs::read(dir.path().join("box/a/b/f")).unwrap(), b"x");
}

#[test]
fn a_directory_others_can_search_seals_nothing() {
    for m in [0o755, 0o711, 0o701, 0o710, 0o770] {
        let dir = tree(m);
        let root = Root::open(dir.path()).unwrap();
        let err = refusal(&root, "/box/a/b/f");
        assert!(err.contains("refusing to write under /box/a:"), "mode {m:o}: {err}");
        assert!(!dir.path().join("box/a/b/f").exists());
    }
}

#[test]
fn a_0700_directory_of_another_user_seals_nothing() {
    if !is_root() {
        eprintln!("needs root to chown; CI runs as root");
        return;
    }
    let dir = tree(0o700);
    chown(dir.path().join("box"), Some(999), Some(999)).unwrap();
    let root = Root::open(dir.path()).unwrap();
    let err = refusal(&root, "/box/a/f");
    assert!(err.contains("refusing to write under /box:") && err.contains("owner uid 999"), "{err}");
}

/// A process in its own mount namespace that bind-mounts `from` on `to`
/// and waits; its view of the filesystem is `/proc/PID/root`.
struct Bound(Child);

impl Bound {
    fn new(from: &Path, to: &Path) -> Bound {
        let script = format!(
            "mount --bind '{}' '{}' && touch '{}/.bound' && sleep 60",
            from.display(),
            to.display(),
            to.display()
        );
        let child =
            Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).spawn().unwrap();
        // Owned from here on: dropped (killed and reaped) on every path.
        let bound = Bound(child);
        let seen = format!("/proc/{}/root{}/.bound", bound.0.id(), to.display());
        for _ in 0..500 {
            if Path::new(&seen).exists() {
                return bound;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the bind mount never appeared");
    }

    fn view(&self, p: &Path) -> std::path::PathBuf {
        Path::new(&format!("/proc/{}/root", self.0.id())).join(p.strip_prefix("/").unwrap())
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_mount_below_the_seal_is_judged_by_the_ordinary_rule_again() {
    if !is_root() {
        eprintln!("needs root to mount; CI runs as root");
        return;
    }
    // Some user's world-writable directory, bind-mounted below the seal:
    // that user reaches it by its own path, so the seal must not cover it.
    let dir = tree(0o700);
    let theirs = tempfile::tempdir().unwrap();
    mode(theirs.path(), 0o777);
    fs::create_dir(dir.path().join("box/mnt")).unwrap();
    let bound = Bound::new(theirs.path(), &dir.path().join("box/mnt"));
    let root = Root::open(&bound.view(dir.path())).unwrap();
    let err = refusal(&root, "/box/mnt/f");
    assert!(err.contains("refusing to write under /box/mnt:"), "{err}");
    // The seal still covers what is on its own mount.
    root.parent_for_write("/box/a/b/f").unwrap();
}
