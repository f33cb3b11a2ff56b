//! What the tests share: writing a project's files, a Debian 12 x86_64
//! host's facts, and an error rendered as the operator sees it.

use std::fs;
use std::path::Path;

/// Write `text` to `dir/rel`, creating its directories.
pub fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// `e` as the CLI prints it (miette, no colour): file, line and help.
pub fn render_error(e: drover_spec::SpecError) -> String {
    let mut s = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut s, &e)
        .unwrap();
    s
}

/// The facts of a Debian 12 x86_64 host whose supervisor is `sup`.
pub fn facts(sup: drover_proto::Supervisor) -> drover_proto::Facts {
    drover_proto::Facts {
        supervisor: Some(sup),
        os_id: "debian".into(),
        os_version: "12".into(),
        arch: "x86_64".into(),
        ..Default::default()
    }
}
