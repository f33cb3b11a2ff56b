//! The one error type of the lab.
//!
//! Every variant names what it was doing and on what (lab, host, path or
//! command line), so the CLI can print the chain as is. The environment
//! variants ([`LabError::is_refusal`]) are the ones a user fixes by changing
//! the machine, not the command line.

use std::io;
use std::path::PathBuf;

/// What went wrong in a lab operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The lab is Linux-only: namespaces, veth, overlayfs.
    #[error("drover lab needs Linux (network namespaces, veth, overlayfs); this is {os}")]
    NotLinux { os: &'static str },

    /// Creating namespaces, links and mounts needs root.
    #[error("drover lab needs root (it creates network namespaces, links and mounts); run it with sudo")]
    NotRoot,

    /// Tools the lab shells out to are not installed.
    #[error("drover lab needs {} which {} not installed; install with: apt-get install {}",
        tools.join(", "), if tools.len() == 1 { "is" } else { "are" }, packages.join(" "))]
    MissingTools { tools: Vec<&'static str>, packages: Vec<&'static str> },

    /// Lab names end up in paths and link aliases.
    #[error("invalid lab name {0:?}: use 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit")]
    InvalidName(String),

    /// Host numbers map to the last octet `10 + n`.
    #[error("a lab holds at most {max} hosts, {requested} were asked for")]
    TooManyHosts { requested: usize, max: usize },

    /// The lab has no state: never brought up, or already torn down.
    #[error("lab {name:?} is not up (no state at {path}); run `drover lab up N --lab {name}` first")]
    NotUp { name: String, path: PathBuf },

    /// A host name that is not in the lab.
    #[error("lab {lab:?} has no host {host:?} (it has h1..h{count})")]
    UnknownHost { lab: String, host: String, count: usize },

    /// A fault description that does not parse.
    #[error("bad fault: {0}")]
    BadFault(String),

    /// All 255 lab indexes (and so subnets) are taken.
    #[error("no free lab index: 255 labs exist; remove some with `drover lab down --all`")]
    NoFreeIndex,

    /// No Debian mirror to build the base root filesystem from.
    #[error("no Debian mirror for suite {suite:?} in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; set DROVER_LAB_MIRROR=<url>")]
    NoMirror { suite: &'static str },

    /// A tool ran and failed.
    #[error("`{command}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Command { command: String, status: String, stderr: String },

    /// A tool could not be started at all.
    #[error("could not run {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    /// A file system or system call failed on a path.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The state file exists but does not parse.
    #[error("corrupt lab state {}; `drover lab down` still cleans up", path.display())]
    CorruptState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// debootstrap failed; its log says why.
    #[error("building the base root filesystem failed ({detail}); see {}", log.display())]
    BaseBuild { detail: String, log: PathBuf },

    /// Some hosts did not answer with an SSH banner in time.
    #[error("{} host(s) did not start: {}", failures.len(), failures.iter().map(|(h, why)| format!("{h}: {why}")).collect::<Vec<_>>().join("; "))]
    HostsNotReady { failures: Vec<(String, String)> },

    /// `down` could not remove everything; what is left is listed.
    #[error("lab {lab:?} not fully removed; left: {}", left.join(", "))]
    Leftovers { lab: String, left: Vec<String> },

    /// `DROVER_LAB_NETEM=kernel` on a kernel without the netem qdisc.
    #[error("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); unset DROVER_LAB_NETEM to use the userspace link emulator")]
    NoKernelNetem,

    /// systemd hosts need a cgroup hierarchy systemd can manage.
    #[error("systemd lab hosts need a cgroup hierarchy for systemd: cgroup2 at /sys/fs/cgroup, or the v1 `name=systemd` hierarchy at /sys/fs/cgroup/systemd; neither is mounted here (use `--init runit`)")]
    NoSystemdCgroup,

    /// `up` asked for a host of another kind than the one it is (a host
    /// keeps the kind it was made with).
    #[error("lab {lab:?} runs {existing} hosts ({host} is one); it cannot make {host} a {requested} host. Use another `--lab`, or `drover lab down --lab {lab}` first")]
    KindMismatch { lab: String, host: String, existing: crate::Kind, requested: crate::Kind },

    /// `--kinds` names one kind per host: as many as the count.
    #[error("`--kinds` names {kinds} kind(s) for {count} host(s): give one kind per host, h1 first (or a single kind for all)")]
    KindCount { count: usize, kinds: usize },

    /// A kind this machine cannot run (systemd under emulation, say).
    #[error("cannot run {0}")]
    UnsupportedKind(String),

    /// Hosts of another architecture need qemu-user and binfmt_misc.
    #[error("{arch} lab hosts run under qemu-user, which is not installed here ({} missing); install it with `apt-get install qemu-user-static` (`scripts/deps --test` does)", missing.display())]
    NoQemu { arch: crate::Arch, missing: PathBuf },

    /// The kernel's binfmt_misc could not be mounted or written.
    #[error("{arch} lab hosts need the kernel's binfmt_misc to run their programs under qemu-user: {detail}")]
    Binfmt { arch: crate::Arch, detail: String },

    /// `up --ssh-ca` on a lab made without it, or the reverse.
    #[error("lab {lab:?} was made {}; `up` must be asked the same way. Use another `--lab`, or `drover lab down --lab {lab}` first", if *.existing { "with --ssh-ca" } else { "without --ssh-ca" })]
    SshCaMismatch { lab: String, existing: bool },

    /// The userspace link emulator could not be started or run.
    #[error("link emulator for {host}: {detail}")]
    Wire { host: String, detail: String },
}

impl LabError {
    /// True when the machine, not the request, is at fault (no root, not
    /// Linux, missing tools): the CLI exits with its "refused" code.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LabError::NotLinux { .. }
                | LabError::NotRoot
                | LabError::MissingTools { .. }
                | LabError::NoSystemdCgroup
                | LabError::UnsupportedKind(_)
                | LabError::NoQemu { .. }
                | LabError::Binfmt { .. }
        )
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { action, path, source }
    }
}
