//! Rollouts that resume safely, driven through the real binary against
//! simulated hosts (`--simulate DIR`: one real agent process per connection,
//! each host a directory; no lab needed): a resume after the controller died
//! refuses a changed project (naming both revisions) unless forced; `pause`
//! and `resume` work on a resumed rollout; `--op-timeout` and `--retries`
//! are honoured.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Run, DROVER};

struct Sim {
    _tmp: tempfile::TempDir,
    proj: PathBuf,
    hosts: PathBuf,
}

impl Sim {
    /// A quickstart project of `n` simulated hosts s1..sn with a rollout
    /// policy, applied once (every host on generation 1).
    fn new(n: usize, policy: &str) -> Sim {
        let tmp = tempfile::tempdir().unwrap();
        let proj = crate::support::sim_project(tmp.path(), n);
        // No health check: simulated hosts run no services, and a rollout
        // re-checks health after each batch.
        fs::write(
            proj.join("services/web.toml"),
            "command = \"busybox httpd -f -p 8080 -h /srv/site\"\nrestart-on = [\"/srv/site/**\"]\n",
        )
        .unwrap();
        let role = proj.join("roles/site.toml");
        fs::write(&role, format!("{}\n[rollout]\n{policy}\n", fs::read_to_string(&role).unwrap())).unwrap();
        let s = Sim { hosts: tmp.path().join("hosts"), proj, _tmp: tmp };
        let r = s.drover(&["apply", "--json"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        s
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(&self.proj).args(args).arg("--simulate").arg(&self.hosts).stdin(Stdio::null());
        c
    }

    fn drover(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Without `--simulate` (pause, abort and status take none).
    fn plain(&self, args: &[&str]) -> Run {
        Run::from(Command::new(DROVER).arg("-C").arg(&self.proj).args(args).stdin(Stdio::null()).output().unwrap())
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn root(&self, host: &str) -> PathBuf {
        self.hosts.join(host)
    }

    fn generation(&self, host: &str) -> u64 {
        let s = fs::read_to_string(self.root(host).join("var/lib/drover/state.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["current"].as_u64().unwrap_or(0)
    }

    fn page(&self, host: &str) -> String {
        fs::read_to_string(self.root(host).join("srv/site/index.html")).unwrap()
    }

    fn template(&self, tag: &str) {
        let tpl = self.proj.join("layers/site/srv/site/index.html.j2");
        fs::write(tpl, format!("{tag} {{{{ host.name }}}}\n")).unwrap();
    }

    /// Wait until the stored rollout has finished `n` batches.
    fn wait_batches(&self, n: u64) {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(90), "the rollout never finished {n} batches");
            let st = self.plain(&["rollout", "status", "--json"]);
            let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_default();
            if v[0]["next_batch"].as_u64() == Some(n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

/// Start a rollout of template `tag` and SIGKILL its controller in the delay
/// after batch 1. Returns the revision the rollout recorded, if any.
fn start_and_kill(s: &Sim, tag: &str) -> Option<String> {
    s.template(tag);
    let mut first = s.spawn(&["rollout", "start"]);
    s.wait_batches(1);
    first.kill().unwrap();
    first.wait().unwrap();
    let st = s.plain(&["rollout", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v[0]["status"], "running", "{}", st.stdout);
    v[0]["revision"].as_str().map(String::from)
}

#[test]
fn resume_after_controller_death_refuses_a_changed_project_naming_both_revisions_unless_forced() {
    let s = Sim::new(6, "batch = 2\ndelay = \"3s\"\n");
    let rev = start_and_kill(&s, "v2").expect("the rollout must record its project revision");
    assert!(rev.starts_with("inputs:"), "{rev}");

    // The project changed since: the rest of the fleet would get something
    // other than batch 1 got. Refused (exit 3), naming both revisions.
    s.template("v3");
    let r = s.drover(&["rollout", "resume"]);
    assert_eq!(r.code, 3, "a changed project must be refused: {}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("started at project revision {rev}, but the project is now at inputs:")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    let st = s.plain(&["rollout", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!((v[0]["status"].as_str(), v[0]["next_batch"].as_u64()), (Some("running"), Some(1)), "left as it was");
    assert_eq!((s.generation("s3"), s.generation("s4")), (1, 1), "batch 2 must be untouched");

    // Forced: batches 2 and 3 get the project as it is now, and it says so.
    let r = s.drover(&["rollout", "resume", "--force", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--force") && r.stderr.contains(&rev), "forcing must say what it does: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["batches"][0]["index"].as_u64()), (Some("done"), Some(1)), "{}", r.stdout);
    for (h, want) in [("s1", "v2 s1"), ("s2", "v2 s2"), ("s3", "v3 s3"), ("s6", "v3 s6")] {
        assert_eq!((s.generation(h), s.page(h).trim()), (2, want), "{h}");
    }
}

#[test]
fn pause_and_resume_work_on_a_resumed_rollout() {
    let s = Sim::new(6, "batch = 2\ndelay = \"3s\"\n");
    start_and_kill(&s, "v2");
    // Same project: no --force needed, and no warning.
    let resumed = s.spawn(&["rollout", "resume", "--json"]);
    s.wait_batches(2);
    // Pause the resumed rollout in its delay: batch 3 must wait.
    let p = s.plain(&["rollout", "pause"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!((s.generation("s5"), s.generation("s6")), (1, 1), "a paused rollout went on");
    // Resume talks to the live, resumed controller (not the dead first one).
    let r = s.drover(&["rollout", "resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("resumed (its controller"), "{}", r.stdout);
    let out = finish(resumed);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("--force"), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    for h in ["s1", "s3", "s5", "s6"] {
        assert_eq!((s.generation(h), s.page(h).trim()), (2, format!("v2 {h}").as_str()), "{h}");
    }
}

/// A host whose agent cannot answer (another session holds its lock, so the
/// agent's hello waits) costs `--op-timeout` per attempt, `--retries` + 1
/// attempts, not the defaults (60 s, 4 attempts).
#[test]
fn rollout_honours_op_timeout_and_retries() {
    let s = Sim::new(1, "batch = 1\n");
    s.template("v2");
    let lock = fs::File::options().write(true).open(s.root("s1").join("var/lib/drover/lock")).unwrap();
    lock.lock().unwrap();
    let start = Instant::now();
    let r = s.drover(&["rollout", "start", "--json", "--op-timeout", "1s", "--retries", "1"]);
    let took = start.elapsed();
    drop(lock);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    let host = &v["batches"][0]["reports"][0];
    assert_eq!(host["attempts"], 2, "--retries 1 is two attempts: {host}");
    assert!(host["error"].as_str().unwrap_or("").contains("1s"), "the timeout is named: {host}");
    assert!(took < Duration::from_secs(20), "took {took:?}: --op-timeout 1s not honoured");
    assert_eq!(s.generation("s1"), 1);
    assert!(!Path::new(&s.root("s1").join("var/lib/drover/pending.json")).exists());
}

/// A paused rollout whose controller died holds its hosts: `rollout status`
/// says it is orphaned, a plain `apply` of its hosts is refused (exit 3)
/// naming the rollout, its standing, `rollout resume/abort` and `--force`,
/// and with `--force` the apply goes ahead. Before, the apply was accepted
/// without a word while `rollout status` still said "paused".
#[test]
fn a_paused_rollout_whose_controller_died_holds_its_hosts_against_plain_apply_unless_forced() {
    let s = Sim::new(4, "batch = 2\ndelay = \"3s\"\n");
    // A short run lease, so the dead controller is known gone quickly.
    let toml = s.proj.join("drover.toml");
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(&toml, format!("{text}\n[state]\nlock-lease = \"1s\"\n")).unwrap();
    s.template("v2");
    let mut controller = s.spawn(&["rollout", "start"]);
    s.wait_batches(1);
    let p = s.plain(&["rollout", "pause"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    controller.kill().unwrap();
    controller.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let st = s.plain(&["rollout", "status"]);
    assert!(st.stdout.contains("orphaned (was paused; its controller is gone)"), "{}", st.stdout);
    let st = s.plain(&["rollout", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!((v[0]["status"].as_str(), v[0]["orphaned"].as_bool()), (Some("paused"), Some(true)), "{}", st.stdout);
    let id = v[0]["rollout"].as_i64().unwrap();

    s.template("v3");
    let r = s.drover(&["apply", "--json", "--hosts", "s3"]);
    assert_eq!(r.code, 3, "a held host must be refused: {}\n{}", r.stdout, r.stderr);
    for want in [
        &format!("rollout {id} is orphaned (was paused"),
        "s3",
        "drover rollout resume",
        "drover rollout abort",
        "--force",
    ] {
        assert!(r.stderr.contains(want), "{want:?} missing: {}", r.stderr);
    }
    assert_eq!(s.generation("s3"), 1, "a refused apply must not touch the host");
    let r = s.drover(&["rollback", "--json", "--hosts", "s1"]);
    assert_eq!(r.code, 3, "a plain rollback is held too: {}\n{}", r.stdout, r.stderr);

    let r = s.drover(&["apply", "--json", "--hosts", "s3", "--force"]);
    assert_eq!(r.code, 0, "--force must go ahead: {}\n{}", r.stdout, r.stderr);
    assert_eq!((s.generation("s3"), s.page("s3").trim()), (2, "v3 s3"));
}
