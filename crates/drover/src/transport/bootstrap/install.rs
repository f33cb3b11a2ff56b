//! Putting the agent for a host's machine in place: upload it as the login
//! user, then copy, check and install it as root (see the [parent
//! module](super) for why each step is done the way it is).

use std::time::Duration;

use super::{path_of, safe_word, wrap_root, AGENT_DIR};
use crate::agent_bin::Agent;
use crate::transport::error::TransportError;

/// The install command's exit status when the root-owned copy of the upload
/// does not have the expected sha256.
const EXIT_COPY_MISMATCH: u32 = 99;

/// Copy the upload `$1` into the agent directory as root and install it
/// only if the copy has our sha256. The copy's name is unique per install
/// (`$$`), so two controllers installing at once never check each other's
/// half-written copy. Agents of other drover versions are removed once this
/// one is in place (a process still running one keeps its file open).
pub(super) fn install_script(agent: &Agent) -> String {
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
        path = path_of(agent),
        hex = agent.hash().to_hex(),
        sha = agent.sha256_hex(),
    )
}

/// Put `agent` (the one for the host's machine, as the serve command's
/// [`AgentCheck`] said) in place on a host: upload as the login user, then
/// install as root (see the module docs). `sudo_password` is the line
/// `sudo -S` reads; `deadline` bounds each step.
pub async fn install(
    session: &drover_ssh::Session,
    agent: &Agent,
    user: &str,
    sudo_password: Option<&str>,
    deadline: Duration,
) -> Result<(), TransportError> {
    let temp = upload(session, agent, deadline).await?;
    install_from(session, agent, user, sudo_password, &temp, deadline).await
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
pub async fn upload(
    session: &drover_ssh::Session,
    agent: &Agent,
    deadline: Duration,
) -> Result<String, TransportError> {
    let start = "umask 077; rm -f .cache/drover/agent-* 2>/dev/null; \
                 t=$(mktemp \"${TMPDIR:-/tmp}/drover-agent.XXXXXXXXXX\") || { cat >/dev/null; exit 1; }";
    let gz = format!(
        "{start}; command -v gzip >/dev/null 2>&1 || {{ cat >/dev/null; rm -f \"$t\"; exit {EXIT_NO_GZIP}; }}; \
         gzip -dc > \"$t\" && printf '%s\\n' \"$t\""
    );
    let mut out = within(deadline, "uploading the agent", session.run(&gz, agent.gzipped())).await??;
    if out.code == Some(EXIT_NO_GZIP) {
        let plain = format!("{start}; cat > \"$t\" && printf '%s\\n' \"$t\"");
        out = within(deadline, "uploading the agent", session.run(&plain, agent.bytes())).await??;
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
/// the copy has `agent`'s sha256; then, as the login user, remove `temp`.
pub async fn install_from(
    session: &drover_ssh::Session,
    agent: &Agent,
    user: &str,
    sudo_password: Option<&str>,
    temp: &str,
    deadline: Duration,
) -> Result<(), TransportError> {
    if !safe_word(temp) {
        return Err(TransportError::Start(format!("refusing to install the agent from {temp:?}")));
    }
    let cmd = format!("{}; rc=$?; rm -f '{temp}'; exit $rc", wrap_root(user, &install_script(agent), &[temp]));
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
