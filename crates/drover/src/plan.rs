//! `drover plan --diff`: what would change on each host, file by file.
//!
//! The "before" side always comes from the host itself (`ReadPaths`, a
//! read-only request), never from what the controller believes it last sent:
//! a file edited by hand on the host shows as exactly that edit. The "after"
//! side is the compiled project. Text files within [`DIFF_LIMIT`] get a
//! unified diff (the `similar` crate); binary or larger files are summarised
//! by size and hash; mode, owner, group and link-target changes are listed
//! on their own.

use std::fmt::Write as _;
use std::io::Read as _;

use drover_proto::{Change, ChangeKind, Entry, EntryKind, Hash, PathInfo, PathNow, Request, Response};
use drover_spec::{BlobSource, Compiled};
use serde::Serialize;

use crate::deploy::{DeployError, StateSource};
use crate::progress::HostProgress;
use crate::report::HostReport;
use crate::transport::Connection;

/// Largest file (on either side) shown as a content diff. Larger files are
/// summarised by size and hash: a plan is read by people.
pub const DIFF_LIMIT: u64 = 64 * 1024;

/// What `plan` shows and how it exits (`--diff`, `--exit-code`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Read the changed paths from the host and show content diffs.
    pub diff: bool,
    /// Exit 0 when nothing would change, 2 when something would, 1 on error
    /// (`terraform plan -detailed-exitcode`); see `exit::plan_status`.
    pub detailed_exit: bool,
}

/// One changed path, host side against project side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub kind: ChangeKind,
    /// The path on the host now, one line ("file 120 B 0644 root:root
    /// blake3:…", "symlink -> x", "absent").
    pub before: String,
    /// The path as the project wants it (same form).
    pub after: String,
    /// Attribute changes: "mode 0644 -> 0755", "owner root -> www", "target a -> b", "kind file -> symlink".
    pub attributes: Vec<String>,
    /// Unified diff of the content, when both sides are text within the limit.
    pub unified: Option<String>,
    /// Why the content change has no unified diff (binary, too large).
    pub content_note: Option<String>,
}

/// Read every changed path from the host (in batches that fit a frame) and
/// diff it against the compiled content.
pub(crate) async fn host_diffs(
    source: &dyn StateSource,
    conn: &mut Connection,
    compiled: &Compiled,
    changes: &[Change],
    p: &HostProgress,
) -> Result<Vec<FileDiff>, DeployError> {
    p.step("reading changed paths");
    let mut now = Vec::with_capacity(changes.len());
    for batch in changes.chunks(drover_proto::READ_PATHS_MAX) {
        let paths = batch.iter().map(|c| c.path.clone()).collect();
        match conn.link.call(&Request::ReadPaths { paths, max_bytes: DIFF_LIMIT }, &mut |m| p.step(m)).await? {
            Response::Paths(got) => now.extend(got),
            other => return Err(DeployError::Other(format!("unexpected reply to ReadPaths: {other:?}"))),
        }
    }
    Ok(diffs(source, compiled, changes, &now))
}

/// The diffs of one host's changes, from the host's answer to `ReadPaths`.
pub fn diffs(source: &dyn StateSource, compiled: &Compiled, changes: &[Change], host: &[PathInfo]) -> Vec<FileDiff> {
    changes
        .iter()
        .map(|c| {
            let now = host.iter().find(|p| p.path == c.path).map_or(&PathNow::Absent, |p| &p.now);
            let want = compiled.manifest.entry(&c.path);
            file_diff(source, compiled, c, now, want)
        })
        .collect()
}

