//! Simulated hosts through the resident: a warm `--simulate` run takes the
//! path a warm run on real hosts takes (a held session and a kept agent
//! per host, the command's round trips over the resident's socket), with
//! the simulated link between the resident and the agents. No root and no
//! lab needed.

use std::path::Path;

use super::warm::{json, same};
use super::{enable_in, vias, Residents};
use crate::support::{sim_project, Run};

/// 20 ms round trip, no failures: the runs compared must not retry.
const LINK: [&str; 4] = ["--sim-latency", "20ms", "--sim-failure-rate", "0"];

fn drover(res: &Residents, proj: &Path, hosts: &Path, args: &[&str], link: &[&str]) -> Run {
    let out = res.command(proj, args).arg("--simulate").arg(hosts).args(link).output().unwrap();
    Run::from(out)
}

fn outcomes(r: &Run) -> Vec<String> {
    r.hosts().iter().map(|h| h["outcome"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn a_second_simulated_run_goes_through_the_resident_with_the_links_latency_and_matches_direct() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 8);
    let hosts = tmp.path().join("hosts");
    let res = Residents::new();
    let apply = |link: &[&str]| drover(&res, &proj, &hosts, &["apply", "--json"], link);
    let status = || drover(&res, &proj, &hosts, &["status", "--json"], &[]);

    let first = apply(&LINK);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(outcomes(&first).iter().all(|o| o == "changed"), "{}", first.stdout);
    let direct_noop = apply(&LINK);
    let direct_status = status();
    assert_eq!(vias(&direct_noop), vec!["direct"; 8], "persist is off by default");
    assert!(res.pids().is_empty(), "no resident without [ssh] persist");

    enable_in(&proj, "1m");
    // The first command starts the resident and goes direct while it
    // takes its hosts on; the second goes through it.
    let cold = apply(&LINK);
    assert_eq!(cold.code, 0, "{}\n{}", cold.stdout, cold.stderr);
    assert_eq!(vias(&cold), vec!["direct"; 8], "{}", cold.stderr);
    let warm = apply(&LINK);
    assert_eq!((warm.code, direct_noop.code), (0, 0), "{}\n{}", warm.stdout, warm.stderr);
    assert_eq!(vias(&warm), vec!["resident"; 8], "{}", warm.stderr);
    assert_eq!(same(&json(&warm)["hosts"]), same(&json(&direct_noop)["hosts"]));
    assert_eq!(res.pids().len(), 1, "one resident");
    // The hello and the check each cross the simulated link: at least a
    // round trip each, as they would over a real one.
    for h in warm.hosts() {
        let (hello, diff) = (h["phases"]["hello_ms"].as_f64().unwrap(), h["phases"]["diff_ms"].as_f64().unwrap());
        assert!(hello >= 20.0 && diff >= 20.0, "the link's 20 ms apply: {h}");
    }

    // Another link (status: unshaped) is another simulation, so another
    // resident (status reports no `via`); it reads the same.
    let _ = status();
    let warm_status = status();
    assert_eq!(warm_status.code, direct_status.code, "{}\n{}", warm_status.stdout, warm_status.stderr);
    assert_eq!(same(&json(&warm_status)), same(&json(&direct_status)));
    assert_eq!(res.pids().len(), 2, "one resident per simulation");

    // A change goes through the resident's kept agents and lands.
    let tpl = proj.join("layers/site/srv/site/index.html.j2");
    let text = std::fs::read_to_string(&tpl).unwrap() + "\n<!-- second edition -->\n";
    std::fs::write(&tpl, text).unwrap();
    let change = apply(&LINK);
    assert_eq!(change.code, 0, "{}\n{}", change.stdout, change.stderr);
    assert_eq!(vias(&change), vec!["resident"; 8]);
    assert!(outcomes(&change).iter().all(|o| o == "changed"), "{}", change.stdout);
    for i in 1..=8 {
        let page = std::fs::read_to_string(hosts.join(format!("s{i}/srv/site/index.html"))).unwrap();
        assert!(page.contains("second edition") && page.contains(&format!("s{i}")), "{page}");
    }
    let again = apply(&LINK);
    assert_eq!(vias(&again), vec!["resident"; 8]);
    assert!(outcomes(&again).iter().all(|o| o == "unchanged"), "{}", again.stdout);
}
