//! `runtime = "docker" | "podman"`: an image service run by the host's
//! container engine instead of runc (docs/containers.md, "Docker and
//! Podman runtimes").
//!
//! The rootfs still travels as the generation's managed files
//! (`super::rootfs`), so dedup, deltas, the atomic swap, rollback and
//! bundles are the same as under runc. What differs is the `run` script
//! the supervisor runs in the foreground:
//!
//! 1. it fails with a message naming the host and the runtime when the
//!    engine's CLI is missing or its daemon does not answer (drover does
//!    not install engines);
//! 2. it makes the engine's image from the rootfs when the engine lacks it
//!    (`tar | docker import`), tagged by the rootfs's content hash, so a
//!    rollback finds the old image again (or re-imports it from the old
//!    generation's files); nothing is ever pulled (`--pull never`);
//! 3. it removes a container of the same name left by a killed client,
//!    prunes the service's images beyond the newest [`KEEP_IMAGES`], and
//!    `exec`s `docker run --rm` attached: the supervisor's process is the
//!    engine's client, whose output is the container's (logs), which exits
//!    when the container does (restarts, the health gate's same-process
//!    rule) and whose container the next start replaces.
//!
//! The `stop` script is `docker stop -t GRACE` (SIGTERM, SIGKILL after the
//! grace period), for the same reason as runc's: the container's pid 1
//! ignores signals it has no handler for. The configuration is the runc
//! bundle's, as flags: host network, read-only root with tmpfs `/tmp` and
//! `/run`, the same capabilities, `no-new-privileges`, memory and pids
//! limits, volumes as bind mounts of the same host directories. The
//! environment goes in an `env` file readable by root only (it may hold
//! secrets; on the command line every user would see it).

use std::collections::BTreeMap;

use drover_proto::{EntryKind, Supervisor};

use super::{bundle_dir, container_id, rootfs_dir, units as runc, Container, Process};
use crate::units::{self, ServiceDef, UnitFile};

/// What runs an image service's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// runc from a bundle drover writes; no daemon (the default).
    #[default]
    Runc,
    /// The host's dockerd, through the `docker` CLI.
    Docker,
    /// The host's podman.
    Podman,
}

impl Runtime {
    /// `runtime = "…"` as written; `None` for a name drover does not know.
    pub fn parse(s: &str) -> Option<Runtime> {
        match s {
            "runc" => Some(Runtime::Runc),
            "docker" => Some(Runtime::Docker),
            "podman" => Some(Runtime::Podman),
            _ => None,
        }
    }

    /// The name as written, which is also the engine's CLI.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// Images of a service kept in the engine: as many as the agent keeps
/// generations (`drover-agent`'s `KEEP_GENERATIONS`), so a rollback usually
/// finds its image; one pruned is imported again from the generation's files.
pub const KEEP_IMAGES: usize = 5;

/// The same capabilities the runc bundle gives (Docker's defaults, named
/// explicitly because podman's defaults are fewer).
const CAPS: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The engine's repository of service `service`'s images: `localhost/…` so
/// docker and podman name it alike and neither takes it for Docker Hub.
pub fn image_repo(service: &str) -> String {
    let lower: String =
        service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let trimmed = lower.trim_matches('-');
    if trimmed == service {
        format!("localhost/drover/{service}")
    } else {
        // Two services that lower-case alike keep their own repositories.
        let h = blake3::hash(service.as_bytes()).to_hex();
        format!("localhost/drover/{}-{}", if trimmed.is_empty() { "x" } else { trimmed }, &h[..8])
    }
}

/// The engine's image of service `service`: its repository, tagged by the
/// content of the rootfs (every path, kind, mode, owner and content hash),
/// so the same files give the same tag on every host and every apply.
pub fn image_ref(service: &str, c: &Container) -> String {
    let mut h = blake3::Hasher::new();
    for (e, _) in super::rootfs::entries(service, c) {
        let what = match &e.kind {
            EntryKind::File { hash, .. } => format!("f {}", hash.to_hex()),
            EntryKind::Symlink { target } => format!("l {target}"),
            EntryKind::Dir => "d".to_string(),
        };
        h.update(format!("{}\0{}\0{:o}\0{}\0{}\n", e.path, what, e.mode, e.owner, e.group).as_bytes());
    }
    format!("{}:{}", image_repo(service), &h.finalize().to_hex()[..20])
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| "''".into(), |q| q.into_owned())
}

