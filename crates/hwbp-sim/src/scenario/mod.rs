//! The `hwbp sim` scenario language: one command per line, `#` comments, an optional
//! `=> EXPECTED` checked against the actual outcome.
//!
//! ```text
//! arch x86_64|arm64|power9|power10      # slot pools and rules (default x86_64)
//! slots data=N [inst=M]                 # override pool sizes
//! cpus N                                # possible CPUs 0..N-1, all online (default 2)
//! task NAME
//! open ID [task=NAME] [cpu=N] [disabled] ACCESS ADDR[/LEN]   => ok|ENOSPC|EINVAL|EOPNOTSUPP|...
//! wide ID [disabled] ACCESS ADDR[/LEN]  => ...
//! close ID
//! modify ID [disabled|enabled] ACCESS ADDR[/LEN]             => ...
//! enable ID | disable ID
//! offline CPU | online CPU | suspend | resume
//! run NAME on CPU | idle CPU
//! access CPU ACCESS ADDR[/LEN]          => hit ID[,ID...] | nohit
//! count ID                              => N
//! regs CPU                              => the CPU's registers (x86: dr0-3, dr7 in hex)
//! ptrace NAME poke drN VALUE            => ok|EINVAL|ENOSPC|EIO
//! ptrace NAME peek drN                  => VALUE
//! ```
//!
//! `arch`, `slots` and `cpus` come before everything else. Breakpoints are user-only
//! (`exclude_kernel`) and unprivileged; a missing LEN takes perf's defaults (4 for data, 8 =
//! `sizeof(long)` for `x`), and 1 for `access`. `modify` is perf's ioctl path
//! (`PERF_EVENT_IOC_MODIFY_ATTRIBUTES`). Hits name the breakpoint, or `TASK.drN` for ptrace's;
//! `hit` lists compare as sets. Commands naming a closed or failed breakpoint answer `ENOENT`.
//!
//! Not for: timing; everything here is deterministic.

mod parse;
mod runner;

use std::fmt;
use std::io::Write;
use std::path::Path;

pub use parse::{parse, Command, Line, Watch};

/// A line whose expectation did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The scenario file.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The command text.
    pub command: String,
    /// What the file expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: expected {}, got {}",
            self.file, self.line, self.command, self.expected, self.actual
        )
    }
}

/// What running one scenario printed and which expectations failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every command with its actual outcome (`COMMAND => OUTCOME`), in order.
    pub output: Vec<String>,
    /// Failed expectations.
    pub failures: Vec<Failure>,
    /// Number of expectations checked.
    pub checked: usize,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A scenario that cannot be run: unreadable, malformed, or misusing the language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Runs one scenario text. `file_name` is used in messages only.
pub fn run(text: &str, file_name: &str) -> Result<Report, ScenarioError> {
    let lines = parse(text).map_err(|(line, message)| ScenarioError {
        file: file_name.to_string(),
        line,
        message,
    })?;
    runner::run_lines(&lines, file_name)
}

/// Runs scenario files in order, printing every line with its outcome and then every failed
/// expectation to `out`. `Ok(true)`: all expectations held; `Ok(false)`: some failed (exit 1);
/// `Err`: a file is unreadable or malformed (exit 2). Stops at the first malformed file.
pub fn run_files<P: AsRef<Path>>(paths: &[P], out: &mut dyn Write) -> Result<bool, ScenarioError> {
    let mut all_passed = true;
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: name.clone(),
            line: 0,
            message: format!("cannot read the scenario: {e}"),
        })?;
        let report = run(&text, &name)?;
        let io = |e: std::io::Error| ScenarioError {
            file: name.clone(),
            line: 0,
            message: format!("cannot write the report: {e}"),
        };
        writeln!(out, "# {name}").map_err(io)?;
        for line in &report.output {
            writeln!(out, "{line}").map_err(io)?;
        }
        for failure in &report.failures {
            writeln!(out, "FAILED {failure}").map_err(io)?;
        }
        writeln!(
            out,
            "# {name}: {} of {} expectations held",
            report.checked - report.failures.len(),
            report.checked
        )
        .map_err(io)?;
        all_passed &= report.passed();
    }
    Ok(all_passed)
}
