//! Every hit of several watches on a whole process — its threads now and every thread it
//! creates later — as samples in one perf ring per CPU.
//!
//! Why not [`hwbp::stream::Stream`] on [`hwbp::Target::Process`]: following future threads
//! needs `inherit`, and the kernel refuses to `mmap` an inherited per-task event that is not
//! bound to a CPU (`perf_mmap()`: "Don't allow mmap() of inherited per-task counters"). So,
//! as `perf record` does for a workload, each (thread, piece) gets one event per CPU
//! (`pid = tid, cpu = n`, `inherit` + `inherit_thread`), and all events on CPU `n` write into
//! CPU `n`'s ring (`PERF_EVENT_IOC_SET_OUTPUT` allows sharing between events of one CPU).
//! Inherited children write into their parent's ring; samples carry the parent's id
//! (`PERF_SAMPLE_IDENTIFIER`), which maps back to (watch, piece).
//!
//! Arming is transactional: everything is opened disabled; on any failure every event opened
//! so far is closed (dropped) and the error names the thread, CPU and piece with the errno's
//! cause and fix; only when the rings of all online CPUs are mapped are the events enabled
//! (those of offline CPUs too: see below).
//!
//! CPU hotplug (review demand 1), measured on 6.18 (x86-64, 2 CPUs): a per-task event bound to
//! CPU 1 lives in the task's context, not the CPU's, so it survives CPU 1 going offline and
//! coming back, and keeps counting and sampling into its ring (unlike CPU-wide events, which
//! Linux drops at offline). Such an event can also be opened, mapped and enabled while CPU 1 is
//! offline, and counts from the moment CPU 1 is back; a thread created while CPU 1 was offline
//! inherits it like any other. Hence the events are opened on every *possible* CPU, not only
//! the online ones: every thread — armed, or created later at any time — has events on every
//! CPU it can ever run on, and no thread needs re-arming when a CPU comes online. (Opening
//! only the online CPUs, as before, silently missed every hit on a CPU that came online later,
//! in every thread.) The cost: threads × pieces events and fds for each offline CPU as well.
//! Not measured here: a CPU that is possible but not present.
//!
//! Rings are mapped for the CPUs online at arming; a CPU that comes online later gets its ring
//! from a [`HotplugMonitor`] (every [`HOTPLUG_POLL`]): the first of its events is mapped, the
//! others are redirected into it, and [`Sampler::hotplug_news`] tells the session. A hit on
//! that CPU before then is counted by its event but has no ring to be recorded in (the kernel
//! drops the sample without a `PERF_RECORD_LOST`); [`Sampler::unrecorded`] reports such hits
//! — events' counts minus recorded and lost samples, per CPU — so nothing is lost silently.
//! The same holds when the ring cannot be mapped (the error is in the news), and for samples
//! a full ring dropped just before the events were stopped (the kernel reports drops only at
//! the ring's next successful write).
//!
//! Ring sizing and wake-up (measured for `--backtrace`, see `crate::drainer`): a sample is
//! 48 bytes, or 8312 with an 8 KiB user-stack copy; each ring wakes its reader at an eighth
//! ([`WAKEUP_FRACTION_LOG2`]), and the reader is a thread that does nothing but drain, so the
//! other seven eighths only have to cover that thread's scheduling delay.
//!
//! Without `CAP_IPC_LOCK` the rings may be smaller than asked for (`crate::ring_budget`):
//! sized from the locked-memory limits before the events are opened, then halved while the
//! kernel still refuses a mapping (`EPERM`), down to [`MIN_DATA_PAGES_LOG2`]; every CPU's
//! ring, late ones too, has the same size, and [`Sampler::shrunk`] says why.
//!
//! Not for: counting (use [`hwbp::Watch`], which is exact and cheaper).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hwbp::attr::{Flag, PerfEventAttr};
use hwbp::error::{At, ErrorCtx, Holders, Op};
use hwbp::hotplug::Refreshable;
use hwbp::ring::record::{sample_bits as b, Record, Sample, SampleFormat};
use hwbp::ring::{PerfRing, RingStats};
use hwbp::seize::{Outcome, Seized};
use hwbp::sys::{Cpu, Errno, Ioctl, Pid, RealSys, Scope, Sys, Tid};
use hwbp::watch::Refresh;
use hwbp::{target, Arming, Error, HotplugMonitor, LiveReason};
use hwbp_core::arch::{Arch, Chunk, NativeArch};
use hwbp_core::Spec;

