//! All-stop and the orderly release: stopping every thread, and removing every watch and
//! detaching every thread on shutdown, `--break`, detach and `Drop` (order in the parent
//! module's docs).

use std::collections::{HashMap, HashSet};

use super::{stopped, task_ids, unstopped, Thread, Tracer, EVENT_STOP};
use crate::ptrace::{RunEnd, TraceError};
use crate::sys::ptrace as sys;
use crate::sys::ptrace::{Errno, Tid};

impl Tracer {
    /// Interrupts every running thread (but `except`) and waits until each is stopped.
    /// Statuses other than our interrupt stops are queued for the main loop.
    pub(super) fn stop_all(&mut self, except: Option<Tid>) -> Result<(), TraceError> {
        // Hot path (every reported hit): no allocation when no other thread runs.
        if !self
            .threads
            .iter()
            .any(|(t, th)| th.running && Some(*t) != except)
        {
            return Ok(());
        }
        let running: Vec<Tid> = self
            .threads
            .iter()
            .filter(|(t, th)| th.running && Some(**t) != except)
            .map(|(t, _)| *t)
            .collect();
        for tid in running {
            match sys::interrupt(tid) {
                Ok(()) => {}
                // Not (or no longer) our tracee: gone and reaped; nothing to wait for.
                Err(Errno(libc::ESRCH)) => {
                    self.threads.remove(&tid);
                    self.reaped.insert(tid);
                }
                Err(errno) => {
                    return Err(TraceError::Ptrace {
                        op: "PTRACE_INTERRUPT",
                        tid,
                        errno,
                    })
                }
            }
        }
        while self
            .threads
            .iter()
            .any(|(t, th)| th.running && Some(*t) != except)
        {
            let st = match self.raw_wait(false)? {
                Ok(st) => st,
                Err(_) => continue, // remembered in shutdown_requested
            };
            let Some((sig, event)) = stopped(st.status) else {
                // Gone: the main loop reports it.
                if let Some(th) = self.threads.get_mut(&st.tid) {
                    th.running = false;
                }
                self.deferred.push_back(st);
                continue;
            };
            if !self.threads.contains_key(&st.tid) {
                self.reaped.remove(&st.tid);
            }
            let th = self.threads.entry(st.tid).or_insert(Thread {
                new: true,
                ..Thread::default()
            });
            th.running = false;
            if event == EVENT_STOP && !th.new && sig == libc::SIGTRAP {
                th.interrupted = true;
                // A hit queued behind the interrupt stop would be delivered untraced if we
                // died now: let it reach its own (suppressible) delivery stop first. Not
                // when the thread blocks SIGTRAP: it would never come (counted instead, see
                // `unstopped`).
                if deliverable_perf_trap(st.tid) {
                    th.interrupted = false;
                    th.running = true;
                    let _ = sys::cont(st.tid, 0);
                }
                continue;
            }
            if event == libc::PTRACE_EVENT_CLONE {
                if let Ok(msg) = sys::event_msg(st.tid) {
                    self.note_clone(Tid(msg as i32));
                }
            }
            self.deferred.push_back(st);
        }
        Ok(())
    }

    pub(super) fn resume_interrupted(&mut self) -> Result<(), TraceError> {
        if !self.threads.values().any(|th| th.interrupted) {
            return Ok(());
        }
        let tids: Vec<Tid> = self
            .threads
            .iter()
            .filter(|(_, th)| th.interrupted)
            .map(|(t, _)| *t)
            .collect();
        for tid in tids {
            self.resume(tid, 0)?;
        }
        Ok(())
    }

    /// `--break`: release with the target left stopped; returns the gdb command.
    pub(super) fn brk(&mut self) -> Result<RunEnd, TraceError> {
        self.release(true)?;
        Ok(RunEnd::Break {
            pid: self.pid,
            gdb_command: format!("gdb -p {}", self.pid),
        })
    }

    /// Removes every watch and detaches every thread; the target runs on normally.
    /// Idempotent; also done by `Drop` (so a panic unwinding through the owner releases the
    /// target too).
    pub fn shutdown(&mut self) -> Result<(), TraceError> {
        self.release(false)
    }

