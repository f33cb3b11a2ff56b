//! The boot-time hook's files: what each init runs early at boot, and the
//! script they all run (see [`super`]).

use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::{bail, Context, Result};

/// The hook's files for the host's init. Each runs `boot-hook.sh` in the
/// agent's private state directory, which checks the agent binary's
/// `sha256` (given by the controller, which knows what it installed) before
/// running it as root: only the checked agent runs as root, at boot too
/// (`docs/security.md`). Written only when they differ (an agent upgrade
/// changes the script).
pub fn install_hook(layout: &Layout, env: HostEnv, sha256: &str) -> Result<()> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("agent sha256 {sha256:?} is not 64 hex digits");
    }
    let exe = std::env::current_exe().ctx(|| "the agent's own path".into())?;
    let exe = exe.to_string_lossy();
    if exe.contains(['\'', '\n', '\\']) {
        bail!("the agent's path {exe:?} cannot be written into a shell script");
    }
    let script = layout.boot_hook();
    let text = hook_script(&exe, sha256);
    if std::fs::read_to_string(&script).ok().as_deref() != Some(text.as_str()) {
        crate::fsops::write_atomic(&script, text.as_bytes())?;
    }
    let script = script.to_string_lossy();
    match crate::facts::gather(layout, env).supervisor {
        Some(drover_proto::Supervisor::Systemd) => {
            put(layout, SYSTEMD_UNIT_PATH, &systemd_unit(&script), 0o644)?;
            link(layout, SYSTEMD_WANTS_PATH, SYSTEMD_UNIT_PATH)
        }
        Some(drover_proto::Supervisor::Runit) => put(layout, RUNIT_HOOK_PATH, &runit_hook(&script), 0o755),
        Some(drover_proto::Supervisor::OpenRc) => {
            put(layout, OPENRC_SCRIPT_PATH, &openrc_script(&script), 0o755)?;
            link(layout, OPENRC_BOOT_LINK, OPENRC_SCRIPT_PATH)
        }
        None => {
            bail!("no boot-time hook for this host's init (no supervisor found): reboots need systemd, runit or OpenRC")
        }
    }
}

pub const SYSTEMD_UNIT_PATH: &str = "/etc/systemd/system/drover-boot.service";
const SYSTEMD_WANTS_PATH: &str = "/etc/systemd/system/sysinit.target.wants/drover-boot.service";
/// Debian's runit runs `/etc/runit/boot-run/*.sh` in stage 1 (native boot),
/// before stage 2 starts any service; so does the lab's runit init.
pub const RUNIT_HOOK_PATH: &str = "/etc/runit/boot-run/10-drover-boot.sh";

/// OpenRC: a service in the `boot` runlevel, which OpenRC finishes before
/// it starts the `default` one, where every service drover manages is
/// (`rc-update add NAME default`). Its link in the runlevel is what
/// `rc-update add drover-boot boot` makes.
pub const OPENRC_SCRIPT_PATH: &str = "/etc/init.d/drover-boot";
const OPENRC_BOOT_LINK: &str = "/etc/runlevels/boot/drover-boot";

/// Early (no default dependencies, before `sysinit.target`, so before every
/// ordinary unit and every service drover manages), quick (oneshot: it only
/// re-arms), and leaving the watchdog it starts alone (`KillMode=process`).
fn systemd_unit(script: &str) -> String {
    format!(
        "# Written by drover's agent: magic rollback across reboots (docs/operations.md).\n\
         [Unit]\n\
         Description=drover: re-arm the rollback of an unconfirmed generation\n\
         DefaultDependencies=no\n\
         After=local-fs.target\n\
         Before=sysinit.target shutdown.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         KillMode=process\n\
         ExecStart=/bin/sh {script}\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n"
    )
}

fn runit_hook(script: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by drover's agent: magic rollback across reboots (docs/operations.md).\n\
         [ -r {script} ] || exit 0\n\
         exec /bin/sh {script}\n"
    )
}

/// A one-shot: `start` runs the checking script and returns (the watchdog
/// it may start detaches; OpenRC does not stop a service's leftover
/// processes unless told to); no `command`, so `stop` does nothing.
fn openrc_script(script: &str) -> String {
    format!(
        "#!/sbin/openrc-run\n\
         # Written by drover's agent: magic rollback across reboots (docs/operations.md).\n\
         description=\"drover: re-arm the rollback of an unconfirmed generation\"\n\
         \n\
         start() {{\n\
         \tebegin \"Re-arming drover's rollback\"\n\
         \t[ ! -r {script} ] || /bin/sh {script}\n\
         \teend 0\n\
         }}\n"
    )
}

/// A symlink at `path` to `to`, unless something is there already.
fn link(layout: &Layout, path: &str, to: &str) -> Result<()> {
    let at = layout.target(path);
    if std::fs::symlink_metadata(&at).is_err() {
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        std::os::unix::fs::symlink(to, &at).ctx(|| format!("link {}", at.display()))?;
    }
    Ok(())
}

