//! The stop-mode tracer: attach or spawn, arm every thread, the wait loop, all-stop,
//! break, and the orderly release used by shutdown signals, panics and `Drop`.
//!
//! Release order (every path: shutdown, break, detach, Drop): (1) disable every breakpoint
//! event, read its count, close its fd — no new SIGTRAP can be generated; (2) stop every
//! thread; (3) for each thread, deliver and suppress any perf SIGTRAP still queued
//! (`PTRACE_PEEKSIGINFO`; unblocked for that delivery where the thread blocks SIGTRAP); (4)
//! `PTRACE_DETACH` each thread, re-injecting a foreign signal it was stopped with.
//!
//! Hits a thread makes while it blocks SIGTRAP never become stops; they are counted exactly
//! ([`Tracer::hits_not_stopped`], module `unstopped`).

mod release;
mod unstopped;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;

use hwbp_core::arch::x86_64::X86_64;
use hwbp_core::arch::{Arch, Chunk};
use hwbp_core::spec::{Privilege, Spec};

use super::{
    judge, ExecVerdict, Hit, Judged, Regs, RunEnd, StackCopy, StopHandler, StopOptions,
    ThreadEvent, TraceError, Verdict, WatchSpec,
};
use crate::sys::ptrace as sys;
use crate::sys::ptrace::{Errno, Tid, WaitStatus};

/// Debug registers per x86 thread.
const SLOTS: u32 = 4;
/// `sig_data` tag: "hwbp" in the top 32 bits, then watch index (bits 8..16) and piece (0..8);
/// shared with the in-process agent.
const TAG: u64 = crate::sys::agent_layout::TAG;
const EVENT_STOP: i32 = 128;

struct Armed {
    spec: WatchSpec,
    chunks: Vec<Chunk>,
    shadow: Vec<u8>,
    scratch: Vec<u8>,
}

/// One armed piece on one thread: its event, its `sig_data` tag, and how many of the hits the
/// event counted are accounted for (stopped, or counted in [`Tracer::hits_not_stopped`]).
struct Piece {
    fd: OwnedFd,
    tag: u64,
    accounted: u64,
}

#[derive(Default)]
struct Thread {
    fds: Vec<Piece>,
    running: bool,
    /// Auto-attached by a clone event; not armed until its first stop.
    new: bool,
    /// Stopped by our PTRACE_INTERRUPT (all-stop): resume with 0 afterwards.
    interrupted: bool,
    /// The signal to inject when this thread is resumed or detached.
    resume_sig: i32,
}

/// A traced process in stop mode. Dropping it releases the target (see the module docs).
///
/// Every ptrace request and wait must come from the thread that created it (hence not
/// `Send`). No other thread of the same process may `waitpid` for the target (or for any
/// child without `__WNOTHREAD`): Linux lets any thread of the tracer's process take the
/// tracer thread's ptrace stops.
pub struct Tracer {
    pid: i32,
    threads: HashMap<Tid, Thread>,
    watches: Vec<Armed>,
    opts: StopOptions,
    deferred: VecDeque<WaitStatus>,
    shutdown_signals: bool,
    shutdown_requested: Option<i32>,
    released: bool,
    hits: u64,
    /// Hits the events counted that never became a stop (see [`Tracer::hits_not_stopped`]).
    not_stopped: u64,
    /// With shutdown signals blocked: a status may be waiting whose SIGCHLD was already
    /// taken by `sigwaitinfo` (SIGCHLD does not queue: one may stand for several statuses),
    /// so `waitpid(WNOHANG)` must be tried before sleeping. False only after a status that
    /// rules that out ([`Tracer::sole_thread_stop`]) or an empty `waitpid(WNOHANG)`.
    maybe_pending: bool,
    /// Threads whose death was reaped. A clone event can be reported after the new thread
    /// already lived and died (the parent was preempted between creating it and its event
    /// stop); such a thread must not be recorded as running. Reused ids leave the set.
    reaped: HashSet<Tid>,
    /// The stack copy of the hit being reported ([`StopOptions::stack`]).
    stack: Vec<u8>,
    /// ptrace requests only work from the thread that attached: not `Send`, not `Sync`.
    _same_thread: std::marker::PhantomData<*const ()>,
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGCHLD in the calling thread, so that a [`Tracer`]
/// created afterwards on this thread turns them into an orderly [`RunEnd::Shutdown`]
/// (its wait loop takes them with `sigwaitinfo`, race-free, no handler needed).
///
/// Design for a CLI: call this first thing in `main` (before any thread exists, so every
/// thread inherits the mask), then `Tracer::run`. The signals are process-directed, so no
/// other thread may leave them unblocked.
pub fn install_shutdown_signals() -> Result<(), Errno> {
    let mut set = sys::SHUTDOWN_SIGNALS.to_vec();
    set.push(libc::SIGCHLD);
    sys::block_signals(&set).map(drop)
}

fn shutdown_signals_blocked() -> bool {
    sys::SHUTDOWN_SIGNALS
        .iter()
        .chain(&[libc::SIGCHLD])
        .all(|&s| sys::signal_blocked(s))
}

fn tracer_pid_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a thread is gone or past `exit` (state `Z` zombie, `X` dead) in `/proc`.
fn thread_exiting(pid: i32, tid: Tid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

pub(super) fn task_ids(pid: i32) -> Vec<Tid> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut v: Vec<Tid> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Tid))
        .collect();
    v.sort();
    v
}

