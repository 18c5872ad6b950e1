//! Stream delivery: every hit of a [`Watch`] as a sample (IP, TID, time, CPU, which piece;
//! optionally callchain, user registers and user stack bytes) read from perf ring buffers.
//!
//! Not for: decoding records (that is [`crate::ring`]) or arming (that is [`Watch`]).
//!
//! Layout: one ring per thread or CPU the watch has events on. The first event of each
//! thread/CPU owns the ring; the watch's other pieces on that thread/CPU send their records
//! into it with `PERF_EVENT_IOC_SET_OUTPUT` (the kernel allows sharing only between events of
//! the same task or the same CPU, `perf_event_set_output()`). A process watch opens every
//! thread once per online CPU (the kernel refuses to mmap inherited per-task events), so its
//! rings are per CPU, shared by every thread's events on that CPU. Threads created later
//! inherit the watch and write into their parent event's ring (`perf_output_begin()`
//! redirects inherited events to the parent). Samples carry `PERF_SAMPLE_IDENTIFIER`, the
//! primary (parent) event's id, which `PERF_EVENT_IOC_ID` maps back to the piece.
//!
//! CPU hotplug ([`Stream::refresh`], or [`crate::HotplugMonitor::spawn_streams`] in the
//! background): a CPU-bound stream's events on a CPU that went offline are dead (Linux does not
//! bring them back); refresh copies the unread records of that CPU's ring into memory (still
//! delivered by [`Stream::drain`]), unmaps the ring and closes the events (freeing their
//! slots), then opens the CPU's events disabled, maps a new ring and enables them. A process
//! stream's per-(thread, CPU) events survive hotplug; a CPU that was offline when it was armed
//! gets events on every thread (held still like arming) and a ring.
//!
//! The watch is armed disabled, its rings mapped, and only then enabled, so no hit happens
//! while an event has no ring (such a hit would be counted but neither recorded nor reported
//! lost). After that, every hit is either a sample or part of a `PERF_RECORD_LOST` count:
//! `samples + lost == hits`, once the kernel has written its pending lost record (it does so
//! at the next sample that fits).

use std::time::Duration;

use hwbp_core::Spec;

use crate::attr::sample;
use crate::error::{At, Error, ErrorCtx, Op};
use crate::ring::record::{Record, Sample, SampleFormat};
use crate::ring::{MemRing, PerfRing, RingMemory, RingReader, RingStats};
use crate::sys::{Ioctl, RealSys, Scope, Sys};
use crate::target::Target;
use crate::watch::{Liveness, Refresh, Sampling, Watch, WatchOptions};

/// When the kernel wakes a [`Stream::poll`]er.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// After this many samples (`wakeup_events`).
    Samples(u32),
    /// After this many bytes (`watermark` + `wakeup_watermark`).
    Bytes(u32),
}

/// What each sample carries beyond IP, TID, time, address, CPU and piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Record the user callchain (`PERF_SAMPLE_CALLCHAIN`).
    pub callchain: bool,
    /// User registers to record (`sample_regs_user`, `enum perf_event_x86_regs` bit numbers
    /// on x86-64); 0 = none.
    pub regs_user: u64,
    /// Bytes of user stack to copy from the stack pointer (for unwinding); 0 = none. The
    /// kernel rounds up to 8 and caps the sample at 64 KiB.
    pub stack_user_bytes: u32,
    /// Each ring has `2^data_pages_log2` data pages.
    pub data_pages_log2: u32,
    /// When to wake a poller; `None` = when a ring is half full.
    pub wakeup: Option<Wakeup>,
    /// Leave the watch disabled after arming (see [`Stream::enable`]).
    pub disabled: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            callchain: false,
            regs_user: 0,
            stack_user_bytes: 0,
            data_pages_log2: 4,
            wakeup: None,
            disabled: false,
        }
    }
}

/// One hit from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// Which planned piece of the watch fired (`None`: an id this stream does not know,
    /// counted in [`StreamStats::unknown_ids`]).
    pub piece: Option<u32>,
    /// The thread or CPU whose event recorded it (for a process watch: the armed thread the
    /// hitting thread inherited from; [`Sample::tid`] is the thread that hit).
    pub scope: Option<Scope>,
    /// The sample itself: `id`, `ip`, `pid`/`tid`, `time`, `addr` (the piece's address),
    /// `stream_id`, `cpu`, and the optional callchain, registers and stack bytes.
    pub sample: Sample<'a>,
}

/// Totals of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Summed over all rings.
    pub ring: RingStats,
    /// Samples whose id matched no event of this watch.
    pub unknown_ids: u64,
}

struct RingSlot {
    ring: PerfRing,
    /// The ring owner's scope and piece (its event is the one mapped, and polled).
    scope: Scope,
    piece: u32,
}

