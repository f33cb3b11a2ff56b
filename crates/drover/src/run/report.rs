//! What happened in a run, as a table for people and JSON for machines.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::host::{HostReport, Outcome};
use crate::human;
use crate::instances::InstanceChange;
use crate::phases::Phases;

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub command: String,
    pub hosts: Vec<HostReport>,
    pub duration_ms: u64,
    /// Every host's phases added up: where the fleet's time went.
    pub phases: Phases,
    /// `plan` only: service instances that would be added, removed or
    /// moved to another host (see [`instances_moved`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceChange>,
}

impl RunReport {
    pub fn failed(&self) -> usize {
        self.hosts.iter().filter(|h| h.outcome.is_failure()).count()
    }

    /// Hosts where `plan` found something to do.
    pub fn planned(&self) -> usize {
        self.hosts.iter().filter(|h| h.outcome == Outcome::Planned).count()
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self, with_changes: bool) -> String {
        let mut out = String::new();
        let w = self.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            out,
            "{:<w$}  {:<11}  {:>4}  {:>7}  {:>9}  {:<20}  DETAIL",
            "HOST", "RESULT", "GEN", "CHANGES", "SENT", "RESTARTED"
        );
        for h in &self.hosts {
            let gen = h.generation.map_or("-".to_string(), |g| g.to_string());
            let mut detail = h.error.clone().or_else(|| h.recovered.clone()).unwrap_or_default();
            if h.rebooted && detail.is_empty() {
                detail = "rebooted".into();
            }
            if let Some(last) = h.retried.last() {
                let sep = if detail.is_empty() { "" } else { "; " };
                let _ = write!(detail, "{sep}tried again after {last}");
            }
            for e in &h.revert_errors {
                let _ = write!(detail, "{}revert left a service down: {e}", if detail.is_empty() { "" } else { "; " });
            }
            let restarted = if h.restarts.is_empty() { "-".to_string() } else { restarts(h, ",") };
            let _ = writeln!(
                out,
                "{:<w$}  {:<11}  {:>4}  {:>7}  {:>9}  {:<20}  {}",
                h.host,
                h.outcome.as_str(),
                gen,
                h.changes.len(),
                human::bytes(h.bytes_sent),
                restarted,
                detail
            );
            for line in h.failure.iter().flat_map(crate::host::failure_lines) {
                let _ = writeln!(out, "{:<w$}    {line}", "");
            }
            if with_changes {
                for c in &h.changes {
                    let _ = writeln!(out, "{:<w$}    {} {}", "", c.kind.symbol(), c.path);
                }
                // Packages to install or remove, users and groups to create:
                // they change no path, so they are listed on their own.
                for s in &h.setup {
                    let _ = writeln!(out, "{:<w$}    * {s}", "");
                }
            }
        }
        let count = |o: Outcome| self.hosts.iter().filter(|h| h.outcome == o).count();
        let sent: u64 = self.hosts.iter().map(|h| h.bytes_sent).sum();
        let _ = writeln!(
            out,
            "\n{} hosts: {} changed, {} unchanged, {} planned, {} rolled back, {} failed, {} unreachable; {} sent in {:.1}s",
            self.hosts.len(),
            count(Outcome::Changed),
            count(Outcome::Unchanged),
            count(Outcome::Planned),
            count(Outcome::RolledBack),
            count(Outcome::Failed),
            count(Outcome::Unreachable),
            human::bytes(sent),
            self.duration_ms as f64 / 1000.0
        );
        out
    }
}

/// The diffs of every host, for people: per host, each changed path with its
/// attribute changes and content diff, the packages, users and groups it
/// would install, remove or create, then the services that would restart.
pub fn render_diffs(hosts: &[HostReport]) -> String {
    let mut out = String::new();
    for h in hosts {
        let Some(diffs) = &h.diffs else { continue };
        if diffs.is_empty() && h.restarts.is_empty() && h.setup.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n=== {}", h.host);
        for d in diffs {
            let _ = writeln!(out, "{} {}", d.kind.symbol(), d.path);
            let _ = writeln!(out, "    host:    {}", d.before);
            let _ = writeln!(out, "    project: {}", d.after);
            for a in &d.attributes {
                let _ = writeln!(out, "    {a}");
            }
            if let Some(n) = &d.content_note {
                let _ = writeln!(out, "    {n}");
            }
            if let Some(u) = &d.unified {
                for line in u.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        for s in &h.setup {
            let _ = writeln!(out, "* {s}");
        }
        if !h.restarts.is_empty() {
            let _ = writeln!(out, "services: {}", restarts(h, ", "));
        }
    }
    out
}

/// `plan`'s instance units that hosts would stop and start, as moves.
pub fn instances_moved(reports: &[HostReport], services: &BTreeSet<String>) -> Vec<InstanceChange> {
    crate::instances::from_restarts(reports.iter().map(|r| (r.host.as_str(), r.restarts.as_slice())), services)
}

fn restarts(h: &HostReport, sep: &str) -> String {
    h.restarts.iter().map(crate::host::restart_text).collect::<Vec<_>>().join(sep)
}
