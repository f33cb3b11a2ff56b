//! Security properties (#11 items 4–7), on lab hosts where a host is
//! concerned: what a host learns from a bundle and which changes it takes,
//! the peer relay against a peer without the run's secret (the unprivileged
//! user `op` on another host), service names that try to be paths (set up by
//! `op`), and pinning host keys against an operator's list.
//!
//! The agent is the real one the controller embeds, started over SSH as the
//! controller starts it; attackers run as `op` (`setpriv`), with the Python
//! script `support/security/relay_peer.py` for raw relay connections.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{ok, Fleet, Run, DROVER};
use drover::host::StateSource;
use drover_proto::frame::encode;
use drover_proto::{Request, Response};

use crate::support::security::{error_of, random_hex, Lab, Relay, AGENT_AT, RELAY_PORT};

// ---------------------------------------------------------------- item 4

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (k, p) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    drover_bundle::sign::keygen(&k, &p).unwrap();
    (k, p)
}

fn build_signed(f: &Fleet, out: &Path, key: &Path) {
    ok(&f.drover(&["bundle", "build", "-o", out.to_str().unwrap()]));
    drover_bundle::sign::sign(out, key).unwrap();
}

/// What the controller sends a host from a bundle is that host's entry
/// alone (no other host's name, address or key; a size that does not grow
/// with the fleet), and a host with the bundle key accepts it, but not an
/// altered one.
#[test]
fn bundle_hosts_receive_only_their_own_entry() {
    let lab = Lab::new("sec-disclose", 2);
    let f = &lab.f;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "ops");
    let site = keys.path().join("site.drv");
    build_signed(f, &site, &key);

    let bundle = drover_bundle::Bundle::open_verified(
        &site,
        &drover_bundle::sig_path(&site),
        &drover_bundle::PublicKey::from_file(&public).unwrap(),
    )
    .unwrap();
    let project = drover_spec::Project::load(&f.project()).unwrap();
    let h1 = project.hosts.iter().find(|h| h.name == "h1").unwrap().clone();
    let h2 = project.hosts.iter().find(|h| h.name == "h2").unwrap().clone();
    let manifest = bundle.index.host("h1").unwrap().manifest.clone();
    let source = drover::host::bundle_source::BundleSource { bundle, relay: None };
    let req = source.diff_request(&h1, &manifest, 1);
    let bytes = encode(&req).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for secret_of_h2 in [h2.address.as_str(), h2.host_keys[0].split_whitespace().nth(1).unwrap()] {
        assert!(!text.contains(secret_of_h2), "h1 is sent h2's {secret_of_h2}");
    }
    assert!(text.contains(&h1.address), "h1's own entry is missing");
    let index_len = source.bundle.index_bytes().len();
    assert!(bytes.len() < index_len, "h1 gets {} bytes, the whole index is {index_len}", bytes.len());

    // h1 checks it with its own key and accepts it.
    fs::create_dir_all(f.host_file(0, "/etc/drover")).unwrap();
    fs::copy(&public, f.host_file(0, "/etc/drover/bundle.pub")).unwrap();
    let mut a = lab.agent(0);
    assert!(matches!(a.call(&req), Response::Diff { .. }), "signed statement refused");
    // One byte of the statement changed: refused, by the signature.
    let Request::BundleDiff { mut statement, signature, generation } = req else { panic!("{req:?}") };
    let last = statement.len() - 1;
    statement[last] ^= 1;
    let msg = error_of(a.call(&Request::BundleDiff { statement, signature, generation }));
    assert!(msg.contains("signature check FAILED") && msg.contains("/etc/drover/bundle.pub"), "{msg}");
}

