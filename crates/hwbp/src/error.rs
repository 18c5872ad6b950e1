//! Why a watch could not be armed, changed or read: the errno, what hwbp was doing, and the
//! probable cause with its fix.
//!
//! Not for: rule violations found before any system call — those are hwbp-core's
//! [`PlanError`]/[`RuleError`], wrapped in [`Error::Plan`].

use std::fmt;

use hwbp_core::arch::{self, NativeArch, ParseCtx};
use hwbp_core::error::PlanError;
use hwbp_core::{BpAttr, RuleError};

use crate::sys::{Cpu, Errno, Pid, Scope, Tid};

/// What hwbp was doing when a system call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `perf_event_open` of one piece.
    Open,
    /// `PERF_EVENT_IOC_MODIFY_ATTRIBUTES`.
    Modify,
    /// `PERF_EVENT_IOC_ENABLE`.
    Enable,
    /// `PERF_EVENT_IOC_DISABLE`.
    Disable,
    /// `PERF_EVENT_IOC_RESET`.
    Reset,
    /// `PERF_EVENT_IOC_ID`.
    Id,
    /// `read(2)` of a counter.
    Read,
    /// Listing `/proc/PID/task`.
    ListThreads,
    /// Reading `/sys/devices/system/cpu/online`.
    ListCpus,
    /// Sending SIGSTOP to freeze a process while arming it.
    Freeze,
    /// `mmap` of a perf ring buffer (stream delivery).
    Mmap,
    /// `PERF_EVENT_IOC_SET_OUTPUT` (stream delivery: events sharing one ring).
    SetOutput,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Open => "perf_event_open",
            Op::Modify => "PERF_EVENT_IOC_MODIFY_ATTRIBUTES",
            Op::Enable => "PERF_EVENT_IOC_ENABLE",
            Op::Disable => "PERF_EVENT_IOC_DISABLE",
            Op::Reset => "PERF_EVENT_IOC_RESET",
            Op::Id => "PERF_EVENT_IOC_ID",
            Op::Read => "read",
            Op::ListThreads => "listing /proc/PID/task",
            Op::ListCpus => "reading /sys/devices/system/cpu/online",
            Op::Freeze => "kill(SIGSTOP) to freeze the process while arming",
            Op::Mmap => "mmap of the perf ring buffer",
            Op::SetOutput => "PERF_EVENT_IOC_SET_OUTPUT",
        }
    }
}

/// What probably holds the debug slots when an open fails with `ENOSPC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Holders {
    /// `TracerPid` of the target process (a debugger's ptrace watchpoints share the slots).
    pub tracer: Option<Pid>,
    /// perf events (`anon_inode:[perf_event]` fds) the target process holds itself, not
    /// counting this watch's; `None` if its fd table could not be read.
    pub process_perf_events: Option<u32>,
    /// CPU-wide breakpoints of any process count against every thread
    /// (`C[c] + TP(c) <= slots`).
    pub cpu_wide_possible: bool,
    /// The failing event is CPU-bound: the busiest thread's breakpoints on that CPU count too
    /// (`C[c] + max over tasks TP(c) <= slots`), whichever process it belongs to.
    pub cpu_bound: bool,
}

