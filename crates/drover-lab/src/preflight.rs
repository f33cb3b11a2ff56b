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

/// Where the kernel's binfmt_misc lives.
const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Make the kernel run `arch`'s programs under qemu-user, as hosts of a
/// foreign architecture need (debootstrap building their base, then every
/// process of theirs): binfmt_misc mounted, and qemu's entry from
/// `/usr/lib/binfmt.d/qemu-<machine>.conf` (qemu-user-static) registered
/// and enabled. Its `F` flag makes the kernel open the interpreter when
/// registering, so it works inside the hosts' chroots. Idempotent: a
/// machine set up already (by systemd-binfmt, say) is left as it is.
pub(crate) fn binfmt(arch: crate::Arch) -> Result<(), LabError> {
    if arch == crate::Arch::native() {
        return Ok(());
    }
    let machine = arch.machine();
    let dir = Path::new(BINFMT);
    let entry = dir.join(format!("qemu-{machine}"));
    let err = |detail: String| LabError::Binfmt { arch, detail };
    if !dir.join("register").exists() {
        crate::cmd::run("mount", ["-t", "binfmt_misc", "binfmt_misc", BINFMT]).map_err(|e| {
            err(format!(
                "it is not mounted and mounting it failed ({e}); try `mount -t binfmt_misc binfmt_misc {BINFMT}`"
            ))
        })?;
    }
    match std::fs::read_to_string(&entry) {
        Ok(text) if text.lines().next() == Some("enabled") => return Ok(()),
        Ok(_) => {
            return std::fs::write(&entry, "1")
                .map_err(|e| err(format!("enabling {}: {e}; try `echo 1 > {0}`", entry.display())))
        }
        Err(_) => {}
    }
    let conf = Path::new("/usr/lib/binfmt.d").join(format!("qemu-{machine}.conf"));
    let line = std::fs::read_to_string(&conf).map_err(|_| LabError::NoQemu { arch, missing: conf.clone() })?;
    let (line, interpreter) = binfmt_entry(&line);
    if interpreter.is_empty() || !is_executable(Path::new(interpreter)) {
        return Err(LabError::NoQemu { arch, missing: if interpreter.is_empty() { conf } else { interpreter.into() } });
    }
    match std::fs::write(dir.join("register"), line) {
        Ok(()) => Ok(()),
        // Registered meanwhile by another `up`.
        Err(_) if entry.exists() => Ok(()),
        Err(e) => Err(err(format!("registering {}: {e}", conf.display()))),
    }
}

/// The registration line of a `binfmt.d` file and its interpreter:
/// `:name:type:offset:magic:mask:interpreter:flags` (comments skipped).
fn binfmt_entry(conf: &str) -> (&str, &str) {
    let line = conf.lines().find(|l| l.starts_with(':')).unwrap_or_default();
    (line, line.split(':').nth(6).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    /// Debian's qemu-aarch64.conf, as qemu-user-static installs it.
    #[test]
    fn the_binfmt_entry_and_its_interpreter_are_read_from_the_conf_file() {
        let conf = "# comment\n:qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n";
        let (line, interpreter) = super::binfmt_entry(conf);
        assert!(line.starts_with(":qemu-aarch64:M::") && line.ends_with(":OPF"), "{line}");
        assert_eq!(interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(super::binfmt_entry("# nothing\n"), ("", ""));
    }
}
