//! Compile-step benchmark: a project of HOSTS hosts × FILES files per host
//! (default 10,000 × 200), compiled for every host; then one template is
//! changed and everything is compiled again.
//!
//! ```sh
//! cargo bench -p drover-spec --bench compile             # 10,000 hosts × 200 files
//! HOSTS=1000 FILES=50 cargo bench -p drover-spec --bench compile
//! CASE=fleet cargo bench -p drover-spec --bench compile  # only the fleet case
//! CASE=instances cargo bench -p drover-spec --bench compile  # the fleet case, service placed
//! ```
//!
//! A plain binary (`harness = false`) rather than criterion: one run takes
//! seconds, so a handful of timed repetitions says all there is to say, and
//! the figures go straight into `docs/benchmarks.md`.
//!
//! The project: one role with two layers, `base` (plain files, 1 KiB each)
//! and `app` (templates, one in ten files, using the host's name, a group var
//! and a host var), a service whose `restart-on` glob matches the app files,
//! and hosts in 10 groups, each with a var of its own.
//!
//! The fleet case (issue 12): the same, but the templates read `fleet` lists
//! as real fleets do: an etcd member list (`fleet.roles.etcd`, 5 hosts), load
//! balancer backends (`fleet.roles.web`, every tenth host: 1,000), and an
//! `/etc/hosts` of every host (`fleet.hosts`, 10,000 lines), each also
//! reading a group var (`region`, 10 values), so hosts share renderings by
//! region. The compile includes building the `fleet` value, as a run does.
//!
//! The instances case (issue 12, items 2-3; only with `CASE=instances`): the
//! fleet case with the service placed by count (two instances per host on
//! average, `max-per-host = 4`, two port ranges, a command template), so
//! the figure includes placing 20,000 instances over 10,000 hosts and
//! writing each host's instance units.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use drover_proto::{Facts, Supervisor};
use drover_spec::Project;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn template(i: usize, variant: &str) -> String {
    format!(
        "# app config {i} ({variant})\nserver_name {{{{ host.name }}}};\nlisten {{{{ port }}}};\nregion {{{{ region }}}};\n\
         {{% for w in workers %}}worker {{{{ w }}}} {{{{ host.address }}}}\n{{% endfor %}}"
    )
}

/// A template reading a `fleet` list (see the module docs), by `i % 3`.
fn fleet_template(i: usize, variant: &str) -> String {
    let body = match i % 3 {
        0 => "{% for h in fleet.roles.etcd %}{{ h.name }}=http://{{ h.address }}:2380{% if not loop.last %},{% endif %}{% endfor %}\n",
        1 => "{% for h in fleet.roles.web %}server {{ h.name }} {{ h.address }}:{{ h.vars.port }} check\n{% endfor %}",
        _ => "{% for h in fleet.hosts %}{{ h.address }} {{ h.name }}\n{% endfor %}",
    };
    format!("# fleet config {i} ({variant}), region {{{{ region }}}}\n{body}")
}

fn make_project(dir: &Path, hosts: usize, files: usize, fleet: bool, instances: bool) {
    let templates = (files / 10).max(1);
    write(
        &dir.join("drover.toml"),
        "[project]\nname = \"bench\"\n\n[defaults]\nroles = [\"app\"]\n\n[vars]\nport = 8080\nworkers = [1, 2, 3, 4]\n",
    );
    write(&dir.join("roles/app.toml"), "layers = [\"base\", \"app\"]\nservices = [\"app\"]\n");
    let service = if instances {
        format!(
            "command = \"/usr/bin/app --name {{{{ instance.name }}}} --port {{{{ instance.ports.p2p }}}}\"\n\
             restart-on = [\"/etc/app/**\"]\n[ports]\np2p = \"20000-29999\"\nrpc = \"30000-39999\"\n\
             [placement]\ncount = {}\nmax-per-host = 4\n",
            hosts * 2
        )
    } else {
        "command = \"/usr/bin/app\"\nrestart-on = [\"/etc/app/**\"]\n".to_string()
    };
    write(&dir.join("services/app.toml"), &service);
    let filler: String = "x".repeat(1023) + "\n";
    for i in 0..files - templates {
        write(&dir.join(format!("layers/base/etc/base/d{}/f{i}.conf", i % 16)), &format!("{i}\n{filler}"));
    }
    for i in 0..templates {
        let text = if fleet { fleet_template(i, "v1") } else { template(i, "v1") };
        write(&dir.join(format!("layers/app/etc/app/t{i}.conf.j2")), &text);
    }
    write(&dir.join("roles/etcd.toml"), "layers = [\"base\", \"app\"]\n");
    write(&dir.join("roles/web.toml"), "layers = [\"base\", \"app\"]\n");
    let mut inv = String::with_capacity(hosts * 64);
    for g in 0..10 {
        let _ = writeln!(inv, "[groups.g{g}.vars]\nregion = \"region-{g}\"\n");
    }
    for h in 0..hosts {
        let _ = writeln!(
            inv,
            "[hosts.h{h}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"g{}\"]\nvars = {{ port = {} }}\n{}",
            h / 65536,
            (h / 256) % 256,
            h % 256,
            h % 10,
            8000 + h % 100,
            match h {
                _ if !fleet => "",
                0..5 => "roles = [\"app\", \"etcd\"]\n",
                _ if h % 10 == 5 => "roles = [\"app\", \"web\"]\n",
                _ => "",
            }
        );
    }
    write(&dir.join("inventory.toml"), &inv);
}

