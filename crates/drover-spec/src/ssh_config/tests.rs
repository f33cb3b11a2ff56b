use std::time::Duration;

use super::*;

fn config(files: &[(&str, &str)]) -> (tempfile::TempDir, SshConfig) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let c = SshConfig::load(&dir.path().join("config"), true).unwrap();
    (dir, c)
}

#[test]
fn first_value_wins_per_keyword_across_matching_blocks() {
    let (_d, c) = config(&[(
        "config",
        "Host web*\n  User deploy\n  Port 2222\nHost web1\n  User other\n  HostName 10.0.0.1\nHost *\n  User root\n  Port 22\n  IdentityFile ~/.ssh/a\n",
    )]);
    let r = c.resolve("web1").unwrap();
    assert_eq!(r.user.as_ref().unwrap().value, "deploy");
    assert_eq!(r.user.unwrap().origin.line, 2);
    assert_eq!(r.port.unwrap().value, 2222);
    assert_eq!(r.hostname.unwrap().value, "10.0.0.1");
    assert_eq!(r.identity_files.len(), 1);
    let db = c.resolve("db").unwrap();
    assert_eq!(db.user.unwrap().value, "root");
    assert!(db.hostname.is_none());
}

#[test]
fn negated_patterns_exclude_a_host() {
    let (_d, c) = config(&[("config", "Host web* !web3\n  User a\nHost *\n  User b\n")]);
    assert_eq!(c.resolve("web1").unwrap().user.unwrap().value, "a");
    assert_eq!(c.resolve("web3").unwrap().user.unwrap().value, "b");
}

#[test]
fn include_reads_in_place_and_returns_to_the_outer_block() {
    let (_d, c) = config(&[
        ("config", "Host h1\n  Include conf.d/*\n  Port 2200\nHost *\n  ConnectTimeout 7\n"),
        ("conf.d/a", "User from-include\nHost other\n  User nobody\n"),
    ]);
    let r = c.resolve("h1").unwrap();
    let user = r.user.unwrap();
    assert_eq!(user.value, "from-include");
    assert!(user.origin.file.ends_with("conf.d/a"), "{}", user.origin);
    assert_eq!(r.port.unwrap().value, 2200, "the line after Include is still under Host h1");
    assert_eq!(r.connect_timeout.unwrap().value, Duration::from_secs(7));
    assert!(c.resolve("x").unwrap().port.is_none());
}

#[test]
fn match_blocks_apply_to_no_host_and_proxyjump_none_is_absent() {
    let (_d, c) =
        config(&[("config", "Match all\n  User m\nHost a\n  ProxyJump none\nHost *\n  ProxyJump b@bastion:2222\n")]);
    let r = c.resolve("a").unwrap();
    assert!(r.user.is_none());
    assert!(r.proxy_jump.is_none());
    assert_eq!(c.resolve("z").unwrap().proxy_jump.unwrap().value, "b@bastion:2222");
}

#[test]
fn a_bad_value_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config");
    std::fs::write(&p, "Host *\n  Port twenty\n").unwrap();
    let e = SshConfig::load(&p, true).unwrap().resolve("h").unwrap_err().to_string();
    assert!(e.contains("config:2") && e.contains("port"), "{e}");
}

#[test]
fn tokens_expand() {
    let t = Tokens { name: "web1", host: "10.0.0.1", user: "deploy", port: 22 };
    assert_eq!(expand("/keys/%n-%r-%h-%p%%", &t), std::path::PathBuf::from("/keys/web1-deploy-10.0.0.1-22%"));
}
