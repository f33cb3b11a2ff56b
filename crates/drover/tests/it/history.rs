//! What the CLI records and shows of the past: `drover history` (a command
//! column, plan runs left out unless asked for with `--plans`, a multi-line
//! error as one table line, whole in `--json`) and a drain's reason in the
//! audit log. Simulated hosts: the record is the point, not the transport.

use crate::support::{drover_in, ok, sim_project};

/// What a dpkg failure looks like in a host's result: many lines.
const DPKG: &str = "dpkg: error processing package perl (--configure):\n dependency problems - leaving unconfigured\nErrors were encountered while processing:\n perl";

#[test]
fn history_has_a_command_column_leaves_plans_out_unless_asked_and_keeps_multi_line_errors_to_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let proj = sim_project(dir.path(), 2);
    let hosts = dir.path().join("hosts");
    let sim = hosts.to_str().unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    // A plan with something to do (its rows say `planned`).
    std::fs::write(proj.join("layers/site/etc/motd"), "planned, never applied\n").unwrap();
    ok(&drover_in(&proj, &["plan", "--simulate", sim, "--sim-failure-rate", "0"]));
    // A failed apply on s2 with dpkg's many lines (recorded as a run records it).
    let mut store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    let run = store
        .begin_run(&drover_state::NewRun {
            command: "apply".into(),
            args: "apply".into(),
            user: "mallory".into(),
            project_rev: "r-dpkg".into(),
        })
        .unwrap();
    let failed = drover_state::HostResult {
        run_id: run,
        host: "s2".into(),
        outcome: drover_state::Outcome::Failed,
        generation: None,
        changes: 0,
        bytes_sent: 0,
        files_written: 0,
        duration_ms: 5,
        error: Some(DPKG.into()),
        detail: "{}".into(),
        at_ms: drover_state::now_ms(),
    };
    store.record_host(&failed).unwrap();
    store.finish_run(run, drover_state::RunStatus::Failed).unwrap();
    let runs = store.runs(10).unwrap();
    let plan = runs.iter().find(|r| r.command == "plan").expect("the plan was recorded as a run").id;

    let t = drover_in(&proj, &["history"]);
    ok(&t);
    let lines: Vec<&str> = t.stdout.lines().collect();
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(head[..4], ["RUN", "HOST", "COMMAND", "OUTCOME"], "{}", t.stdout);
    // Two hosts of the apply and the failed host: the plan is not a deploy.
    assert_eq!(lines.len(), 1 + 2 + 1, "{}", t.stdout);
    assert!(!t.stdout.contains("planned"), "no plan rows by default:\n{}", t.stdout);
    for l in &lines[1..] {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[2], "apply", "the command column: {l}");
        assert_ne!(f[0], plan.to_string(), "{l}");
    }
    let row = lines.iter().find(|l| l.contains("mallory")).unwrap_or_else(|| panic!("{}", t.stdout));
    assert!(row.ends_with("dpkg: error processing package perl (--configure): …"), "first line and …: {row}");
    assert!(!t.stdout.contains("dependency problems") && !t.stdout.contains("Errors were"), "{}", t.stdout);

    let all = drover_in(&proj, &["history", "--plans"]);
    ok(&all);
    let plans: Vec<&str> =
        all.stdout.lines().filter(|l| l.split_whitespace().next() == Some(&*plan.to_string())).collect();
    assert_eq!(plans.len(), 2, "both hosts' plan rows with --plans:\n{}", all.stdout);
    for l in plans {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!((f[2], f[3]), ("plan", "planned"), "marked as a plan: {l}");
    }

    let j = drover_in(&proj, &["history", "--json"]);
    ok(&j);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v:#}");
    assert!(rows.iter().all(|r| r["command"] == "apply" && r["run"] != plan), "{v:#}");
    let r = rows.iter().find(|r| r["run"] == run).unwrap();
    assert_eq!(r["error"], DPKG, "the whole text in --json");
    assert_eq!((r["user"].as_str(), r["project_rev"].as_str()), (Some("mallory"), Some("r-dpkg")));
    let j = drover_in(&proj, &["history", "--json", "--plans", "--limit", "2"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "--limit counts rows shown: {v:#}");
    let j = drover_in(&proj, &["history", "--json", "--plans"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().iter().filter(|r| r["command"] == "plan").count(), 2, "{v:#}");
}

#[test]
fn a_drains_reason_is_written_to_the_audit_log_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let proj = sim_project(dir.path(), 2);
    let sim = dir.path().join("hosts");
    let sim = sim.to_str().unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    ok(&drover_in(&proj, &["drain", "s1", "--reason", "disk swap, ticket 7", "--simulate", sim]));
    ok(&drover_in(&proj, &["undrain", "s1", "--simulate", sim]));
    let store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    let log = store.audit_log(10).unwrap();
    let got: Vec<(&str, &str)> = log.iter().take(2).map(|a| (a.command.as_str(), a.args.as_str())).collect();
    assert_eq!(got, [("undrain", "s1"), ("drain", "s1 --reason 'disk swap, ticket 7'")], "{log:#?}");
}
