//! The shared base root filesystem every host overlays.
//!
//! Built once with debootstrap and cached under a name that hashes the whole
//! recipe (suite, packages, and the files we add), so changing the recipe
//! builds a new base instead of silently reusing an old one. Each host
//! [`Kind`] (init, architecture, userland) has its own recipe and so its
//! own base: a foreign architecture's is built by debootstrap `--arch`,
//! its programs run under qemu-user (binfmt_misc, checked by
//! `preflight::binfmt`). The build runs
//! in a temporary directory that is renamed into place only when complete,
//! under a lock: a crash can leave a temporary directory (removed by the next
//! build), never a half base that hosts would use.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::LabConfig;
use crate::error::LabError;
use crate::init::Init;
use crate::kind::{Arch, Kind, Userland};
use crate::sys::FileLock;
use crate::{cmd, mirror, sys};

/// Debian release of every host.
pub const SUITE: &str = "bookworm";
/// Packages on top of minbase: sshd and runit for the host, busybox, python3
/// (so other tools can be compared on the same hosts), sudo for the `op`
/// user, and iproute2/procps to look around.
const PACKAGES: &[&str] = &["openssh-server", "runit", "busybox", "python3", "sudo", "iproute2", "procps"];
/// The same for systemd hosts: systemd (and `systemd-sysv`, so
/// `/sbin/init` is systemd) instead of runit.
const SYSTEMD_PACKAGES: &[&str] =
    &["openssh-server", "systemd", "systemd-sysv", "busybox", "python3", "sudo", "iproute2", "procps"];
/// The same for OpenRC hosts: Debian's `openrc` (with `openrc-init` and
/// `supervise-daemon`) instead of runit.
const OPENRC_PACKAGES: &[&str] = &["openssh-server", "openrc", "busybox", "python3", "sudo", "iproute2", "procps"];
/// Bump when `configure` changes in a way the assets do not show.
const RECIPE_VERSION: u32 = 1;

const INIT: &str = include_str!("../assets/init.sh");
const INIT_SYSTEMD: &str = include_str!("../assets/init-systemd.sh");
const SSHD_RUN: &str = include_str!("../assets/sshd-run.sh");
const SSHD_CONFIG: &str = include_str!("../assets/sshd_config.conf");
const SUDOERS: &str = include_str!("../assets/sudoers");
const JOURNALD_CONF: &str = include_str!("../assets/journald.conf");
const INIT_OPENRC: &str = include_str!("../assets/init-openrc.sh");
const SSHD_OPENRC: &str = include_str!("../assets/sshd-openrc.sh");
/// OpenRC's runlevels; a fresh base has in them whatever the packages'
/// maintainer scripts added (Debian's LSB scripts), and a lab host wants
/// sshd alone.
const OPENRC_RUNLEVELS: &[&str] = &["sysinit", "boot", "default", "nonetwork", "shutdown", "off", "recovery"];
/// Units of a Debian install that have no business on a lab host: timers
/// that would run apt, fstrim or e2scrub at random moments (they write to
/// the host's overlay and cost CPU in the middle of a measurement).
const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
];

/// Path of pid 1 inside every host.
pub(crate) const INIT_PATH: &str = "/usr/local/sbin/drover-lab-init";
/// The non-root user with a password and sudo.
pub const USER: &str = "op";

/// A ready base root filesystem.
#[derive(Debug, Clone)]
pub struct Base {
    pub dir: PathBuf,
    /// Set when this call built it (the one-time cost).
    pub built_in: Option<Duration>,
}

/// Short hash of everything that decides the base's content for `kind`.
///
/// The runit recipe hashes what it hashed before systemd hosts existed (the
/// init script among it, which since runs stage-1 hooks: a new base once);
/// a native Debian kind hashes what it did before kinds existed (its base
/// is kept), any other adds its architecture and its userland's recipe.
pub fn recipe_id(kind: Kind) -> String {
    let init = kind.init;
    let mut h = blake3::Hasher::new();
    let version = RECIPE_VERSION.to_string();
    let runit_packages = PACKAGES.join(",");
    let systemd_packages = SYSTEMD_PACKAGES.join(",");
    let masked = MASKED_UNITS.join(",");
    let openrc_packages = OPENRC_PACKAGES.join(",");
    let parts: Vec<&str> = match init {
        Init::Runit => vec![SUITE, "minbase", &runit_packages, INIT, SSHD_RUN, SSHD_CONFIG, SUDOERS, &version],
        Init::Systemd => vec![
            SUITE,
            "minbase",
            "systemd",
            &systemd_packages,
            INIT_SYSTEMD,
            SSHD_CONFIG,
            SUDOERS,
            JOURNALD_CONF,
            &masked,
            &version,
        ],
        Init::OpenRc => {
            vec![SUITE, "minbase", "openrc", &openrc_packages, INIT_OPENRC, SSHD_OPENRC, SSHD_CONFIG, SUDOERS, &version]
        }
    };
    let extra: Vec<&str> = match (kind.arch, kind.userland) {
        (Arch::Amd64, Userland::Debian) => vec![],
        (arch, userland) => vec![arch.as_str(), userland.as_str(), crate::userland::recipe(userland)],
    };
    for part in parts.into_iter().chain(extra) {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..12].to_string()
}

