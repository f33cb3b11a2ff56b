//! Template rendering (minijinja).
//!
//! Undefined variables are errors, not empty strings: a typo in a variable
//! name must stop the apply with the template's file and line, not ship an
//! empty value to a fleet.
//!
//! Templates render text exactly as written, whatever the file's extension:
//! minijinja escapes `.html`, `.xml`, `.json` and `.yaml` templates by
//! default (a `.json.j2` turned `"{{ release }}"` into `""1.0""`), which no
//! config file wants. A template that needs escaping asks for it with a
//! filter: `| tojson` for a JSON value, `| e` for HTML.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::diag::{line_span, SpecError};
use crate::layers::{LayerFile, LayerKind};

pub struct Templates {
    env: Environment<'static>,
    /// Templates that use `generation` (rendered a second time for their
    /// generation-independent source hash).
    uses_generation: std::collections::HashSet<String>,
    /// Templates that read `fleet`, with the other variables they read
    /// (dotted paths): their rendering is a function of those values alone,
    /// so hosts that agree on them share one rendering (see
    /// [`Templates::memo_key`]). Templates that include or import others are
    /// left out: what the others read is not listed here.
    fleet_readers: std::collections::HashMap<String, Vec<Vec<String>>>,
    /// Whether any template reads `fleet` (if none does, it is never built).
    reads_fleet: bool,
    /// Whether any template may read `fleet.services` (it names it, or reads
    /// `fleet` whole): only then is the instance list put into `fleet`.
    reads_fleet_services: bool,
    /// Per template, the secrets it reads (`secrets.NAME`); `*` when it
    /// reads `secrets` as a whole (then every secret is given to it).
    secret_refs: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
    /// What one rendering may take (`[limits]`).
    limits: crate::Limits,
}

impl Templates {
    pub fn load<'a>(
        files: impl Iterator<Item = &'a LayerFile>,
        limits: &crate::Limits,
    ) -> Result<Templates, SpecError> {
        let mut env = Environment::new();
        env.set_fuel(Some(limits.template_steps));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // A missing fact that a default or a `defined` test handled is not
        // the cause of a later undefined-value error (see `fleet::take_missing`).
        fn handled<T>(r: T) -> T {
            crate::fleet::clear_missing();
            r
        }
        for name in ["default", "d"] {
            env.add_filter(
                name,
                |st: &minijinja::State, v: &minijinja::Value, a: minijinja::value::Rest<minijinja::Value>| {
                    handled(minijinja::filters::default(st, v, a))
                },
            );
        }
        env.add_test("defined", |v: &minijinja::Value| handled(minijinja::tests::is_defined(v)));
        env.add_test("undefined", |v: &minijinja::Value| handled(minijinja::tests::is_undefined(v)));
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
        let reads_fleet = env.templates().any(|(_, t)| t.undeclared_variables(false).contains("fleet"));
        let reads_fleet_services = env
            .templates()
            .any(|(_, t)| t.undeclared_variables(true).iter().any(|v| v == "fleet" || v.starts_with("fleet.services")));
        let fleet_readers = env
            .templates()
            .filter(|(_, t)| {
                let src = t.source();
                !["include", "import", "extends"].iter().any(|w| src.contains(w))
            })
            .filter_map(|(n, t)| {
                let vars = t.undeclared_variables(true);
                if !vars.iter().any(|v| v == "fleet" || v.starts_with("fleet.")) {
                    return None;
                }
                let mut paths: Vec<Vec<String>> = vars
                    .iter()
                    .filter(|v| *v != "fleet" && !v.starts_with("fleet."))
                    .map(|v| v.split('.').map(str::to_string).collect())
                    .collect();
                paths.sort();
                Some((n.to_string(), paths))
            })
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
        Ok(Templates {
            env,
            uses_generation,
            fleet_readers,
            reads_fleet,
            reads_fleet_services,
            secret_refs,
            limits: *limits,
        })
    }

    /// For a template that reads `fleet`: its name and the values in `ctx`
    /// of everything else it reads. Two renderings with equal keys in one
    /// run (one `fleet`) are equal: templates have no other inputs.
    pub fn memo_key(&self, name: &str, ctx: &minijinja::Value) -> Option<(String, Vec<minijinja::Value>)> {
        let paths = self.fleet_readers.get(name)?;
        let values =
            paths.iter().map(|p| p.iter().fold(ctx.clone(), |v, k| v.get_attr(k).unwrap_or_default())).collect();
        Some((name.to_string(), values))
    }

    pub fn reads_fleet(&self) -> bool {
        self.reads_fleet
    }

    pub fn reads_fleet_services(&self) -> bool {
        self.reads_fleet_services
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
        crate::fleet::clear_missing();
        let mut out = Bounded { buf: Vec::new(), limit: self.limits.template_output };
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        rendered.map_err(|e| {
            let src = tmpl.source().to_string();
            match (crate::fleet::take_missing(), e.kind()) {
                (Some((other, fact)), minijinja::ErrorKind::UndefinedError) => {
                    missing_fact(name, &src, &e, host, &other, &fact)
                }
                (_, minijinja::ErrorKind::OutOfFuel) => over_limit(
                    name,
                    host,
                    format!("took more than {} template steps (a runaway loop?)", self.limits.template_steps),
                    "`[limits] template-steps` in drover.toml raises the bound",
                ),
                (_, minijinja::ErrorKind::WriteFailure) => over_limit(
                    name,
                    host,
                    format!("renders more than {}", crate::limits::human(self.limits.template_output)),
                    "`[limits] template-output` in drover.toml raises the bound",
                ),
                _ => template_error(name, &src, &e, Some(host)),
            }
        })?;
        String::from_utf8(out.buf).map_err(|_| {
            SpecError::file(std::path::Path::new(name), "rendered bytes that are not UTF-8", "fix the template")
        })
    }
}

