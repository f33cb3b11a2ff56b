//! `drover serve` survives a runaway project: a template looping 10,000³
//! times is rendered on a worker of its own, bounded by `[limits]
//! template-steps` and watched by the clock. The page shows a project
//! error, the hosts from the last good pass stay, the pass counter keeps
//! moving, and SIGTERM ends the server within a second even mid-render.

use std::time::{Duration, Instant};

use crate::support::serve::{get_json, simulated, Server};
use crate::support::wait_until;

const LOOP: &str = "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}\
                    {% set x = c %}{% endfor %}{% endfor %}{% endfor %}done\n";

/// A converged simulated fleet under `drover serve`, after its first pass.
fn serving(dir: &std::path::Path) -> (std::path::PathBuf, Server) {
    let (proj, hosts) = simulated(dir, 2);
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);
    wait_until("a first pass, all converged", Duration::from_secs(60), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        (s["counts"]["converged"].as_u64() == Some(2)).then_some(())
    });
    (proj, srv)
}

/// The pass counter moves on while `problem` holds, over several seconds;
/// the hosts stay as the last good pass left them.
fn keeps_passing(srv: &Server, what: &str) -> serde_json::Value {
    let s = wait_until(what, Duration::from_secs(60), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        s["project_error"].as_str().is_some_and(|e| e.contains("template")).then_some(s)
    });
    let pass = s["pass"].as_u64().unwrap();
    let later = wait_until("the pass counter moving", Duration::from_secs(15), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        (s["pass"].as_u64().unwrap() >= pass + 2).then_some(s)
    });
    assert_eq!(later["counts"]["converged"].as_u64(), Some(2), "the last good snapshot is kept: {later:#}");
    assert!(later["problems"].to_string().contains("project"), "{later:#}");
    later
}

#[test]
fn a_runaway_template_under_a_small_step_bound_shows_a_project_error_and_the_last_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, srv) = serving(dir.path());
    let toml = proj.join("drover.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{t}\n[limits]\ntemplate-steps = 100000\n")).unwrap();
    std::fs::write(proj.join("layers/site/etc/loop.j2"), LOOP).unwrap();
    let s = keeps_passing(&srv, "the step bound as a project error");
    let err = s["project_error"].as_str().unwrap();
    assert!(err.contains("loop.j2") && err.contains("100000 template steps"), "{err}");
    // Fixed, the error clears.
    std::fs::remove_file(proj.join("layers/site/etc/loop.j2")).unwrap();
    wait_until("the error cleared", Duration::from_secs(30), || {
        get_json(&srv.addr, "/api/status", &[])["project_error"].is_null().then_some(())
    });
}

#[test]
fn sigterm_ends_serve_within_a_second_while_a_runaway_template_renders() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, mut srv) = serving(dir.path());
    // The default bound (100 million steps): many seconds in a debug build.
    std::fs::write(proj.join("layers/site/etc/loop.j2"), LOOP).unwrap();
    let t = Instant::now();
    let s = keeps_passing(&srv, "the long render named as a project error");
    let err = s["project_error"].as_str().unwrap();
    assert!(err.contains("rendering the project has taken"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let (took, code) = srv.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "exited cleanly after {took:?}");
    // Measured here: about 20 ms (the server's runtime waits 300 ms at most).
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
}
