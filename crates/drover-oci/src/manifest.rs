//! Manifests and indexes (OCI and Docker v2 media types), choosing an
//! index's manifest for an architecture, and the resolved [`Image`].

use serde::Deserialize;

use crate::config::ImageConfig;
use crate::error::OciError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a registry pull accepts.
pub const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// An image resolved for one architecture: where its blobs are is the
/// [`crate::Cache`]'s business (they are all there once it is built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// What it came from, for messages: the reference or the file.
    pub source: String,
    /// The digest of the image manifest for this architecture (never the
    /// index's): what `images.lock` pins. For a legacy `docker save`
    /// tarball, which has no manifest, the digest of the OCI manifest
    /// drover writes for it (see [`crate::source::file`]).
    pub manifest_digest: String,
    /// OCI architecture (`amd64`, `arm64`).
    pub arch: String,
    pub config_digest: String,
    pub config: ImageConfig,
    /// Bottom first.
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob's digest (of the compressed bytes when compressed).
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The sha256 of the uncompressed tar (from the config's `rootfs`),
    /// checked while flattening.
    pub diff_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
struct RawDoc {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

pub(crate) enum Doc {
    Index(Vec<Descriptor>),
    Manifest { config: Descriptor, layers: Vec<Descriptor> },
}

impl Doc {
    pub fn parse(image: &str, bytes: &[u8]) -> Result<Doc, OciError> {
        let bad = |detail: String| OciError::Format { image: image.into(), detail };
        let raw: RawDoc = serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest: {e}")))?;
        match (raw.manifests, raw.config, raw.layers) {
            (Some(m), _, _) => Ok(Doc::Index(m)),
            (None, Some(config), Some(layers)) => Ok(Doc::Manifest { config, layers }),
            _ => Err(bad("a manifest with neither `manifests` (an index) nor `config` and `layers` (an image manifest); only OCI and Docker v2 images are supported".into())),
        }
    }
}

/// The index entry for linux/`arch` (OCI name); attestation entries
/// (platform `unknown`) are never picked.
pub(crate) fn pick<'a>(image: &str, entries: &'a [Descriptor], arch: &str) -> Result<&'a Descriptor, OciError> {
    let fits = |p: &Platform| p.os == "linux" && p.architecture == arch;
    entries.iter().find(|d| d.platform.as_ref().is_some_and(fits)).ok_or_else(|| OciError::NoPlatform {
        reference: image.into(),
        arch: arch.into(),
        have: {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            if have.is_empty() {
                "no platforms".into()
            } else {
                have.join(", ")
            }
        },
    })
}

impl Image {
    /// The image of a manifest whose config blob is `config`.
    pub(crate) fn new(
        source: &str,
        manifest_digest: String,
        arch: &str,
        config_desc: &Descriptor,
        layers: &[Descriptor],
        config: &[u8],
    ) -> Result<Image, OciError> {
        let config = ImageConfig::parse(source, config)?;
        if !config.architecture.is_empty() && config.architecture != arch {
            return Err(OciError::NoPlatform {
                reference: source.into(),
                arch: arch.into(),
                have: format!("{}/{} only (a single-platform image)", config.os, config.architecture),
            });
        }
        if !config.diff_ids.is_empty() && config.diff_ids.len() != layers.len() {
            return Err(OciError::Format {
                image: source.into(),
                detail: format!(
                    "the manifest has {} layers but the config lists {} diff_ids",
                    layers.len(),
                    config.diff_ids.len()
                ),
            });
        }
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, d)| Layer {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                diff_id: config.diff_ids.get(i).cloned(),
            })
            .collect();
        Ok(Image {
            source: source.into(),
            manifest_digest,
            arch: arch.into(),
            config_digest: config_desc.digest.clone(),
            config,
            layers,
        })
    }
}
