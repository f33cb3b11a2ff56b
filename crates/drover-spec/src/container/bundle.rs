//! The OCI runtime bundle's `config.json` of a container, as the
//! `oci-spec` crate's runtime types, written by the controller and shipped
//! as a managed file beside the rootfs.
//!
//! What it asks of runc, and why:
//! - pid, mount, ipc and uts namespaces; the host's network (ports are the
//!   host's, as for a native service, and http/tcp probes reach it);
//! - the image's rootfs read-only (it is the generation's managed files: a
//!   write there would be drift, and lost at the next upgrade), with tmpfs
//!   on `/tmp` and `/run`; data belongs in volumes;
//! - `/proc`, `/dev`, `/sys` (read-only) and the masked and read-only paths
//!   of runc's default spec; `/etc/resolv.conf` from the host and
//!   `/etc/hosts` naming the project's services (`super::hosts`), read-only;
//! - Docker's default capability set (root only: a non-root process keeps
//!   none, as Docker does), `no_new_privileges`, and a seccomp filter that
//!   refuses new namespaces, the keyring, bpf and the like (`super::seccomp`);
//! - memory and pids limits when the service declares them, in the
//!   cgroup `/drover/<name>`.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::{Container, Process, VolumeKind};

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Mount points every container gets; the rootfs must have them (see
/// [`mount_points`]) because it is read-only.
const DIRS: [&str; 5] = ["/proc", "/dev", "/sys", "/tmp", "/run"];
const HOST_FILES: [&str; 2] = ["/etc/hosts", "/etc/resolv.conf"];

/// Paths the rootfs must hold for the mounts: (path, is a directory).
/// Missing ones are added to the generation as empty directories and files,
/// so runc never writes into the managed tree.
pub fn mount_points(c: &Container) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = DIRS.iter().map(|d| (d.to_string(), true)).collect();
    v.extend(HOST_FILES.iter().map(|f| (f.to_string(), false)));
    v.extend(c.volumes.iter().map(|vol| (vol.target.clone(), true)));
    v
}

/// `config.json` for one container (`name`: the service or instance) of
/// service `service`, with its process (instances render their own).
pub fn config_json(service: &str, name: &str, c: &Container, p: &Process) -> Vec<u8> {
    let spec = spec(service, name, c, p).expect("every field of the spec is set");
    let mut v = serde_json::to_value(&spec).expect("a spec serializes");
    // Capabilities are hash sets: sorted, so the same service gives the same
    // bytes (and hash) on every compile.
    if let Some(caps) = v.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    let mut out = serde_json::to_vec_pretty(&v).expect("a value serializes");
    out.push(b'\n');
    out
}

fn spec(service: &str, name: &str, c: &Container, p: &Process) -> Result<Spec, oci_spec::OciSpecError> {
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.into_iter().collect();
    let none = oci_spec::runtime::Capabilities::new();
    let root_caps = if p.uid == 0 { caps.clone() } else { none.clone() };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps)
        .effective(root_caps.clone())
        .permitted(root_caps)
        .inheritable(none.clone())
        .ambient(none)
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(p.uid).gid(p.gid).build()?)
        .args(p.args.clone())
        .env(p.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(PathBuf::from(&p.cwd))
        .no_new_privileges(true)
        .capabilities(capabilities)
        // No rlimits: the container keeps the supervisor's, as a native
        // service does (a fixed number can exceed what the host allows).
        .rlimits(Vec::new())
        .build()?;
    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?]);
    if let Some(m) = c.memory {
        // Swap as much as memory: no swap beyond the limit.
        resources = resources.memory(LinuxMemoryBuilder::default().limit(m).swap(m).build()?);
    }
    if let Some(n) = c.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(n).build()?);
    }
    let namespaces =
        [LinuxNamespaceType::Pid, LinuxNamespaceType::Mount, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts]
            .into_iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
            .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(format!("/drover/{name}")))
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .seccomp(super::seccomp::filter()?)
        .build()?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(super::rootfs_dir(service)).readonly(true).build()?)
        .process(process)
        .mounts(mounts(service, c)?)
        .linux(linux)
        .build()
}

fn mounts(service: &str, c: &Container) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let m = |dest: &str, typ: &str, src: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
    };
    let mut v = vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        m("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        m("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])?,
        m("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        m("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        m("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        m("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        m("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755"])?,
    ];
    for f in HOST_FILES {
        // /etc/hosts names the project's services (`super::hosts`).
        let src = if f == "/etc/hosts" { super::hosts::HOSTS_FILE } else { f };
        v.push(m(f, "bind", src, &["rbind", "ro", "nosuid", "nodev", "noexec"])?);
    }
    for vol in &c.volumes {
        let src = vol.host_path(service);
        let mut opts = vec!["rbind", if vol.readonly { "ro" } else { "rw" }];
        if matches!(vol.kind, VolumeKind::Named(_)) {
            opts.extend(["nosuid", "nodev"]);
        }
        v.push(m(&vol.target, "bind", &src, &opts)?);
    }
    Ok(v)
}
