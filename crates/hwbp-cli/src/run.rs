//! `hwbp run` and `hwbp attach`: watch memory in a program started here or already running,
//! print every access, and the summary of accessing sites at the end.
//!
//! Not for: counting only (`hwbp stat`) or stopping the program at a hit (`--stop`, in
//! [`crate::stop`]).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use hwbp::launch::{self, ExitStatus};
use hwbp::symbols::dwarf::ValueType;
use hwbp::symbols::maps::AddressSpace;
use hwbp::symbols::resolve::Resolver;
use hwbp::symbols::symbolize::Symbolizer;
use hwbp::sys::Pid;
use hwbp_core::arch::{NativeArch, ParseCtx};
use hwbp_core::{RegFile, Spec};

use crate::hit::FilterSpec;
use crate::messages::{Failure, Out};
use crate::report::{self, WatchInfo};
use crate::sampler::{Sampler, SamplerOptions};
use crate::session::{self, Memory, Options, Until};

/// The watches, shared by `run`, `attach` and `stat`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// What to watch (repeat for several): NAME (a global or static), NAME+OFF/LEN,
    /// NAME.field.sub, NAME[i], a Rust static by path (demo_target::BALANCE), lib.so:NAME,
    /// 0xADDR/LEN or mem:ADDR[/LEN][:ACCESS]; suffix :w (writes, default), :rw, :r, :x
    #[arg(short = 'w', long = "watch", value_name = "SPEC", required = true)]
    pub watch: Vec<String>,
}

/// How hits are reported, shared by `run` and `attach`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// One JSON object per line (schema hwbp.hit/1, see docs/JSON.md) instead of text
    #[arg(long)]
    pub json: bool,
    /// Report only hits that changed the watched value (gdb's `watch`); the value is read
    /// right after the hit is sampled, not at the access itself (exact with --stop)
    #[arg(long)]
    pub changed: bool,
    /// Stop watching after N reported hits (the program runs on)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Report only hits by this thread (repeatable)
    #[arg(long, value_name = "TID")]
    pub tid: Vec<u32>,
    /// Add the call stack of each hit (DWARF unwinding of the sampled stack; else the
    /// kernel's frame-pointer callchain; with --stop, of the stack copied at the stop)
    #[arg(long)]
    pub backtrace: bool,
    /// Write the hits as a Chrome/Perfetto trace (one track per thread) to FILE
    #[arg(long, value_name = "FILE")]
    pub trace_out: Option<std::path::PathBuf>,
    /// No line per hit; only the summary
    #[arg(short, long)]
    pub quiet: bool,
    /// Write hits and the summary to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

impl ReportArgs {
    fn options(&self, duration: Option<Duration>) -> Options {
        Options {
            filter: FilterSpec {
                tids: self.tid.iter().copied().collect(),
                changed_only: self.changed,
                limit: self.limit,
            },
            json: self.json,
            backtrace: self.backtrace,
            trace_out: self.trace_out.clone(),
            duration,
            quiet: self.quiet,
        }
    }
}

/// `hwbp run [OPTIONS] --watch SPEC... -- CMD [ARGS]...`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each hit line: time since the first hit, thread id and name, access, \
    watch, the value now in the watched bytes (read right after the hit was sampled, not at \
    the access), and the accessing instruction as function (file:line). With --stop: the \
    accessing thread is held at each hit and the line shows the exact `old -> new`; Ctrl-C \
    removes the watches and lets the program finish. Exit status: CMD's (128 + N if a signal N killed it); 2 if the watches \
    cannot be set up."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub watches: WatchArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub stop: crate::stop::StopArgs,
    /// The program to run and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// `hwbp attach -p PID [--duration SECS] --watch SPEC...`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Watches until Ctrl-C, --duration or the process's exit; the process \
    keeps running undisturbed afterwards. Hit lines as in `hwbp run`."
)]
pub struct AttachArgs {
    /// The process to watch (all its threads, and threads it creates later)
    #[arg(short, long, value_name = "PID")]
    pub pid: i32,
    /// Stop after SECS seconds
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub watches: WatchArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub stop: crate::stop::StopArgs,
}

