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

/// A diagnostic line on stderr: `hwbp: <text>`.
pub fn note(text: &str) {
    eprintln!("hwbp: {text}");
}

/// The note that an attached process is armed: `hwbp: VERB N watch(es) in pid PID[ (MODE)];
/// Ctrl-C to stop` (tests and scripts wait for this line).
pub fn armed_note(verb: &str, watches: usize, pid: impl std::fmt::Display, mode: Option<&str>) {
    let plural = if watches == 1 { "" } else { "es" };
    let mode = mode.map_or(String::new(), |m| format!(" ({m})"));
    note(&format!(
        "{verb} {watches} watch{plural} in pid {pid}{mode}; Ctrl-C to stop"
    ));
}

/// Text on stderr as is (`hwbp stat`'s report, which goes where `perf stat`'s does).
pub fn stderr(text: &str) {
    eprint!("{text}");
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

/// The stream of hits on stdout (buffered; a closed stdout stops output quietly) and the
/// live status line on stderr.
pub struct Out {
    stdout: io::BufWriter<Box<dyn Write>>,
    closed: bool,
    stderr_tty: bool,
}

impl Out {
    /// Hits to stdout, status to stderr.
    pub fn new() -> Out {
        Out::with_sink(Box::new(io::stdout()))
    }

    /// Hits to `path` (`-o FILE`) or stdout, status to stderr.
    pub fn to(path: Option<&std::path::Path>) -> Result<Out, Failure> {
        match path {
            None => Ok(Out::new()),
            Some(p) => std::fs::File::create(p)
                .map(|f| Out::with_sink(Box::new(f)))
                .map_err(|e| {
                    Failure::refused(
                        anyhow::Error::new(e).context(format!("creating --output {}", p.display())),
                    )
                }),
        }
    }

    fn with_sink(sink: Box<dyn Write>) -> Out {
        use std::io::IsTerminal;
        Out {
            stdout: io::BufWriter::with_capacity(1 << 16, sink),
            closed: false,
            stderr_tty: io::stderr().is_terminal(),
        }
    }

    /// Whether stderr is a terminal (the status line is drawn only then).
    pub fn stderr_is_terminal(&self) -> bool {
        self.stderr_tty
    }

    /// Writes one hit record (or any stdout text).
    pub fn hit(&mut self, text: &str) {
        if !self.closed && self.stdout.write_all(text.as_bytes()).is_err() {
            self.closed = true;
        }
    }

    /// Erases the status line, then writes `text`.
    pub fn hit_with_status(&mut self, status: &mut crate::status::StatusLine, text: &str) {
        let clear = status.clear();
        if !clear.is_empty() {
            self.flush();
            self.status(clear);
        }
        self.hit(text);
    }

    /// Draws (or erases) the status line on stderr.
    pub fn status(&mut self, text: &str) {
        if !text.is_empty() {
            self.flush();
            let mut e = io::stderr().lock();
            let _ = e.write_all(text.as_bytes()).and_then(|()| e.flush());
        }
    }

    /// Flushes stdout.
    pub fn flush(&mut self) {
        if !self.closed && self.stdout.flush().is_err() {
            self.closed = true;
        }
    }
}
