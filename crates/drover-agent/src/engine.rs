//! The agent's operations on a host, under its lock: recover, diff, apply,
//! revert, roll back, confirm.
//!
//! Opening an [`Engine`] takes an exclusive lock on `/var/lib/drover/lock`
//! (two controllers never interleave on one host) and runs recovery: an
//! interrupted transition is rolled back, and a generation whose confirmation
//! deadline passed is reverted.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::time::{Duration, Instant};

use drover_proto::{
    ApplyOutcome, BlobChunk, EntryKind, Hash, HostState, Manifest, ServiceAction, ServiceRestart, ServiceTimes,
};

use crate::accounts::Accounts;
use crate::boot::HostEnv;
use crate::diff::{self, Candidate};
use crate::fsops::PathState;
use crate::layout::Layout;
use crate::safefs::{Root, Walker};
use crate::state::{self, load_manifest, now_ms, read_json, save_manifest, write_json, Pending, Phase, StateFile};
use crate::transition::{self, gen_name, Done};
use crate::{bail, blobs, gc, hooks, services, setup, watchdog, Context, Result};

pub struct Engine {
    pub layout: Layout,
    pub state: StateFile,
    pub accounts: Accounts,
    pub recovered: Option<String>,
    /// Services recovery's revert could not put back (see [`Engine::revert_last`]).
    pub revert_errors: Vec<String>,
    /// Held while this session may change the host (see [`Engine::release`]).
    lock: Option<File>,
    /// How this host reboots (and whether it may): passed on to the watchdog.
    pub env: HostEnv,
}

/// Take the host lock, waiting up to `wait` for another session to finish.
/// Why a session could not get the host lock: the controller retries later.
pub const LOCK_BUSY: &str = "another drover agent holds the lock on this host (an apply in progress?)";