/// Resolves every SPEC in `pid`'s address space; returns the watches and a symbolizer.
pub fn resolve(pid: Pid, specs: &[String]) -> Result<(Vec<WatchInfo>, Symbolizer), Failure> {
    let (typed, symbolizer) = resolve_typed(pid, specs)?;
    Ok((typed.into_iter().map(|(w, _)| w).collect(), symbolizer))
}

/// A resolved watch with its DWARF value type, if known.
pub type TypedWatch = (WatchInfo, Option<ValueType>);

/// [`resolve`], with each watch's value type from DWARF when known (stop mode types its
/// conditions and values with it).
pub fn resolve_typed(pid: Pid, specs: &[String]) -> Result<(Vec<TypedWatch>, Symbolizer), Failure> {
    let space = AddressSpace::from_pid(pid.get() as u32).map_err(|e| {
        Failure::refused(anyhow!("{e}").context(format!("reading the memory map of pid {pid}")))
    })?;
    let mut resolver = Resolver::new(space.clone());
    let mut watches = Vec::new();
    for text in specs {
        let r = resolver
            .resolve_text(text)
            .map_err(|e| Failure::refused(anyhow!("cannot watch '{text}': {e}")))?;
        if let Some(note) = &r.note {
            crate::messages::note(&format!("note: {note}"));
        }
        let signed = matches!(r.value_type, Some(ValueType::Signed { .. }));
        watches.push((
            WatchInfo {
                label: r.label,
                spec: r.spec,
                signed,
            },
            r.value_type,
        ));
    }
    Ok((watches, Symbolizer::new(space)))
}

/// Bytes of user stack copied per hit for `--backtrace`: enough for the frames of typical
/// call chains (deep recursion or large stack arrays end the DWARF unwind early). perf's
/// default too. The test fixtures need far less (watch_target's unwind from bump_counter to
/// `_start` reads the top 824 bytes), but a smaller copy would shorten a deeper program's
/// stacks without a word, so the record stays 8312 bytes and the ring is sized for it.
pub const USER_STACK_BYTES: u32 = 8192;

/// With `--backtrace`, each CPU's ring is `2^BACKTRACE_RING_SHIFT` times the default (8 MiB):
/// 64 MiB, 8072 samples with their stack copies.
pub const BACKTRACE_RING_SHIFT: u32 = 3;

/// Arms the watches on every thread of `pid`.
pub fn arm(pid: Pid, watches: &[WatchInfo], backtrace: bool) -> Result<Sampler, Failure> {
    check_fit(watches)?;
    let specs: Vec<Spec> = watches.iter().map(|w| w.spec).collect();
    let defaults = SamplerOptions::default();
    let opts = SamplerOptions {
        callchain: backtrace,
        // DWARF unwinding (x86-64): registers + a copy of the top of the stack per hit.
        user_stack: if backtrace && cfg!(target_arch = "x86_64") {
            USER_STACK_BYTES
        } else {
            0
        },
        // A sample with a stack copy is 8312 bytes rather than 48: 8x the ring (64 MiB per
        // CPU, 8072 samples, ~50 ms of hits at 150k hits/s). The drainer thread empties it
        // (`crate::drainer`); with 32 MiB it still found a ring full now and then under load
        // (1,107 hits lost in one of 8 runs of 200,000 at load ~5).
        data_pages_log2: defaults.data_pages_log2
            + if backtrace { BACKTRACE_RING_SHIFT } else { 0 },
    };
    let sampler = Sampler::arm(pid, &specs, &opts).map_err(|e| {
        Failure::refused(anyhow!("{e}").context(format!("cannot arm the watches in pid {pid}")))
    })?;
    // Without CAP_IPC_LOCK the rings may be smaller (`crate::ring_budget`): say so once.
    if let Some(shrunk) = sampler.shrunk() {
        crate::messages::note(&shrunk.note(hwbp::sys::mmap::page_size() as u64));
    }
    Ok(sampler)
}

