//! Putting the agent on a host so that what runs as root is exactly the agent
//! this controller embeds, whatever the login user (or anything running as
//! it) has done to the files it can write.
//!
//! - Before anything else, the first remote command asks the host for its
//!   machine (`uname -m`) and picks the agent built for it from the
//!   controller's table ([`agent_bin::agents`]); a host of a machine the
//!   table lacks is refused there ([`AgentCheck::Unsupported`]), before any
//!   upload. The probe rides on that command, so it costs no round trip.
//! - The agent that runs as root lives in [`AGENT_DIR`] (root-owned, 0700),
//!   named by its blake3. Before every start, a root shell checks the
//!   directory's and the file's owner and mode and the file's sha256 with
//!   coreutils' `sha256sum`, then `exec`s it. The check is not left to the
//!   binary itself: a swapped binary would say whatever it liked. Between
//!   check and exec only root can change the file.
//! - Installing, for any login: upload to a fresh temporary file as the login
//!   user; then, as root, copy it into [`AGENT_DIR`], check the *copy's*
//!   sha256, chmod and rename it into place. The temporary file is writable
//!   by the login user, so it is only ever read, never checked or run: a file
//!   swapped while in flight yields a copy that fails its check and is
//!   refused.
//! - The pre-2026 location, `~/.cache/drover/agent-<blake3>` in the login
//!   user's home, is never executed; an upload removes what is left there.
//!
//! Remote commands are built from fixed text, the agent's hex digests and a
//! temporary path that is checked against a strict character set, so nothing
//! from the network or the inventory reaches a shell unquoted.

use crate::agent_bin::{self, Agent, Arch};

mod install;

pub use install::{install, install_from, sudo_hint, upload};

/// Where the agent lives on every host.
pub const AGENT_DIR: &str = "/var/lib/drover/agent";

/// The serve command's exit status when the host's machine has no agent in
/// the controller's table: nothing is checked, run or uploaded.
const EXIT_UNSUPPORTED_ARCH: u32 = 95;
/// ... when the agent is not installed yet.
const EXIT_NO_AGENT: u32 = 97;
/// ... when it is there but fails its check (sha256, owner or mode): it is
/// replaced, never run.
const EXIT_BAD_AGENT: u32 = 98;
/// On each of those exits the script's last line on standard error is this
/// followed by what `uname -m` printed: which agent the host needs, or which
/// machine it is that no agent is carried for.
const ARCH_MARK: &str = "drover-arch=";

/// What the serve command's exit says about the host's agent, so that
/// callers never decode the script's exit codes or output themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCheck {
    /// Not installed yet (or this drover's version of it is not): install
    /// this one, built for the host's machine.
    Missing(&'static Agent),
    /// There, but it failed its check (sha256, owner or mode): replaced by
    /// this one, never run.
    Failed(&'static Agent),
    /// The host's machine (what `uname -m` said) has no agent in the
    /// table: refused, nothing uploaded.
    Unsupported(Arch),
}

impl AgentCheck {
    /// From the serve command's exit `code` and standard error. `None`: the
    /// exit was the agent's own (or sudo's), not the check's.
    pub fn from_exit(code: u32, stderr: &str) -> Option<AgentCheck> {
        if ![EXIT_UNSUPPORTED_ARCH, EXIT_NO_AGENT, EXIT_BAD_AGENT].contains(&code) {
            return None;
        }
        let said = stderr.lines().rev().find_map(|l| l.strip_prefix(ARCH_MARK))?;
        let arch = Arch::from_uname(said);
        // The script and the table are made from the same list, so a
        // machine the script let through has an agent; if not, refusing is
        // the safe answer.
        let Some(agent) = agent_bin::for_arch(&arch) else { return Some(AgentCheck::Unsupported(arch)) };
        match code {
            EXIT_NO_AGENT => Some(AgentCheck::Missing(agent)),
            EXIT_BAD_AGENT => Some(AgentCheck::Failed(agent)),
            _ => Some(AgentCheck::Unsupported(arch)),
        }
    }
}

/// The prefix that runs a command as root: none for root logins, else
/// `sudo` reading the inventory's password from standard input (`-k`: never
/// a cached credential, so a wrong password is always noticed).
pub fn sudo_prefix(user: &str) -> &'static str {
    if user == "root" {
        ""
    } else {
        "sudo -k -S -p '' "
    }
}

