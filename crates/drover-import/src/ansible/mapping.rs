//! Which Ansible variables mean something to drover, and why the rest do not.

/// A connection setting drover has a field for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conn {
    Address,
    Port,
    User,
    Key,
    Password,
    /// `-o ProxyJump=…` or `-J …` inside `ansible_ssh_common_args` /
    /// `ansible_ssh_extra_args`.
    ProxyJump,
}

pub enum Kind {
    /// Becomes the host's address/port/user/key/password.
    Conn(Conn),
    /// `ansible_group_priority`: orders groups (and so their vars).
    Priority,
    /// Says what drover does anyway (`ansible_connection=ssh`).
    Redundant,
    /// No drover equivalent; the reason.
    Unmapped(&'static str),
    /// An ordinary variable: becomes a drover var.
    Plain,
}

const BECOME: &str = "drover always runs its agent as root: directly when the user is root, \
                      otherwise through sudo (answered with the host's password, if any)";

pub fn classify(key: &str, value: Option<&toml::Value>) -> Kind {
    if !key.starts_with("ansible_") {
        return Kind::Plain;
    }
    match key {
        "ansible_host" | "ansible_ssh_host" => Kind::Conn(Conn::Address),
        "ansible_port" | "ansible_ssh_port" => Kind::Conn(Conn::Port),
        "ansible_user" | "ansible_ssh_user" => Kind::Conn(Conn::User),
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => Kind::Conn(Conn::Key),
        "ansible_password" | "ansible_ssh_pass" | "ansible_ssh_password" => Kind::Conn(Conn::Password),
        "ansible_group_priority" => Kind::Priority,
        "ansible_connection" => match value.and_then(|v| v.as_str()) {
            Some("ssh" | "smart" | "paramiko" | "paramiko_ssh") => Kind::Redundant,
            Some("local") => Kind::Unmapped(
                "drover reaches every host over SSH; to manage this machine, give it an SSH address (127.0.0.1)",
            ),
            _ => Kind::Unmapped("drover connects over SSH only"),
        },
        "ansible_python_interpreter" => Kind::Unmapped("drover runs no Python on hosts (its agent is a static binary)"),
        k if k.starts_with("ansible_become") || k.starts_with("ansible_sudo") || k.starts_with("ansible_su_") => {
            Kind::Unmapped(BECOME)
        }
        "ansible_ssh_common_args" | "ansible_ssh_extra_args"
            if value.and_then(|v| v.as_str()).and_then(|a| proxy_jump(a).ok()).is_some() =>
        {
            Kind::Conn(Conn::ProxyJump)
        }
        "ansible_ssh_common_args"
        | "ansible_ssh_extra_args"
        | "ansible_ssh_args"
        | "ansible_sftp_extra_args"
        | "ansible_scp_extra_args" => Kind::Unmapped(
            "drover's SSH client is built in and takes no OpenSSH options; a jump host is \
                 `proxy-jump = \"user@bastion:22\"` in inventory.toml (docs/jump-hosts.md)",
        ),
        _ => Kind::Unmapped("an Ansible setting with no drover equivalent"),
    }
}

/// The jump hosts in OpenSSH arguments (`-J a,b`, `-Ja`, `-o ProxyJump=a`,
/// `-oProxyJump=a`, `-o "ProxyJump a"`), and the other arguments, which
/// drover does not take over. `Err(())`: no ProxyJump in them.
pub fn proxy_jump(args: &str) -> Result<(String, Vec<String>), ()> {
    let words = split_words(args);
    let mut jump = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let (opt, consumed) = match w.as_str() {
            "-J" | "-o" => (words.get(i + 1).map(|n| (w.as_str(), n.as_str())), 2),
            _ if w.starts_with("-J") => (Some(("-J", &w[2..])), 1),
            _ if w.starts_with("-o") => (Some(("-o", &w[2..])), 1),
            _ => (None, 1),
        };
        let found = match opt {
            Some(("-J", v)) => Some(v.to_string()),
            Some((_, v)) => {
                let (k, val) = v.split_once(['=', ' ']).unwrap_or((v, ""));
                k.trim()
                    .eq_ignore_ascii_case("proxyjump")
                    .then(|| val.trim().trim_start_matches('=').trim().to_string())
            }
            None => None,
        };
        match found {
            Some(v) if !v.is_empty() => jump = Some(v),
            _ => rest.extend(words[i..(i + consumed).min(words.len())].iter().cloned()),
        }
        i += consumed;
    }
    jump.map(|j| (j, rest)).ok_or(())
}

/// Shell-like words: spaces separate, single and double quotes group.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_proxy_jump_in_every_openssh_spelling() {
        for (args, want) in [
            ("-o ProxyJump=ops@bastion:22", "ops@bastion:22"),
            ("-oProxyJump=bastion", "bastion"),
            ("-o 'ProxyJump a,b'", "a,b"),
            ("-o StrictHostKeyChecking=no -J ops@b1", "ops@b1"),
            ("-Jb1", "b1"),
            ("-o proxyjump=x", "x"),
        ] {
            assert_eq!(proxy_jump(args).map(|(j, _)| j), Ok(want.to_string()), "{args}");
        }
        let (_, rest) = proxy_jump("-o StrictHostKeyChecking=no -J b1 -C").unwrap();
        assert_eq!(rest, ["-o", "StrictHostKeyChecking=no", "-C"]);
        assert!(proxy_jump("-o ControlMaster=auto -C").is_err());
    }
}
