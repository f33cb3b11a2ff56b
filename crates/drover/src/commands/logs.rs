//! `drover logs SERVICE`: a service's log lines from many hosts, each line
//! prefixed by host and timestamp. Lines travel whole (the agent sends only
//! complete lines) and one printer writes them, so no two hosts' lines are
//! ever interleaved mid-line. Only the hosts that run the service are asked
//! (an unknown name is refused before any is contacted). Without
//! `--follow`, lines from all hosts are merged in time order, each host's in
//! the order it wrote them (see `crate::run::logs`).

use std::io::Write;
use std::path::PathBuf;

use drover_proto::Request;
use tokio::sync::mpsc;

use crate::exit::ExitStatus;
use crate::human::iso;
use crate::run::fleet::{runtime, Fleet};
use crate::run::logs;
use crate::select::select;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The service (as named in services/).
    pub service: String,
    /// Only these hosts: host, group or role names, comma-separated.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines newer than this (e.g. 10m, 2h).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many lines per host from the past.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub lines: u32,
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
}

pub fn run(dir: &std::path::Path, a: LogsArgs) -> anyhow::Result<ExitStatus> {
    // Hosts check the name too; refusing it here names the mistake before
    // any host is contacted.
    drover_proto::check_name(&a.service).map_err(anyhow::Error::msg)?;
    let project = crate::store::load_project_unlocked(dir)?;
    let selected = select(&project.hosts, a.hosts.as_deref())?;
    let targets = logs::targets(&project, &selected, &a.service)?;
    let fleet = Fleet::new(&project, a.simulate.as_deref())?;
    let since_ms = match &a.since {
        Some(s) => {
            let d = drover_spec::parse_duration(s).map_err(anyhow::Error::msg)?;
            Some(
                u64::try_from(drover_state::now_ms())
                    .unwrap_or(0)
                    .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(0)),
            )
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<logs::Batch>(1024);
    let req = Request::Logs { service: a.service.clone(), lines: a.lines, since_ms, follow: a.follow };
    let follow = a.follow;
    let rt = runtime()?;
    let failed = rt.block_on(async move {
        let fetch = logs::fetch(&fleet, targets, req, follow, tx);
        // The printer runs beside the fetches, not after them: a follow's
        // fetches never end, and its lines must appear as they come.
        let printer = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some((label, lines)) = rx.recv().await {
                if follow {
                    let mut out = std::io::stdout().lock();
                    for l in lines {
                        let _ = writeln!(out, "{label}  {}  {}", when(l.at_ms), l.text);
                    }
                } else {
                    all.push((label, lines));
                }
            }
            let mut out = std::io::stdout().lock();
            for (label, l) in logs::merge(all) {
                let _ = writeln!(out, "{label}  {}  {}", when(l.at_ms), l.text);
            }
        });
        let results = tokio::select! {
            r = fetch => r,
            _ = tokio::signal::ctrl_c() => return 0,
        };
        // Every sender is gone with the fetches, so the printer finishes.
        let _ = printer.await;
        let mut failed = 0;
        for (h, r) in results {
            if let Err(e) = r {
                failed += 1;
                eprintln!("{h}: {e}");
            }
        }
        failed
    });
    Ok(if failed > 0 { ExitStatus::HostsFailed } else { ExitStatus::Success })
}

/// A line's time, or `-` where the host's log has none (OpenRC's
/// supervise-daemon writes lines as the service prints them): never a
/// made-up 1970 date.
fn when(at_ms: u64) -> String {
    if at_ms == 0 {
        format!("{:<24}", "-")
    } else {
        iso(at_ms)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_without_a_time_shows_a_dash_in_the_time_column() {
        assert_eq!(super::when(0), format!("{:<24}", "-"));
        assert_eq!(super::when(0).len(), super::when(1_795_374_600_123).len());
        assert_eq!(super::when(1_795_374_600_123), "2026-11-22T19:10:00.123Z");
    }
}
