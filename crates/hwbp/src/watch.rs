//! A watch: one region on one target, armed as one perf breakpoint event per (thread or CPU,
//! planned piece), transactionally.
//!
//! Invariants: either every piece is armed on every thread/CPU of the target, or nothing of
//! the watch is (arming and modifying roll back on the first failure); the count of a watch
//! never goes backwards (counts of events closed by [`Watch::modify`] or [`Watch::refresh`]
//! are kept in `retired`).
//!
//! Not for: choosing pieces (hwbp-core's planner) or the syscalls themselves ([`crate::sys`]).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use hwbp_core::arch::{Arch, Chunk, NativeArch};
use hwbp_core::{BpAttr, Spec};

use crate::attr::{read_format, Flag, PerfEventAttr};
use crate::error::{At, Error, ErrorCtx, Holders, Op};
pub use crate::seize::{Arming, LiveReason};
use crate::seize::{Outcome, Seized};
use crate::sys::{Cpu, Errno, Ioctl, Pid, RealSys, Scope, Sys, Tid};
use crate::target::{self, Target};

mod refresh;

/// Sampling fields for stream delivery (copied into every event of the watch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sampling {
    /// `sample_type` ([`crate::attr::sample`] bits).
    pub sample_type: u64,
    /// `sample_period`: 1 = a record per hit.
    pub sample_period: u64,
    /// `wakeup_events`, or bytes when `watermark` is set.
    pub wakeup: u32,
    /// `watermark`: `wakeup` counts bytes.
    pub watermark: bool,
    /// `sample_id_all`.
    pub sample_id_all: bool,
    /// `sample_regs_user` mask.
    pub sample_regs_user: u64,
    /// `sample_stack_user` bytes.
    pub sample_stack_user: u32,
}

/// How the threads of a process target are armed.
///
/// Existing threads need one event each (`inherit` covers only threads created later), so
/// threads created *while* arming race with it. [`Watch::arming`] says what was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProcessArming {
    /// Hold every thread of another process in a ptrace stop while arming (`PTRACE_SEIZE` +
    /// `PTRACE_INTERRUPT`, then `PTRACE_DETACH`; see [`crate::seize`]): every thread —
    /// existing, created during arming, created later — is covered exactly once, and job
    /// control sees nothing (no SIGCHLD, no stopped state for the parent or the shell). The
    /// calling process cannot hold itself: it is armed live ([`LiveReason::CallingProcess`]).
    /// When a thread is traced by someone else or ptrace is refused, hwbp arms live and says
    /// so ([`Arming::Live`] with [`LiveReason::Traced`] / [`LiveReason::NotPermitted`]).
    #[default]
    Seize,
    /// Arm while the process runs, re-listing `/proc/PID/task` until no new thread appears.
    /// Races with threads created during arming (a window of milliseconds): one created by an
    /// already-armed thread inherits the watch and is then armed again when listed (its hits
    /// count twice); one created by a not-yet-armed thread and exited before the next listing
    /// is never seen (its hits are not counted). Threads that exist before arming, and all
    /// threads created after it, are covered exactly once.
    Live,
    /// Stop another process (SIGSTOP) while its threads are listed and armed, then resume it
    /// (SIGCONT; a process that was already stopped stays stopped): exact like
    /// [`ProcessArming::Seize`], but a visible job-control stop: the parent gets SIGCHLD, and
    /// a shell whose foreground job this is reports it stopped and takes the terminal back.
    /// If a thread does not stop within ~1 s, arming fails with [`Error::FreezeFailed`] (no
    /// silent fallback). The calling process is armed live.
    Freeze,
}

/// How a watch is armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WatchOptions {
    /// Arm disabled (the slots are reserved, nothing counts until [`Watch::enable`]).
    pub disabled: bool,
    /// Sampling fields for stream delivery; `None` = counting only. A sampling watch on a
    /// process opens each thread once per online CPU (the kernel refuses to mmap inherited
    /// per-task events), so it takes `threads x CPUs x pieces` events (still `pieces` slots per
    /// thread).
    pub sampling: Option<Sampling>,
    /// `Some(sig_data)`: synchronous SIGTRAP in the accessing thread (`sigtrap` +
    /// `remove_on_exec`); task targets only.
    pub sigtrap: Option<u64>,
    /// How the threads of a [`Target::Process`] are armed.
    pub process_arming: ProcessArming,
}

/// One perf event of a watch.
#[derive(Debug)]
struct Event {
    fd: OwnedFd,
    scope: Scope,
    piece: u32,
    attr: PerfEventAttr,
    /// `time_enabled` at the last [`Watch::refresh_polled`] (CPU-bound events).
    polled_enabled_ns: Option<u64>,
}

