//! The controller's copies of the large files it shipped, kept as bases for
//! binary deltas (`.drover/bases/<blake3 hex>`).
//!
//! A delta is made from the old version of a file and the new one, and the
//! old version is usually gone from the project by the next release (the
//! binary was rebuilt in place). So when a file of a delta's size
//! ([`drover_proto::DELTA_MIN_SIZE`] to [`drover_proto::DELTA_MAX_SIZE`]) is
//! shipped, a copy is kept here; the next release that changes it can send
//! a delta against it to every host that still holds it. Packages need no
//! copy: their `.deb` files stay in the project's package cache
//! (`.drover/packages/`), which is looked in too.
//!
//! Bounded: at most [`CAP_BYTES`], the least recently used dropped first (a
//! base is touched when it is kept again or used). A base that is gone only
//! costs a whole transfer: the store is a cache, and a failure to write it
//! never fails a run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use drover_proto::Hash;
use drover_spec::BlobSource;

/// Where the bases are, in the project.
pub const DIR: &str = ".drover/bases";

/// The most the bases may take on disk: about 30 versions of a 64 MiB
/// file, or many more of smaller ones.
pub const CAP_BYTES: u64 = 2 << 30;

/// Content of blob `h` the controller holds, if any: a kept base, or a
/// cached package. Touched, so it is kept longer.
pub fn find(project: &Path, h: &Hash) -> Option<PathBuf> {
    let hex = h.to_hex();
    let kept = project.join(DIR).join(&hex);
    let path = [kept, drover_spec::lock::cache_path(project, &hex)].into_iter().find(|p| p.is_file())?;
    touch(&path);
    Some(path)
}

/// Keep a copy of `src` (whose blake3 is `h`) as a base, unless one is kept
/// already (then it is touched). Drops the least recently used bases when
/// over [`CAP_BYTES`].
pub fn keep(project: &Path, h: &Hash, src: &BlobSource) -> io::Result<()> {
    keep_within(project, h, src, CAP_BYTES)
}

fn keep_within(project: &Path, h: &Hash, src: &BlobSource, cap: u64) -> io::Result<()> {
    if find(project, h).is_some() {
        return Ok(());
    }
    let dir = project.join(DIR);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("tmp-{}-{}", std::process::id(), h.to_hex()));
    let copied = match src {
        BlobSource::File(path) => fs::copy(path, &tmp).map(drop),
        BlobSource::Bytes(b) => fs::write(&tmp, &b[..]),
    };
    // The file may have changed since it was hashed (rebuilt during the
    // run): a base must be exactly the content the host holds.
    let checked = copied.and_then(|()| match hash_file(&tmp)? == *h {
        true => fs::rename(&tmp, dir.join(h.to_hex())),
        false => Err(io::Error::other("changed since it was compiled")),
    });
    if let Err(e) = checked {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    prune(&dir, cap)
}

/// Drop the least recently used bases until the rest fit in `cap` bytes.
fn prune(dir: &Path, cap: u64) -> io::Result<()> {
    let mut all: Vec<(SystemTime, u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = all.iter().map(|(_, n, _)| n).sum();
    all.sort();
    for (_, n, path) in all {
        if total <= cap {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total -= n;
        }
    }
    Ok(())
}

fn touch(path: &Path) {
    if let Ok(f) = fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn hash_file(path: &Path) -> io::Result<Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path)?)?;
    Ok(Hash(*h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn blob(data: &[u8]) -> (Hash, BlobSource) {
        (Hash(*blake3::hash(data).as_bytes()), BlobSource::Bytes(Arc::new(data.to_vec())))
    }

    #[test]
    fn a_kept_base_is_found_and_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, sa) = blob(&[1; 1000]);
        let (b, sb) = blob(&[2; 1000]);
        let (c, sc) = blob(&[3; 1000]);
        keep_within(dir.path(), &a, &sa, 2500).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        keep_within(dir.path(), &b, &sb, 2500).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // Using `a` makes `b` the least recently used.
        assert_eq!(fs::read(find(dir.path(), &a).unwrap()).unwrap(), [1; 1000]);
        std::thread::sleep(Duration::from_millis(20));
        keep_within(dir.path(), &c, &sc, 2500).unwrap();
        assert!(find(dir.path(), &a).is_some() && find(dir.path(), &c).is_some());
        assert!(find(dir.path(), &b).is_none(), "over the cap, the least recently used went");
    }

    #[test]
    fn a_file_that_changed_since_it_was_hashed_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        fs::write(&file, b"rebuilt meanwhile").unwrap();
        let (h, _) = blob(b"what was compiled");
        assert!(keep(dir.path(), &h, &BlobSource::File(file)).is_err());
        assert!(find(dir.path(), &h).is_none());
        assert_eq!(fs::read_dir(dir.path().join(DIR)).unwrap().count(), 0, "no copy left behind");
    }
}
