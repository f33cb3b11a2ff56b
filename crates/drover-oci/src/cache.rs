//! The project's image cache, `.drover/images/`:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layers as pulled or read
//!   from a file, each stored only after its sha256 matched its digest;
//! - `files/<blake3>`: the regular files of flattened images, by content,
//!   so images sharing a base share them;
//! - `trees/<manifest hex>`: the blake3 hashes of one flattened image's
//!   files (one per line), to count what cached images share;
//! - `trees/<manifest hex>.tree.json`: the flattened tree itself, so a
//!   pinned image is flattened once (see `flatten::stored`).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{sha256_hex, HashingWriter};
use crate::error::OciError;

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache of a project: `<project>/.drover/images`.
    pub fn for_project(project: &Path) -> Cache {
        Cache::new(project.join(".drover/images"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` is (or would be) kept.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = sha256_hex(digest).ok_or_else(|| OciError::Reference {
            reference: digest.into(),
            detail: "not a sha256 digest (`sha256:` and 64 lower-case hex digits)".into(),
        })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(OciError::io(p))
    }

    /// A temp file in the cache (same filesystem, so it can be renamed in).
    pub(crate) fn temp(&self) -> Result<(PathBuf, File), OciError> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(OciError::io(&dir))?;
        for n in 0u32.. {
            let p = dir.join(format!("{}-{n}", std::process::id()));
            match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(f) => return Ok((p, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(OciError::Io { path: p, error: e }),
            }
        }
        unreachable!()
    }

    /// Move a written temp file to blob `digest` after checking its sha256
    /// (`actual`); a mismatch deletes it and is [`OciError::Digest`].
    pub(crate) fn commit_blob(&self, image: &str, tmp: &Path, digest: &str, actual: &str) -> Result<(), OciError> {
        let path = self.blob_path(digest)?;
        if actual != digest {
            let _ = fs::remove_file(tmp);
            return Err(OciError::Digest { image: image.into(), digest: digest.into(), actual: actual.into() });
        }
        let dir = path.parent().expect("blob dir");
        fs::create_dir_all(dir).map_err(OciError::io(dir))?;
        fs::rename(tmp, &path).map_err(OciError::io(&path))
    }

    /// Store blob `digest` from `reader`, refusing content that does not
    /// hash to it.
    pub(crate) fn put_blob(&self, image: &str, digest: &str, mut reader: impl Read) -> Result<(), OciError> {
        self.blob_path(digest)?;
        if self.has_blob(digest) {
            return Ok(());
        }
        let (tmp, f) = self.temp()?;
        let mut w = HashingWriter::new(io::BufWriter::new(f));
        io::copy(&mut reader, &mut w).map_err(OciError::io(&tmp))?;
        w.flush().map_err(OciError::io(&tmp))?;
        let actual = w.digest();
        self.commit_blob(image, &tmp, digest, &actual)
    }

    /// Where the flattened file of blake3 `hash` is kept.
    pub fn file_path(&self, hash: &blake3::Hash) -> PathBuf {
        self.root.join("files").join(hash.to_hex().as_str())
    }

    /// The bytes of a flattened file, to ship as a content-addressed blob.
    pub fn open_file(&self, hash: &blake3::Hash) -> Result<File, OciError> {
        let p = self.file_path(hash);
        File::open(&p).map_err(OciError::io(p))
    }

    /// Store a file's content by its blake3; its hash and size.
    pub(crate) fn put_file(&self, mut reader: impl Read) -> Result<(blake3::Hash, u64), OciError> {
        let (tmp, f) = self.temp()?;
        let mut out = io::BufWriter::new(f);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(OciError::io(&tmp))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(OciError::io(&tmp))?;
            size += n as u64;
        }
        out.flush().map_err(OciError::io(&tmp))?;
        drop(out);
        let hash = hasher.finalize();
        let path = self.file_path(&hash);
        if path.exists() {
            let _ = fs::remove_file(&tmp);
        } else {
            let dir = path.parent().expect("files dir");
            fs::create_dir_all(dir).map_err(OciError::io(dir))?;
            fs::rename(&tmp, &path).map_err(OciError::io(&path))?;
        }
        Ok((hash, size))
    }

    /// Record the file hashes of the flattened image `manifest_digest`.
    pub fn record_tree(&self, manifest_digest: &str, hashes: &HashSet<blake3::Hash>) -> Result<(), OciError> {
        let p = self.tree_path(manifest_digest)?;
        let dir = p.parent().expect("trees dir");
        fs::create_dir_all(dir).map_err(OciError::io(dir))?;
        let mut hex: Vec<String> = hashes.iter().map(|h| h.to_hex().to_string()).collect();
        hex.sort();
        let text: String = hex.iter().map(|h| format!("{h}\n")).collect();
        fs::write(&p, text).map_err(OciError::io(p))
    }

    /// How many of `hashes` (an image's files) another recorded image
    /// (not `manifest_digest`) also has.
    pub fn shared_files(&self, manifest_digest: &str, hashes: &HashSet<blake3::Hash>) -> Result<usize, OciError> {
        let me = self.tree_path(manifest_digest)?;
        let dir = self.root.join("trees");
        let mut others = HashSet::new();
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(0) };
        for e in rd {
            let p = e.map_err(OciError::io(&dir))?.path();
            // The hash lists only (named by the bare hex).
            if p == me || p.extension().is_some() {
                continue;
            }
            let text = fs::read_to_string(&p).map_err(OciError::io(&p))?;
            others.extend(text.lines().filter_map(|l| blake3::Hash::from_hex(l).ok()));
        }
        Ok(hashes.iter().filter(|h| others.contains(*h)).count())
    }

    fn tree_path(&self, manifest_digest: &str) -> Result<PathBuf, OciError> {
        let blob = self.blob_path(manifest_digest)?;
        Ok(self.root.join("trees").join(blob.file_name().expect("hex")))
    }

    /// `trees/<manifest hex>.<suffix>`: what is kept about a flattened image.
    pub(crate) fn tree_file(&self, manifest_digest: &str, suffix: &str) -> Result<PathBuf, OciError> {
        let p = self.tree_path(manifest_digest)?;
        Ok(p.with_extension(suffix))
    }
}
