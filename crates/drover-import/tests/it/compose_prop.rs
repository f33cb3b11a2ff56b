//! Generated compose apps convert to services drover loads, carrying each
//! command, environment (`$$` read as `$`), start order, replica count and
//! health command over exactly.

use std::collections::BTreeMap;
use std::fs;

use drover_import::compose::{import_str, Env};
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, Clone)]
struct Gen {
    command: Vec<String>,
    env: BTreeMap<String, String>,
    replicas: u32,
    health: Option<Vec<String>>,
    /// Indexes of earlier services it depends on.
    deps: Vec<usize>,
    volume: bool,
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 '\"=:/.$-]{1,10}"
}

fn service() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec(word(), 1..4),
        prop::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", "[a-zA-Z0-9 '\"=:/.$-]{0,12}", 0..4),
        1u32..4,
        prop::option::of(prop::collection::vec(word(), 1..3)),
        prop::collection::vec(0usize..8, 0..3),
        any::<bool>(),
    )
        .prop_map(|(command, env, replicas, health, deps, volume)| Gen {
            command,
            env,
            replicas,
            health,
            deps,
            volume,
        })
}

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

/// `$` written as compose's `$$`.
fn esc(x: &str) -> Value {
    s(&x.replace('$', "$$"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_compose_apps_convert_to_services_drover_loads(gens in prop::collection::vec(service(), 1..5)) {
        let mut services = Mapping::new();
        let mut volumes = Mapping::new();
        for (i, g) in gens.iter().enumerate() {
            let mut m = Mapping::new();
            m.insert(s("image"), s(&format!("registry.example/s{i}:1")));
            m.insert(s("command"), Value::Sequence(g.command.iter().map(|w| esc(w)).collect()));
            let env: Mapping = g.env.iter().map(|(k, v)| (s(k), esc(v))).collect();
            m.insert(s("environment"), Value::Mapping(env));
            let mut deploy = Mapping::new();
            deploy.insert(s("replicas"), Value::Number(g.replicas.into()));
            m.insert(s("deploy"), Value::Mapping(deploy));
            if let Some(h) = &g.health {
                let test = std::iter::once(s("CMD")).chain(h.iter().map(|w| esc(w))).collect();
                let mut hc = Mapping::new();
                hc.insert(s("test"), Value::Sequence(test));
                m.insert(s("healthcheck"), Value::Mapping(hc));
            }
            let deps: Vec<usize> = g.deps.iter().copied().filter(|d| *d < i).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            if !deps.is_empty() {
                m.insert(s("depends_on"), Value::Sequence(deps.iter().map(|d| s(&format!("s{d}"))).collect()));
            }
            if g.volume {
                volumes.insert(s(&format!("v{i}")), Value::Null);
                m.insert(s("volumes"), Value::Sequence(vec![s(&format!("v{i}:/data"))]));
            }
            services.insert(s(&format!("s{i}")), Value::Mapping(m));
        }
        let mut top = Mapping::new();
        top.insert(s("services"), Value::Mapping(services));
        top.insert(s("volumes"), Value::Mapping(volumes));
        let text = serde_yaml_ng::to_string(&Value::Mapping(top)).unwrap();
        let imp = import_str("gen.yaml", &text, &Env::new(), std::path::Path::new("."), "gen").unwrap();
        prop_assert_eq!(imp.unmapped().count(), 0, "{:?}", imp.findings);
        let (_d, p) = crate::compose::load(&imp);
        for (i, g) in gens.iter().enumerate() {
            let file = p.dir.join(format!("services/s{i}.toml"));
            let t: toml::Table = toml::from_str(&fs::read_to_string(file).unwrap()).unwrap();
            let strs = |v: Option<&toml::Value>| -> Vec<String> {
                v.and_then(|v| v.as_array()).map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default()
            };
            prop_assert_eq!(strs(t.get("command")), g.command.clone());
            let env: BTreeMap<String, String> = t.get("env").and_then(|e| e.as_table()).map(|e| e.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()).unwrap_or_default();
            prop_assert_eq!(env, g.env.clone());
            let want_after: Vec<String> = g.deps.iter().copied().filter(|d| *d < i).collect::<std::collections::BTreeSet<_>>().into_iter().map(|d| format!("s{d}")).collect();
            prop_assert_eq!(strs(t.get("after")), want_after);
            prop_assert_eq!(t.get("instances").and_then(|v| v.as_integer()), Some(i64::from(g.replicas)));
            let health = t.get("health").and_then(|h| h.get("command")).and_then(|c| c.as_str()).map(|c| shlex::split(c).unwrap());
            prop_assert_eq!(health, g.health.clone());
        }
    }
}
