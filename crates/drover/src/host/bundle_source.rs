//! Desired state for `apply --bundle` and `apply --relay`: the
//! [`StateSource`]s the deploy pipeline runs with instead of a bare project.

use std::collections::HashMap;
use std::sync::Arc;

use drover_bundle::Bundle;
use drover_proto::{Facts, Hash, Manifest, Request};
use drover_spec::{Compiled, Host, Project};

use super::relay::Relay;
use super::source::{PackedChunks, StateSource};

/// Manifests compiled when the bundle was built; blobs read from the file.
pub struct BundleSource {
    pub bundle: Bundle,
    pub relay: Option<Relay>,
}

impl StateSource for BundleSource {
    /// The host's manifest from the bundle, whatever the generation: the
    /// templates were rendered at build time (see `docs/bundle.md`).
    fn compile(&self, host: &Host, facts: &Facts, _generation: u64) -> Result<Compiled, String> {
        let e = self.bundle.index.host(&host.name).ok_or_else(|| format!("host {} is not in the bundle", host.name))?;
        for s in &e.manifest.services {
            if Some(s.supervisor) != facts.supervisor {
                return Err(format!(
                    "service {} was compiled for {}, but {} runs {}; build the bundle with --supervisor",
                    s.name,
                    s.supervisor.as_str(),
                    host.name,
                    facts.supervisor.map_or("no known supervisor", |s| s.as_str())
                ));
            }
        }
        // Sealed paths are secrets: `plan --diff` names them, never shows
        // content (the controller cannot decrypt them anyway).
        let secrets = e.sealed.iter().map(|s| (s.path.clone(), s.names.clone())).collect();
        Ok(Compiled { manifest: e.manifest.clone(), blobs: HashMap::new(), secrets })
    }

    /// From a signed bundle, the host gets its own signed statement (its
    /// entry alone, never the whole index), checks it with its own key when
    /// it has one, and takes the manifest from it.
    fn diff_request(&self, host: &Host, manifest: &Manifest, generation: u64) -> Request {
        match self.bundle.host_statement(&host.name) {
            Some((statement, sig)) => Request::BundleDiff { statement, signature: sig.to_string(), generation },
            None => Request::Diff { manifest: manifest.clone(), generation },
        }
    }

    fn packed(&self, hash: &Hash, from: u64) -> Option<PackedChunks<'_>> {
        let Some(e) = self.bundle.blob(hash) else {
            let base = self.bundle.index.base.as_ref().map_or(String::new(), |b| format!(" (revision {})", b.revision));
            let msg = format!(
                "blob {} is not in this incremental bundle and not on the host: apply its base bundle{base} first",
                hash.short()
            );
            return Some(Box::new(std::iter::once(Err(msg))));
        };
        Some(Box::new(self.bundle.packed_chunks(e, from).map(|c| c.map_err(|e| e.to_string()))))
    }

    fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }
}

/// The project, with peer relay.
pub struct RelayedProject {
    pub project: Arc<Project>,
    pub relay: Relay,
}

impl StateSource for RelayedProject {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String> {
        StateSource::compile(&*self.project, host, facts, generation)
    }

    fn redactions(&self, names: &[String]) -> Option<Vec<(String, std::sync::Arc<drover_secrets::Secret>)>> {
        self.project.redactions(names)
    }

    fn relay(&self) -> Option<&Relay> {
        Some(&self.relay)
    }

    fn remember_facts(&self, host: &Host, facts: &Facts) {
        self.project.remember_facts(host, facts);
    }

    fn facts_known(&self, host: &Host, facts: &Facts) -> bool {
        self.project.facts_known(host, facts)
    }
}
