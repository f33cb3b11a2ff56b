//! The agent's operations on a host, under its lock: recover, diff, apply,
//! revert, roll back, confirm.
//!
//! Opening an [`Engine`] takes an exclusive lock on `/var/lib/drover/lock`
//! (two controllers never interleave on one host) and runs recovery: an
//! interrupted transition is rolled back, and a generation whose confirmation
//! deadline passed is reverted.
//!
//! - this file: the engine, its lock, recovery, and what a session reads
//!   (host state, the no-op check, diff, missing blobs, confirm);
//! - `apply.rs`: choosing what to activate (a new generation, or a kept one
//!   to roll back to) and getting it ready: accounts, packages, blobs;
//! - `activate.rs`: the switch (services, transition, health) and its undo;
//! - [`watchdog`]: the timer that reverts an unconfirmed generation,
//!   through [`Engine::open`]'s recovery.
//!
//! The engine drives the layers below it (diff, transition, services, gc,
//! setup, blobs, state); it knows nothing of the protocol or of sessions.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::time::{Duration, Instant};

use drover_proto::{BlobChunk, BlobDelta, EntryKind, Hash, HostState, Manifest, Unconfirmable};

use crate::accounts::Accounts;
use crate::diff::{self, Candidate};
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::state::{self, load_manifest, now_ms, read_json, Pending, Phase, StateFile};
use crate::transition;
use crate::{bail, blobs, delta, setup, Context, Result};

mod activate;
mod apply;
mod fates;
mod order;
pub mod watchdog;

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
            return Err(crate::AgentError::new(LOCK_BUSY.into()));
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
                    let why = Unconfirmable::Expired { deadline_ms: p.deadline_ms };
                    fates::record(&self.layout, p.generation, why);
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
            pending_confirm: pending.as_ref().map(|p| p.generation),
            pending_deadline_ms: pending.as_ref().map(|p| p.deadline_ms),
            recovered: self.recovered.clone(),
            revert_errors: self.revert_errors.clone(),
            generations,
            boots: state::boots(&self.layout),
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
        manifest.validate().map_err(|e| crate::AgentError::new(format!("invalid manifest: {e}")))?;
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

    /// Is there room in the blob store for what is still to be sent
    /// (`missing`, from [`Engine::missing`])? Refused before a byte is
    /// shipped, naming the filesystem, its free space and what the blobs need.
    pub fn room_for(&self, missing: &[(Hash, u64)], cand: &Candidate) -> Result<()> {
        let fs = crate::space::of_path(&self.layout.blobs());
        let mut needs = crate::space::Needs::default();
        for (h, have) in missing {
            needs.file(&fs, cand.sizes.get(h).copied().unwrap_or(0).saturating_sub(*have));
        }
        needs.check(self.state.current)
    }

    pub fn receive(&self, chunk: &BlobChunk, cand: &Candidate) -> Result<()> {
        let size = *cand
            .sizes
            .get(&chunk.hash)
            .ok_or_else(|| crate::AgentError::new(format!("unexpected blob {}", chunk.hash.short())))?;
        blobs::receive(&self.layout, chunk, size).map_err(|e| self.untouched(e))
    }

    /// Bases the controller may send deltas against, for `missing` (see
    /// [`delta::bases`]).
    pub fn bases(&self, cand: &Candidate, missing: &[(Hash, u64)]) -> Vec<(Hash, Hash)> {
        delta::bases(&self.layout, self.current_manifest().ok().flatten().as_ref(), &cand.manifest, missing)
    }

    /// One part of a blob's delta (see [`delta::receive`]).
    pub fn receive_delta(&self, d: &BlobDelta, cand: &Candidate) -> Result<()> {
        let size = *cand
            .sizes
            .get(&d.hash)
            .ok_or_else(|| crate::AgentError::new(format!("unexpected blob {}", d.hash.short())))?;
        delta::receive(&self.layout, d, size)
    }

    /// Which of `blobs` (of the candidate) are still missing, with the bytes
    /// of each already received.
    pub fn still_missing(&self, blobs: &[Hash], cand: &Candidate) -> Vec<(Hash, u64)> {
        let repair = self.holds_lock();
        blobs
            .iter()
            .filter_map(|h| {
                let size = cand.sizes.get(h).copied()?;
                blobs::resume_from(&self.layout, h, size, repair).map(|have| (*h, have))
            })
            .collect()
    }

    /// Why the host is drained, if it is (see [`crate::ops`]).
    pub fn drained(&self) -> Option<String> {
        fs::read_to_string(self.layout.drain_mark()).ok().map(|s| s.trim().to_string())
    }

    /// A drained host stays as the operator left it: no apply, no rollback.
    pub fn refuse_if_drained(&self) -> Result<()> {
        match self.drained() {
            Some(r) => bail!("host is drained ({r}); run `drover undrain` first"),
            None => Ok(()),
        }
    }

    /// Confirm `generation`; when it is no longer live, why
    /// ([`Unconfirmable`]: replaced, expired, or unknown).
    pub fn confirm(&mut self, generation: u64) -> Result<Result<(), Unconfirmable>> {
        match read_json::<Pending>(&self.layout.pending())? {
            Some(p) if p.generation == generation && p.phase == Phase::AwaitingConfirm => {
                fs::remove_file(self.layout.pending()).ctx(|| "remove pending marker".into())?;
                Ok(Ok(()))
            }
            _ if self.state.current == Some(generation) => Ok(Ok(())),
            _ => Ok(Err(fates::find(&self.layout, generation).unwrap_or(Unconfirmable::NotLive))),
        }
    }
}
