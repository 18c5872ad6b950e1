//! Everything the command prints: subcommand output on stdout, diagnostics on stderr as
//! `hwbp: ` followed by a lowercase message (an error's context chain joined by `: `).
//!
//! Not for: building output; subcommands return their output as a string.

use std::io::{self, Write};
use std::process::ExitCode;

/// Documented exit statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The command did what was asked.
    Success = 0,
    /// The command failed at run time (I/O, the system refused).
    Failed = 1,
    /// The request was refused: bad flag or spec, an arch rule, does not fit.
    Refused = 2,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// Why a subcommand stopped, and with which status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub status: Status,
    /// What went wrong, with lowercase context.
    pub error: anyhow::Error,
}

impl Failure {
    /// A request the rules refuse (exit status 2).
    pub fn refused(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: Status::Refused,
            error: error.into(),
        }
    }

    /// A run-time failure (exit status 1).
    pub fn failed(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: Status::Failed,
            error: error.into(),
        }
    }
}

/// Prints a subcommand's output; a closed stdout (`hwbp plan ... | head`) is not an error.
pub fn output(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::failed(
            anyhow::Error::new(e).context("writing the output"),
        )),
    }
}

/// Prints `hwbp: <error chain>` and returns the failure's status.
pub fn failure(f: &Failure) -> ExitCode {
    eprintln!("hwbp: {:#}", f.error);
    f.status.into()
}

/// Help and version go to stdout with status 0; a bare `hwbp` prints help to stderr with
/// status 2; every other argument error is printed as
/// `hwbp: <clap's message>` (its usage lines follow) with status 2.
pub fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{e}");
            Status::Success.into()
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{e}");
            Status::Refused.into()
        }
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("hwbp: {text}");
            Status::Refused.into()
        }
    }
}
