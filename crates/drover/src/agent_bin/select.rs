//! Which agents a `drover` build embeds: shared by `build.rs` (which
//! includes this file by path) and this crate's tests, so the rules the
//! build applies are the rules the tests check.
//!
//! Only `std` here: a build script has no access to the crate's modules.

/// One agent that could be embedded.
pub struct Candidate {
    /// The machine its ELF header names, as `uname -m` says it.
    pub arch: &'static str,
    /// The Rust target it was built for, or where it came from.
    pub target: String,
    pub bytes: Vec<u8>,
}

/// The machine an ELF executable is for, by its header's `e_machine`, in
/// the names of target triples and `uname -m`; `None` for anything else
/// (not a 64-bit little-endian ELF file, or another machine).
pub fn elf_arch(b: &[u8]) -> Option<&'static str> {
    if b.len() < 20 || &b[..6] != b"\x7fELF\x02\x01" {
        return None;
    }
    match u16::from_le_bytes([b[18], b[19]]) {
        62 => Some("x86_64"),
        183 => Some("aarch64"),
        _ => None,
    }
}

/// The text an agent built with `features` (`release` or `test-hooks`)
/// carries: drover-agent's `hooks::FEATURES`, printed by `--version`.
pub fn features_marker(features: &str) -> String {
    format!("drover-agent-features={features}")
}

/// Whether the agent `bytes` was built with `features`.
pub fn built_with(bytes: &[u8], features: &str) -> bool {
    let marker = features_marker(features);
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// Per machine, the agent to embed, ordered by machine name so the table
/// does not depend on a directory's order: a glibc one where there is one,
/// else the smallest (the first of equals).
///
/// glibc before musl, by measurement (`bench/agent-libc.sh`, results in
/// docs/benchmarks.md "musl or glibc"): the static musl x86_64 agent
/// re-hashed a 50 MB tree 4–5× slower than the glibc one (413–458 ms
/// against 80–111 ms per host, every no-op apply and drift check pays it),
/// while it saves about 360 KB gzipped once per agent version per host.
/// Where musl is all there is (aarch64, built by `scripts/build-agents`),
/// it is the agent.
pub fn preferred_per_arch(candidates: Vec<Candidate>) -> Vec<Candidate> {
    // An agent given by DROVER_AGENT_BIN is the one asked for: as preferred.
    let glibc = |c: &Candidate| c.target.contains("-gnu") || c.target.starts_with("DROVER_AGENT_BIN=");
    let rank = |c: &Candidate| (!glibc(c), c.bytes.len());
    let mut chosen: Vec<Candidate> = Vec::new();
    for c in candidates {
        match chosen.iter_mut().find(|k| k.arch == c.arch) {
            Some(k) if rank(&c) < rank(k) => *k = c,
            Some(_) => {}
            None => chosen.push(c),
        }
    }
    chosen.sort_by_key(|c| c.arch);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit little-endian ELF header for `machine`, padded to `len`.
    fn elf(machine: u16, len: usize) -> Vec<u8> {
        let mut b = b"\x7fELF\x02\x01\x01\0".to_vec();
        b.resize(18, 0);
        b.extend_from_slice(&machine.to_le_bytes());
        b.resize(len.max(20), 0);
        b
    }

    fn candidate(arch: &'static str, target: &str, len: usize) -> Candidate {
        let machine = if arch == "x86_64" { 62 } else { 183 };
        Candidate { arch, target: target.into(), bytes: elf(machine, len) }
    }

    /// Per machine a glibc agent is embedded where there is one (measured
    /// faster), else the smallest, whichever came first (the native glibc
    /// one is always first); one entry per machine, sorted.
    #[test]
    fn a_glibc_agent_wins_where_there_is_one_else_the_smallest() {
        for flip in [false, true] {
            let mut c = vec![
                candidate("x86_64", "x86_64-unknown-linux-gnu", 3_000),
                candidate("x86_64", "x86_64-unknown-linux-musl", 1_800),
                candidate("aarch64", "aarch64-unknown-linux-musl", 1_600),
                candidate("aarch64", "aarch64-unknown-linux-musl-big", 2_300),
            ];
            if flip {
                c.reverse();
            }
            let chosen = preferred_per_arch(c);
            let got: Vec<_> = chosen.iter().map(|c| (c.arch, c.target.as_str(), c.bytes.len())).collect();
            assert_eq!(
                got,
                [("aarch64", "aarch64-unknown-linux-musl", 1_600), ("x86_64", "x86_64-unknown-linux-gnu", 3_000)]
            );
        }
        // Two glibc agents: the smaller.
        let chosen = preferred_per_arch(vec![
            candidate("aarch64", "aarch64-unknown-linux-gnu", 2_300),
            candidate("aarch64", "aarch64-unknown-linux-musl", 1_600),
            candidate("aarch64", "aarch64-unknown-linux-gnu-small", 2_000),
        ]);
        assert_eq!(chosen.iter().map(|c| c.bytes.len()).collect::<Vec<_>>(), [2_000]);
        // Equal rank: the first (the native agent) stays.
        let chosen =
            preferred_per_arch(vec![candidate("x86_64", "native-gnu", 10), candidate("x86_64", "other-gnu", 10)]);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].target, "native-gnu");
        // Only the native agent: it is the table.
        let chosen = preferred_per_arch(vec![candidate("x86_64", "x86_64-unknown-linux-gnu", 10)]);
        assert_eq!(chosen.iter().map(|c| c.arch).collect::<Vec<_>>(), ["x86_64"]);
    }

    /// Only 64-bit little-endian executables for the two machines drover
    /// knows are recognised; anything else (32-bit, big-endian, RISC-V,
    /// text) is no agent.
    #[test]
    fn only_64_bit_little_endian_x86_64_and_aarch64_elf_files_are_agents() {
        assert_eq!(elf_arch(&elf(62, 64)), Some("x86_64"));
        assert_eq!(elf_arch(&elf(183, 64)), Some("aarch64"));
        assert_eq!(elf_arch(&elf(243, 64)), None, "riscv");
        assert_eq!(elf_arch(&elf(40, 64)), None, "32-bit arm's machine");
        let mut class32 = elf(183, 64);
        class32[4] = 1;
        assert_eq!(elf_arch(&class32), None, "ELFCLASS32");
        let mut big = elf(183, 64);
        big[5] = 2;
        assert_eq!(elf_arch(&big), None, "big-endian");
        assert_eq!(elf_arch(b"#!/bin/sh\necho drover-agent\n"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None, "truncated");
    }

    /// The feature set is read from the agent's bytes, and one marker is
    /// not taken for the other.
    #[test]
    fn an_agents_feature_set_is_read_from_its_bytes() {
        let mut hooked = elf(62, 64);
        hooked.extend_from_slice(b"...drover-agent-features=test-hooks...");
        assert!(built_with(&hooked, "test-hooks"));
        assert!(!built_with(&hooked, "release"));
        let mut release = elf(62, 64);
        release.extend_from_slice(b"drover-agent-features=release");
        assert!(built_with(&release, "release"));
        assert!(!built_with(&release, "test-hooks"));
        assert!(!built_with(&elf(62, 64), "release"), "an agent with no marker is of no feature set");
    }
}
