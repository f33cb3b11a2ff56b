//! drover-oci's integration tests (one binary): flattening against a
//! reference model and real tools, and real round trips through a
//! throwaway registry and image files.

mod auth;
mod cases;
mod files;
mod lock;
mod model;
mod props;
mod registry;
mod umoci;

use drover_oci::Cache;

/// A cache in a fresh temp dir (kept alive by the returned guard).
pub fn temp_cache() -> (tempfile::TempDir, Cache) {
    let d = tempfile::tempdir().unwrap();
    let c = Cache::new(d.path().join("images"));
    (d, c)
}

/// An extended attribute of `path` (not following symlinks).
pub fn xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings; the buffer pointer and length come from one Vec.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}
