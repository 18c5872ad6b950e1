//! `hwbp run --stop` and `hwbp attach --stop`: stop mode (issue 6). Every thread of the target
//! stops at each hit (the library's tracer, [`hwbp::ptrace::Tracer`]); the hit is reported with
//! the exact old -> new values, optionally the registers, filtered by `--if` and `--changed`,
//! and the target resumes — or, with `--break`, is left stopped for `gdb -p PID`.
//!
//! Start-up of `run --stop`: the program is started stopped at its entry point exactly as in
//! non-stop mode ([`crate::run::start`]: every library mapped, none of its code run), the SPECs
//! are resolved there, the launcher detaches leaving it in a `SIGSTOP` group stop
//! ([`hwbp::launch::Stopped::detach_stopped`]), the tracer seizes it and arms every watch, and a
//! `SIGCONT` lets it go. Shutdown signals (SIGINT, SIGTERM, SIGHUP) are blocked once the
//! program is forked (so it keeps the default mask) and before any tracer exists
//! ([`hwbp::ptrace::install_shutdown_signals`]); the tracer's wait loop takes them.
//!
//! Not for: formatting the hit records ([`crate::stop_report`]).

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hwbp::launch;
use hwbp::ptrace::agent::{AgentLaunch, AgentSession, Unsuitable};
use hwbp::ptrace::{
    self, Expr, Hit as StopHit, RunEnd, StopHandler, StopOptions, TraceError, Tracer, ValueType,
    Verdict, WatchSpec,
};
use hwbp::symbols::dwarf;
use hwbp::symbols::maps::AddressSpace;
use hwbp::symbols::symbolize::{Site, Symbolizer};
use hwbp::symbols::unwind::Unwinder;
use hwbp::sys::Pid;
use hwbp_core::Access;

use crate::drainer::MAX_FRAMES;
use crate::hit::{unknown_site, Hit, UnwindMethod};
use crate::messages::{self, Failure, Out};
use crate::report::{self, SiteCache, Summary, Totals, WatchInfo};
use crate::run::{self, AttachArgs, ReportArgs, RunArgs};
use crate::session::comm;
use crate::stop_report as fmt;
use crate::trace::TraceWriter;

/// The stop-mode flags, shared by `run` and `attach`.
#[derive(Debug, Default, clap::Args)]
pub struct StopArgs {
    /// Stop mode: the accessing thread is held at each hit while hwbp reads the watched bytes;
    /// exact old -> new values (see --if, --regs, --break, --stop-via). Writes and
    /// read/writes only
    #[arg(long)]
    pub stop: bool,
    /// With --stop: add the registers at each hit
    #[arg(long, requires = "stop")]
    pub regs: bool,
    /// With --stop: report only hits for which EXPR holds; operands `new`, `old` (typed from
    /// DWARF) and literals, C operators, e.g. 'new < 0', 'new != old && old == 7'
    #[arg(long = "if", value_name = "EXPR")]
    pub condition: Option<String>,
    /// With --stop: at the first reported hit, leave the program stopped (SIGSTOP, no tracer
    /// attached) and print the `gdb -p PID` command to continue in a debugger
    #[arg(long = "break")]
    pub brk: bool,
    /// With --stop: how the program is stopped at a hit. `agent`: a handler preloaded into
    /// the program holds the accessing thread (fast; `run` only). `ptrace`: hwbp traces every
    /// thread and stops them all at each reported hit. `auto`: the agent for `run` without
    /// --break when the program loads it, else ptrace
    #[arg(long, value_enum, default_value_t = Via::Auto, value_name = "HOW")]
    pub stop_via: Via,
}

/// `--stop-via`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// The agent when possible, else ptrace.
    #[default]
    Auto,
    /// The in-process agent (`run` only, not with --break).
    Agent,
    /// The ptrace tracer.
    Ptrace,
}

