//! Images from files in the project: an OCI image layout (a directory
//! with `index.json`, `oci-layout` and `blobs/sha256/…`, or a tar of one,
//! which is also what `docker save` writes since Docker 25) or a legacy
//! `docker save` tarball (`manifest.json`, `<id>.json` configs and
//! `<id>/layer.tar` layers).
//!
//! Every blob is copied into the cache, each checked against its digest
//! (layout blobs against their names; a legacy tarball's layers against
//! the config's diff_ids when flattened). A legacy tarball has no
//! manifest, so drover writes the OCI manifest a registry would hold for
//! it (uncompressed layers, in the tarball's order) into the cache: its
//! digest is the image's manifest digest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::cache::Cache;
use crate::digest::{sha256_digest, HashingWriter};
use crate::error::OciError;
use crate::manifest::{pick, Descriptor, Doc, Image, OCI_MANIFEST};

/// Load the image in `path` for linux/`arch` into `cache`.
pub fn load_file(cache: &Cache, path: &Path, arch: &str) -> Result<Image, OciError> {
    let arch = crate::oci_arch(arch)?;
    let name = path.display().to_string();
    if !path.exists() {
        return Err(OciError::File {
            path: path.into(),
            detail: "no such image file (a `docker save` tarball or an OCI image layout, directory or tar; relative to the project directory)".into(),
        });
    }
    if path.is_dir() {
        let index = path.join("index.json");
        let bytes = std::fs::read(&index).map_err(|e| OciError::File {
            path: index.clone(),
            detail: format!("{e}: a directory image must be an OCI image layout (index.json, blobs/sha256/…)"),
        })?;
        let mut fetch = |digest: &str| -> Result<Vec<u8>, OciError> {
            if !cache.has_blob(digest) {
                let hex = cache.blob_path(digest)?.file_name().expect("hex").to_owned();
                let p = path.join("blobs/sha256").join(hex);
                let f = File::open(&p)
                    .map_err(|e| OciError::File { path: p.clone(), detail: format!("blob {digest}: {e}") })?;
                cache.put_blob(&name, digest, f)?;
            }
            cache.read_blob(digest)
        };
        return from_layout(cache, &name, &bytes, arch, &mut fetch);
    }
    let mut members = scan_tar(cache, path, &name)?;
    if let Some(index) = members.json.remove("index.json") {
        let mut fetch = |digest: &str| cache.read_blob(digest);
        return from_layout(cache, &name, &index, arch, &mut fetch);
    }
    if let Some(m) = members.json.remove("manifest.json") {
        return from_docker_save(cache, &name, path, &m, &members, arch);
    }
    Err(OciError::File {
        path: path.into(),
        detail: "neither an OCI image layout (index.json) nor a `docker save` tarball (manifest.json)".into(),
    })
}

/// An OCI layout's index.json down to the manifest for `arch`; `fetch`
/// brings a blob into the cache and gives its bytes.
fn from_layout(
    cache: &Cache,
    name: &str,
    index: &[u8],
    arch: &str,
    fetch: &mut dyn FnMut(&str) -> Result<Vec<u8>, OciError>,
) -> Result<Image, OciError> {
    let mut doc = Doc::parse(name, index)?;
    let mut manifest_digest = None;
    for _ in 0..4 {
        match doc {
            Doc::Index(entries) => {
                let d = if entries.iter().any(|d| d.platform.is_some()) {
                    pick(name, &entries, arch)?
                } else if entries.len() == 1 {
                    &entries[0]
                } else {
                    let tags: Vec<String> = entries.iter().filter_map(ref_name).collect();
                    return Err(OciError::Format {
                        image: name.into(),
                        detail: format!(
                            "the layout holds {} images ({}); keep one image per file",
                            entries.len(),
                            tags.join(", ")
                        ),
                    });
                };
                let digest = d.digest.clone();
                doc = Doc::parse(name, &fetch(&digest)?)?;
                manifest_digest = Some(digest);
            }
            Doc::Manifest { config, layers } => {
                let digest = manifest_digest.ok_or_else(|| OciError::Format {
                    image: name.into(),
                    detail: "index.json is a manifest, not an index".into(),
                })?;
                let config_bytes = fetch(&config.digest)?;
                for l in &layers {
                    fetch(&l.digest)?;
                }
                let _ = cache;
                return Image::new(name, digest, arch, &config, &layers, &config_bytes);
            }
        }
    }
    Err(OciError::Format { image: name.into(), detail: "indexes nested more than 4 deep".into() })
}

fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations.as_ref()?.get("org.opencontainers.image.ref.name").cloned()
}

/// A tar's small JSON members (by path) and every other regular member
/// stored in the cache (path → digest).
struct Members {
    json: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, (String, u64)>,
}

fn scan_tar(cache: &Cache, path: &Path, name: &str) -> Result<Members, OciError> {
    let f = File::open(path).map_err(OciError::io(path))?;
    let bad = |detail: String| OciError::File { path: PathBuf::from(path), detail };
    let mut tar = tar::Archive::new(f);
    let mut m = Members { json: BTreeMap::new(), blobs: BTreeMap::new() };
    for e in tar.entries().map_err(|e| bad(format!("not a tar file: {e}")))? {
        let mut e = e.map_err(|e| bad(format!("tar: {e}")))?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let p = e.path().map_err(|e| bad(format!("tar: {e}")))?.to_string_lossy().trim_start_matches("./").to_string();
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            // Named by digest: stored only if it matches.
            let digest = format!("sha256:{hex}");
            cache.put_blob(name, &digest, &mut e)?;
            m.blobs.insert(p, (digest, e.header().size().unwrap_or(0)));
        } else if p.ends_with(".json") || p == "repositories" || p == "oci-layout" {
            let mut v = Vec::new();
            e.read_to_end(&mut v).map_err(|e| bad(format!("{p}: {e}")))?;
            m.json.insert(p, v);
        } else {
            let (tmp, f) = cache.temp()?;
            let mut w = HashingWriter::new(std::io::BufWriter::new(f));
            let size = std::io::copy(&mut e, &mut w).map_err(OciError::io(&tmp))?;
            std::io::Write::flush(&mut w).map_err(OciError::io(&tmp))?;
            let digest = w.digest();
            if cache.has_blob(&digest) {
                let _ = std::fs::remove_file(&tmp);
            } else {
                cache.commit_blob(name, &tmp, &digest, &digest)?;
            }
            m.blobs.insert(p, (digest, size));
        }
    }
    Ok(m)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

fn from_docker_save(
    cache: &Cache,
    name: &str,
    path: &Path,
    manifest: &[u8],
    m: &Members,
    arch: &str,
) -> Result<Image, OciError> {
    let bad = |detail: String| OciError::File { path: path.into(), detail };
    let entries: Vec<SaveEntry> = serde_json::from_slice(manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let [entry] = &entries[..] else {
        return Err(bad(format!("manifest.json lists {} images; save one image per file", entries.len())));
    };
    let member = |p: &str| -> Result<(String, u64), OciError> {
        if let Some(b) = m.blobs.get(p) {
            return Ok(b.clone());
        }
        let bytes = m.json.get(p).ok_or_else(|| bad(format!("manifest.json names {p}, which the tarball lacks")))?;
        let digest = sha256_digest(bytes);
        cache.put_blob(name, &digest, &bytes[..])?;
        Ok((digest, bytes.len() as u64))
    };
    let (config_digest, config_size) = member(&entry.config)?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let (digest, size) = member(l)?;
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("json");
    let digest = sha256_digest(&bytes);
    cache.put_blob(name, &digest, &bytes[..])?;
    let Doc::Manifest { config, layers } = Doc::parse(name, &bytes)? else { unreachable!("written as a manifest") };
    Image::new(name, digest, arch, &config, &layers, &cache.read_blob(&config_digest)?)
}
