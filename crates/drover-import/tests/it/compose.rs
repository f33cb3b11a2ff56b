//! docker-compose files imported whole: a hand-written one holding every
//! mapped key, real ones from docker/awesome-compose, their reports, and
//! the generated project loaded by drover's own loader.

use std::fs;
use std::path::{Path, PathBuf};

use drover_import::compose::{import_str, Env, Imported};
use drover_spec::Project;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/compose_data")
}

fn import(file: &str, env: &[(&str, &str)]) -> Imported {
    let text = fs::read_to_string(data().join(file)).unwrap();
    let env: Env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    import_str(file, &text, &env, &data(), "dir").unwrap_or_else(|e| panic!("{}", render(e)))
}

fn render(e: drover_spec::SpecError) -> String {
    let mut s = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut s, &e)
        .unwrap();
    s
}

/// (line, service, key, kept) of every finding.
fn report(imp: &Imported) -> Vec<(String, Option<String>, String, bool)> {
    imp.findings.iter().map(|f| (f.at.clone(), f.service.clone(), f.key.clone(), f.kept)).collect()
}

/// Write the import into a project with one host holding its role, and
/// load it. Registry references cannot load offline (and are refused until
/// drover-oci's sources land in the loader), so each `image = "…"` is
/// replaced by a directory image with a shell, as the compose file's
/// `build:` services are written.
pub fn load(imp: &Imported) -> (tempfile::TempDir, Project) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_path_buf();
    fs::write(d.join("drover.toml"), "[project]\nname = \"t\"\n").unwrap();
    fs::write(d.join("inventory.toml"), format!("[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"{}\"]\n", imp.role))
        .unwrap();
    imp.write(&d, false).unwrap();
    for s in &imp.services {
        let path = d.join(format!("services/{}.toml", s.name));
        let text = fs::read_to_string(&path).unwrap();
        let mut out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("image = \"") {
                    format!("image = {{ dir = \"images/{}\" }}", s.name)
                } else {
                    l.to_string()
                }
            })
            .collect();
        if s.command.is_none() && s.entrypoint.is_none() {
            out.insert(1, "command = [\"/bin/sh\"]".into());
        }
        fs::write(&path, out.join("\n") + "\n").unwrap();
        fs::create_dir_all(d.join(format!("images/{}/bin", s.name))).unwrap();
        fs::write(d.join(format!("images/{}/bin/sh", s.name)), "pretend\n").unwrap();
    }
    let p = Project::load(&d).unwrap_or_else(|e| panic!("{}", render(e)));
    (tmp, p)
}

fn f(at: &str, svc: Option<&str>, key: &str, kept: bool) -> (String, Option<String>, String, bool) {
    (at.into(), svc.map(Into::into), key.into(), kept)
}

#[test]
fn hand_written_app_becomes_the_expected_services_role_and_report() {
    let imp = import("app.yaml", &[("DB_TAG", "16"), ("GREETING", "hi"), ("FROM_SHELL", "sh")]);
    let files: Vec<(String, String)> = imp.files().into_iter().map(|(p, t)| (p.display().to_string(), t)).collect();
    assert_eq!(imp.role, "shop");
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["services/db.toml", "services/web.toml", "services/worker.toml", "roles/shop.toml"]);
    assert_eq!(files[0].1, DB_TOML);
    assert_eq!(files[1].1, WEB_TOML);
    assert_eq!(files[2].1, WORKER_TOML);
    assert_eq!(files[3].1, "# Imported from app.yaml by `drover import compose`: every service of the app.\n# Give hosts this role (roles = [\"shop\"]), or split the services over roles to spread them.\nservices = [\"db\", \"web\", \"worker\"]\n");
    assert_eq!(
        report(&imp),
        vec![
            f("app.yaml:23", Some("db"), "healthcheck.start_period", true),
            f("app.yaml:29", Some("db"), "deploy.resources.limits.cpus", false),
            f("app.yaml:42", Some("web"), "ports", false),
            f("app.yaml:50", Some("web"), "cap_add", false),
            f("app.yaml:51", Some("web"), "networks", false),
            f("app.yaml:52", Some("web"), "logging", false),
            f("app.yaml:58", Some("worker"), "restart", true),
            f("app.yaml:59", Some("worker"), "privileged", false),
            f("app.yaml:63", Some("worker"), "volumes", false),
            f("app.yaml:64", Some("worker"), "volumes", false),
            f("app.yaml:67", Some("worker"), "environment", false),
            f("app.yaml:69", None, "networks.front", false),
            f("app.yaml:72", None, "volumes.dbdata.driver", false),
        ]
    );
    let port = imp.findings.iter().find(|x| x.key == "ports").unwrap();
    assert!(port.why.contains("host's network") && port.why.contains("listen on 80/tcp"), "{}", port.why);
    let (_d, p) = load(&imp);
    assert_eq!(p.hosts.len(), 1);
}