fn ptrace_err(op: &'static str, tid: Tid) -> impl Fn(Errno) -> TraceError {
    move |errno| TraceError::Ptrace { op, tid, errno }
}

fn stopped(st: i32) -> Option<(i32, i32)> {
    libc::WIFSTOPPED(st).then(|| (libc::WSTOPSIG(st), st >> 16))
}

impl Tracer {
    fn empty(pid: i32, opts: StopOptions) -> Tracer {
        Tracer {
            pid,
            threads: HashMap::new(),
            watches: Vec::new(),
            opts,
            deferred: VecDeque::new(),
            shutdown_signals: shutdown_signals_blocked(),
            shutdown_requested: None,
            released: false,
            hits: 0,
            not_stopped: 0,
            maybe_pending: true,
            reaped: HashSet::new(),
            stack: Vec::new(),
            _same_thread: std::marker::PhantomData,
        }
    }

    /// Starts `path` (already resolved, see [`resolve_program`]) with `args` and the current
    /// environment plus `env` (added or overriding), under stop mode; arms `watches` at its
    /// exec, before its first instruction runs.
    pub fn spawn(
        path: &str,
        args: &[String],
        env: &[(String, String)],
        watches: Vec<WatchSpec>,
        opts: StopOptions,
    ) -> Result<Tracer, TraceError> {
        let plan = plan_all(&watches)?;
        let mut full: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .collect();
        full.extend(env.iter().cloned());
        let prepared = sys::Prepared::new(path, args, &full).ok_or(TraceError::Spawn {
            errno: Errno(libc::EINVAL),
        })?;
        let tid = sys::fork_stopped(&prepared).map_err(|errno| TraceError::Spawn { errno })?;
        let mut options = sys::TRACE_OPTIONS;
        if opts.kill_on_tracer_death {
            options |= sys::OPT_EXITKILL;
        }
        let mut t = Tracer::empty(tid.0, opts);
        if let Err(errno) = sys::seize(tid, options) {
            let _ = sys::kill(tid.0, libc::SIGKILL);
            let _ = sys::wait(tid.0, false);
            return Err(TraceError::Ptrace {
                op: "PTRACE_SEIZE",
                tid,
                errno,
            });
        }
        t.threads.insert(tid, Thread::default());
        sys::kill(tid.0, libc::SIGCONT).map_err(ptrace_err("kill(SIGCONT)", tid))?;
        // Let it run up to its exec; resume every other stop unchanged.
        loop {
            let st = sys::wait(tid.0, false)
                .map_err(|errno| TraceError::Wait { errno })?
                .expect("blocking wait returns a status");
            match stopped(st.status) {
                None => {
                    t.released = true;
                    return Err(TraceError::Spawn {
                        errno: Errno(libc::ENOENT),
                    });
                }
                Some((_, 4)) => break, // PTRACE_EVENT_EXEC
                Some((sig, 0)) if sig != libc::SIGSTOP && sig != libc::SIGCONT => {
                    sys::cont(tid, sig).map_err(ptrace_err("PTRACE_CONT", tid))?
                }
                Some(_) => sys::cont(tid, 0).map_err(ptrace_err("PTRACE_CONT", tid))?,
            }
        }
        t.set_watches(watches, plan)?;
        t.arm(tid)?;
        t.resume(tid, 0)?;
        Ok(t)
    }

