//! Packages on the controller: resolve each role's packages to an exact
//! dependency closure per target (OS release + architecture), fetch the
//! `.deb` files into the project's content-addressed cache
//! (`.drover/packages/<blake3>.deb`) and write `packages.lock`.
//!
//! Hosts never resolve and never reach a mirror: what the lock names
//! travels to them as ordinary blobs (see `drover_spec::lock`).

mod index;
mod resolve;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use drover_spec::lock::{cache_path, target_of, LockTarget, LockedPackage, PackageLock, LOCK_VERSION};
use drover_spec::Project;

use index::{Index, Origin};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("roles/{role}.toml: package {package:?} is not known to any package source; check the name (`apt-cache search`), or add its .deb to a source directory")]
    Unknown { package: String, role: String },
    #[error("roles/{role}.toml: package {package} version {version:?} cannot be had (available: {available}); pin an available version, or add that .deb to a source directory")]
    Version { package: String, version: String, role: String, available: String },
    #[error("roles/{role}.toml: package {package} needs {dep}, which no package source offers; add it to a source directory or drop {package}")]
    Dependency { package: String, dep: String, role: String },
    #[error("roles/{role}.toml: package {package} conflicts with {other}; the closure cannot be installed together, drop one of them")]
    Conflict { package: String, other: String, role: String },
    #[error("package source {source_name}: {detail}")]
    Source { source_name: String, detail: String },
    #[error("target {target}: the `apt` source is the controller's own apt, which serves its own release ({have}) only; add a directory of {target} .deb files to [packages] sources, or lock on a controller of that release")]
    Target { target: String, have: String },
    #[error("target {target}: the controller's apt has no {arch} package lists; run `dpkg --add-architecture {arch} && apt-get update` on the controller, or add a directory of {arch} .deb files to [packages] sources")]
    NoArch { target: String, arch: String },
    #[error("fetching {package} {version}: {detail}")]
    Fetch { package: String, version: String, detail: String },
    #[error("packages.lock: {0}")]
    Write(std::io::Error),
}

/// The controller's own target (`debian-12-amd64`): what its apt serves.
pub fn controller_target() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let facts = drover_proto::Facts {
        os_id: field("ID"),
        os_version: field("VERSION_ID"),
        arch: std::env::consts::ARCH.into(),
        ..Default::default()
    };
    target_of(&facts).unwrap_or_default()
}

/// The release part of a target: `debian-12` of `debian-12-arm64`.
fn release(target: &str) -> &str {
    target.rsplit_once('-').map_or("", |(r, _)| r)
}

/// Resolve every role's packages for `targets`, fetch them and write
/// `packages.lock`. Nothing is written unless every target resolved.
///
/// A target already in the lock and not among `targets` is kept as it is
/// (adding `debian-12-arm64` leaves `debian-12-amd64` alone) while the roles
/// ask for the same packages; if they changed, it is resolved again too,
/// so the whole lock always answers the current requests.
pub fn lock(project: &mut Project, targets: &BTreeSet<String>) -> Result<PackageLock, PackageError> {
    let requests = project.package_requests();
    let mut all: BTreeMap<String, Option<LockTarget>> = targets.iter().map(|t| (t.clone(), None)).collect();
    if let Some(old) = project.package_lock() {
        for t in old.targets.iter().filter(|t| !targets.contains(&t.target)) {
            all.insert(t.target.clone(), (old.requests == requests).then(|| t.clone()));
        }
    }
    let mut lock = PackageLock { version: LOCK_VERSION, requests: requests.clone(), targets: vec![] };
    let own = controller_target();
    for (target, kept) in all {
        if let Some(kept) = kept {
            lock.targets.push(kept);
            continue;
        }
        let arch = target.rsplit('-').next().unwrap_or_default();
        let mut idx = Index::default();
        for (n, source) in project.settings.package_sources.iter().enumerate() {
            let apt = source == "apt";
            if apt && release(&target) != release(&own) {
                return Err(PackageError::Target { target: target.clone(), have: release(&own).into() });
            }
            // The controller's apt serves another architecture of its
            // release once dpkg knows it and apt fetched its lists.
            if index::read_source(&project.dir, source, n, arch, &mut idx)? == 0 && apt {
                return Err(PackageError::NoArch { target: target.clone(), arch: arch.into() });
            }
        }
        let res = resolve::resolve(&idx, &requests)?;
        let cands: Vec<&index::Candidate> = res.selected.values().chain(res.base.values().map(|(c, _)| c)).collect();
        let mut locked: Vec<LockedPackage> = cands
            .iter()
            .zip(fetch(&project.dir, &cands)?)
            .map(|(c, (blake3, size))| LockedPackage {
                name: c.name.clone(),
                version: c.version.clone(),
                arch: c.arch.clone(),
                filename: c.filename.clone(),
                blake3,
                size,
                needed_by: vec![],
            })
            .collect();
        let mut base = locked.split_off(res.selected.len());
        for (b, (_, needs)) in base.iter_mut().zip(res.base.values()) {
            b.needed_by = needs.iter().cloned().collect();
        }
        lock.targets.push(LockTarget { target: target.clone(), roles: res.roles, packages: locked, base });
    }
    lock.write(&project.dir).map_err(PackageError::Write)?;
    project.set_package_lock(lock.clone());
    Ok(lock)
}

