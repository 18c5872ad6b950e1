//! `hwbp demo`: the README's first command. Runs the demo bank (`demo_target`, this binary's
//! hidden `__demo-target` subcommand) with its balance watched, and shows every site that
//! wrote it — the one corrupting write pinned to its function and file:line.
//!
//! Not for: anything `hwbp run` cannot do; this is `hwbp run -q --watch
//! demo_target::BALANCE -- hwbp __demo-target` with an explanation around it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::messages::{Failure, Out};
use crate::report;
use crate::run as cmd;
use crate::session::{Memory, Options};

/// The watched variable, as a user would name it.
pub const SPEC: &str = "demo_target::BALANCE";

/// `hwbp demo [--json]`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print every hit as JSON Lines (schema hwbp.hit/1) and the summary record
    #[arg(long)]
    json: bool,
}

/// Runs the demo.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(anyhow!("finding the hwbp binary: {e}")))?;
    let argv = [
        OsString::from(exe),
        OsString::from(crate::DEMO_TARGET_SUBCOMMAND),
    ];
    let stopped = cmd::start(&argv)?;
    let pid = stopped.pid();
    let (watches, mut symbolizer) = cmd::resolve(pid, &[SPEC.to_owned()])?;
    let sampler = cmd::arm(pid, &watches, false)?;
    let mem = Memory::open(pid);
    let initial = watches.iter().map(|w| mem.read(w)).collect();
    let mut out = Out::new();
    if !args.json {
        let w = &watches[0];
        out.hit(&format!(
            "hwbp demo: a bank with 4 tellers updating one balance 10,000 times, and one bug.\n\
             watching {SPEC} ({} bytes at {:#x}, writes) on every thread of pid {pid}\n\n",
            w.spec.region.len_bytes, w.spec.region.addr
        ));
        out.flush();
    }
    let opts = Options {
        json: args.json,
        quiet: !args.json,
        ..Options::default()
    };
    let (outcome, summary, status) = cmd::watch_program(
        stopped,
        sampler,
        &watches,
        &mut symbolizer,
        initial,
        &opts,
        &mut out,
    )?;
    if args.json {
        out.hit(&report::summary_json(
            &summary,
            &watches,
            &outcome.totals,
            Some(status.shell_code()),
        ));
    } else {
        out.hit(&report::summary_text(&summary, &watches, &outcome.totals));
        out.hit(&verdict(&summary));
    }
    out.flush();
    Ok(cmd::exit_code(status))
}

/// The sites that wrote exactly once, with the thread that did it: the suspects.
fn verdict(summary: &report::Summary) -> String {
    let mut s = String::from("\nwritten exactly once (the suspects):\n");
    for row in summary.rows().iter().filter(|r| r.hits == 1) {
        let tid = row.threads.iter().next().copied().unwrap_or(0);
        let name = summary.names.get(&tid).map_or("?", |n| n);
        // Function and line from the same frame, as the summary reports them.
        let function = row.site.primary_frame().and_then(|f| f.function.as_deref());
        let place = row
            .site
            .primary_frame()
            .and_then(|f| Some((f.file.as_deref()?, f.line?)));
        let _ = match place {
            Some((file, line)) => writeln!(
                s,
                "  {} ({}:{line}) by thread {tid} ({name})",
                function.unwrap_or("??"),
                report::short_file(file)
            ),
            None => writeln!(
                s,
                "  {} by thread {tid} ({name})",
                report::site_text(&row.site)
            ),
        };
    }
    s
}
