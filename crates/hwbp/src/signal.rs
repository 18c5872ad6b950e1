//! In-process delivery by synchronous SIGTRAP: a program watches its own memory and learns,
//! in the thread that touched it, the instant it is touched, with the new value.
//!
//! Not for: watching other processes (signals go to the thread that hit the watchpoint, so
//! use count or stream delivery), nor for opening the perf events (the watch layer opens them
//! with `sigtrap = 1, remove_on_exec = 1, sig_data = SignalSink::sig_data()`).
//!
//! # How a hit arrives
//!
//! The kernel (`perf_sigtrap()` → `send_sig_perf()`, v5.13+) sends SIGTRAP to the thread that
//! hit, with `si_code = TRAP_PERF`, `si_addr = bp_addr`, `si_perf_data = sig_data`. hwbp's
//! handler (installed once per process, see [`SignalSink::new`]) finds the [`SignalSink`] whose
//! `sig_data` matches, and for each hit, in the handler:
//! 1. adds 1 to [`SignalSink::hits`];
//! 2. builds a [`HitInfo`]: thread id, PC, and — with [`SignalOptions::capture`] — the watched
//!    bytes *after* the access (x86 data breakpoints trap after the write, so this is the new
//!    value), read with `process_vm_readv` on ourselves, which cannot fault or race;
//! 3. calls [`SignalOptions::callback`], if any;
//! 4. pushes the [`HitInfo`] into the sink's fixed-size lock-free queue, which a normal thread
//!    empties with [`SignalSink::drain`]; if it is full, [`SignalSink::queue_dropped`] counts
//!    the hit instead (a lost hit is never silent).
//!
//! Every other SIGTRAP (a breakpoint instruction, ptrace, single-step, another library's perf
//! event) goes to the handler that was installed before hwbp's, or, if that was the default
//! action, gets the default action (the process dies with SIGTRAP, as without hwbp). A
//! `TRAP_PERF` signal for a sink that was already dropped is counted in [`stray_traps`] and
//! ignored; one whose `sig_data` is not hwbp's at all is counted in [`foreign_traps`] and
//! chained (dropped if nothing else handles SIGTRAP). hwbp's handler must stay installed: a
//! SIGTRAP handler the program installs *after* the first sink replaces it, and hwbp then
//! sees no hits (its counts stay correct in [`Watch::count`]).
//!
//! # What may run inside the callback
//!
//! The callback is a plain `fn(&HitInfo)` (no closure state: nothing to allocate or drop) and
//! runs **in signal context**, on the thread that hit, while that thread is stopped in the
//! middle of whatever it was doing — possibly holding the allocator's lock or any other lock.
//! It may only:
//! - read its argument, and use atomics (`AtomicU64::fetch_add`, lock-free stores) on
//!   `static` data;
//! - call async-signal-safe functions (`signal-safety(7)`), e.g. `write(2)` of a buffer on
//!   the stack.
//!
//! It must not: allocate or free (`Box`, `Vec`, `String`, `format!`), print (`println!`
//! locks stdout), lock a `Mutex`/`RwLock`, touch thread-locals that lazily initialise, drop a
//! watch or a [`SignalSink`], or access memory the same watch covers (with SIGTRAP blocked
//! during the handler such a hit is delivered late and its signal may merge with the next).
//! A panic in the callback aborts the process (it cannot unwind out of a signal handler).
//! Anything else belongs after [`SignalSink::drain`] on a normal thread.

use core::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hwbp_core::Spec;

use crate::error::Error;
use crate::sys::signal::{self as sys, Published, RawTrap, Verdict, TRAP_PERF_FLAG_ASYNC};
use crate::sys::Pid;
use crate::target::{self, Target};
use crate::watch::{Watch, WatchOptions};

