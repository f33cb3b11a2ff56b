//! Choosing what to activate and getting it ready: a new generation from
//! the session's candidate ([`Engine::apply`]) or a kept one
//! ([`Engine::rollback`]), with the accounts, packages and blobs it needs in
//! place before anything is stopped or swapped. The switch itself is
//! `activate.rs`'s.

use drover_proto::{ApplyOutcome, Unconfirmable};

use super::Engine;
use crate::accounts::Accounts;
use crate::diff::{self, Candidate};
use crate::pathstate::PathState;
use crate::safefs::{self, Root, Walker};
use crate::space::Needs;
use crate::state::{self, load_manifest, read_json, save_manifest, Pending};
use crate::transition::gen_name;
use crate::{bail, blobs, hooks, setup, Result};
use drover_proto::StorageLeft;

/// While alive, the test hooks' write faults count (see [`hooks::fault`]).
struct Armed;

impl Armed {
    fn new(layout: &crate::layout::Layout) -> Armed {
        hooks::arm(layout);
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        hooks::disarm();
    }
}

impl Engine {
    /// Activate a candidate as generation `cand.generation`.
    pub fn apply(
        &mut self,
        cand: Candidate,
        confirm_ms: u64,
        stop_first: bool,
        progress: &mut dyn FnMut(String),
    ) -> Result<ApplyOutcome> {
        let _armed = Armed::new(&self.layout);
        let done = self.apply_candidate(cand, confirm_ms, stop_first, progress);
        done.map_err(|e| self.untouched(e))
    }

    /// A refused write before the transition (a blob, the manifest): the
    /// host is on the generation it was on.
    pub(super) fn untouched(&self, e: crate::AgentError) -> crate::AgentError {
        match e.storage() {
            Some(f) if f.generation.is_none() && f.left == StorageLeft::Untouched => {
                e.settle(StorageLeft::Untouched, self.state.current, &Needs::default())
            }
            _ => e,
        }
    }

    fn apply_candidate(
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
        let _armed = Armed::new(&self.layout);
        self.roll_back_to(to, confirm_ms, progress).map_err(|e| self.untouched(e))
    }

    fn roll_back_to(
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
        // A generation awaiting its confirmation is replaced by this one:
        // its controller's late `Confirm` is told so (see `fates`).
        let awaiting = read_json::<Pending>(&self.layout.pending())?
            .filter(|p| p.phase == state::Phase::AwaitingConfirm && p.generation != target);
        let outcome = self.activate(next, cand, confirm_ms, false, progress)?;
        if let (Some(p), ApplyOutcome::Activated { .. }) = (awaiting, &outcome) {
            super::fates::record(&self.layout, p.generation, Unconfirmable::Replaced { by: target, rollback: true });
        }
        Ok(outcome)
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
            if let PathState::File { content: hash, .. } = want {
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
                    let mut f = safefs::open_file(std::os::fd::AsFd::as_fd(&dir), safefs::name(path))?;
                    blobs::ingest(&self.layout, &mut f, hash)?;
                } else {
                    bail!("{path}: content {} was not received; apply again", hash.short());
                }
            }
        }
        Ok(())
    }
}