impl StopArgs {
    /// Without `--stop`: `--if` and `--break` are refused (non-stop mode reads the value after
    /// the fact, so `old` would not be exact, and nothing stops the program).
    pub fn refuse_without_stop(&self) -> Result<(), Failure> {
        if self.condition.is_some() {
            return Err(Failure::refused(anyhow!(
                "--if needs --stop: only stop mode reads the exact old and new value at each \
                 hit (non-stop mode reads the value after the fact); add --stop"
            )));
        }
        if self.brk {
            return Err(Failure::refused(anyhow!(
                "--break needs --stop: only stop mode can leave the program stopped at a hit; \
                 add --stop"
            )));
        }
        if self.stop_via != Via::Auto {
            return Err(Failure::refused(anyhow!(
                "--stop-via needs --stop: it chooses how stop mode stops the program; add --stop"
            )));
        }
        Ok(())
    }
}

/// What both subcommands check before touching any process.
fn check_args(stop: &StopArgs) -> Result<Option<Expr>, Failure> {
    stop.condition
        .as_deref()
        .map(|text| Expr::parse(text).map_err(|e| Failure::refused(anyhow!("--if '{text}': {e}"))))
        .transpose()
}

/// The library's value type for a DWARF type (or the natural one for the length).
fn value_type(w: &WatchInfo, dwarf_type: Option<dwarf::ValueType>) -> ValueType {
    dwarf_type.map_or_else(
        || ValueType::for_len(w.spec.region.len_bytes),
        ValueType::from,
    )
}

/// The watches as the stop backend takes them; refuses what it cannot arm.
fn watch_specs(
    typed: &[run::TypedWatch],
    condition: &Option<Expr>,
    changed: bool,
) -> Result<Vec<WatchSpec>, Failure> {
    let infos: Vec<WatchInfo> = typed.iter().map(|(w, _)| w.clone()).collect();
    run::check_fit(&infos)?;
    typed
        .iter()
        .map(|(w, t)| {
            if !matches!(w.spec.access, Access::Write | Access::ReadWrite) {
                return Err(Failure::refused(anyhow!(
                    "cannot watch '{}' ({}) with --stop: stop mode watches data writes (:w) \
                     and reads/writes (:rw); without --stop, execute breakpoints are reported",
                    w.label,
                    w.spec
                )));
            }
            Ok(WatchSpec {
                region: w.spec.region,
                access: w.spec.access,
                ty: value_type(w, *t),
                condition: condition.clone(),
                changed_only: changed,
            })
        })
        .collect()
}

fn trace_failure(e: TraceError, pid: Pid) -> Failure {
    match e {
        TraceError::Wait { .. } | TraceError::Ptrace { .. } => Failure::failed(anyhow!("{e}")),
        _ => Failure::refused(anyhow!("{e}").context(format!("stop mode in pid {pid}"))),
    }
}

/// `kill(2)`; an error (the process is gone) is ignored.
fn kill(pid: Pid, sig: i32) {
    let _ = hwbp::sys::ptrace::kill(pid.get(), sig);
}

/// Kills and reaps a child that never ran (setup failed after it was started).
fn discard(pid: Pid) {
    kill(pid, libc::SIGKILL);
    let _ = hwbp::sys::ptrace::wait(pid.get(), false);
}

/// Waits for the child `pid` to exit after the tracer let go of it; a shutdown signal
/// meanwhile sends it SIGTERM (as `perf record` does with its workload). Returns its shell
/// status (128 + N for signal N).
fn wait_child(pid: Pid) -> Result<i32, Failure> {
    let mut set = hwbp::sys::ptrace::SHUTDOWN_SIGNALS.to_vec();
    set.push(libc::SIGCHLD);
    loop {
        match hwbp::sys::ptrace::wait(pid.get(), true) {
            Ok(Some(st)) if libc::WIFEXITED(st.status) => return Ok(libc::WEXITSTATUS(st.status)),
            Ok(Some(st)) if libc::WIFSIGNALED(st.status) => {
                return Ok(128 + libc::WTERMSIG(st.status))
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::failed(anyhow!("waiting for the program: {e:?}"))),
        }
        match hwbp::sys::ptrace::wait_signal(&set) {
            Ok(libc::SIGCHLD) | Err(_) => {}
            Ok(_) => kill(pid, libc::SIGTERM),
        }
    }
}

