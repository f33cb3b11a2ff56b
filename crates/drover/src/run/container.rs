//! Image services' day-2 operations over many hosts (docs/containers.md):
//! where `drover exec --service` runs and what (`runc exec` into the
//! container for an image service), and named volumes listed and removed
//! (`drover volume`). Each is an ordinary `Exec` request with a command
//! built here from validated names (service, instance and volume names
//! are letters, digits, `-_.@` only: nothing in them a shell reads).

use std::collections::HashMap;

use drover_spec::container::{engine, VOLUMES};
use drover_spec::{Host, Project};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no service or instance named {0:?} (see `drover endpoints`)")]
    UnknownService(String),
    #[error("{service} does not run on the selected hosts")]
    NotHere { service: String },
    #[error("{service} runs {instances} on {host}: name one with --service")]
    Ambiguous { service: String, host: String, instances: String },
    #[error("{0:?} is not a volume name (letters, digits, - _ .)")]
    BadName(String),
    #[error("{0}")]
    Spec(Box<drover_spec::SpecError>),
}

/// Per host, the command `drover exec --service NAME -- ARGV` runs there:
/// inside the host's container of `name` (a service, or one of its
/// instances) for an image service, `argv` itself on the host for a native
/// one. Hosts not running it are left out. One argument is split like
/// shell words (there may be no shell in the image), several are the argv.
pub fn exec_commands(
    project: &Project,
    hosts: &[Host],
    name: &str,
    argv: &[String],
    host_line: &str,
) -> Result<(Vec<Host>, HashMap<String, String>), ContainerError> {
    let all = project.endpoints().map_err(|e| ContainerError::Spec(Box::new(e)))?;
    let instances: Vec<&drover_spec::Instance> =
        all.values().flatten().filter(|i| i.service == name || i.name == name).collect();
    let Some(first) = instances.first() else { return Err(ContainerError::UnknownService(name.into())) };
    let runtime = project.container(&first.service).map(|c| c.runtime());
    let argv: Vec<String> = match argv {
        [one] => shlex::split(one).unwrap_or_else(|| vec![one.clone()]),
        many => many.to_vec(),
    };
    let mut on = Vec::new();
    let mut commands = HashMap::new();
    for h in hosts {
        let here: Vec<&&drover_spec::Instance> = instances.iter().filter(|i| i.host == h.name).collect();
        let cmd = match here.as_slice() {
            [] => continue,
            [i] => match runtime {
                Some(rt) => engine::exec_command(rt, &i.name, &argv, None),
                None => host_line.to_string(),
            },
            many => {
                return Err(ContainerError::Ambiguous {
                    service: name.into(),
                    host: h.name.clone(),
                    instances: many.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        };
        on.push(h.clone());
        commands.insert(h.name.clone(), cmd);
    }
    if on.is_empty() {
        return Err(ContainerError::NotHere { service: name.into() });
    }
    Ok((on, commands))
}

/// One line per named volume on a host: `service/volume`, owner `uid:gid`,
/// size in KiB (tab-separated; nothing when there are none).
pub fn volume_ls_command() -> String {
    format!(
        "for d in {VOLUMES}/*/*; do [ -d \"$d\" ] || continue; printf '%s\\t%s\\t%s\\n' \"${{d#{VOLUMES}/}}\" \"$(stat -c %u:%g \"$d\")\" \"$(du -sk \"$d\" | cut -f1)\"; done"
    )
}

/// A named volume as `drover volume ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeRow {
    pub host: String,
    pub service: String,
    pub volume: String,
    pub owner: String,
    pub kib: u64,
}

/// [`volume_ls_command`]'s output on `host`.
pub fn parse_ls(host: &str, stdout: &str) -> Vec<VolumeRow> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (sv, owner, kib) = (f.next()?, f.next()?, f.next()?);
            let (service, volume) = sv.split_once('/')?;
            Some(VolumeRow {
                host: host.into(),
                service: service.into(),
                volume: volume.into(),
                owner: owner.into(),
                kib: kib.trim().parse().unwrap_or(0),
            })
        })
        .collect()
}

/// Exit codes of [`volume_rm_command`] besides 0 (removed).
pub const RM_RUNNING: i32 = 3;
pub const RM_ABSENT: i32 = 4;

