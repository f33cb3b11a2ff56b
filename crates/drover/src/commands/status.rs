//! `drover status`: per host its state (converged, behind, drifted,
//! unhealthy, drained), generation, drift, services and last run.

use std::io::Write;
use std::sync::Arc;

use crate::exit::ExitStatus;
use crate::run::fleet::{runtime, Fleet};
use crate::run::status::{self, Currency, Verdict};
use crate::select::select;

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: super::day2::Target,
    /// Exit 0 when every host is converged (or drained), 2 when any is
    /// behind the project, drifted or unhealthy, 1 when any could not be
    /// reached or checked.
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(dir: &std::path::Path, a: StatusArgs) -> anyhow::Result<ExitStatus> {
    let t = a.target;
    let project = Arc::new(crate::store::load_project_unlocked(dir)?);
    let hosts = select(&project.hosts, t.hosts.as_deref())?;
    // The store first: an unreachable database stops here, before any host.
    let mut store = crate::store::open(dir)?;
    let fleet = Fleet::new(&project, t.simulate.as_deref())?;
    let rt = runtime()?;
    let results = rt.block_on(status::probe_against(&fleet, &hosts, project.clone()));
    // Other hosts' templates read these (`fleet.hosts[i].facts`).
    status::remember(&mut store, &results);
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for (host, res) in &results {
        let last = store.history(Some(host), 1)?.into_iter().next();
        let last = status::last_run(last.as_ref());
        let (verdict, mut row) = match res {
            Ok((s, _, currency)) => (Verdict::of(s, currency), status::row(host, &Ok(s.clone()), &last)),
            Err(e) => (Verdict::Unreachable, status::row(host, &Err(e.clone()), &last)),
        };
        row["state"] = serde_json::json!(verdict);
        if let Ok((_, _, Currency::Unknown(why))) = res {
            row["state_error"] = serde_json::json!(why);
        }
        verdicts.push(verdict);
        rows.push(row);
    }
    if t.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&results, &rows, &verdicts)?;
    }
    let worst = verdicts.iter().copied().min();
    Ok(match (a.exit_code, worst) {
        (true, Some(Verdict::Unreachable | Verdict::Unknown)) => ExitStatus::PlanFailed,
        (true, Some(Verdict::Unhealthy | Verdict::Drifted | Verdict::Behind)) => ExitStatus::ChangesPending,
        (true, _) => ExitStatus::Success,
        (false, Some(Verdict::Unreachable)) => ExitStatus::HostsFailed,
        (false, _) => ExitStatus::Success,
    })
}

type Results = [(String, Result<(drover_proto::HostStatus, drover_proto::Facts, Currency), String>)];

fn print_table(results: &Results, rows: &[serde_json::Value], verdicts: &[Verdict]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<11} {:>4}  {:<6}  {:<34}  {:<10}  LAST RUN",
        "HOST", "STATE", "GEN", "DRIFT", "SERVICES", "DRAINED"
    )?;
    for ((row, (host, res)), v) in rows.iter().zip(results).zip(verdicts) {
        let last = row["last_run"].as_str().unwrap_or("-");
        match res {
            Err(e) => writeln!(
                out,
                "{host:<16} {:<11} {:>4}  {:<6}  {:<34}  {:<10}  {last}  ERROR: {e}",
                v.as_str(),
                "-",
                "-",
                "-",
                "-"
            )?,
            Ok((s, _, currency)) => {
                let services: Vec<String> = s
                    .services
                    .iter()
                    .map(|sv| {
                        let health = match sv.healthy {
                            Some(true) => "+ok",
                            Some(false) => "+UNHEALTHY",
                            None => "",
                        };
                        format!("{}:{}{health}", sv.name, sv.state.word())
                    })
                    .collect();
                let gen = s.state.current.map_or("-".into(), |g| g.to_string());
                let drift = if s.drift.is_empty() { "none".to_string() } else { s.drift.len().to_string() };
                writeln!(
                    out,
                    "{host:<16} {:<11} {gen:>4}  {drift:<6}  {:<34}  {:<10}  {last}",
                    v.as_str(),
                    services.join(" "),
                    s.drained.as_deref().unwrap_or("no"),
                )?;
                for d in &s.drift {
                    writeln!(out, "{:<16}        drift: {d}", "")?;
                }
                // Why a service is not up, unless the host is drained (stopped on purpose).
                for sv in s.services.iter().filter(|sv| !sv.is_up() && s.drained.is_none()) {
                    writeln!(out, "{:<16}        {}: {}; {}", "", sv.name, sv.state, sv.detail)?;
                }
                if let Currency::Unknown(why) = currency {
                    writeln!(out, "{:<16}        cannot tell whether it is on the project: {why}", "")?;
                }
            }
        }
    }
    Ok(())
}
