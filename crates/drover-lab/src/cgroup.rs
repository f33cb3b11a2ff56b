//! Control groups for systemd hosts.
//!
//! systemd as pid 1 needs a cgroup tree it may write to. Each systemd host
//! gets its own directory, `drover-lab/<lab>/h<n>`, in the controller's
//! systemd-tracking hierarchies; its init process joins it before
//! `unshare --cgroup`, so inside the host's cgroup namespace that directory
//! *is* the root, and systemd builds `init.scope`, `system.slice`, … below
//! it without seeing or touching anything else. This is what
//! `systemd-nspawn` does, without needing systemd on the controller.
//!
//! Which hierarchies: the v1 `name=systemd` one at `/sys/fs/cgroup/systemd`
//! (plus the cgroup2 one at `/sys/fs/cgroup/unified` when mounted: "hybrid"),
//! or cgroup2 at `/sys/fs/cgroup` ("unified"). The host's init script mounts
//! the same layout inside (see `assets/init-systemd.sh`), told by
//! `DROVER_LAB_CGROUP`. Resource controllers (cpu, memory, …) are not given
//! to hosts: systemd runs without them.
//!
//! Container hosts (`crate::containers`) get more: their own cgroup in
//! *every* hierarchy, resource controllers included ([`prepare_host_all`]),
//! so runc and dockerd inside them can limit memory and pids and keep a
//! devices list for their containers.
//!
//! `down` kills every process left in a lab's cgroups (in any hierarchy)
//! and removes the directories, deepest first.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::LabError;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `statfs` magic numbers (linux/magic.h).
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Directory under each hierarchy's root holding every lab's cgroups.
const PARENT: &str = "drover-lab";

/// How the controller's cgroups are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// v1 `name=systemd` only.
    Legacy,
    /// v1 `name=systemd` plus cgroup2 at `unified/`.
    Hybrid,
    /// cgroup2 at the root.
    Unified,
}

impl Layout {
    /// What the host's init script is told (`DROVER_LAB_CGROUP`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Layout::Legacy => "legacy",
            Layout::Hybrid => "hybrid",
            Layout::Unified => "unified",
        }
    }

    /// The hierarchies a host joins, by their mount point on the controller.
    fn roots(self) -> Vec<PathBuf> {
        let root = Path::new(CGROUP_ROOT);
        match self {
            Layout::Legacy => vec![root.join("systemd")],
            Layout::Hybrid => vec![root.join("systemd"), root.join("unified")],
            Layout::Unified => vec![root.to_path_buf()],
        }
    }
}

/// The controller's layout, or an error saying why systemd hosts cannot run.
pub(crate) fn detect() -> Result<Layout, LabError> {
    detect_at(Path::new(CGROUP_ROOT))
}

/// [`detect`] for a cgroup mount root (a parameter so tests can point it at
/// a directory that is no cgroup file system).
fn detect_at(root: &Path) -> Result<Layout, LabError> {
    if fs_magic(root) == Some(CGROUP2_SUPER_MAGIC) {
        return Ok(Layout::Unified);
    }
    if fs_magic(&root.join("systemd")) == Some(CGROUP_SUPER_MAGIC) {
        return Ok(if fs_magic(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC) {
            Layout::Hybrid
        } else {
            Layout::Legacy
        });
    }
    Err(LabError::NoSystemdCgroup)
}

fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs only writes into the zeroed struct we own; `c` is a
    // valid NUL-terminated path for the duration of the call.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    (rc == 0).then_some(buf.f_type as i64)
}

/// Host `n`'s cgroup in every hierarchy of `layout`, created if missing:
/// the `cgroup.procs` files its init process writes itself into.
pub(crate) fn prepare_host(layout: Layout, lab: &str, n: u16) -> Result<Vec<CString>, LabError> {
    layout
        .roots()
        .into_iter()
        .map(|root| {
            let dir = root.join(PARENT).join(lab).join(crate::config::host_name(n));
            fs::create_dir_all(&dir).map_err(LabError::io("create cgroup", &dir))?;
            let procs = dir.join("cgroup.procs");
            Ok(CString::new(procs.as_os_str().as_bytes()).expect("cgroup paths have no NUL"))
        })
        .collect()
}

/// Host `n`'s cgroup in every hierarchy of the controller (each v1
/// controller, `name=systemd`, cgroup2), created if missing, for a
/// container host: the `cgroup.procs` files its init process writes itself
/// into. A new v1 `cpuset` cgroup has no CPUs or memory nodes, and no
/// process may join it until it has: each level gets its parent's.
pub(crate) fn prepare_host_all(lab: &str, n: u16) -> Result<Vec<CString>, LabError> {
    hierarchies()
        .into_iter()
        .map(|root| {
            let mut dir = root;
            for part in [PARENT, lab, &crate::config::host_name(n)] {
                let parent = dir.clone();
                dir.push(part);
                if !dir.is_dir() {
                    fs::create_dir(&dir).map_err(LabError::io("create cgroup", &dir))?;
                }
                inherit_cpuset(&parent, &dir)?;
            }
            let procs = dir.join("cgroup.procs");
            Ok(CString::new(procs.as_os_str().as_bytes()).expect("cgroup paths have no NUL"))
        })
        .collect()
}

