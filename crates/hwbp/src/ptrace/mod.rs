//! Stop mode (issue 6): every thread of the target stops at each hit; hwbp reads the watched
//! bytes, reports the exact old → new values (a shadow copy updated at every stop), optionally
//! the registers, evaluates a condition, and resumes — or leaves the target stopped for gdb.
//!
//! How a hit becomes a stop: each planned piece (hwbp-core's x86 planner) is a perf
//! breakpoint with `sigtrap=1, remove_on_exec=1` opened **by the tracer** on each traced
//! thread; the hit's SIGTRAP (`si_code = TRAP_PERF`, `si_perf_data` = watch/piece tag) is
//! intercepted at signal-delivery-stop and suppressed. The watches live in the tracer's file
//! descriptors, so they vanish with the tracer, even on SIGKILL. Why not ptrace DR0–DR7: see
//! `docs/STOP_MODE.md`.
//!
//! Not for: argument parsing or printing (the CLI), symbol resolution (the symbols layer
//! passes a [`WatchSpec`] with a [`ValueType`]).

pub mod agent;
mod drfile;
mod expr;
mod tracer;
mod value;

use std::fmt;

use hwbp_core::error::PlanError;
use hwbp_core::{Access, Region};

pub use crate::sys::ptrace::{Errno, Tid};
pub use drfile::{
    random_steps, run_differential, CoreDrFile, DrFile, DrOp, DrOutcome, Mismatch, PtraceDrFile,
    StepRng,
};
pub use expr::{BinOp, EvalError, Expr, ParseError, UnOp};
pub use tracer::{install_shutdown_signals, resolve_program, Tracer};
pub use value::{Value, ValueType};

/// One thing to watch in stop mode.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchSpec {
    /// The bytes watched (any length; planned into aligned 1/2/4/8-byte pieces).
    pub region: Region,
    /// Which accesses stop the target (`Write` or `ReadWrite`; x86 has no read-only watch).
    pub access: Access,
    /// How `old`/`new` are typed for conditions and output.
    pub ty: ValueType,
    /// `--if`: report only hits for which this holds.
    pub condition: Option<Expr>,
    /// `--changed`: report only hits whose value differs from the shadow copy (gdb `watch`).
    pub changed_only: bool,
}

impl WatchSpec {
    /// Watch writes to `region`, typed by its length, every hit reported.
    pub fn write(region: Region) -> WatchSpec {
        WatchSpec {
            region,
            access: Access::Write,
            ty: ValueType::for_len(region.len_bytes),
            condition: None,
            changed_only: false,
        }
    }
}

/// A hit's typed values, when it passes `--if` and `--changed`.
pub(crate) struct Judged {
    pub old_value: Value,
    pub new_value: Value,
    pub condition_error: Option<EvalError>,
}

/// The filters of stop mode, the same for the tracer and the agent: the condition (a hit
/// whose condition fails to evaluate is reported, as gdb stops on such errors) and
/// `changed_only` (gdb's `watch`: the bytes differ from the shadow copy). `None`: not
/// reported.
pub(crate) fn judge(spec: &WatchSpec, old: &[u8], new: &[u8]) -> Option<Judged> {
    let new_value = spec.ty.decode(new);
    let old_value = spec.ty.decode(old);
    let (pass, condition_error) = match &spec.condition {
        None => (true, None),
        Some(c) => match c.holds(new_value, old_value) {
            Ok(b) => (b, None),
            Err(e) => (true, Some(e)),
        },
    };
    (pass && (old != new || !spec.changed_only)).then_some(Judged {
        old_value,
        new_value,
        condition_error,
    })
}

/// How a stop-mode session behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopOptions {
    /// Read the general-purpose registers at each reported hit (`--regs`).
    pub regs: bool,
    /// Read only the instruction pointer at each reported hit (one `PTRACE_PEEKUSER` instead
    /// of `PTRACE_GETREGS`), into [`Hit::ip`]. Implied by `regs`.
    pub ip: bool,
    /// Stop every other thread while a hit is reported (gdb's all-stop). Costs one
    /// `PTRACE_INTERRUPT` + wait per other running thread per reported hit.
    pub all_stop: bool,
    /// For spawned targets: `PTRACE_O_EXITKILL` (the target dies with hwbp). Off by default:
    /// the watches die with hwbp anyway, so the target can finish (docs/STOP_MODE.md).
    pub kill_on_tracer_death: bool,
    /// Copy this many bytes of the accessing thread's stack (from `rsp` up, fewer where the
    /// mapping ends) at each reported hit, with `rip`, `rsp`, `rbp`, into [`Hit::stack`]: what
    /// a DWARF unwinder needs for the call stack (`--backtrace`). 0: off. At most 64 KiB, a
    /// multiple of 8, for the agent.
    pub stack: usize,
}