/// Every file of container `name` (the service, or one of its instances)
/// of image service `service` run by an engine: `env`, `run`, `stop` and
/// the supervisor's unit for `run`.
pub fn files(sup: Supervisor, service: &str, name: &str, c: &Container, p: &Process) -> Vec<UnitFile> {
    let dir = bundle_dir(name);
    let run_path = format!("{dir}/run");
    let stop_path = format!("{dir}/stop");
    let env_file: String = p.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let env = BTreeMap::new();
    // dockerd is a unit of the host (podman has no daemon): started before
    // the service and stopped after it (see `ServiceDef::after`).
    let after = (c.runtime == Runtime::Docker).then_some("docker.service");
    let def = ServiceDef { name, command: &run_path, user: "root", env: &env, stop: Some(&stop_path), after };
    let mut out = vec![
        // The environment may hold secrets: root only.
        UnitFile { path: format!("{dir}/env"), content: Some(env_file), symlink: None, mode: 0o600 },
        UnitFile { path: run_path.clone(), content: Some(run_script(service, name, c, p)), symlink: None, mode: 0o755 },
        UnitFile { path: stop_path.clone(), content: Some(stop_script(name, c)), symlink: None, mode: 0o755 },
    ];
    out.extend(units::files(sup, &def));
    out
}