const DB_TOML: &str = r#"# Imported from app.yaml (service db) by `drover import compose`.
# 1 compose setting(s) were not imported; the import listed them.
image = "registry.example/db:16"
user = "999:999"
volumes = ["dbdata:/var/lib/db", "/srv/backup:/backup:ro"]
memory = "512M"
pids = 256

[env]
LOG_LEVEL = "info"

[health]
command = "/bin/sh -c 'test -f /var/lib/db/ready || exit 1'"
interval = "2s"
timeout = "1s"
retries = 10
"#;
const WEB_TOML: &str = r#"# Imported from app.yaml (service web) by `drover import compose`.
# 4 compose setting(s) were not imported; the import listed them.
# answers on the host's port 8080/tcp (host network: no mapping needed)
image = "registry.example/web:1.4"
entrypoint = ["/bin/httpd", "-f"]
command = ["-p", "8080", "-h", "/www"]
workdir = "/www"
after = ["db"]
instances = 2

[env]
DB_HOST = "db"
GREETING = "hi"
SECRET_KEY = "s3 cret"

[health]
command = "wget -q -O /dev/null http://127.0.0.1:8080/"
interval = "30s"
timeout = "30s"
retries = 3
"#;
const WORKER_TOML: &str = r#"# Imported from app.yaml (service worker) by `drover import compose`.
# 4 compose setting(s) were not imported; the import listed them.
image = "registry.example/worker:1.4"
command = ["/bin/worker", "--queue", "jobs high"]
after = ["db", "web"]
memory = "1610612736"
stop-grace-period = "90s"

[env]
FROM_SHELL = "sh"
"#;

#[test]
fn a_required_variable_left_unset_is_an_error_at_its_line_and_unset_ones_are_reported() {
    let text = fs::read_to_string(data().join("app.yaml")).unwrap();
    let e = render(import_str("app.yaml", &text, &Env::new(), &data(), "dir").unwrap_err());
    assert!(e.contains("DB_TAG is required: set DB_TAG") && e.contains("app.yaml:10"), "{e}");
    let imp = import("app.yaml", &[("DB_TAG", "16")]);
    let g = imp.findings.iter().find(|x| x.key == "${GREETING}").unwrap();
    assert_eq!((g.at.as_str(), g.kept), ("app.yaml:39", true));
}

#[test]
fn awesome_compose_nginx_golang_postgres_reports_build_secrets_and_the_user_name() {
    let imp = import("nginx-golang-postgres.yaml", &[]);
    assert_eq!(imp.role, "dir");
    let backend = &imp.services[0];
    assert_eq!(
        (backend.name.as_str(), backend.image.as_deref(), backend.after.clone()),
        ("backend", None, vec!["db".to_string()])
    );
    let db = &imp.services[1];
    assert_eq!(db.volumes, ["db-data:/var/lib/postgresql/data"]);
    assert_eq!(db.health.as_ref().unwrap().command, "pg_isready");
    assert_eq!(imp.services[2].after, ["backend"]);
    assert_eq!(
        report(&imp),
        vec![
            f("nginx-golang-postgres.yaml:5", Some("backend"), "build", false),
            f("nginx-golang-postgres.yaml:8", Some("backend"), "secrets", false),
            f("nginx-golang-postgres.yaml:17", Some("db"), "user", false),
            f("nginx-golang-postgres.yaml:18", Some("db"), "secrets", false),
            f("nginx-golang-postgres.yaml:25", Some("db"), "expose", true),
            f("nginx-golang-postgres.yaml:36", Some("proxy"), "volumes", false),
            f("nginx-golang-postgres.yaml:48", None, "secrets", false),
        ]
    );
    load(&imp);
}

#[test]
fn awesome_compose_wordpress_and_prometheus_import_and_load() {
    let wp = import("wordpress-mysql.yaml", &[]);
    assert_eq!(
        wp.services[0].command.as_deref(),
        Some(&["--default-authentication-plugin=mysql_native_password".to_string()][..])
    );
    assert_eq!(wp.services[1].env.get("WORDPRESS_DB_HOST").map(String::as_str), Some("db"));
    assert_eq!(wp.unmapped().count(), 0);
    load(&wp);
    let pg = import("prometheus-grafana.yaml", &[]);
    let bad: Vec<String> = pg.unmapped().map(|x| format!("{}:{}", x.at, x.key)).collect();
    assert_eq!(bad, ["prometheus-grafana.yaml:13:volumes", "prometheus-grafana.yaml:25:volumes"]);
    assert_eq!(pg.services[0].volumes, ["prom_data:/prometheus"]);
    load(&pg);
}
