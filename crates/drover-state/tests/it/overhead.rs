//! The per-host cost of each backend, printed (not asserted: the figures
//! go to docs/benchmarks.md). Ignored by default; run with
//! `cargo test --release -p drover-state --test it -- overhead:: --ignored --nocapture`.

use std::time::Instant;

use drover_state::{HostResult, Outcome, RunStatus, Store};

use crate::support::begin;

fn measure(label: &str, mut s: Store, hosts: usize) {
    let names: Vec<String> = (0..hosts).map(|i| format!("s{i}")).collect();
    let t = Instant::now();
    let id = begin(&mut s, "apply");
    let lock = s.lock_hosts(id, &names).unwrap();
    let lock_ms = t.elapsed().as_secs_f64() * 1e3;
    // A run's summary as runlog records it: one report of ~600 bytes per host.
    let detail = format!("{{\"outcome\":\"unchanged\",\"pad\":\"{}\"}}", "x".repeat(560));
    let rows: Vec<HostResult> = names
        .iter()
        .map(|h| HostResult {
            run_id: id,
            host: h.clone(),
            outcome: Outcome::Unchanged,
            generation: Some(3),
            changes: 0,
            bytes_sent: 0,
            files_written: 0,
            duration_ms: 12,
            error: None,
            detail: detail.clone(),
            at_ms: drover_state::now_ms(),
        })
        .collect();
    let t = Instant::now();
    s.record_hosts(&rows).unwrap();
    let record_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let latest = s.latest_per_host().unwrap();
    let latest_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(latest.len(), hosts);
    let t = Instant::now();
    for h in names.iter().take(1000) {
        s.save_facts(h, "{\"os\":\"debian\"}").unwrap();
    }
    let facts_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    s.unlock_hosts(lock).unwrap();
    s.finish_run(id, RunStatus::Ok).unwrap();
    let unlock_ms = t.elapsed().as_secs_f64() * 1e3;
    let per_host_us = (lock_ms + record_ms + unlock_ms) * 1e3 / hosts as f64;
    println!(
        "| {label} | {hosts} | {lock_ms:.0} ms | {record_ms:.0} ms | {unlock_ms:.0} ms | {per_host_us:.1} µs | {latest_ms:.0} ms | {:.2} ms |",
        facts_ms / 1000.0
    );
}

#[test]
#[ignore]
fn per_host_overhead_of_each_backend() {
    println!("| backend | hosts | begin + lock | record_hosts | unlock + finish | per host (lock+record+unlock) | latest_per_host | save_facts (each, 1000 calls) |");
    println!("|---|---|---|---|---|---|---|---|");
    for round in 0..2 {
        let d = tempfile::tempdir().unwrap();
        measure(&format!("SQLite (round {})", round + 1), Store::open(&d.path().join("state.db")).unwrap(), 10_000);
        let url = drover_pgtest::shared().fresh_db();
        measure(&format!("PostgreSQL 15, loopback (round {})", round + 1), Store::connect(&url).unwrap(), 10_000);
    }
}
