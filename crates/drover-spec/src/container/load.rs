//! An image service's keys in `services/<name>.toml`, checked at load with
//! the file and line of every mistake, and resolved against the image's
//! own config (the service file's keys win, as `docker run`'s flags do).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::dir::DirSource;
use super::prepared::{PreparedSource, SourceKey};
use super::{Argv, Container, Containers, ImageRef, ImageSource, Process, Runtime, Volume};
use crate::diag::SpecError;
use crate::files::ServiceFile;

/// `$PATH` when neither the image nor the service sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image service of `sf`, `None` for a service without `image`.
pub(crate) fn load(
    project: &Path,
    sf: &ServiceFile,
    fname: &str,
    text: &str,
    limits: &crate::Limits,
) -> Result<Option<Containers>, SpecError> {
    let err =
        |span: std::ops::Range<usize>, msg: String, help: &str| SpecError::at(fname, text, span, msg, "here", help);
    let Some(image) = &sf.image else {
        let only = [
            sf.entrypoint.as_ref().map(|s| ("entrypoint", s.span())),
            sf.workdir.as_ref().map(|s| ("workdir", s.span())),
            sf.volumes.first().map(|s| ("volumes", s.span())),
            sf.memory.as_ref().map(|s| ("memory", s.span())),
            sf.pids.as_ref().map(|s| ("pids", s.span())),
            sf.stop_grace_period.as_ref().map(|s| ("stop-grace-period", s.span())),
            sf.runtime.as_ref().map(|s| ("runtime", s.span())),
        ];
        if let Some((key, span)) = only.into_iter().flatten().next() {
            return Err(err(
                span,
                format!("`{key}` is for services run from an image"),
                "add image = { dir = \"images/NAME\" }, or remove it",
            ));
        }
        return Ok(None);
    };
    if sf.unit.is_some() {
        return Err(err(
            image.span(),
            "a service has one of `image`, `command` or `unit`, not `image` and `unit`".into(),
            "remove unit = … (an image service's unit is written by drover)",
        ));
    }
    let source = source_for(image, project, fname, text)?;
    let flattened = source.flatten(project, limits)?;
    let argv = |a: &Spanned<Argv>, key: &str| -> Result<Vec<String>, SpecError> {
        match a.get_ref() {
            Argv::List(v) => Ok(v.clone()),
            Argv::Line(l) => shlex::split(l).ok_or_else(|| {
                err(
                    a.span(),
                    format!("{key}: unbalanced quotes in {l:?}"),
                    "close the quote, or write an array: [\"httpd\", \"-f\"]",
                )
            }),
        }
    };
    let entrypoint = sf.entrypoint.as_ref().map(|e| argv(e, "entrypoint")).transpose()?;
    let command = sf.command.as_ref().map(|c| argv(c, "command")).transpose()?;
    // Run inside the container without a shell (`units::health_command`).
    if let Some(h) = &sf.health {
        if let Some(c) = h.get_ref().command.as_ref().filter(|c| shlex::split(c).is_none_or(|w| w.is_empty())) {
            return Err(err(
                h.span(),
                format!("health command {c:?}: unbalanced quotes, or empty"),
                "it runs inside the container split like shell words: close the quote",
            ));
        }
    }
    if let Some(w) = sf.workdir.as_ref().filter(|w| !w.get_ref().starts_with('/')) {
        return Err(err(
            w.span(),
            format!("workdir {:?} is not absolute", w.get_ref()),
            "write an absolute path inside the container, e.g. \"/srv\"",
        ));
    }
    let mut volumes = Vec::new();
    let mut targets = BTreeMap::new();
    for v in &sf.volumes {
        let vol = Volume::parse(v.get_ref()).map_err(|m| {
            err(
                v.span(),
                format!("volume {m}"),
                "write \"NAME:/path\" (a named volume) or \"/host/dir:/path[:ro]\" (a bind mount)",
            )
        })?;
        if targets.insert(vol.target.clone(), ()).is_some() {
            return Err(err(v.span(), format!("two volumes at {}", vol.target), "mount one volume per path"));
        }
        volumes.push(vol);
    }
    let memory = match &sf.memory {
        None => None,
        Some(m) => Some(
            crate::instances::parse_size(m.get_ref())
                .ok()
                .and_then(|b| i64::try_from(b).ok())
                .filter(|b| *b >= 4 << 20)
                .ok_or_else(|| {
                    err(
                        m.span(),
                        format!("memory {:?} is not a size of at least 4M", m.get_ref()),
                        "write e.g. memory = \"256M\"",
                    )
                })?,
        ),
    };
    let pids = match &sf.pids {
        Some(p) if *p.get_ref() < 1 => {
            return Err(err(p.span(), "pids must be at least 1".into(), "write e.g. pids = 512"))
        }
        p => p.as_ref().map(|p| *p.get_ref()),
    };
    let stop_grace_secs = match &sf.stop_grace_period {
        None => 5,
        Some(s) => crate::parse_duration(s.get_ref())
            .map(|d| d.as_secs().max(1))
            .map_err(|m| err(s.span(), m, "write e.g. \"10s\""))?,
    };
    let runtime = match &sf.runtime {
        None => Runtime::Runc,
        Some(r) => Runtime::parse(r.get_ref()).ok_or_else(|| {
            err(
                r.span(),
                format!("runtime {:?} is not one drover knows", r.get_ref()),
                "write runtime = \"runc\" (the default), \"docker\" or \"podman\"",
            )
        })?,
    };
    // What depends on the image's own config and files: resolved for each
    // architecture it was prepared for (`super::arches`).
    let several = flattened.by_arch.len() > 1;
    let mut by_arch = BTreeMap::new();
    for (arch, flat) in flattened.by_arch {
        let what = match several {
            true => format!("{} for {arch}", source.describe()),
            false => source.describe(),
        };
        let (entrypoint, cmd) = match (&entrypoint, &command) {
            // As `docker run --entrypoint`: a new entrypoint drops the image's command.
            (Some(e), c) => (e.clone(), c.clone().unwrap_or_default()),
            (None, Some(c)) => (flat.config.entrypoint.clone(), c.clone()),
            (None, None) => (flat.config.entrypoint.clone(), flat.config.cmd.clone()),
        };
        let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if args.first().is_none_or(|a| a.is_empty()) {
            return Err(err(
                image.span(),
                format!("the container of {what} has nothing to run"),
                "set command = [\"/bin/app\", \"--flag\"] (or entrypoint)",
            ));
        }
        let user = sf.user.as_ref().map(|u| (u.get_ref().clone(), u.span())).or(flat
            .config
            .user
            .clone()
            .map(|u| (u, image.span())));
        let (uid, gid) = match user {
            None => (0, 0),
            Some((u, span)) => super::user::resolve(&u, &flat.files).map_err(|e| {
                err(span, format!("{e} ({what})"), "write a user the image has, or numbers: user = \"1000:1000\"")
            })?,
        };
        let mut env = flat.config.env.clone();
        env.extend(sf.env.clone());
        env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
        let cwd = match &sf.workdir {
            Some(w) => w.get_ref().clone(),
            None => flat.config.workdir.clone().unwrap_or_else(|| "/".into()),
        };
        // An engine reads the environment from an env file, one line a variable.
        if runtime != Runtime::Runc {
            if let Some((k, _)) = env.iter().find(|(k, v)| k.contains(['\n', '=']) || v.contains('\n')) {
                return Err(err(
                    sf.runtime.as_ref().map_or(image.span(), |r| r.span()),
                    format!(
                        "env {k:?}: a name with '=' or a newline, or a value with a newline, cannot reach a {} container",
                        runtime.name()
                    ),
                    "remove the newline, or use runtime = \"runc\"",
                ));
            }
        }
        let c = Container {
            image: source.describe(),
            files: Arc::new(flat.files),
            process: Process { args, env, uid, gid, cwd },
            volumes: volumes.clone(),
            memory,
            pids,
            stop_grace_secs,
            runtime,
        };
        by_arch.insert(arch, c);
    }
    if by_arch.is_empty() {
        return Err(err(
            image.span(),
            format!("image {} was prepared for no architecture", source.describe()),
            "run `drover plan` or `drover apply`: they pull every image (through images.lock)",
        ));
    }
    Ok(Some(Containers { image: source.describe(), by_arch, missing: flattened.missing }))
}

