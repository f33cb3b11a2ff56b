//! Day-2 commands: `history`, `exec`, `drain`, `undrain` (`status` has its
//! own module).

use std::io::Write;
use std::path::PathBuf;

use drover_spec::Project;

use crate::exit::ExitStatus;
use crate::run::fleet::{runtime, Fleet};
use crate::run::status;
use crate::select::select;

/// Options shared by commands that talk to hosts.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Only these hosts: host, group or role names, comma-separated.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Simulated transport (see `drover apply --simulate`).
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only this host.
    pub host: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Include `drover plan` runs (left out by default: a plan changes
    /// nothing; its rows show COMMAND `plan`, outcome `planned`).
    #[arg(long)]
    pub plans: bool,
    /// Every row as JSON, errors whole (the table shows their first line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Host, group or role names (comma-separated), or `all`.
    pub target: String,
    /// Give up on a host's command after this long.
    #[arg(long, default_value = "60s")]
    pub timeout: String,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
    /// Only the hosts running this service (or instance); for a service run
    /// from an image, the command runs inside its container (`runc exec`,
    /// as the container's user), its words split like a shell's if one.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The command, run as root on each host: one argument is a shell
    /// command line (`-- 'uptime; df -h'`); several are an argv, each quoted
    /// for the remote /bin/sh (`-- grep -c "127.0.0.1 localhost" /etc/hosts`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Host, group or role names, comma-separated.
    pub target: String,
    /// Why (shown by `drover status`).
    #[arg(long, default_value = "drained by operator")]
    pub reason: String,
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
}

fn target_hosts(project: &Project, sel: &str) -> anyhow::Result<Vec<drover_spec::Host>> {
    Ok(select(&project.hosts, if sel == "all" { None } else { Some(sel) })?)
}

pub fn history(dir: &std::path::Path, a: HistoryArgs) -> anyhow::Result<ExitStatus> {
    let store = crate::store::open(dir)?;
    let rows = status::history(&store, a.host.as_deref(), a.limit, a.plans)?;
    if a.json {
        let v: Vec<_> = rows.iter().map(|(r, run)| status::history_row(r, run.as_ref())).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:>5}  {:<16} {:<14} {:<12} {:>4} {:>7}  {:<10} {:<18} {:<10}  ERROR",
        "RUN", "HOST", "COMMAND", "OUTCOME", "GEN", "CHANGES", "WHEN", "REVISION", "BY"
    );
    for (r, run) in rows {
        println!(
            "{:>5}  {:<16} {:<14} {:<12} {:>4} {:>7}  {:<10} {:<18} {:<10}  {}",
            r.run_id,
            r.host,
            run.as_ref().map_or("-", |x| x.command.as_str()),
            r.outcome,
            r.generation.map_or("-".into(), |g| g.to_string()),
            r.changes,
            status::ago(r.at_ms),
            run.as_ref().map_or("", |x| x.project_rev.as_str()),
            run.as_ref().map_or("", |x| x.user.as_str()),
            status::history_error(&r, run.as_ref())
        );
    }
    Ok(ExitStatus::Success)
}