    /// Attaches to every thread of process `pid` (`PTRACE_SEIZE` of each `/proc/PID/task`
    /// entry, re-listed until stable), stops them, arms `watches` and resumes them.
    pub fn attach(
        pid: i32,
        watches: Vec<WatchSpec>,
        opts: StopOptions,
    ) -> Result<Tracer, TraceError> {
        let plan = plan_all(&watches)?;
        let mut t = Tracer::empty(pid, opts);
        if task_ids(pid).is_empty() {
            return Err(TraceError::NoSuchProcess { pid });
        }
        // TracerPid names the tracing *thread*.
        let me = sys::gettid().0;
        loop {
            let mut added = false;
            for tid in task_ids(pid) {
                if t.threads.contains_key(&tid) {
                    continue;
                }
                match sys::seize(tid, sys::TRACE_OPTIONS) {
                    Ok(()) => {}
                    Err(Errno(libc::ESRCH)) => continue,
                    Err(errno) => match tracer_pid_of(tid.0) {
                        // Auto-attached through a clone event of a thread we hold.
                        Some(tp) if tp == me => {
                            t.threads.insert(
                                tid,
                                Thread {
                                    running: true,
                                    new: true,
                                    ..Thread::default()
                                },
                            );
                            added = true;
                            continue;
                        }
                        // Exiting (PTRACE_SEIZE refuses a thread past exit) or gone.
                        _ if thread_exiting(pid, tid) => continue,
                        Some(tp) if tp != 0 => {
                            t.released = t.threads.is_empty();
                            return Err(TraceError::AlreadyTraced {
                                pid,
                                tracer_pid: tp,
                            });
                        }
                        _ => {
                            return Err(TraceError::Ptrace {
                                op: "PTRACE_SEIZE",
                                tid,
                                errno,
                            })
                        }
                    },
                }
                t.threads.insert(
                    tid,
                    Thread {
                        running: true,
                        ..Thread::default()
                    },
                );
                added = true;
            }
            if !added {
                break;
            }
        }
        t.stop_all(None)?;
        // Statuses collected while stopping (clone events, signals) are replayed by `run`;
        // threads still marked `new` get armed when their first stop is processed.
        t.set_watches(watches, plan)?;
        let tids: Vec<Tid> = t.threads.keys().copied().collect();
        for tid in &tids {
            if !t.threads[tid].new {
                t.arm(*tid)?;
            }
        }
        t.resume_interrupted()?;
        Ok(t)
    }

    /// The traced process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Hits seen so far, including those the condition or `changed` filtered out (for a
    /// summary: reported vs seen).
    pub fn hits_seen(&self) -> u64 {
        self.hits
    }

    /// The traced threads.
    pub fn threads(&self) -> Vec<Tid> {
        let mut v: Vec<Tid> = self.threads.keys().copied().collect();
        v.sort();
        v
    }

    fn set_watches(
        &mut self,
        watches: Vec<WatchSpec>,
        plan: Vec<Vec<Chunk>>,
    ) -> Result<(), TraceError> {
        self.watches = watches
            .into_iter()
            .zip(plan)
            .map(|(spec, chunks)| {
                let n = spec.region.len_bytes as usize;
                Armed {
                    spec,
                    chunks,
                    shadow: vec![0; n],
                    scratch: vec![0; n],
                }
            })
            .collect();
        let leader = Tid(self.pid);
        for w in &mut self.watches {
            let _ = sys::read_memory(leader, w.spec.region.addr, &mut w.shadow);
        }
        Ok(())
    }

    fn arm(&mut self, tid: Tid) -> Result<(), TraceError> {
        let mut fds = Vec::new();
        for (wi, w) in self.watches.iter().enumerate() {
            for (pi, c) in w.chunks.iter().enumerate() {
                let tag = TAG | ((wi as u64) << 8) | pi as u64;
                match sys::open_sigtrap_breakpoint(
                    tid,
                    c.attr.addr,
                    c.attr.len_bytes,
                    c.attr.bp_type,
                    tag,
                ) {
                    Ok(fd) => fds.push(Piece {
                        fd,
                        tag,
                        accounted: 0,
                    }),
                    // The thread exited meanwhile: nothing to watch; its death is reaped later.
                    Err(Errno(libc::ESRCH)) => return Ok(()),
                    Err(errno) => {
                        return Err(TraceError::Arm {
                            tid,
                            addr: c.attr.addr,
                            errno,
                        })
                    }
                }
            }
        }
        if let Some(t) = self.threads.get_mut(&tid) {
            t.fds = fds;
            t.new = false;
        }
        Ok(())
    }

