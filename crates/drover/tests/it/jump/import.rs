//! An Ansible inventory whose hosts are reached with
//! `ansible_ssh_common_args='-o ProxyJump=…'` imports to `proxy-jump`, and
//! the imported project converges through the bastion.

use std::fs;

use super::jump_of;
use crate::support::Fleet;

#[test]
fn an_ansible_proxy_jump_is_imported_and_the_hosts_converge_through_it() {
    let f = Fleet::behind_bastion("jump-ans", 2);
    let inv_path = f.project().join("inventory.toml");
    let lab_inv = fs::read_to_string(&inv_path).unwrap();
    let key = lab_inv.lines().find_map(|l| l.strip_prefix("key = ")).unwrap().trim_matches('"').to_string();
    let (h1, h2) = (&f.lab_hosts()[0], &f.lab_hosts()[1]);
    let ini = format!(
        "[web]\nh1 ansible_host={}\nh2 ansible_host={}\n\n[web:vars]\nansible_user=root\n\
         ansible_ssh_private_key_file={key}\n\
         ansible_ssh_common_args='-o StrictHostKeyChecking=no -o ProxyJump={}'\n",
        h1.address,
        h2.address,
        jump_of(&f)
    );
    fs::write(f.project().join("hosts.ini"), ini).unwrap();
    let ini_path = f.project().join("hosts.ini");
    let r = f.drover(&["inventory", "import", "ansible", ini_path.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "group web: ansible_ssh_common_args imported with a caveat: its ProxyJump became proxy-jump; \
             the other OpenSSH options (-o StrictHostKeyChecking=no) were not imported"
        ),
        "{}",
        r.stderr
    );
    let inv = fs::read_to_string(&inv_path).unwrap();
    assert_eq!(inv.matches(&format!("proxy-jump = \"{}\"", jump_of(&f))).count(), 2, "{inv}");
    // The import pins no host keys: trust pins them, scanned through the bastion.
    let trust = f.drover(&["trust"]);
    assert_eq!(trust.code, 0, "{}\n{}", trust.stdout, trust.stderr);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "changed"), "{}", r.stdout);
}
