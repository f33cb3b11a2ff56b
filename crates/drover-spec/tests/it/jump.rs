//! `proxy-jump` in a project: where it may be set, which setting wins, how
//! a hop's key is found, and a malformed value's error (#25).

use std::fs;
use std::path::Path;

use drover_spec::{JumpHop, Project};

use crate::support::{render_error, write};

fn project(inventory: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scaffold = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drover/scaffold/quickstart");
    for rel in ["roles/site.toml", "services/web.toml", "layers/site/etc/motd", "layers/site/srv/site/index.html.j2"] {
        write(dir.path(), rel, &fs::read_to_string(scaffold.join(rel)).unwrap());
    }
    let toml = fs::read_to_string(scaffold.join("drover.toml")).unwrap();
    write(dir.path(), "drover.toml", &toml.replace("[defaults]\n", "[defaults]\nproxy-jump = \"proj@p\"\n"));
    write(dir.path(), "inventory.toml", inventory);
    write(dir.path(), "known_hosts", "b1 ssh-ed25519 AAAAb1\nb2,10.9.9.9 ssh-ed25519 AAAAb2\n");
    dir
}

fn hop(user: &str, address: &str, port: u16, keys: &[&str]) -> JumpHop {
    JumpHop {
        user: user.into(),
        address: address.into(),
        port,
        host_keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

#[test]
fn the_most_specific_proxy_jump_wins_and_hops_keys_come_from_known_hosts() {
    let dir = project(
        "[defaults]\nuser = \"admin\"\nproxy-jump = \"inv@b1\"\n\n\
         [groups.dc2]\nproxy-jump = \"grp@b2:2222\"\n\n\
         [hosts.own]\naddress = \"10.0.0.1\"\ngroups = [\"dc2\"]\nproxy-jump = \"b1, me@10.9.9.9\"\n\
         [hosts.grouped]\naddress = \"10.0.0.2\"\ngroups = [\"other\", \"dc2\"]\n\
         [hosts.defaulted]\naddress = \"10.0.0.3\"\n\
         [hosts.direct]\naddress = \"10.0.0.4\"\nproxy-jump = \"\"\n",
    );
    let p = Project::load(dir.path()).unwrap();
    let jumps = |name: &str| p.hosts.iter().find(|h| h.name == name).unwrap().proxy_jump.clone();
    assert_eq!(
        jumps("own"),
        vec![hop("admin", "b1", 22, &["ssh-ed25519 AAAAb1"]), hop("me", "10.9.9.9", 22, &["ssh-ed25519 AAAAb2"])],
        "a chain, first hop first; a hop without user@ logs in as the host's user"
    );
    assert_eq!(jumps("grouped"), vec![hop("grp", "b2", 2222, &["ssh-ed25519 AAAAb2"])]);
    assert_eq!(jumps("defaulted"), vec![hop("inv", "b1", 22, &["ssh-ed25519 AAAAb1"])]);
    assert_eq!(jumps("direct"), vec![], "an empty proxy-jump means direct, despite the defaults");

    // Without inventory defaults, drover.toml's applies; an unknown hop has no keys.
    let dir = project("[hosts.h1]\naddress = \"10.0.0.1\"\n");
    let p = Project::load(dir.path()).unwrap();
    assert_eq!(p.hosts[0].proxy_jump, vec![hop("proj", "p", 22, &[])]);
}

#[test]
fn a_malformed_proxy_jump_names_the_file_line_and_fix() {
    let dir = project("[hosts.h1]\naddress = \"10.0.0.1\"\nproxy-jump = \"ops@b1:99999\"\n");
    let err = match Project::load(dir.path()) {
        Ok(_) => panic!("loaded"),
        Err(e) => render_error(e),
    };
    assert!(err.contains("inventory.toml:3: proxy-jump: \"ops@b1:99999\": port \"99999\" is not 1-65535"), "{err}");
    assert!(err.contains("user@host:port"), "{err}");
}