/// Run the agent's `boot` if the binary is still there and has the sha256
/// the controller installed; otherwise say why and do nothing (a boot must
/// never stop on this).
fn hook_script(exe: &str, sha256: &str) -> String {
    format!(
        "# Written by drover's agent: run by its boot-time hook (docs/operations.md, \"Reboots\").\n\
         a='{exe}'\n\
         [ -x \"$a\" ] || {{ echo \"drover-boot: $a is gone; nothing to re-arm\" >&2; exit 0; }}\n\
         printf '%s  %s\\n' {sha256} \"$a\" | sha256sum -c >/dev/null 2>&1 || {{ echo \"drover-boot: $a does not have sha256 {sha256}: not run\" >&2; exit 0; }}\n\
         exec \"$a\" boot\n"
    )
}

fn put(layout: &Layout, path: &str, content: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = layout.target(path);
    if std::fs::read_to_string(&target).is_ok_and(|c| c == content) {
        return Ok(());
    }
    let dir = target.parent().ok_or_else(|| crate::AgentError::new(format!("{path}: no parent")))?;
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    // Not `fsops::write_atomic`: that makes the directory private, and
    // these are the init's directories.
    let tmp = dir.join(".drover-boot.tmp");
    std::fs::write(&tmp, content).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ctx(|| format!("fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).ctx(|| format!("rename into {}", target.display()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn mtime(p: &Path) -> std::time::SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// On a systemd host: the unit (early, oneshot, leaving the watchdog
    /// alone) and its `sysinit.target.wants` link; written once, a second
    /// install writes nothing.
    #[test]
    fn systemd_hook_is_an_early_unit_enabled_in_sysinit() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
        let layout = Layout::new(d.path());
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
        let unit = layout.target(SYSTEMD_UNIT_PATH);
        let text = std::fs::read_to_string(&unit).unwrap();
        let exec = format!("ExecStart=/bin/sh {}\n", layout.boot_hook().display());
        for line in ["DefaultDependencies=no", "Before=sysinit.target shutdown.target", "KillMode=process", &exec] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        let wants = layout.target(SYSTEMD_WANTS_PATH);
        assert_eq!(std::fs::read_link(&wants).unwrap(), Path::new(SYSTEMD_UNIT_PATH));
        let before = mtime(&unit);
        std::thread::sleep(std::time::Duration::from_millis(20));
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
        assert_eq!(mtime(&unit), before, "an unchanged hook is not rewritten");
        // The init's directory keeps its mode (not made private like ours).
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(unit.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }

    /// On a runit host: an executable stage-1 script that runs the
    /// checking script if it is there.
    #[test]
    fn runit_hook_is_a_stage_one_script() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/service")).unwrap();
        std::fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::fs::write(d.path().join("usr/bin/sv"), "").unwrap();
        let layout = Layout::new(d.path());
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
        let script = layout.target(RUNIT_HOOK_PATH);
        let text = std::fs::read_to_string(&script).unwrap();
        let exec = format!("exec /bin/sh {}\n", layout.boot_hook().display());
        assert!(text.starts_with("#!/bin/sh\n") && text.contains(&exec), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
    }

    /// On an OpenRC host: an executable openrc-run script that runs the
    /// checking script, in the `boot` runlevel (before `default`, where
    /// drover's services are).
    #[test]
    fn openrc_hook_is_a_service_of_the_boot_runlevel() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sbin")).unwrap();
        std::fs::write(d.path().join("sbin/openrc-run"), "").unwrap();
        let layout = Layout::new(d.path());
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
        let script = layout.target(OPENRC_SCRIPT_PATH);
        let text = std::fs::read_to_string(&script).unwrap();
        let run = format!("/bin/sh {}\n", layout.boot_hook().display());
        assert!(
            text.starts_with("#!/sbin/openrc-run\n") && text.contains("start() {") && text.contains(&run),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
        let link = layout.target(OPENRC_BOOT_LINK);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(OPENRC_SCRIPT_PATH));
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
    }

    /// No init the agent knows: refused, saying which inits work.
    #[test]
    fn unknown_init_gets_no_hook_and_says_why() {
        let d = tempfile::tempdir().unwrap();
        let e = install_hook(&Layout::new(d.path()), HostEnv::Simulated, SHA).unwrap_err();
        assert!(e.0.contains("reboots need systemd, runit or OpenRC"), "{e}");
    }

    /// The script the hook runs checks the agent's sha256 before running
    /// it: a binary that does not match is not run (and the boot goes on);
    /// a "sha256" that is not one is refused before anything is written
    /// (it ends up in a shell script).
    #[test]
    fn hook_script_runs_only_the_agent_with_the_expected_sha256() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
        let layout = Layout::new(d.path());
        for bad in ["abc", "'; reboot; '", &SHA.replace('0', "g")] {
            let e = install_hook(&layout, HostEnv::Simulated, bad).unwrap_err();
            assert!(e.0.contains("not 64 hex digits"), "{e}");
        }
        assert!(!layout.boot_hook().exists());
        install_hook(&layout, HostEnv::Simulated, SHA).unwrap();
        let out = std::process::Command::new("/bin/sh").arg(layout.boot_hook()).output().unwrap();
        assert!(out.status.success());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!("does not have sha256 {SHA}: not run")), "{said}");
        assert!(out.stdout.is_empty(), "the agent ran: {}", String::from_utf8_lossy(&out.stdout));
    }
}
