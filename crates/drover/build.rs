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

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=DROVER_AGENT_BIN");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let dest = out.join("drover-agent");
    match env::var("DROVER_AGENT_BIN") {
        Ok(p) => {
            std::fs::copy(&p, &dest).unwrap_or_else(|e| panic!("DROVER_AGENT_BIN={p}: {e}"));
        }
        Err(_) => build_agent(&out, &dest),
    }
    gzip(&dest, &out.join("drover-agent.gz"));
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
