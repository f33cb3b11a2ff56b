//! Putting the agent on a host so that what runs as root is exactly the agent
//! this controller embeds, whatever the login user (or anything running as
//! it) has done to the files it can write.
//!
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

use std::time::Duration;

use super::error::TransportError;
use crate::agent_bin;

/// Where the agent lives on every host.
pub const AGENT_DIR: &str = "/var/lib/drover/agent";

/// The serve command's exit status when the agent is not installed yet.
const EXIT_NO_AGENT: u32 = 97;
/// ... when it is there but fails its check (sha256, owner or mode): it is
/// replaced, never run.
const EXIT_BAD_AGENT: u32 = 98;
/// What the serve command's exit status says about the installed agent, so
/// that callers never decode the script's exit codes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCheck {
    /// Not installed yet (or this drover's version of it is not).
    Missing,
    /// There, but it failed its check (sha256, owner or mode): replaced, never run.
    Failed,
}

impl AgentCheck {
    /// `None`: the exit was the agent's own, not the check's.
    pub fn from_exit(code: u32) -> Option<AgentCheck> {
        match code {
            EXIT_NO_AGENT => Some(AgentCheck::Missing),
            EXIT_BAD_AGENT => Some(AgentCheck::Failed),
            _ => None,
        }
    }
}

/// The install command's exit status when the root-owned copy of the upload
/// does not have the expected sha256.
const EXIT_COPY_MISMATCH: u32 = 99;

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

