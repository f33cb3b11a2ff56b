//! Running the tools the lab is built from (`ip`, `tc`, `ssh-keygen`,
//! `debootstrap`, …).
//!
//! Always argv vectors, never shell strings: host names and paths reach the
//! tools exactly as given. A failure carries the whole command line and the
//! tool's stderr, which is usually all a user needs to see.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::LabError;

/// Run `program args…`, return its stdout; fail with its stderr.
pub(crate) fn run<I, S>(program: &str, args: I) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_input(program, args, None)
}

/// Like [`run`], feeding `input` on stdin.
pub(crate) fn run_with_input<I, S>(program: &str, args: I, input: Option<&[u8]>) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    tracing::debug!(command = %render(&cmd), "run");
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn { program: program.to_string(), source })?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        // A tool that exits early closes its stdin; its exit status says why.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn { program: program.to_string(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: render(&cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip ARGS…`.
pub(crate) fn ip<I, S>(args: I) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run("ip", args)
}

/// A command line as a user would type it, for messages.
pub(crate) fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// True if the failure is the kernel saying the object is not there
/// (deleting something already deleted is success for cleanup).
pub(crate) fn is_not_found(err: &LabError) -> bool {
    match err {
        LabError::Command { stderr, .. } => {
            let s = stderr.to_ascii_lowercase();
            [
                "cannot find device",
                "no such file",
                "does not exist",
                "cannot delete qdisc with handle of zero",
                "no such device",
            ]
            .iter()
            .any(|m| s.contains(m))
        }
        _ => false,
    }
}
