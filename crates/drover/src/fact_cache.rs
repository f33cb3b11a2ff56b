//! The facts each host last reported, kept in the project's state store
//! (templates read other hosts' facts from it: `fleet.hosts[i].facts`).
//!
//! One store connection for the whole run, and the stored facts read once at
//! its start: opening the store costs more than the rest of a host's no-op, a
//! run may have 30,000 hosts, and on PostgreSQL a round trip per host to
//! compare would dominate a no-op run. A host's facts are written only when
//! they changed, and [`unchanged`] answers from memory, so the runner hands
//! its thread over to blocking work (the store) only for hosts that need it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use drover_proto::Facts;

struct Cache {
    dir: PathBuf,
    store: drover_state::Store,
    known: HashMap<String, String>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Whether `host`'s stored facts are `facts` already, from memory only (no
/// I/O): `false` until the store was read for `dir` by [`remember`].
pub fn unchanged(dir: &Path, host: &str, facts: &Facts) -> bool {
    let cached = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = cached.as_ref().filter(|c| c.dir == dir) else { return false };
    let Some(known) = c.known.get(host) else { return false };
    serde_json::to_string(facts).is_ok_and(|json| *known == json)
}

/// Store `host`'s facts if they changed. Blocking (opens and writes the
/// store); a store that cannot be opened or written is skipped: the facts are
/// a cache, and the apply itself must not fail on it.
pub fn remember(dir: &Path, host: &str, facts: &Facts) {
    let mut cached = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cached.as_ref().is_none_or(|c| c.dir != dir) {
        *cached = crate::store::open(dir).ok().map(|store| {
            let known = store.all_facts().unwrap_or_default().into_iter().collect();
            Cache { dir: dir.to_path_buf(), store, known }
        });
    }
    let Some(c) = cached.as_mut() else { return };
    let Ok(json) = serde_json::to_string(facts) else { return };
    if c.known.get(host) != Some(&json) && c.store.save_facts(host, &json).is_ok() {
        c.known.insert(host.to_string(), json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_unchanged_only_once_stored_and_equal() {
        let dir = tempfile::tempdir().unwrap();
        let facts = Facts { hostname: "a".into(), cpus: 2, ..Default::default() };
        assert!(!unchanged(dir.path(), "a", &facts), "nothing read yet");
        remember(dir.path(), "a", &facts);
        assert!(unchanged(dir.path(), "a", &facts));
        assert!(!unchanged(dir.path(), "b", &facts), "another host");
        let other = Facts { cpus: 4, ..facts.clone() };
        assert!(!unchanged(dir.path(), "a", &other), "changed facts");
        remember(dir.path(), "a", &other);
        assert!(unchanged(dir.path(), "a", &other));
        let stored = crate::store::open(dir.path()).unwrap().all_facts().unwrap();
        assert_eq!(stored, vec![("a".to_string(), serde_json::to_string(&other).unwrap())], "written through");
    }
}