fn take_lock(layout: &Layout, wait: Duration) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(layout.lock())
        .ctx(|| "open lock".into())?;
    let start = Instant::now();
    while lock.try_lock().is_err() {
        if start.elapsed() > wait {
            return Err(crate::AgentError(LOCK_BUSY.into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(lock)
}

impl Engine {
    /// Lock, load and recover. Waits up to `wait` for another agent to finish.
    pub fn open(layout: Layout, wait: Duration, env: HostEnv) -> Result<Engine> {
        crate::fsops::private_dir(layout.state_dir())?;
        let lock = take_lock(&layout, wait)?;
        if !layout.private_marker().exists() {
            // Installations from before the store was private: repair once.
            crate::fsops::make_private(layout.state_dir())?;
            crate::fsops::write_atomic(&layout.private_marker(), b"")?;
        }
        let state = StateFile::load(&layout)?;
        let accounts = Accounts::load(&layout);
        let mut e = Engine { layout, state, accounts, recovered: None, revert_errors: vec![], lock: Some(lock), env };
        e.recovered = e.recover()?;
        Ok(e)
    }

    /// For a session that only looks (`drover plan`): no lock, no recovery,
    /// nothing created. A host never applied to reads as having no
    /// generation; an interrupted transition or an expired pending generation
    /// is left for the next session that changes the host, and reported by
    /// the state as it is.
    pub fn open_read_only(layout: Layout, env: HostEnv) -> Result<Engine> {
        let state = StateFile::load(&layout)?;
        let accounts = Accounts::load(&layout);
        Ok(Engine { layout, state, accounts, recovered: None, revert_errors: vec![], lock: None, env })
    }

    /// Roll back an interrupted transition; revert an expired unconfirmed
    /// generation. Needs the lock.
    fn recover(&mut self) -> Result<Option<String>> {
        let mut notes = Vec::new();
        notes.extend(crate::dpkg::recover(&self.layout));
        if let Some(what) = transition::recover(&self.layout, &self.state)? {
            self.state = StateFile::load(&self.layout)?;
            notes.push(what);
        }
        if let Some(p) = read_json::<Pending>(&self.layout.pending())? {
            // We hold the lock, so the agent that was activating is gone.
            let why = match p.phase {
                Phase::Starting => Some("the agent stopped before the services passed their health checks"),
                Phase::AwaitingConfirm if now_ms() >= p.deadline_ms => {
                    Some("no confirmation from the controller before the deadline")
                }
                Phase::AwaitingConfirm => None,
            };
            if let Some(why) = why {
                if let Some((done, errors)) = self.revert_pending(why)? {
                    notes.push(done);
                    self.revert_errors = errors;
                }
            }
        }
        Ok((!notes.is_empty()).then(|| notes.join("; ")))
    }

    /// Let other sessions in. A session that only reads (status, logs, exec,
    /// the no-op check) must not block an apply, however long it stays.
    pub fn release(&mut self) {
        self.lock = None;
    }

    /// Does this session hold the host lock (may it write)?
    pub fn holds_lock(&self) -> bool {
        self.lock.is_some()
    }

    /// Before anything that changes the host: hold the lock again, and
    /// reload what another session may have changed meanwhile.
    pub fn ensure_locked(&mut self, wait: Duration) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        self.lock = Some(take_lock(&self.layout, wait)?);
        self.state = StateFile::load(&self.layout)?;
        self.accounts = Accounts::load(&self.layout);
        if let Some(w) = self.recover()? {
            self.recovered = Some(w);
        }
        Ok(())
    }

    pub fn host_state(&self) -> HostState {
        let pending =
            read_json::<Pending>(&self.layout.pending()).ok().flatten().filter(|p| p.phase == Phase::AwaitingConfirm);
        let mut generations = self.state.kept.clone();
        generations.sort_unstable();
        HostState {
            current: self.state.current,
            current_manifest: self.current_manifest().ok().flatten().map(|m| m.hash()),
            next: self.state.next.max(1),
            pending_confirm: pending.map(|p| p.generation),
            recovered: self.recovered.clone(),
            revert_errors: self.revert_errors.clone(),
            generations,
            boots: crate::boot::boots(&self.layout),
        }
    }

    pub fn current_manifest(&self) -> Result<Option<Manifest>> {
        self.state.current.map(|g| load_manifest(&self.layout, g)).transpose()
    }

    /// The no-op probe: is the host on `hash`, undrifted, nothing pending?
    /// Reads only; writes nothing.
    pub fn check(&self, hash: &Hash) -> Result<(bool, Vec<String>)> {
        let Some(cur) = self.current_manifest()? else { return Ok((false, vec![])) };
        let accounts = self.accounts.with_declared(&cur.setup);
        let mut drift = diff::drift(&self.layout, &accounts, &state::load_statcache(&self.layout), &cur)?;
        drift.extend(setup::drift(&self.layout, &self.accounts, &cur.setup));
        let pending = self.layout.pending().exists();
        Ok((cur.hash() == *hash && drift.is_empty() && !pending, drift))
    }

    pub fn diff(&self, manifest: Manifest, generation: u64) -> Result<Candidate> {
        manifest.validate().map_err(|e| crate::AgentError(format!("invalid manifest: {e}")))?;
        let cur = self.current_manifest()?;
        diff::diff(
            &self.layout,
            &self.accounts.with_declared(&manifest.setup),
            &state::load_statcache(&self.layout),
            cur.as_ref(),
            manifest,
            generation,
        )
    }

    /// Blobs a candidate needs that are neither stored nor on disk already,
    /// with the bytes of each already received.
    pub fn missing(&self, cand: &Candidate) -> Vec<(Hash, u64)> {
        // Only a session that holds the lock may complete a transfer.
        let repair = self.holds_lock();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for e in &cand.manifest.entries {
            if let EntryKind::File { hash, size } = e.kind {
                // `changes` is sorted by path.
                let changing = cand.changes.binary_search_by(|c| c.path.as_str().cmp(&e.path)).is_ok();
                if changing && seen.insert(hash) {
                    out.extend(blobs::resume_from(&self.layout, &hash, size, repair).map(|have| (hash, have)));
                }
            }
        }
        let packages = setup::missing(&self.layout, &cand.manifest, repair);
        out.extend(packages.into_iter().filter(|(h, _)| seen.insert(*h)));
        out
    }

    pub fn receive(&self, chunk: &BlobChunk, cand: &Candidate) -> Result<()> {
        let size = *cand
            .sizes
            .get(&chunk.hash)
            .ok_or_else(|| crate::AgentError(format!("unexpected blob {}", chunk.hash.short())))?;
        blobs::receive(&self.layout, chunk, size)
    }

    /// Activate a candidate as generation `cand.generation`.
    pub fn apply(
        &mut self,
        cand: Candidate,
        confirm_ms: u64,
        stop_first: bool,
        progress: &mut dyn FnMut(String),
    ) -> Result<ApplyOutcome> {
        if let Some(p) = read_json::<Pending>(&self.layout.pending())? {
            bail!("generation {} is still waiting for confirmation; retry in a moment", p.generation);
        }
        self.refuse_if_drained()?;
        let generation = cand.generation;
        if generation < self.state.next {
            bail!("generation {generation} is not newer than this host's next number {}", self.state.next);
        }
        let setup_drift = setup::drift(&self.layout, &self.accounts, &cand.manifest.setup);
        if cand.changes.is_empty()
            && setup_drift.is_empty()
            && self.current_manifest()?.map(|m| m.hash()) == Some(cand.manifest.hash())
        {
            return Ok(ApplyOutcome::UpToDate { generation: self.state.current.unwrap_or(0) });
        }
        self.ensure_blobs(&cand)?;
        let cand = self.set_up(cand, true, progress)?;
        save_manifest(&self.layout, generation, &cand.manifest)?;
        let mut next = self.state.clone();
        next.next = generation + 1;
        next.kept.push(generation);
        self.activate(next, cand, confirm_ms, stop_first, progress)
    }

    /// Re-activate a kept generation (the one before the current by default).
    pub fn rollback(
        &mut self,
        to: Option<u64>,
        confirm_ms: u64,
        progress: &mut dyn FnMut(String),
    ) -> Result<ApplyOutcome> {
        self.refuse_if_drained()?;
        let mut kept = self.state.kept.clone();
        kept.sort_unstable();
        let target = match to {
            Some(g) if kept.contains(&g) => g,
            Some(g) => bail!("generation {g} is not kept on this host (kept: {kept:?})"),
            None => match self.state.current.and_then(|c| kept.iter().rev().find(|g| **g < c)) {
                Some(g) => *g,
                None => bail!("no generation before {} to roll back to", gen_name(self.state.current)),
            },
        };
        let m = load_manifest(&self.layout, target)?;
        let cand = self.diff(m, target)?;
        self.ensure_blobs(&cand)?;
        let cand = self.set_up(cand, false, progress)?;
        let next = self.state.clone();
        self.activate(next, cand, confirm_ms, false, progress)
    }

    /// Groups, users and (with `packages`) packages, before anything is
    /// stopped or swapped: a failure here leaves the host as it was. New
    /// accounts change what owner names resolve to, so the candidate is
    /// compared with the host again.
    fn set_up(&mut self, cand: Candidate, packages: bool, progress: &mut dyn FnMut(String)) -> Result<Candidate> {
        let (created, done) = setup::run(&self.layout, &self.accounts, &cand.manifest.setup, packages)?;
        for d in done {
            progress(d);
        }
        if !created {
            return Ok(cand);
        }
        self.accounts = Accounts::load(&self.layout);
        self.diff(cand.manifest, cand.generation)
    }

    fn ensure_blobs(&self, cand: &Candidate) -> Result<()> {
        let root = Root::open(self.layout.root())?;
        let mut w = Walker::new(&root);
        let cache = state::load_statcache(&self.layout);
        for (path, want) in &cand.wants {
            if let PathState::File { hash, .. } = want {
                if blobs::has(&self.layout, hash) {
                    continue;
                }
                if *hash == blobs::empty_hash() {
                    blobs::store_empty(&self.layout)?;
                    continue;
                }
                // Unchanged on disk: take it from there for future rollbacks.
                if diff::actual(&mut w, &cache, path)? == *want {
                    let dir = root.parent_for_write(path)?;
                    let mut f = crate::safefs::open_file(std::os::fd::AsFd::as_fd(&dir), crate::safefs::name(path))?;
                    blobs::ingest(&self.layout, &mut f, hash)?;
                } else {
                    bail!("{path}: content {} was not received; apply again", hash.short());
                }
            }
        }
        Ok(())
    }

    fn activate(
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
        services::perform(self.env, &self.layout, &stops, &[ServiceAction::Stop], &manifests, &changed)?;
        progress(format!("activating generation {generation}: {} paths", cand.changes.len()));
        let mut st = next;
        let from = self.state.current;
        // Before the commit: from the moment the new generation is current
        // until it has proved healthy, a record says so (the transition's seq
        // ties it to this commit; if the commit never happens it is stale).
        let starting =
            Pending { generation, deadline_ms: 0, seq: self.state.seq + 1, phase: Phase::Starting, reboot: None };
        write_json(&self.layout.pending(), &starting)?;
        let done = match transition::run(&self.layout, &mut st, from, Some(generation), cand.wants.clone(), &managed) {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(self.layout.pending());
                self.state = StateFile::load(&self.layout)?;
                // Put stopped services back: the files are as before.
                let failed = self.put_back(&invert(&stops), &[ServiceAction::Start], &manifests, &changed);
                if !failed.is_empty() {
                    bail!("{e}; and services stopped before it could not be started again: {}", failed.join("; "));
                }
                return Err(e);
            }
        };
        self.state = st;
        self.record_stats(&done)?;
        // Timed only when a service is (re)started, so "0" means "none was".
        let timed = cand.restarts.iter().any(|r| r.action != ServiceAction::Stop);
        let micros = |d: Duration| if timed { u64::try_from(d.as_micros()).unwrap_or(u64::MAX) } else { 0 };
        let clock = Instant::now();
        let started = self.start_services(&cand.restarts, &manifests, &changed);
        let mut times = ServiceTimes { restart_us: micros(clock.elapsed()), health_us: 0 };
        hooks::point(&self.layout, "before-health");
        let clock = Instant::now();
        let healthy = started.and_then(|()| self.health(&cand.manifest, &cand.restarts));
        times.health_us = micros(clock.elapsed());
        if let Err(reason) = healthy {
            progress(format!("generation {generation} unhealthy ({reason}); reverting"));
            let (_, revert_errors) = self.revert_last(&reason)?;
            return Ok(ApplyOutcome::RolledBack { failed: generation, to: from, reason, revert_errors, times });
        }
        if confirm_ms > 0 {
            let p = Pending {
                generation,
                deadline_ms: now_ms() + confirm_ms,
                seq: self.state.seq,
                phase: Phase::AwaitingConfirm,
                reboot: None,
            };
            write_json(&self.layout.pending(), &p)?;
            watchdog::spawn(&self.layout, self.env)?;
            hooks::point(&self.layout, "awaiting-confirm");
        } else {
            fs::remove_file(self.layout.pending()).ctx(|| "remove activation marker".into())?;
        }
        gc::collect(&self.layout, &mut self.state)?;
        let restarted = cand
            .restarts
            .iter()
            .filter(|r| r.action != ServiceAction::Stop)
            .map(|r| if r.action == ServiceAction::Reload { format!("{}:reload", r.name) } else { r.name.clone() })
            .collect();
        let files_written = done.ops.iter().filter(|o| !o.implicit).count() as u64;
        Ok(ApplyOutcome::Activated { generation, restarted, files_written, times })
    }

    fn start_services(
        &self,
        restarts: &[ServiceRestart],
        manifests: &[&Manifest],
        changed: &BTreeSet<String>,
    ) -> Result<(), String> {
        let kinds = [ServiceAction::Start, ServiceAction::Restart, ServiceAction::Reload];
        services::perform(self.env, &self.layout, restarts, &kinds, manifests, changed).map_err(|e| e.0)
    }

    /// Probe through the host's supervisor: a simulated host's fake decides
    /// which probes are real (see [`crate::supervisor::fake`]).
    fn health(&self, m: &Manifest, restarts: &[ServiceRestart]) -> Result<(), String> {
        for r in restarts.iter().filter(|r| r.action != ServiceAction::Stop) {
            let Some(spec) = m.services.iter().find(|s| s.name == r.name) else { continue };
            let Some(hc) = spec.health.as_ref() else { continue };
            let sup = self.env.supervisor(&self.layout, spec.supervisor);
            sup.health(&r.name, hc).map_err(|e| format!("service {}: {e}", r.name))?;
        }
        Ok(())
    }

    /// Remember stat identities of what we just wrote: the next check hashes
    /// nothing that has not changed since.
    fn record_stats(&self, done: &Done) -> Result<()> {
        let mut cache = state::load_statcache(&self.layout);
        let root = Root::open(self.layout.root())?;
        let mut w = Walker::new(&root);
        for op in &done.ops {
            cache.remove(&op.path);
            if let PathState::File { hash, .. } = op.want {
                if let Ok(crate::safefs::Found::File { id, .. }) = w.look(&op.path) {
                    cache.insert(op.path.clone(), (id, hash));
                }
            }
        }
        write_json(&self.layout.statcache(), &cache)
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
        self.record_stats(&done)?;
        let _ = fs::remove_file(self.layout.pending());
        let kinds = [ServiceAction::Start, ServiceAction::Restart, ServiceAction::Reload];
        errors.extend(self.put_back(&restarts, &kinds, &manifests, &changed));
        Ok((format!("generation {} reverted to {} ({reason})", gen_name(failed), gen_name(undo.from)), errors))
    }

    /// Revert the pending generation if it is still the current one; a
    /// marker left by a transition that never committed is just removed.
    fn revert_pending(&mut self, reason: &str) -> Result<Option<(String, Vec<String>)>> {
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

    pub fn confirm(&mut self, generation: u64) -> Result<()> {
        match read_json::<Pending>(&self.layout.pending())? {
            Some(p) if p.generation == generation && p.phase == Phase::AwaitingConfirm => {
                fs::remove_file(self.layout.pending()).ctx(|| "remove pending marker".into())?;
                Ok(())
            }
            _ if self.state.current == Some(generation) => Ok(()),
            _ => bail!(
                "generation {generation} is no longer active (host is on {}): it was reverted because confirmation came too late",
                gen_name(self.state.current)
            ),
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
