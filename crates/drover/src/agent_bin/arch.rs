//! A machine architecture, as hosts name it (`uname -m`) and as the agent
//! table is keyed (#30): the controller must never push an agent to a host
//! that cannot run it, so it asks the host first and compares typed values,
//! never strings spelled several ways (`arm64` on one system is `aarch64` on
//! another).

use std::fmt;

/// The longest machine name kept from a host's answer: it is the host's
/// text, shown in the run's table and `--json`, so it is bounded.
const MAX_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit x86 (`x86_64`; `amd64` on the BSDs and in Debian's names).
    X86_64,
    /// 64-bit ARM, little-endian (`aarch64`; `arm64` on macOS and the BSDs).
    Aarch64,
    /// Anything else, kept as the host said it (made printable) so that a
    /// refusal can name it: `armv7l`, `riscv64`, `ppc64le`, `i686`, ….
    Other(String),
}

impl Arch {
    /// From what `uname -m` prints (or a Rust target triple's first part,
    /// which uses the same names for the machines drover knows). Surrounding
    /// whitespace is ignored; anything unknown is kept, with characters
    /// other than printable ASCII replaced by `?`, up to [`MAX_NAME`].
    pub fn from_uname(text: &str) -> Arch {
        match text.trim() {
            "x86_64" | "amd64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Aarch64,
            other => {
                Arch::Other(other.chars().take(MAX_NAME).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect())
            }
        }
    }

    /// From a Rust target triple (`aarch64-unknown-linux-musl`): its first
    /// part names the machine.
    pub fn from_target(triple: &str) -> Arch {
        Arch::from_uname(triple.split('-').next().unwrap_or(""))
    }

    /// The machine this controller runs on (what simulated hosts, which run
    /// here, report).
    pub fn controller() -> Arch {
        Arch::from_uname(std::env::consts::ARCH)
    }

    /// Every name `uname -m` gives this machine on the systems drover
    /// serves: the bootstrap script's `case` patterns. None for
    /// [`Arch::Other`], which no agent is built for.
    pub fn uname_names(&self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["x86_64", "amd64"],
            Arch::Aarch64 => &["aarch64", "arm64"],
            Arch::Other(_) => &[],
        }
    }

    /// The ELF header's `e_machine` of a binary built for this machine:
    /// how the tests check that the embedded agent is what the table says.
    pub fn elf_machine(&self) -> Option<u16> {
        match self {
            Arch::X86_64 => Some(62),
            Arch::Aarch64 => Some(183),
            Arch::Other(_) => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::X86_64 => f.write_str("x86_64"),
            Arch::Aarch64 => f.write_str("aarch64"),
            Arch::Other(s) if s.is_empty() => f.write_str("(none: `uname -m` printed nothing)"),
            Arch::Other(s) => f.write_str(s),
        }
    }
}

/// A list of architectures for a message: `x86_64, aarch64`.
pub fn list(arches: &[Arch]) -> String {
    arches.iter().map(Arch::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both spellings of each machine drover knows are the same machine,
    /// whatever surrounds them on `uname`'s line.
    #[test]
    fn both_names_of_a_known_machine_parse_to_it() {
        for s in ["x86_64", "amd64", " x86_64\n", "amd64\r\n"] {
            assert_eq!(Arch::from_uname(s), Arch::X86_64, "{s:?}");
        }
        for s in ["aarch64", "arm64", "aarch64\n", "\tarm64 "] {
            assert_eq!(Arch::from_uname(s), Arch::Aarch64, "{s:?}");
        }
    }

    /// Other machines are kept by name, so a refusal names them; look-alikes
    /// of known machines are not taken for them (a big-endian or 32-bit ARM
    /// cannot run an aarch64 agent, an i686 one no x86_64 agent).
    #[test]
    fn an_unknown_machine_is_kept_as_its_text() {
        for s in ["armv7l", "armv8l", "aarch64_be", "i686", "riscv64", "ppc64le", "s390x", "X86_64", "arm"] {
            assert_eq!(Arch::from_uname(s), Arch::Other(s.into()), "{s:?}");
            assert_eq!(Arch::from_uname(s).to_string(), s);
            assert!(Arch::from_uname(s).uname_names().is_empty());
        }
    }

    /// A host's answer reaches the table and terminals: control characters
    /// are replaced and the length bounded; an empty answer says so.
    #[test]
    fn a_hostile_or_empty_answer_is_made_printable_and_bounded() {
        assert_eq!(Arch::from_uname("arm\u{1b}[31mv7\u{7}"), Arch::Other("arm?[31mv7?".into()));
        let long = "x".repeat(1000);
        assert_eq!(Arch::from_uname(&long), Arch::Other("x".repeat(MAX_NAME)));
        assert_eq!(Arch::from_uname(" \n"), Arch::Other(String::new()));
        assert!(Arch::from_uname("").to_string().contains("printed nothing"));
    }

    #[test]
    fn a_target_triple_names_its_machine() {
        assert_eq!(Arch::from_target("x86_64-unknown-linux-gnu"), Arch::X86_64);
        assert_eq!(Arch::from_target("aarch64-unknown-linux-musl"), Arch::Aarch64);
        assert_eq!(Arch::from_target("armv7-unknown-linux-gnueabihf"), Arch::Other("armv7".into()));
    }

    /// The script's patterns parse back to the machine they stand for, and
    /// the controller's own machine is one drover knows (it runs on one).
    #[test]
    fn every_uname_name_parses_back_to_its_machine() {
        for a in [Arch::X86_64, Arch::Aarch64] {
            assert!(!a.uname_names().is_empty());
            for n in a.uname_names() {
                assert_eq!(&Arch::from_uname(n), &a);
            }
            assert_eq!(Arch::from_uname(&a.to_string()), a);
        }
        assert_eq!(Arch::controller().to_string(), std::env::consts::ARCH);
        assert_eq!(list(&[Arch::X86_64, Arch::Aarch64]), "x86_64, aarch64");
    }
}
