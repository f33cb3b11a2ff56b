//! The image config: what a runtime needs to start the image (the OCI
//! image config, or Docker's, which adds `Healthcheck`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::OciError;

/// The parts of an image's config drover uses; absent fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `architecture` and `os` as the config states them.
    pub architecture: String,
    pub os: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`, in the image's order.
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    /// `80/tcp`, `53/udp`, sorted.
    pub exposed_ports: Vec<String>,
    /// Docker-format configs only (OCI's has none).
    pub healthcheck: Option<Healthcheck>,
    pub labels: BTreeMap<String, String>,
    /// The sha256 of each layer's uncompressed tar, bottom first.
    pub diff_ids: Vec<String>,
}

/// Docker's `HEALTHCHECK`: `test` is `["CMD", …]`, `["CMD-SHELL", "…"]` or
/// `["NONE"]`; durations in nanoseconds as Docker writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u64,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    healthcheck: Option<Healthcheck>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parse a config blob (`image` names it in errors).
    pub fn parse(image: &str, bytes: &[u8]) -> Result<ImageConfig, OciError> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| OciError::Format { image: image.into(), detail: format!("image config: {e}") })?;
        let c = raw.config.unwrap_or_default();
        Ok(ImageConfig {
            architecture: raw.architecture,
            os: raw.os,
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            healthcheck: c.healthcheck,
            labels: c.labels.unwrap_or_default(),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
        })
    }
}