/// Re-raises a SIGINT/SIGTERM that the launcher's handler recorded before the signals were
/// blocked, so the tracer's wait loop takes it.
fn requeue_early_signal() {
    if let Some(sig) = launch::stop_signal() {
        kill(Pid::current(), sig);
    }
}

/// Runs `hwbp run --stop`.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let condition = check_args(&args.stop)?;
    // The agent (docs/STOP_MODE.md): unless ptrace is asked for or --break needs it. A static
    // or setuid program ignores LD_PRELOAD, one for another machine cannot load it, a Go
    // runtime would replace its handler: decided from the file before it starts, so that it
    // does not inherit the agent's descriptors and variables.
    let why = match (args.stop.stop_via, args.stop.brk) {
        (Via::Ptrace, _) | (_, true) => None,
        _ => agent_unsuitable(&args.cmd[0]),
    };
    let agent = match (args.stop.stop_via, args.stop.brk) {
        (Via::Agent, true) => {
            return Err(Failure::refused(anyhow!(
                "--break needs --stop-via ptrace: the agent holds the accessing thread inside \
                 its signal handler, it cannot leave it stopped at the access for gdb; drop \
                 --stop-via agent"
            )))
        }
        (Via::Ptrace, _) | (Via::Auto, true) => None,
        (via, false) if why.is_some() => {
            if via == Via::Agent {
                return Err(agent_refused(&args.cmd[0], why));
            }
            messages::note(&fallback_note(&args.cmd[0], why));
            None
        }
        (Via::Agent | Via::Auto, false) => match AgentLaunch::with_stack(stack_bytes(&args.report))
        {
            Ok(a) => Some(a),
            Err(e) if args.stop.stop_via == Via::Agent => {
                return Err(Failure::refused(anyhow!(
                    "--stop-via agent: the in-process agent is not available here ({e}); use \
                     --stop-via ptrace"
                )))
            }
            Err(_) => None,
        },
    };
    let extra = agent.as_ref().map(AgentLaunch::extra).unwrap_or_default();
    let stopped = run::start_with(&args.cmd, &extra)?;
    let pid = stopped.pid();
    ptrace::install_shutdown_signals()
        .map_err(|e| Failure::failed(anyhow!("blocking the shutdown signals: {e:?}")))?;
    requeue_early_signal();
    // Dropping `stopped` on any error below kills the program: nothing is left behind.
    let (typed, symbolizer) = run::resolve_typed(pid, &args.watches.watch)?;
    let specs = watch_specs(&typed, &condition, args.report.changed)?;
    let types: Vec<ValueType> = specs.iter().map(|s| s.ty).collect();
    let agent = match agent {
        Some(a) if a.loaded(pid.get()) => Some(a),
        Some(_) if args.stop.stop_via == Via::Agent => {
            return Err(agent_refused(&args.cmd[0], None))
        }
        Some(_) => {
            messages::note(&fallback_note(&args.cmd[0], None));
            None
        }
        None => None,
    };
    let out = Out::to(args.report.output.as_deref())?;
    let backend = match agent {
        Some(agent) => {
            let session = agent
                .arm(pid.get(), specs, options(&args.stop, &args.report))
                .map_err(|e| trace_failure(e, pid))?;
            stopped
                .resume()
                .map_err(|e| Failure::failed(anyhow!("{e}")))?;
            Backend::Agent(session)
        }
        None => {
            let pid = stopped
                .detach_stopped()
                .map_err(|e| Failure::failed(anyhow!("{e}")))?;
            let tracer = Tracer::attach(pid.get(), specs, options(&args.stop, &args.report))
                .map_err(|e| {
                    discard(pid);
                    trace_failure(e, pid)
                })?;
            kill(pid, libc::SIGCONT);
            Backend::Tracer(tracer)
        }
    };
    let watches: Vec<WatchInfo> = typed.into_iter().map(|(w, _)| w).collect();
    let remedy = if args.stop.brk {
        "--break needs ptrace; without --break, `hwbp run --stop` (the default agent) keeps \
         SIGTRAP unblocked and stops them"
    } else if args.stop.stop_via == Via::Ptrace {
        "use `hwbp run --stop` with the default agent (drop --stop-via ptrace): it never lets \
         the program block SIGTRAP"
    } else {
        "the agent, which keeps SIGTRAP unblocked, is not used for this program (see the note \
         above): no remedy"
    };
    let mut session = Session::new(
        (pid, backend.name()),
        &watches,
        types,
        symbolizer,
        &args.stop,
        &args.report,
        out,
    )?;
    session.remedy = remedy;
    let end = match session.run(backend) {
        Ok(end) => end,
        Err(f) => {
            // The backend released the program: let it finish, then report the failure.
            let _ = wait_child(pid);
            return Err(f);
        }
    };
    session.announce(&end);
    let status = match &end {
        RunEnd::Exited(c) => *c,
        RunEnd::Killed(s) => 128 + s,
        // Left stopped by --break, detached (--limit, exec) or shut down by a signal: the
        // program runs on (or waits for SIGCONT); hwbp stays its parent and waits for it, as
        // `run` always does. (Exiting would orphan a stopped program, and the kernel sends
        // SIGHUP to a stopped process in an orphaned process group.)
        _ => wait_child(pid)?,
    };
    session.finish(Some(status))?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(255)))
}

