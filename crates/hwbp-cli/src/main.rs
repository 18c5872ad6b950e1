//! The `hwbp` command.
//!
//! `main` -> [`run`]: clap parses the arguments into plain data ([`Cli`]), each subcommand
//! module turns that into real objects and acts, and [`messages`] prints every diagnostic.
//! Adding a subcommand: a module with `Args` (clap derive) and a `run(Args)` returning
//! `Result<_, Failure>`, one variant in [`Command`] and one arm in [`run`]. Output goes through
//! [`messages::output`].
//!
//! Exit status: 0 success; 1 the command failed at run time; 2 the request was refused (bad
//! flag or spec, an arch rule, a set of watches that does not fit).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod arches;
mod messages;
mod plan;
mod regs;
mod sim;

/// hwbp: hardware breakpoints and watchpoints, planned and programmed as Linux does.
#[derive(Debug, Parser)]
#[command(name = "hwbp", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan watches into one thread's debug registers and print the register values.
    Plan(plan::Args),
    /// Run scenario files on the simulated multi-CPU machine and check their expectations.
    Sim(sim::Args),
}

fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Parses `args` (program name first), runs the subcommand, prints its output or its error,
/// and returns the exit status.
fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return messages::clap_error(&e),
    };
    let result = match cli.command {
        Command::Plan(args) => plan::run(args).and_then(|text| messages::output(&text)),
        Command::Sim(args) => sim::run(args),
    };
    match result {
        Ok(()) => messages::Status::Success.into(),
        Err(failure) => messages::failure(&failure),
    }
}
