//! The project's state store (`.drover/state.db`, or the PostgreSQL database
//! of `[state] url` / `DROVER_STATE_URL`) and the project as loaded with it:
//! opened here by every layer that reads or writes it. Recording a run is
//! `crate::run::record`.

use std::collections::BTreeSet;
use std::path::Path;

use drover_state::{Location, Store};

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

/// [`load_project`] without writing a missing `packages.lock`: what
/// commands that compile nothing load (`status`, `logs`, `exec`,
/// `volume`). Their image services' images are prepared as `plan`'s are
/// (through `images.lock` and the cache, pulled only when not cached), so
/// a fresh checkout with an `images.lock` needs no `plan` first.
pub fn load_project_unlocked(project_dir: &Path) -> anyhow::Result<drover_spec::Project> {
    // A SQLite file is not created just to read facts from it; a database
    // server is always asked (and an unreachable one stops the run here).
    let loc = location(project_dir)?;
    let mut facts = std::collections::HashMap::new();
    if !matches!(&loc, Location::Sqlite(db) if !db.exists()) {
        facts = open(project_dir)?
            .all_facts()?
            .into_iter()
            .filter_map(|(host, json)| Some((host, serde_json::from_str::<drover_proto::Facts>(&json).ok()?)))
            .collect();
    }
    // Images are pulled and flattened before the project loads (its
    // image services read them from the cache), for the architectures the
    // fleet's hosts last reported.
    let mut arches: BTreeSet<String> = facts.values().map(|f| f.arch.clone()).filter(|a| !a.is_empty()).collect();
    crate::images::prepare(project_dir, &arches)?;
    let mut project = drover_spec::Project::load(project_dir)?;
    // A host that never reported may be of any machine this drover has an
    // agent for (as a bundle's agents, `crate::bundler`): the images are
    // pulled for each of those too, so its first apply gets its own.
    // An architecture an image lacks refuses only a host of it that runs
    // the image (`drover_spec::container::Containers::for_arch`).
    let unknown = project.hosts.iter().any(|h| facts.get(&h.name).is_none_or(|f| f.arch.is_empty()));
    if unknown && !drover_spec::container::prepared::sources(project_dir).is_empty() {
        let before = arches.len();
        arches.extend(crate::agent_bin::carried().iter().map(|a| a.to_string()));
        if arches.len() != before {
            crate::images::prepare(project_dir, &arches)?;
            project = drover_spec::Project::load(project_dir)?;
        }
    }
    project.set_fact_cache(facts);
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

/// Hosts marked drained in the store, with their reasons.
pub fn drained(project_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    Ok(open(project_dir)?.drained()?.into_iter().map(|(h, _, r)| (h, r)).collect())
}