/// Where the base of `kind`'s current recipe lives (it may not exist yet):
/// `base-bookworm-<id>` for amd64 Debian runit (the name it always had),
/// `base-bookworm-systemd-<id>` for systemd, `base-bookworm-openrc-<id>`
/// for OpenRC; other architectures and userlands put theirs first:
/// `base-bookworm-arm64-runit-<id>`, `base-bookworm-busybox-openrc-<id>`.
pub fn base_dir(config: &LabConfig, kind: Kind) -> PathBuf {
    config.cache_root.join(base_name(kind))
}

fn base_name(kind: Kind) -> String {
    let mut prefix = String::new();
    if kind.arch != Arch::Amd64 {
        prefix.push_str(kind.arch.as_str());
        prefix.push('-');
    }
    if kind.userland != Userland::Debian {
        prefix.push_str(kind.userland.as_str());
        prefix.push('-');
    }
    match kind.init {
        Init::Runit if prefix.is_empty() => format!("base-{SUITE}-{}", recipe_id(kind)),
        init => format!("base-{SUITE}-{prefix}{init}-{}", recipe_id(kind)),
    }
}

/// Return the cached base, building it first if needed. `on_build` is
/// called once before a build starts (it takes about a minute natively,
/// several under emulation).
pub fn ensure(config: &LabConfig, kind: Kind, on_build: &dyn Fn(&Path)) -> Result<Base, LabError> {
    let init = kind.init;
    let dir = base_dir(config, kind);
    if dir.is_dir() {
        return Ok(Base { dir, built_in: None });
    }
    fs::create_dir_all(&config.cache_root).map_err(LabError::io("create", &config.cache_root))?;
    let _lock = FileLock::acquire(&config.cache_root.join(".lock"))?;
    if dir.is_dir() {
        return Ok(Base { dir, built_in: None }); // built while we waited
    }
    remove_stale_builds(&config.cache_root)?;
    on_build(&dir);
    let started = Instant::now();
    let tmp = config.cache_root.join(format!(".build-{}-{}", recipe_id(kind), std::process::id()));
    let log = config.cache_root.join(format!("{}.log", base_name(kind)));
    let result = debootstrap(config, kind, &tmp, &log)
        .and_then(|()| match init {
            Init::Runit => configure(&tmp),
            Init::Systemd => configure_systemd(&tmp),
            Init::OpenRc => configure_openrc(&tmp),
        })
        .and_then(|()| crate::userland::configure(&tmp, kind.userland))
        .and_then(|()| {
            write_file(&tmp.join("etc/drover-lab-base"), &format!("{SUITE} {kind} {}\n", recipe_id(kind)), 0o644)
        });
    if let Err(e) = result {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &dir).map_err(LabError::io("rename into place", &dir))?;
    Ok(Base { dir, built_in: Some(started.elapsed()) })
}

