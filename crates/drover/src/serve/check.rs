//! The check pass and continuous convergence (`--reconcile`).
//!
//! A pass loads the project and renders it for one host of each role set
//! (a template error or a runaway loop shows as a project error, the last
//! snapshot kept), probes every host as `drover status` does (read-only on
//! the host: generation, drift, services, health, and whether its
//! generation is what the project compiles for it now: `behind` if not),
//! then, under `reconcile = "heal"`, re-applies the hosts [`super::heal`]
//! picks (drifted, never applied, or behind, unless held by a rollback)
//! through the ordinary deploy pipeline — which takes the same host locks
//! as a CLI `apply`, skips drained hosts, and records the run. A pass never
//! waits on a busy store for longer than the store's busy timeout; on
//! failure the page keeps the last snapshot and shows the problem. The
//! pass runs on a runtime of its own ([`super::passes`]): however long it
//! takes, the server answers and stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use drover_proto::HostStatus;
use drover_spec::{Host, Project, ReconcilePolicy};
use drover_state::{HostResult, NewRun, Rollout};

use super::heal;
use super::shared::{Shared, Stage};
use super::snapshot::{self, Hold, RolloutView, Snapshot};
use crate::host::{HostReport, Mode};
use crate::progress::Progress;
use crate::run::fleet::Fleet;
use crate::run::status;
use crate::run::{Overrides, RunSpec};

/// What a pass was asked to do: only look (`reconcile: false`, the
/// dashboard's refresh), or look and record, healing under `heal`.
pub(crate) async fn pass(sh: &Arc<Shared>, reconcile: bool) {
    let started = Instant::now();
    let mut problems = Vec::new();
    let dir = sh.dir.clone();
    sh.set_stage(Stage::Rendering);
    let loaded = tokio::task::spawn_blocking(move || -> Result<Project, String> {
        let p = crate::store::load_project(&dir).map_err(|e| format!("{e:#}"))?;
        render_check(&p).map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        Ok(p)
    })
    .await;
    let project = match loaded {
        Ok(Ok(p)) => Arc::new(p),
        Ok(Err(e)) => return sh.project_broken(e),
        Err(e) => return sh.project_broken(e.to_string()),
    };
    sh.alerts.lock().unwrap_or_else(|e| e.into_inner()).set_rules(project.alerts.clone());
    let fleet = match Fleet::new(&project, sh.simulate.as_deref()) {
        Ok(f) => f,
        Err(e) => return sh.keep_last(format!("transport: {e:#}")),
    };
    sh.set_stage(Stage::Probing);
    let mut results = status::probe_against(&fleet, &project.hosts, project.clone()).await;
    // The facts go to the store, not into the snapshot: moved out, not
    // cloned with every host's status (a pass's peak memory).
    let facts: Vec<(String, drover_proto::Facts)> = results
        .iter_mut()
        .filter_map(|(h, r)| r.as_mut().ok().map(|(_, f, _)| (h.clone(), std::mem::take(f))))
        .collect();
    let heal = project.settings.reconcile == ReconcilePolicy::Heal;
    let maybe_held = if heal { heal::candidates(&results) } else { Vec::new() };
    let store_state = read_store(sh, facts, maybe_held).await;
    let store_ok = store_state.is_ok();
    let (mut lasts, rollout, holds) = match store_state {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("state store: {e}"));
            let old = sh.snapshot();
            let lasts = old.hosts.iter().filter_map(|h| Some((h.host.clone(), h.last.clone()?))).collect();
            let holds = old.hosts.iter().filter_map(|h| Some((h.host.clone(), h.held.clone()?))).collect();
            (lasts, None, holds)
        }
    };
    // Without the store, holds are unknown (and a heal could not be
    // recorded): no healing this pass.
    if reconcile && store_ok {
        let targets: Vec<Host> = if heal { heal::needs_heal(&project.hosts, &results, &holds) } else { Vec::new() };
        let busy = rollout.as_ref().filter(|r| r.status.is_unfinished());
        if !targets.is_empty() && busy.is_none() {
            // Show what was found before healing it (the page sees the
            // host drifted, then converged): a copy, only when healing.
            let view = (lasts.clone(), holds.clone());
            sh.publish(build(&project, results.clone(), view, rollout.as_ref(), problems.clone(), started));
            sh.set_stage(Stage::Healing);
        }
        let outcome = match busy {
            Some(r) if !targets.is_empty() => {
                Err(format!("heal skipped: rollout {} is {} (it converges its hosts itself)", r.id, r.status))
            }
            _ if targets.is_empty() => record_look(sh, if heal { "heal" } else { "report" }).await,
            _ => apply(sh, project.clone(), &fleet, targets.clone(), "reconcile", "heal", "drover serve")
                .await
                .map(|_| ()),
        };
        if let Err(e) = outcome {
            problems.push(e);
        } else if !targets.is_empty() {
            // Show the healed hosts as they are now, not as they were.
            let again: HashMap<_, _> =
                status::probe_against(&fleet, &targets, project.clone()).await.into_iter().collect();
            for (h, r) in results.iter_mut() {
                if let Some(n) = again.get(h) {
                    *r = n.clone();
                }
            }
            if let Ok((l, _, _)) = read_store(sh, Vec::new(), Vec::new()).await {
                lasts = l;
            }
        }
    }
    sh.publish(build(&project, results, (lasts, holds), rollout.as_ref(), problems, started));
    sh.set_stage(Stage::Idle);
    drop(project);
    // A pass allocates per host (replies, facts, JSON) and frees it all;
    // glibc keeps the freed pages, so between passes the server would hold
    // its peak. Hand them back: a resident server should cost what it keeps.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The project rendered for one host of each distinct role set, with
