//! The `drover` binary: a thin shell over the `drover` library, so that every
//! behaviour is reachable from tests without spawning a process.
fn main() -> std::process::ExitCode {
    drover::main()
}
