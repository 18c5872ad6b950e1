//! Hits that never became a stop, counted exactly (never a silent loss).
//!
//! A hit's SIGTRAP is sent with `send_sig_perf` (kernel/signal.c), not forced: in a thread
//! that blocks SIGTRAP (`pthread_sigmask(SIG_BLOCK, all)`, a common worker-thread idiom) it
//! stays queued with `TRAP_PERF_FLAG_ASYNC`, and as SIGTRAP is a legacy signal every later
//! one is dropped while it waits (`legacy_queue`). The thread never enters a
//! signal-delivery-stop for those hits; the queued signal dies with the thread, or is
//! delivered late (not at any access) once the thread unblocks SIGTRAP. ptrace cannot stop
//! such a thread at the access: `PTRACE_SETSIGMASK` at a stop only helps until the thread
//! blocks SIGTRAP again itself.
//!
//! What it can do is count: each piece's event counts every hit (`read(2)` of the perf fd,
//! whether or not the signal was delivered). Each piece remembers how many of its hits are
//! accounted for; a stop accounts for its hit, and whenever a thread's hits can no longer
//! become stops — a late (`ASYNC`) delivery, the thread's exit, exec, release — the rest
//! are added to [`Tracer::hits_not_stopped`].

use super::{Thread, Tracer};
use crate::sys::ptrace as sys;
use crate::sys::ptrace::Tid;

impl Tracer {
    /// Hits the kernel counted on the watches that the tracer could not stop at the access:
    /// made by a thread while it blocked SIGTRAP (see the module docs). Exact: each piece's
    /// perf event counts every hit; this is that count minus the hits stopped, taken when a
    /// late SIGTRAP is delivered, when a thread exits or execs, and at release (there only for
    /// threads that block SIGTRAP or hold a late SIGTRAP: hits whose stop was still queued
    /// when a break, detach or shutdown ended the session are not counted).
    pub fn hits_not_stopped(&self) -> u64 {
        self.not_stopped
    }

    /// A thread's hits so far can no longer be stopped (a late SIGTRAP, its exit): counts
    /// them, and re-reads the shadow copies (their old values are stale) from its memory.
    pub(super) fn settle_late(&mut self, tid: Tid) {
        let Some(th) = self.threads.get_mut(&tid) else {
            return;
        };
        let n = settle(th);
        if n > 0 {
            self.not_stopped += n;
            for w in &mut self.watches {
                let _ = sys::read_memory(tid, w.spec.region.addr, &mut w.shadow);
            }
        }
    }
}

/// Accounts every hit `th`'s events counted so far that is not accounted yet, and returns
/// how many that was. Works on events the kernel already removed (thread exit,
/// `remove_on_exec`, `PERF_EVENT_IOC_DISABLE`): their final count stays readable.
pub(super) fn settle(th: &mut Thread) -> u64 {
    let mut n = 0;
    for p in &mut th.fds {
        if let Ok(c) = sys::read_count(&p.fd) {
            n += c.saturating_sub(p.accounted);
            p.accounted = p.accounted.max(c);
        }
    }
    n
}

/// A hit stop of piece `tag`: accounts for it. One access can hit several pieces at once;
/// Linux then queues one SIGTRAP (the others are dropped while it waits), so each other
/// piece whose count rose since it was last accounted for took this same access (a thread
/// with one piece needs no `read`).
pub(super) fn note_stopped(th: &mut Thread, tag: u64) {
    let single = th.fds.len() == 1;
    for p in &mut th.fds {
        let same_access = || !single && sys::read_count(&p.fd).is_ok_and(|c| c > p.accounted);
        if p.tag == tag || same_access() {
            p.accounted += 1;
        }
    }
}