/// The source an `image` value names: a directory of the project, or an
/// image the controller pulled and flattened before loading (a registry
/// reference, a `docker save`/OCI-layout file: [`PreparedSource`]).
pub(crate) fn source_for(
    image: &Spanned<ImageRef>,
    project: &Path,
    fname: &str,
    text: &str,
) -> Result<Box<dyn ImageSource>, SpecError> {
    let err = |msg: String, help: &str| SpecError::at(fname, text, image.span(), msg, "here", help);
    const FORMS: &str =
        "write image = \"registry/app:1.4\", image = { file = \"images/app.tar\" } or image = { dir = \"images/NAME\" }";
    // Pulled and flattened by the controller before this load, or refused
    // here (a project loaded by something that pulls nothing).
    let prepared = |key: SourceKey| -> Result<Box<dyn ImageSource>, SpecError> {
        if !key.path(project).is_file() {
            return Err(err(
                format!("image {:?} has not been pulled into .drover/images yet", key.describe()),
                "run `drover plan` or `drover apply` first: they pull every image (through images.lock)",
            ));
        }
        Ok(Box::new(PreparedSource { key }))
    };
    match image.get_ref() {
        ImageRef::Registry(r) => prepared(SourceKey::Registry(r.clone())),
        ImageRef::Table(t) => match (&t.dir, &t.file) {
            (Some(_), Some(_)) | (None, None) => {
                Err(err("image = { … } needs exactly one of `dir` or `file`".into(), FORMS))
            }
            (None, Some(f)) => prepared(SourceKey::File(f.clone())),
            (Some(d), None) => {
                let clean = !d.starts_with('/') && d.split('/').all(|c| !matches!(c, "" | "." | ".."));
                if !clean || !project.join(d).is_dir() {
                    return Err(err(
                        format!("image dir {d:?} is not a directory of the project"),
                        "give a path relative to the project, e.g. images/web (its root filesystem)",
                    ));
                }
                Ok(Box::new(DirSource { rel: d.clone() }))
            }
        },
    }
}