/// The path on hosts of the agent for the controller's own machine (the
/// lab's hosts run on it); see [`path_of`].
pub fn agent_path() -> String {
    path_of(agent_bin::native())
}

/// Where `agent` lives on the hosts it is for: named by its blake3.
pub fn path_of(agent: &Agent) -> String {
    format!("{AGENT_DIR}/agent-{}", agent.hash().to_hex())
}

/// The script's first step: `uname -m`, matched against every machine the
/// table has an agent for, choosing that agent's path, check record and
/// sha256 (`a`, `k`, `h`); any other machine exits
/// [`EXIT_UNSUPPORTED_ARCH`]. `x` is how the script exits early: it says the
/// machine on standard error first ([`ARCH_MARK`]).
fn arch_probe() -> String {
    let mut cases = String::new();
    for agent in agent_bin::agents() {
        let names = agent.arch.uname_names();
        if names.is_empty() {
            continue;
        }
        cases.push_str(&format!(
            "{}) a={path}; k=$d/.ok-{hex}; h={sha};; ",
            names.join("|"),
            path = path_of(agent),
            hex = agent.hash().to_hex(),
            sha = agent.sha256_hex(),
        ));
    }
    format!(
        "m=$(uname -m 2>/dev/null); x() {{ printf \"{ARCH_MARK}%s\\n\" \"$m\" >&2; exit \"$1\"; }}; \
         case \"$m\" in {cases}*) x {EXIT_UNSUPPORTED_ARCH};; esac; "
    )
}

/// Check, as root, that the installed agent is root-owned 0700 in a
/// root-owned 0700 directory and has our sha256; then run it. `stat` does
/// not follow symbolic links, so a link in place of either fails the check.
///
/// The sha256 is computed once per file, not once per connection (about
/// 10 ms of a host's CPU each time, two connections per changed host):
/// after a successful check the script records the file's identity (device,
/// inode, size, mtime and ctime in ns) in `.ok-<blake3>` in the same root-only
/// directory, and hashes again only when that identity changed. Only root
/// can write the directory, and any change to the file (rename, rewrite,
/// chmod) changes its ctime, which no one can set back short of moving the
/// system clock. A `stat` without `%.9Y` (coreutils before 8.6) never
/// matches, so every start hashes, as before.
///
/// All of it comes after [`arch_probe`], which picks the agent by the
/// host's machine.
fn serve_script() -> String {
    format!(
        "d={AGENT_DIR}; {probe}\
         [ -e \"$a\" ] || [ -L \"$a\" ] || x {EXIT_NO_AGENT}; \
         [ \"$(stat -c %u.%a \"$d\")\" = 0.700 ] && [ -f \"$a\" ] \
         && s=$(stat -c \"%u.%a %d.%i.%s.%.9Y.%.9Z\" \"$a\") && [ \"${{s%% *}}\" = 0.700 ] || x {EXIT_BAD_AGENT}; \
         ok=; [ -f \"$k\" ] && read -r ok < \"$k\"; \
         if [ \"$ok\" != \"${{s#* }}\" ]; then \
         printf \"%s  %s\\n\" \"$h\" \"$a\" | sha256sum -c >/dev/null 2>&1 || x {EXIT_BAD_AGENT}; \
         printf \"%s\\n\" \"${{s#* }}\" > \"$k\" 2>/dev/null; fi; \
         exec \"$a\" serve",
        probe = arch_probe(),
    )
}

/// The remote command that starts the agent as root (see [`serve_script`]).
pub fn serve_command(user: &str) -> String {
    format!("exec {}", wrap_root(user, &serve_script(), &[]))
}