use crate::ring_budget::{self, Shrunk, MIN_DATA_PAGES_LOG2};

/// `PERF_RECORD_COMM`.
const PERF_RECORD_COMM: u32 = 3;

/// A ring's reader is woken (`wakeup_watermark`) once `1 / 2^WAKEUP_FRACTION_LOG2` of it is
/// used, not at half (the kernel's default): the reader (`crate::drainer`) then has the other
/// seven eighths as slack for being scheduled, at the cost of a wake-up per 8 MiB with
/// `--backtrace` (~1000 samples of 8312 bytes) and per 1 MiB without (~21,800 of 48).
pub const WAKEUP_FRACTION_LOG2: u32 = 3;

/// How often the [`HotplugMonitor`] looks for a CPU that came online without a ring.
pub const HOTPLUG_POLL: Duration = Duration::from_millis(10);

/// How samples are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Record the user callchain (`--backtrace`).
    pub callchain: bool,
    /// Bytes of user stack to copy with each sample, with the user registers DWARF unwinding
    /// needs (`--backtrace` on x86-64); 0: none.
    pub user_stack: u32,
    /// Each CPU's ring has `2^data_pages_log2` data pages, or fewer where the locked-memory
    /// limits allow less ([`Sampler::shrunk`]).
    pub data_pages_log2: u32,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            callchain: false,
            user_stack: 0,
            // 8 MiB per CPU: at ~200k hits/s (5 us per hit) and 48 bytes per sample, a
            // second of slack for a consumer that is descheduled.
            data_pages_log2: 11,
        }
    }
}

struct Ring {
    ring: PerfRing,
    /// Index into `events` of the ring's owner (for poll).
    owner: usize,
    cpu: Cpu,
}

/// What CPU hotplug changed (see [`Sampler::hotplug_news`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hotplugged {
    /// The CPU came online and its ring is mapped: its hits are recorded from now on (earlier
    /// ones are in [`Sampler::unrecorded`]).
    Recording(Cpu),
    /// The CPU came online but its ring could not be mapped (not retried): its hits are
    /// counted in [`Sampler::unrecorded`] only.
    Failed(Cpu, Error),
}

impl std::fmt::Display for Hotplugged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hotplugged::Recording(cpu) => write!(
                f,
                "CPU {cpu} came online: recording its hits (any made there before this are \
                 counted as lost)"
            ),
            Hotplugged::Failed(cpu, e) => write!(
                f,
                "CPU {cpu} came online but its hits cannot be recorded ({e}); they are counted \
                 as lost"
            ),
        }
    }
}

/// The events and rings; shared with the [`HotplugMonitor`], which maps the ring of a CPU
/// that comes online.
struct Rings {
    // Rings first: fields drop in order, so rings are unmapped before the events close.
    rings: Vec<Ring>,
    events: Vec<(OwnedFd, Cpu)>,
    /// (event id, watch index), sorted by id.
    ids: Vec<(u64, usize)>,
    unknown_ids: u64,
    format: SampleFormat,
    data_pages_log2: u32,
    /// CPUs with events but no ring when the events were enabled (offline at arming).
    late: BTreeSet<Cpu>,
    /// Late CPUs whose ring could not be mapped.
    failed: BTreeSet<Cpu>,
    /// Not yet taken by [`Sampler::hotplug_news`].
    news: Vec<Hotplugged>,
}

/// The armed watches of one process.
pub struct Sampler {
    /// Declared first: stopped (its thread joined) before anything else is dropped.
    _monitor: Option<HotplugMonitor>,
    shared: Arc<Mutex<Rings>>,
    /// Copies of the ring owners' fds, so that [`Sampler::poll`] waits without holding the
    /// lock the monitor needs.
    poll_fds: Vec<OwnedFd>,
    /// How the threads were armed: held still (exact) or live (with the reason).
    arming: Arming,
    /// The rings are smaller than asked for, and why.
    shrunk: Option<Shrunk>,
}

/// One decoded hit: which watch, and the sample.
pub struct Sampled<'a> {
    /// Index of the watch (`specs` order); `None` for an unknown id.
    pub watch: Option<usize>,
    /// The sample.
    pub sample: Sample<'a>,
}