impl Default for StopOptions {
    fn default() -> Self {
        StopOptions {
            regs: false,
            ip: false,
            all_stop: true,
            kill_on_tracer_death: false,
            stack: 0,
        }
    }
}

/// The x86-64 general-purpose registers at a hit (`struct user_regs_struct`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    /// Values in [`Regs::NAMES`] order.
    pub values: [u64; 27],
}

impl Regs {
    /// Register names, in `user_regs_struct` order.
    pub const NAMES: [&'static str; 27] = [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
        "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
        "es", "fs", "gs",
    ];

    /// A register by name.
    pub fn get(&self, name: &str) -> Option<u64> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.values[i])
    }

    /// The instruction pointer: for a data watchpoint, the instruction *after* the access
    /// (x86 data breakpoints are traps).
    pub fn ip(&self) -> u64 {
        self.values[16]
    }
}

/// A copy of the top of the accessing thread's stack at a hit ([`StopOptions::stack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackCopy<'a> {
    /// `rip` (the instruction after the access).
    pub ip: u64,
    /// `rsp`: the address of `bytes[0]`.
    pub sp: u64,
    /// `rbp`.
    pub bp: u64,
    /// The stack from `sp` up: [`StopOptions::stack`] bytes, or fewer where the stack's
    /// mapping ends (empty if `sp` was not readable).
    pub bytes: &'a [u8],
}

/// One reported hit.
#[derive(Clone, Copy, Debug)]
pub struct Hit<'a> {
    /// The thread that made the access.
    pub tid: Tid,
    /// Index of the watch in the session's list.
    pub watch: usize,
    /// Index of the planned piece that fired (the DR6 B-bit equivalent).
    pub piece: usize,
    /// The watched bytes before the access (shadow copy).
    pub old: &'a [u8],
    /// The watched bytes after the access.
    pub new: &'a [u8],
    /// `old`, typed.
    pub old_value: Value,
    /// `new`, typed.
    pub new_value: Value,
    /// The condition failed to evaluate (reported as a hit, as gdb stops on such errors).
    pub condition_error: Option<EvalError>,
    /// Registers, when [`StopOptions::regs`] is set.
    pub regs: Option<Regs>,
    /// The instruction pointer (the instruction after the access), when
    /// [`StopOptions::ip`] or [`StopOptions::regs`] is set.
    pub ip: Option<u64>,
    /// Hits seen so far in this session, this one included (filtered ones too).
    pub seq: u64,
    /// The accessing instruction is in code mapped since the session last read the memory
    /// map (a library loaded later): re-read it now, the program is held until this returns
    /// (the agent; the tracer always holds the program, and says `false`).
    pub new_code: bool,
    /// When the access happened: `CLOCK_MONOTONIC` nanoseconds (the agent stamps the hit in
    /// its handler; the tracer at the stop).
    pub time_ns: u64,
    /// The thread's name at the hit, NUL-padded (the agent reads it in its handler: the
    /// thread may be gone, or the process re-exec'd, when the hit is handled); `None` from the
    /// tracer, whose thread is stopped (read `/proc/PID/task/TID/comm`).
    pub comm: Option<[u8; 16]>,
    /// The registers and stack an unwinder needs, when [`StopOptions::stack`] is set.
    pub stack: Option<StackCopy<'a>>,
}

/// What to do after a reported hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Resume the target.
    Continue,
    /// `--break`: remove every watch, leave the target stopped (SIGSTOP), detach.
    Break,
    /// Remove every watch, detach, let the target run on.
    Detach,
}

/// What to do after the target called `exec` (which removed every watch).
#[derive(Clone, Debug, PartialEq)]
pub enum ExecVerdict {
    /// Watch these (re-resolved) regions in the new image.
    Rearm(Vec<WatchSpec>),
    /// Keep following the process without watches.
    KeepTracing,
    /// Detach and let the new image run.
    Detach,
}