/// A [`Watch`] that delivers every hit as a sample.
pub struct Stream {
    // Rings first: fields drop in order, so rings are unmapped before the events close.
    rings: Vec<RingSlot>,
    /// Unread records of rings unmapped by a hotplug refresh, delivered by the next drain.
    backlog: Vec<RingReader<MemRing>>,
    /// Stats of rings gone (drained backlog).
    retired_stats: RingStats,
    /// (event id, piece, scope), sorted by id.
    ids: Vec<(u64, u32, Scope)>,
    unknown_ids: u64,
    format: SampleFormat,
    data_pages_log2: u32,
    watch: Watch,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("rings", &self.rings.len())
            .field("ids", &self.ids)
            .field("watch", &self.watch)
            .finish()
    }
}

/// Whether events bound to `a` and `b` may share a ring: the same task with `cpu == -1`, or
/// the same CPU (`perf_event_set_output()`).
fn same_ring(a: Scope, b: Scope) -> bool {
    match (a, b) {
        (Scope::Thread(x), Scope::Thread(y)) => x == y,
        (Scope::Cpu(x) | Scope::ThreadOnCpu(_, x), Scope::Cpu(y) | Scope::ThreadOnCpu(_, y)) => {
            x == y
        }
        _ => false,
    }
}

impl Stream {
    /// The `sample_type` a stream opens its events with.
    pub fn sample_format(opts: &StreamOptions) -> SampleFormat {
        use sample as b;
        let mut t = b::IDENTIFIER | b::IP | b::TID | b::TIME | b::ADDR | b::CPU | b::STREAM_ID;
        if opts.callchain {
            t |= b::CALLCHAIN;
        }
        if opts.regs_user != 0 {
            t |= b::REGS_USER;
        }
        if opts.stack_user_bytes != 0 {
            t |= b::STACK_USER | b::REGS_USER;
        }
        SampleFormat {
            sample_type: t,
            regs_user_mask: opts.regs_user,
        }
    }

    /// Arms a streaming watch: opens every event disabled, maps one ring per thread/CPU,
    /// routes the other pieces into it, then enables (unless `opts.disabled`).
    pub fn new(target: Target, spec: Spec, opts: &StreamOptions) -> Result<Stream, Error> {
        let format = Stream::sample_format(opts);
        let page = crate::sys::mmap::page_size() as u64;
        let data_bytes = page << opts.data_pages_log2.min(20);
        let (wakeup, watermark) = match opts.wakeup {
            Some(Wakeup::Samples(n)) => (n.max(1), false),
            Some(Wakeup::Bytes(n)) => (n.max(1), true),
            None => (u32::try_from(data_bytes / 2).unwrap_or(u32::MAX), true),
        };
        let sampling = Sampling {
            sample_type: format.sample_type,
            sample_period: 1,
            wakeup,
            watermark,
            sample_id_all: false,
            sample_regs_user: format.regs_user_mask,
            sample_stack_user: opts.stack_user_bytes,
        };
        let wopts = WatchOptions {
            disabled: true,
            sampling: Some(sampling),
            ..WatchOptions::default()
        };
        let watch = Watch::with_options(target, spec, &wopts)?;
        let mut stream = Stream {
            rings: Vec::new(),
            backlog: Vec::new(),
            retired_stats: RingStats::default(),
            ids: Vec::new(),
            unknown_ids: 0,
            format,
            data_pages_log2: opts.data_pages_log2,
            watch,
        };
        stream.attach(0)?;
        if !opts.disabled {
            stream.watch.enable()?;
        }
        Ok(stream)
    }

    /// Gives the watch's events from index `start` on a ring: the first event of each
    /// thread/CPU without one gets a new ring, the others send their records into it.
    fn attach(&mut self, start: usize) -> Result<(), Error> {
        let sys = RealSys;
        for e in self.watch.events().skip(start) {
            let at = Some(At {
                scope: e.scope,
                piece: e.piece,
            });
            let fail = |op, errno| Error::sys(op, at, errno, &ErrorCtx::default());
            match self.rings.iter().find(|r| same_ring(r.scope, e.scope)) {
                Some(owner) => {
                    let owner_fd = self
                        .watch
                        .events()
                        .find(|o| o.scope == owner.scope && o.piece == owner.piece)
                        .map(|o| o.fd);
                    sys.ioctl(e.fd, Ioctl::SetOutput(owner_fd))
                        .map_err(|errno| fail(Op::SetOutput, errno))?;
                }
                None => {
                    let ring =
                        PerfRing::map(e.fd, self.data_pages_log2, self.format).map_err(|io| {
                            fail(Op::Mmap, crate::sys::Errno(io.raw_os_error().unwrap_or(0)))
                        })?;
                    self.rings.push(RingSlot {
                        ring,
                        scope: e.scope,
                        piece: e.piece,
                    });
                }
            }
            let id = sys
                .ioctl(e.fd, Ioctl::Id)
                .map_err(|errno| fail(Op::Id, errno))?;
            let at = self.ids.partition_point(|x| x.0 < id);
            self.ids.insert(at, (id, e.piece, e.scope));
        }
        Ok(())
    }