/// A hit as seen in the signal handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HitInfo {
    /// The `sig_data` of the event that fired (identifies the watch and piece).
    pub sig_data: u64,
    /// Thread that touched the memory.
    pub tid: u32,
    /// `si_addr`: the breakpoint's address.
    pub addr: u64,
    /// The interrupted PC: on x86 the instruction after the access.
    pub pc: Option<u64>,
    /// The watched bytes right after the access (little-endian, zero-extended), when
    /// capturing was asked for and the memory was readable.
    pub value: Option<u64>,
    /// The kernel had to deliver this signal late because SIGTRAP was blocked
    /// (`TRAP_PERF_FLAG_ASYNC`); the PC is then not the access.
    pub asynchronous: bool,
}

/// A callback run inside the signal handler; see the module docs for what it may do.
pub type HitCallback = fn(&HitInfo);

/// Memory to read in the handler for [`HitInfo::value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capture {
    /// First byte.
    pub addr: u64,
    /// 1 to 8 bytes.
    pub len_bytes: u8,
}

impl Capture {
    /// The watched bytes of `spec`, if it covers at most 8 of them.
    pub fn of_spec(spec: &Spec) -> Option<Capture> {
        let len_bytes = u8::try_from(spec.region.len_bytes)
            .ok()
            .filter(|l| (1..=8).contains(l))?;
        Some(Capture {
            addr: spec.region.addr,
            len_bytes,
        })
    }
}

/// How a [`SignalSink`] delivers hits.
#[derive(Clone, Copy, Debug)]
pub struct SignalOptions {
    /// Hits held for [`SignalSink::drain`] (rounded up to a power of two; 0 = no queue).
    pub queue_capacity: usize,
    /// Bytes to read for [`HitInfo::value`].
    pub capture: Option<Capture>,
    /// Run in the handler for each hit.
    pub callback: Option<HitCallback>,
}

impl Default for SignalOptions {
    fn default() -> Self {
        SignalOptions {
            queue_capacity: 4096,
            capture: None,
            callback: None,
        }
    }
}

/// Why a [`SignalSink`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalError {
    /// `sigaction(SIGTRAP)` failed with `errno`.
    Install {
        /// The errno of `sigaction`.
        errno: i32,
    },
    /// All `capacity` sinks are in use; drop one first.
    NoFreeSink {
        /// [`MAX_SINKS`].
        capacity: usize,
    },
    /// A capture must be 1 to 8 bytes.
    CaptureLength {
        /// The length asked for.
        len_bytes: u8,
    },
    /// The queue capacity is above 2^20.
    QueueTooLarge {
        /// The capacity asked for.
        requested: usize,
    },
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SignalError::Install { errno } => write!(
                f,
                "installing the SIGTRAP handler failed (sigaction errno {errno}); signal \
                 delivery needs a process that may handle SIGTRAP"
            ),
            SignalError::NoFreeSink { capacity } => write!(
                f,
                "all {capacity} signal sinks are in use; drop signal-delivered watches that are \
                 no longer needed"
            ),
            SignalError::CaptureLength { len_bytes } => write!(
                f,
                "cannot capture {len_bytes} bytes per hit: the value is read into a u64, so \
                 use 1 to 8 bytes (one watched piece)"
            ),
            SignalError::QueueTooLarge { requested } => write!(
                f,
                "a hit queue of {requested} entries is too large: use at most 2^20 and drain \
                 it more often"
            ),
        }
    }
}

impl std::error::Error for SignalError {}

/// Number of sinks that can exist at once (each watch piece in signal mode uses one, or
/// pieces share one).
pub const MAX_SINKS: usize = 64;
const MAX_QUEUE: usize = 1 << 20;

/// `sig_data` layout: bits 63..48 tag `0x4857` ("HW"), 47..8 generation, 7..0 sink index.
const TAG: u64 = 0x4857;
const TAG_SHIFT: u32 = 48;

static SINKS: [Published<Entry>; MAX_SINKS] = [const { Published::new() }; MAX_SINKS];
static GENERATION: AtomicU64 = AtomicU64::new(1);
static STRAY: AtomicU64 = AtomicU64::new(0);
static FOREIGN: AtomicU64 = AtomicU64::new(0);

