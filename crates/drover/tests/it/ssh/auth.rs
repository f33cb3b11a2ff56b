//! Authentication on lab hosts: key types, the ssh-agent after the
//! inventory's key, passphrase-protected keys (docs/ssh.md, "Authentication").

use super::tools::{authorize, keygen, login, said, use_key, Agent};
use crate::support::Fleet;

/// Item 3: RSA (rsa-sha2-256/512) and ECDSA keys were refused.
#[test]
fn rsa_and_ecdsa_keys_each_log_in_and_an_unauthorized_key_does_not() {
    let f = Fleet::new("ssh-keytypes", 1);
    let keys = tempfile::tempdir().unwrap();
    let rsa = keygen(keys.path(), "id_rsa", "rsa", "");
    let ecdsa = keygen(keys.path(), "id_ecdsa", "ecdsa", "");
    let stranger = keygen(keys.path(), "id_other", "ed25519", "");
    authorize(&f, 0, &[&rsa, &ecdsa]);
    for key in [&rsa, &ecdsa] {
        use_key(&f, key);
        let r = login(&f, &[]);
        assert_eq!(r.code, 0, "{} must log in:\n{}", key.display(), said(&r));
    }
    use_key(&f, &stranger);
    let r = login(&f, &[]);
    assert_ne!(r.code, 0, "an unauthorized key must not log in:\n{}", said(&r));
    assert!(said(&r).contains("authentication as root failed"), "{}", said(&r));
}

/// Item 3: the agent was used only when no key was set. Now the inventory's
/// key is tried first, then the agent's keys, unless IdentitiesOnly.
#[test]
fn agent_keys_are_tried_after_a_refused_inventory_key_unless_identities_only() {
    let f = Fleet::new("ssh-agent", 1);
    let keys = tempfile::tempdir().unwrap();
    let good = keygen(keys.path(), "id_good", "ed25519", "");
    let refused = keygen(keys.path(), "id_refused", "ed25519", "");
    authorize(&f, 0, &[&good]);
    use_key(&f, &refused);
    let agent = Agent::start();
    agent.add(&good, "");
    let (k, v) = agent.env();
    let env = [(k, v.as_os_str())];
    let r = login(&f, &env);
    assert_eq!(r.code, 0, "the agent's key must log in after the refused one:\n{}", said(&r));

    let cfg = keys.path().join("ssh_config");
    std::fs::write(&cfg, "Host *\n  IdentitiesOnly yes\n").unwrap();
    let cfg_flag = cfg.display().to_string();
    let r = f.drover_env(&["-F", &cfg_flag, "exec", "all", "--", "true"], &env);
    assert_ne!(r.code, 0, "IdentitiesOnly: the agent's keys are not offered:\n{}", said(&r));
    assert!(said(&r).contains("id_refused") && !said(&r).contains("ssh-agent identities"), "{}", said(&r));
}

/// Item 3: a passphrase-protected key works through the agent; with no
/// agent and no terminal the run says so and what to do.
#[test]
fn a_passphrase_key_logs_in_through_the_agent_and_without_one_fails_saying_to_use_it() {
    let f = Fleet::new("ssh-passphrase", 1);
    let keys = tempfile::tempdir().unwrap();
    let locked = keygen(keys.path(), "id_locked", "ed25519", "correct horse");
    authorize(&f, 0, &[&locked]);
    use_key(&f, &locked);

    let r = login(&f, &[]);
    assert_ne!(r.code, 0, "{}", said(&r));
    let text = said(&r);
    assert!(
        text.contains("protected by a passphrase") && text.contains("no terminal") && text.contains("ssh-add"),
        "the error says the key is locked and to use ssh-agent:\n{text}"
    );

    let agent = Agent::start();
    agent.add(&locked, "correct horse");
    let (k, v) = agent.env();
    let r = login(&f, &[(k, v.as_os_str())]);
    assert_eq!(r.code, 0, "the agent signs for the locked key:\n{}", said(&r));
}

/// Item 3: on a terminal, a passphrase is asked once per run and key, not
/// once per host. (`script` gives the run a terminal; the passphrase is
/// typed after the prompt appears.)
#[test]
fn a_passphrase_is_asked_once_per_run_on_a_terminal_for_every_host() {
    let f = Fleet::new("ssh-prompt", 2);
    let keys = tempfile::tempdir().unwrap();
    let locked = keygen(keys.path(), "id_locked", "ed25519", "correct horse");
    authorize(&f, 0, &[&locked]);
    authorize(&f, 1, &[&locked]);
    use_key(&f, &locked);
    let command = format!("{} -C {} exec all -- true", crate::support::DROVER, f.project().display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Typed once the prompt is up; the input stays open until the run ends.
    let mut typing = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    std::io::Write::write_all(&mut typing, b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(typing);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("Enter passphrase for key").count(), 1, "asked once for two hosts:\n{text}");
    assert!(!text.contains("correct horse"), "the passphrase is not echoed:\n{text}");
}
