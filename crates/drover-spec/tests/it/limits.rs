//! `[limits]` (issue #26, item 3): a runaway template, a huge rendering, a
//! huge or sparse layer file each stop the load or the compile with the
//! file and the bound named, instead of spinning, eating memory or handing
//! every host gigabytes.

use std::fs;
use std::path::Path;

use drover_proto::{Facts, Supervisor};
use drover_spec::Project;

use crate::support::{render_error, write};

/// The quickstart scaffold, one host, with `limits` as its `[limits]`.
fn project(limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scaffold = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drover/scaffold/quickstart");
    for rel in ["roles/site.toml", "services/web.toml", "layers/site/etc/motd", "layers/site/srv/site/index.html.j2"] {
        write(dir.path(), rel, &fs::read_to_string(scaffold.join(rel)).unwrap());
    }
    let toml = fs::read_to_string(scaffold.join("drover.toml")).unwrap();
    write(dir.path(), "drover.toml", &format!("{toml}\n[limits]\n{limits}\n"));
    write(dir.path(), "inventory.toml", "[hosts.h1]\naddress = \"10.0.0.1\"\n");
    dir
}

fn compile_error(dir: &Path) -> String {
    let p = Project::load(dir).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let facts = Facts { supervisor: Some(Supervisor::Runit), ..Default::default() };
    match p.compile(&p.hosts[0], &facts, 1) {
        Ok(_) => panic!("compiled"),
        Err(e) => render_error(e),
    }
}

fn load_error(dir: &Path) -> String {
    match Project::load(dir) {
        Ok(_) => panic!("loaded"),
        Err(e) => render_error(e),
    }
}

#[test]
fn a_runaway_template_stops_at_its_step_bound_naming_the_file() {
    let dir = project("template-steps = 100000");
    let lp = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}";
    write(dir.path(), "layers/site/etc/loop.j2", lp);
    let e = compile_error(dir.path());
    assert!(e.contains("layers/site/etc/loop.j2") && e.contains("more than 100000 template steps"), "{e}");
    assert!(e.contains("[limits] template-steps"), "{e}");
    // Within the bound, the same kind of loop renders.
    write(dir.path(), "layers/site/etc/loop.j2", "{% for a in range(10) %}{{ a }}{% endfor %}");
    let p = Project::load(dir.path()).unwrap();
    p.compile(&p.hosts[0], &Facts { supervisor: Some(Supervisor::Runit), ..Default::default() }, 1).unwrap();
}

#[test]
fn a_rendering_over_its_size_bound_is_refused() {
    let dir = project("template-output = \"1KiB\"");
    write(dir.path(), "layers/site/etc/big.j2", "{% for a in range(2000) %}x{% endfor %}");
    let e = compile_error(dir.path());
    assert!(e.contains("layers/site/etc/big.j2") && e.contains("renders more than 1.0 KiB"), "{e}");
}

#[test]
fn a_layer_file_over_its_size_bound_or_sparse_is_refused_at_load() {
    let dir = project("file-size = \"1KiB\"");
    write(dir.path(), "layers/site/etc/blob", &"y".repeat(2048));
    let e = load_error(dir.path());
    assert!(e.contains("layers/site/etc/blob") && e.contains("2.0 KiB is larger than the 1.0 KiB"), "{e}");

    let dir = project("");
    let sparse = dir.path().join("layers/site/var/disk.img");
    fs::create_dir_all(sparse.parent().unwrap()).unwrap();
    fs::File::create(&sparse).unwrap().set_len(64 << 20).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("disk.img") && e.contains("is a sparse file (64.0 MiB long"), "{e}");
}

#[test]
fn a_bad_limit_is_named_at_its_line() {
    let dir = project("file-size = \"lots\"");
    let e = load_error(dir.path());
    assert!(e.contains("drover.toml:") && e.contains("write a size such as 64MiB or 2GiB"), "{e}");
}