/// `TRAP_PERF` signals carrying an hwbp `sig_data` whose sink no longer exists (a hit that
/// raced with dropping its watch). They are ignored.
pub fn stray_traps() -> u64 {
    STRAY.load(Ordering::Relaxed)
}

/// `TRAP_PERF` signals whose `sig_data` is not hwbp's (passed to the previous handler).
pub fn foreign_traps() -> u64 {
    FOREIGN.load(Ordering::Relaxed)
}

/// The per-sink state the handler reaches through [`SINKS`].
struct Entry {
    token: u64,
    /// The only thread this sink's events can signal (a thread-target watch), so the
    /// handler need not ask the kernel (`gettid` costs ≈4 % of a hit on the VM measured in
    /// docs/BENCHMARKS.md); `None`: ask.
    only_thread: Option<u32>,
    hits: AtomicU64,
    dropped: AtomicU64,
    capture: Option<Capture>,
    callback: Option<HitCallback>,
    queue: HitQueue,
}

/// Receives the SIGTRAPs of the perf events opened with its [`SignalSink::sig_data`].
///
/// Dropping it unregisters it (waiting for handlers that are using it on other threads);
/// close the events first, or their late signals count as [`stray_traps`].
#[derive(Debug)]
pub struct SignalSink {
    index: usize,
    token: u64,
}

impl SignalSink {
    /// Registers a sink, installing hwbp's SIGTRAP handler on first use.
    pub fn new(opts: SignalOptions) -> Result<SignalSink, SignalError> {
        SignalSink::with_thread(opts, None)
    }

    /// A sink whose events only ever signal thread `tid` (events of a thread-target watch,
    /// which are not inherited): [`HitInfo::tid`] is then `tid` without a system call.
    fn with_thread(
        opts: SignalOptions,
        only_thread: Option<u32>,
    ) -> Result<SignalSink, SignalError> {
        if let Some(c) = opts.capture {
            if !(1..=8).contains(&c.len_bytes) {
                return Err(SignalError::CaptureLength {
                    len_bytes: c.len_bytes,
                });
            }
        }
        if opts.queue_capacity > MAX_QUEUE {
            return Err(SignalError::QueueTooLarge {
                requested: opts.queue_capacity,
            });
        }
        sys::install_handler().map_err(|e| SignalError::Install {
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1);
        let mut entry = Box::new(Entry {
            token: 0,
            only_thread,
            hits: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            capture: opts.capture,
            callback: opts.callback,
            queue: HitQueue::new(opts.queue_capacity),
        });
        for (index, slot) in SINKS.iter().enumerate() {
            if !slot.is_empty() {
                continue;
            }
            let token = TAG << TAG_SHIFT | generation << 8 | index as u64;
            entry.token = token;
            match slot.publish(entry) {
                Ok(()) => return Ok(SignalSink { index, token }),
                Err(back) => entry = back,
            }
        }
        Err(SignalError::NoFreeSink {
            capacity: MAX_SINKS,
        })
    }

    /// The value to put in `perf_event_attr::sig_data` of every event delivering to this sink.
    pub fn sig_data(&self) -> u64 {
        self.token
    }

    fn with<R>(&self, f: impl FnOnce(&Entry) -> R) -> R {
        // Our own slot cannot be retired while `self` lives.
        SINKS[self.index]
            .with(f)
            .expect("a live SignalSink's slot is published")
    }

    /// Signals handled so far (each one is one hit).
    pub fn hits(&self) -> u64 {
        self.with(|e| e.hits.load(Ordering::Relaxed))
    }

    /// Hits that found the queue full (counted in [`SignalSink::hits`], not queued).
    pub fn queue_dropped(&self) -> u64 {
        self.with(|e| e.dropped.load(Ordering::Relaxed))
    }

    /// Passes every queued hit, oldest first, to `f` (on this normal thread); returns how
    /// many.
    pub fn drain(&self, mut f: impl FnMut(HitInfo)) -> usize {
        self.with(|e| {
            let mut n = 0;
            while let Some(h) = e.queue.pop() {
                f(h);
                n += 1;
            }
            n
        })
    }
}

impl Drop for SignalSink {
    fn drop(&mut self) {
        drop(SINKS[self.index].retire());
    }
}

/// Why a [`SignalWatch`] could not be armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalWatchError {
    /// The sink could not be made.
    Sink(SignalError),
    /// Arming the watch failed.
    Watch(Error),
    /// Signals go to the thread that hit; only threads of this process have hwbp's handler.
    NotThisProcess {
        /// The target asked for.
        target: Target,
    },
}

