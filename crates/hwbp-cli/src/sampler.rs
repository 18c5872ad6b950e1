//! Every hit of several watches on a whole process — its threads now and every thread it
//! creates later — as samples in one perf ring per CPU.
//!
//! Why not [`hwbp::stream::Stream`] on [`hwbp::Target::Process`]: following future threads
//! needs `inherit`, and the kernel refuses to `mmap` an inherited per-task event that is not
//! bound to a CPU (`perf_mmap()`: "Don't allow mmap() of inherited per-task counters"). So,
//! as `perf record` does for a workload, each (thread, piece) gets one event per online CPU
//! (`pid = tid, cpu = n`, `inherit` + `inherit_thread`), and all events on CPU `n` write into
//! CPU `n`'s ring (`PERF_EVENT_IOC_SET_OUTPUT` allows sharing between events of one CPU).
//! Inherited children write into their parent's ring; samples carry the parent's id
//! (`PERF_SAMPLE_IDENTIFIER`), which maps back to (watch, piece).
//!
//! Arming is transactional: everything is opened disabled; on any failure every event opened
//! so far is closed (dropped) and the error names the thread, CPU and piece with the errno's
//! cause and fix; only when all rings are mapped are the events enabled.
//!
//! CPU hotplug is not followed (a CPU that comes online later has no events); the error paths
//! say so where it matters. Not for: counting (use [`hwbp::Watch`], which is exact and cheaper).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use hwbp::attr::{Flag, PerfEventAttr};
use hwbp::error::{At, ErrorCtx, Holders, Op};
use hwbp::ring::record::{sample_bits as b, Record, Sample, SampleFormat};
use hwbp::ring::{PerfRing, RingStats};
use hwbp::seize::{Outcome, Seized};
use hwbp::sys::{Cpu, Errno, Ioctl, Pid, RealSys, Scope, Sys, Tid};
use hwbp::{target, Arming, Error, LiveReason};
use hwbp_core::arch::{Arch, Chunk, NativeArch};
use hwbp_core::Spec;

/// `PERF_RECORD_COMM`.
const PERF_RECORD_COMM: u32 = 3;

/// How samples are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Record the user callchain (`--backtrace`).
    pub callchain: bool,
    /// Bytes of user stack to copy with each sample, with the user registers DWARF unwinding
    /// needs (`--backtrace` on x86-64); 0: none.
    pub user_stack: u32,
    /// Each CPU's ring has `2^data_pages_log2` data pages.
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

/// The armed watches of one process.
pub struct Sampler {
    // Rings first: fields drop in order, so rings are unmapped before the events close.
    rings: Vec<Ring>,
    events: Vec<(OwnedFd, Cpu)>,
    /// (event id, watch index), sorted by id.
    ids: Vec<(u64, usize)>,
    unknown_ids: u64,
    /// How the threads were armed: held still (exact) or live (with the reason).
    arming: Arming,
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

    /// Arms every spec on every thread of `pid` (and its future threads), disabled, maps the
    /// rings, then enables everything.
    pub fn arm(pid: Pid, specs: &[Spec], opts: &SamplerOptions) -> Result<Sampler, Error> {
        let arch = NativeArch::new();
        let plans: Vec<Vec<Chunk>> = specs
            .iter()
            .map(|s| arch.plan(s))
            .collect::<Result<_, _>>()?;
        let cpus = target::online_cpus()?;
        let format = Sampler::format(opts);
        let page = hwbp::sys::mmap::page_size() as u64;
        let half_ring = (page << opts.data_pages_log2) / 2;
        let mut s = Sampler {
            rings: Vec::new(),
            events: Vec::new(),
            ids: Vec::new(),
            unknown_ids: 0,
            arming: Arming::NotProcess,
        };
        let sys = RealSys;
        // Hold another process still (ptrace seize + interrupt, invisible to job control)
        // while its threads are armed: the listing below is then the whole process and no
        // thread is created or inherits meanwhile, so each is armed exactly once
        // (`hwbp::seize`). The guard detaches them when this function returns. Where that is
        // impossible (this process, a thread already traced — e.g. `run`'s own child, held at
        // its entry point with one thread — or ptrace refused) arm live and record why.
        let _held;
        (_held, s.arming) = if pid == Pid::current() {
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
                match s.open_thread(
                    &sys,
                    pid,
                    tid,
                    &cpus,
                    &plans,
                    &format,
                    half_ring,
                    opts.user_stack,
                ) {
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
        // Rings: the first event on each CPU owns it; the others write into it.
        for i in 0..s.events.len() {
            let (fd, cpu) = (&s.events[i].0, s.events[i].1);
            let fail = |op, errno| {
                Error::sys(
                    op,
                    Some(At {
                        scope: Scope::Cpu(cpu),
                        piece: 0,
                    }),
                    errno,
                    &ErrorCtx::default(),
                )
            };
            match s.rings.iter().find(|r| r.cpu == cpu) {
                Some(r) => {
                    let owner = s.events[r.owner].0.as_fd();
                    sys.ioctl(fd.as_fd(), Ioctl::SetOutput(Some(owner)))
                        .map_err(|e| fail(Op::SetOutput, e))?;
                }
                None => {
                    let ring = PerfRing::map(fd.as_fd(), opts.data_pages_log2, format)
                        .map_err(|io| fail(Op::Mmap, Errno(io.raw_os_error().unwrap_or(0))))?;
                    s.rings.push(Ring {
                        ring,
                        owner: i,
                        cpu,
                    });
                }
            }
        }
        s.ids.sort_unstable_by_key(|x| x.0);
        for (fd, cpu) in &s.events {
            sys.ioctl(fd.as_fd(), Ioctl::Enable).map_err(|errno| {
                Error::sys(
                    Op::Enable,
                    Some(At {
                        scope: Scope::Cpu(*cpu),
                        piece: 0,
                    }),
                    errno,
                    &ErrorCtx::default(),
                )
            })?;
        }
        Ok(s)
    }

    /// How the threads were armed: held still with ptrace (each thread exactly once), or live
    /// and why.
    pub fn arming(&self) -> Arming {
        self.arming
    }

    #[allow(clippy::too_many_arguments)]
    fn open_thread(
        &mut self,
        sys: &RealSys,
        pid: Pid,
        tid: Tid,
        cpus: &BTreeSet<Cpu>,
        plans: &[Vec<Chunk>],
        format: &SampleFormat,
        half_ring: u64,
        user_stack: u32,
    ) -> Result<(), Error> {
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
                    attr.wakeup_events = u32::try_from(half_ring).unwrap_or(u32::MAX);
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

    /// Waits until a ring reached its wakeup point or `timeout` passed; returns whether one
    /// did. An interrupting signal returns `false` early.
    pub fn poll(&self, timeout: Duration) -> bool {
        let fds: Vec<_> = self
            .rings
            .iter()
            .map(|r| self.events[r.owner].0.as_fd())
            .collect();
        hwbp::ring::poll_readable(&fds, Some(timeout)).unwrap_or(false)
    }

    /// Reads every sample now in every ring, ring after ring; `comm` gets every thread
    /// rename (`PERF_RECORD_COMM`: tid, new name).
    pub fn drain(
        &mut self,
        mut f: impl FnMut(Sampled<'_>),
        mut comm: impl FnMut(u32, &str),
    ) -> usize {
        let ids = &self.ids;
        let unknown = &mut self.unknown_ids;
        let mut n = 0;
        for r in &mut self.rings {
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
        for r in &self.rings {
            let s = r.ring.stats();
            t.samples += s.samples;
            t.lost += s.lost;
            t.lost_records += s.lost_records;
        }
        t
    }
}
