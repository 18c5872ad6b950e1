//! The session's ring drainer: a thread that only empties the perf rings — copies each hit's
//! few fields out, and with `--backtrace` unwinds its stack copy right there — and hands the
//! hits to the session in batches, so that nothing the session does per hit (symbolizing,
//! formatting, writing to a slow terminal or pipe) keeps a ring full.
//!
//! Why a thread (measured on the 2-vCPU VM, `hwbp run --json --backtrace --watch counter --
//! watch_target 50000`, docs/BENCHMARKS.md): a sample with an 8 KiB user-stack copy is 8312
//! bytes, so a 32 MiB ring held 4036 of them. When the session drained, unwound and
//! symbolized in one loop, its first batch (2019 samples, woken at half a ring) took 302 ms
//! to symbolize — loading libc's debug info for the callers' frames — while the ring filled:
//! 10,000–17,000 of 50,000 hits lost per run, nearly all in one `PERF_RECORD_LOST`. Unwinding
//! is cheap (~0.65 µs a sample, done here); symbolizing is not, and may stall for as long as a
//! file takes to load, so it stays in the session, behind this thread. With the thread (and a
//! 64 MiB ring woken at an eighth, `crate::sampler`), 0 of 50,000 and of 200,000 were lost in
//! every run measured, also during a parallel test run.
//!
//! The drainer wakes at each ring's watermark or every [`DRAIN_INTERVAL`], whichever comes
//! first. Its queue is bounded ([`MAX_QUEUED`] hits): when the session falls that far behind,
//! the drainer stops draining and the kernel counts the hits that do not fit as `lost` —
//! memory stays bounded and no hit is dropped silently.
//!
//! Ending: [`Drainer::finish`] asks for a last round — the events are stopped, the rings
//! drained a last time (so the last batch has every recorded hit) — and the thread hands the
//! [`Sampler`] back for the totals.
//!
//! Not for: deciding what a hit means ([`crate::session`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hwbp::ring::record::Sample;
use hwbp::ring::RingStats;
use hwbp::symbols::unwind::Unwinder;

use crate::hit::UnwindMethod;
use crate::sampler::Sampler;

/// The drainer drains at least this often (and at each ring's watermark in between).
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// At most this many hits drained and not yet taken by the session (~120 bytes each with
/// 4 callers: ~60 MiB); beyond, the rings fill and the kernel counts further hits as lost.
pub const MAX_QUEUED: u64 = 1 << 19;

/// At most this many caller frames per hit.
pub(crate) const MAX_FRAMES: usize = 128;

/// `PERF_CONTEXT_*` markers are the top 4095 values of u64.
const PERF_CONTEXT_MAX: u64 = u64::MAX - 4094;

/// A hit as drained, before symbolization.
pub struct Raw {
    /// Index of the watch.
    pub watch: usize,
    /// Thread id.
    pub tid: u32,
    /// Time stamp (perf clock, ns).
    pub time: u64,
    /// CPU it was sampled on.
    pub cpu: Option<u32>,
    /// Sampled IP.
    pub ip: u64,
    /// Return addresses of the callers (`--backtrace`), innermost first.
    pub callers: Vec<u64>,
    /// How `callers` was found (`None` without `--backtrace`).
    pub unwind: Option<UnwindMethod>,
}

/// What one round of draining found.
#[derive(Default)]
pub struct Batch {
    /// The hits, ring after ring (not in time order).
    pub raws: Vec<Raw>,
    /// Thread renames (`PERF_RECORD_COMM`): tid, new name.
    pub comms: Vec<(u32, String)>,
    /// Lines for the user (CPU hotplug news, a failure to stop the events).
    pub notes: Vec<String>,
    /// Totals over every ring so far.
    pub stats: RingStats,
}

struct Shared {
    /// The session asks for the last round.
    finish: AtomicBool,
    /// Hits sent and not yet [`Drainer::taken`].
    queued: AtomicU64,
    /// A newer unwinder (the memory map changed), taken at the next round.
    unwinder: Mutex<Option<Unwinder>>,
}

/// The draining thread and its queue.
pub struct Drainer {
    shared: Arc<Shared>,
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<Sampler>>,
}