impl fmt::Display for SignalWatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalWatchError::Sink(e) => e.fmt(f),
            SignalWatchError::Watch(e) => e.fmt(f),
            SignalWatchError::NotThisProcess { target } => write!(
                f,
                "signal delivery needs a target in this process (a thread of it, or the \
                 process), not {target:?}: the SIGTRAP goes to the thread that touched the \
                 memory; use count or stream delivery for other processes and CPUs"
            ),
        }
    }
}

impl std::error::Error for SignalWatchError {}

/// A [`Watch`] on this process whose every hit raises SIGTRAP in the hitting thread and is
/// delivered to a [`SignalSink`].
#[derive(Debug)]
pub struct SignalWatch {
    // The watch is declared first so it drops (closing the events) before the sink.
    watch: Watch,
    sink: SignalSink,
}

impl SignalWatch {
    /// Arms `spec` on a thread of this process or on this whole process, with
    /// `sigtrap = 1, remove_on_exec = 1, sig_data = sink`.
    pub fn new(
        target: Target,
        spec: Spec,
        opts: SignalOptions,
    ) -> Result<SignalWatch, SignalWatchError> {
        let ours = match target {
            Target::Thread(t) => target::process_of(t) == Some(Pid::current()),
            Target::Process(p) => p == Pid::current(),
            Target::Cpu(_) | Target::AllCpus => false,
        };
        if !ours {
            return Err(SignalWatchError::NotThisProcess { target });
        }
        let only_thread = match target {
            Target::Thread(t) => u32::try_from(t.get()).ok(),
            _ => None,
        };
        let sink = SignalSink::with_thread(opts, only_thread).map_err(SignalWatchError::Sink)?;
        let wopts = WatchOptions {
            sigtrap: Some(sink.sig_data()),
            ..WatchOptions::default()
        };
        let watch = Watch::with_options(target, spec, &wopts).map_err(SignalWatchError::Watch)?;
        Ok(SignalWatch { watch, sink })
    }

    /// The underlying watch (its [`Watch::count`] counts hits whether or not their signal
    /// was delivered).
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// The sink (hits handled, queue, drops).
    pub fn sink(&self) -> &SignalSink {
        &self.sink
    }

    /// Hits whose signal was not handled: the kernel keeps one pending SIGTRAP per event, so
    /// hits while SIGTRAP is blocked (e.g. inside the handler) merge. Exact once no handler
    /// is running: `watch().count() - sink().hits()`.
    pub fn missed_signals(&self) -> Result<u64, Error> {
        Ok(self.watch.count()?.saturating_sub(self.sink.hits()))
    }

    /// The planned piece whose address is `addr` ([`HitInfo::addr`]).
    pub fn piece_of(&self, addr: u64) -> Option<u32> {
        let i = self
            .watch
            .pieces()
            .iter()
            .position(|c| c.attr.addr == addr)?;
        u32::try_from(i).ok()
    }
}

/// Called by the handler in `sys::signal` for every SIGTRAP. Async-signal-safe.
pub(crate) fn dispatch(trap: &RawTrap) -> Verdict {
    if trap.code != sys::TRAP_PERF {
        return Verdict::Chain;
    }
    if trap.perf_data >> TAG_SHIFT != TAG {
        FOREIGN.fetch_add(1, Ordering::Relaxed);
        return Verdict::Chain;
    }
    let index = (trap.perf_data & 0xff) as usize;
    let mine = SINKS.get(index).and_then(|slot| {
        slot.with(|e| {
            if e.token != trap.perf_data {
                return false;
            }
            e.record(trap);
            true
        })
    });
    if mine != Some(true) {
        STRAY.fetch_add(1, Ordering::Relaxed);
    }
    Verdict::Handled
}

