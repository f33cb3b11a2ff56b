//! Diagnostics that name the file, the line and the fix.

use std::path::Path;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A problem in a project file. Rendered by miette with the offending line
/// underlined and a `help:` line that says what to do.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct SpecError {
    pub message: String,
    #[source_code]
    pub src: Option<NamedSource<String>>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    /// Further problems found in the same load.
    #[related]
    pub others: Vec<SpecError>,
}

impl SpecError {
    /// An error about a file as a whole (missing, unreadable).
    pub fn file(path: &Path, message: impl Into<String>, help: impl Into<String>) -> SpecError {
        SpecError {
            message: format!("{}: {}", path.display(), message.into()),
            src: None,
            span: None,
            label: String::new(),
            help: Some(help.into()),
            others: vec![],
        }
    }

    /// An error at a byte range of a file's text.
    pub fn at(
        name: &str,
        text: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> SpecError {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        SpecError {
            message: format!("{name}:{line}: {}", message.into()),
            src: Some(NamedSource::new(name, text.to_string())),
            span: Some(span.into()),
            label: label.into(),
            help: Some(help.into()),
            others: vec![],
        }
    }

    /// A TOML syntax or schema error, with the span toml reports.
    pub fn toml(name: &str, text: &str, err: &toml::de::Error) -> SpecError {
        let span = err.span().unwrap_or(0..0);
        let msg = err.message().trim().to_string();
        let help = if msg.contains("unknown field") {
            "remove or rename the key; the accepted keys are listed in the message and in docs/project.md"
        } else if msg.contains("missing field") {
            "add the missing key"
        } else {
            "fix the TOML at the marked place (see docs/project.md for the format)"
        };
        SpecError::at(name, text, span, msg, "here", help)
    }

    /// Bundle several errors into one report (the first leads).
    pub fn many(mut errs: Vec<SpecError>) -> Option<SpecError> {
        if errs.is_empty() {
            return None;
        }
        let mut first = errs.remove(0);
        first.others.extend(errs);
        Some(first)
    }
}

/// Byte range of line `line` (1-based) in `text`, for errors that only know a
/// line number (templates, CSV).
pub fn line_span(text: &str, line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return start..start + l.trim_end_matches('\n').len();
        }
        start += l.len();
    }
    text.len()..text.len()
}
