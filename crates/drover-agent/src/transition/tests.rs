use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use drover_proto::Hash;

use super::*;

fn put_blob(l: &Layout, data: &[u8]) -> Hash {
    let h = Hash(*blake3::hash(data).as_bytes());
    fsops::private_dir(&l.blobs()).unwrap();
    fs::write(l.blob(&h), data).unwrap();
    h
}

/// Prepare and run a transition, as the engine does.
fn go(
    l: &Layout,
    st: &mut StateFile,
    from: Option<u64>,
    to: Option<u64>,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
) -> Result<Done> {
    let p = prepare(l, st, from, to, wants, managed)?;
    run(l, st, p)
}

fn ids() -> (u32, u32) {
    (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
}

fn file(h: Hash) -> PathState {
    let (uid, gid) = ids();
    PathState::File { content: h, mode: 0o644, uid, gid }
}

fn link(t: &str) -> PathState {
    PathState::Symlink { target: t.into() }
}

/// A test root the agent trusts (tempdirs are 0700 and ours).
fn root() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    (dir, l)
}

fn kind(p: &Path) -> &'static str {
    match fs::symlink_metadata(p) {
        Err(_) => "absent",
        Ok(m) if m.file_type().is_symlink() => "symlink",
        Ok(m) if m.is_dir() => "dir",
        Ok(_) => "file",
    }
}

#[test]
fn transition_writes_backs_up_and_records_undo() {
    let (dir, l) = root();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/unmanaged.conf"), b"precious").unwrap();
    let h = put_blob(&l, b"new content");
    let mut st = StateFile::load(&l).unwrap();
    let wants = vec![("/etc/unmanaged.conf".to_string(), file(h)), ("/srv/a/b/c.txt".to_string(), file(h))];
    let done = go(&l, &mut st, None, Some(1), wants, &HashMap::new()).unwrap();
    assert_eq!(done.ops.iter().filter(|o| !o.implicit).count(), 2);
    assert_eq!(fs::read(dir.path().join("srv/a/b/c.txt")).unwrap(), b"new content");
    assert_eq!(fs::read(l.backup(1, "/etc/unmanaged.conf")).unwrap(), b"precious");
    assert_eq!(fs::metadata(l.backup(1, "/etc/unmanaged.conf")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(st.current, Some(1));
    assert_eq!(StateFile::load(&l).unwrap().seq, 1);
    let created: Vec<&str> = done.ops.iter().filter(|o| o.implicit).map(|o| o.path.as_str()).collect();
    assert_eq!(created, vec!["/srv", "/srv/a", "/srv/a/b"]);
    assert_eq!(st.dirs.iter().map(String::as_str).collect::<Vec<_>>(), vec!["/srv", "/srv/a", "/srv/a/b"]);
    assert_eq!(fs::metadata(dir.path().join("srv/a")).unwrap().permissions().mode() & 0o7777, PARENT_DIR_MODE);
    assert!(last_undo(&l, &st).unwrap().is_some());
    assert!(!l.journal().exists());
}

#[test]
fn uncommitted_journal_is_rolled_back_completely() {
    let (dir, l) = root();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/keep.conf"), b"old").unwrap();
    let h = put_blob(&l, b"new");
    let st = StateFile::load(&l).unwrap();
    let r = Root::open(l.root()).unwrap();
    let wants = vec![("/etc/keep.conf".into(), file(h)), ("/opt/x/new.txt".into(), file(h))];
    let (ops, keeps) = plan(&l, &r, &st, wants, &HashMap::new()).unwrap();
    keep(&l, &r, &keeps, 1).unwrap();
    let j = Journal { seq: st.seq + 1, from: None, to: Some(1), ops };
    write_json(&l.journal(), &j).unwrap();
    // Simulate a crash after the swap but before the commit.
    execute(&l, &r, &j.ops, |o| &o.want, false).unwrap();
    assert_eq!(fs::read(dir.path().join("etc/keep.conf")).unwrap(), b"new");
    let what = recover(&l, &st).unwrap().unwrap();
    assert!(what.contains("rolled back"), "{what}");
    assert_eq!(fs::read(dir.path().join("etc/keep.conf")).unwrap(), b"old");
    assert!(!dir.path().join("opt").exists(), "created directories removed");
    assert!(!l.journal().exists());
    assert!(recover(&l, &st).unwrap().is_none(), "recovery is idempotent");
}

#[test]
fn directories_with_unmanaged_content_are_never_replaced() {
    let (dir, l) = root();
    fs::create_dir_all(dir.path().join("etc/x")).unwrap();
    fs::write(dir.path().join("etc/x/theirs"), b"t").unwrap();
    let h = put_blob(&l, b"f");
    let mut st = StateFile::load(&l).unwrap();
    let err = go(&l, &mut st, None, Some(1), vec![("/etc/x".into(), file(h))], &HashMap::new()).unwrap_err();
    assert!(err.0.contains("refusing to replace the directory /etc/x"), "{err}");
    assert!(!l.journal().exists());
    assert_eq!(fs::read(dir.path().join("etc/x/theirs")).unwrap(), b"t");
}

#[test]
fn failed_stage_restores_priors() {
    let (dir, l) = root();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/a"), b"old a").unwrap();
    let good = put_blob(&l, b"good");
    let missing = Hash([9; 32]);
    let mut st = StateFile::load(&l).unwrap();
    let wants = vec![("/etc/a".into(), file(good)), ("/etc/b".into(), file(missing))];
    assert!(go(&l, &mut st, None, Some(1), wants, &HashMap::new()).is_err());
    assert_eq!(fs::read(dir.path().join("etc/a")).unwrap(), b"old a");
    assert!(!dir.path().join("etc/b").exists());
    assert_eq!(st.current, None);
}

/// One path through every kind, each change undone exactly.
#[test]
fn a_path_changes_kind_file_symlink_directory_file_and_back() {
    let (dir, l) = root();
    let a = put_blob(&l, b"a file");
    let b = put_blob(&l, b"beneath");
    let p = dir.path().join("srv/x");
    let mut st = StateFile::load(&l).unwrap();
    let gens: Vec<Vec<(String, PathState)>> = vec![
        vec![("/srv/x".into(), file(a))],
        vec![("/srv/x".into(), link("/etc/passwd"))],
        vec![("/srv/x".into(), PathState::Absent), ("/srv/x/y".into(), file(b))],
        vec![("/srv/x/y".into(), PathState::Absent), ("/srv/x".into(), file(a))],
    ];
    let expect = ["file", "symlink", "dir", "file"];
    let mut undos = Vec::new();
    for (i, wants) in gens.into_iter().enumerate() {
        go(&l, &mut st, Some(i as u64), Some(i as u64 + 1), wants, &HashMap::new()).unwrap();
        assert_eq!(kind(&p), expect[i], "generation {}", i + 1);
        undos.push(last_undo(&l, &st).unwrap().unwrap());
    }
    assert_eq!(fs::read(&p).unwrap(), b"a file");
    assert!(!st.dirs.contains("/srv/x"), "the directory drover created is gone again");
    for (i, j) in undos.iter().enumerate().rev() {
        undo(&l, &mut st, j).unwrap();
        assert_eq!(kind(&p), if i == 0 { "absent" } else { expect[i - 1] }, "undo of generation {}", i + 1);
    }
    assert!(!dir.path().join("srv").exists(), "every directory drover created is gone");
    assert!(st.dirs.is_empty());
}

#[test]
fn an_unmanaged_symlink_parent_is_never_written_through() {
    let (dir, l) = root();
    let victim = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("srv")).unwrap();
    symlink(victim.path(), dir.path().join("srv/app")).unwrap();
    let h = put_blob(&l, b"payload");
    let mut st = StateFile::load(&l).unwrap();
    let err = go(&l, &mut st, None, Some(1), vec![("/srv/app/conf".into(), file(h))], &HashMap::new()).unwrap_err();
    assert!(err.0.contains("/srv/app") && err.0.contains("symlink drover does not manage"), "{err}");
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 0, "nothing written through the link");
}