/// With `/etc/drover/bundle.pub` on a host, a plain apply and a rollback are
/// refused (nothing changes), an apply from a bundle signed with that key
/// goes through, and an offline `drover-agent install` works with that key
/// but refuses a `--pubkey` of another signer.
#[test]
fn host_with_bundle_key_takes_changes_only_from_signed_bundles() {
    let lab = Lab::new("sec-optin", 1);
    let f = &lab.f;
    ok(&f.apply_json(&[]));
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "ops");
    let (other_key, other_pub) = keygen(keys.path(), "other");
    fs::create_dir_all(f.host_file(0, "/etc/drover")).unwrap();
    fs::copy(&public, f.host_file(0, "/etc/drover/bundle.pub")).unwrap();
    let motd = fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap();

    fs::write(f.project().join("layers/site/etc/motd"), "unsigned change\n").unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let err = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("only from bundles signed with its key"), "{}", r.stdout);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), motd, "unsigned apply changed the host");
    let r = f.drover(&["rollback", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("a rollback is not one"), "{}", r.stdout);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), motd, "rollback changed the host");

    let site = keys.path().join("site.drv");
    build_signed(f, &site, &key);
    let r = f.apply_json(&["--bundle", site.to_str().unwrap(), "--pubkey", public.to_str().unwrap()]);
    ok(&r);
    assert_eq!(r.hosts()[0]["outcome"], "changed", "{}", r.stdout);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "unsigned change\n");

    // Offline install: the host's key decides.
    fs::write(f.project().join("layers/site/etc/motd"), "from a stick\n").unwrap();
    let stick = f.host_file(0, "/media/usb");
    fs::create_dir_all(&stick).unwrap();
    let usb = stick.join("site.drv");
    build_signed(f, &usb, &key);
    let forged = stick.join("forged.drv");
    build_signed(f, &forged, &other_key);
    fs::copy(&other_pub, stick.join("other.pub")).unwrap();
    let r = lab.run(0, &format!("{AGENT_AT} install /media/usb/forged.drv --pubkey /media/usb/other.pub"));
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("not this host's bundle key") && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    let r = lab.run(0, &format!("{AGENT_AT} install /media/usb/forged.drv"));
    assert!(r.code != 0 && r.stderr.contains("signed by a different key"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "unsigned change\n");
    let r = lab.run(0, &format!("{AGENT_AT} install /media/usb/site.drv"));
    ok(&r);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "from a stick\n");
}

// ---------------------------------------------------------------- item 5

/// The server listens on the host's address only: not on loopback, not on
/// the wildcard address; an address the host does not have is refused.
#[test]
fn relay_listens_only_on_the_address_the_controller_gives() {
    let r = Relay::new("sec-relay-bind", 4);
    let port = RELAY_PORT.to_string();
    let on_loopback = r.lab.peer(0, &["connect", "127.0.0.1", &port]);
    assert!(on_loopback[1].starts_with("refused"), "listens on loopback: {on_loopback:?}");
    let on_address = r.lab.peer(1, &["connect", &r.lab.addr(0), &port]);
    assert_eq!(on_address[1], "connected DROVER-RELAY/2", "{on_address:?}");
    // The kernel's view: one listening socket on the port, bound to h1's address.
    let h = &r.lab.f.lab_hosts()[0];
    let tcp = Command::new("ip").args(["netns", "exec", &h.netns, "cat", "/proc/net/tcp"]).output().unwrap();
    let want_addr = format!("{:08X}:{:04X}", u32::from_le_bytes(h.address.octets()), RELAY_PORT);
    let listening: Vec<String> = String::from_utf8_lossy(&tcp.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(3) == Some(&"0A") && cols[1].ends_with(&format!(":{RELAY_PORT:04X}")))
                .then(|| cols[1].to_string())
        })
        .collect();
    assert_eq!(listening, vec![want_addr], "listening sockets on the relay port");

    // Told to listen on an address that is not the host's: no server, and
    // the controller hears why (the host still gets blobs, it is just no
    // source).
    let mut a = r.lab.agent(0);
    let req = Request::RelayServe {
        bind: r.lab.addr(1),
        port: RELAY_PORT + 1,
        secret: r.secret.clone(),
        blobs: vec![r.hash],
        idle_ms: 10_000,
        max_conns: 4,
    };
    let msg = error_of(a.call(&req));
    assert!(msg.contains("relay server did not start") && msg.contains(&r.lab.addr(1)), "{msg}");
}

/// A peer without the secret (`op` on h2) is refused and the refusal is
/// logged with its address; `op` on h1 cannot read the secret where it is
/// kept; h2's agent with the secret gets the blob.
#[test]
fn relay_refuses_a_wrong_secret_and_logs_it() {
    let r = Relay::new("sec-relay-wrong", 4);
    let out = r.lab.peer(1, &["wrong", &r.lab.addr(0), &RELAY_PORT.to_string(), &r.hash.to_hex()]);
    assert!(out[1].starts_with("challenge DROVER-RELAY/2 "), "{out:?}");
    assert_eq!(out[2], "reply ERR not authorised", "{out:?}");
    let log = r.log();
    assert!(log.contains(&format!(" {}:", r.lab.addr(1))) && log.contains("refused: wrong secret"), "log: {log}");
    // The secret at rest, and the log, are root's alone.
    let relay_dir = r.lab.f.host_file(0, "/var/lib/drover/relay");
    let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(relay_dir.clone()), 0o700);
    assert_eq!(mode(relay_dir.join(format!("{RELAY_PORT}.json"))), 0o600);
    assert_eq!(mode(relay_dir.join(format!("{RELAY_PORT}.log"))), 0o600);
    let peek = r
        .lab
        .run(0, &format!("setpriv --reuid=op --regid=op --init-groups cat /var/lib/drover/relay/{RELAY_PORT}.json"));
    assert!(peek.code != 0 && !peek.stdout.contains(&r.secret), "op read the grant: {}", peek.stdout);

    // The agent's own client, with a wrong secret, then the right one.
    let msg = error_of(r.fetch_from_h2(&random_hex(32)));
    assert!(msg.contains("not authorised"), "{msg}");
    assert!(matches!(r.fetch_from_h2(&r.secret), Response::RelayFetched { blobs: 1, .. }));
    let got = fs::read(r.lab.f.host_file(1, &format!("/var/lib/drover/blobs/{}", r.hash.to_hex()))).unwrap();
    assert!(got == r.blob, "relayed blob differs");
}

