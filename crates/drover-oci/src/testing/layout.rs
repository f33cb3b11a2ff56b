//! Image files as tools write them: an OCI image layout (directory or
//! tar) and, written by hand from its documented layout since no Docker
//! daemon runs here, a legacy `docker save` tarball: `manifest.json`
//! (`[{"Config", "RepoTags", "Layers"}]`), `repositories`
//! (`{repo: {tag: top layer id}}`), `<config hex>.json`, and per layer
//! `<id>/VERSION`, `<id>/json`, `<id>/layer.tar` (uncompressed).

use std::path::Path;

use serde_json::json;

use super::images::{index_of, TestImage};
use crate::digest::sha256_digest;
use crate::manifest::OCI_INDEX;

/// The files of an OCI layout of `images` (an index of them when more
/// than one, else index.json names the one manifest with `tag`).
fn layout_files(images: &[&TestImage], tag: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
    let mut blob = |b: &[u8]| files.push((format!("blobs/sha256/{}", &sha256_digest(b)[7..]), b.to_vec()));
    for i in images {
        blob(&i.config);
        blob(&i.manifest);
        for (b, _) in &i.blobs {
            blob(b);
        }
    }
    let top = if let [one] = images {
        json!({"mediaType": one.manifest_type, "digest": one.manifest_digest(), "size": one.manifest.len(),
               "annotations": {"org.opencontainers.image.ref.name": tag}})
    } else {
        let index = index_of(images);
        blob(&index);
        json!({"mediaType": OCI_INDEX, "digest": sha256_digest(&index), "size": index.len(),
               "annotations": {"org.opencontainers.image.ref.name": tag}})
    };
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    files
}

/// An OCI image layout directory at `dir`.
pub fn write_oci_dir(dir: &Path, images: &[&TestImage], tag: &str) {
    for (p, b) in layout_files(images, tag) {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
}

fn write_tar(path: &Path, files: Vec<(String, Vec<u8>)>) {
    let mut t = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (p, b) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(b.len() as u64);
        h.set_mtime(0);
        t.append_data(&mut h, p, &b[..]).unwrap();
    }
    t.into_inner().unwrap();
}

/// An OCI image layout as one tar file.
pub fn write_oci_tar(path: &Path, images: &[&TestImage], tag: &str) {
    write_tar(path, layout_files(images, tag));
}

/// A legacy `docker save` tarball of `image` tagged `repo:tag`. Layers go
/// in uncompressed (as `docker save` writes them), so the layer files'
/// digests are the config's diff_ids.
pub fn write_docker_save(path: &Path, image: &TestImage, repo: &str, tag: &str) {
    let config_name = format!("{}.json", &image.config_digest()[7..]);
    let mut files = vec![(config_name.clone(), image.config.clone())];
    let mut layers = Vec::new();
    let mut parent: Option<String> = None;
    for t in &image.tars {
        // Docker's v1 ids chain the parent's; any stable id will do for readers.
        let id = sha256_digest(format!("{}{}", parent.as_deref().unwrap_or(""), sha256_digest(t)).as_bytes())[7..]
            .to_string();
        let mut v1 = json!({"id": id, "created": "1970-01-01T00:00:00Z", "container_config": {}});
        if let Some(p) = &parent {
            v1["parent"] = json!(p);
        }
        files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
        files.push((format!("{id}/json"), serde_json::to_vec(&v1).unwrap()));
        files.push((format!("{id}/layer.tar"), t.clone()));
        layers.push(format!("{id}/layer.tar"));
        parent = Some(id);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": [format!("{repo}:{tag}")], "Layers": layers}]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    let repositories = json!({repo: {tag: parent.unwrap_or_default()}});
    files.push(("repositories".into(), serde_json::to_vec(&repositories).unwrap()));
    write_tar(path, files);
}
