//! Images on the controller, before a project loads (docs/architecture.md,
//! "Images"): every `image = "registry/app:1.4"` and `image = { file = … }`
//! of `services/*.toml` is pulled through `images.lock` (the pin when
//! there is one, resolved and pinned when not, as `packages.lock`) for
//! each architecture the fleet's cached facts name, flattened into the
//! project's cache, and written as a prepared image that drover-spec's
//! cache-reading source reads (`drover_spec::container::prepared`).
//!
//! A pinned image whose blobs and flattened tree are cached needs no
//! registry; one that is not pinned or not cached needs it, and a registry
//! that cannot be reached stops the run here, before any host is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use drover_oci::{Auth, Credential, EntryKind, RegistryOptions, Source, Tree};
use drover_spec::container::prepared::{PreparedArch, PreparedFile, PreparedImage, PreparedKind, SourceKey};
use drover_spec::container::registries::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("services/{service}.toml: image {image:?} for {arch}: {error}\n  fix: {fix}")]
    Pull { service: String, image: String, arch: String, error: Box<drover_oci::OciError>, fix: String },
    #[error("{0}")]
    Settings(Box<drover_spec::SpecError>),
    #[error("drover.toml [registries.{registry:?}]: credential {secret:?}: {detail}\n  fix: add it with `drover secret set {secret}` (\"user:password\", or a token)")]
    Credential { registry: String, secret: String, detail: String },
    #[error("{path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Registry options: `~/.docker/config.json`, overridden per registry by
/// drover.toml `[registries."host:port"]` (a credential from the
/// project's secrets, plain HTTP when `insecure`).
pub fn options(project: &Path) -> Result<RegistryOptions, ImageError> {
    let registries =
        drover_spec::container::registries::settings(project).map_err(|e| ImageError::Settings(Box::new(e)))?;
    options_from(project, &registries)
}

fn options_from(project: &Path, registries: &BTreeMap<String, Registry>) -> Result<RegistryOptions, ImageError> {
    let mut auth = Auth::docker_default();
    let mut insecure = Vec::new();
    let mut secrets: Option<drover_secrets::Store> = None;
    for (host, r) in registries {
        if r.insecure {
            insecure.push(host.clone());
        }
        let Some(name) = &r.credential else { continue };
        let err = |detail: String| ImageError::Credential { registry: host.clone(), secret: name.clone(), detail };
        let store = secrets.get_or_insert_with(|| drover_secrets::Store::new(project));
        let value = store.get(name).map_err(|e| err(e.to_string()))?;
        let text = value.expose_str().ok_or_else(|| err("not UTF-8 text".into()))?.trim_end_matches('\n');
        let c = match text.split_once(':') {
            Some((u, p)) => Credential::Basic { username: u.into(), password: p.into() },
            None => Credential::Token(text.into()),
        };
        auth = auth.with(host, c);
    }
    Ok(RegistryOptions { auth, insecure })
}