/// What crosses the network is a one-time answer, never the secret: the
/// agent's client answers a challenge with a MAC (checked here, by a server
/// the test runs), and an answer that worked once, replayed by `op` on h2 on
/// a new connection, is refused and logged as a replay.
#[test]
fn relay_answers_are_one_time_macs_and_a_replay_is_refused() {
    use drover_agent::relay::auth;
    let r = Relay::new("sec-relay-replay", 4);

    // The real client against a server of ours on the lab's gateway.
    let gw = drover_lab::Lab::open("sec-relay-replay").unwrap().gateway();
    let listener = std::net::TcpListener::bind((gw, 0)).unwrap();
    let fake = format!("{gw}:{}", listener.local_addr().unwrap().port());
    let nonce = auth::nonce().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        writeln!(s, "{} {}", auth::PROTO, auth::hex(&nonce)).unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
        writeln!(s, "ERR test over").unwrap();
        line
    });
    let mut a = r.lab.agent(1);
    let req = Request::RelayFetch { peer: fake, secret: r.secret.clone(), blobs: vec![(r.hash, r.blob.len() as u64)] };
    let _ = a.call(&req);
    let sent = server.join().unwrap();
    assert!(!sent.contains(&r.secret), "the secret crossed the network: {sent}");
    let want = format!("{} 0 {}\n", r.hash.to_hex(), auth::hex(&auth::mac(&r.secret, &nonce, &r.hash, 0)));
    assert_eq!(sent, want, "the client's answer is not the MAC of this challenge");

    // A legitimate transfer (this test holds the secret), whose answer an
    // eavesdropper keeps.
    let s = std::net::TcpStream::connect(r.server()).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut challenge = String::new();
    rd.read_line(&mut challenge).unwrap();
    let n = auth::unhex::<16>(challenge.trim().split_once(' ').unwrap().1).unwrap();
    let answer = format!("{} 0 {}", r.hash.to_hex(), auth::hex(&auth::mac(&r.secret, &n, &r.hash, 0)));
    writeln!(&s, "{answer}").unwrap();
    let mut reply = String::new();
    rd.read_line(&mut reply).unwrap();
    assert_eq!(reply.trim(), format!("OK {}", r.blob.len()));
    let mut body = Vec::new();
    rd.read_to_end(&mut body).unwrap();
    assert!(body == r.blob, "legitimate transfer differs");

    let mut args = vec!["replay".to_string(), r.lab.addr(0), RELAY_PORT.to_string()];
    args.extend(answer.split(' ').map(String::from));
    let out = r.lab.peer(1, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out[2], "reply ERR not authorised", "{out:?}");
    let log = r.log();
    assert!(log.contains(&format!(" {}:", r.lab.addr(1))) && log.contains("refused: replayed answer"), "log: {log}");
}

/// With `max_conns` 2, `op` on h2 holding two connections gets `ERR busy` on
/// a third (logged); once they close, a transfer goes through again.
#[test]
fn relay_caps_concurrent_connections() {
    let r = Relay::new("sec-relay-cap", 2);
    let out = r.lab.peer(1, &["flood", &r.lab.addr(0), &RELAY_PORT.to_string(), "2"]);
    assert_eq!(out[1..], ["held DROVER-RELAY/2", "held DROVER-RELAY/2", "extra ERR busy"], "{out:?}");
    assert!(r.log().contains("refused: busy (2 connections, the cap)"), "log: {}", r.log());
    // The held connections are gone with the script; the slots are free.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(matches!(r.fetch_from_h2(&r.secret), Response::RelayFetched { blobs: 1, .. }));
}

// ---------------------------------------------------------------- item 6