/// Why the agent cannot be used for `program` (as `run` starts it: a `PATH` lookup without a
/// `/`), from its file: statically linked, setuid, another machine, a Go program.
fn agent_unsuitable(program: &std::ffi::OsStr) -> Option<Unsuitable> {
    program
        .to_str()
        .and_then(ptrace::resolve_program)
        .and_then(|p| hwbp::ptrace::agent::unsuitable(&p))
}

/// `--stop-via agent` for a program the agent cannot serve; `why` when known from its file.
fn agent_refused(program: &std::ffi::OsStr, why: Option<Unsuitable>) -> Failure {
    let program = program.to_string_lossy();
    Failure::refused(match why {
        Some(why) => anyhow!(
            "--stop-via agent: the agent cannot be used for '{program}' ({why}); use \
             --stop-via ptrace"
        ),
        None => anyhow!(
            "--stop-via agent: the agent did not load into '{program}' (a libc that ignores \
             LD_PRELOAD?); use --stop-via ptrace"
        ),
    })
}

/// The note when `auto` falls back to ptrace; `why` when known from the program's file.
fn fallback_note(program: &std::ffi::OsStr, why: Option<Unsuitable>) -> String {
    let program = program.to_string_lossy();
    match why {
        Some(why) => format!(
            "the in-process agent cannot be used for '{program}' ({why}); stopping through \
             ptrace, which costs more per hit"
        ),
        None => format!(
            "the in-process agent did not load into '{program}' (a libc that ignores \
             LD_PRELOAD?); stopping through ptrace, which costs more per hit"
        ),
    }
}

/// What stops the program at a hit.
enum Backend {
    Tracer(Tracer),
    Agent(AgentSession),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Tracer(_) => "ptrace",
            Backend::Agent(_) => "agent",
        }
    }
}

/// Runs `hwbp attach --stop`.
pub fn attach(args: AttachArgs) -> Result<ExitCode, Failure> {
    let condition = check_args(&args.stop)?;
    if args.stop.stop_via == Via::Agent {
        return Err(Failure::refused(anyhow!(
            "--stop-via agent works for programs hwbp starts (`hwbp run`): the agent is \
             preloaded at start-up; attach stops through ptrace (drop --stop-via)"
        )));
    }
    let pid = run::live_pid(args.pid)?;
    let duration = run::duration(args.duration)?;
    ptrace::install_shutdown_signals()
        .map_err(|e| Failure::failed(anyhow!("blocking the shutdown signals: {e:?}")))?;
    let (typed, symbolizer) = run::resolve_typed(pid, &args.watches.watch)?;
    let specs = watch_specs(&typed, &condition, args.report.changed)?;
    let types: Vec<ValueType> = specs.iter().map(|s| s.ty).collect();
    let out = Out::to(args.report.output.as_deref())?;
    let tracer = Tracer::attach(pid.get(), specs, options(&args.stop, &args.report))
        .map_err(|e| trace_failure(e, pid))?;
    let watches: Vec<WatchInfo> = typed.into_iter().map(|(w, _)| w).collect();
    messages::armed_note("watching", watches.len(), pid, Some("stop mode"));
    if let Some(d) = duration {
        // The thread inherits the blocked mask; the process-directed SIGTERM is taken by the
        // tracer's wait loop like a Ctrl-C.
        std::thread::spawn(move || {
            std::thread::sleep(d);
            kill(Pid::current(), libc::SIGTERM);
        });
    }
    let mut session = Session::new(
        (pid, "ptrace"),
        &watches,
        types,
        symbolizer,
        &args.stop,
        &args.report,
        out,
    )?;
    session.remedy = "attach has no remedy: only a program hwbp starts (`hwbp run --stop`, \
                      the default agent) can be kept from blocking SIGTRAP";
    let end = session.run(Backend::Tracer(tracer))?;
    session.announce(&end);
    session.finish(None)?;
    Ok(ExitCode::SUCCESS)
}