impl Entry {
    /// One hit, in the handler.
    fn record(&self, trap: &RawTrap) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let value = self.capture.and_then(|c| {
            let mut b = [0u8; 8];
            let len = usize::from(c.len_bytes);
            sys::read_own_memory(c.addr, &mut b[..len]).then(|| u64::from_le_bytes(b))
        });
        let hit = HitInfo {
            sig_data: trap.perf_data,
            tid: self.only_thread.unwrap_or_else(sys::gettid),
            addr: trap.addr,
            pc: trap.pc,
            value,
            asynchronous: trap.perf_flags & TRAP_PERF_FLAG_ASYNC != 0,
        };
        if let Some(cb) = self.callback {
            cb(&hit);
        }
        if !self.queue.push(&hit) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One queue cell; fields are atomics so producers (handlers) and consumers need no unsafe.
struct Cell {
    seq: AtomicUsize,
    sig_data: AtomicU64,
    addr: AtomicU64,
    pc: AtomicU64,
    value: AtomicU64,
    /// tid in bits 0..32; bit 32 pc present, bit 33 value present, bit 34 asynchronous.
    tid_flags: AtomicU64,
}

/// A bounded lock-free MPMC queue (Vyukov's design: each cell's sequence number says whether
/// it is free for the producer at `pos` (`seq == pos`) or full for the consumer
/// (`seq == pos + 1`)). A producer never waits: it claims a cell or reports "full".
struct HitQueue {
    cells: Box<[Cell]>,
    mask: usize,
    enqueue: AtomicUsize,
    dequeue: AtomicUsize,
}

impl HitQueue {
    fn new(capacity: usize) -> HitQueue {
        let n = if capacity == 0 {
            0
        } else {
            capacity.next_power_of_two()
        };
        let cells = (0..n)
            .map(|i| Cell {
                seq: AtomicUsize::new(i),
                sig_data: AtomicU64::new(0),
                addr: AtomicU64::new(0),
                pc: AtomicU64::new(0),
                value: AtomicU64::new(0),
                tid_flags: AtomicU64::new(0),
            })
            .collect();
        HitQueue {
            cells,
            mask: n.wrapping_sub(1),
            enqueue: AtomicUsize::new(0),
            dequeue: AtomicUsize::new(0),
        }
    }