fn debootstrap(config: &LabConfig, kind: Kind, tmp: &Path, log: &Path) -> Result<(), LabError> {
    let packages = match kind.init {
        Init::Runit => PACKAGES,
        Init::Systemd => SYSTEMD_PACKAGES,
        Init::OpenRc => OPENRC_PACKAGES,
    };
    let mirror = mirror::find(config.mirror.as_deref(), SUITE)?;
    let log_file = fs::File::create(log).map_err(LabError::io("create", log))?;
    let err_file = log_file.try_clone().map_err(LabError::io("open", log))?;
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--arch={}", kind.arch))
        .arg(format!("--include={}", packages.join(",")))
        .arg(SUITE)
        .arg(tmp)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
    tracing::info!(command = %cmd::render(&cmd), "building base");
    let status = cmd.status().map_err(|source| LabError::Spawn { program: "debootstrap".into(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::BaseBuild { detail: format!("debootstrap {status}, mirror {mirror}"), log: log.to_path_buf() })
    }
}

/// Turn a fresh debootstrap tree into a lab host image.
fn configure(root: &Path) -> Result<(), LabError> {
    // runit: our sshd service only (Debian's /etc/service is a symlink to
    // runsvdir/current with its own ssh and syslog services).
    let service = root.join("etc/service");
    match fs::symlink_metadata(&service) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&service).map_err(LabError::io("remove", &service))?,
        Ok(_) => fs::remove_file(&service).map_err(LabError::io("remove", &service))?,
        Err(_) => {}
    }
    write_file(&service.join("sshd/run"), SSHD_RUN, 0o755)?;
    write_file(&root.join(INIT_PATH.trim_start_matches('/')), INIT, 0o755)?;
    write_file(&root.join("etc/ssh/sshd_config.d/drover-lab.conf"), SSHD_CONFIG, 0o644)?;
    write_file(&root.join("etc/sudoers.d/drover-lab"), SUDOERS, 0o440)?;
    remove_matching(&root.join("etc/ssh"), |n| n.starts_with("ssh_host_"))?;
    remove_matching(&root.join("var/cache/apt/archives"), |n| n.ends_with(".deb"))?;
    add_user(root)
}

/// Turn a fresh debootstrap tree into a systemd lab host image: sshd is
/// Debian's own `ssh.service` (enabled by the package), journald keeps the
/// journal in /run, noisy timers are masked, and every host gets its own
/// machine id at `up` (the base's is emptied).
fn configure_systemd(root: &Path) -> Result<(), LabError> {
    write_file(&root.join(INIT_PATH.trim_start_matches('/')), INIT_SYSTEMD, 0o755)?;
    write_file(&root.join("etc/ssh/sshd_config.d/drover-lab.conf"), SSHD_CONFIG, 0o644)?;
    write_file(&root.join("etc/sudoers.d/drover-lab"), SUDOERS, 0o440)?;
    write_file(&root.join("etc/systemd/journald.conf.d/drover-lab.conf"), JOURNALD_CONF, 0o644)?;
    let units = root.join("etc/systemd/system");
    for unit in MASKED_UNITS {
        let link = units.join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).map_err(LabError::io("mask", &link))?;
    }
    write_file(&root.join("etc/machine-id"), "", 0o444)?;
    remove_matching(&root.join("etc/ssh"), |n| n.starts_with("ssh_host_"))?;
    remove_matching(&root.join("var/cache/apt/archives"), |n| n.ends_with(".deb"))?;
    add_user(root)
}

/// Turn a fresh debootstrap tree into an OpenRC lab host image: sshd an
/// OpenRC service in place of Debian's LSB script, every
/// runlevel emptied of what the packages put there (LSB scripts written
/// for sysvinit, a `cgroups` service that cannot mount in a host's
/// namespaces), then sshd alone in `default`. A service is in a runlevel by
/// its link `/etc/runlevels/<runlevel>/<name>`, what `rc-update add` makes.
fn configure_openrc(root: &Path) -> Result<(), LabError> {
    write_file(&root.join(INIT_PATH.trim_start_matches('/')), INIT_OPENRC, 0o755)?;
    write_file(&root.join("etc/init.d/sshd"), SSHD_OPENRC, 0o755)?;
    // Debian's LSB script `Provides: sshd`: OpenRC refuses a service named
    // as another's virtual one.
    let lsb_ssh = root.join("etc/init.d/ssh");
    fs::remove_file(&lsb_ssh).map_err(LabError::io("remove", &lsb_ssh))?;
    write_file(&root.join("etc/ssh/sshd_config.d/drover-lab.conf"), SSHD_CONFIG, 0o644)?;
    write_file(&root.join("etc/sudoers.d/drover-lab"), SUDOERS, 0o440)?;
    for level in OPENRC_RUNLEVELS {
        let dir = root.join("etc/runlevels").join(level);
        fs::create_dir_all(&dir).map_err(LabError::io("create", &dir))?;
        remove_matching(&dir, |_| true)?;
    }
    let link = root.join("etc/runlevels/default/sshd");
    std::os::unix::fs::symlink("/etc/init.d/sshd", &link).map_err(LabError::io("link", &link))?;
    remove_matching(&root.join("etc/ssh"), |n| n.starts_with("ssh_host_"))?;
    remove_matching(&root.join("var/cache/apt/archives"), |n| n.ends_with(".deb"))?;
    add_user(root)
}