    /// A clone event named `new`: record it as running until its first stop, unless it
    /// already lived and died.
    fn note_clone(&mut self, new: Tid) {
        if self.reaped.remove(&new) {
            return;
        }
        self.threads.entry(new).or_insert(Thread {
            running: true,
            new: true,
            ..Thread::default()
        });
    }

    fn resume(&mut self, tid: Tid, sig: i32) -> Result<(), TraceError> {
        match sys::cont(tid, sig) {
            Ok(()) | Err(Errno(libc::ESRCH)) => {}
            Err(errno) => {
                return Err(TraceError::Ptrace {
                    op: "PTRACE_CONT",
                    tid,
                    errno,
                })
            }
        }
        if let Some(t) = self.threads.get_mut(&tid) {
            t.running = true;
            t.interrupted = false;
            t.resume_sig = 0;
        }
        Ok(())
    }

    /// Waits for the next status: deferred ones first; with shutdown signals blocked, a
    /// shutdown signal ends the wait as `Err(signal)`.
    fn next_status(&mut self) -> Result<Result<WaitStatus, i32>, TraceError> {
        if let Some(st) = self.deferred.pop_front() {
            return Ok(Ok(st));
        }
        if let Some(sig) = self.shutdown_requested {
            return Ok(Err(sig));
        }
        self.raw_wait(true)
    }

    fn raw_wait(&mut self, shutdown_ends: bool) -> Result<Result<WaitStatus, i32>, TraceError> {
        let wall = |nohang| sys::wait(-1, nohang).map_err(|errno| TraceError::Wait { errno });
        if !self.shutdown_signals {
            return Ok(Ok(wall(false)?.expect("blocking wait returns a status")));
        }
        loop {
            if self.maybe_pending {
                if let Some(st) = wall(true)? {
                    self.maybe_pending = !self.sole_thread_stop(&st);
                    return Ok(Ok(st));
                }
                self.maybe_pending = false;
            }
            // No allocation on the hot path (one `sigwaitinfo` per hit).
            let [a, b, c] = sys::SHUTDOWN_SIGNALS;
            match sys::wait_signal(&[a, b, c, libc::SIGCHLD]) {
                Ok(libc::SIGCHLD) | Err(Errno(libc::EINTR)) => self.maybe_pending = true,
                Ok(sig) => {
                    self.shutdown_requested = Some(sig);
                    if shutdown_ends {
                        return Ok(Err(sig));
                    }
                }
                Err(errno) => return Err(TraceError::Wait { errno }),
            }
        }
    }

    /// Whether `st` is a signal stop (no ptrace event) of the only traced thread: then no
    /// other status can be pending, so the next wait may sleep in `sigwaitinfo` without a
    /// `waitpid(WNOHANG)` first (one system call less per hit for single-threaded targets).
    /// A clone event is excluded: the new thread's first stop may already be pending, its
    /// SIGCHLD merged into the one taken.
    fn sole_thread_stop(&self, st: &WaitStatus) -> bool {
        self.threads.len() == 1
            && self.deferred.is_empty()
            && self.threads.contains_key(&st.tid)
            && matches!(stopped(st.status), Some((_, 0)))
    }

    /// Runs until the target exits, a handler verdict ends the session, or a shutdown signal
    /// arrives.
    pub fn run(&mut self, handler: &mut dyn StopHandler) -> Result<RunEnd, TraceError> {
        let end = self.run_inner(handler);
        if end.is_err() {
            let _ = self.release(false);
        }
        end
    }

