//! The `hwbp` command.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hwbp: no subcommand yet");
    ExitCode::from(2)
}
