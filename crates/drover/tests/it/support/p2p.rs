//! Helpers of the p2p-network example's end-to-end test (`p2p_network.rs`):
//! the example on a lab, `drover endpoints --json` parsed, the example's
//! processes found on the lab hosts, and the example's monitor read (once,
//! until the whole network shows, or sampled in the background).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Fleet;

/// One instance as `drover endpoints --json` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inst {
    pub service: String,
    pub host: String,
    pub address: String,
    pub ports: BTreeMap<String, u64>,
}

pub type Endpoints = BTreeMap<String, Inst>;

/// The lab fleet with the example as its project (the lab's inventory
/// replaces the example's, which must name the same hosts).
pub fn example_on_lab(f: &Fleet) {
    let proj = f.project();
    f.use_example("p2p-network");
    let example: toml::Table = toml::from_str(&fs::read_to_string(proj.join("inventory.toml")).unwrap()).unwrap();
    let lab_inv = f.lab(&["inventory"]).stdout;
    let lab: toml::Table = toml::from_str(&lab_inv).unwrap();
    let names = |t: &toml::Table| t["hosts"].as_table().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&example), names(&lab), "the example's inventory.toml has the lab's hosts");
    fs::write(proj.join("inventory.toml"), lab_inv).unwrap();
}

pub fn endpoints(f: &Fleet) -> Endpoints {
    let r = f.drover(&["endpoints", "--json"]);
    assert_eq!(r.code, 0, "drover endpoints --json:\n{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.stdout));
    let mut out = Endpoints::new();
    for (service, list) in v.as_object().unwrap() {
        for (i, inst) in list.as_array().unwrap().iter().enumerate() {
            assert_eq!(inst["index"].as_u64(), Some(i as u64), "{service} ordered by index: {inst}");
            let ports =
                inst["ports"].as_object().unwrap().iter().map(|(k, p)| (k.clone(), p.as_u64().unwrap())).collect();
            let name = inst["name"].as_str().unwrap().to_string();
            let inst = Inst {
                service: service.clone(),
                host: inst["host"].as_str().unwrap().into(),
                address: inst["address"].as_str().unwrap().into(),
                ports,
            };
            assert!(out.insert(name.clone(), inst).is_none(), "{name} listed twice");
        }
    }
    out
}

pub fn of(eps: &Endpoints, service: &str) -> Vec<String> {
    eps.iter().filter(|(_, i)| i.service == service).map(|(n, _)| n.clone()).collect()
}

/// Instance name -> (host, pid) of every python program of the example
/// running on any lab host, from the hosts' namespaces' processes.
pub fn running(f: &Fleet) -> BTreeMap<String, (String, u32)> {
    let mut out = BTreeMap::new();
    for h in f.lab_hosts() {
        let pids = std::process::Command::new("ip").args(["netns", "pids", &h.netns]).output().unwrap();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<String> = argv.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            if !argv[0].contains("python3") || !argv.iter().any(|a| a.starts_with("/opt/p2p/")) {
                continue;
            }
            let name = if argv.iter().any(|a| a == "/opt/p2p/monitor.py") {
                "monitor-0".to_string()
            } else {
                let at = argv.iter().position(|a| a == "--name").expect("node.py --name");
                argv[at + 1].clone()
            };
            let prev = out.insert(name.clone(), (h.name.clone(), pid.parse().unwrap()));
            assert!(prev.is_none(), "{name} runs twice: {prev:?} and on {}", h.name);
        }
    }
    out
}

/// A GET that may fail (the monitor may be restarting or moving).
pub fn get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = rest.split_once('/')?;
    let addr = hostport.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

pub fn monitor_url(eps: &Endpoints) -> String {
    let m = &eps["monitor-0"];
    format!("http://{}:{}/summary", m.address, m.ports["http"])
}

/// Why the monitor's summary does not (yet) show the whole network of `eps`
/// on `release`: every bootnode and node listed and up on its host (its own
/// hostname, as it reports it) with the
/// release, every node connected to a bootnode, and every node in some
/// bootnode's peer list (the bootnodes recorded the handshakes too).
pub fn network_problems(summary: &Value, eps: &Endpoints, release: &str) -> Vec<String> {
    let mut bad = vec![];
    let insts = summary["instances"].as_object().cloned().unwrap_or_default();
    let want: BTreeSet<&String> = eps.iter().filter(|(_, i)| i.service != "monitor").map(|(n, _)| n).collect();
    let got: BTreeSet<&String> = insts.keys().collect();
    if got != want {
        bad.push(format!("monitor polls {got:?}, placed are {want:?}"));
    }
    let boots: BTreeSet<String> = of(eps, "bootnode").into_iter().collect();
    let mut peers = BTreeSet::new();
    for (name, s) in &insts {
        if s["up"] != true {
            bad.push(format!("{name} is down: {s}"));
            continue;
        }
        if s["release"] != release {
            bad.push(format!("{name} runs {} not {release}", s["release"]));
        }
        if eps.get(name).is_some_and(|i| s["hostname"] != i.host.as_str()) {
            bad.push(format!("{name} runs on {} but is placed on {}", s["hostname"], eps[name].host));
        }
        if s["service"] == "node" && !s["connected_to"].as_str().is_some_and(|b| boots.contains(b)) {
            bad.push(format!("{name} is not connected to a bootnode: {}", s["connected_to"]));
        }
        if s["service"] == "bootnode" {
            peers.extend(s["peers"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()));
        }
    }
    for n in of(eps, "node") {
        if !peers.contains(&n) {
            bad.push(format!("no bootnode lists {n} as a peer"));
        }
    }
    bad
}

/// Wait until the monitor shows the whole network of `eps` on `release`.
pub fn wait_for_network(eps: &Endpoints, release: &str) -> Value {
    let url = monitor_url(eps);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (Value::Null, vec!["monitor not answering".to_string()]);
    while Instant::now() < deadline {
        if let Some(body) = get(&url) {
            let s: Value = serde_json::from_str(&body).unwrap();
            let bad = network_problems(&s, eps, release);
            if bad.is_empty() {
                return s;
            }
            last = (s, bad);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the monitor at {url} never showed the whole network on {release}: {:#?}\nlast summary: {}", last.1, last.0);
}

/// Samples the monitor's summaries in the background (one per round).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Value>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(url: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::<Value>::new()));
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = get(&url).and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
                    let mut rs = r.lock().unwrap();
                    if rs.last().is_none_or(|l| l["round"] != v["round"]) {
                        rs.push(v);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler { stop, rounds, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Vec<Value> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.rounds.lock().unwrap())
    }
}
