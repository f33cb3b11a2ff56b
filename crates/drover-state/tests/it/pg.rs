//! What only the PostgreSQL backend does: connection errors, leases on
//! host locks (renewed by a live holder, taken over once a dead one's
//! expired, never by pid), and controllers racing for hosts.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use drover_state::{StateError, Store};

use crate::support::{begin, hosts};

#[test]
fn an_unreachable_server_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let started = Instant::now();
    let e = Store::connect("postgres://drover:s3cret-pw@127.0.0.1:1/fleet?sslmode=disable").err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, StateError::Connect { .. }), "{e:?}");
    assert!(msg.contains("postgres://drover:***@127.0.0.1:1/fleet") && msg.contains("cannot connect"), "{msg}");
    assert!(!msg.contains("s3cret"), "the password leaked: {msg}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A URL the client cannot parse is named (without password) too.
    let e = Store::connect("postgres://u:pw@h:notaport/db").err().unwrap().to_string();
    assert!(e.contains("postgres://u:***@h:notaport/db") && !e.contains(":pw@"), "{e}");
}

#[test]
fn a_newer_schema_is_refused() {
    let url = drover_pgtest::shared().fresh_db();
    drop(Store::connect(&url).unwrap());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute("INSERT INTO schema_version (version) VALUES (99)", &[]).unwrap();
    let e = Store::connect(&url).err().unwrap().to_string();
    assert!(e.contains("schema version 99") && e.contains("upgrade drover"), "{e}");
}

#[test]
fn a_live_holder_refuses_naming_itself_and_keeps_its_lease_renewed() {
    let url = drover_pgtest::shared().fresh_db();
    let (mut a, mut b) = (Store::connect(&url).unwrap(), Store::connect(&url).unwrap());
    a.set_lock_lease(Duration::from_millis(600));
    let ra = begin(&mut a, "rollout");
    let lock = a.lock_hosts(ra, &hosts(&["h1", "h2"])).unwrap();
    // Well past several leases: the holder's renewals keep it.
    std::thread::sleep(Duration::from_millis(2000));
    let rb = begin(&mut b, "apply");
    let e = b.lock_hosts(rb, &hosts(&["h2", "h3"])).unwrap_err();
    let msg = e.to_string();
    let me = drover_state::machine();
    assert!(
        msg.contains("another drover")
            && msg.contains(&format!("run {ra}"))
            && msg.contains("`drover rollout`")
            && msg.contains(&format!("pid {} on {me}", std::process::id()))
            && msg.contains(": h2."),
        "{msg}"
    );
    // All or nothing: h3 was not taken by the refused run.
    let rc = begin(&mut b, "apply");
    let l3 = b.lock_hosts(rc, &hosts(&["h3"])).unwrap();
    b.unlock_hosts(l3).unwrap();
    // Released: the other run gets them at once.
    a.unlock_hosts(lock).unwrap();
    let l = b.lock_hosts(rb, &hosts(&["h2", "h3"])).unwrap();
    // Dropping a lock without unlocking releases it too, before the drop
    // returns (a failed command exits right after).
    drop(l);
    let l = a.lock_hosts(ra, &hosts(&["h2", "h3"])).unwrap();
    a.unlock_hosts(l).unwrap();
}

/// The holder of [`a_dead_holders_lock_is_taken_over_after_its_lease_not_before`]:
/// this same test binary, re-run with the URL in the environment. It takes
/// the lock, says so, and waits to be killed.
#[test]
fn lock_holder_child() {
    let Ok(url) = std::env::var("DROVER_PGTEST_HOLDER_URL") else { return };
    let mut s = Store::connect(&url).unwrap();
    s.set_lock_lease(Duration::from_millis(1500));
    let id = begin(&mut s, "apply");
    let _lock = s.lock_hosts(id, &hosts(&["h1"])).unwrap();
    // (libtest prints "test pg::lock_holder_child ... " first, on the same line.)
    println!("LOCKED {id}");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_dead_holders_lock_is_taken_over_after_its_lease_not_before() {
    let url = drover_pgtest::shared().fresh_db();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pg::lock_holder_child", "--nocapture", "--test-threads=1"])
        .env("DROVER_PGTEST_HOLDER_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    while !line.contains("LOCKED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the holder exited before locking");
    }
    child.kill().unwrap(); // SIGKILL: no unlock, no last renewal
    child.wait().unwrap();
    let killed = Instant::now();
    let mut s = Store::connect(&url).unwrap();
    let id = begin(&mut s, "apply");
    // Its pid is gone, but its lease is not: still refused.
    let e = s.lock_hosts(id, &hosts(&["h1"])).unwrap_err().to_string();
    assert!(e.contains("another drover") && e.contains("h1"), "{e}");
    let lock = loop {
        match s.lock_hosts(id, &hosts(&["h1"])) {
            Ok(l) => break l,
            Err(StateError::Locked(_)) => {
                assert!(killed.elapsed() < Duration::from_secs(10), "never taken over");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    // Not before the lease (1.5 s from its last renewal, at most 0.5 s
    // before the kill) ran out.
    assert!(killed.elapsed() >= Duration::from_millis(900), "taken over after {:?}", killed.elapsed());
    s.unlock_hosts(lock).unwrap();
}

#[test]
fn two_stores_racing_for_the_same_hosts_never_both_win() {
    let url = drover_pgtest::shared().fresh_db();
    let rounds = 60;
    let barrier = Arc::new(Barrier::new(2));
    let sets = [hosts(&["h1", "h2", "h3"]), hosts(&["h3", "h4"])];
    let threads: Vec<_> = sets
        .into_iter()
        .map(|set| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = Store::connect(&url).unwrap();
                let mut wins = Vec::new();
                for _ in 0..rounds {
                    let id = begin(&mut s, "apply");
                    barrier.wait();
                    let lock = match s.lock_hosts(id, &set) {
                        Ok(l) => Some(l),
                        Err(StateError::Locked(_)) => None,
                        Err(e) => panic!("{e}"),
                    };
                    wins.push(lock.is_some());
                    // Both have tried before either lets go.
                    barrier.wait();
                    if let Some(l) = lock {
                        s.unlock_hosts(l).unwrap();
                    }
                    barrier.wait();
                }
                wins
            })
        })
        .collect();
    let wins: Vec<Vec<bool>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!((wins[0].len(), wins[1].len()), (rounds, rounds));
    for (round, (a, b)) in wins[0].iter().zip(&wins[1]).enumerate() {
        assert!(!(a & b), "round {round}: both won h3");
        assert!(a | b, "round {round}: neither won (free hosts refused)");
    }
}