/// The agent's path on hosts.
pub fn agent_path() -> String {
    format!("{AGENT_DIR}/agent-{}", agent_bin::hash().to_hex())
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
fn serve_script() -> String {
    format!(
        "d={AGENT_DIR}; a={path}; k=$d/.ok-{hex}; \
         [ -e \"$a\" ] || [ -L \"$a\" ] || exit {EXIT_NO_AGENT}; \
         [ \"$(stat -c %u.%a \"$d\")\" = 0.700 ] && [ -f \"$a\" ] \
         && s=$(stat -c \"%u.%a %d.%i.%s.%.9Y.%.9Z\" \"$a\") && [ \"${{s%% *}}\" = 0.700 ] || exit {EXIT_BAD_AGENT}; \
         ok=; [ -f \"$k\" ] && read -r ok < \"$k\"; \
         if [ \"$ok\" != \"${{s#* }}\" ]; then \
         printf \"%s  %s\\n\" {sha} \"$a\" | sha256sum -c >/dev/null 2>&1 || exit {EXIT_BAD_AGENT}; \
         printf \"%s\\n\" \"${{s#* }}\" > \"$k\" 2>/dev/null; fi; \
         exec \"$a\" serve",
        path = agent_path(),
        hex = agent_bin::hash().to_hex(),
        sha = agent_bin::sha256_hex(),
    )
}

/// The remote command that starts the agent as root (see [`serve_script`]).
pub fn serve_command(user: &str) -> String {
    format!("exec {}", wrap_root(user, &serve_script(), &[]))
}

/// Copy the upload `$1` into the agent directory as root and install it
/// only if the copy has our sha256. The copy's name is unique per install
/// (`$$`), so two controllers installing at once never check each other's
/// half-written copy. Agents of other drover versions are removed once this
/// one is in place (a process still running one keeps its file open).
fn install_script() -> String {
    format!(
        "set -e; umask 077; d={AGENT_DIR}; a={path}; n=$d/.new-{hex}.$$; \
         for p in /var/lib/drover \"$d\"; do if [ -L \"$p\" ]; then \
         echo \"$p is a symbolic link: drover will not install its agent through it; remove it\" >&2; exit 1; fi; done; \
         mkdir -p \"$d\"; chown 0:0 \"$d\"; chmod 700 \"$d\"; rm -f \"$n\"; \
         if [ ! -f \"$1\" ] || [ -L \"$1\" ]; then echo \"the uploaded agent $1 is not a regular file\" >&2; exit {EXIT_COPY_MISMATCH}; fi; \
         cat -- \"$1\" > \"$n\"; \
         if printf \"%s  %s\\n\" {sha} \"$n\" | sha256sum -c >/dev/null 2>&1; then chmod 700 \"$n\"; mv -f \"$n\" \"$a\"; \
         for o in \"$d\"/agent-* \"$d\"/.ok-*; do [ \"$o\" = \"$a\" ] || [ \"$o\" = \"$d/.ok-{hex}\" ] || rm -f \"$o\"; done; \
         else rm -f \"$n\"; echo \"the agent uploaded to $1 does not have sha256 {sha}: it was changed after the upload (by another process of the login user?); not installed\" >&2; exit {EXIT_COPY_MISMATCH}; fi",
        path = agent_path(),
        hex = agent_bin::hash().to_hex(),
        sha = agent_bin::sha256_hex(),
    )
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

/// Put the agent in place on a host: upload as the login user, then install
/// as root (see the module docs). `sudo_password` is the line `sudo -S`
/// reads; `deadline` bounds each step.
pub async fn install(
    session: &drover_ssh::Session,
    user: &str,
    sudo_password: Option<&str>,
    deadline: Duration,
) -> Result<(), TransportError> {
    let temp = upload(session, deadline).await?;
    install_from(session, user, sudo_password, &temp, deadline).await
}

/// The upload's exit status when the host has no `gzip`: it is sent again
/// uncompressed.
const EXIT_NO_GZIP: u32 = 96;

/// Upload the agent to a fresh temporary file the login user owns, and say
/// which. Also removes agents left in the old per-user cache, which older
/// drover versions ran as root.
///
/// The agent travels gzip-compressed (46% of its size: on a slow link the
/// largest part of a first contact) and is unpacked by the host's `gzip`;
/// a host without one gets it as it is. Either way the root-owned copy's
/// sha256 is checked before it is installed.
pub async fn upload(session: &drover_ssh::Session, deadline: Duration) -> Result<String, TransportError> {
    let start = "umask 077; rm -f .cache/drover/agent-* 2>/dev/null; \
                 t=$(mktemp \"${TMPDIR:-/tmp}/drover-agent.XXXXXXXXXX\") || { cat >/dev/null; exit 1; }";
    let gz = format!(
        "{start}; command -v gzip >/dev/null 2>&1 || {{ cat >/dev/null; rm -f \"$t\"; exit {EXIT_NO_GZIP}; }}; \
         gzip -dc > \"$t\" && printf '%s\\n' \"$t\""
    );
    let mut out = within(deadline, "uploading the agent", session.run(&gz, agent_bin::gzipped())).await??;
    if out.code == Some(EXIT_NO_GZIP) {
        let plain = format!("{start}; cat > \"$t\" && printf '%s\\n' \"$t\"");
        out = within(deadline, "uploading the agent", session.run(&plain, agent_bin::bytes())).await??;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let temp = stdout.trim();
    if out.code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(TransportError::Start(format!("agent upload failed: {}", stderr.trim())));
    }
    if !safe_word(temp) {
        return Err(TransportError::Start(format!(
            "agent upload: the host named the temporary file {temp:?}, which is not a plain absolute path; set TMPDIR for the login user to one"
        )));
    }
    Ok(temp.to_string())
}

/// As root: copy the upload at `temp` into [`AGENT_DIR`] and install it if
/// the copy has the right sha256; then, as the login user, remove `temp`.
pub async fn install_from(
    session: &drover_ssh::Session,
    user: &str,
    sudo_password: Option<&str>,
    temp: &str,
    deadline: Duration,
) -> Result<(), TransportError> {
    if !safe_word(temp) {
        return Err(TransportError::Start(format!("refusing to install the agent from {temp:?}")));
    }
    let cmd = format!("{}; rc=$?; rm -f '{temp}'; exit $rc", wrap_root(user, &install_script(), &[temp]));
    let stdin = sudo_password.map(|p| format!("{p}\n")).unwrap_or_default();
    let out = within(deadline, "installing the agent", session.run(&cmd, stdin.as_bytes())).await??;
    if out.code == Some(0) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(TransportError::Start(format!(
        "installing the agent in {AGENT_DIR} as root failed (exit {:?}): {stderr}{}",
        out.code,
        sudo_hint(&stderr)
    )))
}

/// What to do when sudo said no.
pub fn sudo_hint(stderr: &str) -> &'static str {
    if stderr.contains("incorrect password") || stderr.contains("a password is required") {
        " (sudo refused: check the host's password in the inventory)"
    } else {
        ""
    }
}

async fn within<T>(d: Duration, what: &str, f: impl std::future::Future<Output = T>) -> Result<T, TransportError> {
    tokio::time::timeout(d, f).await.map_err(|_| TransportError::Start(format!("{what} took longer than {d:?}")))
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
            assert!(serve.contains(agent_bin::sha256_hex()) && serve.contains(&agent_path()), "{serve}");
            assert_eq!(serve.matches('\'').count(), if user == "root" { 2 } else { 4 }, "{serve}");
        }
        assert!(!install_script().contains('\''));
    }
}