#[test]
fn a_parent_writable_by_others_is_refused() {
    let (dir, l) = root();
    fs::create_dir_all(dir.path().join("shared")).unwrap();
    fs::set_permissions(dir.path().join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    let h = put_blob(&l, b"x");
    let mut st = StateFile::load(&l).unwrap();
    let err = go(&l, &mut st, None, Some(1), vec![("/shared/f".into(), file(h))], &HashMap::new()).unwrap_err();
    assert!(err.0.contains("refusing to write under /shared"), "{err}");
    assert!(!dir.path().join("shared/f").exists());
}

/// A directory drover created, in which something else appeared (runit's
/// `supervise/`), stays when its generation is undone: nothing unmanaged is
/// deleted, and the undo itself succeeds.
#[test]
fn undo_keeps_a_created_directory_that_something_else_now_uses() {
    let (dir, l) = root();
    let h = put_blob(&l, b"run");
    let mut st = StateFile::load(&l).unwrap();
    go(&l, &mut st, None, Some(1), vec![("/etc/sv/web/run".into(), file(h))], &HashMap::new()).unwrap();
    fs::create_dir_all(dir.path().join("etc/sv/web/supervise")).unwrap();
    fs::write(dir.path().join("etc/sv/web/supervise/pid"), b"42").unwrap();
    let j = last_undo(&l, &st).unwrap().unwrap();
    undo(&l, &mut st, &j).unwrap();
    assert!(!dir.path().join("etc/sv/web/run").exists());
    assert_eq!(fs::read(dir.path().join("etc/sv/web/supervise/pid")).unwrap(), b"42");
    assert_eq!(st.current, None);
}