fn file_diff(
    source: &dyn StateSource,
    compiled: &Compiled,
    c: &Change,
    now: &PathNow,
    want: Option<&Entry>,
) -> FileDiff {
    let mut d = FileDiff {
        path: c.path.clone(),
        kind: c.kind,
        before: describe_host(now),
        after: want.map_or_else(|| "absent".to_string(), describe_entry),
        attributes: vec![],
        unified: None,
        content_note: None,
    };
    let Some(want) = want else { return d };
    if let Some(names) = compiled.secrets.get(&c.path) {
        secret_diff(&mut d, now, want, names);
        return d;
    }
    match (now, &want.kind) {
        (
            PathNow::File { hash, size, mode, uid, gid, owner, group, content },
            EntryKind::File { hash: wh, size: ws },
        ) => {
            if *mode != want.mode {
                d.attributes.push(format!("mode {mode:04o} -> {:04o}", want.mode));
            }
            if !same_account(owner.as_deref(), *uid, &want.owner) {
                let o = owner.clone().unwrap_or_else(|| uid.to_string());
                d.attributes.push(format!("owner {o} -> {}", want.owner));
            }
            if !same_account(group.as_deref(), *gid, &want.group) {
                let g = group.clone().unwrap_or_else(|| gid.to_string());
                d.attributes.push(format!("group {g} -> {}", want.group));
            }
            if hash != wh {
                let after = (*ws <= DIFF_LIMIT).then(|| desired_bytes(source, compiled, wh)).flatten();
                content_diff(&mut d, content.as_deref(), *size, hash, after.as_deref(), *ws, wh);
            }
        }
        (PathNow::Symlink { target }, EntryKind::Symlink { target: wt }) => {
            if target != wt {
                d.attributes.push(format!("target {target} -> {wt}"));
            }
        }
        (PathNow::Absent, EntryKind::File { hash: wh, size: ws }) => {
            let after = (*ws <= DIFF_LIMIT).then(|| desired_bytes(source, compiled, wh)).flatten();
            content_diff(&mut d, Some(&[]), 0, &Hash(*blake3::hash(&[]).as_bytes()), after.as_deref(), *ws, wh);
        }
        (PathNow::Absent, EntryKind::Symlink { .. }) => {}
        (now, want) => d.attributes.push(format!("kind {} -> {}", host_kind(now), entry_kind(want))),
    }
    d
}

/// A path that holds a secret: attribute changes as usual, the content only
/// as `<secret NAME changed>`, and no content hash on either side (a hash of
/// a short secret is a brute-force oracle).
fn secret_diff(d: &mut FileDiff, now: &PathNow, want: &Entry, names: &[String]) {
    if let PathNow::File { hash, .. } = now {
        d.before = d.before.replace(&hash.short(), "<secret>");
    }
    if let EntryKind::File { hash, .. } = &want.kind {
        d.after = d.after.replace(&hash.short(), "<secret>");
    }
    match (now, &want.kind) {
        (PathNow::File { hash, mode, uid, gid, owner, group, .. }, EntryKind::File { hash: wh, .. }) => {
            if *mode != want.mode {
                d.attributes.push(format!("mode {mode:04o} -> {:04o}", want.mode));
            }
            if !same_account(owner.as_deref(), *uid, &want.owner) {
                d.attributes.push(format!(
                    "owner {} -> {}",
                    owner.clone().unwrap_or_else(|| uid.to_string()),
                    want.owner
                ));
            }
            if !same_account(group.as_deref(), *gid, &want.group) {
                d.attributes.push(format!(
                    "group {} -> {}",
                    group.clone().unwrap_or_else(|| gid.to_string()),
                    want.group
                ));
            }
            if hash != wh {
                d.content_note = Some(format!("<secret {} changed>", names.join(", ")));
            }
        }
        (PathNow::Absent, _) => d.content_note = Some(format!("<secret {} added>", names.join(", "))),
        (now, want) => {
            d.attributes.push(format!("kind {} -> {}", host_kind(now), entry_kind(want)));
            d.content_note = Some(format!("<secret {} changed>", names.join(", ")));
        }
    }
}

/// Is the host's owner (name as the host knows it, and id) the one the
/// project names? By name, by number, or `root` for 0 even on a host whose
/// account files lack it (as the agent resolves it).
fn same_account(host_name: Option<&str>, id: u32, want: &str) -> bool {
    host_name == Some(want) || id.to_string() == want || (id == 0 && want == "root")
}

