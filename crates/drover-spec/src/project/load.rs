//! Reading a project directory: `drover.toml`, the inventory, roles,
//! services and layers, all validated up front.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use globset::{Glob, GlobMatcher};
use toml::Spanned;

use crate::diag::SpecError;
use crate::duration::parse_duration;
use crate::files::{FileAttrs, ProjectFile, RoleFile};
use crate::inventory::{self};
use crate::layers::{self, LayerKind};
use crate::read::list_names;
use crate::render::Templates;

use super::service::{load_service, Role};
use super::{Project, Settings};

impl Project {
    /// Read and validate everything. All problems found are reported
    /// together; nothing is returned half-loaded.
    pub fn load(dir: &Path) -> Result<Project, SpecError> {
        let dir = dir.to_path_buf();
        let project_dir = dir.clone();
        let pf_path = dir.join("drover.toml");
        let pf_text = crate::read::read_text(&pf_path, "drover.toml")?.ok_or_else(|| {
            SpecError::file(
                &pf_path,
                "not a drover project (no drover.toml)",
                "run `drover init DIR` to create one, or pass -C DIR",
            )
        })?;
        let pf: ProjectFile = toml::from_str(&pf_text).map_err(|e| SpecError::toml("drover.toml", &pf_text, &e))?;
        let settings = settings(&pf, &pf_text)?;
        let alerts = crate::alert::resolve(&pf.alert, "drover.toml", &pf_text)?;
        let rollout = match &pf.rollout {
            Some(r) => crate::rollout::resolve(r, "drover.toml", &pf_text)?,
            None => crate::RolloutPolicy::default(),
        };
        let mut role_rollouts = BTreeMap::new();
        let secrets = drover_secrets::Store::new(&dir);
        let src = inventory::Sources {
            dir: &dir,
            project_defaults: &pf.defaults,
            project_name: "drover.toml",
            project_text: &pf_text,
            secrets: &secrets,
            ssh_config: pf.ssh.config.as_deref(),
        };
        let (raw_hosts, groups) = inventory::load(&src)?;

        let mut errors = Vec::new();
        let mut role_files = BTreeMap::new();
        // A missing role named at one place (say `[defaults] roles`) is one
        // error, not one per host using it.
        let mut reported = std::collections::BTreeSet::new();
        for h in &raw_hosts {
            if h.host.roles.is_empty() {
                errors.push(SpecError::file(
                    Path::new(&h.host.origin),
                    format!("host {} has no roles", h.host.name),
                    "give it roles = [\"…\"] in the inventory, or set [defaults] roles in drover.toml",
                ));
            }
            for (role, file, span) in &h.role_refs {
                if role_files.contains_key(role) {
                    continue;
                }
                match load_role(&dir, role) {
                    Ok(Some(r)) => {
                        role_files.insert(role.clone(), r);
                    }
                    Ok(None) if !reported.insert((role.clone(), file.clone(), span.start)) => {}
                    Ok(None) => {
                        let (name, text) = file.split_once('\0').unwrap_or((&**file, ""));
                        let known = list_names(&dir.join("roles"));
                        errors.push(SpecError::at(
                            name,
                            text,
                            span.clone(),
                            format!("host {} uses role {role:?}, which does not exist", h.host.name),
                            "unknown role",
                            format!("create roles/{role}.toml, or use one of: {}", known.join(", ")),
                        ));
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if let Some(e) = SpecError::many(errors) {
            return Err(e);
        }

        let mut roles = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut layer_map = BTreeMap::new();
        let mut files_globs = Vec::new();
        let mut errors = Vec::new();
        for (name, (rf, text)) in role_files {
            let fname = format!("roles/{name}.toml");
            for l in &rf.layers {
                if !layer_map.contains_key(l.get_ref()) {
                    match layers::scan(&dir, l.get_ref(), &settings.limits) {
                        Ok(files) => {
                            layer_map.insert(l.get_ref().clone(), files);
                        }
                        // The layer exists but something in it cannot be
                        // deployed: that error, naming the file, is the one to show.
                        Err(e) if dir.join("layers").join(l.get_ref()).is_dir() => errors.push(e),
                        Err(_) => errors.push(SpecError::at(
                            &fname,
                            &text,
                            l.span(),
                            format!(
                                "role {name} uses layer {:?}, but layers/{}/ does not exist",
                                l.get_ref(),
                                l.get_ref()
                            ),
                            "unknown layer",
                            format!(
                                "create layers/{}/ or fix the name; existing: {}",
                                l.get_ref(),
                                list_names(&dir.join("layers")).join(", ")
                            ),
                        )),
                    }
                }
            }
            for s in &rf.services {
                if !services.contains_key(s.get_ref()) {
                    match load_service(&dir, s, &fname, &text, &settings.limits) {
                        Ok(svc) => {
                            services.insert(s.get_ref().clone(), svc);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            if let Some(r) = &rf.rollout {
                match crate::rollout::resolve(r, &fname, &text) {
                    Ok(p) => {
                        role_rollouts.insert(name.clone(), p);
                    }
                    Err(e) => errors.push(e),
                }
            }
            for (glob, attrs) in &rf.files {
                if let Ok(g) = globset::Glob::new(glob) {
                    files_globs.push(super::unmatched::FilesGlob {
                        file: fname.clone(),
                        text: text.clone(),
                        span: attrs.span(),
                        glob: glob.clone(),
                        matcher: g.compile_matcher(),
                    });
                }
            }
            match role_files_attrs(&rf, &fname, &text).and_then(|f| Ok((f, crate::setup::load(&rf, &fname, &text)?))) {
                Ok((files, setup)) => {
                    roles.insert(
                        name,
                        Role {
                            layers: rf.layers.iter().map(|l| l.get_ref().clone()).collect(),
                            services: rf.services.iter().map(|s| s.get_ref().clone()).collect(),
                            vars: rf.vars,
                            files,
                            setup,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        errors.extend(super::unmatched::check(&layer_map, &roles, &services, &files_globs));
        errors.extend(super::order::check(&services));
        if let Some(e) = SpecError::many(errors) {
            return Err(e);
        }
        let templates = Templates::load(layer_map.values().flatten(), &settings.limits)?;
        let inline = super::instance_units::inline_templates(&services)?;
        let template_names = layer_map.values().flatten().filter(|f| matches!(f.kind, LayerKind::Template));
        crate::secrets::check_defined(&templates, template_names.map(|f| &f.rel), &secrets)?;
        Ok(Project {
            dir,
            settings,
            hosts: raw_hosts.into_iter().map(|h| h.host).collect(),
            vars: pf.vars,
            groups,
            roles,
            services,
            layers: layer_map,
            templates,
            rollout,
            role_rollouts,
            alerts,
            plans: Default::default(),
            fact_cache: HashMap::new(),
            fleet: std::sync::OnceLock::new(),
            placed: std::sync::OnceLock::new(),
            inline,
            secrets,
            package_lock: crate::lock::PackageLock::read(&project_dir)?,
        })
    }
}

fn settings(pf: &ProjectFile, text: &str) -> Result<Settings, SpecError> {
    let dur = |v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, SpecError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s.get_ref()).map_err(|m| {
                SpecError::at("drover.toml", text, s.span(), m, "here", "write a duration such as 500ms, 30s or 2m")
            }),
        }
    };
    Ok(Settings {
        name: pf.project.name.clone().unwrap_or_else(|| "drover".into()),
        confirm_timeout: dur(&pf.apply.confirm_timeout, Duration::from_secs(30))?,
        parallel: pf.apply.parallel.unwrap_or(512).max(1),
        connect_timeout: dur(&pf.apply.connect_timeout, Duration::from_secs(10))?,
        persist: Some(dur(&pf.ssh.persist, Duration::ZERO)?).filter(|d| !d.is_zero()),
        package_sources: pf.packages.sources.clone().unwrap_or_else(|| vec!["apt".into()]),
        reconcile: pf.serve.reconcile.unwrap_or_default(),
        limits: crate::Limits::resolve(&pf.limits, text)?,
    })
}

fn load_role(dir: &Path, name: &str) -> Result<Option<(RoleFile, String)>, SpecError> {
    let path = dir.join("roles").join(format!("{name}.toml"));
    let fname = format!("roles/{name}.toml");
    let Some(text) = crate::read::read_text(&path, &fname)? else { return Ok(None) };
    let rf: RoleFile = toml::from_str(&text).map_err(|e| SpecError::toml(&fname, &text, &e))?;
    Ok(Some((rf, text)))
}

fn role_files_attrs(
    rf: &RoleFile,
    fname: &str,
    text: &str,
) -> Result<Vec<(GlobMatcher, FileAttrs, Option<u32>)>, SpecError> {
    let mut out = Vec::new();
    for (glob, attrs) in &rf.files {
        let m = Glob::new(glob).map_err(|e| {
            SpecError::at(fname, text, attrs.span(), format!("bad glob {glob:?}: {e}"), "here", "fix the glob")
        })?;
        let mode = match &attrs.get_ref().mode {
            None => None,
            Some(s) => Some(
                u32::from_str_radix(s.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| {
                    SpecError::at(
                        fname,
                        text,
                        attrs.span(),
                        format!("mode {s:?} is not an octal permission"),
                        "here",
                        "write the mode as an octal string, e.g. \"0640\"",
                    )
                })?,
            ),
        };
        out.push((m.compile_matcher(), attrs.get_ref().clone(), mode));
    }
    Ok(out)
}
