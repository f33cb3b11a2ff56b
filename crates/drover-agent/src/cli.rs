//! Argument handling for the agent binary. Deliberately tiny: the agent is
//! driven by the controller, not by people (except `--version`).
//!
//! ```text
//! drover-agent serve [--root DIR]      speak the protocol on stdin/stdout
//! drover-agent watchdog --root DIR     internal: magic-rollback timer
//! drover-agent --version
//! ```

use std::process::ExitCode;

use crate::layout::Layout;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = args.iter().position(|a| a == "--root").and_then(|i| args.get(i + 1)).map_or("/", String::as_str);
    let result = match args.first().map(String::as_str) {
        Some("serve") => crate::serve::serve(Layout::new(root), std::io::stdin().lock(), std::io::stdout().lock()),
        Some("watchdog") => crate::watchdog::run(&Layout::new(root)),
        Some("--version") => {
            println!("drover-agent {} (protocol {})", env!("CARGO_PKG_VERSION"), drover_proto::PROTOCOL_VERSION);
            Ok(())
        }
        _ => {
            eprintln!("usage: drover-agent serve [--root DIR] | --version");
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
