//! What this machine allows: the capability report behind `hwbp caps`.
//!
//! Everything is probed for real on the calling thread (slots, lengths and types, modify,
//! sigtrap, a self-test that a watched write fires exactly once); every probe closes what it
//! opened. The report is plain data for the CLI to print as text or JSON.
//!
//! Not for: deciding policy. A refused probe is reported with its errno, not worked around.

use std::fs;

use hwbp_core::access::{BP_R, BP_RW, BP_W, BP_X};
use hwbp_core::{Access, BpAttr, Spec};

use crate::attr::{Flag, PerfEventAttr};
use crate::sys::{Cpu, Errno, Ioctl, RealSys, Scope, Sys, Tid};
use crate::target::{self, Target};
use crate::watch::Watch;

/// `CAP_KILL`.
pub const CAP_KILL: u32 = 5;
/// `CAP_SYS_PTRACE`.
pub const CAP_SYS_PTRACE: u32 = 19;
/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON` (5.8).
pub const CAP_PERFMON: u32 = 38;

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// The kernel accepted it.
    Yes,
    /// The kernel refused it with this errno.
    No(Errno),
}

impl Probe {
    fn of(r: Result<(), Errno>) -> Probe {
        match r {
            Ok(()) => Probe::Yes,
            Err(e) => Probe::No(e),
        }
    }

    /// Whether the kernel accepted it.
    pub fn ok(self) -> bool {
        self == Probe::Yes
    }
}

/// One (length, type) combination and whether the kernel accepts it at an aligned address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Accepted {
    /// `bp_len`.
    pub len_bytes: u64,
    /// `bp_type` (`R = 1`, `W = 2`, `RW = 3`, `X = 4`).
    pub bp_type: u32,
    /// The kernel's answer.
    pub probe: Probe,
}

/// The self-test: one watched 8-byte write on this thread must count exactly 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelfTest {
    /// The count after one write (1 = debug exceptions work).
    Hits(u64),
    /// The watch could not be armed.
    NotArmed(Errno),
}

impl SelfTest {
    /// Whether the write fired exactly once.
    pub fn passed(self) -> bool {
        self == SelfTest::Hits(1)
    }
}

/// The capability report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    /// `/sys/bus/event_source/devices/breakpoint/type` (5 on Linux), if the PMU exists.
    pub breakpoint_pmu_type: Option<u32>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_release: Option<String>,
    /// `/proc/sys/kernel/perf_event_paranoid`.
    pub perf_event_paranoid: Option<i32>,
    /// `/proc/sys/kernel/yama/ptrace_scope` (absent without Yama).
    pub yama_ptrace_scope: Option<i32>,
    /// `CapEff` has `CAP_SYS_ADMIN` (kernel addresses).
    pub cap_sys_admin: bool,
    /// `CapEff` has `CAP_PERFMON` (kernel accesses, CPU-wide events).
    pub cap_perfmon: bool,
    /// `CapEff` has `CAP_SYS_PTRACE` (other users' processes).
    pub cap_sys_ptrace: bool,
    /// `CapEff` has `CAP_KILL` (sigtrap events on other tasks).
    pub cap_kill: bool,
    /// Online CPUs.
    pub online_cpus: Vec<u32>,
    /// Breakpoints one thread can hold (opened until `ENOSPC`, then closed), or the errno of
    /// the first open.
    pub slots: Result<u32, Errno>,
    /// Every length 1..=8 with every type.
    pub accepted: Vec<Accepted>,
    /// Counting kernel-mode accesses (`exclude_kernel = 0`).
    pub kernel_accesses: Probe,
    /// A CPU-bound event on CPU 0 (`pid = -1`).
    pub cpu_wide: Probe,
    /// `PERF_EVENT_IOC_MODIFY_ATTRIBUTES` on a breakpoint.
    pub modify_attributes: Probe,
    /// `sigtrap` + `remove_on_exec` events.
    pub sigtrap: Probe,
    /// `inherit` + `inherit_thread` events.
    pub inherit_thread: Probe,
    /// The self-test.
    pub self_test: SelfTest,
}

/// Probes this machine (see [`Caps`]). Takes a few milliseconds; opens and closes up to
/// ~40 events on the calling thread and one on CPU 0.
pub fn caps() -> Caps {
    let sys = RealSys;
    let me = Scope::Thread(Tid::current());
    let probe_word = Box::new([0u64; 2]);
    let addr = probe_word.as_ptr() as u64;
    let mut accepted = Vec::new();
    for len_bytes in 1..=8u64 {
        for bp_type in [BP_R, BP_W, BP_RW, BP_X] {
            let probe = Probe::of(open_close(&sys, BpAttr::user(addr, len_bytes, bp_type), me));
            accepted.push(Accepted {
                len_bytes,
                bp_type,
                probe,
            });
        }
    }
    let mut kernel = BpAttr::user(addr, 8, BP_W);
    kernel.exclude_kernel = false;
    Caps {
        breakpoint_pmu_type: read_num("/sys/bus/event_source/devices/breakpoint/type"),
        kernel_release: fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        perf_event_paranoid: read_paranoid(),
        yama_ptrace_scope: read_num("/proc/sys/kernel/yama/ptrace_scope"),
        cap_sys_admin: has_cap(CAP_SYS_ADMIN),
        cap_perfmon: has_cap(CAP_PERFMON),
        cap_sys_ptrace: has_cap(CAP_SYS_PTRACE),
        cap_kill: has_cap(CAP_KILL),
        online_cpus: target::online_cpus()
            .map(|s| s.into_iter().map(Cpu::get).collect())
            .unwrap_or_default(),
        slots: probe_slots(&sys, me),
        accepted,
        kernel_accesses: Probe::of(open_close(&sys, kernel, me)),
        cpu_wide: Probe::of(open_close(
            &sys,
            BpAttr::user(addr, 8, BP_W),
            Scope::Cpu(Cpu::new(0).unwrap_or_else(|| unreachable!())),
        )),
        modify_attributes: Probe::of(probe_modify(&sys, addr, me)),
        sigtrap: Probe::of(probe_flags(
            &sys,
            addr,
            me,
            &[Flag::Sigtrap, Flag::RemoveOnExec],
        )),
        inherit_thread: Probe::of(probe_flags(
            &sys,
            addr,
            me,
            &[Flag::Inherit, Flag::InheritThread],
        )),
        self_test: self_test(),
    }
}

/// Opens breakpoints on `scope` until the kernel refuses one; returns how many fit.
pub fn probe_slots(sys: &dyn Sys, scope: Scope) -> Result<u32, Errno> {
    let word = Box::new([0u64; 8]);
    let base = word.as_ptr() as u64;
    let mut held = Vec::new();
    loop {
        // Distinct addresses, though the kernel counts identical ones separately too.
        let i = held.len() as u64 % 8;
        let attr = PerfEventAttr::breakpoint(&BpAttr::user(base + 8 * i, 8, BP_W));
        match sys.perf_event_open(&attr, scope, None) {
            Ok(fd) => held.push(fd),
            Err(Errno::ENOSPC) => return Ok(held.len() as u32),
            Err(e) if held.is_empty() => return Err(e),
            Err(e) => return Err(e),
        }
        if held.len() > 64 {
            return Ok(held.len() as u32);
        }
    }
}

fn open_close(sys: &dyn Sys, bp: BpAttr, scope: Scope) -> Result<(), Errno> {
    let mut bp = bp;
    bp.disabled = true;
    sys.perf_event_open(&PerfEventAttr::breakpoint(&bp), scope, None)
        .map(drop)
}

fn probe_modify(sys: &dyn Sys, addr: u64, scope: Scope) -> Result<(), Errno> {
    let mut bp = BpAttr::user(addr, 8, BP_W);
    bp.disabled = true;
    let mut attr = PerfEventAttr::breakpoint(&bp);
    let fd = sys.perf_event_open(&attr, scope, None)?;
    attr.bp_addr = addr + 8;
    sys.ioctl(
        std::os::fd::AsFd::as_fd(&fd),
        Ioctl::ModifyAttributes(&attr),
    )
    .map(drop)
}

fn probe_flags(sys: &dyn Sys, addr: u64, scope: Scope, flags: &[Flag]) -> Result<(), Errno> {
    let mut bp = BpAttr::user(addr, 8, BP_W);
    // Disabled: a sigtrap event must never fire here (no handler is installed).
    bp.disabled = true;
    let mut attr = PerfEventAttr::breakpoint(&bp);
    for &f in flags {
        attr.set_flag(f, true);
    }
    if attr.flag(Flag::Sigtrap) {
        attr.sample_period = 1;
    }
    sys.perf_event_open(&attr, scope, None).map(drop)
}

/// Watches a fresh word on this thread, writes it once, and reads the count.
pub fn self_test() -> SelfTest {
    let word = Box::new(0u64);
    let ptr: *const u64 = &*word;
    let spec = Spec::user(ptr as u64, 8, Access::Write);
    let watch = match Watch::new(Target::current_thread(), spec) {
        Ok(w) => w,
        Err(e) => return SelfTest::NotArmed(e.errno().unwrap_or(Errno::EINVAL)),
    };
    let mut word = word;
    // A volatile store so the compiler cannot drop or merge it.
    let slot: &mut u64 = &mut word;
    volatile_store(slot, 1);
    match watch.count() {
        Ok(n) => SelfTest::Hits(n),
        Err(e) => SelfTest::NotArmed(e.errno().unwrap_or(Errno::EINVAL)),
    }
}

/// One store the optimiser keeps (`std::hint::black_box` around the place).
fn volatile_store(slot: &mut u64, value: u64) {
    let slot = std::hint::black_box(slot);
    *slot = value;
    std::hint::black_box(slot);
}

/// `/proc/sys/kernel/perf_event_paranoid`.
pub fn read_paranoid() -> Option<i32> {
    read_num("/proc/sys/kernel/perf_event_paranoid")
}

/// Whether this process's effective capability set (`CapEff` in `/proc/self/status`) has `cap`.
pub fn has_cap(cap: u32) -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| cap < 64 && mask & (1 << cap) != 0)
}

fn read_num<T: std::str::FromStr>(path: &str) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `CAP_IPC_LOCK`: exempts a process from the locked-memory limit on perf rings.
pub const CAP_IPC_LOCK: u32 = 14;

/// The limits on locked memory for perf ring buffers (`perf_mmap()` in
/// kernel/events/core.c): each ring of `n` data pages locks `n + 1` pages. A user may lock
/// `perf_event_mlock_kb` × online CPUs (charged to the user, shared by all its processes); a
/// ring beyond that is charged to the process's pinned memory, refused with `EPERM` past
/// `RLIMIT_MEMLOCK` — unless the process has `CAP_IPC_LOCK` or `perf_event_paranoid` is -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockLimits {
    /// `/proc/sys/kernel/perf_event_mlock_kb`, if readable.
    pub mlock_kb: Option<u64>,
    /// Online CPUs (the per-user limit grows linearly with them).
    pub online_cpus: u32,
    /// This process's `RLIMIT_MEMLOCK` in KiB (soft limit); `None`: unlimited or unreadable.
    pub memlock_kb: Option<u64>,
    /// No limit applies: `CAP_IPC_LOCK`, or `perf_event_paranoid` is -1.
    pub exempt: bool,
}

impl LockLimits {
    /// Reads the limits of the calling process.
    pub fn read() -> LockLimits {
        let memlock_kb = fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max locked memory"))?;
            let soft = line
                .strip_prefix("Max locked memory")?
                .split_whitespace()
                .next()?;
            soft.parse::<u64>().ok().map(|b| b / 1024)
        });
        LockLimits {
            mlock_kb: read_num("/proc/sys/kernel/perf_event_mlock_kb"),
            online_cpus: target::online_cpus()
                .map_or(1, |c| u32::try_from(c.len()).unwrap_or(u32::MAX)),
            memlock_kb,
            exempt: has_cap(CAP_IPC_LOCK) || read_paranoid() == Some(-1),
        }
    }

    /// Pages of perf rings this process may lock in all, or `None` if unlimited: the user's
    /// share (`perf_event_mlock_kb` × online CPUs; other processes of the user with rings
    /// mapped use it too, which cannot be seen from here) plus `RLIMIT_MEMLOCK` less
    /// `pinned_kb` already pinned by this process.
    pub fn budget_pages(&self, page: u64, pinned_kb: u64) -> Option<u64> {
        if self.exempt {
            return None;
        }
        let page_kb = (page / 1024).max(1);
        let user = self.mlock_kb? / page_kb * u64::from(self.online_cpus);
        let process = self.memlock_kb?.saturating_sub(pinned_kb) / page_kb;
        Some(user.saturating_add(process))
    }
}

impl std::fmt::Display for LockLimits {
    /// `perf_event_mlock_kb (516 KiB) x 2 online CPUs per user plus RLIMIT_MEMLOCK (8192 KiB)
    /// per process`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mlock_kb {
            Some(kb) => write!(f, "perf_event_mlock_kb ({kb} KiB)")?,
            None => f.write_str("perf_event_mlock_kb (unreadable)")?,
        }
        write!(
            f,
            " x {} online CPU{} per user plus RLIMIT_MEMLOCK (",
            self.online_cpus,
            if self.online_cpus == 1 { "" } else { "s" }
        )?;
        match self.memlock_kb {
            Some(kb) => write!(f, "{kb} KiB")?,
            None => f.write_str("unlimited")?,
        }
        f.write_str(") per process")
    }
}

/// KiB this process has pinned (`VmPin` in `/proc/self/status`; 0 if unreadable).
pub fn pinned_kb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let v = s.lines().find_map(|l| l.strip_prefix("VmPin:"))?;
            v.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}
