//! The `hwbp` command.
use std::process::ExitCode;

mod demo_target;

/// The hidden subcommand that runs the program `hwbp demo` watches (see `demo_target`).
const DEMO_TARGET_SUBCOMMAND: &str = "__demo-target";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(DEMO_TARGET_SUBCOMMAND) {
        demo_target::main_demo_target();
    }
    eprintln!("hwbp: no subcommand yet");
    ExitCode::from(2)
}
