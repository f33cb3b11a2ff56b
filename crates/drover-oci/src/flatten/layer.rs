//! One layer blob → the operations it holds: decompression chosen by the
//! blob's first bytes (gzip, zstd, else a plain tar; media types lie),
//! file contents stored in the cache as they stream by, and the
//! uncompressed stream hashed against the layer's diff_id.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use tar::EntryType;

use crate::cache::Cache;
use crate::digest::HashingReader;
use crate::error::OciError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// A parent directory no layer described.
    pub fn implicit_dir() -> Meta {
        Meta { mode: 0o755, uid: 0, gid: 0, xattrs: BTreeMap::new() }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Add {
    Dir,
    File { hash: blake3::Hash, size: u64 },
    Symlink(String),
    HardLink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Delete this path (of lower layers).
    Whiteout(String),
    /// Empty this directory (of lower layers' entries).
    Opaque(String),
    Add(String, Meta, Add),
}

fn decompress<'a>(blob: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::new(blob);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// The operations of one layer, in tar order.
pub(crate) fn read_ops(
    cache: &Cache,
    image: &str,
    layer: &str,
    blob: impl Read,
    diff_id: Option<&str>,
) -> Result<Vec<Op>, OciError> {
    let bad = |detail: String| OciError::Layer { image: image.into(), layer: layer.into(), detail };
    let mut hashing = HashingReader::new(decompress(blob).map_err(|e| bad(e.to_string()))?);
    let mut ops = Vec::new();
    {
        let mut tar = tar::Archive::new(&mut hashing);
        for e in tar.entries().map_err(|e| bad(format!("tar: {e}")))? {
            let mut e = e.map_err(|e| bad(format!("tar: {e}")))?;
            let raw =
                String::from_utf8(e.path_bytes().into_owned()).map_err(|_| bad("a path that is not UTF-8".into()))?;
            let path = normalize(&raw);
            let h = e.header().clone();
            let ty = h.entry_type();
            if ty == EntryType::XGlobalHeader || path.is_empty() {
                continue;
            }
            let (dir, base) = path.rsplit_once('/').map_or(("", path.as_str()), |(d, b)| (d, b));
            if base == ".wh..wh..opq" {
                ops.push(Op::Opaque(dir.into()));
                continue;
            }
            if base.starts_with(".wh..wh.") {
                continue;
            }
            if base == ".wh." {
                // A whiteout of no name: malformed; it must not delete its directory.
                continue;
            }
            if let Some(name) = base.strip_prefix(".wh.") {
                ops.push(Op::Whiteout(if dir.is_empty() { name.into() } else { format!("{dir}/{name}") }));
                continue;
            }
            let mut xattrs = BTreeMap::new();
            if let Some(pax) = e.pax_extensions().map_err(|e| bad(format!("pax: {e}")))? {
                for x in pax.flatten() {
                    if let Some(name) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                        xattrs.insert(name.to_string(), x.value_bytes().to_vec());
                    }
                }
            }
            let num = |v: std::io::Result<u64>| v.map(|n| n as u32).map_err(|e| bad(format!("{path}: {e}")));
            let meta =
                Meta { mode: num(h.mode().map(u64::from))? & 0o7777, uid: num(h.uid())?, gid: num(h.gid())?, xattrs };
            let link = || -> Result<String, OciError> {
                let l = e.link_name_bytes().ok_or_else(|| bad(format!("{path}: a link without a target")))?;
                String::from_utf8(l.into_owned()).map_err(|_| bad(format!("{path}: a link target that is not UTF-8")))
            };
            let dev = || -> Result<(u32, u32), OciError> {
                let major = h.device_major().map_err(|e| bad(format!("{path}: {e}")))?.unwrap_or(0);
                let minor = h.device_minor().map_err(|e| bad(format!("{path}: {e}")))?.unwrap_or(0);
                Ok((major, minor))
            };
            let add = match ty {
                EntryType::Directory => Add::Dir,
                EntryType::Regular | EntryType::Continuous => {
                    let (hash, size) = cache.put_file(&mut e)?;
                    Add::File { hash, size }
                }
                EntryType::Symlink => Add::Symlink(link()?),
                EntryType::Link => Add::HardLink(normalize(&link()?)),
                EntryType::Char => {
                    let (a, b) = dev()?;
                    Add::Char(a, b)
                }
                EntryType::Block => {
                    let (a, b) = dev()?;
                    Add::Block(a, b)
                }
                EntryType::Fifo => Add::Fifo,
                other => return Err(bad(format!("{path}: tar entry type {other:?} is not supported"))),
            };
            ops.push(Op::Add(path, meta, add));
        }
    }
    let actual = hashing.finish().map_err(|e| bad(format!("reading to the end: {e}")))?;
    if let Some(expected) = diff_id {
        if actual != expected {
            return Err(OciError::DiffId {
                image: image.into(),
                digest: layer.into(),
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(ops)
}

/// `./a//b/` → `a/b`; `..` never climbs above the root.
pub(crate) fn normalize(raw: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}
