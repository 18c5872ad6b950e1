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

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod arches;
mod caps;
mod demo;
mod demo_target;
mod drainer;
mod hit;
mod messages;
mod plan;
mod regs;
mod report;
mod ring_budget;
mod run;
mod sampler;
mod session;
mod sim;
mod stat;
mod status;
mod stop;
mod stop_report;
mod trace;

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
    /// Start a program with watches armed before its first instruction; print every access.
    Run(run::RunArgs),
    /// Watch memory in a running process until Ctrl-C, --duration or its exit.
    Attach(run::AttachArgs),
    /// Count accesses only, like `perf stat`: one line per watch (or per thread).
    Stat(stat::Args),
    /// Report what this machine allows, with a self-test.
    Caps(caps::Args),
    /// Watch a demo program's account balance and find the write that corrupts it.
    Demo(demo::Args),
    /// Run scenario files on the simulated multi-CPU machine and check their expectations.
    Sim(sim::Args),
}

/// The hidden subcommand that runs the program `hwbp demo` watches (see `demo_target`).
const DEMO_TARGET_SUBCOMMAND: &str = "__demo-target";

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == DEMO_TARGET_SUBCOMMAND)
    {
        demo_target::main_demo_target();
    }
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
        Command::Plan(args) => plan::run(args)
            .and_then(|text| messages::output(&text))
            .map(|()| messages::Status::Success.into()),
        Command::Run(args) => run::run(args),
        Command::Attach(args) => run::attach(args),
        Command::Demo(args) => demo::run(args),
        Command::Stat(args) => stat::run(args),
        Command::Caps(args) => caps::run(args),
        Command::Sim(args) => sim::run(args).map(|()| messages::Status::Success.into()),
    };
    match result {
        Ok(code) => code,
        Err(failure) => messages::failure(&failure),
    }
}