/// Thread lifecycle notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadEvent {
    /// A new thread appeared and was armed before it ran.
    Started(Tid),
    /// A traced thread exited.
    Exited(Tid),
}

/// The consumer of a stop-mode session.
pub trait StopHandler {
    /// A hit that passed the condition and `changed` filters.
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict;
    /// The target called exec; `pid` is the process (its new image).
    fn exec(&mut self, _pid: Tid) -> ExecVerdict {
        ExecVerdict::Detach
    }
    /// A thread started or exited.
    fn thread(&mut self, _event: ThreadEvent) {}
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The target exited with this status.
    Exited(i32),
    /// The target was killed by this signal.
    Killed(i32),
    /// `Verdict::Break`: the target is stopped, no tracer attached, no watch left.
    Break {
        /// The stopped process.
        pid: i32,
        /// How to continue in a debugger: `gdb -p PID`.
        gdb_command: String,
    },
    /// Detached on request; the target runs on without watches.
    Detached,
    /// A shutdown signal (SIGINT, SIGTERM, SIGHUP) arrived: everything was removed and
    /// detached, the target runs on.
    Shutdown {
        /// The signal.
        signal: i32,
    },
}

/// Why stop mode could not start or go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceError {
    /// Another process already traces the target (`TracerPid` in `/proc/PID/status`).
    AlreadyTraced {
        /// The target.
        pid: i32,
        /// The tracer holding it.
        tracer_pid: i32,
    },
    /// No such process.
    NoSuchProcess {
        /// The target.
        pid: i32,
    },
    /// A ptrace request failed.
    Ptrace {
        /// The request (`"PTRACE_SEIZE"` ...).
        op: &'static str,
        /// The thread.
        tid: Tid,
        /// The error.
        errno: Errno,
    },
    /// The program could not be started.
    Spawn {
        /// The error (`ENOENT`: not found; `ECHILD`: it did not stop as expected).
        errno: Errno,
    },
    /// The watch cannot be planned.
    Plan(PlanError),
    /// More pieces than the thread has debug registers.
    TooManyPieces {
        /// Pieces needed by all watches together.
        needed: u32,
        /// Debug registers per thread.
        capacity: u32,
    },
    /// Opening a piece's breakpoint on a thread failed.
    Arm {
        /// The thread.
        tid: Tid,
        /// The piece's first byte.
        addr: u64,
        /// The error (`ENOSPC`: another debugger or perf user holds the registers).
        errno: Errno,
    },
    /// `waitpid` failed.
    Wait {
        /// The error.
        errno: Errno,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::AlreadyTraced { pid, tracer_pid } => write!(
                f,
                "process {pid} is already traced by process {tracer_pid} (TracerPid in /proc/{pid}/status); \
                 detach that debugger first (gdb: `detach`), only one tracer is allowed"
            ),
            TraceError::NoSuchProcess { pid } => {
                write!(f, "no process {pid} (check the pid; it may have exited)")
            }
            TraceError::Ptrace { op, tid, errno } => write!(
                f,
                "{op} on thread {tid} failed: {}; EPERM means missing rights (same user, \
                 CAP_SYS_PTRACE, or kernel.yama.ptrace_scope), ESRCH that the thread is gone",
                errno.coded()
            ),
            TraceError::Spawn { errno } => write!(
                f,
                "could not start the program: {} (ENOENT: not found or not executable)",
                errno.coded()
            ),
            TraceError::Plan(e) => write!(f, "cannot plan the watch: {e:?}"),
            TraceError::TooManyPieces { needed, capacity } => write!(
                f,
                "the watches need {needed} debug registers but a thread has {capacity}; \
                 watch fewer or smaller, aligned regions"
            ),
            TraceError::Arm { tid, addr, errno } => write!(
                f,
                "could not arm the watch at {addr:#x} on thread {tid}: {}; ENOSPC means \
                 another debugger or perf user holds the thread's debug registers, EACCES/EPERM \
                 missing rights",
                errno.coded()
            ),
            TraceError::Wait { errno } => write!(f, "waitpid failed: {}", errno.coded()),
        }
    }
}

impl std::error::Error for TraceError {}
