//! `fleet`: the whole inventory, as every template sees it.
//!
//! ```text
//! fleet.hosts              every host, in natural name order (h2 before h10)
//! fleet.roles.<role>       the hosts with that role, same order
//! fleet.groups.<group>     the hosts in that group, same order
//! each host:               name, address, port, roles, groups, vars, facts
//! ```
//!
//! Why it is built once per run and not per host: a run may compile 10,000
//! hosts, and each host's entry is shared (reference-counted) by
//! `fleet.hosts`, every role list and every group list it appears in.
//!
//! Why `fleet` is always the whole inventory, whatever `--hosts` selects: a
//! partial apply must render the same files as a full one, or applying to
//! one host would quietly drop the others from its member lists.
//!
//! Other hosts' facts come from the fact cache (the facts each host last
//! reported to this project's controller, see `Project::set_fact_cache`), as
//! a snapshot taken before the run: every host of one run sees the same
//! fleet, whatever order the hosts are contacted in. A host whose facts were
//! never cached has a `facts` object that is empty and false (`{% if
//! h.facts %}`); reading a fact from it is an error naming that host, unless
//! the template gives a default (`h.facts.cpus | default(1)`).
//!
//! `fleet.services.<service>` lists a service's instances ordered by index,
//! each `{ name, index, service, host, address, ports }` (see the
//! `instances` module); a service with neither `instances` nor
//! `[placement]` has one per host running it, named as the service.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use drover_proto::{Facts, Hash};
use minijinja::value::{Enumerator, Object, Value};

use crate::files::Vars;
use crate::inventory::Host;

/// A rendered template, shared by every host that renders it identically.
pub(crate) type Rendered = (Arc<Vec<u8>>, Hash);

/// The `fleet` value of one run, and the renderings of fleet-reading
/// templates already done in it (see [`FleetCtx::render`]).
pub(crate) struct FleetCtx {
    pub value: Value,
    memo: Mutex<HashMap<(String, Vec<Value>), Rendered>>,
}

/// Distinct renderings kept per run. Fleet templates that do not depend on
/// the host render once; ones that do (e.g. "every peer but me") would keep
/// one copy per host, so past this they are simply rendered per host.
const MEMO_LIMIT: usize = 4096;

impl FleetCtx {
    pub fn new(
        hosts: &[Host],
        vars_for: impl Fn(&Host) -> Vars,
        facts: &HashMap<String, Facts>,
        roles: &[String],
        groups: &[String],
        services: Option<Value>,
    ) -> FleetCtx {
        FleetCtx { value: build(hosts, vars_for, facts, roles, groups, services), memo: Mutex::default() }
    }

    /// The rendering for `key` (a template and the values of everything it
    /// reads besides `fleet`, which is the same for every host of the run),
    /// rendered by `render` the first time.
    pub fn render<E>(
        &self,
        key: (String, Vec<Value>),
        render: impl FnOnce() -> Result<String, E>,
    ) -> Result<Rendered, E> {
        if let Some(r) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let r = rendered(render()?);
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() < MEMO_LIMIT {
            memo.insert(key, r.clone());
        }
        Ok(r)
    }
}

pub(crate) fn rendered(text: String) -> Rendered {
    let bytes = Arc::new(text.into_bytes());
    let hash = Hash(*blake3::hash(&bytes).as_bytes());
    (bytes, hash)
}

fn build(
    hosts: &[Host],
    vars_for: impl Fn(&Host) -> Vars,
    facts: &HashMap<String, Facts>,
    roles: &[String],
    groups: &[String],
    services: Option<Value>,
) -> Value {
    let mut order: Vec<&Host> = hosts.iter().collect();
    order.sort_by_cached_key(|h| natural_key(&h.name));
    let mut by_role: BTreeMap<&str, Vec<Value>> = roles.iter().map(|r| (r.as_str(), Vec::new())).collect();
    let mut by_group: BTreeMap<&str, Vec<Value>> = groups.iter().map(|g| (g.as_str(), Vec::new())).collect();
    let mut all = Vec::with_capacity(order.len());
    for h in order {
        let v = minijinja::context! {
            name => h.name, address => h.address, port => h.port, roles => h.roles, groups => h.groups,
            vars => Value::from_serialize(vars_for(h)),
            facts => match facts.get(&h.name) {
                Some(f) => facts_value(f),
                None => Value::from_object(MissingFacts { host: h.name.clone() }),
            },
        };
        // A host lists a role once even if its inventory entry repeats it.
        for r in h.roles.iter().collect::<BTreeSet<_>>() {
            by_role.entry(r).or_default().push(v.clone());
        }
        for g in h.groups.iter().collect::<BTreeSet<_>>() {
            by_group.entry(g).or_default().push(v.clone());
        }
        all.push(v);
    }
    let mut top: BTreeMap<&str, Value> =
        [("hosts", Value::from(all)), ("roles", Value::from(by_role)), ("groups", Value::from(by_group))].into();
    if let Some(s) = services {
        top.insert("services", s);
    }
    Value::from(top)
}

/// A host's facts as templates see them (`facts.*`, `fleet.hosts[i].facts.*`).
pub(crate) fn facts_value(f: &Facts) -> Value {
    minijinja::context! {
        hostname => f.hostname, os_id => f.os_id, os_version => f.os_version,
        arch => f.arch, kernel => f.kernel, cpus => f.cpus, mem_bytes => f.mem_bytes,
        supervisor => f.supervisor.map(|s| s.as_str()),
    }
}

/// Sort h2 before h10 (as the controller's reports do).
pub(crate) fn natural_key(s: &str) -> (String, u64, String) {
    let i = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let j = s[i..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |k| i + k);
    (s[..i].to_string(), s[i..j].parse().unwrap_or(0), s[j..].to_string())
}

thread_local! {
    /// The last fact read from a host without cached facts, during the
    /// render running on this thread: (host, fact).
    static MISSING: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Forget any missing fact recorded on this thread (before a render).
pub(crate) fn clear_missing() {
    MISSING.with(|m| m.borrow_mut().take());
}

/// The missing fact the failed render on this thread read last, if any:
/// minijinja reports only "undefined value", so this is what names the host.
pub(crate) fn take_missing() -> Option<(String, String)> {
    MISSING.with(|m| m.borrow_mut().take())
}

/// The `facts` of a host whose facts are not cached: every fact is
/// undefined (so `| default(...)` and `is defined` work), and reading one
/// is remembered so the strict-undefined error can name the host.
#[derive(Debug)]
struct MissingFacts {
    host: String,
}

impl Object for MissingFacts {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let fact = key.as_str().map_or_else(|| key.to_string(), str::to_string);
        MISSING.with(|m| *m.borrow_mut() = Some((self.host.clone(), fact)));
        None
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }
}
