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
//! CPUs that come online after arming get no events (and no ring) in a stream: a stream has
//! no `refresh`; re-arm it after hotplug.
//!
//! The watch is armed disabled, its rings mapped, and only then enabled, so no hit happens
//! while an event has no ring (such a hit would be counted but neither recorded nor reported
//! lost). After that, every hit is either a sample or part of a `PERF_RECORD_LOST` count:
//! `samples + lost == hits`, once the kernel has written its pending lost record (it does so
//! at the next sample that fits).

use std::time::Duration;

use hwbp_core::Spec;

use crate::error::{At, Error, ErrorCtx, Op};
use crate::ring::record::{sample_bits, Record, Sample, SampleFormat};
use crate::ring::{PerfRing, RingStats};
use crate::sys::{Ioctl, RealSys, Scope, Sys};
use crate::target::Target;
use crate::watch::{Sampling, Watch, WatchOptions};

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
    scope: Scope,
    /// Index into the watch's events of the ring's owner (for poll).
    owner: usize,
}

/// A [`Watch`] that delivers every hit as a sample.
pub struct Stream {
    // Rings first: fields drop in order, so rings are unmapped before the events close.
    rings: Vec<RingSlot>,
    /// (event id, piece, scope), sorted by id.
    ids: Vec<(u64, u32, Scope)>,
    unknown_ids: u64,
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
        use sample_bits as b;
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
        let mut watch = Watch::with_options(target, spec, &wopts)?;
        let sys = RealSys;
        let mut rings: Vec<RingSlot> = Vec::new();
        let mut ids = Vec::new();
        for (index, e) in watch.events().enumerate() {
            let at = Some(At {
                scope: e.scope,
                piece: e.piece,
            });
            let fail = |op, errno| Error::sys(op, at, errno, &ErrorCtx::default());
            match rings.iter().find(|r| same_ring(r.scope, e.scope)) {
                Some(owner) => {
                    let owner_fd = watch.events().nth(owner.owner).map(|o| o.fd);
                    sys.ioctl(e.fd, Ioctl::SetOutput(owner_fd))
                        .map_err(|errno| fail(Op::SetOutput, errno))?;
                }
                None => {
                    let ring = PerfRing::map(e.fd, opts.data_pages_log2, format).map_err(|io| {
                        fail(Op::Mmap, crate::sys::Errno(io.raw_os_error().unwrap_or(0)))
                    })?;
                    rings.push(RingSlot {
                        ring,
                        scope: e.scope,
                        owner: index,
                    });
                }
            }
            let id = sys
                .ioctl(e.fd, Ioctl::Id)
                .map_err(|errno| fail(Op::Id, errno))?;
            ids.push((id, e.piece, e.scope));
        }
        ids.sort_unstable_by_key(|x| x.0);
        if !opts.disabled {
            watch.enable()?;
        }
        Ok(Stream {
            rings,
            ids,
            unknown_ids: 0,
            watch,
        })
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
        let ids = &self.ids;
        let unknown = &mut self.unknown_ids;
        for slot in &mut self.rings {
            slot.ring.drain(|rec| {
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
        }
        hits
    }

    /// Waits until some ring reached its wakeup point, or `timeout` passed (`None`: no
    /// limit); returns whether one did.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let events: Vec<_> = self.watch.events().collect();
        let fds: Vec<_> = self
            .rings
            .iter()
            .filter_map(|r| events.get(r.owner).map(|e| e.fd))
            .collect();
        crate::ring::poll_readable(&fds, timeout).map_err(|io| {
            let errno = crate::sys::Errno(io.raw_os_error().unwrap_or(0));
            Error::sys(Op::Read, None, errno, &ErrorCtx::default())
        })
    }

    /// Totals over every ring so far.
    pub fn stats(&self) -> StreamStats {
        let mut ring = RingStats::default();
        for s in &self.rings {
            let r = s.ring.stats();
            ring.samples += r.samples;
            ring.lost += r.lost;
            ring.lost_records += r.lost_records;
            ring.throttles += r.throttles;
            ring.unthrottles += r.unthrottles;
            ring.other += r.other;
            ring.malformed += r.malformed;
            ring.corrupt_bytes += r.corrupt_bytes;
        }
        StreamStats {
            ring,
            unknown_ids: self.unknown_ids,
        }
    }
}
