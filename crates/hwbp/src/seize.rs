//! Holding another process still while its threads are armed, with ptrace instead of SIGSTOP:
//! `PTRACE_SEIZE` every thread (with `PTRACE_O_TRACECLONE`), `PTRACE_INTERRUPT` it, wait until
//! each is in a ptrace stop, arm, then `PTRACE_DETACH` all (the [`Seized`] guard's `Drop`).
//!
//! Why it is exact: once every listed thread is in a ptrace stop, no thread can be created; a
//! thread a seized thread created before it stopped is attached automatically (TRACECLONE)
//! and starts stopped, and every such thread is in `/proc/PID/task` by the time its creator
//! reports its stop. The loop "list, seize + interrupt the unknown ones, wait until all
//! stopped" ends when a listing taken with every known thread stopped shows no unknown one:
//! then the listing is the whole process and nothing runs, so each thread is armed exactly
//! once and nothing inherits meanwhile.
//!
//! Why job control does not see it: interrupt stops are ptrace stops, not group stops. The
//! parent gets no `SIGCHLD`, `waitpid(WUNTRACED | WCONTINUED)` reports nothing, the threads
//! show state `t` (never `T`) while held. A signal that arrives meanwhile is reported to us as
//! a signal-delivery-stop and handed back at `PTRACE_DETACH`; a group stop in effect when we
//! seize stays in effect after detach (`__ptrace_unlink()` re-instates it).
//!
//! Not for: deciding whether to freeze (that is [`crate::watch`]) or stop-mode tracing
//! ([`crate::ptrace`]). The ptrace tracer is the calling thread: the guard must be dropped on
//! the thread that created it (it is `!Send`).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::error::Error;
use crate::sys::ptrace as pt;
use crate::sys::{Errno, Pid, Tid};
use crate::target;

/// Why a process target was armed while it ran (with the races of
/// [`crate::watch::ProcessArming::Live`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveReason {
    /// [`crate::watch::ProcessArming::Live`] was asked for.
    Requested,
    /// The target is the calling process: it cannot hold itself still.
    CallingProcess,
    /// A thread is already traced by another tracer (a debugger, strace, a stop-mode hwbp,
    /// or the calling thread itself, e.g. a launcher holding a child at its entry point): a
    /// thread has one tracer at a time, so it could not be seized.
    Traced {
        /// The thread.
        tid: Tid,
        /// Its tracer (thread id, `TracerPid` in `/proc/PID/task/TID/status`).
        tracer: Tid,
    },
    /// `PTRACE_SEIZE` was refused: Yama `ptrace_scope` >= 1 and the target is not a
    /// descendant, another user's process without CAP_SYS_PTRACE, or a non-dumpable process.
    NotPermitted {
        /// The thread.
        tid: Tid,
        /// The errno of `PTRACE_SEIZE`.
        errno: Errno,
    },
}

/// How the threads of a process target were actually armed ([`crate::Watch::arming`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arming {
    /// Not a process target: nothing to hold still.
    NotProcess,
    /// Every thread was held in a ptrace stop while armed: each covered exactly once, with
    /// no job-control stop ([`crate::watch::ProcessArming::Seize`]).
    Seized,
    /// The process was stopped with SIGSTOP while armed and resumed with SIGCONT
    /// ([`crate::watch::ProcessArming::Freeze`]).
    Stopped,
    /// Armed while it ran, with the races of [`crate::watch::ProcessArming::Live`].
    Live(LiveReason),
}

impl Arming {
    /// Whether the threads were armed while running.
    pub fn is_live(&self) -> bool {
        matches!(self, Arming::Live(_))
    }
}

/// One thread we trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Seized (and interrupted, or auto-attached); its stop has not been reported yet.
    Running,
    /// In a ptrace stop; `sig` is handed back at detach (a signal that arrived meanwhile).
    Stopped { sig: i32 },
}

/// What [`Seized::freeze`] achieved.
#[derive(Debug)]
pub enum Outcome {
    /// Every thread of the process is in a ptrace stop until the guard is dropped.
    Held(Seized),
    /// Could not hold it (nothing is left attached); arm live for this reason.
    Live(LiveReason),
}

/// Every thread of a process held in a ptrace stop; dropping it detaches them all.
#[derive(Debug)]
pub struct Seized {
    pid: Pid,
    threads: BTreeMap<Tid, State>,
    /// The tracer is this thread: not `Send`.
    _not_send: PhantomData<*const ()>,
}

