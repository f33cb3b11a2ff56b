//! An imported docker-compose app on three container-capable lab hosts,
//! through the real `drover` binary: the compose file names its images on
//! a registry (the test's, on the controller's loopback, holding images
//! built from busybox-static), `drover import compose` writes the services
//! with those references as they are, and the test only splits them over
//! roles; the controller pulls and pins the images, the app answers across
//! hosts by compose names (`/etc/hosts` from `fleet.services`), the worker
//! starts only after the database passed its health gate, and a second
//! apply changes nothing.

use std::fs;

use drover_lab::Init;
use drover_oci::testing::images::{base_layer, push, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;

use super::wait_for_body;
use crate::support::Fleet;

/// db answers `rows: 42` on port 5432 a second after it starts (data in a
/// named volume); web fetches it from `db` by name and serves it on 8080;
/// the worker records what db answered the moment it started, then keeps
/// fetching web by name.
/// `REGISTRY` stands for the test registry's `127.0.0.1:PORT`.
const COMPOSE: &str = r#"name: shop
services:
  db:
    image: REGISTRY/shop/db:1
    command: ["/bin/sh", "-c", "mkdir -p /data/www && echo 'rows: ${ROWS:-0}' > /data/www/index.html && sleep 1 && exec httpd -f -p 5432 -h /data/www"]
    volumes: [dbdata:/data]
    ports: ["5432:5432"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5432/"]
      interval: 250ms
      timeout: 1s
      retries: 40
  web:
    image: REGISTRY/shop/web:1
    command: ["/bin/sh", "-c", "mkdir -p /tmp/www; until wget -q -O /tmp/www/index.html http://db:5432/; do sleep 0.2; done; exec httpd -f -p 8080 -h /tmp/www"]
    ports: ["8080:8080"]
    depends_on:
      db: { condition: service_healthy }
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 1s
      retries: 80
  worker:
    image: REGISTRY/shop/worker:1
    command: ["/bin/sh", "-c", "wget -q -O /jobs/first http://db:5432/ || echo 'db down' > /jobs/first; while true; do wget -q -O /jobs/last http://web:8080/; sleep 0.5; done"]
    volumes: [jobs:/jobs]
    depends_on: [db]
    stop_grace_period: 1s
volumes:
  dbdata:
  jobs:
"#;

/// The app's image: the busybox base and the applets the compose
/// commands use beyond it; the compose file says what each runs.
fn app_image() -> TestImage {
    let applets = LayerBuilder::new().dir("bin", 0o755).symlink("bin/mkdir", "busybox").symlink("bin/true", "busybox");
    TestImage::oci("amd64", vec![base_layer(), applets.build()], Compression::Gzip, serde_json::json!({}))
}

#[test]
fn an_imported_compose_app_runs_over_three_hosts_by_name_in_order_and_reapplies_as_a_noop() {
    let reg = TestRegistry::start();
    let image = app_image();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for s in ["db", "web", "worker"] {
        rt.block_on(push(&reg.reference(&format!("shop/{s}:1")), &image));
    }
    let f = Fleet::containers("compose-app", 3, Init::Runit);
    let p = f.project();
    let src = p.parent().unwrap().join("app");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("compose.yaml"), COMPOSE.replace("REGISTRY", &reg.host())).unwrap();
    fs::write(src.join(".env"), "ROWS=42\n").unwrap();

    // The quickstart's own `web` service and its role make way for the app.
    fs::remove_file(p.join("services/web.toml")).unwrap();
    fs::write(p.join("roles/site.toml"), "").unwrap();
    let r = f.drover(&["import", "compose", src.join("compose.yaml").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stderr, "", "every key of this app has an equivalent");
    // The references as the compose file wrote them: the project runs as imported.
    for s in ["db", "web", "worker"] {
        let text = fs::read_to_string(p.join(format!("services/{s}.toml"))).unwrap();
        let want = format!("image = \"{}\"\n", reg.reference(&format!("shop/{s}:1")));
        assert!(text.contains(&want), "services/{s}.toml: {want:?} in\n{text}");
    }
    // As docs/containers.md says for a plain-HTTP registry (a loopback one
    // would be plain HTTP without it).
    let settings = p.join("drover.toml");
    let mut toml = fs::read_to_string(&settings).unwrap();
    toml.push_str(&format!("\n[registries.\"{}\"]\ninsecure = true\n", reg.host()));
    fs::write(&settings, toml).unwrap();
    // Split the imported role over the hosts: h1 runs db and the worker
    // (which starts after db on that host), h2 and h3 the web front.
    fs::write(p.join("roles/data.toml"), "services = [\"db\", \"worker\"]\n").unwrap();
    fs::write(p.join("roles/front.toml"), "services = [\"web\"]\n").unwrap();
    let inv = p.join("inventory.toml");
    let mut t: toml::Table = toml::from_str(&fs::read_to_string(&inv).unwrap()).unwrap();
    for (name, h) in t["hosts"].as_table_mut().unwrap().iter_mut() {
        let role = if name == "h1" { "data" } else { "front" };
        h.as_table_mut().unwrap().insert("roles".into(), toml::Value::Array(vec![role.into()]));
    }
    fs::write(&inv, toml::to_string(&t).unwrap()).unwrap();

    let hosts = f.apply_ok();
    assert!(hosts.iter().all(|h| h["outcome"] == "changed"), "{hosts:?}");
    let lock = fs::read_to_string(p.join("images.lock")).unwrap();
    for s in ["db", "web", "worker"] {
        assert!(lock.contains(&reg.reference(&format!("shop/{s}:1"))), "{lock}");
    }
    assert!(lock.contains(&image.manifest_digest()), "{lock}");
    let addr = |i: usize| f.lab_hosts()[i].address;
    // web on h2 and h3 reached db on h1 by its compose name.
    for i in [1, 2] {
        assert!(wait_for_body(&format!("{}:8080", addr(i)), "rows: 42\n"), "web on h{} does not answer", i + 1);
    }
    // Every container's /etc/hosts: each service at the first host running it.
    let hosts_file = fs::read_to_string(f.host_file(1, "/var/lib/drover/container-hosts")).unwrap();
    assert!(hosts_file.ends_with(&format!("{}\tdb\n{}\tweb\n{}\tworker\n", addr(0), addr(1), addr(0))), "{hosts_file}");
    // The worker started after db passed its health gate (db listens only
    // a second after it starts), and reaches web on h2 by name.
    let jobs = f.host_file(0, "/var/lib/drover/volumes/worker/jobs");
    assert_eq!(fs::read_to_string(jobs.join("first")).unwrap(), "rows: 42\n");
    let start = std::time::Instant::now();
    while fs::read_to_string(jobs.join("last")).ok().as_deref() != Some("rows: 42\n") {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the worker never reached web");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        fs::read_to_string(f.host_file(0, "/var/lib/drover/volumes/db/dbdata/www/index.html")).unwrap(),
        "rows: 42\n"
    );

    // Nothing changed: a no-op everywhere.
    let hosts = f.apply_ok();
    assert!(hosts.iter().all(|h| h["outcome"] == "unchanged"), "{hosts:?}");
}