/// The probable cause of a failed system call, with the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// `ENOSPC`: every debug slot of the thread or CPU is taken.
    NoSlot {
        /// Slots this watch needs on each thread or CPU.
        pieces: u32,
        /// What probably holds the others.
        holders: Holders,
    },
    /// `EACCES`/`EPERM`: perf_event_paranoid or a missing capability.
    Permission {
        /// `/proc/sys/kernel/perf_event_paranoid`, if readable.
        paranoid: Option<i32>,
        /// Kernel-mode accesses were asked for (`exclude_kernel = 0`).
        kernel: bool,
        /// The event is CPU-wide.
        cpu_wide: bool,
    },
    /// `EPERM` from `mmap` of a ring (the event itself opened): the rings exceed the locked
    /// memory this user and process may use (see [`crate::caps::LockLimits`]).
    LockedMemory(crate::caps::LockLimits),
    /// `EINVAL` with the rule hwbp-core's validator names.
    Rule(RuleError),
    /// `EINVAL` that the validator accepts: a field hwbp sets is unknown to this kernel, or a
    /// modify changed a field other than address, length, type and disabled.
    KernelRefused,
    /// `ENOENT`/`ENODEV`: no breakpoint PMU (no hardware debug registers, or a VM without them).
    NoBreakpointSupport,
    /// `EOPNOTSUPP`: the kernel or CPU lacks this feature.
    NotSupported,
    /// `ESRCH`: the thread or process exited.
    TargetGone,
    /// Any other errno.
    Other,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::NoSlot { pieces, holders } => {
                write!(
                    f,
                    "no free debug slot: this watch needs {pieces} slot{} per thread/CPU (x86 has 4); ",
                    if pieces == 1 { "" } else { "s" }
                )?;
                if let Some(t) = holders.tracer {
                    write!(
                        f,
                        "the target is traced by pid {t}, whose watchpoints share the slots; "
                    )?;
                }
                if let Some(n) = holders.process_perf_events.filter(|n| *n > 0) {
                    write!(
                        f,
                        "the target process holds {n} other perf event(s), possibly breakpoints; "
                    )?;
                }
                if holders.cpu_wide_possible {
                    f.write_str("CPU-wide breakpoints (perf record -a, bpftrace watchpoint, another hwbp --cpu) take slots from every thread; ")?;
                }
                if holders.cpu_bound {
                    f.write_str("on a CPU, the thread with the most breakpoints (e.g. a debugger's tracee) limits CPU-wide ones too; ")?;
                }
                f.write_str("remove other watches or watch a smaller, aligned region")
            }
            Cause::Permission {
                paranoid,
                kernel,
                cpu_wide,
            } => {
                match paranoid {
                    Some(p) => write!(f, "perf_event_paranoid is {p}")?,
                    None => f.write_str("perf_event_paranoid is unreadable")?,
                }
                if kernel {
                    f.write_str("; counting kernel-mode accesses needs paranoid <= 1 or CAP_PERFMON (or drop :k)")?;
                }
                if cpu_wide {
                    f.write_str("; CPU-wide events need paranoid <= 0 or CAP_PERFMON")?;
                }
                f.write_str("; watching another user's process needs CAP_SYS_PTRACE; run as root, grant CAP_PERFMON, or lower /proc/sys/kernel/perf_event_paranoid")
            }
            Cause::LockedMemory(limits) => write!(
                f,
                "the perf rings exceed the memory this user may lock: {limits} (other \
                 processes of this user with perf rings mapped count too), unless CAP_IPC_LOCK; \
                 raise `ulimit -l` or /proc/sys/kernel/perf_event_mlock_kb, or run with \
                 CAP_IPC_LOCK or as root"
            ),
            Cause::Rule(r) => r.fmt(f),
            Cause::KernelRefused => f.write_str(
                "the kernel refused a field hwbp-core's rules accept: a perf feature this kernel \
                 lacks (inherit_thread and sigtrap need 5.13, MODIFY_ATTRIBUTES 4.17), or a \
                 modify that changes the privilege; see hwbp caps",
            ),
            Cause::NoBreakpointSupport => f.write_str(
                "this kernel has no breakpoint PMU (/sys/bus/event_source/devices/breakpoint): \
                 no CONFIG_HAVE_HW_BREAKPOINT, or a VM without debug registers; use a software \
                 tool (valgrind, gdb software watchpoints)",
            ),
            Cause::NotSupported => {
                f.write_str("the kernel or CPU does not support this; see hwbp caps")
            }
            Cause::TargetGone => f.write_str("the thread or process exited"),
            Cause::Other => f.write_str("unexpected error; see perf_event_open(2)"),
        }
    }
}

/// Where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct At {
    /// The thread or CPU.
    pub scope: Scope,
    /// Which planned piece (0-based).
    pub piece: u32,
}

/// A failed hwbp operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The spec breaks a rule or cannot be planned; nothing was opened.
    Plan(PlanError),
    /// A system call failed.
    Sys {
        /// What hwbp was doing.
        op: Op,
        /// The thread or CPU and piece, when the call concerned one event.
        at: Option<At>,
        /// The errno.
        errno: Errno,
        /// Why, and the fix.
        cause: Cause,
    },
    /// The target process or thread does not exist (or is not visible).
    NoSuchTask {
        /// The id that was looked up.
        pid: Pid,
    },
    /// The target CPU does not exist or is offline.
    NoSuchCpu {
        /// The CPU.
        cpu: Cpu,
    },
    /// A modify asked for a different privilege; `exclude_kernel` cannot change on a live event.
    PrivilegeChange,
    /// A process could not be frozen for arming: one thread did not stop within ~1 s.
    FreezeFailed {
        /// The process.
        pid: Pid,
        /// A thread that was still running.
        tid: Tid,
        /// Its state letter (`D` = uninterruptible sleep).
        state: char,
    },
}