fn options(stop: &StopArgs, report: &ReportArgs) -> StopOptions {
    StopOptions {
        // `rip` names the accessing instruction: always read, alone (one PTRACE_PEEKUSER)
        // unless `--regs` asks for all registers (PTRACE_GETREGS).
        regs: stop.regs,
        ip: true,
        stack: stack_bytes(report),
        ..StopOptions::default()
    }
}

/// `--backtrace`: the stack copied at each hit for DWARF unwinding, as non-stop mode's
/// samples ([`run::USER_STACK_BYTES`]).
fn stack_bytes(report: &ReportArgs) -> usize {
    if report.backtrace {
        run::USER_STACK_BYTES as usize
    } else {
        0
    }
}

/// One stop-mode session: the handler the tracer calls at each hit, and the report.
struct Session<'a> {
    pid: Pid,
    watches: &'a [WatchInfo],
    types: Vec<ValueType>,
    symbolizer: Symbolizer,
    /// `--backtrace`: the unwind tables of the modules mapped (rebuilt with the symbolizer's
    /// map).
    unwinder: Option<Unwinder>,
    cache: SiteCache,
    summary: Summary,
    out: Out,
    trace: Option<TraceWriter<std::io::BufWriter<std::fs::File>>>,
    names: HashMap<u32, Option<Arc<str>>>,
    process_name: Option<Arc<str>>,
    tids: BTreeSet<u32>,
    limit: Option<u64>,
    brk: bool,
    json: bool,
    quiet: bool,
    regs: bool,
    start: Instant,
    /// The first hit's `Hit::time_ns`.
    t0: Option<u64>,
    last_flush: Instant,
    last_refresh: Option<Instant>,
    last_site: Option<(u64, Arc<Site>)>,
    reported: u64,
    seen: u64,
    /// Hits the tracer could not stop (a thread blocked SIGTRAP): the summary's `lost`.
    not_stopped: u64,
    /// How to avoid `not_stopped`, for the note on stderr.
    remedy: &'static str,
    line: String,
    trace_error: Option<std::io::Error>,
}

