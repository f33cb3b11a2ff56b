//! Issue #24, "day one on a real fleet": what an operator coming from
//! Ansible met first, each as they met it, on simulated hosts (the lab-host
//! halves are in `day2`).

use std::fs;
use std::path::Path;

use crate::support::{drover_in, init_project, ok, sim_project, Run};

fn sim(proj: &Path, hosts: &Path, args: &[&str]) -> Run {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--simulate", hosts.to_str().unwrap()]);
    if args[0] == "apply" || args[0] == "rollback" {
        a.extend(["--sim-latency", "0", "--sim-failure-rate", "0", "--confirm-timeout", "0s"]);
    }
    drover_in(proj, &a)
}

fn add_vars(proj: &Path, vars: &str) {
    let p = proj.join("drover.toml");
    let t = fs::read_to_string(&p).unwrap().replacen("[vars]\n", &format!("[vars]\n{vars}"), 1);
    fs::write(p, t).unwrap();
}

/// Item 3: `{"release": "{{ release }}"}` in a `.json.j2` rendered
/// `""1.0""` (minijinja escapes by extension). Every extension renders
/// text exactly; `| tojson` is how a template asks for JSON.
#[test]
fn json_yaml_and_html_templates_render_exactly_and_render_prints_what_apply_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 1);
    add_vars(&proj, "release = \"1.0\"\npeers = [\"a\", \"b\"]\nmotto = \"<fast> & \\\"safe\\\"\"\n");
    let app = proj.join("layers/site/etc/app");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("config.json.j2"), "{\"release\": \"{{ release }}\", \"peers\": {{ peers | tojson }}}\n")
        .unwrap();
    fs::write(app.join("app.yaml.j2"), "motto: '{{ motto }}'\n").unwrap();
    fs::write(app.join("page.html.j2"), "<p>{{ motto }}</p><p>{{ motto | e }}</p>\n").unwrap();

    let json = drover_in(&proj, &["render", "s1", "/etc/app/config.json"]);
    ok(&json);
    assert_eq!(json.stdout, "{\"release\": \"1.0\", \"peers\": [\"a\",\"b\"]}\n");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["release"], "1.0");
    let yaml = drover_in(&proj, &["render", "s1", "/etc/app/app.yaml"]);
    assert_eq!(yaml.stdout, "motto: '<fast> & \"safe\"'\n");
    let html = drover_in(&proj, &["render", "s1", "/etc/app/page.html"]);
    assert!(html.stdout.starts_with("<p><fast> & \"safe\"</p><p>&lt;fast&gt; &amp; "), "{}", html.stdout);

    let hosts = tmp.path().join("hosts");
    ok(&sim(&proj, &hosts, &["apply"]));
    for (path, r) in [("etc/app/config.json", &json), ("etc/app/app.yaml", &yaml), ("etc/app/page.html", &html)] {
        assert_eq!(fs::read_to_string(hosts.join("s1").join(path)).unwrap(), r.stdout, "{path}");
    }

    let typo = drover_in(&proj, &["render", "s1", "/etc/app/conf.json"]);
    assert_eq!(typo.code, 1);
    assert!(typo.stderr.contains("did you mean /etc/app/app.yaml, /etc/app/config.json"), "{}", typo.stderr);
    let nohost = drover_in(&proj, &["render", "s9", "/etc/motd"]);
    assert_eq!(nohost.code, 1);
    assert!(nohost.stderr.contains("no host \"s9\" in the inventory (hosts: s1)"), "{}", nohost.stderr);
}

/// Item 6: a mistyped service is refused before any host is contacted,
/// naming the services there are. The hosts are on loopback ports nothing
/// listens on, so contacting one would fail differently.
#[test]
fn logs_refuses_an_unknown_service_before_contacting_any_host() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("p");
    init_project(&proj);
    fs::write(proj.join("inventory.toml"), "[hosts.h1]\naddress = \"127.0.0.1\"\nport = 9\n").unwrap();
    let r = drover_in(&proj, &["logs", "wbe"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no service or instance \"wbe\" in the project (services: web)"), "{}", r.stderr);
    assert!(!r.stderr.to_lowercase().contains("refused") && r.stdout.is_empty(), "{}", r.stderr);
}

