//! Read-only look at paths on the host, for `drover plan --diff`.
//!
//! The controller shows the host's *real* content against the project's, not
//! its own idea of what it last sent: a file edited by hand shows as the edit
//! it is. Nothing here writes, and the stat cache is not consulted (a plan is
//! rare; hashing a few changed files is cheap and always right).

use std::io::Read;
use std::os::fd::AsFd;

use drover_proto::{check_path, PathInfo, PathNow, READ_PATHS_MAX};

use crate::accounts::Accounts;
use crate::layout::Layout;
use crate::pathstate::Found;
use crate::safefs::{self, Parent, Root};
use crate::{bail, Context, Result};

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
    let root = Root::open(layout.root())?;
    paths
        .iter()
        .map(|p| {
            check_path(p).map_err(|e| crate::AgentError::new(format!("{p}: {e}")))?;
            Ok(PathInfo { path: p.clone(), now: read_one(&root, accounts, p, max_bytes)? })
        })
        .collect()
}

fn read_one(root: &Root, accounts: &Accounts, path: &str, max_bytes: u64) -> Result<PathNow> {
    // Through safefs like every managed path: a symlinked parent is reported,
    // never read through (plan must not disclose what a link points at).
    let dir = match root.parent(path, false)? {
        Parent::Dir(fd) => fd,
        Parent::Missing => return Ok(PathNow::Absent),
        Parent::Symlink { at } => return Ok(PathNow::Other { what: format!("beneath the symlink {at}") }),
    };
    let name = safefs::name(path);
    let (mode, uid, gid) = match safefs::look(dir.as_fd(), name)? {
        Found::Absent | Found::BeneathSymlink { .. } => return Ok(PathNow::Absent),
        Found::Symlink { target } => return Ok(PathNow::Symlink { target }),
        Found::Dir { .. } => return Ok(PathNow::Other { what: "a directory".into() }),
        Found::Special => return Ok(PathNow::Other { what: "a special file".into() }),
        Found::File { mode, uid, gid, .. } => (mode, uid, gid),
    };
    let mut f = safefs::open_file(dir.as_fd(), name)?;
    let mut hasher = blake3::Hasher::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).ctx(|| format!("read {path}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if size + n as u64 <= max_bytes {
            head.extend_from_slice(&buf[..n]);
        }
        size += n as u64;
    }
    Ok(PathNow::File {
        size,
        hash: drover_proto::Hash(*hasher.finalize().as_bytes()),
        mode,
        uid,
        gid,
        owner: accounts.user_name(uid),
        group: accounts.group_name(gid),
        content: (size <= max_bytes).then_some(head),
    })
}
