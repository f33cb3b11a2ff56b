//! Read-only look at paths on the host, for `drover plan --diff`.
//!
//! The controller shows the host's *real* content against the project's, not
//! its own idea of what it last sent: a file edited by hand shows as the edit
//! it is. Nothing here writes, and the stat cache is not consulted (a plan is
//! rare; hashing a few changed files is cheap and always right).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use drover_proto::{check_path, PathInfo, PathNow, READ_PATHS_MAX};

use crate::accounts::Accounts;
use crate::layout::Layout;
use crate::{bail, fsops, Context, Result};

/// What is at each of `paths` now; regular files no larger than `max_bytes`
/// come with their content. At most [`READ_PATHS_MAX`] paths, and
/// `max_bytes` at most 1 MiB, so the reply fits in a frame.
pub fn read_paths(layout: &Layout, accounts: &Accounts, paths: &[String], max_bytes: u64) -> Result<Vec<PathInfo>> {
    if paths.len() > READ_PATHS_MAX {
        bail!("asked for {} paths at once; at most {READ_PATHS_MAX}", paths.len());
    }
    if max_bytes > 1 << 20 {
        bail!("asked for up to {max_bytes} bytes of content per file; at most 1 MiB");
    }
    paths
        .iter()
        .map(|p| {
            check_path(p).map_err(|e| crate::AgentError(format!("{p}: {e}")))?;
            Ok(PathInfo { path: p.clone(), now: read_one(layout, accounts, p, max_bytes)? })
        })
        .collect()
}

fn read_one(layout: &Layout, accounts: &Accounts, path: &str, max_bytes: u64) -> Result<PathNow> {
    let target = layout.target(path);
    let md = match fs::symlink_metadata(&target) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Ok(PathNow::Absent)
        }
        Err(e) => bail!("lstat {}: {e}", target.display()),
    };
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = fs::read_link(&target).ctx(|| format!("readlink {}", target.display()))?;
        return Ok(PathNow::Symlink { target: t.to_string_lossy().into_owned() });
    }
    if !ft.is_file() {
        let what = if ft.is_dir() { "a directory" } else { "a special file" };
        return Ok(PathNow::Other { what: what.into() });
    }
    let (hash, size) = fsops::hash_file(&target)?;
    let content = if size <= max_bytes {
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        File::open(&target)
            .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut buf))
            .ctx(|| format!("read {}", target.display()))?;
        // Changed between hashing and reading: the hash would not match it.
        (blake3::hash(&buf).as_bytes() == &hash.0).then_some(buf)
    } else {
        None
    };
    Ok(PathNow::File {
        size,
        hash,
        mode: md.permissions().mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        owner: accounts.user_name(md.uid()),
        group: accounts.group_name(md.gid()),
        content,
    })
}
