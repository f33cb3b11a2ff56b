//! The switch to a prepared generation and its undo: services stopped,
//! the journaled transition, services (re)started and health-checked, then
//! either a pending confirmation (with the [`super::watchdog`] armed) or a
//! revert to exactly what was there before.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::time::{Duration, Instant};

use drover_proto::{
    ApplyOutcome, FailureCause, Manifest, ServiceAction, ServiceFailure, ServiceRestart, ServiceSpec, ServiceStatus,
    ServiceTimes,
};

use super::{watchdog, Engine};
use crate::diff::{self, Candidate};
use crate::pathstate::{Found, PathState};
use crate::safefs::{Root, Walker};
use crate::space::Needs;
use crate::state::{self, load_manifest, now_ms, read_json, write_json, Pending, Phase, StateFile};
use crate::transition::{self, gen_name, Done};
use crate::{bail, gc, hooks, services, Context, Result};
use drover_proto::StorageLeft;

impl Engine {
    pub(super) fn activate(
        &mut self,
        next: StateFile,
        cand: Candidate,
        confirm_ms: u64,
        stop_first: bool,
        progress: &mut dyn FnMut(String),
    ) -> Result<ApplyOutcome> {
        let generation = cand.generation;
        let old = self.current_manifest()?;
        let managed = match &old {
            Some(m) => diff::resolve(m, &self.accounts).unwrap_or_default(),
            None => HashMap::new(),
        };
        let changed: BTreeSet<String> = cand.changes.iter().map(|c| c.path.clone()).collect();
        let manifests: Vec<&Manifest> = old.iter().chain(std::iter::once(&cand.manifest)).collect();
        // Dropped services always stop before the swap; with stop-first,
        // services about to restart stop then too.
        let stops: Vec<ServiceRestart> = cand
            .restarts
            .iter()
            .filter(|r| r.action == ServiceAction::Stop || (stop_first && r.action == ServiceAction::Restart))
            .map(|r| ServiceRestart { name: r.name.clone(), action: ServiceAction::Stop })
            .collect();
        // Everything must fit before anything is stopped or written.
        let from = self.state.current;
        let prepared =
            transition::prepare(&self.layout, &self.state, from, Some(generation), cand.wants.clone(), &managed)?;
        hooks::point(&self.layout, "after-check");
        services::perform(self.env, &self.layout, &stops, &[ServiceAction::Stop], &manifests, &changed)?;
        progress(format!("activating generation {generation}: {} paths", cand.changes.len()));
        let mut st = next;
        // Before the commit: from the moment the new generation is current
        // until it has proved healthy, a record says so (the transition's seq
        // ties it to this commit; if the commit never happens it is stale).
        let starting =
            Pending { generation, deadline_ms: 0, seq: self.state.seq + 1, phase: Phase::Starting, reboot: None };
        let mut holds = super::order::Holds::new(&self.layout, &cand.restarts, &cand.manifest);
        let done = write_json(&self.layout.pending(), &starting)
            .map_err(|e| e.settle(StorageLeft::Untouched, from, &Needs::default()))
            .and_then(|()| transition::run(&self.layout, &mut st, prepared));
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(self.layout.pending());
                self.state = StateFile::load(&self.layout)?;
                // Put stopped services back: the files are as before.
                let failed = self.put_back(&invert(&stops), &[ServiceAction::Start], &manifests, &changed);
                if !failed.is_empty() {
                    let mut e = e;
                    e.0 = format!(
                        "{e}; and services stopped before it could not be started again: {}",
                        failed.join("; ")
                    );
                    return Err(e);
                }
                return Err(e);
            }
        };
        self.state = st;
        self.record_stats(&done);
        // Timed only when a service is (re)started, so "0" means "none was".
        let timed = cand.restarts.iter().any(|r| r.action != ServiceAction::Stop);
        let micros = |d: Duration| if timed { u64::try_from(d.as_micros()).unwrap_or(u64::MAX) } else { 0 };
        let clock = Instant::now();
        let started = self.start_services(&cand.restarts, &manifests, &changed, &mut holds);
        drop(holds);
        let mut times = ServiceTimes { restart_us: micros(clock.elapsed()), health_us: 0 };
        hooks::point(&self.layout, "before-health");
        let clock = Instant::now();
        let healthy = started.and_then(|()| self.gate(old.as_ref(), &cand.manifest, &cand.restarts));
        times.health_us = micros(clock.elapsed());
        if let Err(failure) = healthy {
            let reason = failure.to_string();
            progress(format!("generation {generation} unhealthy ({reason}); reverting"));
            let (_, revert_errors) = self.revert_last(&reason)?;
            let failure = Some(failure);
            return Ok(ApplyOutcome::RolledBack {
                failed: generation,
                to: from,
                reason,
                revert_errors,
                times,
                failure,
            });
        }
        if confirm_ms > 0 {
            let p = Pending {
                generation,
                deadline_ms: now_ms() + confirm_ms,
                seq: self.state.seq,
                phase: Phase::AwaitingConfirm,
                reboot: None,
            };
            if let Err(e) = write_json(&self.layout.pending(), &p) {
                // Without the marker nothing would revert it unconfirmed:
                // undo it now.
                let left = match self.revert_last(&format!("could not record the pending confirmation: {e}")) {
                    Ok(_) => StorageLeft::RolledBack,
                    Err(_) => StorageLeft::Unfinished,
                };
                return Err(e.settle(left, from, &Needs::default()));
            }
            watchdog::spawn(&self.layout, self.env)?;
            hooks::point(&self.layout, "awaiting-confirm");
        } else {
            fs::remove_file(self.layout.pending()).ctx(|| "remove activation marker".into())?;
        }
        // Cleaning up is not activating: a filesystem that refuses it now
        // is cleaned after the next activation.
        let _ = gc::collect(&self.layout, &mut self.state);
        let restarted = cand
            .restarts
            .iter()
            .filter(|r| r.action != ServiceAction::Stop)
            .map(|r| if r.action == ServiceAction::Reload { format!("{}:reload", r.name) } else { r.name.clone() })
            .collect();
        let files_written = done.ops.iter().filter(|o| !o.implicit).count() as u64;
        Ok(ApplyOutcome::Activated { generation, restarted, files_written, times })
    }

    /// Start, restart and reload what the change asks, one service at a
    /// time (systemd re-reads its units first, once): a service the
    /// supervisor cannot start is a failure with its state and log.
    fn start_services(
        &self,
        restarts: &[ServiceRestart],
        manifests: &[&Manifest],
        changed: &BTreeSet<String>,
        holds: &mut super::order::Holds,
    ) -> Result<(), Box<ServiceFailure>> {
        let kinds = [ServiceAction::Start, ServiceAction::Restart, ServiceAction::Reload];
        let control = |name: &str, action, error: String| {
            let spec = manifests.iter().rev().flat_map(|m| m.services.iter()).find(|s| s.name == name);
            let sup = spec.map(|s| self.env.supervisor(&self.layout, s.supervisor));
            Box::new(ServiceFailure {
                service: name.to_string(),
                cause: FailureCause::Control { action, error },
                state: sup.as_ref().map_or_else(|| ServiceStatus::unknown(name), |s| s.status(name)),
                log: sup.map(|s| s.log_tail(name)).unwrap_or_default(),
            })
        };
        services::perform(self.env, &self.layout, &[], &kinds, manifests, changed)
            .map_err(|e| control("(daemon-reload)", ServiceAction::Restart, e.0))?;
        // In start order: a service waits for the ones it comes after
        // (`after`) that this apply acted on to pass their gate first.
        let acting: Vec<&ServiceRestart> = restarts.iter().filter(|r| kinds.contains(&r.action)).collect();
        let new = manifests.last().copied();
        let order = new.map_or_else(|| acting.clone(), |m| super::order::ordered(&acting, m));
        let mut gated = BTreeSet::new();
        for (i, r) in order.iter().enumerate() {
            for dep in new.map(|m| super::order::waits_for(&r.name, &order[..i], m)).unwrap_or_default() {
                let Some(spec) = new.and_then(|m| m.services.iter().find(|s| s.name == dep)) else { continue };
                if gated.insert(dep.to_string()) {
                    let sup = self.env.supervisor(&self.layout, spec.supervisor);
                    crate::gate::run(&*sup, &spec.name, spec.health.as_ref())?;
                }
            }
            holds.release(&r.name);
            services::perform(self.env, &self.layout, std::slice::from_ref(*r), &kinds, manifests, &BTreeSet::new())
                .map_err(|e| control(&r.name, r.action, e.0))?;
        }
        Ok(())
    }

    /// The health gate ([`crate::gate`]) of every service the change
    /// started, restarted or reloaded, and of every service whose health
    /// check changed (a new check is proved before the generation is kept,
    /// though nothing restarts for it).
    fn gate(
        &self,
        old: Option<&Manifest>,
        m: &Manifest,
        restarts: &[ServiceRestart],
    ) -> Result<(), Box<ServiceFailure>> {
        let acted = |name: &str| restarts.iter().any(|r| r.name == name && r.action != ServiceAction::Stop);
        let check_changed = |spec: &ServiceSpec| {
            spec.health.is_some()
                && old
                    .and_then(|o| o.services.iter().find(|s| s.name == spec.name))
                    .is_some_and(|o| o.health != spec.health)
        };
        for spec in m.services.iter().filter(|s| acted(&s.name) || check_changed(s)) {
            let sup = self.env.supervisor(&self.layout, spec.supervisor);
            crate::gate::run(&*sup, &spec.name, spec.health.as_ref())?;
        }
        Ok(())
    }

    /// Remember stat identities of what we just wrote: the next check hashes
    /// nothing that has not changed since. A cache: if it cannot be written
    /// (a full disk), the next check hashes more, nothing is wrong.
    fn record_stats(&self, done: &Done) {
        let mut cache = state::load_statcache(&self.layout);
        let Ok(root) = Root::open(self.layout.root()) else { return };
        let mut w = Walker::new(&root);
        for op in &done.ops {
            cache.remove(&op.path);
            if let PathState::File { content: hash, .. } = op.want {
                if let Ok(Found::File { content: id, .. }) = w.look(&op.path) {
                    cache.insert(op.path.clone(), (id, hash));
                }
            }
        }
        let _ = write_json(&self.layout.statcache(), &cache);
    }

    /// Drive each service on its own, so one that fails does not keep the
    /// others from being put back; the errors, one per failed service.
    fn put_back(
        &self,
        actions: &[ServiceRestart],
        kinds: &[ServiceAction],
        manifests: &[&Manifest],
        changed: &BTreeSet<String>,
    ) -> Vec<String> {
        actions
            .iter()
            .filter(|a| kinds.contains(&a.action))
            .filter_map(|a| {
                let one = std::slice::from_ref(a);
                services::perform(self.env, &self.layout, one, kinds, manifests, changed).err().map(|e| e.0)
            })
            .collect()
    }

    /// Undo the last committed transition: back to exactly what was there
    /// before it, unmanaged files included. Returns what was done, and the
    /// services that could not be stopped or started again: the revert goes
    /// on without them (the files matter most), and they are reported.
    fn revert_last(&mut self, reason: &str) -> Result<(String, Vec<String>)> {
        let Some(undo) = transition::last_undo(&self.layout, &self.state)? else {
            bail!("cannot revert: no record of the last change ({reason})");
        };
        let failed = self.state.current;
        let cur = self.current_manifest()?;
        let back = undo.from.map(|g| load_manifest(&self.layout, g)).transpose()?;
        let changed: BTreeSet<String> = undo.ops.iter().map(|o| o.path.clone()).collect();
        let empty = Manifest::default();
        let restarts = services::plan(cur.as_ref(), back.as_ref().unwrap_or(&empty), &changed);
        let manifests: Vec<&Manifest> = cur.iter().chain(back.iter()).collect();
        let mut errors = self.put_back(&restarts, &[ServiceAction::Stop], &manifests, &changed);
        let mut st = self.state.clone();
        if let Some(f) = failed {
            st.failed.push(f);
            st.kept.retain(|k| *k != f);
        }
        let done = transition::undo(&self.layout, &mut st, &undo)?;
        self.state = st;
        self.record_stats(&done);
        let _ = fs::remove_file(self.layout.pending());
        let kinds = [ServiceAction::Start, ServiceAction::Restart, ServiceAction::Reload];
        errors.extend(self.put_back(&restarts, &kinds, &manifests, &changed));
        Ok((format!("generation {} reverted to {} ({reason})", gen_name(failed), gen_name(undo.from)), errors))
    }

    /// Revert the pending generation if it is still the current one; a
    /// marker left by a transition that never committed is just removed.
    pub(super) fn revert_pending(&mut self, reason: &str) -> Result<Option<(String, Vec<String>)>> {
        let p: Option<Pending> = read_json(&self.layout.pending())?;
        match p {
            Some(p) if p.seq == self.state.seq && self.state.current == Some(p.generation) => {
                self.revert_last(reason).map(Some)
            }
            _ => {
                let _ = fs::remove_file(self.layout.pending());
                Ok(None)
            }
        }
    }
}

/// Services stopped before a failed transition are started again.
fn invert(restarts: &[ServiceRestart]) -> Vec<ServiceRestart> {
    restarts
        .iter()
        .filter(|r| r.action == ServiceAction::Stop)
        .map(|r| ServiceRestart { name: r.name.clone(), action: ServiceAction::Start })
        .collect()
}