    fn run_inner(&mut self, handler: &mut dyn StopHandler) -> Result<RunEnd, TraceError> {
        loop {
            let st = match self.next_status()? {
                Ok(st) => st,
                Err(signal) => {
                    self.release(false)?;
                    return Ok(RunEnd::Shutdown { signal });
                }
            };
            let tid = st.tid;
            let Some((sig, event)) = stopped(st.status) else {
                // Exited or killed.
                let known = match self.threads.remove(&tid) {
                    Some(mut th) => {
                        self.not_stopped += unstopped::settle(&mut th);
                        true
                    }
                    None => false,
                };
                self.reaped.insert(tid);
                if tid.0 == self.pid {
                    self.released = true;
                    self.threads.clear();
                    return Ok(if libc::WIFEXITED(st.status) {
                        RunEnd::Exited(libc::WEXITSTATUS(st.status))
                    } else {
                        RunEnd::Killed(libc::WTERMSIG(st.status))
                    });
                }
                if known {
                    handler.thread(ThreadEvent::Exited(tid));
                }
                continue;
            };
            let Some(th) = self.threads.get_mut(&tid) else {
                // A thread we have not met yet: auto-attached by a clone whose event is
                // still to come. Record it; its stop is its initial stop.
                self.reaped.remove(&tid);
                self.threads.insert(
                    tid,
                    Thread {
                        new: true,
                        ..Thread::default()
                    },
                );
                self.deferred.push_back(st);
                continue;
            };
            th.running = false;
            match event {
                0 if sig == libc::SIGTRAP => {
                    let info = sys::siginfo(tid).map_err(ptrace_err("PTRACE_GETSIGINFO", tid))?;
                    if info.code == sys::TRAP_PERF
                        && info.perf_data >> 32 == TAG >> 32
                        && info.perf_flags & sys::TRAP_PERF_FLAG_ASYNC != 0
                    {
                        // Generated while the thread blocked SIGTRAP, delivered now that it
                        // unblocked it: not at any access, so not a hit to report.
                        self.settle_late(tid);
                        self.resume(tid, 0)?;
                    } else if info.code == sys::TRAP_PERF && info.perf_data >> 32 == TAG >> 32 {
                        if let Some(th) = self.threads.get_mut(&tid) {
                            unstopped::note_stopped(th, info.perf_data);
                        }
                        let w = ((info.perf_data >> 8) & 0xff) as usize;
                        let p = (info.perf_data & 0xff) as usize;
                        match self.on_hit(tid, w, p, handler)? {
                            Verdict::Continue => self.resume(tid, 0)?,
                            Verdict::Break => return self.brk(),
                            Verdict::Detach => {
                                self.release(false)?;
                                return Ok(RunEnd::Detached);
                            }
                        }
                    } else {
                        self.resume(tid, sig)?; // not ours: re-inject unchanged
                    }
                }
                0 => self.resume(tid, sig)?,
                libc::PTRACE_EVENT_CLONE => {
                    let new = Tid(sys::event_msg(tid)
                        .map_err(ptrace_err("PTRACE_GETEVENTMSG", tid))?
                        as i32);
                    self.note_clone(new);
                    self.resume(tid, 0)?;
                }
                libc::PTRACE_EVENT_EXEC => {
                    // remove_on_exec already removed the events; their counts stay readable.
                    for th in self.threads.values_mut() {
                        self.not_stopped += unstopped::settle(th);
                        th.fds.clear();
                    }
                    self.threads.retain(|t, _| *t == tid);
                    match handler.exec(tid) {
                        ExecVerdict::Rearm(specs) => {
                            let plan = plan_all(&specs)?;
                            self.set_watches(specs, plan)?;
                            self.arm(tid)?;
                        }
                        ExecVerdict::KeepTracing => self.watches.clear(),
                        ExecVerdict::Detach => {
                            self.watches.clear();
                            self.release(false)?;
                            return Ok(RunEnd::Detached);
                        }
                    }
                    self.resume(tid, 0)?;
                }
                EVENT_STOP => {
                    let th = &self.threads[&tid];
                    if th.new {
                        self.arm(tid)?;
                        handler.thread(ThreadEvent::Started(tid));
                    }
                    if sig == libc::SIGTRAP {
                        // An interrupt stop (a stray one from all-stop) or a new thread's
                        // first stop: resume.
                        self.resume(tid, 0)?;
                    } else {
                        // A group stop (SIGSTOP, SIGTSTP, ...): stay stopped for job control
                        // until SIGCONT, still traced (`PTRACE_LISTEN`).
                        match sys::listen(tid) {
                            Ok(()) | Err(Errno(libc::ESRCH)) => {}
                            Err(errno) => {
                                return Err(TraceError::Ptrace {
                                    op: "PTRACE_LISTEN",
                                    tid,
                                    errno,
                                })
                            }
                        }
                        if let Some(th) = self.threads.get_mut(&tid) {
                            th.running = true;
                        }
                    }
                }
                sys::EVENT_EXIT => {
                    // The thread's last stop with its memory and its pending signals: hits it
                    // made with SIGTRAP blocked are counted before another thread (a
                    // `pthread_join`) can go on.
                    self.settle_late(tid);
                    self.resume(tid, 0)?;
                }
                _ => self.resume(tid, 0)?,
            }
        }
    }