/// What to tell the user when another process's threads were armed while it ran, not held
/// still: threads it created during arming may then be missed or counted twice.
pub fn live_note(pid: Pid, arming: hwbp::Arming) -> Option<String> {
    use hwbp::LiveReason;
    let hwbp::Arming::Live(why) = arming else {
        return None;
    };
    let why = match why {
        LiveReason::Traced { tid, tracer } => {
            format!("thread {tid} is traced by {tracer}, so it could not be held still")
        }
        LiveReason::NotPermitted { tid, errno } => format!(
            "ptrace of thread {tid} was refused ({errno}; Yama ptrace_scope or permissions)"
        ),
        LiveReason::Requested | LiveReason::CallingProcess => return None,
    };
    Some(format!(
        "note: pid {pid} was armed while it ran ({why}): a thread it creates during arming \
         may be missed or counted twice"
    ))
}

/// Plans every watch into one thread's debug registers first, so a set that cannot fit (or
/// an access the arch refuses) is named before anything is opened.
pub fn check_fit(watches: &[WatchInfo]) -> Result<(), Failure> {
    let mut file = RegFile::new(NativeArch::new(), ParseCtx::ROOT_TASK);
    for w in watches {
        file.insert(&w.spec).map_err(|e| {
            Failure::refused(anyhow!("cannot watch '{}' ({}): {e}", w.label, w.spec))
        })?;
    }
    Ok(())
}

/// Starts CMD stopped at its entry point.
pub fn start(cmd: &[OsString]) -> Result<launch::Stopped, Failure> {
    start_with(cmd, &launch::Extra::default())
}

/// [`start`] with extra environment variables and inherited descriptors.
pub fn start_with(cmd: &[OsString], extra: &launch::Extra) -> Result<launch::Stopped, Failure> {
    launch::install_stop_handler()
        .map_err(|e| Failure::failed(anyhow!("installing the SIGINT handler: {e}")))?;
    launch::spawn_at_entry_with(&cmd[0], &cmd[1..], extra).map_err(Failure::refused)
}

/// The status to exit with for a child's end.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status.shell_code()).unwrap_or(255))
}

fn print_summary(
    out: &mut Out,
    json: bool,
    summary: &report::Summary,
    watches: &[WatchInfo],
    outcome: &session::Outcome,
    exit: Option<ExitStatus>,
) {
    if json {
        out.hit(&report::summary_json(
            summary,
            watches,
            &outcome.totals,
            exit.map(ExitStatus::shell_code),
        ));
    } else {
        out.hit(&report::summary_text(summary, watches, &outcome.totals));
    }
    out.flush();
}

/// Lets a program started at its entry point go and watches it until it exits; returns the
/// session's outcome, the summary and the program's exit status. Like `perf record`: a
/// program still running after a SIGINT/SIGTERM gets SIGTERM, and hwbp reports its status.
pub fn watch_program(
    stopped: launch::Stopped,
    sampler: Sampler,
    watches: &[WatchInfo],
    symbolizer: &mut Symbolizer,
    initial: Vec<Option<Vec<u8>>>,
    opts: &Options,
    out: &mut Out,
) -> Result<(session::Outcome, report::Summary, ExitStatus), Failure> {
    let pid = stopped.pid();
    // The reader first: the program's first hits must not fill a ring nobody reads yet.
    let drainer = session::drain(sampler, symbolizer, opts)?;
    let mut child = stopped.resume_until_exit().map_err(Failure::failed)?;
    let (outcome, summary) = session::watch(
        pid,
        drainer,
        watches,
        symbolizer,
        Until::Child(&mut child),
        initial,
        opts,
        out,
    )?;
    let status = match outcome.exit {
        Some(s) => s,
        None => {
            if outcome.signal.is_some() {
                let _ = child.signal(libc::SIGTERM);
            }
            child
                .wait()
                .map_err(|e| Failure::failed(anyhow!("waiting for the program: {e}")))?
        }
    };
    Ok((outcome, summary, status))
}