impl<'a> Session<'a> {
    /// `via`: the backend's name, for the start record.
    fn new(
        (pid, via): (Pid, &str),
        watches: &'a [WatchInfo],
        types: Vec<ValueType>,
        symbolizer: Symbolizer,
        stop: &StopArgs,
        report: &ReportArgs,
        mut out: Out,
    ) -> Result<Session<'a>, Failure> {
        let trace = match &report.trace_out {
            Some(path) => {
                let f = std::fs::File::create(path).map_err(|e| {
                    Failure::refused(anyhow!("creating --trace-out {}: {e}", path.display()))
                })?;
                let name = comm(pid, None).map_or_else(|| "?".to_owned(), |s| s.to_string());
                Some(
                    TraceWriter::new(std::io::BufWriter::new(f), pid.get(), &name)
                        .map_err(|e| Failure::failed(anyhow!("--trace-out: {e}")))?,
                )
            }
            None => None,
        };
        if report.json {
            out.hit(&report::start_json(pid.get(), watches, Some(via)));
            out.flush();
        }
        let unwinder = report.backtrace.then(|| Unwinder::new(symbolizer.space()));
        Ok(Session {
            pid,
            watches,
            types,
            symbolizer,
            unwinder,
            cache: SiteCache::default(),
            summary: Summary::default(),
            out,
            trace,
            names: HashMap::new(),
            process_name: comm(pid, None),
            tids: report.tid.iter().copied().collect(),
            limit: report.limit,
            brk: stop.brk,
            json: report.json,
            quiet: report.quiet,
            regs: stop.regs,
            start: Instant::now(),
            t0: None,
            last_flush: Instant::now(),
            last_refresh: None,
            last_site: None,
            reported: 0,
            seen: 0,
            not_stopped: 0,
            remedy: "",
            line: String::with_capacity(512),
            trace_error: None,
        })
    }

    /// Runs the backend to its end; it is dropped (released) before this returns.
    fn run(&mut self, backend: Backend) -> Result<RunEnd, Failure> {
        let end = match backend {
            Backend::Tracer(mut tracer) => {
                let end = tracer.run(self);
                self.seen = tracer.hits_seen();
                self.not_stopped = tracer.hits_not_stopped();
                end
            }
            Backend::Agent(mut agent) => {
                let end = agent.run(self);
                self.seen = agent.hits_seen();
                end
            }
        };
        self.out.flush();
        end.map_err(|e| Failure::failed(anyhow!("{e}").context("stop mode")))
    }

    /// `--break`: says where the program was left and how to continue in a debugger.
    fn announce(&mut self, end: &RunEnd) {
        if let RunEnd::Break { pid, gdb_command } = end {
            if self.json {
                self.out.hit(&fmt::break_json(*pid, gdb_command));
            }
            self.out.flush();
            messages::note(&format!(
                "pid {pid} is left stopped (SIGSTOP) at the hit above, with no tracer \
                 attached; continue in a debugger: {gdb_command}"
            ));
        }
    }

    /// Prints the summary.
    fn finish(&mut self, exit_status: Option<i32>) -> Result<(), Failure> {
        if self.not_stopped > 0 {
            messages::note(&format!(
                "{} hits could not be stopped (counted as lost): the threads that made them \
                 block SIGTRAP (pthread_sigmask/sigprocmask), so ptrace never stops them at \
                 the access; {}",
                self.not_stopped, self.remedy
            ));
        }
        let totals = Totals {
            seen: self.seen,
            reported: self.reported,
            lost: self.not_stopped,
            duration_ns: u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        };
        let text = if self.json {
            report::summary_json(&self.summary, self.watches, &totals, exit_status)
        } else {
            report::summary_text(&self.summary, self.watches, &totals)
        };
        self.out.hit(&text);
        self.out.flush();
        if let Some(t) = self.trace.take() {
            t.finish()
                .map_err(|e| Failure::failed(anyhow!("--trace-out: {e}")))?;
        }
        if let Some(e) = self.trace_error.take() {
            return Err(Failure::failed(anyhow!("--trace-out: {e}")));
        }
        Ok(())
    }

    /// The thread's name: the one recorded at the hit when the backend has it (the agent),
    /// else `/proc/PID/task/TID/comm` (read once per thread).
    fn thread_name(&mut self, tid: u32, at_hit: Option<&[u8; 16]>) -> Option<Arc<str>> {
        let (pid, process) = (self.pid, &self.process_name);
        if let Some(raw) = at_hit {
            let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
            let cached = self.names.get(&tid).and_then(|n| n.as_deref());
            if cached.is_some_and(|c| c.as_bytes() == name) {
                return self.names[&tid].clone();
            }
            let fresh: Option<Arc<str>> = Some(String::from_utf8_lossy(name).into());
            self.names.insert(tid, fresh.clone());
            return fresh;
        }
        self.names
            .entry(tid)
            .or_insert_with(|| comm(pid, Some(tid)).or_else(|| process.clone()))
            .clone()
    }
}