/// Item 6: only the hosts that run the service are asked (the others
/// answered with an error and made `logs` exit 2), and lines sharing a
/// timestamp keep their order (a traceback came out sorted by text).
#[test]
fn logs_asks_only_hosts_running_the_service_and_keeps_each_hosts_line_order() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 2);
    fs::write(proj.join("roles/bare.toml"), "layers = []\n").unwrap();
    let inv = fs::read_to_string(proj.join("inventory.toml")).unwrap();
    fs::write(proj.join("inventory.toml"), inv.replacen("[hosts.s2]\n", "[hosts.s2]\nroles = [\"bare\"]\n", 1))
        .unwrap();
    let hosts = tmp.path().join("hosts");
    ok(&sim(&proj, &hosts, &["apply"]));
    let log = hosts.join("s1/var/log/drover/web/current");
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    fs::write(
        &log,
        "2026-11-22_19:10:00.10000 Traceback (most recent call last):\n\
         2026-11-22_19:10:00.10000   File \"app.py\", line 1\n\
         2026-11-22_19:10:00.10000 ValueError: boom\n",
    )
    .unwrap();
    let r = sim(&proj, &hosts, &["logs", "web"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let texts: Vec<&str> = r.stdout.lines().map(|l| l.splitn(3, "  ").nth(2).unwrap_or(l)).collect();
    assert_eq!(texts, ["Traceback (most recent call last):", "  File \"app.py\", line 1", "ValueError: boom"]);
    assert!(r.stdout.lines().all(|l| l.starts_with("s1  ")), "{}", r.stdout);
    let only_s2 = sim(&proj, &hosts, &["logs", "web", "--hosts", "s2"]);
    assert_eq!(only_s2.code, 1);
    assert!(only_s2.stderr.contains("none of the selected hosts runs web (it runs on s1)"), "{}", only_s2.stderr);
}

/// Item 7: `status --exit-code`, and `behind`: a host whose generation is
/// not what the project compiles now (after a rollback, or a release it
/// has not had yet) says so.
#[test]
fn status_says_behind_after_a_rollback_and_exit_code_tells_scripts() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 2);
    let hosts = tmp.path().join("hosts");
    ok(&sim(&proj, &hosts, &["apply"]));
    let st = sim(&proj, &hosts, &["status", "--exit-code"]);
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    assert!(st.stdout.lines().filter(|l| l.contains(" converged ")).count() == 2, "{}", st.stdout);

    add_vars(&proj, "release = \"2\"\n");
    fs::write(proj.join("layers/site/etc/release.j2"), "{{ release }}\n").unwrap();
    ok(&sim(&proj, &hosts, &["apply"]));
    ok(&sim(&proj, &hosts, &["rollback", "--hosts", "s2"]));
    let st = sim(&proj, &hosts, &["status", "--exit-code", "--json"]);
    assert_eq!(st.code, 2, "{}\n{}", st.stdout, st.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&st.stdout).unwrap();
    let state = |h: &str| rows.iter().find(|r| r["host"] == h).unwrap()["state"].clone();
    assert_eq!((state("s1"), state("s2")), ("converged".into(), "behind".into()));
    // Without the flag, status answers only whether it could look.
    assert_eq!(sim(&proj, &hosts, &["status"]).code, 0);

    // Drift is its own state, and counts for --exit-code too.
    ok(&sim(&proj, &hosts, &["apply"]));
    fs::write(hosts.join("s1/etc/motd"), "edited by hand\n").unwrap();
    let st = sim(&proj, &hosts, &["status", "--exit-code"]);
    assert_eq!(st.code, 2);
    assert!(st.stdout.lines().any(|l| l.starts_with("s1 ") && l.contains(" drifted ")), "{}", st.stdout);
}

/// Item 9: `apply --help` listed --workers, --bundle, --relay and --reboot
/// under "Simulated transport".
#[test]
fn apply_help_groups_flags_under_their_own_headings() {
    let r = crate::support::drover_at(Path::new("/"), &["apply", "--help"]);
    ok(&r);
    // Each flag is under its own heading: the last heading before it.
    let heading_of = |flag: &str| {
        let at = r.stdout.find(&format!("  {flag} ")).unwrap_or_else(|| panic!("{flag} in\n{}", r.stdout));
        let above = &r.stdout[..at];
        above.lines().rev().find(|l| !l.starts_with(' ') && l.ends_with(':')).unwrap_or_default().to_string()
    };
    for (flag, heading) in [
        ("--workers", "Work split across controllers:"),
        ("--bundle", "Bundles and peer relay:"),
        ("--relay", "Bundles and peer relay:"),
        ("--reboot", "Reboots:"),
        ("--simulate", "Simulated transport (with --simulate):"),
        ("--sim-latency", "Simulated transport (with --simulate):"),
    ] {
        assert_eq!(heading_of(flag), heading, "{flag}:\n{}", r.stdout);
    }
}

/// Item 9: `exec nosuch` said `--hosts nosuch`; and `drover init shop`
/// named the project "quickstart".
#[test]
fn a_selector_matching_nothing_names_what_exists_and_init_names_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = sim_project(tmp.path(), 2);
    let r = drover_in(&proj, &["exec", "nosuch", "--", "true"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "no host, group or role named \"nosuch\" in the inventory (hosts: s1, s2; groups: none; roles: site)"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("--hosts"), "{}", r.stderr);
    let shop = tmp.path().join("shop");
    init_project(&shop);
    let toml = fs::read_to_string(shop.join("drover.toml")).unwrap();
    assert!(toml.contains("name = \"shop\"") && !toml.contains("quickstart\""), "{toml}");
}
