//! The `drover-agent` binary. Pushed to hosts by content hash and started over
//! SSH by the controller; see the library docs for what each verb does.
fn main() -> std::process::ExitCode {
    drover_agent::cli::main()
}
