//! A registry credential kept as a drover secret: drover.toml
//! `[registries."host:port"] credential = "NAME"` logs the controller's
//! pulls in (`drover image pull` here; `plan`/`apply` share the options).

use drover_oci::testing::images::{app_images, push_as, Compression};
use drover_oci::testing::registry::{TestRegistry, PASSWORD, USER};

use super::{has, Op};
use crate::support::init_project;

#[test]
fn a_registry_credential_from_a_drover_secret_logs_pulls_in_and_a_bad_name_is_refused_at_its_line() {
    let reg = TestRegistry::start_with_auth();
    let (v1, _, _) = app_images(Compression::Gzip);
    let app = reg.reference("app:1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(push_as(&app, &v1, Some((USER, PASSWORD))));
    let tmp = tempfile::tempdir().unwrap();
    let op = Op::new(tmp.path());
    init_project(&op.proj);
    op.ok(&["secret", "init"]);

    let r = op.run(&["image", "pull", &app]);
    assert_ne!(r.code, 0, "no credential: the registry refuses\n{}", r.stdout);

    let r = op.run_stdin(&["secret", "set", "registry_login"], format!("{USER}:{PASSWORD}\n").as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let toml = op.proj.join("drover.toml");
    let base = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{base}\n[registries.\"{}\"]\ncredential = \"registry_login\"\n", reg.host()))
        .unwrap();
    let r = op.ok(&["image", "pull", &app]);
    assert!(r.stdout.contains(&v1.manifest_digest()), "{}", r.stdout);
    assert!(!r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD));

    std::fs::write(&toml, format!("{base}\n[registries.\"{}\"]\ncredential = \"registry-login\"\n", reg.host()))
        .unwrap();
    let r = op.run(&["image", "pull", &app]);
    let line = base.lines().count() + 3;
    assert!(
        r.code != 0 && has(&r.stderr, &format!("drover.toml:{line}:")) && has(&r.stderr, "is not a secret name"),
        "{}",
        r.stderr
    );
}