impl Drainer {
    /// Starts draining `sampler`'s rings; `unwinder` (`--backtrace`) unwinds the samples that
    /// carry registers and a stack copy.
    pub fn spawn(sampler: Sampler, unwinder: Option<Unwinder>) -> std::io::Result<Drainer> {
        let shared = Arc::new(Shared {
            finish: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            unwinder: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let backtrace = unwinder.is_some();
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("hwbp-drain".into())
            .spawn(move || drain_loop(sampler, unwinder, backtrace, &thread_shared, &tx))?;
        Ok(Drainer {
            shared,
            rx,
            handle: Some(handle),
        })
    }

    /// The next batch, waiting at most `timeout`; `None` if none came, or once the last
    /// batch has been taken after [`Drainer::finish`].
    pub fn next(&self, timeout: Duration) -> Option<Batch> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The session is done with `n` hits of the batches it took (they no longer count
    /// against [`MAX_QUEUED`]).
    pub fn taken(&self, n: usize) {
        let n = n as u64;
        let _ = self
            .shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Unwinds with `u` from the next round on (the memory map changed).
    pub fn set_unwinder(&self, u: Unwinder) {
        *self
            .shared
            .unwinder
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(u);
    }

    /// Asks for the last round: the events are stopped and the rings drained once more. The
    /// batches up to and including that last one then come from [`Drainer::next`] (which
    /// returns `None` after it); [`Drainer::join`] returns the sampler.
    pub fn finish(&self) {
        self.shared.finish.store(true, Ordering::Release);
    }

    /// Every batch not yet taken, through the last one (after [`Drainer::finish`]).
    pub fn rest(&self) -> impl Iterator<Item = Batch> + '_ {
        self.rx.iter()
    }

    /// Waits for the thread (after [`Drainer::finish`]) and returns the sampler.
    pub fn join(mut self) -> Sampler {
        self.finish();
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(s) => s,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.shared.finish.store(true, Ordering::Release);
            // Dropping the sampler closes the events; a panic there was already printed.
            let _ = h.join();
        }
    }
}

fn drain_loop(
    mut sampler: Sampler,
    mut unwinder: Option<Unwinder>,
    backtrace: bool,
    shared: &Shared,
    tx: &Sender<Batch>,
) -> Sampler {
    loop {
        let last = shared.finish.load(Ordering::Acquire);
        let mut batch = Batch::default();
        let mut ready = false;
        if last {
            // Nothing is counted or recorded after this: the drain below is the last one.
            if let Err(e) = sampler.stop() {
                batch.notes.push(format!(
                    "cannot stop the watches before the last read ({e}): hits made after it \
                     may be counted as lost"
                ));
            }
        } else if shared.queued.load(Ordering::Acquire) >= MAX_QUEUED {
            // The session is far behind: leave the hits in the rings (the kernel counts what
            // does not fit as lost) rather than grow without bound.
            std::thread::sleep(DRAIN_INTERVAL);
            continue;
        } else {
            ready = sampler.poll(DRAIN_INTERVAL);
        }
        if let Some(u) = shared
            .unwinder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            unwinder = Some(u);
        }
        let raws = &mut batch.raws;
        let comms = &mut batch.comms;
        let samples = sampler.drain(
            |s| {
                let Some(watch) = s.watch else { return };
                let (callers, unwind) = if backtrace {
                    let (c, m) = callers(unwinder.as_mut(), &s.sample);
                    (c, Some(m))
                } else {
                    (Vec::new(), None)
                };
                raws.push(Raw {
                    watch,
                    tid: s.sample.tid.unwrap_or(0),
                    time: s.sample.time.unwrap_or(0),
                    cpu: s.sample.cpu,
                    ip: s.sample.ip.unwrap_or(0),
                    callers,
                    unwind,
                });
            },
            |tid, name| comms.push((tid, name.to_owned())),
        );
        batch
            .notes
            .extend(sampler.hotplug_news().iter().map(ToString::to_string));
        batch.stats = sampler.stats();
        let something = samples > 0 || !batch.comms.is_empty();
        if ready && !something {
            // Readable but empty: a ring owner whose thread exited reports POLLHUP for good.
            // Poll no more often than the interval then, rather than spin.
            std::thread::sleep(DRAIN_INTERVAL);
        }
        if something || !batch.notes.is_empty() || last {
            shared
                .queued
                .fetch_add(batch.raws.len() as u64, Ordering::AcqRel);
            // The session is gone (it returned early on an error): nothing more to do.
            if tx.send(batch).is_err() {
                return sampler;
            }
        }
        if last {
            return sampler;
        }
    }
}

/// The callers of a sampled hit: DWARF-unwound from the sampled registers and stack when the
/// sample has them and that finds at least one caller, else the kernel's frame-pointer
/// callchain (without the sampled IP itself).
fn callers(unwinder: Option<&mut Unwinder>, s: &Sample<'_>) -> (Vec<u64>, UnwindMethod) {
    if let (Some(u), Some(regs), Some(stack)) = (unwinder, s.regs_user, s.stack_user) {
        if let (1.., Some(bp), Some(sp), Some(ip)) = (
            regs.abi,
            regs.regs.get(0),
            regs.regs.get(1),
            regs.regs.get(2),
        ) {
            let frames = u.unwind([bp, sp, ip], stack.data, MAX_FRAMES);
            if !frames.is_empty() {
                return (frames, UnwindMethod::Dwarf);
            }
        }
    }
    let fp = s
        .callchain
        .map(|c| {
            c.iter()
                .filter(|&ip| ip < PERF_CONTEXT_MAX)
                .skip(1) // the sampled IP itself
                .take(MAX_FRAMES)
                .collect()
        })
        .unwrap_or_default();
    (fp, UnwindMethod::FramePointer)
}