/// Copy `cpuset.cpus` and `cpuset.mems` from `parent` to `dir` where `dir`
/// has them empty (v1 cpuset hierarchies only; elsewhere nothing to do).
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), LabError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Ok(current) = fs::read_to_string(&own) else { continue };
        if !current.trim().is_empty() {
            continue;
        }
        let from = parent.join(file);
        let value = fs::read_to_string(&from).map_err(LabError::io("read", &from))?;
        fs::write(&own, value.trim()).map_err(LabError::io("write", &own))?;
    }
    Ok(())
}

/// Every cgroup hierarchy of the controller: `/sys/fs/cgroup` itself when
/// it is cgroup2, else each directory below it that is a cgroup mount
/// (symbolic links such as `cpu -> cpu,cpuacct` left out: they name a
/// hierarchy already listed).
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if fs_magic(root) == Some(CGROUP2_SUPER_MAGIC) {
        return vec![root.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| matches!(fs_magic(p), Some(CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Where `down` looks for labs' cgroups: every hierarchy, and the places
/// systemd hosts used before container hosts existed.
fn tops() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let mut tops = hierarchies();
    tops.extend([root.join("systemd"), root.join("unified"), root.to_path_buf()]);
    tops.sort();
    tops.dedup();
    tops
}

/// Move the calling process into each cgroup (`cgroup.procs` paths).
///
/// Runs between fork and exec (`pre_exec`), where only async-signal-safe
/// calls are allowed: no allocation, just open/write/close. Writing "0"
/// moves the writer itself.
pub(crate) fn join_in_child(procs: &[CString]) -> io::Result<()> {
    for p in procs {
        // SAFETY: `p` is a valid NUL-terminated path; open/write/close are
        // async-signal-safe and touch no memory of ours besides the literal.
        let ok = unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                false
            } else {
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                n == 1
            }
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Every cgroup directory of lab `lab` (in any hierarchy), deepest first.
pub(crate) fn lab_dirs(lab: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for top in tops() {
        let dir = top.join(PARENT).join(lab);
        if dir.is_dir() {
            collect_dirs(&dir, &mut out);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Names of labs that have cgroups (for `down --all`).
pub(crate) fn lab_names() -> Vec<String> {
    let mut names: Vec<String> = tops()
        .iter()
        .filter_map(|top| fs::read_dir(top.join(PARENT)).ok())
        .flat_map(|d| d.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Processes in any of lab `lab`'s cgroups.
pub(crate) fn lab_pids(lab: &str) -> Vec<i32> {
    lab_dirs(lab)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// Remove lab `lab`'s cgroups (their processes must be gone), and the
/// shared parent when no lab uses it any more. Returns how many it removed.
pub(crate) fn remove_lab(lab: &str) -> usize {
    let mut removed = 0;
    for dir in lab_dirs(lab) {
        // rmdir is the only way to remove a cgroup (its files cannot be
        // unlinked); it fails while a process or a child cgroup remains.
        if fs::remove_dir(&dir).is_ok() {
            removed += 1;
        }
    }
    for top in tops() {
        let _ = fs::remove_dir(top.join(PARENT)); // fails while another lab has cgroups: fine
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty v1 cpuset cgroup gets its parent's CPUs and memory nodes
    /// (else no process may join it); one that has its own keeps them, and
    /// a cgroup of another controller is left alone.
    #[test]
    fn a_new_cpuset_cgroup_inherits_its_parents_cpus_and_mems() {
        let dir = std::env::temp_dir().join(format!("drover-lab-cpuset-{}", std::process::id()));
        let (parent, child, other) = (dir.join("p"), dir.join("p/c"), dir.join("o"));
        fs::create_dir_all(&child).unwrap();
        fs::create_dir_all(&other).unwrap();
        fs::write(parent.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(parent.join("cpuset.mems"), "0\n").unwrap();
        fs::write(child.join("cpuset.cpus"), "\n").unwrap();
        fs::write(child.join("cpuset.mems"), "").unwrap();
        inherit_cpuset(&parent, &child).unwrap();
        inherit_cpuset(&parent, &other).unwrap();
        let (cpus, mems) = (
            fs::read_to_string(child.join("cpuset.cpus")).unwrap(),
            fs::read_to_string(child.join("cpuset.mems")).unwrap(),
        );
        fs::write(child.join("cpuset.cpus"), "1").unwrap();
        inherit_cpuset(&parent, &child).unwrap();
        let kept = fs::read_to_string(child.join("cpuset.cpus")).unwrap();
        let other_files = fs::read_dir(&other).unwrap().count();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!((cpus.as_str(), mems.as_str(), kept.as_str(), other_files), ("0-1", "0", "1", 0));
    }

    #[test]
    fn no_cgroup_file_system_is_a_refusal_that_says_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("drover-lab-cgroup-{}", std::process::id()));
        fs::create_dir_all(dir.join("systemd")).unwrap();
        let err = detect_at(&dir).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert!(err.is_refusal());
        let msg = err.to_string();
        assert!(msg.contains("name=systemd") && msg.contains("cgroup2") && msg.contains("--init runit"), "{msg}");
    }
}
