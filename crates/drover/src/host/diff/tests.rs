use super::*;

struct NoSource;
impl StateSource for NoSource {
    fn compile(&self, _: &drover_spec::Host, _: &drover_proto::Facts, _: u64) -> Result<Compiled, String> {
        Err("unused".into())
    }
}

fn h(b: &[u8]) -> Hash {
    Hash(*blake3::hash(b).as_bytes())
}

fn compiled(path: &str, content: &[u8], mode: u32) -> Compiled {
    let entry = Entry {
        path: path.into(),
        kind: EntryKind::File { size: content.len() as u64, hash: h(content) },
        mode,
        owner: "root".into(),
        group: "root".into(),
        source: None,
    };
    let manifest = drover_proto::Manifest { entries: vec![entry], ..Default::default() };
    let blobs = [(h(content), BlobSource::Bytes(std::sync::Arc::new(content.to_vec())))].into_iter().collect();
    Compiled { manifest, blobs, secrets: Default::default() }
}

fn host_file(content: &[u8], mode: u32) -> PathNow {
    PathNow::File {
        size: content.len() as u64,
        hash: h(content),
        mode,
        uid: 0,
        gid: 0,
        owner: Some("root".into()),
        group: Some("root".into()),
        content: Some(content.to_vec()),
    }
}

fn one(c: &Compiled, kind: ChangeKind, now: PathNow) -> FileDiff {
    let change = Change { path: "/etc/x".into(), kind };
    diffs(&NoSource, c, &[change], &[PathInfo { path: "/etc/x".into(), now }]).remove(0)
}

#[test]
fn text_change_is_a_unified_diff_from_the_host_content() {
    let c = compiled("/etc/x", b"a\nnew\n", 0o644);
    let d = one(&c, ChangeKind::Modify, host_file(b"a\nold\n", 0o644));
    let u = d.unified.unwrap();
    assert!(u.contains("--- host:/etc/x") && u.contains("+++ project:/etc/x"), "{u}");
    assert!(u.contains("-old\n") && u.contains("+new\n") && u.contains(" a\n"), "{u}");
    assert!(d.attributes.is_empty() && d.content_note.is_none());
}

#[test]
fn a_secret_file_shows_as_secret_changed_with_no_content_or_hash() {
    let mut c = compiled("/etc/x", b"password=new-clear-value\n", 0o600);
    c.secrets.insert("/etc/x".into(), vec!["db_password".into()]);
    let d = one(&c, ChangeKind::Modify, host_file(b"password=old-clear-value\n", 0o644));
    let shown = format!("{d:?}");
    assert_eq!(d.content_note.as_deref(), Some("<secret db_password changed>"));
    assert!(d.unified.is_none());
    assert_eq!(d.attributes, vec!["mode 0644 -> 0600".to_string()]);
    assert!(!shown.contains("clear-value"), "{shown}");
    assert!(!shown.contains(&h(b"password=new-clear-value\n").short()), "{shown}");
    assert!(!shown.contains(&h(b"password=old-clear-value\n").short()), "{shown}");
}

#[test]
fn mode_only_change_lists_the_mode_and_no_content() {
    let c = compiled("/etc/x", b"same\n", 0o755);
    let d = one(&c, ChangeKind::Modify, host_file(b"same\n", 0o644));
    assert_eq!(d.attributes, vec!["mode 0644 -> 0755".to_string()]);
    assert!(d.unified.is_none() && d.content_note.is_none());
}

#[test]
fn owners_match_by_name_by_number_and_root_is_0() {
    assert!(same_account(Some("www"), 33, "www"));
    assert!(same_account(None, 33, "33"));
    assert!(same_account(None, 0, "root"));
    assert!(!same_account(Some("op"), 1000, "www"));
    let c = compiled("/etc/x", b"same\n", 0o644);
    let mut now = host_file(b"same\n", 0o644);
    if let PathNow::File { uid, owner, .. } = &mut now {
        (*uid, *owner) = (1000, Some("op".into()));
    }
    assert_eq!(one(&c, ChangeKind::Modify, now).attributes, vec!["owner op -> root".to_string()]);
}

#[test]
fn binary_and_oversized_content_are_summarised_by_size_and_hash() {
    let c = compiled("/etc/x", b"\0\x01binary", 0o644);
    let d = one(&c, ChangeKind::Modify, host_file(b"text\n", 0o644));
    assert!(d.unified.is_none());
    let note = d.content_note.unwrap();
    assert!(note.starts_with("binary content differs") && note.contains(&h(b"\0\x01binary").short()), "{note}");

    let big = vec![b'x'; DIFF_LIMIT as usize + 1];
    let c = compiled("/etc/x", &big, 0o644);
    let d = one(&c, ChangeKind::Modify, host_file(b"small\n", 0o644));
    assert!(d.content_note.unwrap().contains("larger than 64 KiB"));
    assert!(d.unified.is_none());
}

#[test]
fn a_new_file_diffs_against_nothing_and_a_kind_change_is_named() {
    let c = compiled("/etc/x", b"hello\n", 0o644);
    let d = one(&c, ChangeKind::Add, PathNow::Absent);
    assert!(d.unified.unwrap().contains("+hello\n"));
    assert_eq!(d.before, "absent");
    let d = one(&c, ChangeKind::Modify, PathNow::Symlink { target: "/elsewhere".into() });
    assert_eq!(d.attributes, vec!["kind symlink -> file".to_string()]);
}
