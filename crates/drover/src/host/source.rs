//! Where hosts' desired state comes from: the trait every delivery strategy
//! implements, and its implementation for a project directory.

use std::sync::Arc;

use drover_proto::{Facts, FailureCause, Hash, Manifest, Request, ServiceFailure};
use drover_secrets::Secret;
use drover_spec::{Compiled, Host, Project};

/// Where hosts' desired state comes from, and how its blobs are shipped: the
/// project (compiled per host and generation), or a bundle (`apply --bundle`:
/// manifests compiled at build time, blobs stored compressed), optionally
/// with peer relay for large blobs (`--relay`; see `commands::bundle`).
pub trait StateSource: Send + Sync {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String>;

    /// The request that makes `manifest` the host's candidate.
    fn diff_request(&self, _host: &Host, manifest: &Manifest, generation: u64) -> Request {
        Request::Diff { manifest: manifest.clone(), generation }
    }

    /// A blob's chunks as stored compressed (uncompressed offset, zstd
    /// bytes), from offset `from`; `None`: take it from `Compiled::blobs`.
    fn packed(&self, _hash: &Hash, _from: u64) -> Option<PackedChunks<'_>> {
        None
    }

    /// Where the controller holds blob `hash`'s content to make a delta
    /// against (see [`crate::bases`]); `None`: it does not (the blob goes
    /// whole).
    fn delta_base(&self, _hash: &Hash) -> Option<std::path::PathBuf> {
        None
    }

    /// Keep `src` (blob `hash`, just shipped) as a base for later deltas.
    /// Blocking; never fails the run.
    fn keep_base(&self, _hash: &Hash, _src: &drover_spec::BlobSource) {}

    /// Peer relay for large blobs, when enabled.
    fn relay(&self) -> Option<&super::relay::Relay> {
        None
    }

    /// Facts a host reported, for compiling offline later (`bundle build`).
    /// Blocking: the runner calls it only when [`StateSource::facts_known`]
    /// says no.
    fn remember_facts(&self, _host: &Host, _facts: &Facts) {}

    /// Whether `remember_facts` has nothing to do for these (answered from
    /// memory): saves a no-op host handing its runtime thread over to
    /// blocking work, which costs a thread wake-up and a context switch per
    /// host. `false` (always call it) unless a source knows better.
    fn facts_known(&self, _host: &Host, _facts: &Facts) -> bool {
        false
    }

    /// The values to redact from `plan --diff` of a file holding the secrets
    /// `names`: those, then every other secret of the project. `None` when
    /// one of `names` is not a secret this source can read (a bundle's are
    /// sealed to its hosts; an encrypted layer file is a whole file): the
    /// diff then says only that the secret changed.
    fn redactions(&self, _names: &[String]) -> Option<Vec<(String, Arc<Secret>)>> {
        None
    }

    /// The services whose instances `plan` reports moves of.
    fn services(&self) -> std::collections::BTreeSet<String> {
        Default::default()
    }

    /// Replace the secrets' values in what a failed service logged or
    /// printed, before it is shown or stored. A bundle has no secrets to
    /// compare with (they are sealed per host): it leaves the text as is.
    fn redact(&self, _failure: &mut ServiceFailure) {}
}

pub type PackedChunks<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), String>> + Send + 'a>;

impl StateSource for Project {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String> {
        Project::compile(self, host, facts, generation).map_err(|e| format!("{:?}", miette::Report::new(e)))
    }

    fn redactions(&self, names: &[String]) -> Option<Vec<(String, Arc<Secret>)>> {
        let store = self.secret_store();
        let mut out: Vec<(String, Arc<Secret>)> =
            names.iter().map(|n| Some((n.clone(), store.get(n).ok()?))).collect::<Option<_>>()?;
        for n in store.names().into_iter().filter(|n| !names.contains(n)) {
            if let Ok(s) = store.get(&n) {
                out.push((n, s));
            }
        }
        Some(out)
    }

    fn services(&self) -> std::collections::BTreeSet<String> {
        self.endpoints().map(|e| e.keys().cloned().collect()).unwrap_or_default()
    }

    fn delta_base(&self, hash: &Hash) -> Option<std::path::PathBuf> {
        crate::bases::find(&self.dir, hash)
    }

    fn keep_base(&self, hash: &Hash, src: &drover_spec::BlobSource) {
        let _ = crate::bases::keep(&self.dir, hash, src);
    }

    /// Cached in the project's state store (see [`crate::fact_cache`]).
    fn remember_facts(&self, host: &Host, facts: &Facts) {
        crate::fact_cache::remember(&self.dir, &host.name, facts);
    }

    fn facts_known(&self, host: &Host, facts: &Facts) -> bool {
        crate::fact_cache::unchanged(&self.dir, &host.name, facts)
    }

    /// Every encrypted file of the project (`secrets/*.age`, encrypted
    /// layer files, an encrypted inventory; not only the host's: a service
    /// may log what another host's file holds), decrypted as for a compile.
    /// A file that cannot be decrypted here cannot be looked for: the log
    /// lines and command output are then withheld, not shown unredacted.
    fn redact(&self, failure: &mut ServiceFailure) {
        let store = self.secret_store();
        let mut values: Vec<(String, String)> = Vec::new();
        for path in store.files() {
            let rel = path.strip_prefix(&self.dir).unwrap_or(&path);
            let name = match rel.strip_prefix("secrets") {
                Ok(file) => file.with_extension("").display().to_string(),
                Err(_) => rel.with_extension("").display().to_string(),
            };
            match store.decrypt_file(&path, &name) {
                Ok(s) => {
                    let text = String::from_utf8_lossy(s.expose()).into_owned();
                    // The whole value, and each longer line of a multi-line one
                    // (a key file's lines are logged one at a time).
                    let lines = text.lines().map(str::trim).filter(|l| l.len() >= 8).map(String::from);
                    for v in std::iter::once(text.trim().to_string()).chain(lines) {
                        if v.len() >= 4 {
                            values.push((v, format!("<secret {name}>")));
                        }
                    }
                }
                Err(e) => {
                    withhold(failure, &format!("secret {name} could not be decrypted to redact them: {e}"));
                    return;
                }
            }
        }
        // Longest first: a value containing another is replaced whole.
        values.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        each_text(failure, &mut |t| {
            for (v, with) in &values {
                if t.contains(v.as_str()) {
                    *t = t.replace(v.as_str(), with);
                }
            }
        });
    }
}

/// Every text of a failure that came from the service or its host.
fn each_text(f: &mut ServiceFailure, edit: &mut dyn FnMut(&mut String)) {
    f.log.iter_mut().for_each(&mut *edit);
    edit(&mut f.state.detail);
    match &mut f.cause {
        FailureCause::Control { error, .. } => edit(error),
        FailureCause::Probe { error, output, .. } => {
            edit(error);
            if let Some(o) = output {
                edit(&mut o.stdout);
                edit(&mut o.stderr);
            }
        }
        FailureCause::NotRunning {} | FailureCause::Exited {} | FailureCause::Restarted { .. } => {}
    }
}

fn withhold(f: &mut ServiceFailure, why: &str) {
    let note = format!("<withheld: {why}>");
    f.log = vec![note.clone()];
    if let FailureCause::Probe { error, output, .. } = &mut f.cause {
        *error = note.clone();
        if let Some(o) = output {
            o.stdout = note.clone();
            o.stderr = note;
        }
    }
}