/// The `run` script of container `name` (see the module's doc).
pub fn run_script(service: &str, name: &str, c: &Container, p: &Process) -> String {
    let rt = c.runtime;
    let cli = rt.name();
    let id = container_id(name);
    let dir = bundle_dir(name);
    let repo = image_repo(service);
    let image = image_ref(service, c);
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
    let daemon = if rt == Runtime::Docker { "is dockerd running?" } else { "is podman working?" };
    let mut s = format!(
        "#!/bin/sh\n# Generated by drover for container {id} (runtime {cli}). Local edits are reverted on apply.\nset -e\nexport PATH={HOST_PATH}\n\
         # drover does not install container engines: say so, naming the host.\n\
         if ! command -v {cli} >/dev/null 2>&1; then\n\
         \techo \"drover: $(uname -n): service {name} has runtime = \\\"{cli}\\\" but there is no {cli} on this host (drover does not install it: install {cli}, or use runtime = \\\"runc\\\")\" >&2\n\texit 1\nfi\n\
         if ! {cli} version >/dev/null 2>&1; then\n\
         \techo \"drover: $(uname -n): service {name} has runtime = \\\"{cli}\\\" but {cli} does not answer ({daemon})\" >&2\n\texit 1\nfi\n"
    );
    s.push_str(&runc::prepare_volumes(service, c, p));
    s.push_str(&format!(
        "IMAGE={image}\n\
         # The image is made from the generation's rootfs when {cli} lacks it; never pulled.\n\
         # One instance imports at a time.\n\
         exec 9>/run/drover-image-{service}.lock\nif command -v flock >/dev/null; then flock 9; fi\n\
         if ! {cli} image inspect \"$IMAGE\" >/dev/null 2>&1; then\n\
         \ttar -C {rootfs} --numeric-owner -cf - . | {cli} import --message 'drover {service}' - \"$IMAGE\" >/dev/null\nfi\n\
         # A container of this name left by a killed client is removed first.\n\
         {cli} rm -f {id} >/dev/null 2>&1 || true\n\
         # The service's images beyond the {KEEP_IMAGES} newest go (a rollback re-imports one).\n\
         {cli} image ls --format '{{{{.Tag}}}}' {repo} | grep -vx {tag} | sed 1,{keep}d | while read -r t; do\n\
         \t{cli} image rm \"{repo}:$t\" >/dev/null 2>&1 || true\ndone\n\
         exec 9>&-\n",
        rootfs = rootfs_dir(service),
        keep = KEEP_IMAGES - 1,
    ));
    let mut a: Vec<String> = vec![
        format!("exec {cli} run --rm --name {id} --pull never --network host --sig-proxy=true"),
        format!("--user {}:{} --workdir {} --env-file {dir}/env", p.uid, p.gid, quote(&p.cwd)),
        "--read-only --tmpfs /tmp:rw,exec,nosuid,nodev,mode=1777 --tmpfs /run:rw,exec,nosuid,nodev,mode=755".into(),
        // The project's services by name, as the runc bundle mounts it
        // (`super::hosts`): a compose app's names resolve under any runtime.
        format!("-v {}:/etc/hosts:ro", super::hosts::HOSTS_FILE),
        format!("--cap-drop ALL {} --security-opt no-new-privileges", CAPS.map(|c| format!("--cap-add {c}")).join(" ")),
    ];
    // The supervisor keeps the logs; docker need not keep a second copy.
    if rt == Runtime::Docker {
        a.push("--log-driver none".into());
    }
    let mut limits = Vec::new();
    if let Some(m) = c.memory {
        limits.push(format!("--memory {m} --memory-swap {m}"));
    }
    if let Some(n) = c.pids {
        limits.push(format!("--pids-limit {n}"));
    }
    if !limits.is_empty() {
        a.push(limits.join(" "));
    }
    for v in &c.volumes {
        let ro = if v.readonly { ":ro" } else { "" };
        a.push(format!("-v {}", quote(&format!("{}:{}{ro}", v.host_path(service), v.target))));
    }
    let (first, rest) = p.args.split_first().map_or(("", &[][..]), |(f, r)| (f.as_str(), r));
    let rest: Vec<String> = rest.iter().map(|w| quote(w)).collect();
    a.push(format!(
        "--entrypoint {} \"$IMAGE\"{}{}",
        quote(first),
        if rest.is_empty() { "" } else { " " },
        rest.join(" ")
    ));
    s.push_str(&a.join(" \\\n\t"));
    s.push('\n');
    s
}

/// The `stop` script: `docker stop` waits the grace period, then kills.
/// Exits 1 when there is no container, so runit signals the client itself.
pub fn stop_script(name: &str, c: &Container) -> String {
    let (cli, id) = (c.runtime.name(), container_id(name));
    format!(
        "#!/bin/sh\n# Generated by drover for container {id} (runtime {cli}). Local edits are reverted on apply.\n# SIGTERM to the container's init, SIGKILL after {g}s.\nexport PATH={HOST_PATH}\n{cli} stop -t {g} {id} >/dev/null 2>&1 || exit 1\n",
        g = c.stop_grace_secs,
    )
}

/// The host shell command that runs `argv` inside container `name` run by
/// `runtime`, as `user` or else the container's own user.
pub fn exec_command(runtime: Runtime, name: &str, argv: &[String], user: Option<(u32, u32)>) -> String {
    if runtime == Runtime::Runc {
        return runc::exec_command(name, argv, user);
    }
    let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    let user = user.map(|(u, g)| format!(" --user {u}:{g}")).unwrap_or_default();
    format!("PATH={HOST_PATH} {} exec{user} {} {}", runtime.name(), container_id(name), words.join(" "))
}

/// A health `command` of an image service, run inside container `name`
/// (split like shell words, as the container's user), whatever its runtime.
pub fn health_command(name: &str, command: &str, c: &Container, p: &Process) -> Option<String> {
    let argv = shlex::split(command)?;
    Some(exec_command(c.runtime, name, &argv, Some((p.uid, p.gid))))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
