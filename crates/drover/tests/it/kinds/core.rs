//! The core scenarios, written once, run on one host of any kind.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::{curl, Fleet};

use super::{get, prepend};

/// How long a host of this kind may take for what waits on time (an
/// emulated arm64 host boots and logs in several times slower).
pub struct Pace {
    pub confirm: &'static str,
    pub reboot: &'static str,
    pub reboot_confirm: &'static str,
}

pub const NATIVE: Pace = Pace { confirm: "4s", reboot: "60s", reboot_confirm: "8s" };
pub const EMULATED: Pace = Pace { confirm: "15s", reboot: "240s", reboot_confirm: "30s" };

/// Binds the port web holds: dies at once, every time its supervisor
/// starts it again (busybox only: no python on minimal hosts).
const SQUATTER: &str = "command = \"echo api: starting; exec busybox httpd -f -p 8080 -h /srv/site\"\n\
[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 5\ninterval = \"300ms\"\n";

/// Every core scenario on host `i` of `f`, in one pass so the suite pays
/// for one host of each kind:
/// - apply: web runs, healthy, serves its page; a second apply is a no-op;
/// - a template change restarts web (a new pid), an unrelated file restarts
///   nothing;
/// - `drover logs web` has what web printed, once per start;
/// - packages: `sl` and what the host lacks, locked for the host's own
///   target (its architecture) and installed by dpkg;
/// - a crash-looping service fails its gate although its probe reaches web:
///   rolled back, exit 2, with the supervisor's state and the log line;
/// - drain stops the services and apply skips the host; undrain starts them;
/// - a change that locks the controller out reverts itself;
/// - `apply --reboot` of a generation that breaks SSH after the boot comes
///   back on the previous generation by itself.
pub fn core_scenarios(f: &Fleet, i: usize, pace: &Pace) {
    let host = f.lab_hosts()[i].name.clone();
    let address = f.lab_hosts()[i].address;
    let p = f.project();
    let svc = p.join("services/web.toml");
    let text = fs::read_to_string(&svc).unwrap();
    let logging = "command = \"echo hello from $(hostname); exec busybox httpd -f -p 8080 -h /srv/site\"";
    fs::write(&svc, text.replace("command = \"busybox httpd -f -p 8080 -h /srv/site\"", logging)).unwrap();
    let layer = p.join("layers/site");
    let role = p.join("roles/site.toml");

    // Apply.
    let h = &f.apply_ok()[0];
    assert_eq!((h["outcome"].as_str(), h["restarts"].clone()), (Some("changed"), serde_json::json!(["web"])), "{h}");
    let page = curl(&format!("http://{address}:8080/"));
    assert!(page.contains(&format!("host: {host}")) && page.contains("generation: 1"), "{page}");
    let web_pid = f.service_pid(i, "web");
    assert!(!web_pid.is_empty(), "no pid for web");
    let st: serde_json::Value = serde_json::from_str(&f.drover(&["status", "--json"]).stdout).unwrap();
    let web = st[0]["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap().clone();
    assert_eq!((web["state"].as_str(), web["healthy"].as_bool()), (Some("running"), Some(true)), "{web:#}");
    assert_eq!(web["pid"].to_string(), web_pid, "{web:#}");
    assert_eq!(f.apply_ok()[0]["outcome"], "unchanged");

    // Restart on change, nothing for an unrelated file.
    let tpl = layer.join("srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    assert_eq!(f.apply_ok()[0]["restarts"], serde_json::json!(["web"]));
    let restarted = f.service_pid(i, "web");
    assert!(!restarted.is_empty() && restarted != web_pid, "web was not restarted ({web_pid} → {restarted})");
    fs::write(layer.join("etc/motd"), "new motd\n").unwrap();
    assert_eq!(f.apply_ok()[0]["restarts"], serde_json::json!([]));
    assert_eq!(f.service_pid(i, "web"), restarted, "web restarted for an unrelated file");
    assert_eq!(fs::read_to_string(f.host_file(i, "/etc/motd")).unwrap(), "new motd\n");

    // Logs: one hello per start of web.
    let r = f.drover(&["logs", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hellos = r.stdout.lines().filter(|l| l.ends_with(&format!("hello from {host}"))).count();
    assert_eq!(hellos, 2, "{}", r.stdout);

    // Packages for the host's own architecture.
    prepend(&role, "packages = [\"sl\"]\n");
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    let arch = f.host_sh(i, "uname -m");
    let want = drover_spec::lock::dpkg_arch(&arch).to_string();
    let lock: toml::Table = toml::from_str(&fs::read_to_string(p.join("packages.lock")).unwrap()).unwrap();
    let target = lock["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"].as_str() == Some(&format!("debian-12-{want}")))
        .unwrap_or_else(|| panic!("no debian-12-{want} target in the lock: {lock}"));
    let names: Vec<&str> = target["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"sl"), "{names:?}");
    let status = f.host_sh(i, "dpkg-query -W -f '${Status} ${Architecture}' sl");
    assert_eq!(status, format!("install ok installed {want}"));
    assert!(f.host_file(i, "/usr/games/sl").is_file(), "sl's files are installed");

    // The health gate: a crash loop whose probe reaches web.
    fs::write(p.join("services/api.toml"), SQUATTER).unwrap();
    let with_web = fs::read_to_string(&role).unwrap();
    fs::write(&role, with_web.replace("services = [\"web\"]", "services = [\"web\", \"api\"]")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "a service that does not run must fail the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h:#}");
    assert_eq!(h["failure"]["service"], "api", "{h:#}");
    assert!(h["failure"]["log"].to_string().contains("api: starting"), "{h:#}");
    assert!(h["error"].as_str().unwrap().contains("supervisor: "), "{h:#}");
    assert!(f.service_pid(i, "api").is_empty(), "the rollback stops api again");
    fs::write(&role, with_web).unwrap();
    fs::remove_file(p.join("services/api.toml")).unwrap();
    let generation = f.apply_ok()[0]["generation"].as_u64().unwrap();

    // Drain and undrain.
    assert_eq!(f.drover(&["drain", &host, "--reason", "disk swap"]).code, 0);
    assert!(f.service_pid(i, "web").is_empty(), "a drained host's service must not run");
    let r = f.apply_json(&[]);
    assert!(r.code == 0 && r.stderr.contains(&format!("skipping {host}: drained")), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(f.drover(&["undrain", &host]).code, 0);
    assert!(!f.service_pid(i, "web").is_empty(), "undrain must start web again");
    assert!(curl(&format!("http://{address}:8080/")).contains("<h1>v2 "));

    // A lockout reverts itself.
    let keys = f.lock_root_out(i, &layer);
    let r = f.apply_json(&["--confirm-timeout", pace.confirm]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert!(h["outcome"] == "failed" && h["error"].as_str().unwrap().contains("reverts it by itself"), "{h}");
    f.wait_keys_restored(i, &keys);
    fs::remove_dir_all(layer.join("root")).unwrap();
    let h = &f.apply_ok()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("unchanged"), Some(generation)), "{h}");

    // A generation that breaks SSH only after a reboot comes back by itself.
    f.host_sh(i, "touch /run/before-boot");
    let dropin = layer.join("etc/ssh/sshd_config.d/zz-moved.conf");
    fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    fs::write(&dropin, "Port 2222\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", pace.reboot_confirm, "--reboot-timeout", pace.reboot]);
    eprintln!("{host}: rolled back across two reboots in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(r.code, 2, "a rolled-back host fails the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(
        (h["outcome"].as_str(), h["rebooted"].as_bool(), h["generation"].as_u64()),
        (Some("rolled-back"), Some(true), Some(generation)),
        "{h}"
    );
    assert!(!f.host_file(i, "/etc/ssh/sshd_config.d/zz-moved.conf").exists(), "the drop-in is still there");
    assert_eq!(f.host_sh(i, "test -e /run/before-boot && echo same-boot || echo rebooted"), "rebooted");
    fs::remove_dir_all(layer.join("etc/ssh")).unwrap();
    let start = Instant::now();
    while !get(&format!("http://{address}:8080/")).is_some_and(|page| page.contains("<h1>v2 ")) {
        assert!(start.elapsed() < Duration::from_secs(60), "web did not come back after the boots");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
