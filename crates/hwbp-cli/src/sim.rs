//! `hwbp sim FILE...`: runs scenario files on the deterministic machine (hwbp-sim).
//!
//! Every line is printed with its actual outcome. Exit status 1 names the file, line, expected
//! and actual value of each failed expectation; 2 means a file could not be read or parsed.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::anyhow;

use crate::messages::Failure;

/// Arguments of `hwbp sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario files (see tests/scenarios/README.md for the language).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Runs the scenarios, streaming their transcript to stdout.
pub fn run(args: Args) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let passed = hwbp_sim::scenario::run_files(&args.files, &mut out).map_err(Failure::refused)?;
    let _ = out.flush();
    if passed {
        Ok(())
    } else {
        Err(Failure::failed(anyhow!(
            "some expectations failed (listed above)"
        )))
    }
}