/// A rendering's output, refusing to grow past `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: u64,
}

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + b.len() as u64 > self.limit {
            return Err(std::io::Error::other("the rendering is over its size limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn over_limit(name: &str, host: &str, what: String, help: &str) -> SpecError {
    SpecError::file(std::path::Path::new(name), format!("{what} (rendering for host {host})"), help)
}

fn template_error(name: &str, text: &str, e: &minijinja::Error, host: Option<&str>) -> SpecError {
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    let what = match host {
        Some(h) => format!("{what} (rendering for host {h})"),
        None => what,
    };
    let help = "fix the template; variables available are host.*, facts.*, vars.* (and each var by name), \
                generation, fleet.*, secrets.* (define one with `drover secret set NAME`)";
    match (e.range(), e.line()) {
        (Some(r), _) if !text.is_empty() => SpecError::at(name, text, r, what, "here", help),
        (None, Some(line)) if !text.is_empty() => SpecError::at(name, text, line_span(text, line), what, "here", help),
        _ => SpecError::file(std::path::Path::new(name), what, help),
    }
}

/// A template read a fact of a host whose facts are not cached.
fn missing_fact(name: &str, text: &str, e: &minijinja::Error, host: &str, other: &str, fact: &str) -> SpecError {
    let what = format!("host {other} has no cached facts, so its fact `{fact}` is unknown (rendering for host {host})");
    let help = format!(
        "drover caches a host's facts whenever it contacts it: run `drover status --hosts {other}` first, \
         or give the template a default, e.g. `h.facts.{fact} | default(...)`"
    );
    match (e.range(), e.line()) {
        (Some(r), _) if !text.is_empty() => SpecError::at(name, text, r, what, "missing fact", help),
        (None, Some(line)) if !text.is_empty() => {
            SpecError::at(name, text, line_span(text, line), what, "missing fact", help)
        }
        _ => SpecError::file(std::path::Path::new(name), what, help),
    }
}