/// Remove service `service`'s volume `volume` on a host, refused (exit
/// [`RM_RUNNING`]) while a container of the service (or an instance)
/// runs there, under runc or the host's docker or podman; [`RM_ABSENT`] when there is no such volume.
pub fn volume_rm_command(service: &str, volume: &str) -> Result<String, ContainerError> {
    for n in [service, volume] {
        if !drover_spec::container::valid_name(n) {
            return Err(ContainerError::BadName(n.into()));
        }
    }
    let dir = format!("{VOLUMES}/{service}/{volume}");
    Ok(format!(
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         [ -d {dir} ] || {{ echo 'no volume {service}/{volume} here' >&2; exit {RM_ABSENT}; }}\n\
         for id in $(runc list -q 2>/dev/null); do\n\
         \tcase \"$id\" in drover-{service}|drover-{service}-[0-9]*)\n\
         \t\tif runc state \"$id\" 2>/dev/null | grep -q '\"status\": \"running\"'; then echo \"container $id is running: stop it first (remove the service, or drain the host)\" >&2; exit {RM_RUNNING}; fi ;;\n\
         \tesac\n\
         done\n\
         for cli in docker podman; do\n\
         \tcommand -v $cli >/dev/null 2>&1 || continue\n\
         \tfor id in $($cli ps --format '{{{{.Names}}}}' 2>/dev/null); do\n\
         \t\tcase \"$id\" in drover-{service}|drover-{service}-[0-9]*) echo \"container $id ($cli) is running: stop it first (remove the service, or drain the host)\" >&2; exit {RM_RUNNING} ;; esac\n\
         \tdone\n\
         done\n\
         rm -rf --one-file-system {dir}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hosts h1, h2 with role `app`: image service `img` (one per host),
    /// image service `multi` (two per host), native service `native`.
    fn project() -> (tempfile::TempDir, Project) {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("drover.toml", "");
        w("inventory.toml", "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"app\"]\n[hosts.h2]\naddress = \"10.0.0.2\"\nroles = [\"app\"]\n");
        w("roles/app.toml", "services = [\"img\", \"multi\", \"native\"]\n");
        w("images/x/bin/app", "x");
        w("services/img.toml", "image = { dir = \"images/x\" }\ncommand = \"/bin/app\"\n");
        w("services/multi.toml", "image = { dir = \"images/x\" }\ncommand = \"/bin/app\"\ninstances = 2\n");
        w("services/native.toml", "command = \"sleep 1000\"\n");
        let p = Project::load(d.path()).unwrap();
        (d, p)
    }

    #[test]
    fn exec_with_a_service_runs_inside_its_container_per_host_or_says_which_to_name() {
        let (_d, p) = project();
        let argv = vec!["cat '/data/a b'".to_string()];
        let (hosts, cmds) = exec_commands(&p, &p.hosts, "img", &argv, "HOST LINE").unwrap();
        assert_eq!(hosts.len(), 2);
        assert!(cmds["h1"].ends_with("runc exec drover-img cat '/data/a b'"), "{}", cmds["h1"]);
        let (_, cmds) = exec_commands(&p, &p.hosts[1..], "multi-1", &argv, "HOST LINE").unwrap();
        assert!(cmds["h2"].contains("runc exec drover-multi-1 cat"), "{cmds:?}");
        let (_, cmds) = exec_commands(&p, &p.hosts, "native", &argv, "HOST LINE").unwrap();
        assert_eq!(cmds["h1"], "HOST LINE", "a native service's command runs on the host");
        let e = exec_commands(&p, &p.hosts, "multi", &argv, "x").unwrap_err().to_string();
        assert_eq!(e, "multi runs multi-0, multi-1 on h1: name one with --service");
        let e = exec_commands(&p, &p.hosts, "nope", &argv, "x").unwrap_err().to_string();
        assert!(e.contains("no service or instance named \"nope\""), "{e}");
    }

    #[test]
    fn volume_listing_parses_and_removal_refuses_bad_names() {
        let rows = parse_ls("h1", "db/data\t1000:1000\t24\nweb/cache\t0:0\t4\n");
        assert_eq!(
            rows[0],
            VolumeRow {
                host: "h1".into(),
                service: "db".into(),
                volume: "data".into(),
                owner: "1000:1000".into(),
                kib: 24
            }
        );
        assert_eq!(rows.len(), 2);
        assert!(volume_rm_command("db", "../etc").is_err());
        assert!(volume_rm_command("db", "data")
            .unwrap()
            .contains("rm -rf --one-file-system /var/lib/drover/volumes/db/data\n"));
    }
}