fn add_user(root: &Path) -> Result<(), LabError> {
    cmd::run(
        "chroot",
        [
            root.as_os_str(),
            "useradd".as_ref(),
            "--create-home".as_ref(),
            "--shell".as_ref(),
            "/bin/sh".as_ref(),
            USER.as_ref(),
        ],
    )?;
    Ok(())
}

pub(crate) fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(LabError::io("create", parent))?;
    }
    fs::write(path, content).map_err(LabError::io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(LabError::io("chmod", path))
}

fn remove_matching(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<(), LabError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(&pred) {
            fs::remove_file(e.path()).map_err(LabError::io("remove", e.path()))?;
        }
    }
    Ok(())
}

/// Builds interrupted by a crash (we hold the lock, so none is running).
fn remove_stale_builds(cache: &Path) -> Result<(), LabError> {
    let Ok(entries) = fs::read_dir(cache) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".build-") {
            tracing::info!(path = %e.path().display(), "removing interrupted base build");
            remove_tree(&e.path())?;
        }
    }
    Ok(())
}

/// Remove a directory tree, after unmounting anything mounted inside it
/// (debootstrap mounts /proc in its target). Refuses if a mount remains, so
/// a recursive delete never walks into another file system.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), LabError> {
    for m in sys::mounts_under(dir)? {
        sys::unmount(&m)?;
    }
    if let Some(m) = sys::mounts_under(dir)?.first() {
        return Err(LabError::Io {
            action: "refusing to delete: still mounted:",
            path: m.clone(),
            source: std::io::ErrorKind::ResourceBusy.into(),
        });
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("remove", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runit recipe changes only with what it hashes (the init script
    /// changed twice since systemd hosts came: it runs stage-1 hooks, and
    /// starts runsvdir with Debian's log argument so the agent can wake
    /// it), and systemd and OpenRC hosts each have a base of their own.
    #[test]
    fn runit_recipe_is_pinned_and_systemd_and_openrc_have_their_own_bases() {
        let k = |init| Kind { init, arch: Arch::Amd64, userland: Userland::Debian, containers: false };
        assert_eq!(recipe_id(k(Init::Runit)), "8e81ac37ec38");
        assert_ne!(recipe_id(k(Init::Systemd)), recipe_id(k(Init::Runit)));
        let config = LabConfig { cache_root: "/c".into(), ..LabConfig::from_env() };
        assert_eq!(base_dir(&config, k(Init::Runit)), Path::new("/c/base-bookworm-8e81ac37ec38"));
        assert!(base_dir(&config, k(Init::Systemd)).to_string_lossy().starts_with("/c/base-bookworm-systemd-"));
        assert!(base_dir(&config, k(Init::OpenRc)).to_string_lossy().starts_with("/c/base-bookworm-openrc-"));
        assert_ne!(recipe_id(k(Init::OpenRc)), recipe_id(k(Init::Systemd)));
    }

    /// The architecture and the userland are in the recipe: an arm64 or a
    /// busybox host never stacks on an amd64 Debian base, and each
    /// combination has a base of its own, named for what it is.
    #[test]
    fn every_arch_and_userland_has_its_own_base() {
        let config = LabConfig { cache_root: "/c".into(), ..LabConfig::from_env() };
        let mut seen = std::collections::HashSet::new();
        for init in Init::ALL {
            for arch in Arch::ALL {
                for userland in Userland::ALL {
                    let kind = Kind { init, arch, userland, containers: false };
                    assert!(seen.insert(recipe_id(kind)), "{kind} shares a recipe");
                }
            }
        }
        let arm = Kind::native(Init::Runit).with_arch(Arch::Arm64);
        assert!(base_dir(&config, arm).to_string_lossy().starts_with("/c/base-bookworm-arm64-runit-"));
        let bb = arm.with_arch(Arch::Amd64).with_userland(Userland::Busybox).with_arch(Arch::Amd64);
        let bb = Kind { init: Init::OpenRc, ..bb };
        assert!(base_dir(&config, bb).to_string_lossy().starts_with("/c/base-bookworm-busybox-openrc-"));
    }
}