    /// Brings the stream up to date with CPU hotplug (see the module docs): a CPU-bound
    /// stream's CPU that came back online gets new events and a new ring (the old ring's
    /// unread records stay deliverable); a CPU that was offline when the stream was armed gets
    /// events and a ring. Like [`Watch::refresh`], this may wait ~11 ms per CPU-bound CPU to
    /// tell a live event from a dead one.
    pub fn refresh(&mut self) -> Result<Refresh, Error> {
        self.refresh_by(Liveness::Wait)
    }

    /// [`Stream::refresh`] for periodic callers (the [`crate::HotplugMonitor`]): never
    /// sleeps; see [`Watch::refresh_polled`].
    pub fn refresh_polled(&mut self) -> Result<Refresh, Error> {
        self.refresh_by(Liveness::SinceLastPoll)
    }

    fn refresh_by(&mut self, how: Liveness) -> Result<Refresh, Error> {
        let mut report = self.watch.plan_refresh(how)?;
        let mut first_err = None;
        for cpu in std::mem::take(&mut report.reopened) {
            // Keep the dead rings' records, unmap them: the mapping holds the owner event.
            let (gone, kept): (Vec<RingSlot>, Vec<RingSlot>) = std::mem::take(&mut self.rings)
                .into_iter()
                .partition(|r| matches!(r.scope, Scope::Cpu(c) if c == cpu));
            self.rings = kept;
            for r in gone {
                self.backlog.push(r.ring.to_mem_ring());
            }
            self.watch.retire_cpu(cpu);
            let reopened = self.watch.open_cpu(cpu, true).and_then(|start| {
                self.attach(start)?;
                self.watch.enable_from(start)
            });
            match reopened {
                Ok(()) => report.reopened.push(cpu),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(report), Err)
    }

    /// The underlying watch (counts, pieces, events).
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Starts recording hits (see [`Watch::enable`]).
    ///
    /// There is no `modify` for a stream: a modify that changes the number of pieces opens
    /// events without a ring. Drop the stream and arm a new one instead.
    pub fn enable(&mut self) -> Result<(), Error> {
        self.watch.enable()
    }

    /// Stops recording hits; the slots stay reserved (see [`Watch::disable`]).
    pub fn disable(&mut self) -> Result<(), Error> {
        self.watch.disable()
    }

    /// Number of rings (threads/CPUs with events).
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Reads every record now in every ring; calls `f` for each hit. Lost, throttle and
    /// other records are accounted in [`Stream::stats`]. Returns the number of hits.
    /// Does not allocate.
    pub fn drain(&mut self, mut f: impl FnMut(&Hit<'_>)) -> usize {
        let mut hits = 0;
        for old in &mut self.backlog {
            hits += drain_ring(old, &self.ids, &mut self.unknown_ids, &mut f);
            self.retired_stats.add(&old.stats());
        }
        self.backlog.clear();
        for slot in &mut self.rings {
            hits += drain_ring(&mut slot.ring, &self.ids, &mut self.unknown_ids, &mut f);
        }
        hits
    }

    /// Waits until some ring reached its wakeup point, or `timeout` passed (`None`: no
    /// limit); returns whether one did.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let fds: Vec<_> = self
            .rings
            .iter()
            .filter_map(|r| {
                self.watch
                    .events()
                    .find(|e| e.scope == r.scope && e.piece == r.piece)
                    .map(|e| e.fd)
            })
            .collect();
        crate::ring::poll_readable(&fds, timeout).map_err(|io| {
            let errno = crate::sys::Errno(io.raw_os_error().unwrap_or(0));
            Error::sys(Op::Read, None, errno, &ErrorCtx::default())
        })
    }

    /// Totals over every ring so far.
    pub fn stats(&self) -> StreamStats {
        let mut ring = self.retired_stats;
        for r in &self.backlog {
            ring.add(&r.stats());
        }
        for s in &self.rings {
            ring.add(&s.ring.stats());
        }
        StreamStats {
            ring,
            unknown_ids: self.unknown_ids,
        }
    }
}

/// Drains one ring, mapping sample ids to pieces; returns the number of hits.
fn drain_ring<M: RingMemory>(
    ring: &mut RingReader<M>,
    ids: &[(u64, u32, Scope)],
    unknown: &mut u64,
    f: &mut impl FnMut(&Hit<'_>),
) -> usize {
    let mut hits = 0;
    ring.drain(|rec| {
        if let Record::Sample(sample) = rec {
            let found = sample
                .id
                .and_then(|id| ids.binary_search_by_key(&id, |x| x.0).ok())
                .map(|i| ids[i]);
            if found.is_none() {
                *unknown += 1;
            }
            hits += 1;
            f(&Hit {
                piece: found.map(|x| x.1),
                scope: found.map(|x| x.2),
                sample,
            });
        }
    });
    hits
}