    pub(super) fn release(&mut self, leave_stopped: bool) -> Result<(), TraceError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        // (1) No watch left: disabling the events ends their counts and signals, closing the
        // fds destroys them. Hits not accounted for are counted below if they could never
        // have been stopped.
        let mut unaccounted: HashMap<Tid, u64> = HashMap::new();
        for (tid, th) in self.threads.iter_mut() {
            for p in &th.fds {
                let _ = sys::disable_event(&p.fd);
            }
            let n = unstopped::settle(th);
            if n > 0 {
                unaccounted.insert(*tid, n);
            }
            th.fds.clear();
        }
        // Threads holding a SIGTRAP generated while SIGTRAP was blocked.
        let mut late: HashSet<Tid> = HashSet::new();
        // (2) Every thread stopped.
        self.stop_all(None)?;
        // (3) Settle each queued status into the signal its thread is detached with.
        while let Some(st) = self.deferred.pop_front() {
            let Some((sig, event)) = stopped(st.status) else {
                self.threads.remove(&st.tid);
                continue;
            };
            let inject = if event != 0 {
                0
            } else if sig == libc::SIGTRAP {
                match sys::siginfo(st.tid) {
                    Ok(i) if i.code == sys::TRAP_PERF => {
                        if i.perf_flags & sys::TRAP_PERF_FLAG_ASYNC != 0 {
                            late.insert(st.tid);
                        }
                        0
                    }
                    _ => sig,
                }
            } else {
                sig
            };
            if let Some(th) = self.threads.get_mut(&st.tid) {
                th.resume_sig = inject;
            }
        }
        // Queued perf SIGTRAPs: deliver each into a delivery stop and suppress it there. One
        // in a thread that blocks SIGTRAP would otherwise wait, and kill the program once it
        // unblocks SIGTRAP after we are gone: unblock it for this delivery, then restore the
        // thread's mask (`PTRACE_SETSIGMASK` at the delivery stop).
        let tids: Vec<Tid> = self.threads.keys().copied().collect();
        let trap = sys::sig_bit(libc::SIGTRAP);
        for tid in &tids {
            let mut guard = 0;
            let mut restore = None;
            let mut blocked = false;
            if let Ok(mask) = sys::sigmask(*tid) {
                blocked = mask & trap != 0;
            }
            while self.threads[tid].resume_sig == 0 && guard < 16 {
                match sys::pending_perf_traps(*tid) {
                    Ok((n, is_late)) if n > 0 => {
                        if is_late {
                            late.insert(*tid);
                        }
                    }
                    _ => break,
                }
                guard += 1;
                if blocked && restore.is_none() {
                    let Ok(mask) = sys::sigmask(*tid) else { break };
                    if sys::set_sigmask(*tid, mask & !trap).is_err() {
                        break;
                    }
                    restore = Some(mask);
                }
                if sys::cont(*tid, 0).is_err() {
                    break;
                }
                match sys::wait(tid.0, false) {
                    Ok(Some(st)) => match stopped(st.status) {
                        Some((sig, 0)) if sig != libc::SIGTRAP => {
                            self.threads.get_mut(tid).expect("known").resume_sig = sig
                        }
                        Some(_) => {}
                        None => {
                            self.threads.remove(tid);
                            break;
                        }
                    },
                    _ => break,
                }
            }
            if let Some(mask) = restore {
                let _ = sys::set_sigmask(*tid, mask);
            }
            // Hits of a thread that blocks SIGTRAP (or held a late one), or that is gone,
            // never became stops; those of any other thread were queued stops the end of
            // the session overtook.
            if let Some(n) = unaccounted.get(tid) {
                if blocked || late.contains(tid) || !self.threads.contains_key(tid) {
                    self.not_stopped += n;
                }
            }
        }
        for (tid, n) in &unaccounted {
            if !tids.contains(tid) {
                self.not_stopped += n; // gone while being stopped
            }
        }
        if leave_stopped {
            let _ = sys::kill(self.pid, libc::SIGSTOP);
        }
        // (4) Detach.
        for (tid, th) in self.threads.drain() {
            let _ = sys::detach(tid, th.resume_sig);
        }
        if leave_stopped {
            // The queued SIGSTOP is taken once each thread runs again: return only when the
            // group stop is complete, so that `gdb -p` finds it stopped.
            wait_group_stopped(self.pid);
        }
        Ok(())
    }
}

/// Whether a perf SIGTRAP is queued in a stopped thread and SIGTRAP is not blocked there
/// (so resuming the thread delivers it into a signal-delivery-stop).
fn deliverable_perf_trap(tid: Tid) -> bool {
    sys::pending_perf_traps(tid).is_ok_and(|(n, _)| n > 0)
        && sys::sigmask(tid).is_ok_and(|m| m & sys::sig_bit(libc::SIGTRAP) == 0)
}

/// Polls `/proc/PID/task/*/stat` until every thread is in state `T` (stopped), the process is
/// gone, or about two seconds passed.
fn wait_group_stopped(pid: i32) {
    let state = |tid: Tid| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            })
    };
    for _ in 0..20_000 {
        let tids = task_ids(pid);
        if tids.is_empty() || tids.iter().all(|t| state(*t).is_none_or(|s| s == "T")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}