impl StopHandler for Session<'_> {
    fn hit(&mut self, h: &StopHit<'_>) -> Verdict {
        let tid = h.tid.0 as u32;
        if !self.tids.is_empty() && !self.tids.contains(&tid) {
            return Verdict::Continue;
        }
        let now = Instant::now();
        let t0 = *self.t0.get_or_insert(h.time_ns);
        let w = &self.watches[h.watch];
        // x86 data breakpoints trap after the access: `rip` is the next instruction; the
        // symbolizer decodes back to the store, as for a perf sample's IP.
        if h.new_code {
            // Code mapped since the last read of the memory map (the agent holds the
            // program until this returns): read it again now, whatever the rate limit.
            self.last_refresh = None;
        }
        let site = match h.ip {
            Some(ip) if ip != 0 => self.site(ip),
            _ => Arc::new(unknown_site(0)),
        };
        let thread = self.thread_name(tid, h.comm.as_ref());
        let (backtrace, unwind) = self.callers(h);
        let hit = Hit {
            time_ns: h.time_ns.saturating_sub(t0),
            tid,
            thread,
            cpu: None,
            watch: h.watch,
            access: w.spec.access,
            site,
            value: Some(h.new.to_vec()),
            changed: Some(h.old != h.new),
            backtrace,
            unwind,
        };
        self.reported += 1;
        self.summary.add(&hit);
        let ty = self.types_of(h.watch);
        if !self.quiet {
            self.line.clear();
            let regs = if self.regs { h.regs.as_ref() } else { None };
            if self.json {
                fmt::hit_json(
                    &mut self.line,
                    &hit,
                    h,
                    ty,
                    regs,
                    self.watches,
                    &mut self.cache,
                );
            } else {
                fmt::hit_text(
                    &mut self.line,
                    &hit,
                    h,
                    ty,
                    regs,
                    self.watches,
                    &mut self.cache,
                );
            }
            self.out.hit(&self.line);
            if now.duration_since(self.last_flush) >= Duration::from_millis(50) || self.brk {
                self.out.flush();
                self.last_flush = now;
            }
        }
        if let Some(t) = &mut self.trace {
            if let Err(e) = t.hit(&hit, self.watches) {
                self.trace_error.get_or_insert(e);
            }
        }
        if self.brk {
            Verdict::Break
        } else if self.limit.is_some_and(|n| self.reported >= n) {
            Verdict::Detach
        } else {
            Verdict::Continue
        }
    }
}

impl Session<'_> {
    /// The symbolized accessing instruction for a trap IP; an IP in no known module (a library
    /// loaded since, `dlopen`) re-reads the memory map, at most once a second.
    fn site(&mut self, ip: u64) -> Arc<Site> {
        // A watch is usually hit from a few stores: the last site is reused as is.
        if let Some((last, site)) = &self.last_site {
            if *last == ip {
                return site.clone();
            }
        }
        let site = self.site_uncached(ip);
        if site.module.is_some() {
            self.last_site = Some((ip, site.clone()));
        }
        site
    }

    /// `--backtrace`: the callers of the hit, DWARF-unwound from its stack copy and
    /// symbolized (each return address once, by the symbolizer), as non-stop mode does.
    fn callers(&mut self, h: &StopHit<'_>) -> (Vec<Arc<Site>>, Option<UnwindMethod>) {
        let (Some(u), Some(s)) = (self.unwinder.as_mut(), h.stack) else {
            return (Vec::new(), None);
        };
        let frames = u.unwind([s.bp, s.sp, s.ip], s.bytes, MAX_FRAMES);
        let sites = frames.iter().map(|&ra| self.symbolizer.site(ra)).collect();
        (sites, Some(UnwindMethod::Dwarf))
    }

    fn site_uncached(&mut self, ip: u64) -> Arc<Site> {
        let site = self.symbolizer.site(ip);
        if site.module.is_some() || self.last_refresh.is_some_and(|t| t.elapsed().as_secs() < 1) {
            return site;
        }
        self.last_refresh = Some(Instant::now());
        match AddressSpace::from_pid(self.pid.get() as u32) {
            Ok(space) => {
                if self.unwinder.is_some() {
                    self.unwinder = Some(Unwinder::new(&space));
                }
                self.symbolizer.set_space(space);
                self.last_site = None;
                self.cache = SiteCache::default();
                self.symbolizer.site(ip)
            }
            Err(_) => site,
        }
    }

    fn types_of(&self, watch: usize) -> ValueType {
        self.types.get(watch).copied().unwrap_or(ValueType::Bytes)
    }
}
