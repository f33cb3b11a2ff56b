//! `drover import compose` through the real binary: the files it writes,
//! the report on stderr, `.env` interpolation, the refusal to overwrite
//! and `--force`.

use crate::support::drover_at as drover;

const COMPOSE: &str = "\
services:
  db:
    image: registry.example/db:${DB_TAG}
    volumes: [data:/var/lib/db]
    healthcheck:
      test: [\"CMD\", \"test\", \"-f\", \"/var/lib/db/up\"]
      interval: 1s
  web:
    image: registry.example/web:1
    ports: [\"80:8080\"]
    depends_on: [db]
volumes:
  data:
";

#[test]
fn import_compose_writes_services_and_role_reports_with_lines_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir(t.join("shop")).unwrap();
    std::fs::write(t.join("shop/compose.yaml"), COMPOSE).unwrap();
    std::fs::write(t.join("shop/.env"), "DB_TAG=16\n").unwrap();
    let r = drover(t, &["import", "compose", "shop/compose.yaml", "-o", "proj"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("shop/compose.yaml:10: service web: ports not imported: publishes container port 8080/tcp on host port 80/tcp: drover runs containers on the host's network"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("imported 2 services into role shop; 1 not imported, 0 imported with a caveat"),
        "{}",
        r.stdout
    );
    let db = std::fs::read_to_string(t.join("proj/services/db.toml")).unwrap();
    assert!(
        db.contains("image = \"registry.example/db:16\"\n") && db.contains("volumes = [\"data:/var/lib/db\"]\n"),
        "{db}"
    );
    assert!(db.contains("[health]\ncommand = \"test -f /var/lib/db/up\"\ninterval = \"1s\"\n"), "{db}");
    let web = std::fs::read_to_string(t.join("proj/services/web.toml")).unwrap();
    assert!(web.contains("after = [\"db\"]\n"), "{web}");
    let role = std::fs::read_to_string(t.join("proj/roles/shop.toml")).unwrap();
    assert!(role.ends_with("services = [\"db\", \"web\"]\n"), "{role}");

    // Again: refused, nothing touched; --force replaces.
    std::fs::write(t.join("proj/services/web.toml"), "# mine\n").unwrap();
    let r = drover(t, &["import", "compose", "shop/compose.yaml", "-o", "proj"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("services/db.toml already exists; pass --force"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(t.join("proj/services/web.toml")).unwrap(), "# mine\n");
    let r = drover(t, &["import", "compose", "shop/compose.yaml", "-o", "proj", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(t.join("proj/services/web.toml")).unwrap(), web);
}
