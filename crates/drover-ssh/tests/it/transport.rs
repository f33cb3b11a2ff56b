//! Failure modes of the transport that need no SSH server: they must end in
//! bounded time with an error that says what happened. (Authentication and
//! host-key pinning against real OpenSSH servers are covered end to end on
//! the lab fleet: crates/drover/tests/e2e.rs.)

use std::net::TcpListener;
use std::time::{Duration, Instant};

use drover_ssh::{fingerprint, Auth, Secret, Session, SshError};

use crate::support::{target, KEY};

#[tokio::test]
async fn a_server_that_never_speaks_times_out_in_the_handshake() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = l.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(conns);
    });
    let start = Instant::now();
    let err = Session::connect(&target(port, Duration::from_millis(800))).await.err().unwrap();
    assert!(matches!(err, SshError::Timeout { stage: "handshake", .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(err.is_transient());
}

#[tokio::test]
async fn connection_refused_is_transient_and_names_the_address() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Session::connect(&target(port, Duration::from_secs(2))).await.err().unwrap();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_malformed_pinned_key_is_a_configuration_error() {
    let mut t = target(1, Duration::from_secs(1));
    t.host_keys = vec!["ssh-ed25519 not-base64!".into()];
    let err = Session::connect(&t).await.err().unwrap();
    assert!(matches!(err, SshError::BadPinnedKey { .. }), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn fingerprint_matches_openssh() {
    // `ssh-keygen -lf` on this key prints this fingerprint.
    let out = std::process::Command::new("ssh-keygen")
        .args(["-lf", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let fp = fingerprint(&format!("{KEY} comment")).unwrap();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    if let Ok(mut child) = out {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{KEY}\n").as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(&fp), "ssh-keygen says {text}, we say {fp}");
    }
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s} {s:?}"), "*** ***");
    let mut t = target(22, Duration::from_secs(1));
    t.auth = Auth::Password(Secret::new("hunter2"));
    let shown = format!("{t:?}");
    assert!(shown.contains("Password(***)") && !shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn an_unreachable_jump_host_is_named_as_the_hop_that_failed() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut t = target(22, Duration::from_secs(2));
    t.address = "10.255.255.1".into(); // never dialled: the bastion fails first
    t.proxy_jump =
        vec![drover_ssh::Hop { user: "ops".into(), address: "127.0.0.1".into(), port, host_keys: vec![KEY.into()] }];
    let err = Session::connect(&t).await.err().unwrap();
    let SshError::Jump { hop, n, of, source } = &err else { panic!("not a jump error: {err}") };
    assert_eq!((hop.as_str(), *n, *of), (format!("ops@127.0.0.1:{port}").as_str(), 1, 1));
    assert!(matches!(**source, SshError::Connect { .. }), "{source}");
    assert!(err.to_string().starts_with(&format!("jump host ops@127.0.0.1:{port} (hop 1 of 1): ")), "{err}");
    assert!(err.is_transient(), "a bastion that is down may come back");
}

/// Hosts behind a jump host that never answers fail together after one
/// timeout, with one connection to it, not one timeout after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_waiting_for_a_failed_jump_login_share_its_failure() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(c); // accepted, never answered: the handshake times out
        }
    });
    let hop = drover_ssh::Hop { user: "ops".into(), address: "127.0.0.1".into(), port, host_keys: vec![KEY.into()] };
    let start = Instant::now();
    let tasks: Vec<_> = (1..=5)
        .map(|i| {
            let mut t = target(22, Duration::from_millis(800));
            t.address = format!("10.255.255.{i}");
            t.proxy_jump = vec![hop.clone()];
            tokio::spawn(async move { Session::connect(&t).await.err().unwrap() })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap();
        assert!(err.to_string().starts_with(&format!("jump host ops@127.0.0.1:{port} (hop 1 of 1): ")), "{err}");
        assert!(err.to_string().contains("timed out during handshake"), "{err}");
        assert!(err.is_transient());
    }
    assert!(start.elapsed() < Duration::from_secs(2), "5 hosts took {:?}: tried in turn", start.elapsed());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one login attempt for all five");
}