impl Error {
    /// Builds the error for a failed call, deriving the cause from the errno.
    pub fn sys(op: Op, at: Option<At>, errno: Errno, ctx: &ErrorCtx) -> Error {
        let cpu_wide = matches!(at.map(|a| a.scope), Some(Scope::Cpu(_)));
        let cause = match errno {
            Errno::ENOSPC => Cause::NoSlot {
                pieces: ctx.pieces,
                holders: ctx.holders,
            },
            // The event opened: the mapping's only EPERM is the locked-memory limit.
            Errno::EPERM if op == Op::Mmap => Cause::LockedMemory(crate::caps::LockLimits::read()),
            Errno::EACCES | Errno::EPERM => Cause::Permission {
                paranoid: crate::caps::read_paranoid(),
                kernel: ctx.attr.is_some_and(|a| !a.exclude_kernel),
                cpu_wide,
            },
            Errno::EINVAL => match ctx.attr.map(|a| rule_for(&a, !cpu_wide)) {
                Some(Some(rule)) => Cause::Rule(rule),
                _ => Cause::KernelRefused,
            },
            Errno::ENOENT | Errno::ENODEV => Cause::NoBreakpointSupport,
            Errno::EOPNOTSUPP => Cause::NotSupported,
            Errno::ESRCH => Cause::TargetGone,
            _ => Cause::Other,
        };
        Error::Sys {
            op,
            at,
            errno,
            cause,
        }
    }

    /// The errno, for a failed system call.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// What the caller knew when the call failed, for [`Error::sys`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorCtx {
    /// The breakpoint that was being opened or modified.
    pub attr: Option<BpAttr>,
    /// Pieces the watch needs per thread/CPU.
    pub pieces: u32,
    /// What probably holds the slots (filled in for `ENOSPC`).
    pub holders: Holders,
}

/// The rule hwbp-core's x86 validator names for an attr the kernel refused with `EINVAL`.
pub fn rule_for(attr: &BpAttr, task_bound: bool) -> Option<RuleError> {
    if attr.type_is_empty_or_invalid() {
        return Some(RuleError::InvalidType {
            bp_type: attr.bp_type,
        });
    }
    let ctx = ParseCtx {
        task_bound,
        cap_sys_admin: crate::caps::has_cap(crate::caps::CAP_SYS_ADMIN),
    };
    arch::parse(&NativeArch::new(), attr, ctx).err()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Plan(e) => e.fmt(f),
            Error::Sys {
                op,
                at,
                errno,
                cause,
            } => {
                f.write_str(op.as_str())?;
                if let Some(at) = at {
                    write!(f, " (piece {} on {})", at.piece, at.scope)?;
                }
                write!(f, " failed with {errno}: {cause}")
            }
            Error::NoSuchTask { pid } => write!(
                f,
                "no process or thread {pid} (it exited, or /proc hides it); check the pid"
            ),
            Error::NoSuchCpu { cpu } => write!(
                f,
                "CPU {cpu} does not exist or is offline; see /sys/devices/system/cpu/online"
            ),
            Error::FreezeFailed { pid, tid, state } => write!(
                f,
                "could not stop process {pid} to arm its threads: thread {tid} stayed in state \
                 {state} for 1 s (D = uninterruptible I/O; a tracer may hold the SIGSTOP); \
                 retry, arm with ProcessArming::Seize (the default: ptrace, no job-control \
                 stop), or arm live with ProcessArming::Live (threads created while arming may \
                 count twice or not at all)"
            ),
            Error::PrivilegeChange => f.write_str(
                "a live watch cannot switch between user-only and kernel accesses \
                 (MODIFY_ATTRIBUTES may change address, length and type only); drop it and \
                 arm a new one",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        Error::Plan(e)
    }
}
