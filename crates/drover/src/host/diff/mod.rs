//! `drover plan --diff`: what would change on each host, file by file.
//!
//! The "before" side always comes from the host itself (`ReadPaths`, a
//! read-only request), never from what the controller believes it last sent:
//! a file edited by hand on the host shows as exactly that edit. The "after"
//! side is the compiled project. Text files within [`DIFF_LIMIT`] get a
//! unified diff (the `similar` crate); binary or larger files are summarised
//! by size and hash; mode, owner, group and link-target changes are listed
//! on their own.

use std::io::Read as _;

use drover_proto::{Change, ChangeKind, Entry, EntryKind, Hash, PathInfo, PathNow, Request, Response};
use drover_spec::{BlobSource, Compiled};
use serde::Serialize;

use super::error::HostError;
use super::source::StateSource;
use crate::progress::HostProgress;
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
) -> Result<Vec<FileDiff>, HostError> {
    p.step("reading changed paths");
    let mut now = Vec::with_capacity(changes.len());
    for batch in changes.chunks(drover_proto::READ_PATHS_MAX) {
        let paths = batch.iter().map(|c| c.path.clone()).collect();
        match conn.link.call(&Request::ReadPaths { paths, max_bytes: DIFF_LIMIT }, &mut |m| p.step(m)).await? {
            Response::Paths(got) => now.extend(got),
            other => return Err(HostError::unexpected("ReadPaths", &other)),
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
        if d.content_note.is_some() {
            redacted_content(&mut d, source, compiled, now, want, names);
        }
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

/// A path that holds a secret: attribute changes as usual, the content as
/// `<secret NAME changed>` (replaced by a redacted diff where one is safe:
/// [`redacted_content`]), and no content hash on either side (a hash of a
/// short secret is a brute-force oracle).
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

/// The content diff of a secret-holding text file with the values redacted
/// (see [`redact`]), in place of the bare note when it can be shown safely.
fn redacted_content(
    d: &mut FileDiff,
    source: &dyn StateSource,
    compiled: &Compiled,
    now: &PathNow,
    want: &Entry,
    names: &[String],
) {
    let EntryKind::File { hash, size } = &want.kind else { return };
    let host = match now {
        PathNow::Absent => None,
        PathNow::File { content: Some(c), .. } => Some(c.as_slice()),
        _ => return,
    };
    let Some(values) = (*size <= DIFF_LIMIT).then(|| source.redactions(names)).flatten() else { return };
    let Some(project) = desired_bytes(source, compiled, hash) else { return };
    if let Some((unified, note)) = redact::content(names, &values, host, &project, &d.path) {
        d.unified = unified;
        d.content_note = note;
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
            crate::human::bytes(before_size),
            before_hash.short(),
            crate::human::bytes(after_size),
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
            crate::human::bytes(*size),
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
        EntryKind::File { size, hash } => {
            format!("file {} {:04o} {}:{} {}", crate::human::bytes(*size), e.mode, e.owner, e.group, hash.short())
        }
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

mod redact;
#[cfg(test)]
mod tests;
