//! An image whose directories belong to its own users (a real postgres
//! image's `/var/lib/postgresql`, an app's `/home/app`): the agent writes
//! into them because they lie below `/var/lib/drover/containers`, which no
//! other user can search, so no local user of the host can reach them —
//! not even one with the image user's uid.

use drover_lab::Init;
use drover_oci::testing::images::{base_layer, push, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;
use serde_json::json;

use super::wait_for_body;
use crate::support::Fleet;

/// busybox httpd as uid 1000 serving `/home/app/www`, where `home/app` and
/// everything below it belong to 1000 and only 1000 may enter.
fn image(page: &str) -> TestImage {
    let app = LayerBuilder::new()
        .dir("home", 0o755)
        .dir_owned("home/app", 0o700, 1000, 1000)
        .dir_owned("home/app/www", 0o700, 1000, 1000)
        .file_owned("home/app/www/index.html", 0o600, 1000, 1000, page.as_bytes())
        .build();
    let config = json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/home/app/www"],
                        "User": "1000:1000"});
    TestImage::oci("amd64", vec![base_layer(), app], Compression::Gzip, config)
}

#[test]
fn an_image_with_directories_of_its_own_users_applies_runs_as_them_and_a_host_user_of_their_uid_cannot_reach_them() {
    let reg = TestRegistry::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(push(&reg.reference("owned:1"), &image("owned 1\n")));
    rt.block_on(push(&reg.reference("owned:2"), &image("owned 2\n")));
    let f = Fleet::containers("img-owners", 1, Init::Runit);
    let p = f.project();
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    let app = |tag: &str| {
        let text = format!(
            "image = {:?}\nstop-grace-period = \"1s\"\n[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 8\ninterval = \"250ms\"\n",
            reg.reference(&format!("owned:{tag}"))
        );
        std::fs::write(p.join("services/app.toml"), text).unwrap();
    };
    app("1");
    let addr = format!("{}:8080", f.lab_hosts()[0].address);
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "owned 1\n"), "uid 1000 serves its own 0600 page");

    // The image's ownership and modes, exactly; the seal above them.
    let rootfs = "/var/lib/drover/containers/app/rootfs";
    let stat = |p: &str| f.host_sh(0, &format!("stat -c '%u:%g %a' {p}"));
    assert_eq!(stat("/var/lib/drover/containers"), "0:0 700");
    assert_eq!(stat(&format!("{rootfs}/home")), "0:0 755");
    assert_eq!(stat(&format!("{rootfs}/home/app")), "1000:1000 700");
    assert_eq!(stat(&format!("{rootfs}/home/app/www")), "1000:1000 700");
    assert_eq!(stat(&format!("{rootfs}/home/app/www/index.html")), "1000:1000 600");

    // A local user with the image user's very uid cannot reach the files.
    let out = f.host_sh(
        0,
        &format!(
            "setpriv --reuid 1000 --regid 1000 --clear-groups cat {rootfs}/home/app/www/index.html 2>&1; echo rc=$?"
        ),
    );
    assert!(out.contains("Permission denied") && out.ends_with("rc=1"), "{out}");

    // An upgrade writes into the user's directory again.
    app("2");
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h:#}");
    assert_eq!(h["blobs_sent"], 1, "{h:#}");
    assert!(wait_for_body(&addr, "owned 2\n"));
    assert_eq!(stat(&format!("{rootfs}/home/app/www/index.html")), "1000:1000 600");
}