/// `op` on a host prepares `/tmp/evil/current` → `/etc/shadow`; a service
/// name that climbs out of `/var/log/drover` to it is refused by the
/// controller before any host is contacted, and by the agent itself (before
/// the check, the agent sent `/etc/shadow`'s lines).
#[test]
fn logs_refuses_a_service_name_that_is_a_path() {
    let lab = Lab::new("sec-logs", 1);
    // The quickstart's service makes /var/log/drover exist, so a name that
    // climbs out of it resolves.
    ok(&lab.f.apply_json(&[]));
    let r = lab.run(0, "setpriv --reuid=op --regid=op --init-groups /bin/sh -c 'mkdir -p /tmp/evil && ln -sf /etc/shadow /tmp/evil/current && id -u'");
    ok(&r);
    assert_ne!(r.stdout.trim(), "0");
    let name = "../../../tmp/evil";

    let r = lab.f.drover(&["logs", name]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("bad service name") && !r.stdout.contains("root:"), "{}\n{}", r.stdout, r.stderr);

    let mut a = lab.agent(0);
    let req = Request::Logs { service: name.into(), lines: 10, since_ms: None, follow: false };
    let msg = error_of(a.call(&req));
    assert!(msg.contains("bad service name"), "{msg}");
}

// ---------------------------------------------------------------- item 7

/// The scaffold's .gitignore keeps password inventories and signing keys out
/// of git (but not files in layers), and `drover init` says so.
#[test]
fn init_ignores_password_inventories_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let proj = d.path().join("p");
    let r = Run::from(Command::new(DROVER).arg("init").arg(&proj).output().unwrap());
    ok(&r);
    assert!(r.stdout.contains("inventory.csv") && r.stdout.contains("passwords"), "{}", r.stdout);
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(&proj).args(args).output().unwrap();
    assert!(git(&["init", "-q"]).status.success());
    fs::write(proj.join("inventory.csv"), "10.0.0.1,op,hunter2\n").unwrap();
    fs::write(proj.join("ops.key"), "secret").unwrap();
    fs::create_dir_all(proj.join("layers/site/srv/data")).unwrap();
    fs::write(proj.join("layers/site/srv/data/table.csv"), "a,b\n").unwrap();
    for (path, ignored) in [("inventory.csv", true), ("ops.key", true), ("layers/site/srv/data/table.csv", false)] {
        assert_eq!(git(&["check-ignore", "-q", path]).status.success(), ignored, "{path}");
    }
}

fn fingerprint_by_ssh_keygen(f: &Fleet, i: usize) -> String {
    let pubkey = f.host_file(i, "/etc/ssh/ssh_host_ed25519_key.pub");
    let out = Command::new("ssh-keygen").arg("-lf").arg(&pubkey).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

/// `trust --expect FILE` pins a host whose key is listed, refuses (exit 2,
/// not pinned, file and line named) one presenting another key or missing
/// from the file, and a malformed file stops it before any host.
#[test]
fn trust_expect_pins_only_listed_fingerprints() {
    let lab = Lab::new("sec-trust", 2);
    let f = &lab.f;
    let proj = f.project();
    fs::remove_file(proj.join("inventory.toml")).unwrap();
    let csv = drover_lab::Lab::open("sec-trust").unwrap().inventory_csv();
    fs::write(proj.join("inventory.csv"), csv).unwrap();
    let (a1, a2) = (lab.addr(0), lab.addr(1));
    let fp1 = fingerprint_by_ssh_keygen(f, 0);
    let wrong = fingerprint_by_ssh_keygen(f, 1).replace("SHA256:", "SHA256:x").chars().take(50).collect::<String>();
    let expect = proj.join("expected-fingerprints");
    fs::write(&expect, format!("# from the consoles\n{a1} {fp1}\n{a2} {wrong}\n")).unwrap();

    let r = f.drover(&["trust", "--expect", expect.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&a1) && r.stdout.contains(&fp1) && r.stdout.contains("pinned"), "{}", r.stdout);
    assert!(r.stderr.contains(&format!("{a2}: not pinned")) && r.stderr.contains("does NOT match"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{}:3", expect.display())), "{}", r.stderr);
    let known = fs::read_to_string(proj.join("known_hosts")).unwrap();
    assert!(known.contains(&a1) && !known.contains(&a2), "{known}");

    fs::write(&expect, format!("{a1} {fp1}\n")).unwrap();
    let r = f.drover(&["trust", "--expect", expect.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("{a2}: not pinned")) && r.stderr.contains("no fingerprint for this host"),
        "{}",
        r.stderr
    );
    assert!(!fs::read_to_string(proj.join("known_hosts")).unwrap().contains(&a2));

    fs::write(&expect, format!("{a1} {fp1}\n{a2} MD5:12:34\n")).unwrap();
    let r = f.drover(&["trust", "--expect", expect.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("{}:2", expect.display())) && r.stderr.contains("SHA256"), "{}", r.stderr);
}
