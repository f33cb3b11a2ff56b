//! Reading a project's files as text (a file that is there but unreadable
//! or not UTF-8 is an error saying so, never taken for a missing one), and
//! the small text helpers the loaders share. A leaf: it imports no loader.

use std::path::Path;

use crate::diag::SpecError;

/// A project file's text; `None` when it does not exist. A file that is
/// there but unreadable or not UTF-8 is an error saying so (with the line of
/// the first bad byte), never taken for a missing file.
pub(crate) fn read_text(path: &Path, name: &str) -> Result<Option<String>, SpecError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpecError::file(path, format!("cannot read it: {e}"), "check its permissions")),
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        SpecError::file(
            Path::new(name),
            format!("line {line}: not UTF-8 text (byte 0x{:02x} at offset {at})", bytes[at]),
            "save the file as UTF-8",
        )
    })
}

pub(crate) fn list_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().trim_end_matches(".toml").to_string()).collect())
        .unwrap_or_default();
    v.sort();
    if v.is_empty() {
        v.push("(none)".into());
    }
    v
}

/// A service file string is a template when it has `{{` or `{%`.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}
