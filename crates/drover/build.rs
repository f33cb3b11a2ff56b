//! Builds the static `drover-agent` and embeds it in the `drover` binary.
//!
//! Why embed: the controller pushes the agent to hosts by content hash, so it
//! must carry exactly the agent it speaks the protocol with; one binary to
//! install, no version skew. Why a nested cargo: the agent needs different
//! flags (`+crt-static`, size profile) than the controller, and cargo cannot
//! express per-crate rustflags. Only the gnu target is installable here (no
//! musl std), so the agent is statically linked against glibc; it uses no NSS
//! lookups (accounts are read from /etc/passwd directly).
//!
//! `DROVER_AGENT_BIN=/path` skips the nested build and embeds that file.
//!
//! The controller keys its agents by the machine they run on (#30: hosts of
//! another architecture are refused before any upload), so this says which
//! in `DROVER_AGENT_ARCH`: the first part of the target triple the agent was
//! built for, checked against the binary's ELF header; for a
//! `DROVER_AGENT_BIN`, which has no triple, its ELF header alone.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=DROVER_AGENT_BIN");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let dest = out.join("drover-agent");
    let arch = match env::var("DROVER_AGENT_BIN") {
        Ok(p) => {
            std::fs::copy(&p, &dest).unwrap_or_else(|e| panic!("DROVER_AGENT_BIN={p}: {e}"));
            elf_arch(&dest).unwrap_or_else(|| {
                panic!("DROVER_AGENT_BIN={p}: not a 64-bit little-endian ELF executable for x86_64 or aarch64")
            })
        }
        Err(_) => {
            build_agent(&out, &dest);
            let arch = TARGET.split('-').next().expect("a target triple");
            assert_eq!(elf_arch(&dest), Some(arch), "the agent built for {TARGET} is not an {arch} ELF executable");
            arch
        }
    };
    println!("cargo:rustc-env=DROVER_AGENT_ARCH={arch}");
    gzip(&dest, &out.join("drover-agent.gz"));
}

/// The machine an ELF executable is for, by its header's `e_machine`, in
/// the names of target triples and `uname -m`; `None` for anything else.
fn elf_arch(path: &Path) -> Option<&'static str> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 20 || &b[..6] != b"\x7fELF\x02\x01" {
        return None;
    }
    match u16::from_le_bytes([b[18], b[19]]) {
        62 => Some("x86_64"),
        183 => Some("aarch64"),
        _ => None,
    }
}

/// The agent as it travels to hosts on first contact: 46% of its size, and
/// compressed once here rather than by every controller run.
fn gzip(src: &Path, dest: &Path) {
    use std::io::Write;
    let raw = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(&raw).expect("gzip in memory");
    std::fs::write(dest, z.finish().expect("gzip in memory")).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

fn build_agent(out: &Path, dest: &Path) {
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
    let hooks = env::var_os("CARGO_FEATURE_AGENT_TEST_HOOKS").is_some();
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
    let built = target_dir.join(TARGET).join("agent").join("drover-agent");
    std::fs::copy(&built, dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
