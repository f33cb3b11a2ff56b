//! Which Ansible variables mean something to drover, and why the rest do not.

/// A connection setting drover has a field for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conn {
    Address,
    Port,
    User,
    Key,
    Password,
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
        "ansible_ssh_common_args"
        | "ansible_ssh_extra_args"
        | "ansible_ssh_args"
        | "ansible_sftp_extra_args"
        | "ansible_scp_extra_args" => {
            Kind::Unmapped("drover's SSH client is built in and takes no OpenSSH options; use drover.toml [apply]")
        }
        _ => Kind::Unmapped("an Ansible setting with no drover equivalent"),
    }
}
