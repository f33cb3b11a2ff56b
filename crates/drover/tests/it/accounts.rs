//! Users, groups, directories and reload-on on lab hosts (issue 13,
//! items 3 and 4): real useradd/groupadd, real supervisors, the real agent.

use crate::support::{append, Fleet};

#[test]
fn users_groups_and_dirs_are_created_with_their_ids_and_modes_before_the_files_they_own() {
    let f = Fleet::new("pkg-users", 1);
    f.apply_ok(); // generation 1, for the rollback below
    append(
        &f.project().join("roles/site.toml"),
        r#"
[groups.appgrp]
gid = 2345

[users.app]
uid = 2345
group = "appgrp"
home = "/home/app"
shell = "/bin/sh"

[groups.svc]
system = true

[users.svc]
system = true

[dirs."/srv/app"]
owner = "app"
group = "appgrp"
mode = "0750"

[files."/etc/app/config"]
owner = "app"
group = "appgrp"
mode = "0640"

[files."/srv/svc.conf"]
owner = "svc"
"#,
    );
    let layer = f.project().join("layers/site");
    // Not beneath /srv/app: drover never writes into a directory another
    // user can write to (docs/security.md), its owner included.
    std::fs::create_dir_all(layer.join("etc/app")).unwrap();
    std::fs::write(layer.join("etc/app/config"), "key = 1\n").unwrap();
    std::fs::write(layer.join("srv/svc.conf"), "svc\n").unwrap();
    f.apply_ok();
    let passwd = std::fs::read_to_string(f.host_file(0, "/etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("app:x:2345:2345::/home/app:/bin/sh")), "{passwd}");
    let group = std::fs::read_to_string(f.host_file(0, "/etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("appgrp:x:2345:")), "{group}");
    let svc_uid: u32 = passwd
        .lines()
        .find(|l| l.starts_with("svc:"))
        .expect("svc created")
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(svc_uid < 1000, "a system user gets a system uid, got {svc_uid}");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(f.host_file(0, "/srv/app")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (2345, 2345, 0o750));
    let md = std::fs::metadata(f.host_file(0, "/etc/app/config")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (2345, 2345, 0o640));
    assert_eq!(std::fs::metadata(f.host_file(0, "/srv/svc.conf")).unwrap().uid(), svc_uid);
    assert!(f.host_file(0, "/home/app").is_dir(), "home created");
    // No-op afterwards, and a rollback keeps the users.
    assert_eq!(f.apply_ok()[0]["outcome"], "unchanged");
    let r = f.drover(&["rollback", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let passwd = std::fs::read_to_string(f.host_file(0, "/etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:2345") && passwd.contains("svc:x:"), "rollback deleted users");
    assert!(!f.host_file(0, "/etc/app/config").exists(), "rollback kept the files");
}

#[test]
fn an_account_whose_id_differs_and_a_host_without_useradd_fail_the_generation_before_any_file_changes() {
    let f = Fleet::new("pkg-acct", 1);
    append(&f.project().join("roles/site.toml"), "\n[users.app]\nuid = 2345\n");
    f.apply_ok();
    let motd = std::fs::read(f.host_file(0, "/etc/motd")).unwrap();
    append(&f.project().join("layers/site/etc/motd"), "changed\n");

    let role = f.project().join("roles/site.toml");
    let text = std::fs::read_to_string(&role).unwrap().replace("uid = 2345", "uid = 2346");
    std::fs::write(&role, &text).unwrap();
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0);
    let err = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("user app exists with uid 2345, the role says 2346"), "{err}");
    assert_eq!(std::fs::read(f.host_file(0, "/etc/motd")).unwrap(), motd, "files changed");

    std::fs::write(
        &role,
        text.replace("uid = 2346", "uid = 2345").replace("[users.app]", "[users.other]\n[users.app]"),
    )
    .unwrap();
    std::fs::remove_file(f.host_file(0, "/usr/sbin/useradd")).unwrap();
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0);
    let err = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("useradd not found") && err.contains("passwd"), "{err}");
    assert_eq!(std::fs::read(f.host_file(0, "/etc/motd")).unwrap(), motd, "files changed");
}

on_both_inits!(
    reload_scenario:
    a_change_matching_only_reload_on_reloads_the_service_without_restarting_it_runit,
    a_change_matching_only_reload_on_reloads_the_service_without_restarting_it_systemd
);

fn reload_scenario(init: drover_lab::Init) {
    let f = Fleet::on("pkg-reload", 1, init);
    std::fs::write(
        f.project().join("services/rl.toml"),
        r#"command = "trap 'echo hup >> /var/tmp/rl-reloads' HUP; while :; do sleep 1 & wait $!; done"
restart-on = ["/srv/rl/**"]
reload-on = ["/etc/rl/**"]
"#,
    )
    .unwrap();
    let role = f.project().join("roles/site.toml");
    let text = std::fs::read_to_string(&role).unwrap().replace("services = [\"web\"]", "services = [\"web\", \"rl\"]");
    std::fs::write(&role, text).unwrap();
    let layer = f.project().join("layers/site");
    std::fs::create_dir_all(layer.join("etc/rl")).unwrap();
    std::fs::create_dir_all(layer.join("srv/rl")).unwrap();
    std::fs::write(layer.join("etc/rl/conf"), "1\n").unwrap();
    std::fs::write(layer.join("srv/rl/bin"), "1\n").unwrap();
    f.apply_ok();
    let pid = f.service_pid(0, "rl");
    assert!(!pid.is_empty(), "rl runs");

    std::fs::write(layer.join("etc/rl/conf"), "2\n").unwrap();
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["restarts"], serde_json::json!(["rl:reload"]), "{hosts:?}");
    assert_eq!(f.service_pid(0, "rl"), pid, "a reload-on change restarted the service");
    let start = std::time::Instant::now();
    while !f.host_file(0, "/var/tmp/rl-reloads").exists() {
        assert!(start.elapsed().as_secs() < 10, "the service never saw its reload (SIGHUP)");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    std::fs::write(layer.join("etc/rl/conf"), "3\n").unwrap();
    std::fs::write(layer.join("srv/rl/bin"), "2\n").unwrap();
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["restarts"], serde_json::json!(["rl"]), "{hosts:?}");
    assert_ne!(f.service_pid(0, "rl"), pid, "a restart-on change must restart");
}