impl Seized {
    /// Seizes and stops every thread of `pid` (see the module docs). Falls back (returns
    /// [`Outcome::Live`], with everything detached) when a thread is traced by someone else or
    /// ptrace is not permitted. A thread in an uninterruptible sleep delays this until it
    /// leaves it (a ptrace stop takes effect on its way back to user space; it cannot be
    /// detached before).
    pub fn freeze(pid: Pid) -> Result<Outcome, Error> {
        let me = Tid::current();
        let mut s = Seized {
            pid,
            threads: BTreeMap::new(),
            _not_send: PhantomData,
        };
        let mut first_round = true;
        loop {
            // Every known thread is stopped here (after the first round): an unknown thread
            // in this listing was created before its creator stopped.
            let listed = target::list_threads(pid)?;
            let mut grew = false;
            for tid in listed {
                if s.threads.contains_key(&tid) {
                    continue;
                }
                match pt::seize(tid, pt::OPT_TRACECLONE) {
                    Ok(()) => {
                        s.threads.insert(tid, State::Running);
                        grew = true;
                        // ESRCH: it is exiting; its exit is reported to us by wait.
                        let _ = pt::interrupt(tid);
                    }
                    // Gone between listing and seizing.
                    Err(e) if e.0 == libc::ESRCH => {}
                    Err(e) => {
                        if matches!(target::thread_state(pid, tid), None | Some('Z' | 'X')) {
                            // A zombie cannot be seized (EPERM); nothing of it to arm.
                            continue;
                        }
                        match target::tracer_of_thread(pid, tid) {
                            // Created by a thread we hold: attached to us by TRACECLONE, it
                            // reports its first stop to us. In the first listing it can only
                            // be a thread this thread traced before (a launcher): not ours to
                            // stop or detach.
                            Some(t) if t == me && !first_round => {
                                s.threads.insert(tid, State::Running);
                                grew = true;
                            }
                            Some(tracer) => {
                                return Ok(Outcome::Live(LiveReason::Traced { tid, tracer }))
                            }
                            None => {
                                let errno = e;
                                return Ok(Outcome::Live(LiveReason::NotPermitted { tid, errno }));
                            }
                        }
                    }
                }
            }
            s.wait_all_stopped();
            first_round = false;
            if !grew {
                return Ok(Outcome::Held(s));
            }
        }
    }

    /// Waits until every traced thread is in a ptrace stop or gone, learning the threads
    /// created meanwhile from their creators' clone event-stops.
    fn wait_all_stopped(&mut self) {
        let mut pause_us = 0u64;
        loop {
            let running: Vec<Tid> = self
                .threads
                .iter()
                .filter(|(_, s)| **s == State::Running)
                .map(|(t, _)| *t)
                .collect();
            if running.is_empty() {
                return;
            }
            let mut progress = false;
            for tid in running {
                match pt::wait(tid.get(), true) {
                    Ok(Some(ws)) => {
                        progress = true;
                        self.on_status(tid, ws);
                    }
                    Ok(None) => {
                        // A zombie leader whose other threads live is never reported; it
                        // cannot run or clone any more.
                        if matches!(target::thread_state(self.pid, tid), None | Some('Z' | 'X')) {
                            self.threads.remove(&tid);
                            progress = true;
                        }
                    }
                    Err(e) if e.0 == libc::EINTR => {}
                    // ECHILD: no longer our tracee (it is gone).
                    Err(_) => {
                        self.threads.remove(&tid);
                        progress = true;
                    }
                }
            }
            if progress {
                pause_us = 0;
            } else {
                // Stops take microseconds; a thread in uninterruptible sleep takes longer.
                pause_us = (pause_us * 2).clamp(10, 1000);
                std::thread::sleep(std::time::Duration::from_micros(pause_us));
            }
        }
    }

    fn on_status(&mut self, tid: Tid, ws: pt::WaitStatus) {
        match ws.kind() {
            pt::WaitKind::Gone => {
                self.threads.remove(&tid);
            }
            pt::WaitKind::Stopped { event, sig } => {
                if event == pt::EVENT_CLONE {
                    // The new thread is attached to us and starts in a PTRACE_EVENT_STOP.
                    if let Some(child) = pt::event_msg(tid)
                        .ok()
                        .and_then(|m| i32::try_from(m).ok())
                        .and_then(Tid::new)
                    {
                        self.threads.entry(child).or_insert(State::Running);
                    }
                }
                // A signal-delivery-stop (event 0) holds a signal to hand back at detach;
                // event stops (interrupt, group stop, clone) hold none.
                let sig = if event == 0 { sig } else { 0 };
                self.threads.insert(tid, State::Stopped { sig });
            }
            pt::WaitKind::Other => {}
        }
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        // After an early return some threads may still run: stop them first (PTRACE_DETACH
        // needs a ptrace stop).
        for (tid, s) in &self.threads {
            if *s == State::Running {
                let _ = pt::interrupt(*tid);
            }
        }
        self.wait_all_stopped();
        for (tid, s) in &self.threads {
            if let State::Stopped { sig } = s {
                // ESRCH: killed meanwhile (SIGKILL needs no ptrace stop).
                let _ = pt::detach(*tid, *sig);
            }
        }
    }
}