    /// Claims the next cell for `counter` (`enqueue` or `dequeue`): the cell at `pos` is
    /// ready when `seq == pos + lag` (lag 0: free for a producer; 1: full for a consumer).
    /// `None` when the queue is full (producer) or empty (consumer). Lock-free; no allocation.
    fn claim(&self, counter: &AtomicUsize, lag: usize) -> Option<(&Cell, usize)> {
        if self.cells.is_empty() {
            return None;
        }
        let mut pos = counter.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            let seq = cell.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos.wrapping_add(lag)) as isize;
            if dif == 0 {
                match counter.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some((cell, pos)),
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                return None;
            } else {
                pos = counter.load(Ordering::Relaxed);
            }
        }
    }

    fn push(&self, h: &HitInfo) -> bool {
        let Some((cell, pos)) = self.claim(&self.enqueue, 0) else {
            return false;
        };
        let flags = u64::from(h.tid)
            | u64::from(h.pc.is_some()) << 32
            | u64::from(h.value.is_some()) << 33
            | u64::from(h.asynchronous) << 34;
        cell.sig_data.store(h.sig_data, Ordering::Relaxed);
        cell.addr.store(h.addr, Ordering::Relaxed);
        cell.pc.store(h.pc.unwrap_or(0), Ordering::Relaxed);
        cell.value.store(h.value.unwrap_or(0), Ordering::Relaxed);
        cell.tid_flags.store(flags, Ordering::Relaxed);
        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
        true
    }

    fn pop(&self) -> Option<HitInfo> {
        let (cell, pos) = self.claim(&self.dequeue, 1)?;
        let flags = cell.tid_flags.load(Ordering::Relaxed);
        let h = HitInfo {
            sig_data: cell.sig_data.load(Ordering::Relaxed),
            tid: flags as u32,
            addr: cell.addr.load(Ordering::Relaxed),
            pc: (flags >> 32 & 1 == 1).then(|| cell.pc.load(Ordering::Relaxed)),
            value: (flags >> 33 & 1 == 1).then(|| cell.value.load(Ordering::Relaxed)),
            asynchronous: flags >> 34 & 1 == 1,
        };
        cell.seq.store(
            pos.wrapping_add(self.mask).wrapping_add(1),
            Ordering::Release,
        );
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(i: u64) -> HitInfo {
        HitInfo {
            sig_data: i,
            tid: i as u32,
            addr: 0x1000 + i,
            pc: i.is_multiple_of(2).then_some(i),
            value: i.is_multiple_of(3).then_some(i * 7),
            asynchronous: i.is_multiple_of(5),
        }
    }

    #[test]
    fn queue_is_fifo_and_reports_full() {
        let q = HitQueue::new(5); // rounds to 8
        for i in 0..8 {
            assert!(q.push(&hit(i)));
        }
        assert!(!q.push(&hit(8)));
        for i in 0..8 {
            assert_eq!(q.pop(), Some(hit(i)));
        }
        assert_eq!(q.pop(), None);
        // Wraps around the cells.
        for i in 100..120 {
            assert!(q.push(&hit(i)));
            assert_eq!(q.pop(), Some(hit(i)));
        }
        let none = HitQueue::new(0);
        assert!(!none.push(&hit(1)));
        assert_eq!(none.pop(), None);
    }

    #[test]
    fn queue_concurrent_producers_lose_nothing() {
        let q = std::sync::Arc::new(HitQueue::new(1 << 12));
        let producers: Vec<_> = (0..4u64)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        while !q.push(&hit(t * 10_000 + i)) {
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 4000 {
            if let Some(h) = q.pop() {
                got.push(h.sig_data);
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        got.sort_unstable();
        let mut want: Vec<u64> = (0..4u64)
            .flat_map(|t| (0..1000).map(move |i| t * 10_000 + i))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn dispatch_routes_by_sig_data() {
        let sink = SignalSink::new(SignalOptions::default()).unwrap();
        let mut trap = RawTrap {
            code: sys::TRAP_PERF,
            addr: 0x1234,
            perf_data: sink.sig_data(),
            perf_type: 5,
            perf_flags: 0,
            pc: Some(0x40),
        };
        assert_eq!(dispatch(&trap), Verdict::Handled);
        assert_eq!(sink.hits(), 1);
        let mut seen = Vec::new();
        assert_eq!(sink.drain(|h| seen.push(h)), 1);
        assert_eq!(seen[0].addr, 0x1234);
        assert_eq!(seen[0].pc, Some(0x40));
        assert_eq!(seen[0].tid, sys::gettid());
        // Not a perf trap: chained. Another library's perf trap: chained and counted.
        trap.code = 1;
        assert_eq!(dispatch(&trap), Verdict::Chain);
        trap.code = sys::TRAP_PERF;
        trap.perf_data = 42;
        let foreign = foreign_traps();
        assert_eq!(dispatch(&trap), Verdict::Chain);
        assert!(foreign_traps() > foreign);
        // A stale token of ours: handled (ignored), not delivered to the live sink.
        trap.perf_data = sink.sig_data() ^ (1 << 20);
        assert_eq!(dispatch(&trap), Verdict::Handled);
        assert_eq!(sink.hits(), 1);
    }

    #[test]
    fn bad_options_are_refused() {
        let opts = SignalOptions {
            capture: Some(Capture {
                addr: 0,
                len_bytes: 9,
            }),
            ..SignalOptions::default()
        };
        assert_eq!(
            SignalSink::new(opts).unwrap_err(),
            SignalError::CaptureLength { len_bytes: 9 }
        );
    }
}