pub fn exec(dir: &std::path::Path, a: ExecArgs) -> anyhow::Result<ExitStatus> {
    let project = crate::store::load_project_unlocked(dir)?;
    let hosts = target_hosts(&project, &a.target)?;
    let fleet = Fleet::new(&project, a.simulate.as_deref())?;
    let timeout = drover_spec::parse_duration(&a.timeout).map_err(anyhow::Error::msg)?;
    let command = shell_line(&a.command)?;
    let (hosts, commands) = match &a.service {
        None => {
            let all = hosts.iter().map(|h| (h.name.clone(), command.clone())).collect();
            (hosts, all)
        }
        Some(s) => crate::run::container::exec_commands(&project, &hosts, s, &a.command, &command)?,
    };
    let args = match &a.service {
        Some(s) => format!("--service {s} -- {command}"),
        None => command.clone(),
    };
    audit(dir, "exec", &args)?;
    let rt = runtime()?;
    let results = rt.block_on(fleet.exec_each(&hosts, commands, timeout));
    let mut ok = 0;
    if a.json {
        let v: Vec<_> = results
            .iter()
            .map(|(h, r)| match r {
                Ok(x) => serde_json::json!({"host": h, "code": x.code, "stdout": String::from_utf8_lossy(&x.stdout), "stderr": String::from_utf8_lossy(&x.stderr), "timed_out": x.timed_out}),
                Err(e) => serde_json::json!({"host": h, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let mut out = std::io::stdout().lock();
    let mut codes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (h, r) in &results {
        let label = match r {
            Ok(x) if x.code == Some(0) => {
                ok += 1;
                "exit 0".to_string()
            }
            Ok(x) if x.timed_out => "timed out".into(),
            Ok(x) => x.code.map_or_else(|| "killed".into(), |c| format!("exit {c}")),
            Err(_) => "unreachable".into(),
        };
        codes.entry(label.clone()).or_default().push(h.clone());
        if a.json {
            continue;
        }
        writeln!(out, "=== {h} ({label})")?;
        match r {
            Ok(x) => {
                out.write_all(&x.stdout)?;
                if !x.stderr.is_empty() {
                    writeln!(out, "--- stderr")?;
                    out.write_all(&x.stderr)?;
                }
            }
            Err(e) => writeln!(out, "error: {e}")?,
        }
    }
    let summary: Vec<String> = codes.iter().map(|(k, v)| format!("{k}: {} ({})", v.len(), v.join(","))).collect();
    eprintln!("{} hosts: {}", results.len(), summary.join("; "));
    Ok(if ok == results.len() { ExitStatus::Success } else { ExitStatus::HostsFailed })
}

pub(crate) fn audit(dir: &std::path::Path, command: &str, args: &str) -> anyhow::Result<()> {
    let mut store = crate::store::open(dir)?;
    store.audit(&drover_state::AuditEntry {
        at_ms: drover_state::now_ms(),
        user: crate::store::user(),
        command: command.into(),
        args: args.into(),
        project_rev: crate::store::project_rev(dir),
        run_id: None,
    })?;
    Ok(())
}

pub fn drain(dir: &std::path::Path, a: DrainArgs, on: bool) -> anyhow::Result<ExitStatus> {
    let project = Project::load(dir)?;
    let hosts = target_hosts(&project, &a.target)?;
    let fleet = Fleet::new(&project, a.simulate.as_deref())?;
    // A drain's reason goes to the audit log with it (as the dashboard's does).
    let args = match on {
        true => format!("{} --reason {}", a.target, shlex::try_quote(&a.reason)?),
        false => a.target.clone(),
    };
    audit(dir, if on { "drain" } else { "undrain" }, &args)?;
    let rt = runtime()?;
    let results = rt.block_on(crate::run::fleet::drain(dir, &fleet, &hosts, on, &a.reason))?;
    let mut failed = 0;
    for (h, r) in results {
        match r {
            Ok(services) => {
                let verb = if on { "drained; stopped" } else { "undrained; started" };
                println!(
                    "{h}: {verb} {}",
                    if services.is_empty() { "no services".into() } else { services.join(", ") }
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{h}: {e}");
            }
        }
    }
    Ok(if failed > 0 { ExitStatus::HostsFailed } else { ExitStatus::Success })
}

/// What `/bin/sh -c` runs on the host for `exec`'s arguments: a single
/// argument as written (a command line), several as an argv with each
/// quoted, so `sh -c 'echo a b'` and `echo 'c;d'` mean on the host what
/// they meant here.
fn shell_line(argv: &[String]) -> anyhow::Result<String> {
    match argv {
        [one] => Ok(one.clone()),
        many => shlex::try_join(many.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("cannot quote the command for the remote shell: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::shell_line;

    fn sh(line: &str) -> String {
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(line).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn several_arguments_reach_the_remote_shell_as_the_same_argv() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(sh(&shell_line(&argv(&["sh", "-c", "echo a b"])).unwrap()), "a b\n");
        assert_eq!(sh(&shell_line(&argv(&["echo", "c;d"])).unwrap()), "c;d\n");
        assert_eq!(
            sh(&shell_line(&argv(&["printf", "%s|", "it's", "$HOME", "`id`", "a\"b"])).unwrap()),
            "it's|$HOME|`id`|a\"b|"
        );
        // One argument is a command line, as documented.
        assert_eq!(sh(&shell_line(&argv(&["echo x; echo y"])).unwrap()), "x\ny\n");
    }
}
