//! Project loading and per-host compilation (placeholder).
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("spec error")]
pub struct SpecError;