/// Runs `hwbp run`.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    if args.stop.stop {
        return crate::stop::run(args);
    }
    args.stop.refuse_without_stop()?;
    let stopped = start(&args.cmd)?;
    let pid = stopped.pid();
    // Dropping `stopped` on any error below kills the program: nothing is left behind.
    let (watches, mut symbolizer) = resolve(pid, &args.watches.watch)?;
    let sampler = arm(pid, &watches, args.report.backtrace)?;
    let mem = Memory::open(pid);
    let initial = watches.iter().map(|w| mem.read(w)).collect();
    let mut out = Out::to(args.report.output.as_deref())?;
    let opts = args.report.options(None);
    let (outcome, summary, status) = watch_program(
        stopped,
        sampler,
        &watches,
        &mut symbolizer,
        initial,
        &opts,
        &mut out,
    )?;
    print_summary(
        &mut out,
        opts.json,
        &summary,
        &watches,
        &outcome,
        Some(status),
    );
    Ok(exit_code(status))
}

/// Checks that `pid` is a live process.
pub fn live_pid(pid: i32) -> Result<Pid, Failure> {
    let p = Pid::new(pid).filter(|p| p.get() > 0);
    match p {
        Some(p) if std::path::Path::new(&format!("/proc/{p}")).exists() => Ok(p),
        _ => Err(Failure::refused(anyhow!(
            "no process {pid}: it has exited or never existed (check with `ps -p {pid}`)"
        ))),
    }
}

/// `--duration SECS` as a duration: a positive, finite number of seconds.
pub fn duration(secs: Option<f64>) -> Result<Option<Duration>, Failure> {
    match secs {
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(Failure::refused(anyhow!(
            "--duration {s}: give a positive number of seconds"
        ))),
        None => Ok(None),
    }
}

/// Runs `hwbp attach`.
pub fn attach(args: AttachArgs) -> Result<ExitCode, Failure> {
    if args.stop.stop {
        return crate::stop::attach(args);
    }
    args.stop.refuse_without_stop()?;
    let pid = live_pid(args.pid)?;
    launch::install_stop_handler()
        .map_err(|e| Failure::failed(anyhow!("installing the SIGINT handler: {e}")))?;
    let duration = duration(args.duration)?;
    let (watches, mut symbolizer) = resolve(pid, &args.watches.watch)?;
    let sampler = arm(pid, &watches, args.report.backtrace)?;
    if let Some(note) = live_note(pid, sampler.arming()) {
        crate::messages::note(&note);
    }
    let mem = Memory::open(pid);
    let initial = watches.iter().map(|w| mem.read(w)).collect();
    let mut out = Out::to(args.report.output.as_deref())?;
    let opts = args.report.options(duration);
    crate::messages::armed_note("watching", watches.len(), pid, None);
    let drainer = session::drain(sampler, &symbolizer, &opts)?;
    let (outcome, summary) = session::watch(
        pid,
        drainer,
        &watches,
        &mut symbolizer,
        Until::Process(pid),
        initial,
        &opts,
        &mut out,
    )?;
    print_summary(&mut out, opts.json, &summary, &watches, &outcome, None);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The premise of tests/cli/backtrace_storm.rs: a burst of 5,000 `--backtrace` samples of
    /// the largest possible size fits in one CPU's ring, so a paced storm cannot lose a hit.
    #[test]
    fn a_backtrace_ring_holds_a_burst_of_5000_largest_samples() {
        // header; id, ip, pid/tid, time, cpu; callchain: nr + at most 127 entries
        // (perf_event_max_stack) + context markers (at most 8); regs: abi + bp, sp, ip;
        // stack: size + the copy + dyn_size.
        let largest = 8 + 5 * 8 + 8 + (127 + 8) * 8 + 4 * 8 + 8 + u64::from(USER_STACK_BYTES) + 8;
        let page = hwbp::sys::mmap::page_size() as u64;
        let ring = page << (SamplerOptions::default().data_pages_log2 + BACKTRACE_RING_SHIFT);
        assert!(
            5_000 * largest <= ring,
            "{largest} bytes x 5000 > a {ring}-byte ring"
        );
    }
}