/// `script` run by `/bin/sh` as root, with `args` as `$1`…. The script must
/// not contain a single quote (it is single-quoted); the arguments must be
/// [`safe_word`]s.
fn wrap_root(user: &str, script: &str, args: &[&str]) -> String {
    assert!(!script.contains('\''), "bootstrap scripts are single-quoted");
    let mut cmd = format!("{}/bin/sh -c '{script}' drover", sudo_prefix(user));
    for a in args {
        assert!(safe_word(a), "unchecked argument {a:?}");
        cmd.push_str(&format!(" '{a}'"));
    }
    cmd
}

/// A path made only of characters no shell treats specially, absolute, with
/// no `..`: safe to put in a remote command.
pub fn safe_word(s: &str) -> bool {
    s.starts_with('/')
        && !s.split('/').any(|c| c == "..")
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_reach_a_remote_shell() {
        assert!(safe_word("/tmp/drover-agent.AbC123xyz_"));
        for bad in ["tmp/x", "/tmp/a b", "/tmp/x'y", "/tmp/$(id)", "/tmp/../etc/shadow", "/tmp/x;id", "/tmp/`id`", ""] {
            assert!(!safe_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_scripts_are_single_quotable() {
        for user in ["root", "op"] {
            let serve = serve_command(user);
            for agent in agent_bin::agents() {
                assert!(serve.contains(agent.sha256_hex()) && serve.contains(&path_of(agent)), "{serve}");
                assert!(!install::install_script(agent).contains('\''));
            }
            assert_eq!(serve.matches('\'').count(), if user == "root" { 2 } else { 4 }, "{serve}");
        }
    }

    /// The check's exits say which agent the host needs, or which machine
    /// it is that none is carried for, from the script's last line on
    /// standard error (sudo may have written before it); any other exit is
    /// the agent's own.
    #[test]
    fn the_checks_exit_names_the_hosts_machine_and_its_agent() {
        let agent = agent_bin::native();
        let said = format!("sudo: some warning\n{ARCH_MARK}{}\n", agent.arch.uname_names()[1]);
        assert_eq!(AgentCheck::from_exit(EXIT_NO_AGENT, &said), Some(AgentCheck::Missing(agent)));
        assert_eq!(AgentCheck::from_exit(EXIT_BAD_AGENT, &said), Some(AgentCheck::Failed(agent)));
        let armv7 = format!("{ARCH_MARK}armv7l\n");
        assert_eq!(
            AgentCheck::from_exit(EXIT_UNSUPPORTED_ARCH, &armv7),
            Some(AgentCheck::Unsupported(Arch::Other("armv7l".into())))
        );
        // A machine the script let through but the table lacks: refused.
        assert_eq!(
            AgentCheck::from_exit(EXIT_NO_AGENT, &armv7),
            Some(AgentCheck::Unsupported(Arch::Other("armv7l".into())))
        );
        assert_eq!(AgentCheck::from_exit(0, &said), None);
        assert_eq!(AgentCheck::from_exit(1, &said), None);
        assert_eq!(AgentCheck::from_exit(EXIT_NO_AGENT, "sudo: a password is required\n"), None);
    }

    /// The serve script itself, run by this machine's `/bin/sh` with a
    /// `uname` earlier in `PATH` that says `armv7l` (the only thing faked):
    /// it exits at its first step, before looking at any agent, and names
    /// the machine.
    #[test]
    fn the_serve_script_refuses_a_machine_it_has_no_agent_for() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let uname = dir.path().join("uname");
        std::fs::write(&uname, "#!/bin/sh\necho armv7l\n").unwrap();
        std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &serve_script()])
            .env("PATH", path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_UNSUPPORTED_ARCH as i32), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(
            AgentCheck::from_exit(EXIT_UNSUPPORTED_ARCH, &stderr),
            Some(AgentCheck::Unsupported(Arch::Other("armv7l".into())))
        );
    }
}
