//! Builds the static `drover-agent` and embeds it in the `drover` binary,
//! with every other agent `scripts/build-agents` built (#30).
//!
//! Why embed: the controller pushes the agent to hosts by content hash, so it
//! must carry exactly the agent it speaks the protocol with; one binary to
//! install, no version skew. Why a nested cargo: the agent needs different
//! flags (`+crt-static`, size profile) than the controller, and cargo cannot
//! express per-crate rustflags. The nested build is for the gnu target
//! (rustup's default here has no musl std), statically linked against glibc;
//! the agent uses no NSS lookups (accounts are read from /etc/passwd).
//!
//! `DROVER_AGENT_BIN=/path` skips the nested build and embeds that file.
//!
//! `DROVER_AGENTS_DIR=/dir` adds the agents in `/dir/release/` (or, for a
//! build with `agent-test-hooks`, `/dir/test-hooks/`), files named
//! `drover-agent-<target triple>` as `scripts/build-agents` writes them: the
//! static musl agents for x86_64 and aarch64. Per machine a glibc agent wins
//! where there is one (the native x86_64 one: measured 4–5× faster at
//! hashing than the musl one, see `agent_bin/select.rs`), else the smallest
//! (aarch64: musl). Each agent's machine comes from its ELF header
//! (`e_machine`) and must match its triple; each must say it was built with
//! this build's feature set (`drover-agent-features=...`, which the agent
//! prints in `--version`): a release never embeds an agent with
//! fault-injection points, a test build never one without. The feature set
//! picks the subdirectory, so the two are kept apart by construction, and
//! the marker check refuses a file put in the wrong one.
//!
//! The result is `agents.rs` in `OUT_DIR`, the table `agent_bin` includes.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

#[path = "src/agent_bin/select.rs"]
mod select;

use select::{built_with, elf_arch, features_marker, preferred_per_arch, Candidate};

fn main() {
    println!("cargo:rerun-if-env-changed=DROVER_AGENT_BIN");
    println!("cargo:rerun-if-env-changed=DROVER_AGENTS_DIR");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let hooks = env::var_os("CARGO_FEATURE_AGENT_TEST_HOOKS").is_some();
    let features = if hooks { "test-hooks" } else { "release" };
    let mut candidates = vec![native(&out, hooks)];
    // Empty is unset (`DROVER_AGENTS_DIR= cargo build` builds a controller
    // with the native agent only).
    if let Some(dir) = env::var("DROVER_AGENTS_DIR").ok().filter(|d| !d.is_empty()) {
        candidates.extend(from_dir(&Path::new(&dir).join(features)));
    }
    for c in &candidates {
        assert!(
            built_with(&c.bytes, features),
            "the agent for {} was not built with this build's agent features ({features}): it lacks {:?}; \
             build it with scripts/build-agents{}",
            c.target,
            features_marker(features),
            if hooks { " --test-hooks" } else { "" }
        );
    }
    let chosen = preferred_per_arch(candidates);

    let mut table = String::from("&[\n");
    for c in &chosen {
        let raw = out.join(format!("drover-agent-{}", c.arch));
        std::fs::write(&raw, &c.bytes).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
        let gz = raw.with_extension("gz");
        gzip(&c.bytes, &gz);
        writeln!(
            table,
            "    Embedded {{ arch: {:?}, target: {:?}, bytes: include_bytes!({:?}), gzipped: include_bytes!({:?}) }},",
            c.arch,
            c.target,
            raw.display().to_string(),
            gz.display().to_string()
        )
        .expect("write to a String");
    }
    table.push(']');
    std::fs::write(out.join("agents.rs"), table).expect("write agents.rs");
}

/// The agent this build makes itself (or `DROVER_AGENT_BIN`).
fn native(out: &Path, hooks: bool) -> Candidate {
    match env::var("DROVER_AGENT_BIN") {
        Ok(p) => {
            println!("cargo:rerun-if-changed={p}");
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("DROVER_AGENT_BIN={p}: {e}"));
            let arch = elf_arch(&bytes).unwrap_or_else(|| {
                panic!("DROVER_AGENT_BIN={p}: not a 64-bit little-endian ELF executable for x86_64 or aarch64")
            });
            Candidate { arch, target: format!("DROVER_AGENT_BIN={p}"), bytes }
        }
        Err(_) => {
            let built = build_agent(out, hooks);
            let bytes = std::fs::read(&built).unwrap_or_else(|e| panic!("read {}: {e}", built.display()));
            let arch = TARGET.split('-').next().expect("a target triple");
            assert_eq!(elf_arch(&bytes), Some(arch), "the agent built for {TARGET} is not an {arch} ELF executable");
            Candidate { arch, target: TARGET.into(), bytes }
        }
    }
}

/// The agents in `dir` (`drover-agent-<triple>`), each checked to be an
/// ELF executable for its triple's machine. A missing directory is an
/// error: `DROVER_AGENTS_DIR` asks for cross agents, and a build that
/// silently carried fewer would fail only on the first ARM host.
fn from_dir(dir: &Path) -> Vec<Candidate> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "DROVER_AGENTS_DIR: {}: {e}; build the agents with scripts/build-agents (--test-hooks for a test build)",
            dir.display()
        )
    });
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(triple) = name.strip_prefix("drover-agent-") else { continue };
        if triple.contains('.') {
            continue; // a temporary file of scripts/build-agents
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want = triple.split('-').next().unwrap_or_default();
        let arch = elf_arch(&bytes);
        assert!(
            arch == Some(want),
            "{}: its ELF header says {}, its name says {want}",
            path.display(),
            arch.unwrap_or("neither x86_64 nor aarch64")
        );
        found.push(Candidate { arch: arch.expect("checked"), target: triple.to_string(), bytes });
    }
    found
}

/// The agent as it travels to hosts on first contact: 46% of its size, and
/// compressed once here rather than by every controller run.
fn gzip(raw: &[u8], dest: &Path) {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(raw).expect("gzip in memory");
    std::fs::write(dest, z.finish().expect("gzip in memory")).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

/// The nested cargo build of the agent for [`TARGET`]; where it put it.
fn build_agent(out: &Path, hooks: bool) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    for p in [
        "crates/drover-agent/src",
        "crates/drover-agent/Cargo.toml",
        "crates/drover-proto/src",
        "crates/drover-proto/Cargo.toml",
        "crates/drover-bundle/src",
        "crates/drover-bundle/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(p).display());
    }
    // OUT_DIR is <target>/<profile>/build/drover-<hash>/out: keep the agent's
    // own build beside it so it is cached across builds and profiles (one
    // directory per feature set, so test and release builds do not evict
    // each other).
    let target_dir = out
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
        .join(if hooks { "agent-test-hooks" } else { "agent" });
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--locked", "-p", "drover-agent", "--profile", "agent", "--target", TARGET]);
    // Test builds embed an agent with its fault-injection points; a release
    // never does (the feature is off unless scripts/test asks for it).
    if hooks {
        cmd.args(["--features", "test-hooks"]);
    }
    cmd.arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    for var in
        ["RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the agent");
    assert!(status.success(), "building drover-agent failed");
    target_dir.join(TARGET).join("agent").join("drover-agent")
}