/// Pull and flatten every image of the project for `arches` (as hosts
/// report them: `x86_64`, `aarch64`; none: the controller's) and write the
/// prepared images. Runs on a thread of its own: drover-oci runs its own
/// tokio runtime, which may not start inside a caller's.
pub fn prepare(project: &Path, arches: &BTreeSet<String>) -> Result<(), ImageError> {
    let sources = drover_spec::container::prepared::sources(project);
    if sources.is_empty() {
        return Ok(());
    }
    let options = options(project)?;
    let mut arches: Vec<String> = arches.iter().cloned().collect();
    if arches.is_empty() {
        arches.push(std::env::consts::ARCH.to_string());
    }
    std::thread::scope(|s| s.spawn(|| prepare_all(project, &sources, &arches, &options)).join())
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn prepare_all(
    project: &Path,
    sources: &BTreeMap<SourceKey, String>,
    arches: &[String],
    options: &RegistryOptions,
) -> Result<(), ImageError> {
    let files_dir = drover_oci::Cache::for_project(project).root().join("files");
    for (key, service) in sources {
        let source = match key {
            SourceKey::Registry(r) => Source::Registry(r.clone()),
            SourceKey::File(f) => Source::File(f.into()),
        };
        let mut prepared = PreparedImage {
            format: drover_spec::container::prepared::PREPARED_FORMAT,
            files_dir: files_dir.clone(),
            arches: BTreeMap::new(),
            missing: BTreeMap::new(),
        };
        let mut lacking = None;
        for arch in arches {
            let pulled = match drover_oci::project::pull(project, &source, arch, options) {
                // The image has no such architecture: only a host of it
                // that runs the service is refused (with what the image
                // has), at its compile; the fleet's others are not.
                Err(error @ (drover_oci::OciError::NoPlatform { .. } | drover_oci::OciError::Arch(_))) => {
                    let have = match &error {
                        drover_oci::OciError::NoPlatform { have, .. } => have.clone(),
                        _ => "images for x86_64 and aarch64 only".into(),
                    };
                    prepared.missing.insert(arch.clone(), have);
                    lacking.get_or_insert((arch.clone(), error));
                    continue;
                }
                other => other,
            };
            let pulled = pulled.map_err(|error| {
                let fix = match (&error, key) {
                    (_, SourceKey::File(_)) => "check the file (a `docker save` tar or an OCI layout)",
                    (drover_oci::OciError::Registry { .. }, _) => {
                        "reach the registry (it is needed until the image is pinned in images.lock and cached), or check the reference and [registries] in drover.toml"
                    }
                    _ => "check the reference, images.lock and [registries] in drover.toml",
                };
                ImageError::Pull {
                    service: service.clone(),
                    image: key.describe().into(),
                    arch: arch.clone(),
                    error: Box::new(error),
                    fix: fix.into(),
                }
            })?;
            prepared.arches.insert(arch.clone(), to_prepared(&pulled));
        }
        // None of the fleet's architectures: the image is of no use here.
        if let Some((arch, error)) = lacking.filter(|_| prepared.arches.is_empty()) {
            return Err(ImageError::Pull {
                service: service.clone(),
                image: key.describe().into(),
                arch,
                error: Box::new(error),
                fix: "build and push the image for the fleet's architectures, or use another image".into(),
            });
        }
        prepared
            .write(key, project)
            .map_err(|error| ImageError::Write { path: key.path(project).display().to_string(), error })?;
    }
    Ok(())
}

/// A flattened image as drover-spec reads it. What a generation cannot
/// hold is mapped: a hard link becomes a file of the same content (same
/// hash: one blob, stored once on the host); device nodes and fifos are
/// left out (runc gives the container its own /dev, and a managed tree has
/// no device files); extended attributes are dropped.
fn to_prepared(p: &drover_oci::Pulled) -> PreparedArch {
    let c = &p.image.config;
    PreparedArch {
        manifest: p.image.manifest_digest.clone(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        user: c.user.clone(),
        workdir: c.working_dir.clone(),
        files: files(&p.tree),
    }
}

fn files(tree: &Tree) -> Vec<PreparedFile> {
    let mut out = Vec::with_capacity(tree.entries.len());
    for e in &tree.entries {
        let kind = match &e.kind {
            EntryKind::Dir => PreparedKind::Dir,
            EntryKind::File { hash, size } | EntryKind::HardLink { hash, size, .. } => {
                PreparedKind::File { hash: hash.to_hex().to_string(), size: *size }
            }
            EntryKind::Symlink { target } => PreparedKind::Symlink { target: target.clone() },
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => continue,
        };
        // A hard link shares its target's inode: its mode and owner.
        let (mode, uid, gid) = match &e.kind {
            EntryKind::HardLink { target, .. } => {
                tree.get(target).map_or((e.mode, e.uid, e.gid), |t| (t.mode, t.uid, t.gid))
            }
            _ => (e.mode, e.uid, e.gid),
        };
        out.push(PreparedFile { path: format!("/{}", e.path), mode, uid, gid, kind });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use drover_oci::{Entry, EntryKind, Tree};

    use super::*;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry { path: path.into(), mode: 0o755, uid: 1, gid: 2, xattrs: BTreeMap::new(), kind }
    }

    #[test]
    fn hard_links_become_files_of_the_same_content_devices_and_fifos_are_left_out() {
        let h = blake3::hash(b"x");
        let tree = Tree {
            entries: vec![
                e("bin", EntryKind::Dir),
                e("bin/a", EntryKind::File { hash: h, size: 1 }),
                Entry { mode: 0o700, ..e("bin/b", EntryKind::HardLink { target: "bin/a".into(), hash: h, size: 1 }) },
                e("dev/null", EntryKind::CharDevice { major: 1, minor: 3 }),
                e("run/fifo", EntryKind::Fifo),
                e("sh", EntryKind::Symlink { target: "bin/a".into() }),
            ],
        };
        let got: Vec<String> = files(&tree)
            .iter()
            .map(|f| {
                let k = match &f.kind {
                    PreparedKind::Dir => "dir".to_string(),
                    PreparedKind::File { hash, size } => format!("file {} {size}", &hash[..8]),
                    PreparedKind::Symlink { target } => format!("-> {target}"),
                };
                format!("{} {:o} {}:{} {k}", f.path, f.mode, f.uid, f.gid)
            })
            .collect();
        let x = &h.to_hex()[..8];
        assert_eq!(
            got,
            [
                "/bin 755 1:2 dir".to_string(),
                format!("/bin/a 755 1:2 file {x} 1"),
                format!("/bin/b 755 1:2 file {x} 1"),
                "/sh 755 1:2 -> bin/a".to_string(),
            ]
        );
    }
}
