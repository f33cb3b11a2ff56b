//! A tree onto disk (tests, comparison with other tools, debugging).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{EntryKind, Tree};
use crate::cache::Cache;
use crate::error::OciError;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths from a tree have no NUL")
}

fn check(path: &Path, rc: libc::c_int) -> Result<(), OciError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(OciError::Io { path: path.into(), error: std::io::Error::last_os_error() })
    }
}

pub(super) fn write_tree(tree: &Tree, cache: &Cache, dir: &Path) -> Result<(), OciError> {
    std::fs::create_dir_all(dir).map_err(OciError::io(dir))?;
    let root = is_root();
    for e in &tree.entries {
        let p = dir.join(&e.path);
        let io = OciError::io(&p);
        match &e.kind {
            EntryKind::Dir => std::fs::create_dir(&p).map_err(io)?,
            EntryKind::File { hash, .. } => {
                std::fs::copy(cache.file_path(hash), &p).map_err(io)?;
            }
            EntryKind::HardLink { target, .. } => {
                std::fs::hard_link(dir.join(target), &p).map_err(io)?;
                continue;
            }
            EntryKind::Symlink { target } => std::os::unix::fs::symlink(target, &p).map_err(io)?,
            EntryKind::Fifo => {
                // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
                check(&p, unsafe { libc::mkfifo(cstr(&p).as_ptr(), 0o600) })?
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                if !root {
                    continue;
                }
                let ty = if matches!(e.kind, EntryKind::CharDevice { .. }) { libc::S_IFCHR } else { libc::S_IFBLK };
                let dev = libc::makedev(*major, *minor);
                // SAFETY: a valid NUL-terminated path; mknod has no other preconditions.
                check(&p, unsafe { libc::mknod(cstr(&p).as_ptr(), ty | 0o600, dev) })?
            }
        }
        if root {
            // SAFETY: a valid NUL-terminated path; lchown has no other preconditions.
            check(&p, unsafe { libc::lchown(cstr(&p).as_ptr(), e.uid, e.gid) })?;
            for (k, v) in &e.xattrs {
                let k = CString::new(k.as_bytes()).map_err(|_| OciError::Io {
                    path: p.clone(),
                    error: std::io::Error::other("an xattr name with a NUL"),
                })?;
                // SAFETY: valid NUL-terminated path and name; the value pointer and length come from one slice.
                check(&p, unsafe { libc::lsetxattr(cstr(&p).as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) })?;
            }
        }
        // chown clears setuid bits: modes come after; directories' last
        // (a read-only directory would refuse its children).
        if !matches!(e.kind, EntryKind::Symlink { .. } | EntryKind::Dir) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode)).map_err(OciError::io(&p))?;
        }
    }
    for e in tree.entries.iter().rev().filter(|e| matches!(e.kind, EntryKind::Dir)) {
        let p = dir.join(&e.path);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode)).map_err(OciError::io(&p))?;
    }
    Ok(())
}