/// A borrowed view of one event, for delivery layers (ring buffers, ids).
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    /// The event's fd.
    pub fd: BorrowedFd<'a>,
    /// The thread or CPU it is bound to.
    pub scope: Scope,
    /// Which planned piece.
    pub piece: u32,
}

/// How [`Watch::refresh`] and [`Watch::refresh_polled`] tell a live CPU-bound event from a
/// dead one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Read `time_enabled`, wait up to ~11 ms for it to move.
    Wait,
    /// Compare with the value at the previous poll.
    SinceLastPoll,
}

/// What [`Watch::refresh`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// CPUs whose events were (re)opened because they came (back) online.
    pub reopened: Vec<Cpu>,
    /// Targeted CPUs that are offline now (their counts so far are kept).
    pub offline: Vec<Cpu>,
}

/// A hardware watch on real hardware. Dropping it closes every event (frees the slots).
#[derive(Debug)]
pub struct Watch {
    sys: Arc<dyn Sys>,
    target: Target,
    spec: Spec,
    pieces: Vec<Chunk>,
    template: PerfEventAttr,
    arming: Arming,
    enabled: bool,
    events: Vec<Event>,
    /// Counts of events closed by modify/refresh.
    retired: u64,
}

impl Watch {
    /// Arms a counting watch on the real kernel.
    pub fn new(target: Target, spec: Spec) -> Result<Watch, Error> {
        Watch::with_options(target, spec, &WatchOptions::default())
    }

    /// Arms a watch with options on the real kernel.
    pub fn with_options(target: Target, spec: Spec, opts: &WatchOptions) -> Result<Watch, Error> {
        Watch::with_sys(Arc::new(RealSys), target, spec, opts)
    }

    /// Arms a watch through `sys` (tests pass a fake or a fault injector).
    pub fn with_sys(
        sys: Arc<dyn Sys>,
        target: Target,
        spec: Spec,
        opts: &WatchOptions,
    ) -> Result<Watch, Error> {
        let pieces = NativeArch::new().plan(&spec)?;
        let template = template(target, opts);
        let mut w = Watch {
            sys,
            target,
            spec,
            pieces,
            template,
            arming: Arming::NotProcess,
            enabled: !opts.disabled,
            events: Vec::new(),
            retired: 0,
        };
        let all: Vec<u32> = (0..w.piece_count()).collect();
        match target {
            Target::Thread(t) => {
                let mut fresh = Vec::new();
                w.open_on(Scope::Thread(t), &all, &mut fresh)?;
                w.events = fresh;
            }
            Target::Process(p) => {
                (w.events, w.arming) = w.open_on_process(p, &all, opts.process_arming, None)?;
            }
            Target::Cpu(c) => {
                if !target::online_cpus()?.contains(&c) {
                    return Err(Error::NoSuchCpu { cpu: c });
                }
                let mut fresh = Vec::new();
                w.open_on(Scope::Cpu(c), &all, &mut fresh)?;
                w.events = fresh;
            }
            Target::AllCpus => {
                let mut fresh = Vec::new();
                for c in target::online_cpus()? {
                    w.open_on(Scope::Cpu(c), &all, &mut fresh)?;
                }
                w.events = fresh;
            }
        }
        Ok(w)
    }

    /// The target.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The watched spec.
    pub fn spec(&self) -> Spec {
        self.spec
    }

    /// The planned pieces (one hardware slot each, per thread or CPU).
    pub fn pieces(&self) -> &[Chunk] {
        &self.pieces
    }

    /// How the threads of a process target were armed: [`Arming::Seized`] (exact, the
    /// default for other processes), [`Arming::Stopped`], or [`Arming::Live`] with the reason
    /// (asked for, the calling process, traced by someone else, ptrace refused).
    pub fn arming(&self) -> Arming {
        self.arming
    }

    /// Whether a process target was armed live, i.e. with the races of
    /// [`ProcessArming::Live`] ([`Watch::arming`] says why).
    pub fn armed_live(&self) -> bool {
        self.arming.is_live()
    }