fn facts() -> Facts {
    Facts { hostname: "bench".into(), supervisor: Some(Supervisor::Runit), cpus: 2, ..Default::default() }
}

/// Compile every host on `threads` threads; returns the time taken and the
/// number of manifest entries produced.
fn compile_all(p: &Project, threads: usize) -> (Duration, usize) {
    let facts = facts();
    let t = Instant::now();
    let chunk = p.hosts.len().div_ceil(threads.max(1));
    let entries: usize = std::thread::scope(|s| {
        let handles: Vec<_> = p
            .hosts
            .chunks(chunk.max(1))
            .map(|hosts| {
                let facts = &facts;
                s.spawn(move || {
                    hosts.iter().map(|h| p.compile(h, facts, 1).expect("compile").manifest.entries.len()).sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    (t.elapsed(), entries)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too, small.
    let testing = !std::env::args().any(|a| a == "--bench");
    let hosts = env_usize("HOSTS", if testing { 50 } else { 10_000 });
    let files = env_usize("FILES", if testing { 20 } else { 200 });
    let threads = env_usize("THREADS", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let case = std::env::var("CASE").unwrap_or_default();
    if case == "instances" {
        run_case(hosts, files, threads, true, true);
        return;
    }
    if case != "fleet" {
        run_case(hosts, files, threads, false, false);
    }
    if case != "plain" {
        run_case(hosts, files, threads, true, false);
    }
}

fn run_case(hosts: usize, files: usize, threads: usize, fleet: bool, instances: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    make_project(dir.path(), hosts, files, fleet, instances);
    let variant = |v| if fleet { fleet_template(0, v) } else { template(0, v) };

    let t = Instant::now();
    let p = Project::load(dir.path()).expect("load");
    let load = t.elapsed();
    let (one_thread, entries) = compile_all(&p, 1);
    assert!(entries >= hosts * files, "every host gets every file (plus its service's runit files)");
    // A fresh load for the parallel figure: the first compile builds `fleet`
    // and renders the fleet templates, and that must be in the figure.
    let p = Project::load(dir.path()).expect("load");
    let (full, _) = compile_all(&p, threads);

    // One template changes: load again (what `drover apply` does) and recompile.
    write(&dir.path().join("layers/app/etc/app/t0.conf.j2"), &variant("v2"));
    let t = Instant::now();
    let p2 = Project::load(dir.path()).expect("reload");
    let (recompile, _) = compile_all(&p2, threads);
    let incremental = t.elapsed();
    let changed = p2.compile(&p2.hosts[0], &facts(), 1).expect("compile").manifest.hash()
        != p.compile(&p.hosts[0], &facts(), 1).expect("compile").manifest.hash();
    assert!(changed, "the template change shows in the manifest");

    let what = match (fleet, instances) {
        (_, true) => "templates reading fleet.*; service placed: 2 instances per host on average",
        (true, false) => "templates reading fleet.roles.* / fleet.hosts",
        _ => "templates",
    };
    println!("compile: {hosts} hosts x {files} files ({} {what}), {threads} threads", (files / 10).max(1));
    println!("| step | time | per host |");
    println!("|---|---|---|");
    let per_host = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / hosts as f64);
    println!("| load project | {} | |", secs(load));
    println!("| compile all hosts, 1 thread | {} | {} |", secs(one_thread), per_host(one_thread));
    println!("| compile all hosts, {threads} threads | {} | {} |", secs(full), per_host(full));
    println!("| one template changed: load + compile all | {} | {} |", secs(incremental), per_host(incremental));
    println!("|   of which compile | {} | |", secs(recompile));
    println!();
}