/// A unified diff when both sides are text within the limit; otherwise a
/// note with sizes and hashes.
fn content_diff(
    d: &mut FileDiff,
    before: Option<&[u8]>,
    before_size: u64,
    before_hash: &Hash,
    after: Option<&[u8]>,
    after_size: u64,
    after_hash: &Hash,
) {
    let summary = || {
        format!(
            "{} ({}) -> {} ({})",
            crate::report::human_bytes(before_size),
            before_hash.short(),
            crate::report::human_bytes(after_size),
            after_hash.short()
        )
    };
    if before_size > DIFF_LIMIT || after_size > DIFF_LIMIT {
        d.content_note = Some(format!("content differs, larger than {} KiB: {}", DIFF_LIMIT / 1024, summary()));
        return;
    }
    match (before, after) {
        (Some(b), Some(a)) => match (text(b), text(a)) {
            (Some(b), Some(a)) => {
                let host = format!("host:{}", d.path);
                let project = format!("project:{}", d.path);
                let diff = similar::TextDiff::from_lines(b, a);
                d.unified = Some(diff.unified_diff().context_radius(3).header(&host, &project).to_string());
            }
            _ => d.content_note = Some(format!("binary content differs: {}", summary())),
        },
        // Changed on the host while it was read, or the project's blob is
        // not at hand: still say what differs.
        _ => d.content_note = Some(format!("content differs: {}", summary())),
    }
}

/// Text: valid UTF-8 without NUL bytes.
fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok().filter(|s| !s.contains('\0'))
}

/// The project's bytes for `hash`: rendered in memory, a project file, or a
/// bundle's compressed chunks.
fn desired_bytes(source: &dyn StateSource, compiled: &Compiled, hash: &Hash) -> Option<Vec<u8>> {
    match compiled.blobs.get(hash) {
        Some(BlobSource::Bytes(b)) => Some(b.to_vec()),
        Some(BlobSource::File(p)) => {
            let mut buf = Vec::new();
            std::fs::File::open(p).ok()?.take(DIFF_LIMIT + 1).read_to_end(&mut buf).ok()?;
            Some(buf)
        }
        None => {
            let mut out = Vec::new();
            for chunk in source.packed(hash, 0)? {
                let (_, data) = chunk.ok()?;
                out.extend(zstd::decode_all(data.as_slice()).ok()?);
            }
            Some(out)
        }
    }
}

fn describe_host(now: &PathNow) -> String {
    match now {
        PathNow::Absent => "absent".into(),
        PathNow::File { size, hash, mode, uid, gid, owner, group, .. } => format!(
            "file {} {mode:04o} {}:{} {}",
            crate::report::human_bytes(*size),
            owner.clone().unwrap_or_else(|| uid.to_string()),
            group.clone().unwrap_or_else(|| gid.to_string()),
            hash.short()
        ),
        PathNow::Symlink { target } => format!("symlink -> {target}"),
        PathNow::Other { what } => what.clone(),
    }
}

fn describe_entry(e: &Entry) -> String {
    match &e.kind {
        EntryKind::File { size, hash } => format!(
            "file {} {:04o} {}:{} {}",
            crate::report::human_bytes(*size),
            e.mode,
            e.owner,
            e.group,
            hash.short()
        ),
        EntryKind::Symlink { target } => format!("symlink -> {target}"),
        EntryKind::Dir => format!("directory {:04o} {}:{}", e.mode, e.owner, e.group),
    }
}

fn host_kind(now: &PathNow) -> &'static str {
    match now {
        PathNow::Absent => "absent",
        PathNow::File { .. } => "file",
        PathNow::Symlink { .. } => "symlink",
        PathNow::Other { .. } => "directory or special file",
    }
}

fn entry_kind(k: &EntryKind) -> &'static str {
    match k {
        EntryKind::File { .. } => "file",
        EntryKind::Symlink { .. } => "symlink",
        EntryKind::Dir => "directory",
    }
}

/// The diffs of every host, for people: per host, each changed path with its
/// attribute changes and content diff, then the services that would restart.
pub fn render(hosts: &[HostReport]) -> String {
    let mut out = String::new();
    for h in hosts {
        let Some(diffs) = &h.diffs else { continue };
        if diffs.is_empty() && h.restarts.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n=== {}", h.host);
        for d in diffs {
            let _ = writeln!(out, "{} {}", d.kind.symbol(), d.path);
            let _ = writeln!(out, "    host:    {}", d.before);
            let _ = writeln!(out, "    project: {}", d.after);
            for a in &d.attributes {
                let _ = writeln!(out, "    {a}");
            }
            if let Some(n) = &d.content_note {
                let _ = writeln!(out, "    {n}");
            }
            if let Some(u) = &d.unified {
                for line in u.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        if !h.restarts.is_empty() {
            let _ = writeln!(out, "services: {}", h.restarts.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
}
