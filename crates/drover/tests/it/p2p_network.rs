//! The p2p-network example (`examples/p2p-network`) end to end on lab hosts,
//! through the real binary: 3 bootnodes pinned to h1..h3, nodes placed by
//! count, one monitor. Brought up on 6 hosts, every node must reach a
//! bootnode; `drover scale` takes the nodes 12 → 18 → 9 (removed instances'
//! processes and units gone); 28 do not fit on 6 hosts (refused); a 7th
//! host joins without moving the instances that stay, and then 28 fit; a
//! mistyped release stops at the first batch's health gates, and a new one
//! rolls out batch by batch.
//! Every step is checked through the example's own monitor, for every
//! instance, and against the processes really running on each host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use crate::support::p2p::{endpoints, example_on_lab, monitor_url, of, running, wait_for_network, Endpoints, Sampler};
use crate::support::Fleet;
use serde_json::Value;

/// The placement the example asks for: bootnode-i on h(i+1), `nodes`
/// nodes named node-0.. with at most 4 per host, one monitor; every host of
/// the lab listed with its own address.
fn check_placement(f: &Fleet, eps: &Endpoints, nodes: usize) {
    let addr: BTreeMap<String, String> =
        f.lab_hosts().iter().map(|h| (h.name.clone(), h.address.to_string())).collect();
    for (name, i) in eps {
        assert_eq!(addr.get(&i.host), Some(&i.address), "{name}: host and address");
    }
    for b in 0..3 {
        assert_eq!(eps[&format!("bootnode-{b}")].host, format!("h{}", b + 1), "bootnodes are pinned");
    }
    let want: BTreeSet<String> = (0..nodes).map(|i| format!("node-{i}")).collect();
    assert_eq!(of(eps, "node").into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(of(eps, "bootnode").len(), 3);
    assert_eq!(of(eps, "monitor"), vec!["monitor-0".to_string()]);
    let mut per_host = BTreeMap::<&str, usize>::new();
    for i in eps.values().filter(|i| i.service == "node") {
        *per_host.entry(&i.host).or_default() += 1;
    }
    assert!(per_host.values().all(|&n| n <= 4), "max-per-host 4: {per_host:?}");
}

/// The processes are exactly the instances drover placed, each on its host
/// (removed ones have stopped: allow their supervisor a moment).
fn check_processes(f: &Fleet, eps: &Endpoints) -> Pids {
    let want: BTreeMap<String, String> = eps.iter().map(|(n, i)| (n.clone(), i.host.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = running(f);
        let got: BTreeMap<String, String> = run.iter().map(|(n, (h, _))| (n.clone(), h.clone())).collect();
        if got == want {
            return run;
        }
        assert!(Instant::now() < deadline, "processes are not the placed instances:\nwant {want:?}\ngot  {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn apply(f: &Fleet) -> Value {
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "apply:\n{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// `drover scale node N`: the file keeps its comments and formatting (only
/// the count changes), and the printed plan names every instance added or
/// removed.
fn scale_nodes(f: &Fleet, from: usize, to: usize) {
    let file = f.project().join("services/node.toml");
    let before = fs::read_to_string(&file).unwrap();
    let r = f.drover(&["scale", "node", &to.to_string()]);
    assert_eq!(r.code, 0, "scale node {to}:\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        before.replace(&format!("count = {from}\n"), &format!("count = {to}\n")),
        "scale changes only placement.count"
    );
    let sign = if to > from { '+' } else { '-' };
    for i in from.min(to)..from.max(to) {
        assert!(r.stdout.contains(&format!("{sign} node-{i} on h")), "the plan names node-{i}:\n{}", r.stdout);
    }
}

type Pids = BTreeMap<String, (String, u32)>;

/// Scaling touches only the instances it adds or removes: every other one
/// keeps its host and ports, and its process (not even restarted; the
/// monitor re-reads the discovery file instead).
fn survivors_untouched(before: &Endpoints, pids_before: &Pids, after: &Endpoints, pids_after: &Pids) {
    for (name, was) in before.iter().filter(|(n, _)| after.contains_key(*n)) {
        assert_eq!(&after[name], was, "{name} moved while scaling");
        assert_eq!(pids_after[name], pids_before[name], "{name} was restarted while scaling");
    }
}

#[test]
fn p2p_network_comes_up_scales_extends_and_rolls_out_a_release_on_lab_hosts() {
    let t0 = Instant::now();
    let mut f = Fleet::new("p2p-e2e", 6);
    example_on_lab(&f);

    // Up: every node reached a bootnode, as the monitor sees it.
    apply(&f);
    let eps = endpoints(&f);
    check_placement(&f, &eps, 12);
    let pids = check_processes(&f, &eps);
    wait_for_network(&eps, "v1");
    // Every host has the same discovery file, the same data as `endpoints
    // --json`, and the bootnode list every node reads is its bootnode part.
    let r = f.drover(&["endpoints", "--json"]);
    let printed: Value = serde_json::from_str(&r.stdout).unwrap();
    for i in 0..6 {
        let file = |p: &str| -> Value { serde_json::from_slice(&fs::read(f.host_file(i, p)).unwrap()).unwrap() };
        assert_eq!(file("/etc/p2p/discovery.json"), printed, "h{}: discovery file vs endpoints", i + 1);
        assert_eq!(file("/etc/p2p/bootnodes.json"), printed["bootnode"], "h{}: bootnode list", i + 1);
    }
    eprintln!("[{:?}] up: 3 bootnodes, 12 nodes, monitor", t0.elapsed());

    // Scale 12 → 18: six more nodes, all in the network.
    scale_nodes(&f, 12, 18);
    apply(&f);
    let (before, pids_before) = (eps, pids);
    let eps = endpoints(&f);
    check_placement(&f, &eps, 18);
    let pids = check_processes(&f, &eps);
    survivors_untouched(&before, &pids_before, &eps, &pids);
    wait_for_network(&eps, "v1");
    eprintln!("[{:?}] scaled to 18", t0.elapsed());

    // Scale 18 → 9: node-9..node-17 stop and their units go, on every host.
    scale_nodes(&f, 18, 9);
    apply(&f);
    let (before, pids_before) = (eps, pids);
    let eps = endpoints(&f);
    check_placement(&f, &eps, 9);
    let pids = check_processes(&f, &eps);
    survivors_untouched(&before, &pids_before, &eps, &pids);
    for i in 9..18 {
        for h in 0..6 {
            // (runit's own `supervise` state may stay in /etc/sv/node-N: drover
            // never deletes what it did not write.)
            for unit in
                [format!("/etc/sv/node-{i}/run"), format!("/etc/sv/node-{i}/log/run"), format!("/etc/service/node-{i}")]
            {
                assert!(fs::symlink_metadata(f.host_file(h, &unit)).is_err(), "h{}: {unit} left behind", h + 1);
            }
        }
    }
    let summary = wait_for_network(&eps, "v1");
    assert_eq!(summary["nodes"]["total"], 9);
    eprintln!("[{:?}] scaled to 9", t0.elapsed());

    // 28 nodes do not fit on 6 hosts of at most 4 each: `scale` refuses,
    // stating the shortfall, and leaves the file as it was.
    let node_toml = f.project().join("services/node.toml");
    let text = fs::read_to_string(&node_toml).unwrap();
    let r = f.drover(&["scale", "node", "28"]);
    assert_eq!(r.code, 1, "scale node 28 on 6 hosts:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("28 node instances need 7 hosts with max-per-host 4"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(&node_toml).unwrap(), text, "a refused scale leaves the file alone");

    // A 7th host joins: every instance that existed stays where it was (same
    // host, address and ports, same process: not even restarted) unless it
    // moved to the new host, and no more than ⌈count/hosts⌉ of a service do.
    let (before, pids_before) = (eps, pids);
    let inventory = f.grow(7);
    fs::write(f.project().join("inventory.toml"), inventory).unwrap();
    let plan = f.drover(&["plan"]);
    assert_eq!(plan.code, 0, "plan:\n{}\n{}", plan.stdout, plan.stderr);
    apply(&f);
    let eps = endpoints(&f);
    check_placement(&f, &eps, 9);
    let pids_after = check_processes(&f, &eps);
    let mut moved = BTreeMap::<&str, Vec<&String>>::new();
    for (name, was) in &before {
        let now = &eps[name];
        if now == was {
            assert_eq!(pids_after[name], pids_before[name], "{name} stayed on {} but was restarted", was.host);
        } else {
            assert_eq!(
                now.host, "h7",
                "{name} moved from {} to {}: only moves to the new host are allowed",
                was.host, now.host
            );
            let line = format!("{name} moves {} -> h7", was.host);
            assert!(plan.stdout.contains(&line), "plan shows `{line}`:\n{}", plan.stdout);
            moved.entry(&was.service).or_default().push(name);
        }
    }
    let moves = plan.stdout.lines().filter(|l| l.contains(" moves ")).count();
    assert_eq!(moves, moved.values().map(Vec::len).sum::<usize>(), "plan shows only real moves:\n{}", plan.stdout);
    assert!(!moved.contains_key("bootnode"), "pinned bootnodes never move");
    assert!(moved.get("node").map_or(0, Vec::len) <= 9usize.div_ceil(7), "at most ⌈9/7⌉ nodes move: {moved:?}");
    // The new host takes part: it has the network's files and runs its share.
    for file in ["/etc/p2p/bootnodes.json", "/etc/p2p/discovery.json"] {
        assert_eq!(fs::read(f.host_file(6, file)).unwrap(), fs::read(f.host_file(0, file)).unwrap(), "h7 {file}");
    }
    let on_h7: Vec<&String> = eps.iter().filter(|(_, i)| i.host == "h7").map(|(n, _)| n).collect();
    assert!(!on_h7.is_empty(), "h7 runs no instance: {eps:#?}");
    wait_for_network(&eps, "v1");
    eprintln!("[{:?}] h7 joined; moved {moved:?}; h7 runs {on_h7:?}", t0.elapsed());

    // Now 28 nodes fit, exactly: 4 on every host, h7 included, all joined.
    scale_nodes(&f, 9, 28);
    apply(&f);
    let eps = endpoints(&f);
    check_placement(&f, &eps, 28);
    for h in f.lab_hosts() {
        let n = eps.values().filter(|i| i.service == "node" && i.host == h.name).count();
        assert_eq!(n, 4, "{}: 28 nodes over 7 hosts of at most 4", h.name);
    }
    check_processes(&f, &eps);
    wait_for_network(&eps, "v1");
    eprintln!("[{:?}] scaled to 28", t0.elapsed());

    // A new release: `drover rollout start` upgrades two hosts at a time,
    // and a batch only starts once the previous one's nodes run the new
    // release and are back in the network (their health checks: welcomed by
    // a bootnode), which the monitor's rounds show.
    let toml = f.project().join("drover.toml");
    let text = fs::read_to_string(&toml).unwrap();

    // First a mistyped release ("2.0": node.py refuses it, so nothing on the
    // first batch's hosts gets healthy): the gate stops the rollout at its
    // first batch, which is reverted; the network stays whole on v1.
    fs::write(&toml, text.replace("release = \"v1\"", "release = \"2.0\"")).unwrap();
    let r = f.drover(&["rollout", "start", "--json"]);
    assert_eq!(r.code, 2, "a rollout whose first batch fails its health gates fails:\n{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    let batches = v["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "no batch after the failed one: {v}");
    assert_eq!(batches[0]["outcome"], "failed");
    assert_eq!(batches[0]["hosts"], serde_json::json!(["h1", "h2"]));
    wait_for_network(&eps, "v1");
    for i in 0..7 {
        for unit in fs::read_dir(f.host_file(i, "/etc/sv")).unwrap().flatten() {
            let run = fs::read_to_string(unit.path().join("run")).unwrap_or_default();
            assert!(!run.contains("--release 2.0"), "h{}: {:?} is of the failed release", i + 1, unit.path());
        }
    }
    eprintln!("[{:?}] the mistyped release stopped at its first batch", t0.elapsed());

    fs::write(&toml, text.replace("release = \"v1\"", "release = \"v2\"")).unwrap();
    let sampler = Sampler::start(monitor_url(&eps));
    let r = f.drover(&["rollout", "start", "--json"]);
    assert_eq!(r.code, 0, "rollout:\n{}\n{}", r.stdout, r.stderr);
    let summary = wait_for_network(&eps, "v2");
    let rounds = sampler.finish();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "done");
    let batches: Vec<Vec<String>> = v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["outcome"], "ok", "{b}");
            b["hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
        })
        .collect();
    let want: Vec<Vec<String>> = [&["h1", "h2"][..], &["h3", "h4"], &["h5", "h6"], &["h7"]]
        .iter()
        .map(|b| b.iter().map(|h| h.to_string()).collect())
        .collect();
    assert_eq!(batches, want, "two hosts at a time, in order");
    assert_eq!(summary["releases"], serde_json::json!({"v2": 28}));
    check_gates(&rounds, &eps, &batches);
    eprintln!("[{:?}] rolled out v2 in {} batches ({} monitor rounds)", t0.elapsed(), batches.len(), rounds.len());
}

/// In no monitor round does a node of a later batch run the new release
/// while a node of an earlier batch is seen not yet on it or not connected:
/// each batch started only after the previous one passed its health gates.
/// (A node the monitor could not reach in a round, e.g. a poll timed out on
/// a busy machine, tells nothing either way and is skipped.)
fn check_gates(rounds: &[Value], eps: &Endpoints, batches: &[Vec<String>]) {
    let batch_of = |host: &str| batches.iter().position(|b| b.iter().any(|h| h == host)).unwrap();
    let nodes: Vec<(String, usize)> = of(eps, "node")
        .into_iter()
        .map(|n| {
            let b = batch_of(&eps[&n].host);
            (n, b)
        })
        .collect();
    let mut seen_upgrades = 0;
    for r in rounds {
        let st = |n: &str| &r["instances"][n];
        let upgraded = |n: &str| st(n)["up"] == true && st(n)["release"] == "v2";
        let not_ready = |n: &str| st(n)["up"] == true && !(upgraded(n) && st(n)["connected_to"].is_string());
        for (late, lb) in &nodes {
            if !upgraded(late) {
                continue;
            }
            seen_upgrades += 1;
            for (early, eb) in &nodes {
                assert!(
                    eb >= lb || !not_ready(early),
                    "round {}: {late} (batch {lb}) runs v2 while {early} (batch {eb}) is not ready: {}",
                    r["round"],
                    r["instances"]
                );
            }
        }
    }
    assert!(seen_upgrades > 0, "the monitor saw the rollout happen ({} rounds)", rounds.len());
}
