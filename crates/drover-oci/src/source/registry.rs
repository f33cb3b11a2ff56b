//! Pulls from registries with `oci-client`: manifests, configs and layers
//! into the cache, each verified against its digest before it is kept.
//! Plain HTTP only to loopback registries and those listed as insecure.

use std::net::IpAddr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::auth::Auth;
use crate::cache::Cache;
use crate::digest::sha256_digest;
use crate::error::OciError;
use crate::manifest::{pick, Doc, Image, ACCEPTED};

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: Auth,
    /// Registries (`host:port`) reached over plain HTTP although not on
    /// loopback. Loopback registries (`127.0.0.1`, `[::1]`, `localhost`)
    /// always are.
    pub insecure: Vec<String>,
}

/// Pulls images into a cache.
pub struct Puller {
    cache: Cache,
    options: RegistryOptions,
}

/// Parse a reference (`busybox` means `docker.io/library/busybox:latest`).
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::Reference { reference: reference.into(), detail: e.to_string() })
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` is reached over plain HTTP: loopback, or listed.
fn plain_http(registry: &str, insecure: &[String]) -> bool {
    is_loopback(registry) || insecure.iter().any(|i| i == registry)
}

/// rustls has no provider built in here (no aws-lc, no OpenSSL): ring,
/// as the rest of drover uses.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Puller {
    pub fn new(cache: Cache, options: RegistryOptions) -> Puller {
        install_ring();
        Puller { cache, options }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn client(&self, r: &Reference) -> Client {
        let registry = r.resolve_registry().to_string();
        let plain = plain_http(&registry, &self.options.insecure);
        let protocol = if plain { ClientProtocol::HttpsExcept(vec![registry]) } else { ClientProtocol::Https };
        Client::new(ClientConfig { protocol, ..Default::default() })
    }

    /// The manifest digest `reference` names for linux/`arch` now (one
    /// manifest request, two for an index); nothing is cached.
    pub async fn resolve(&self, reference: &str, arch: &str) -> Result<String, OciError> {
        let arch = crate::oci_arch(arch)?;
        let r = parse_reference(reference)?;
        let (client, auth) = (self.client(&r), self.options.auth.registry_auth(r.resolve_registry())?);
        let (bytes, digest) = fetch_manifest(&client, &auth, &r, reference).await?;
        match Doc::parse(reference, &bytes)? {
            Doc::Manifest { .. } => Ok(digest),
            Doc::Index(entries) => Ok(pick(reference, &entries, arch)?.digest.clone()),
        }
    }

    /// Pull `reference` for linux/`arch`: with `pinned` (from images.lock)
    /// the manifest of that digest, else what the reference names now.
    /// Blobs already in the cache are not fetched again, so a pinned image
    /// whose blobs are all cached needs no network.
    pub async fn pull(&self, reference: &str, arch: &str, pinned: Option<&str>) -> Result<Image, OciError> {
        let arch = crate::oci_arch(arch)?;
        let r = parse_reference(reference)?;
        if let Some(d) = pinned {
            if let Some(img) = self.cached(reference, arch, d)? {
                return Ok(img);
            }
        }
        let (client, auth) = (self.client(&r), self.options.auth.registry_auth(r.resolve_registry())?);
        let target = match pinned {
            Some(d) => r.clone_with_digest(d.into()),
            None => r.clone(),
        };
        let (bytes, digest) = fetch_manifest(&client, &auth, &target, reference).await?;
        let (bytes, digest) = match Doc::parse(reference, &bytes)? {
            Doc::Manifest { .. } => (bytes, digest),
            Doc::Index(entries) => {
                let d = pick(reference, &entries, arch)?.digest.clone();
                fetch_manifest(&client, &auth, &r.clone_with_digest(d), reference).await?
            }
        };
        self.cache.put_blob(reference, &digest, &bytes[..])?;
        let Doc::Manifest { config, layers } = Doc::parse(reference, &bytes)? else {
            return Err(OciError::Format {
                image: reference.into(),
                detail: format!("{digest} is an index inside an index"),
            });
        };
        for d in std::iter::once(&config).chain(&layers) {
            if !self.cache.has_blob(&d.digest) {
                let desc = OciDescriptor {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size as i64,
                    ..Default::default()
                };
                self.fetch_blob(&client, &r, reference, &desc).await?;
            }
        }
        let config_bytes = self.cache.read_blob(&config.digest)?;
        Image::new(reference, digest, arch, &config, &layers, &config_bytes)
    }

    /// The pinned image from the cache alone, when every blob is there.
    fn cached(&self, reference: &str, arch: &str, digest: &str) -> Result<Option<Image>, OciError> {
        if !self.cache.has_blob(digest) {
            return Ok(None);
        }
        let Doc::Manifest { config, layers } = Doc::parse(reference, &self.cache.read_blob(digest)?)? else {
            return Ok(None);
        };
        if !std::iter::once(&config).chain(&layers).all(|d| self.cache.has_blob(&d.digest)) {
            return Ok(None);
        }
        let config_bytes = self.cache.read_blob(&config.digest)?;
        Image::new(reference, digest.into(), arch, &config, &layers, &config_bytes).map(Some)
    }

    async fn fetch_blob(
        &self,
        client: &Client,
        r: &Reference,
        reference: &str,
        d: &OciDescriptor,
    ) -> Result<(), OciError> {
        let (tmp, file) = self.cache.temp()?;
        let out = tokio::fs::File::from_std(file);
        let res = client.pull_blob(r, d, out).await;
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                OciDistributionError::DigestError(DigestError::VerificationError { actual, .. }) => {
                    OciError::Digest { image: reference.into(), digest: d.digest.clone(), actual }
                }
                e => registry_error(reference, e),
            });
        }
        // oci-client checked the digest; check again what reached the disk.
        let actual = crate::digest::HashingReader::new(std::fs::File::open(&tmp).map_err(OciError::io(&tmp))?)
            .finish()
            .map_err(OciError::io(&tmp))?;
        self.cache.commit_blob(reference, &tmp, &d.digest, &actual)
    }
}

/// A manifest and its digest, checked against the reference's digest
/// when it has one (a registry cannot substitute another manifest).
async fn fetch_manifest(
    client: &Client,
    auth: &RegistryAuth,
    r: &Reference,
    reference: &str,
) -> Result<(Vec<u8>, String), OciError> {
    let (bytes, digest) =
        client.pull_manifest_raw(r, auth, &ACCEPTED).await.map_err(|e| registry_error(reference, e))?;
    let actual = sha256_digest(&bytes);
    let expected = r.digest().map(str::to_string).unwrap_or(digest);
    if actual != expected {
        return Err(OciError::Digest { image: reference.into(), digest: expected, actual });
    }
    Ok((bytes.to_vec(), actual))
}

fn registry_error(reference: &str, e: OciDistributionError) -> OciError {
    let not_found = match &e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            let c = format!("{:?}", x.code);
            c.contains("ManifestUnknown") || c.contains("NameUnknown") || c.contains("BlobUnknown")
        }),
        _ => false,
    };
    let detail = e.to_string();
    if not_found {
        OciError::NotFound { reference: reference.into(), detail }
    } else {
        OciError::Registry { reference: reference.into(), detail }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_http;

    /// Plain HTTP for loopback registries and listed ones only; a name
    /// that merely starts like a loopback address is not loopback.
    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        for r in ["127.0.0.1:5000", "127.3.4.5", "localhost:5000", "localhost", "[::1]:5000"] {
            assert!(plain_http(r, &[]), "{r}");
        }
        for r in [
            "registry.example",
            "10.0.0.5:5000",
            "localhost.example:5000",
            "127.0.0.1.nip.io",
            "[::2]:5000",
            "docker.io",
        ] {
            assert!(!plain_http(r, &[]), "{r}");
        }
        assert!(plain_http("10.0.0.5:5000", &["10.0.0.5:5000".into()]));
        assert!(!plain_http("10.0.0.5:5001", &["10.0.0.5:5000".into()]));
    }
}
