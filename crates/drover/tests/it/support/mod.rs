//! What the integration tests share: the `drover` binary and its output
//! ([`Run`]), a lab fleet with a quickstart project ([`Fleet`]), simulated
//! projects, files and bytes to test with, and one folder per kind of
//! harness (`lab` for `drover lab` itself, `p2p` and `serve` for those
//! suites, `security` for the attacker's view).
//!
//! It holds no test. It must not import from the test modules: they import
//! from here.

/// One scenario as two tests, `$runit` on runit lab hosts and `$systemd` on
/// systemd ones: the body is written once (`fn $scenario(init: Init)`), and
/// a failure names the init it failed on.
macro_rules! on_both_inits {
    ($scenario:ident: $runit:ident, $systemd:ident) => {
        #[test]
        fn $runit() {
            $scenario(drover_lab::Init::Runit)
        }
        #[test]
        fn $systemd() {
            $scenario(drover_lab::Init::Systemd)
        }
    };
}

mod files;
mod fleet;
pub mod lab;
mod lab_name;
pub mod p2p;
mod run;
pub mod security;
pub mod serve;
mod usb;

pub use files::{append, copy_tree, example, files_containing, noise, write};
pub use fleet::Fleet;
pub use run::{curl, drover_at, drover_in, init_project, ok, sim_project, wait_until, Run, DROVER};
pub use usb::{signed_bundle, usb_stick};