/// placeholder facts (as `apply` does before touching a host): a template
/// error or a runaway loop (bounded by `[limits] template-steps`) stops the
/// pass as a project error, the last snapshot kept, instead of making every
/// host `unknown`.
#[allow(clippy::result_large_err)] // see drover-spec: SpecError carries its source text
fn render_check(p: &Project) -> Result<(), drover_spec::SpecError> {
    let mut seen = std::collections::HashSet::new();
    let sample: Vec<Host> = p.hosts.iter().filter(|h| seen.insert(h.roles.clone())).cloned().collect();
    crate::run::spec::preflight(p, &sample)
}

/// The snapshot, moving each host's reply and last result into its view
/// (a copy of 10,000 replies would be the pass's peak memory).
fn build(
    project: &Project,
    results: Vec<status::Judged>,
    (mut lasts, mut holds): (HashMap<String, HostResult>, HashMap<String, Hold>),
    rollout: Option<&Rollout>,
    problems: Vec<String>,
    started: Instant,
) -> Snapshot {
    let mut probes: HashMap<String, Result<(HostStatus, drover_proto::Facts, status::Currency), String>> =
        results.into_iter().collect();
    let hosts = project
        .hosts
        .iter()
        .map(|h| {
            let probe = match probes.remove(&h.name) {
                Some(r) => r.map(|(s, _, c)| (s, c)),
                None => Err("not probed".into()),
            };
            snapshot::view(h, probe, lasts.remove(&h.name), holds.remove(&h.name))
        })
        .collect();
    Snapshot {
        at_ms: drover_state::now_ms(),
        pass: 0,
        hosts,
        rollout: rollout.map(RolloutView::of),
        problems,
        project_error: None,
        check_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

type StoreState = (HashMap<String, HostResult>, Option<Rollout>, HashMap<String, Hold>);

/// Each host's last result, the unfinished rollout, and the holds on
/// `maybe_held` ([`heal::holds`]), in short read transactions (WAL: a CLI
/// `apply` writing meanwhile is not blocked); the probe's facts are
/// remembered for templates, as `drover status` does.
async fn read_store(
    sh: &Arc<Shared>,
    facts: Vec<(String, drover_proto::Facts)>,
    maybe_held: Vec<String>,
) -> Result<StoreState, String> {
    let dir = sh.dir.clone();
    let metrics = sh.clone();
    tokio::task::spawn_blocking(move || -> Result<StoreState, String> {
        let mut store = crate::store::open(&dir).map_err(|e| format!("{e:#}"))?;
        for (host, f) in &facts {
            crate::store::remember_facts(&mut store, host, f);
        }
        drop(facts);
        let latest = store.latest_per_host().map_err(|e| e.to_string())?;
        let newest = latest.iter().map(|r| r.at_ms).max().unwrap_or(0);
        let since = metrics.counters.lock().unwrap_or_else(|e| e.into_inner()).since();
        let fresh = match since {
            Some(m) => store.results_since(m).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        metrics.counters.lock().unwrap_or_else(|e| e.into_inner()).observe(&fresh, newest);
        let holds = heal::holds(&store, &maybe_held, &latest).map_err(|e| e.to_string())?;
        // Without `detail` (each run's report: not shown, and the largest
        // part of a row), dropped here rather than held through the pass.
        let lasts = latest.into_iter().map(|r| (r.host.clone(), HostResult { detail: String::new(), ..r })).collect();
        let rollout = store.rollouts(1).map_err(|e| e.to_string())?.into_iter().next();
        Ok((lasts, rollout, holds))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A pass that changed nothing is still a recorded run: the history shows
/// the server looked, and when.
async fn record_look(sh: &Arc<Shared>, policy: &str) -> Result<(), String> {
    let dir = sh.dir.clone();
    let args = format!("reconcile={policy}");
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut store = crate::store::open(&dir)?;
        let id = store.begin_run(&NewRun {
            command: "reconcile".into(),
            args,
            user: "drover serve".into(),
            project_rev: crate::store::project_rev(&dir),
        })?;
        store.finish_run(id, drover_state::RunStatus::Ok)?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("recording the pass: {e:#}"))
}

/// Apply the project to `hosts` as a recorded run by `user` (drained hosts
/// left out; refused when another drover holds one of them).
pub(crate) async fn apply(
    sh: &Arc<Shared>,
    project: Arc<Project>,
    fleet: &Fleet,
    mut hosts: Vec<Host>,
    command: &'static str,
    args: &str,
    user: &str,
) -> Result<Vec<HostReport>, String> {
    let dir = sh.dir.clone();
    let drained = tokio::task::spawn_blocking(move || crate::store::drained(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
    hosts.retain(|h| !drained.iter().any(|(d, _)| *d == h.name));
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    // Rendering runs the project's templates: off the async threads (an
    // action from the page runs here on the server's runtime).
    let (p, h) = (project.clone(), hosts.clone());
    tokio::task::spawn_blocking(move || {
        crate::run::spec::preflight(&p, &h).map_err(|e| format!("{:?}", miette::Report::new(e)))
    })
    .await
    .map_err(|e| e.to_string())??;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let (dir, args, user) = (sh.dir.clone(), args.to_string(), user.to_string());
    let mut run =
        tokio::task::spawn_blocking(move || crate::run::record::Run::start_as(&dir, command, &args, &user, &names))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))?;
    // Healing never reboots a host, even one whose role's rollout policy
    // says `reboot = true`: an unattended reboot is an operator's decision
    // (`drover apply --reboot`). So no `.reboot(…)` here.
    let mut spec = RunSpec::of_project(project, fleet.transport.clone(), Mode::Apply, &Overrides::default());
    spec.job.activations = run.activations();
    let n = hosts.len();
    let reports = crate::run::schedule::sessions(&spec, hosts, Progress::new(n, false)).await;
    let ok = reports.iter().all(|r| !r.outcome.is_failure());
    let rec = reports.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        run.record_all(&rec)?;
        run.finish(ok)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("recording the run: {e:#}"))?;
    Ok(reports)
}

/// The last `lines` log lines of each of `services` on `host`, oldest first,
/// as `{service, at_ms, text}`.
pub(crate) async fn recent_logs(
    sh: &Arc<Shared>,
    host: String,
    services: Vec<String>,
    lines: u32,
) -> Result<Vec<serde_json::Value>, String> {
    let dir = sh.dir.clone();
    let project = tokio::task::spawn_blocking(move || drover_spec::Project::load(&dir).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())??;
    let h = project.hosts.iter().find(|h| h.name == host).cloned().ok_or_else(|| format!("no host `{host}`"))?;
    let fleet = Fleet::new(&project, sh.simulate.as_deref()).map_err(|e| format!("{e:#}"))?;
    let results = fleet
        .each(std::slice::from_ref(&h), move |h, mut c| {
            let services = services.clone();
            async move {
                let mut out = Vec::new();
                for service in services {
                    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
                    let req =
                        drover_proto::Request::Logs { service: service.clone(), lines, since_ms: None, follow: false };
                    let r = crate::run::fleet::stream_logs(&mut c, &req, false, &h.name, &tx).await;
                    drop(tx);
                    while let Some((_, batch)) = rx.recv().await {
                        out.extend(
                            batch
                                .into_iter()
                                .map(|l| serde_json::json!({"service": service, "at_ms": l.at_ms, "text": l.text})),
                        );
                    }
                    r?;
                }
                c.close().await;
                Ok(out)
            }
        })
        .await;
    results.into_iter().next().map(|(_, r)| r).unwrap_or_else(|| Err("no result".into()))
}