    fn on_hit(
        &mut self,
        tid: Tid,
        wi: usize,
        piece: usize,
        handler: &mut dyn StopHandler,
    ) -> Result<Verdict, TraceError> {
        self.hits += 1;
        let Some(w) = self.watches.get_mut(wi) else {
            return Ok(Verdict::Continue); // a stale tag from before a re-arm
        };
        let _ = sys::read_memory(tid, w.spec.region.addr, &mut w.scratch);
        let mut verdict = Verdict::Continue;
        if let Some(Judged {
            old_value,
            new_value,
            condition_error,
        }) = judge(&w.spec, &w.shadow, &w.scratch)
        {
            if self.opts.all_stop {
                self.stop_all(Some(tid))?;
            }
            let regs = if self.opts.regs {
                sys::regs(tid).ok().map(|r| Regs {
                    values: regs_array(&r),
                })
            } else {
                None
            };
            let ip = match regs {
                Some(r) => Some(r.ip()),
                None if self.opts.ip => sys::peek_ip(tid).ok(),
                None => None,
            };
            // The thread is stopped: its stack is what it was at the access.
            let sp_bp_ip = if self.opts.stack == 0 {
                None
            } else if let Some(r) = regs {
                Some((r.values[19], r.values[4], r.ip()))
            } else {
                sys::regs(tid).ok().map(|r| (r.rsp, r.rbp, r.rip))
            };
            if let Some((sp, _, _)) = sp_bp_ip {
                self.stack.resize(self.opts.stack, 0);
                let n = sys::read_memory_prefix(tid, sp, &mut self.stack);
                self.stack.truncate(n);
            }
            let stack = sp_bp_ip.map(|(sp, bp, ip)| StackCopy {
                ip,
                sp,
                bp,
                bytes: &self.stack,
            });
            let w = &self.watches[wi];
            let hit = Hit {
                tid,
                watch: wi,
                piece,
                old: &w.shadow,
                new: &w.scratch,
                old_value,
                new_value,
                condition_error,
                regs,
                ip,
                seq: self.hits,
                new_code: false,
                time_ns: crate::sys::clock::monotonic_ns(),
                comm: None,
                stack,
            };
            verdict = handler.hit(&hit);
            if self.opts.all_stop && verdict == Verdict::Continue {
                self.resume_interrupted()?;
            }
        }
        let w = &mut self.watches[wi];
        w.shadow.copy_from_slice(&w.scratch);
        Ok(verdict)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.release(false);
    }
}

/// `PATH` lookup as a shell does it: a name with a `/` is taken as is; else the first
/// executable `DIR/name` of `$PATH`.
pub fn resolve_program(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = std::path::PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Plans every watch with hwbp-core's x86 planner and checks the per-thread register budget.
pub(super) fn plan_all(watches: &[WatchSpec]) -> Result<Vec<Vec<Chunk>>, TraceError> {
    let arch = X86_64::new();
    let mut plans = Vec::with_capacity(watches.len());
    let mut needed = 0u32;
    for w in watches {
        let spec = Spec {
            region: w.spec_region(),
            access: w.access,
            privilege: Privilege::User,
        };
        let chunks = arch.plan(&spec).map_err(TraceError::Plan)?;
        needed = needed.saturating_add(chunks.len() as u32);
        plans.push(chunks);
    }
    if needed > SLOTS || watches.len() > 255 {
        return Err(TraceError::TooManyPieces {
            needed,
            capacity: SLOTS,
        });
    }
    Ok(plans)
}

impl WatchSpec {
    fn spec_region(&self) -> hwbp_core::Region {
        self.region
    }
}

fn regs_array(r: &libc::user_regs_struct) -> [u64; 27] {
    [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}
