//! Test images built here, from the controller's busybox-static: layer
//! tars written entry by entry, configs, manifests, and pushes to a
//! [`super::registry::TestRegistry`] with oci-client's push API.

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use serde_json::json;

use crate::digest::sha256_digest;
use crate::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// A layer tar written entry by entry (mtime 0, so equal input gives
/// equal bytes).
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

fn header(ty: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(0);
    h.set_size(size);
    h
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder { tar: tar::Builder::new(Vec::new()) }
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.tar.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    pub fn file_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.tar.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A file whose stored name is `name` as is (`../x`: what a hostile
    /// or sloppy tool writes, which tar's builder refuses to).
    pub fn file_raw_name(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
        self
    }

    /// A file with extended attributes in a PAX header (as Docker writes
    /// `security.capability`).
    pub fn file_xattrs(mut self, path: &str, mode: u32, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let keys: Vec<(String, &[u8])> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
        self.tar.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        self.file(path, mode, data)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.tar.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.tar.append_link(&mut h, path, target).unwrap();
        self
    }

    /// Delete `path` of lower layers (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let wh = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
        self.file(&wh, 0o644, b"")
    }

    /// Hide lower layers' entries of `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    pub fn fifo(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(tar::EntryType::Fifo, mode, 0, 0, 0);
        self.tar.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn char_device(mut self, path: &str, mode: u32, major: u32, minor: u32) -> Self {
        let mut h = header(tar::EntryType::Char, mode, 0, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.tar.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// The uncompressed tar.
    pub fn build(self) -> Vec<u8> {
        self.tar.into_inner().unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One image for one architecture: its blobs, ready to push or save.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub arch: String,
    /// Uncompressed layer tars, bottom first.
    pub tars: Vec<Vec<u8>>,
    /// The layer blobs as in the manifest, with their media types.
    pub blobs: Vec<(Vec<u8>, String)>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_type: &'static str,
}

fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

impl TestImage {
    /// An OCI image of `tars` (with `config` as the config's `config`).
    pub fn oci(arch: &str, tars: Vec<Vec<u8>>, c: Compression, config: serde_json::Value) -> TestImage {
        let ty = match c {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        TestImage::build(arch, tars, c, config, OCI_MANIFEST, "application/vnd.oci.image.config.v1+json", ty)
    }

    /// A Docker v2 image (gzip layers), whose config may hold a Healthcheck.
    pub fn docker(arch: &str, tars: Vec<Vec<u8>>, config: serde_json::Value) -> TestImage {
        TestImage::build(
            arch,
            tars,
            Compression::Gzip,
            config,
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    }

    fn build(
        arch: &str,
        tars: Vec<Vec<u8>>,
        c: Compression,
        config: serde_json::Value,
        manifest_type: &'static str,
        config_type: &str,
        layer_type: &str,
    ) -> TestImage {
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256_digest(t)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let blobs: Vec<(Vec<u8>, String)> = tars.iter().map(|t| (compress(t, c), layer_type.to_string())).collect();
        let layers: Vec<_> =
            blobs.iter().map(|(b, t)| json!({"mediaType": t, "digest": sha256_digest(b), "size": b.len()})).collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": sha256_digest(&config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        TestImage { arch: arch.into(), tars, blobs, config, manifest, manifest_type }
    }

    pub fn manifest_digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn config_digest(&self) -> String {
        sha256_digest(&self.config)
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.blobs.iter().map(|(b, _)| sha256_digest(b)).collect()
    }
}

/// An OCI index of `images` (one per architecture).
pub fn index_of(images: &[&TestImage]) -> Vec<u8> {
    let manifests: Vec<_> = images
        .iter()
        .map(|i| {
            json!({"mediaType": i.manifest_type, "digest": i.manifest_digest(), "size": i.manifest.len(),
                   "platform": {"architecture": i.arch, "os": "linux"}})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap()
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
}

fn header_value(t: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(t).unwrap()
}

/// Push `image` as `reference` (`host:port/repo:tag`); its manifest digest.
pub async fn push(reference: &str, image: &TestImage) -> String {
    push_as(reference, image, None).await
}

/// [`push`] with HTTP basic auth (`user`, `password`).
pub async fn push_as(reference: &str, image: &TestImage, basic: Option<(&str, &str)>) -> String {
    let r: Reference = reference.parse().unwrap();
    let c = client();
    if let Some((u, p)) = basic {
        let auth = oci_client::secrets::RegistryAuth::Basic(u.into(), p.into());
        c.auth(&r, &auth, oci_client::RegistryOperation::Push).await.unwrap();
    }
    for b in std::iter::once(&image.config).chain(image.blobs.iter().map(|(b, _)| b)) {
        c.push_blob(&r, b.clone(), &sha256_digest(b)).await.unwrap();
    }
    c.push_manifest_raw(&r, image.manifest.clone(), header_value(image.manifest_type)).await.unwrap();
    image.manifest_digest()
}

/// Push each image by digest and an index of them as `reference`; the
/// index's digest.
pub async fn push_index(reference: &str, images: &[&TestImage]) -> String {
    let r: Reference = reference.parse().unwrap();
    for i in images {
        push(&r.clone_with_digest(i.manifest_digest()).whole(), i).await;
    }
    let index = index_of(images);
    client().push_manifest_raw(&r, index.clone(), header_value(OCI_INDEX)).await.unwrap();
    sha256_digest(&index)
}

/// The controller's busybox-static binary.
pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install Debian's busybox-static (bash scripts/deps --test)")
}

/// The base layer: a tiny busybox root (`bin/busybox`, applets as
/// symlinks, `etc/passwd`, a world-writable sticky `tmp`).
pub fn base_layer() -> Vec<u8> {
    let mut l = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox())
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        .dir("tmp", 0o1777)
        .dir("root", 0o700);
    for applet in ["sh", "ls", "cat", "echo", "sleep", "httpd", "wget"] {
        l = l.symlink(&format!("bin/{applet}"), "busybox");
    }
    l.build()
}

/// An app layer: `srv/index.html` saying `version`, and a config file.
pub fn app_layer(version: &str) -> Vec<u8> {
    LayerBuilder::new()
        .dir("srv", 0o755)
        .file("srv/index.html", 0o644, format!("<h1>app {version}</h1>\n").as_bytes())
        .file("srv/app.conf", 0o600, b"port = 8080\n")
        .build()
}

/// The app's config: what `drover image pull` shows.
pub fn app_config() -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/srv"],
        "Env": ["PATH=/bin", "APP=demo"], "User": "65534:65534", "WorkingDir": "/srv",
        "ExposedPorts": {"8080/tcp": {}}, "Labels": {"org.example.app": "demo"},
    })
}

/// Three images for linux/amd64: `app` v1 and v2 (v2 changes one file,
/// `srv/index.html`) and `tool`, which shares only the busybox base.
pub fn app_images(c: Compression) -> (TestImage, TestImage, TestImage) {
    let v1 = TestImage::oci("amd64", vec![base_layer(), app_layer("1")], c, app_config());
    let v2 = TestImage::oci("amd64", vec![base_layer(), app_layer("2")], c, app_config());
    let tool_layer = LayerBuilder::new().dir("usr", 0o755).file("usr/tool", 0o755, b"#!/bin/sh\necho tool\n").build();
    let tool = TestImage::oci("amd64", vec![base_layer(), tool_layer], c, json!({"Cmd": ["/usr/tool"]}));
    (v1, v2, tool)
}
