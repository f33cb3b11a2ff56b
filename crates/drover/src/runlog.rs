//! Recording runs in the project's state store (`.drover/state.db`, or the
//! PostgreSQL database of `[state] url` / `DROVER_STATE_URL`): who ran
//! what, when, against which project revision; per-host results; host locks
//! so two controllers never work the same hosts at once.

use std::path::Path;

use drover_state::{HostLock, HostResult, Location, NewRun, StateError, Store};

use crate::exit::Refused;
use crate::report::HostReport;

/// Where this project's state lives (`DROVER_STATE_URL` wins over
/// `[state] url`, which wins over `.drover/state.db`).
pub fn location(project_dir: &Path) -> anyhow::Result<Location> {
    let settings = drover_spec::state::settings(project_dir)?;
    Ok(Location::resolve(project_dir, settings.url.as_deref())?)
}

/// Open the project's store. A PostgreSQL server that cannot be reached
/// fails here, before any host is contacted, naming the URL without its
/// password.
pub fn open(project_dir: &Path) -> anyhow::Result<Store> {
    let settings = drover_spec::state::settings(project_dir)?;
    let loc = Location::resolve(project_dir, settings.url.as_deref())?;
    let mut store = Store::open_location(&loc)?;
    if let Some(lease) = settings.lock_lease {
        store.set_lock_lease(lease);
    }
    Ok(store)
}

/// The project, with the fact cache its templates read other hosts' facts
/// from (`fleet.hosts[i].facts`): a snapshot taken now, so every host of
/// this run is compiled against the same fleet. A cached entry that no
/// longer parses (an older drover's facts) counts as not cached.
pub fn load_project(project_dir: &Path) -> anyhow::Result<drover_spec::Project> {
    let mut project = load_project_unlocked(project_dir)?;
    crate::packages::ensure_lock(&mut project)?;
    Ok(project)
}

/// [`load_project`] without writing a missing `packages.lock`.
pub fn load_project_unlocked(project_dir: &Path) -> anyhow::Result<drover_spec::Project> {
    let mut project = drover_spec::Project::load(project_dir)?;
    // A SQLite file is not created just to read facts from it; a database
    // server is always asked (and an unreachable one stops the run here).
    let loc = location(project_dir)?;
    if !matches!(&loc, Location::Sqlite(db) if !db.exists()) {
        let facts = open(project_dir)?
            .all_facts()?
            .into_iter()
            .filter_map(|(host, json)| Some((host, serde_json::from_str(&json).ok()?)))
            .collect();
        project.set_fact_cache(facts);
    }
    Ok(project)
}

/// Remember the facts a host reported (only when they changed), for other
/// hosts' templates (see [`load_project`]).
pub fn remember_facts(store: &mut Store, host: &str, facts: &drover_proto::Facts) {
    let Ok(json) = serde_json::to_string(facts) else { return };
    if store.facts(host).ok().flatten().as_deref() != Some(json.as_str()) {
        let _ = store.save_facts(host, &json);
    }
}

/// The operator, as far as we can tell (sudo keeps the real one in SUDO_USER).
pub fn user() -> String {
    if let Some(u) =
        ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    {
        return u;
    }
    // No environment (cron, CI): the name of our uid, from /etc/passwd.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The project's revision for the audit log: the git commit (with `-dirty`
/// for local changes) when the project is in git, else `tree:` and the hash
/// of its files (see [`crate::revision`]).
pub fn project_rev(dir: &Path) -> String {
    let r = crate::revision::Revision::of(dir);
    r.git.unwrap_or_else(|| format!("tree:{}", r.inputs))
}

pub struct Run {
    pub store: Store,
    pub id: i64,
    lock: Option<HostLock>,
}

/// The state store went away mid-run. Exit 2: hosts may have changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{who} lost the state store mid-run ({reason}). No more hosts were taken on; {in_flight}. Once the database is back, run the same command again: hosts that converged are found unchanged, the others are applied"
)]
pub struct StoreLost {
    /// "run 12", "worker host:pid".
    pub who: String,
    pub reason: String,
    /// What became of the hosts already started.
    pub in_flight: String,
}

impl Run {
    /// Whether the run's host locks still hold (see [`drover_state::LeaseWatch`]).
    pub fn watch(&self) -> drover_state::LeaseWatch {
        self.lock.as_ref().map(HostLock::watch).unwrap_or_default()
    }

    /// Record the run and lock its hosts; refused (exit 3) if another drover
    /// holds any of them.
    pub fn start(project_dir: &Path, command: &str, hosts: &[String]) -> anyhow::Result<Run> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Run::start_as(project_dir, command, &args.join(" "), &user(), hosts)
    }

    /// [`Run::start`] on someone else's behalf: `drover serve` records the
    /// token's name as the user and what was asked as the arguments.
    pub fn start_as(
        project_dir: &Path,
        command: &str,
        args: &str,
        user: &str,
        hosts: &[String],
    ) -> anyhow::Result<Run> {
        let mut store = open(project_dir)?;
        let id = store.begin_run(&NewRun {
            command: command.into(),
            args: args.into(),
            user: user.into(),
            project_rev: project_rev(project_dir),
        })?;
        match store.lock_hosts(id, hosts) {
            Ok(lock) => Ok(Run { store, id, lock: Some(lock) }),
            Err(StateError::Locked(h)) => {
                let msg = StateError::Locked(h).to_string();
                store.finish_run(id, drover_state::RunStatus::Refused)?;
                Err(Refused(msg).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn record(&mut self, r: &HostReport) -> anyhow::Result<()> {
        self.record_all(std::slice::from_ref(r))
    }

    /// Every host's result in one transaction.
    pub fn record_all(&mut self, reports: &[HostReport]) -> anyhow::Result<()> {
        let rows = reports.iter().map(|r| host_result(self.id, r)).collect::<anyhow::Result<Vec<_>>>()?;
        self.store.record_hosts(&rows)?;
        Ok(())
    }

    pub fn finish(mut self, ok: bool) -> anyhow::Result<()> {
        if let Some(l) = self.lock.take() {
            self.store.unlock_hosts(l)?;
        }
        self.store
            .finish_run(self.id, if ok { drover_state::RunStatus::Ok } else { drover_state::RunStatus::Failed })?;
        Ok(())
    }
}

/// A host's report as the store records it in run `run_id`.
pub fn host_result(run_id: i64, r: &HostReport) -> anyhow::Result<HostResult> {
    Ok(HostResult {
        run_id,
        host: r.host.clone(),
        outcome: r.outcome,
        generation: r.generation.and_then(|g| i64::try_from(g).ok()),
        changes: r.changes.len() as i64,
        bytes_sent: i64::try_from(r.bytes_sent).unwrap_or(i64::MAX),
        files_written: i64::try_from(r.files_written).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
        error: r.error.clone(),
        detail: serde_json::to_string(r)?,
        at_ms: drover_state::now_ms(),
    })
}

/// Hosts marked drained in the store, with their reasons.
pub fn drained(project_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    Ok(open(project_dir)?.drained()?.into_iter().map(|(h, _, r)| (h, r)).collect())
}
