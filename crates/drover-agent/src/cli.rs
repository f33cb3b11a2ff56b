//! Argument handling for the agent binary. Deliberately tiny: the agent is
//! driven by the controller, not by people (except `--version`).
//!
//! ```text
//! drover-agent serve [--root DIR]      speak the protocol on stdin/stdout
//! drover-agent watchdog --root DIR     internal: magic-rollback timer
//! drover-agent boot [--root DIR]       run by the boot-time hook: re-arm the
//!                                      rollback of an unconfirmed generation
//!
//! Every verb takes --simulated: the host is a directory on the controller
//! machine (`drover --simulate`), and the agent must never reboot it.
//! drover-agent install BUNDLE [--sig P] [--pubkey P] [--host N] [--root DIR]
//!                                      install a signed bundle, no controller
//! drover-agent relay --port N --bind ADDR [--max-conns N] [--root DIR]
//!                                      internal: peer relay blob server
//! drover-agent --version
//! ```

use std::process::ExitCode;

use crate::hostenv::{HostEnv, SIMULATED_FLAG};
use crate::layout::Layout;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = args.iter().position(|a| a == "--root").and_then(|i| args.get(i + 1)).map_or("/", String::as_str);
    // Chosen here, by the caller, never inferred from the root.
    let env = if args.iter().any(|a| a == SIMULATED_FLAG) { HostEnv::Simulated } else { HostEnv::System };
    let result = match args.first().map(String::as_str) {
        Some("serve") => {
            raw_stdin().and_then(|input| crate::serve::serve(Layout::new(root), env, input, std::io::stdout().lock()))
        }
        Some("watchdog") => crate::engine::watchdog::run(&Layout::new(root), env),
        Some("boot") => crate::boot::at_boot(&Layout::new(root), env).map(|what| println!("drover-agent boot: {what}")),
        Some("install") => {
            let rest: Vec<String> = args[1..].iter().filter(|a| *a != SIMULATED_FLAG).cloned().collect();
            crate::install::Args::parse(&rest).and_then(|a| crate::install::run(&Layout::new(root), &a, env))
        }
        Some("relay") => crate::relay::main(&Layout::new(root), &args[1..]),
        Some("--version") => {
            println!(
                "drover-agent {} (protocol {}; {})",
                env!("CARGO_PKG_VERSION"),
                drover_proto::PROTOCOL_VERSION,
                crate::hooks::FEATURES
            );
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: drover-agent serve [--root DIR] | install BUNDLE [--pubkey PATH] [--host NAME] | --version"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Standard input as a plain file: unbuffered, so the session's idle check
/// (which polls the fd) sees every byte that has not been read yet.
fn raw_stdin() -> crate::Result<std::fs::File> {
    use std::os::fd::AsFd;

    use crate::Context as _;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ctx(|| "standard input".into())?;
    Ok(std::fs::File::from(fd))
}