    /// Whether the watch counts (see [`Watch::enable`]).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Number of perf events this watch holds open (threads/CPUs × pieces; inherited
    /// children are the kernel's and not counted here).
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// The events, for delivery layers.
    pub fn events(&self) -> impl Iterator<Item = EventRef<'_>> {
        self.events.iter().map(|e| EventRef {
            fd: e.fd.as_fd(),
            scope: e.scope,
            piece: e.piece,
        })
    }

    /// Exact hits so far, summed over every piece, thread and CPU — including threads that
    /// have exited (a task event's `read()` includes its exited inherited children) and CPUs
    /// whose events were replaced by [`Watch::refresh`].
    pub fn count(&self) -> Result<u64, Error> {
        let mut total = self.retired;
        for e in &self.events {
            total = total.saturating_add(self.read_event(e)?.0);
        }
        Ok(total)
    }

    /// Hits per planned piece (same summing as [`Watch::count`], without retired counts).
    pub fn counts_by_piece(&self) -> Result<Vec<u64>, Error> {
        let mut out = vec![0u64; self.pieces.len()];
        for e in &self.events {
            let slot = &mut out[e.piece as usize];
            *slot = slot.saturating_add(self.read_event(e)?.0);
        }
        Ok(out)
    }

    /// Turns counting on for every event (and inherited child).
    pub fn enable(&mut self) -> Result<(), Error> {
        self.ioctl_all(Ioctl::Enable, Op::Enable)?;
        self.set_enabled(true);
        Ok(())
    }

    /// Turns counting off; the slots stay reserved, so [`Watch::enable`] cannot fail for lack
    /// of a slot.
    pub fn disable(&mut self) -> Result<(), Error> {
        self.ioctl_all(Ioctl::Disable, Op::Disable)?;
        self.set_enabled(false);
        Ok(())
    }

    /// Records the state in every event's attr too: a modify (or its rollback) passes
    /// `disabled`, and the kernel re-enables an event modified with `disabled = 0`.
    fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
        for e in &mut self.events {
            e.attr.set_flag(Flag::Disabled, !on);
        }
    }

    /// Sets every count to zero (retired counts too).
    pub fn reset(&mut self) -> Result<(), Error> {
        self.ioctl_all(Ioctl::Reset, Op::Reset)?;
        self.retired = 0;
        Ok(())
    }

    fn ioctl_all(&self, op: Ioctl<'_>, what: Op) -> Result<(), Error> {
        let mut first = None;
        for e in &self.events {
            if let Err(errno) = self.sys.ioctl(e.fd.as_fd(), op) {
                // An event whose thread exited still accepts ioctls; keep going on error so
                // the watch is not left half-toggled, and report the first failure.
                first.get_or_insert(self.err(what, e.scope, e.piece, errno, Some(e.attr.bp())));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Moves, resizes or re-types the live watch with `PERF_EVENT_IOC_MODIFY_ATTRIBUTES`.
    ///
    /// Events keep their slots and counts. If the new spec needs more pieces, the extra ones
    /// are opened first; if fewer, the surplus events are closed at the end (their counts are
    /// kept). On any failure every event already modified is modified back and every extra
    /// event closed: the old watch stays armed and counting.
    pub fn modify(&mut self, spec: Spec) -> Result<(), Error> {
        if spec.privilege != self.spec.privilege {
            return Err(Error::PrivilegeChange);
        }
        let new_pieces = NativeArch::new().plan(&spec)?;
        let old_n = self.piece_count();
        let new_n = u32::try_from(new_pieces.len()).unwrap_or(u32::MAX);
        let old_pieces = std::mem::replace(&mut self.pieces, new_pieces);
        // 1. Extra pieces, opened with the new attrs on the same threads/CPUs.
        let extra: Vec<u32> = (old_n..new_n).collect();
        let mut fresh = Vec::new();
        if !extra.is_empty() {
            let opened = match self.target {
                Target::Process(p) => {
                    let how = self.process_arming();
                    self.open_on_process(p, &extra, how, None)
                        .map(|(v, _)| fresh = v)
                }
                _ => {
                    let scopes: BTreeSet<Scope> = self.events.iter().map(|e| e.scope).collect();
                    scopes
                        .into_iter()
                        .try_for_each(|s| self.open_on(s, &extra, &mut fresh))
                }
            };
            if let Err(e) = opened {
                self.pieces = old_pieces;
                return Err(e);
            }
        }
        // 2. Modify the shared pieces in place.
        let mut done = Vec::new();
        for i in 0..self.events.len() {
            let e = &self.events[i];
            if e.piece >= new_n {
                continue;
            }
            let mut attr = e.attr;
            attr.set_bp(&self.piece_attr(e.piece));
            if let Err(errno) = self.sys.ioctl(e.fd.as_fd(), Ioctl::ModifyAttributes(&attr)) {
                let err = self.err(Op::Modify, e.scope, e.piece, errno, Some(attr.bp()));
                // Roll back: the old attrs were accepted before, with the same slot class.
                for &j in &done {
                    let old: &Event = &self.events[j];
                    let _ = self
                        .sys
                        .ioctl(old.fd.as_fd(), Ioctl::ModifyAttributes(&old.attr));
                }
                drop(fresh);
                self.pieces = old_pieces;
                return Err(err);
            }
            done.push(i);
        }
        for &i in &done {
            let piece = self.events[i].piece;
            let bp = self.piece_attr(piece);
            self.events[i].attr.set_bp(&bp);
        }
        // 3. Surplus events: keep their counts, close them.
        let mut kept = Vec::with_capacity(self.events.len() + fresh.len());
        for e in std::mem::take(&mut self.events) {
            if e.piece < new_n {
                kept.push(e);
            } else {
                self.retired = self
                    .retired
                    .saturating_add(self.read_event(&e).map_or(0, |r| r.0));
            }
        }
        kept.extend(fresh);
        self.events = kept;
        self.spec = spec;
        Ok(())
    }

    fn piece_count(&self) -> u32 {
        // Plans are capped at MAX_PLAN_CHUNKS (64).
        u32::try_from(self.pieces.len()).unwrap_or(u32::MAX)
    }

    fn piece_attr(&self, piece: u32) -> BpAttr {
        let mut bp = self.pieces[piece as usize].attr;
        bp.disabled = !self.enabled;
        bp
    }

    /// (count, time_enabled) of one event.
    fn read_event(&self, e: &Event) -> Result<(u64, u64), Error> {
        let mut buf = [0u64; 2];
        match self.sys.read(e.fd.as_fd(), &mut buf) {
            Ok(2) => Ok((buf[0], buf[1])),
            Ok(_) => Err(self.err(Op::Read, e.scope, e.piece, Errno::EINVAL, None)),
            Err(errno) => Err(self.err(Op::Read, e.scope, e.piece, errno, None)),
        }
    }

    /// Opens `pieces` on one thread or CPU, appending to `out` (everything opened so far by
    /// this watch operation). On failure returns the error; the caller drops `out`, which
    /// closes every event of the operation.
    fn open_on(&self, scope: Scope, pieces: &[u32], out: &mut Vec<Event>) -> Result<(), Error> {
        for &piece in pieces {
            let mut attr = self.template;
            attr.set_bp(&self.piece_attr(piece));
            match self.sys.perf_event_open(&attr, scope, None) {
                Ok(fd) => {
                    out.push(Event {
                        fd,
                        scope,
                        piece,
                        attr,
                        polled_enabled_ns: None,
                    });
                }
                Err(errno) => {
                    return Err(self.open_err(scope, piece, errno, &attr, out));
                }
            }
        }
        Ok(())
    }

    /// How a later operation (a modify adding pieces) arms the process again: as it was armed.
    fn process_arming(&self) -> ProcessArming {
        match self.arming {
            Arming::Stopped => ProcessArming::Freeze,
            Arming::Live(LiveReason::Requested) => ProcessArming::Live,
            _ => ProcessArming::Seize,
        }
    }

    /// Opens `pieces` on every thread of `pid`, re-listing `/proc/PID/task` until a listing
    /// shows no thread that has not been armed; returns the events and how it armed.
    ///
    /// Each event has `inherit`, so a thread created after its creator was armed inherits the
    /// watch. Held still ([`ProcessArming::Seize`] or [`ProcessArming::Freeze`], another
    /// process) no thread runs while arming, so the listing is complete and nothing is
    /// inherited meanwhile: every thread is covered exactly once. Live arming (this process,
    /// or a process that could not be held) races with threads created meanwhile — see
    /// [`ProcessArming::Live`]. Threads that exit between listing and arming (`ESRCH`) are
    /// skipped.
    ///
    /// `only_cpu` (sampling watches): open for that CPU only (a CPU that came online).
    fn open_on_process(
        &self,
        pid: Pid,
        pieces: &[u32],
        how: ProcessArming,
        only_cpu: Option<Cpu>,
    ) -> Result<(Vec<Event>, Arming), Error> {
        // Declared before the events: dropped (threads released) after they are all open.
        let mut _stopped = None;
        let mut _seized = None;
        let arming = match how {
            _ if pid == Pid::current() => Arming::Live(LiveReason::CallingProcess),
            ProcessArming::Live => Arming::Live(LiveReason::Requested),
            ProcessArming::Freeze => {
                _stopped = Some(target::Freeze::stop(pid)?);
                Arming::Stopped
            }
            ProcessArming::Seize => match Seized::freeze(pid)? {
                Outcome::Held(s) => {
                    _seized = Some(s);
                    Arming::Seized
                }
                Outcome::Live(why) => Arming::Live(why),
            },
        };
        let mut done: BTreeSet<Tid> = BTreeSet::new();
        let mut out = Vec::new();
        // Stream delivery mmaps the events, and the kernel refuses mmap of an inherited
        // per-task event (`perf_mmap()`: `cpu == -1 && inherit` -> EINVAL), so sampling process
        // watches open each thread once per online CPU (rings are then per CPU).
        let per_cpu = match (self.template.sample_type != 0, only_cpu) {
            (false, _) => None,
            (true, Some(c)) => Some([c].into_iter().collect()),
            (true, None) => Some(target::online_cpus()?),
        };
        loop {
            let tids = target::list_threads(pid)?;
            let new: Vec<Tid> = tids.difference(&done).copied().collect();
            if new.is_empty() {
                return Ok((out, arming));
            }
            for tid in new {
                done.insert(tid);
                let before = out.len();
                let opened = match &per_cpu {
                    None => self.open_on(Scope::Thread(tid), pieces, &mut out),
                    Some(cpus) => cpus.iter().try_for_each(|&c| {
                        self.open_on(Scope::ThreadOnCpu(tid, c), pieces, &mut out)
                    }),
                };
                match opened {
                    Ok(()) => {}
                    // Gone between listing and arming: nothing of it left to count.
                    Err(e) if e.errno() == Some(Errno::ESRCH) => out.truncate(before),
                    // Dropping `out` closes everything opened for this watch.
                    Err(e) => return Err(e),
                }
            }
        }
    }

    fn err(&self, op: Op, scope: Scope, piece: u32, errno: Errno, bp: Option<BpAttr>) -> Error {
        let ctx = ErrorCtx {
            attr: bp,
            pieces: self.piece_count(),
            holders: Holders::default(),
        };
        Error::sys(op, Some(At { scope, piece }), errno, &ctx)
    }

    fn open_err(
        &self,
        scope: Scope,
        piece: u32,
        errno: Errno,
        attr: &PerfEventAttr,
        ours: &[Event],
    ) -> Error {
        let mut holders = Holders {
            cpu_wide_possible: true,
            cpu_bound: matches!(scope, Scope::Cpu(_)),
            ..Holders::default()
        };
        if errno == Errno::ENOSPC {
            let pid = match (scope, self.target) {
                (_, Target::Process(p)) => Some(p),
                (Scope::Thread(t) | Scope::ThreadOnCpu(t, _), _) => target::process_of(t),
                _ => None,
            };
            if let Some(pid) = pid {
                holders.tracer = target::tracer_of(pid);
                let mut except: Vec<BorrowedFd<'_>> = ours.iter().map(|e| e.fd.as_fd()).collect();
                except.extend(self.events.iter().map(|e| e.fd.as_fd()));
                let except = if pid == Pid::current() {
                    except
                } else {
                    Vec::new()
                };
                holders.process_perf_events = target::perf_fds_of(pid, &except);
            }
        }
        let ctx = ErrorCtx {
            attr: Some(attr.bp()),
            pieces: self.piece_count(),
            holders,
        };
        Error::sys(Op::Open, Some(At { scope, piece }), errno, &ctx)
    }
}

/// The non-breakpoint fields every event of a watch shares.
fn template(target: Target, opts: &WatchOptions) -> PerfEventAttr {
    let mut attr = PerfEventAttr::breakpoint(&BpAttr::user(0, 1, 2));
    // [count, time_enabled]: the time tells a live CPU-bound event from one the kernel
    // dropped at CPU offline.
    attr.read_format = read_format::TOTAL_TIME_ENABLED;
    if matches!(target, Target::Process(_)) {
        attr.set_flag(Flag::Inherit, true);
        attr.set_flag(Flag::InheritThread, true);
    }
    if let Some(s) = opts.sampling {
        attr.sample_type = s.sample_type;
        attr.sample_period = s.sample_period;
        attr.wakeup_events = s.wakeup;
        attr.set_flag(Flag::Watermark, s.watermark);
        attr.set_flag(Flag::SampleIdAll, s.sample_id_all);
        attr.sample_regs_user = s.sample_regs_user;
        attr.sample_stack_user = s.sample_stack_user;
    }
    if let Some(sig_data) = opts.sigtrap {
        attr.set_flag(Flag::Sigtrap, true);
        attr.set_flag(Flag::RemoveOnExec, true);
        attr.sig_data = sig_data;
        if attr.sample_period == 0 {
            attr.sample_period = 1;
        }
    }
    attr
}
