//! Template rendering (minijinja).
//!
//! Undefined variables are errors, not empty strings: a typo in a variable
//! name must stop the apply with the template's file and line, not ship an
//! empty value to a fleet.

use minijinja::{Environment, UndefinedBehavior};

use crate::diag::{line_span, SpecError};
use crate::layers::{LayerFile, LayerKind};

pub struct Templates {
    env: Environment<'static>,
    /// Templates that use `generation` (rendered a second time for their
    /// generation-independent source hash).
    uses_generation: std::collections::HashSet<String>,
    /// Per template, the secrets it reads (`secrets.NAME`); `*` when it
    /// reads `secrets` as a whole (then every secret is given to it).
    secret_refs: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
}

impl Templates {
    pub fn load<'a>(files: impl Iterator<Item = &'a LayerFile>) -> Result<Templates, SpecError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let mut errors = Vec::new();
        for f in files.filter(|f| matches!(f.kind, LayerKind::Template)) {
            let text = match std::fs::read_to_string(&f.source) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(SpecError::file(
                        &f.source,
                        format!("cannot read template: {e}"),
                        "templates must be UTF-8 text",
                    ));
                    continue;
                }
            };
            if let Err(e) = env.add_template_owned(f.rel.clone(), text.clone()) {
                errors.push(template_error(&f.rel, &text, &e, None));
            }
        }
        if let Some(e) = SpecError::many(errors) {
            return Err(e);
        }
        let uses_generation = env
            .templates()
            .filter(|(_, t)| t.undeclared_variables(false).contains("generation"))
            .map(|(n, _)| n.to_string())
            .collect();
        let secret_refs = env
            .templates()
            .filter_map(|(n, t)| {
                let names: std::collections::BTreeSet<String> = t
                    .undeclared_variables(true)
                    .into_iter()
                    .filter_map(|v| match v.strip_prefix("secrets") {
                        Some("") => Some("*".to_string()),
                        Some(rest) => rest.strip_prefix('.').map(|r| r.split('.').next().unwrap_or(r).to_string()),
                        None => None,
                    })
                    .collect();
                (!names.is_empty()).then(|| (n.to_string(), names))
            })
            .collect();
        Ok(Templates { env, uses_generation, secret_refs })
    }

    /// The secrets template `name` reads (empty: none).
    pub fn secret_refs(&self, name: &str) -> Option<&std::collections::BTreeSet<String>> {
        self.secret_refs.get(name)
    }

    /// Template `name`'s source, for errors that point into it.
    pub fn source(&self, name: &str) -> Option<String> {
        self.env.get_template(name).ok().map(|t| t.source().to_string())
    }

    pub fn uses_generation(&self, name: &str) -> bool {
        self.uses_generation.contains(name)
    }

    pub fn render(&self, name: &str, ctx: &minijinja::Value, host: &str) -> Result<String, SpecError> {
        let tmpl = self.env.get_template(name).map_err(|e| template_error(name, "", &e, Some(host)))?;
        tmpl.render(ctx).map_err(|e| {
            let src = tmpl.source().to_string();
            template_error(name, &src, &e, Some(host))
        })
    }
}

fn template_error(name: &str, text: &str, e: &minijinja::Error, host: Option<&str>) -> SpecError {
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    let what = match host {
        Some(h) => format!("{what} (rendering for host {h})"),
        None => what,
    };
    let help = "fix the template; variables available are host.*, facts.*, vars.* (and each var by name), \
                generation, secrets.* (define one with `drover secret set NAME`)";
    match (e.range(), e.line()) {
        (Some(r), _) if !text.is_empty() => SpecError::at(name, text, r, what, "here", help),
        (None, Some(line)) if !text.is_empty() => SpecError::at(name, text, line_span(text, line), what, "here", help),
        _ => SpecError::file(std::path::Path::new(name), what, help),
    }
}