/// Before plan, apply, rollout or bundle: a project with packages and no
/// lock gets one, for the controller's target and those of the hosts in the
/// fact cache. An existing lock is never re-resolved (a changed package list
/// is a compile error that says to run `drover packages lock`).
pub fn ensure_lock(project: &mut Project) -> Result<(), PackageError> {
    if project.package_requests().is_empty() {
        return Ok(());
    }
    if let Some(lock) = project.package_lock() {
        return refetch(project, lock);
    }
    let targets = known_targets(project);
    lock(project, &targets)?;
    Ok(())
}

/// Put back into the cache the locked `.deb` files it lacks (a fresh
/// checkout has the lock but not `.drover/`): exactly the locked name and
/// version, from a source directory holding the locked file name, else apt;
/// a file whose blake3 is not the locked one is an error, never taken.
fn refetch(project: &Project, lock: &PackageLock) -> Result<(), PackageError> {
    let mut seen = BTreeSet::new();
    let missing: Vec<&LockedPackage> = lock
        .targets
        .iter()
        .flat_map(|t| t.packages.iter().chain(&t.base))
        .filter(|p| !cache_path(&project.dir, &p.blake3).is_file() && seen.insert(&p.blake3))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sources = &project.settings.package_sources;
    let cands: Vec<index::Candidate> = missing
        .iter()
        .map(|p| {
            let in_dir = sources
                .iter()
                .filter(|s| *s != "apt")
                .map(|s| project.dir.join(s).join(&p.filename))
                .find(|f| f.is_file());
            index::Candidate {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                depends: vec![],
                conflicts: vec![],
                provides: vec![],
                base: false,
                filename: p.filename.clone(),
                origin: in_dir.map_or(Origin::Apt, Origin::File),
                source: 0,
            }
        })
        .collect();
    let refs: Vec<&index::Candidate> = cands.iter().collect();
    for (p, (hash, _)) in missing.iter().zip(fetch(&project.dir, &refs)?) {
        if hash != p.blake3 {
            return Err(PackageError::Fetch {
                package: p.name.clone(),
                version: p.version.clone(),
                detail: format!(
                    "the source's file has blake3 {hash}, packages.lock says {}: the package changed under the same \
                     version. Run `drover packages lock` to take the new file (and review the lock's diff)",
                    p.blake3
                ),
            });
        }
    }
    Ok(())
}

/// Every target of packages.lock and of a host in the fact cache, else the
/// controller's own: a plain `drover packages lock` re-resolves every
/// target, dropping none that was added with `--target`.
pub fn known_targets(project: &Project) -> BTreeSet<String> {
    let mut t: BTreeSet<String> =
        project.hosts.iter().filter_map(|h| project.cached_facts(&h.name)).filter_map(target_of).collect();
    t.extend(project.package_lock().into_iter().flat_map(|l| l.targets.iter().map(|t| t.target.clone())));
    if t.is_empty() {
        t.insert(controller_target());
    }
    t
}

/// Put the packages' `.deb` files into the cache (those from apt with one
/// `apt-get download`); each one's blake3 (hex) and size, in order.
fn fetch(project: &Path, cands: &[&index::Candidate]) -> Result<Vec<(String, u64)>, PackageError> {
    let err = |c: &index::Candidate, detail: String| PackageError::Fetch {
        package: c.name.clone(),
        version: c.version.clone(),
        detail,
    };
    let cache = project.join(".drover/packages");
    let tmp = TmpDir(cache.join(format!("tmp-{}", std::process::id())));
    std::fs::create_dir_all(tmp.path()).map_err(|e| PackageError::Source {
        source_name: cache.display().to_string(),
        detail: format!("cannot create the cache: {e}"),
    })?;
    // `name:arch` picks the locked architecture (another one than the
    // controller's, with multiarch); `all` packages have none to pick.
    let from_apt: Vec<String> = cands
        .iter()
        .filter(|c| matches!(c.origin, Origin::Apt))
        .map(|c| match c.arch.as_str() {
            "all" | "" => format!("{}={}", c.name, c.version),
            arch => format!("{}:{arch}={}", c.name, c.version),
        })
        .collect();
    if !from_apt.is_empty() {
        let out = Command::new("apt-get")
            .current_dir(tmp.path())
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(&from_apt)
            .output()
            .map_err(|e| PackageError::Source {
                source_name: "apt".into(),
                detail: format!("cannot run apt-get: {e}"),
            })?;
        if !out.status.success() {
            return Err(PackageError::Source {
                source_name: "apt".into(),
                detail: format!("apt-get download failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
    }
    let mut out = Vec::new();
    for c in cands {
        let file = match &c.origin {
            Origin::File(p) => p.clone(),
            // apt-get download names files name_version_arch.deb, ':' as %3a.
            Origin::Apt => tmp.path().join(format!("{}_{}_{}.deb", c.name, c.version.replace(':', "%3a"), c.arch)),
        };
        let bytes = std::fs::read(&file).map_err(|e| err(c, format!("read {}: {e}", file.display())))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let dest = cache_path(project, &hash);
        if !dest.exists() {
            let part = tmp.path().join("part");
            std::fs::write(&part, &bytes)
                .and_then(|()| std::fs::rename(&part, &dest))
                .map_err(|e| err(c, e.to_string()))?;
        }
        out.push((hash, bytes.len() as u64));
    }
    Ok(out)
}

/// A scratch directory removed when dropped (downloads land here first).
struct TmpDir(std::path::PathBuf);

impl TmpDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