impl Sampler {
    /// The sample layout.
    pub fn format(opts: &SamplerOptions) -> SampleFormat {
        let mut t = b::IDENTIFIER | b::IP | b::TID | b::TIME | b::CPU;
        if opts.callchain {
            t |= b::CALLCHAIN;
        }
        let mut regs_user_mask = 0;
        if opts.user_stack > 0 {
            t |= b::REGS_USER | b::STACK_USER;
            regs_user_mask = hwbp::symbols::unwind::X86_64_REGS_MASK;
        }
        SampleFormat {
            sample_type: t,
            regs_user_mask,
        }
    }

    /// Arms every spec on every thread of `pid` (and its future threads) on every possible
    /// CPU, disabled, maps the rings of the online CPUs, then enables everything; a CPU that
    /// comes online later gets its ring from a background [`HotplugMonitor`].
    pub fn arm(pid: Pid, specs: &[Spec], opts: &SamplerOptions) -> Result<Sampler, Error> {
        let arch = NativeArch::new();
        let plans: Vec<Vec<Chunk>> = specs
            .iter()
            .map(|s| arch.plan(s))
            .collect::<Result<_, _>>()?;
        // Offline CPUs too: per-task events on them are accepted and count once the CPU is
        // back (module docs), so no thread needs re-arming when a CPU comes online.
        let cpus = target::possible_cpus()?;
        let format = Sampler::format(opts);
        let page = hwbp::sys::mmap::page_size() as u64;
        // As big as asked for, or as the locked-memory limits allow for a ring per possible
        // CPU (late CPUs get theirs later, of the same size).
        let limits = hwbp::caps::LockLimits::read();
        let rings = u64::try_from(cpus.len()).unwrap_or(u64::MAX);
        let mut data_pages_log2 = ring_budget::fit_log2(
            limits.budget_pages(page, hwbp::caps::pinned_kb()),
            rings,
            opts.data_pages_log2,
            MIN_DATA_PAGES_LOG2,
        );
        // Wake the reader once an eighth of the ring is used: the other seven eighths are the
        // slack for its wake-up (see `WAKEUP_FRACTION_LOG2`). (A ring halved further below
        // wakes later: the kernel caps the watermark at the ring's size.)
        let wakeup_bytes = (page << data_pages_log2) >> WAKEUP_FRACTION_LOG2;
        let mut s = Rings {
            rings: Vec::new(),
            events: Vec::new(),
            ids: Vec::new(),
            unknown_ids: 0,
            format,
            data_pages_log2,
            late: BTreeSet::new(),
            failed: BTreeSet::new(),
            news: Vec::new(),
        };
        let sys = RealSys;
        // Hold another process still (ptrace seize + interrupt, invisible to job control)
        // while its threads are armed: the listing below is then the whole process and no
        // thread is created or inherits meanwhile, so each is armed exactly once
        // (`hwbp::seize`). The guard detaches them when this function returns. Where that is
        // impossible (this process, a thread already traced — e.g. `run`'s own child, held at
        // its entry point with one thread — or ptrace refused) arm live and record why.
        let (_held, arming) = if pid == Pid::current() {
            (None, Arming::Live(LiveReason::CallingProcess))
        } else {
            match Seized::freeze(pid)? {
                Outcome::Held(h) => (Some(h), Arming::Seized),
                Outcome::Live(why) => (None, Arming::Live(why)),
            }
        };
        let mut done: BTreeSet<Tid> = BTreeSet::new();
        // Re-list until a listing shows no thread that has not been armed (live arming: see
        // `hwbp::watch` for what that closes of the race with thread creation and what not).
        loop {
            let new: Vec<Tid> = target::list_threads(pid)?
                .difference(&done)
                .copied()
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                done.insert(tid);
                let (before, before_ids) = (s.events.len(), s.ids.len());
                match s.open_thread(&sys, pid, tid, &cpus, &plans, wakeup_bytes, opts.user_stack) {
                    Ok(()) => {}
                    // Gone between listing and arming.
                    Err(e) if e.errno() == Some(Errno::ESRCH) => {
                        s.events.truncate(before);
                        s.ids.truncate(before_ids);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        s.ids.sort_unstable_by_key(|x| x.0);
        // Rings for the CPUs online now; the others are late (mapped by the monitor).
        let online = target::online_cpus()?;
        s.late = cpus.difference(&online).copied().collect();
        let now: Vec<Cpu> = cpus.intersection(&online).copied().collect();
        // All rings at one size: on EPERM (locked memory) unmap them and try half the size.
        loop {
            s.data_pages_log2 = data_pages_log2;
            match now.iter().try_for_each(|&cpu| s.map_ring(cpu)) {
                Ok(()) => break,
                Err(e)
                    if e.errno() == Some(Errno::EPERM) && data_pages_log2 > MIN_DATA_PAGES_LOG2 =>
                {
                    s.rings.clear();
                    data_pages_log2 -= 1;
                }
                Err(e) => return Err(e),
            }
        }
        for i in 0..s.rings.len() {
            s.redirect(&sys, i)?;
        }
        for (fd, cpu) in &s.events {
            sys.ioctl(fd.as_fd(), Ioctl::Enable)
                .map_err(|errno| cpu_err(Op::Enable, *cpu, errno))?;
        }
        // Only CPUs without a ring need anything: the others' events outlive hotplug.
        let late = !s.late.is_empty();
        let shared = Arc::new(Mutex::new(s));
        let monitor =
            late.then(|| HotplugMonitor::spawn_any(vec![Arc::clone(&shared)], HOTPLUG_POLL));
        let mut sampler = Sampler {
            _monitor: monitor,
            shared,
            poll_fds: Vec::new(),
            arming,
            shrunk: (data_pages_log2 < opts.data_pages_log2).then_some(Shrunk {
                used: data_pages_log2,
                wanted: opts.data_pages_log2,
                limits,
            }),
        };
        sampler.update_poll_fds();
        Ok(sampler)
    }

    /// How the threads were armed: held still with ptrace (each thread exactly once), or live
    /// and why.
    pub fn arming(&self) -> Arming {
        self.arming
    }

    /// The rings are smaller than [`SamplerOptions::data_pages_log2`] asked for (locked-memory
    /// limits), with the size used and the limits.
    pub fn shrunk(&self) -> Option<Shrunk> {
        self.shrunk
    }

    fn lock(&self) -> MutexGuard<'_, Rings> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies the fds of rings mapped since the last call (rings are only ever added).
    fn update_poll_fds(&mut self) {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for r in s.rings.iter().skip(self.poll_fds.len()) {
            match s.events[r.owner].0.try_clone() {
                Ok(fd) => self.poll_fds.push(fd),
                // Out of fds: this ring is still drained at every poll timeout.
                Err(_) => break,
            }
        }
    }

    /// Waits until a ring reached its wakeup point or `timeout` passed; returns whether one
    /// did. An interrupting signal returns `false` early.
    pub fn poll(&mut self, timeout: Duration) -> bool {
        self.update_poll_fds();
        let fds: Vec<_> = self.poll_fds.iter().map(|fd| fd.as_fd()).collect();
        hwbp::ring::poll_readable(&fds, Some(timeout)).unwrap_or(false)
    }

    /// What CPU hotplug changed since the last call (a CPU that came online and is now
    /// recorded, or could not be).
    pub fn hotplug_news(&self) -> Vec<Hotplugged> {
        std::mem::take(&mut self.lock().news)
    }

    /// Stops every event (and its inherited children): nothing is counted or recorded after
    /// this, so a last [`Sampler::drain`] reads everything and [`Sampler::unrecorded`] is
    /// exact.
    pub fn stop(&self) -> Result<(), Error> {
        let s = self.lock();
        for (fd, cpu) in &s.events {
            RealSys
                .ioctl(fd.as_fd(), Ioctl::Disable)
                .map_err(|errno| cpu_err(Op::Disable, *cpu, errno))?;
        }
        Ok(())
    }

    /// Hits counted by the kernel but neither recorded in a ring nor reported lost by it, on
    /// any CPU: those made on a CPU that came online after arming before its ring was mapped
    /// (or all of them, if it could not be), and samples dropped by a full ring when no
    /// record was written after them (the kernel reports drops with `PERF_RECORD_LOST` at the
    /// ring's next successful write, so drops at the very end are never reported). Exact after
    /// [`Sampler::stop`] and a last drain: then `recorded + lost + unrecorded` = hits.
    pub fn unrecorded(&self) -> u64 {
        let s = self.lock();
        let cpus: BTreeSet<Cpu> = s.events.iter().map(|e| e.1).collect();
        let mut total = 0u64;
        for cpu in cpus {
            let mut counted = 0u64;
            for (fd, _) in s.events.iter().filter(|e| e.1 == cpu) {
                let mut v = [0u64; 1];
                // A read includes the event's inherited children, live or exited.
                if let Ok(1) = RealSys.read(fd.as_fd(), &mut v) {
                    counted = counted.saturating_add(v[0]);
                }
            }
            let recorded: u64 = s
                .rings
                .iter()
                .filter(|r| r.cpu == cpu)
                .map(|r| {
                    let st = r.ring.stats();
                    st.samples.saturating_add(st.lost)
                })
                .sum();
            total = total.saturating_add(counted.saturating_sub(recorded));
        }
        total
    }

    /// Reads every sample now in every ring, ring after ring; `comm` gets every thread
    /// rename (`PERF_RECORD_COMM`: tid, new name).
    pub fn drain(
        &mut self,
        mut f: impl FnMut(Sampled<'_>),
        mut comm: impl FnMut(u32, &str),
    ) -> usize {
        let mut guard = self.lock();
        let s = &mut *guard;
        let ids = &s.ids;
        let unknown = &mut s.unknown_ids;
        let mut n = 0;
        for r in &mut s.rings {
            r.ring.drain(|rec| {
                if let Record::Other {
                    kind: PERF_RECORD_COMM,
                    payload,
                    ..
                } = rec
                {
                    // struct { u32 pid, tid; char comm[]; } (NUL-padded to 8 bytes).
                    if let (Some(tid), Some(name)) = (payload.get(4..8), payload.get(8..)) {
                        let tid = u32::from_le_bytes([tid[0], tid[1], tid[2], tid[3]]);
                        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                        if let Ok(name) = std::str::from_utf8(&name[..end]) {
                            comm(tid, name);
                        }
                    }
                }
                if let Record::Sample(sample) = rec {
                    let watch = sample
                        .id
                        .and_then(|id| ids.binary_search_by_key(&id, |x| x.0).ok())
                        .map(|i| ids[i].1);
                    if watch.is_none() {
                        *unknown += 1;
                    }
                    n += 1;
                    f(Sampled { watch, sample });
                }
            });
        }
        n
    }

    /// Totals over every ring so far (samples, lost).
    pub fn stats(&self) -> RingStats {
        let mut t = RingStats::default();
        for r in &self.lock().rings {
            let s = r.ring.stats();
            t.samples += s.samples;
            t.lost += s.lost;
            t.lost_records += s.lost_records;
        }
        t
    }
}

fn cpu_err(op: Op, cpu: Cpu, errno: Errno) -> Error {
    let at = At {
        scope: Scope::Cpu(cpu),
        piece: 0,
    };
    Error::sys(op, Some(at), errno, &ErrorCtx::default())
}

impl Rings {
    #[allow(clippy::too_many_arguments)]
    fn open_thread(
        &mut self,
        sys: &RealSys,
        pid: Pid,
        tid: Tid,
        cpus: &BTreeSet<Cpu>,
        plans: &[Vec<Chunk>],
        wakeup_bytes: u64,
        user_stack: u32,
    ) -> Result<(), Error> {
        let format = self.format;
        for &cpu in cpus {
            for (watch, pieces) in plans.iter().enumerate() {
                for (piece, chunk) in pieces.iter().enumerate() {
                    let mut bp = chunk.attr;
                    bp.disabled = true;
                    let mut attr = PerfEventAttr::breakpoint(&bp);
                    attr.sample_period = 1;
                    attr.sample_type = format.sample_type;
                    if format.sample_type & b::STACK_USER != 0 {
                        attr.sample_regs_user = format.regs_user_mask;
                        attr.sample_stack_user = user_stack;
                    }
                    attr.set_flag(Flag::Inherit, true);
                    attr.set_flag(Flag::InheritThread, true);
                    // The addresses belong to this program image: an exec removes the watch
                    // rather than watching the same numbers in another program.
                    attr.set_flag(Flag::RemoveOnExec, true);
                    attr.set_flag(Flag::Watermark, true);
                    // Thread names: PERF_RECORD_COMM when a thread renames itself (one event
                    // per thread and CPU asks for them).
                    attr.set_flag(Flag::Comm, watch == 0 && piece == 0);
                    attr.wakeup_events = u32::try_from(wakeup_bytes).unwrap_or(u32::MAX);
                    let scope = Scope::ThreadOnCpu(tid, cpu);
                    let piece = u32::try_from(piece).unwrap_or(u32::MAX);
                    let fd = sys.perf_event_open(&attr, scope, None).map_err(|errno| {
                        let holders = Holders {
                            // At `run`'s entry stop the tracer is hwbp itself: not a holder.
                            tracer: target::tracer_of(pid).filter(|t| *t != Pid::current()),
                            process_perf_events: None,
                            cpu_wide_possible: true,
                            // Task events pinned to a CPU: the task's own slots are the limit.
                            cpu_bound: false,
                        };
                        let ctx = ErrorCtx {
                            attr: Some(bp),
                            pieces: u32::try_from(pieces.len()).unwrap_or(u32::MAX),
                            holders,
                        };
                        Error::sys(Op::Open, Some(At { scope, piece }), errno, &ctx)
                    })?;
                    let id = sys.ioctl(fd.as_fd(), Ioctl::Id).map_err(|errno| {
                        Error::sys(
                            Op::Id,
                            Some(At { scope, piece }),
                            errno,
                            &ErrorCtx::default(),
                        )
                    })?;
                    self.ids.push((id, watch));
                    self.events.push((fd, cpu));
                }
            }
        }
        Ok(())
    }

    /// Gives `cpu` its ring: maps the first of its events, redirects the others into it. The
    /// ring is kept once mapped, even if a redirect then fails (that event's hits are then
    /// counted by [`Sampler::unrecorded`] for a late CPU; arming drops everything).
    fn map_cpu(&mut self, sys: &RealSys, cpu: Cpu) -> Result<(), Error> {
        let before = self.rings.len();
        self.map_ring(cpu)?;
        if self.rings.len() > before {
            self.redirect(sys, before)?;
        }
        Ok(())
    }

    /// Maps the ring of `cpu` on its first event (`data_pages_log2` data pages), if it has
    /// events.
    fn map_ring(&mut self, cpu: Cpu) -> Result<(), Error> {
        let Some(owner) = self.events.iter().position(|e| e.1 == cpu) else {
            return Ok(());
        };
        let ring = PerfRing::map(
            self.events[owner].0.as_fd(),
            self.data_pages_log2,
            self.format,
        )
        .map_err(|io| cpu_err(Op::Mmap, cpu, Errno(io.raw_os_error().unwrap_or(0))))?;
        self.rings.push(Ring { ring, owner, cpu });
        Ok(())
    }

    /// Redirects the other events of ring `i`'s CPU into it.
    fn redirect(&self, sys: &RealSys, i: usize) -> Result<(), Error> {
        let Ring { owner, cpu, .. } = self.rings[i];
        let owner_fd = self.events[owner].0.as_fd();
        for (fd, _) in self.events[owner + 1..].iter().filter(|e| e.1 == cpu) {
            sys.ioctl(fd.as_fd(), Ioctl::SetOutput(Some(owner_fd)))
                .map_err(|errno| cpu_err(Op::SetOutput, cpu, errno))?;
        }
        Ok(())
    }
}

/// Driven by the [`HotplugMonitor`]: maps the ring of every late CPU that is online now.
impl Refreshable for Rings {
    fn refresh_polled(&mut self) -> Result<Refresh, Error> {
        let online = target::online_cpus()?;
        let mut report = Refresh::default();
        let mut first_err = None;
        let due: Vec<Cpu> = self
            .late
            .iter()
            .filter(|c| online.contains(c) && !self.failed.contains(c))
            .filter(|&&c| !self.rings.iter().any(|r| r.cpu == c))
            .copied()
            .collect();
        for cpu in due {
            match self.map_cpu(&RealSys, cpu) {
                Ok(()) => {
                    report.reopened.push(cpu);
                    self.news.push(Hotplugged::Recording(cpu));
                }
                Err(e) => {
                    self.failed.insert(cpu);
                    self.news.push(Hotplugged::Failed(cpu, e));
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(report), Err)
    }
}
