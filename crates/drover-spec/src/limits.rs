//! Bounds on what a project may ask of the controller and its hosts, so a
//! runaway template or a stray huge file is a clear error at its file and
//! line rather than a controller spinning forever, a 2 GB heap or a host
//! handed 2 GiB it did not need. `[limits]` in drover.toml raises them.
//!
//! The template bound is minijinja's fuel (instructions executed), not wall
//! time: the same project then fails or passes the same way on every
//! machine and under any load, which a timer cannot promise. What the
//! default (100 million steps) costs in time: docs/benchmarks.md ("Limits").

use toml::Spanned;

use crate::diag::SpecError;
use crate::instances::parse_size;

/// `[limits]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsSection {
    pub template_steps: Option<u64>,
    pub template_output: Option<Spanned<String>>,
    pub file_size: Option<Spanned<String>>,
}

/// The bounds in force for a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Template instructions per rendering of one file.
    pub template_steps: u64,
    /// Bytes one rendering may produce.
    pub template_output: u64,
    /// Bytes of one layer file.
    pub file_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { template_steps: 100_000_000, template_output: 64 << 20, file_size: 2 << 30 }
    }
}

impl Limits {
    pub fn resolve(s: &LimitsSection, text: &str) -> Result<Limits, SpecError> {
        let d = Limits::default();
        let size = |v: &Option<Spanned<String>>, default: u64| match v {
            None => Ok(default),
            Some(v) => parse_size(v.get_ref()).map_err(|m| {
                SpecError::at("drover.toml", text, v.span(), m, "here", "write a size such as 64MiB or 2GiB")
            }),
        };
        Ok(Limits {
            template_steps: s.template_steps.unwrap_or(d.template_steps).max(1),
            template_output: size(&s.template_output, d.template_output)?,
            file_size: size(&s.file_size, d.file_size)?,
        })
    }
}

/// `n` bytes as people read them, for messages.
pub(crate) fn human(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}
