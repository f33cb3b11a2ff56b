//! Refuse early, and say exactly what is missing, when the machine cannot
//! run a lab: not Linux, not root, or a tool not installed.

use std::path::Path;

use crate::error::LabError;

/// A tool the lab runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Ip,
    Tc,
    Unshare,
    Chroot,
    Debootstrap,
    SshKeygen,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Ip => "ip",
            Tool::Tc => "tc",
            Tool::Unshare => "unshare",
            Tool::Chroot => "chroot",
            Tool::Debootstrap => "debootstrap",
            Tool::SshKeygen => "ssh-keygen",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::Ip | Tool::Tc => "iproute2",
            Tool::Unshare => "util-linux",
            Tool::Chroot => "coreutils",
            Tool::Debootstrap => "debootstrap",
            Tool::SshKeygen => "openssh-client",
        }
    }
}

/// Everything `up` needs.
pub(crate) const UP: &[Tool] = &[Tool::Ip, Tool::Tc, Tool::Unshare, Tool::Chroot, Tool::Debootstrap, Tool::SshKeygen];
/// Faults and cleanup need only iproute2.
pub(crate) const NET: &[Tool] = &[Tool::Ip, Tool::Tc];

/// Check Linux, root, then `tools`, in that order.
pub(crate) fn check(tools: &[Tool]) -> Result<(), LabError> {
    if !cfg!(target_os = "linux") {
        return Err(LabError::NotLinux { os: std::env::consts::OS });
    }
    if crate::sys::euid() != 0 {
        return Err(LabError::NotRoot);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| is_executable(&d.join(t.program()))))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&'static str> = missing.iter().map(|t| t.package()).collect();
    packages.dedup();
    Err(LabError::MissingTools { tools: missing.iter().map(|t| t.program()).collect(), packages })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
