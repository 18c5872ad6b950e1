//! hwbp on the real kernel: exact hit counts on this machine's debug registers.
//!
//! Hygiene: `cargo test` runs these as threads of one process, next to other crates' tests
//! in other processes. Task-bound tests on the test's own threads only constrain that thread,
//! but CPU-bound events take slots from every thread on their CPU — so every hardware test
//! takes [`hw_shared`] and tests that open CPU-bound events, probe slots of the whole
//! machine, count fds, or hotplug CPUs take [`hw_exclusive`] (an in-process RwLock plus an
//! `flock` on a machine-wide file, so hwbp test binaries of other worktrees wait too).
//! Process targets are tested on child processes (this binary re-executed with
//! `HWBP_CHILD_ROLE`).

/// Prints a skip notice past libtest's output capture (straight to stderr), so a check that
/// could not run on this machine is visible in a passing run, with its reason.
macro_rules! skip_note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[path = "linux/arming.rs"]
mod arming;
mod common;
#[path = "linux/conformance.rs"]
mod conformance;

use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hwbp::caps::probe_slots;
use hwbp::error::{At, Cause, Op};
use hwbp::fake::{FakeSys, Faulty};
use hwbp::sys::{RealSys, Scope};
use hwbp::watch::WatchOptions;
use hwbp::{Errno, Error, Target, Tid, Watch};
use hwbp_core::{Access, Privilege, Spec};

/// Entry point of child roles (see `common::roles`); does nothing in a normal run.
#[test]
fn child_role_entry() {
    roles::run_if_requested();
}

#[test]
fn thread_counts_exact_writes() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let w = Watch::new(Target::current_thread(), spec_of(&word, Access::Write)).unwrap();
    for i in 0..1000 {
        word.store(i, Ordering::Relaxed);
    }
    assert_eq!(w.count().unwrap(), 1000);
    // Reads are not writes.
    for _ in 0..10 {
        std::hint::black_box(word.load(Ordering::Relaxed));
    }
    assert_eq!(w.count().unwrap(), 1000);
}

#[test]
fn thread_rw_counts_reads_and_writes() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let w = Watch::new(Target::current_thread(), spec_of(&word, Access::ReadWrite)).unwrap();
    for i in 0..5 {
        word.store(i, Ordering::Relaxed);
    }
    for _ in 0..7 {
        std::hint::black_box(word.load(Ordering::Relaxed));
    }
    assert_eq!(w.count().unwrap(), 12);
}

#[test]
fn thread_watch_does_not_see_other_threads() {
    let _hw = hw_shared();
    let word = Arc::new(AtomicU64::new(0));
    let w = Watch::new(Target::current_thread(), spec_of(&word, Access::Write)).unwrap();
    let other = Arc::clone(&word);
    std::thread::spawn(move || (0..100).for_each(|i| other.store(i, Ordering::Relaxed)))
        .join()
        .unwrap();
    word.store(1, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 1);
}

#[test]
fn unaligned_region_is_split_and_every_byte_counts() {
    let _hw = hw_shared();
    // 11 bytes at offset 3 of a 16-byte buffer: pieces 1@3, 4@4, 2@8... (gdb's splitter).
    let buf: Box<[std::sync::atomic::AtomicU8; 16]> = Box::default();
    let base = buf.as_ptr() as u64;
    let spec = Spec::user(base + 3, 11, Access::Write);
    let w = Watch::new(Target::current_thread(), spec).unwrap();
    assert!(w.pieces().len() > 1);
    assert_eq!(w.event_count(), w.pieces().len());
    for (i, b) in buf.iter().enumerate() {
        b.store(i as u8, Ordering::Relaxed);
    }
    // Bytes 3..14 are watched: 11 one-byte writes, each in exactly one piece.
    assert_eq!(w.count().unwrap(), 11);
    let by_piece = w.counts_by_piece().unwrap();
    for (piece, n) in w.pieces().iter().zip(&by_piece) {
        assert_eq!(*n, piece.covers.len_bytes, "piece {piece:?}");
    }
}

#[test]
fn disabled_watch_keeps_slots_and_counts_nothing() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let mut w = Watch::new(Target::current_thread(), spec_of(&word, Access::Write)).unwrap();
    word.store(1, Ordering::Relaxed);
    w.disable().unwrap();
    word.store(2, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 1);
    // Still holds its slot: only 3 more fit on this thread.
    assert_eq!(probe_slots(&RealSys, Scope::Thread(Tid::current())), Ok(3));
    w.enable().unwrap();
    word.store(3, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 2);
}

#[test]
fn process_threads_before_and_after_arming_are_counted_after_exit() {
    let _hw = hw_shared();
    const N: u64 = 1000;
    let mut child = ChildProc::spawn(&format!("threads:3:4:{N}"));
    let addr = parse_hex(&child.expect("ready"));
    let w = Watch::new(
        Target::Process(child.pid()),
        Spec::user(addr, 8, Access::Write),
    )
    .unwrap();
    // The role's threads, plus libtest's main thread: at least 4 events, one per thread.
    assert!(w.event_count() >= 4, "{} events", w.event_count());
    // The default holds another process still with ptrace while arming.
    assert_eq!(w.arming(), hwbp::Arming::Seized);
    child.say("go");
    child.expect("done");
    // 3 threads from before arming, the role's own thread, 4 created after: all exited
    // except the role's thread.
    assert_eq!(w.count().unwrap(), 8 * N);
    // Events of exited threads do not block a modify of the whole watch.
    let mut w = w;
    w.modify(Spec::user(addr, 8, Access::ReadWrite)).unwrap();
    assert_eq!(w.count().unwrap(), 8 * N);
    child.finish();
    assert_eq!(w.count().unwrap(), 8 * N);
}

#[test]
fn kernel_writes_count_only_when_asked() {
    let _hw = hw_shared();
    let mut buf = Box::new([1u8; 8]);
    let addr = buf.as_ptr() as u64;
    let user = Watch::new(Target::current_thread(), Spec::user(addr, 1, Access::Write)).unwrap();
    let kspec = Spec {
        privilege: Privilege::Kernel,
        ..Spec::user(addr, 1, Access::Write)
    };
    let kernel = match Watch::new(Target::current_thread(), kspec) {
        Ok(w) => w,
        Err(e) => {
            skip_note!("SKIP kernel_writes_count_only_when_asked: kernel accesses refused: {e}");
            return;
        }
    };
    // read(2) of one byte from /dev/zero: the kernel writes exactly byte 0 of the buffer.
    let mut f = std::fs::File::open("/dev/zero").unwrap();
    std::io::Read::read_exact(&mut f, &mut buf[..1]).unwrap();
    assert_eq!(std::hint::black_box(buf[0]), 0);
    assert_eq!(user.count().unwrap(), 0);
    assert_eq!(kernel.count().unwrap(), 1);
}

#[test]
fn modify_moves_the_watch_and_keeps_the_count() {
    let _hw = hw_shared();
    let words = Box::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut w = Watch::new(Target::current_thread(), spec_of(&words[0], Access::Write)).unwrap();
    (0..3).for_each(|i| words[0].store(i, Ordering::Relaxed));
    w.modify(spec_of(&words[1], Access::Write)).unwrap();
    (0..5).for_each(|i| words[0].store(i, Ordering::Relaxed));
    (0..5).for_each(|i| words[1].store(i, Ordering::Relaxed));
    assert_eq!(w.count().unwrap(), 8);
    // Resize to 16 bytes (two pieces) covering both words, then re-type to rw.
    let both = Spec::user(words.as_ptr() as u64, 16, Access::Write);
    w.modify(both).unwrap();
    assert_eq!(w.event_count(), 2);
    words[0].store(1, Ordering::Relaxed);
    words[1].store(1, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 10);
    w.modify(Spec::user(words.as_ptr() as u64, 16, Access::ReadWrite))
        .unwrap();
    std::hint::black_box(words[1].load(Ordering::Relaxed));
    assert_eq!(w.count().unwrap(), 11);
    // Shrink back to one piece: the dropped piece's count is kept.
    w.modify(spec_of(&words[0], Access::Write)).unwrap();
    assert_eq!(w.event_count(), 1);
    words[1].store(2, Ordering::Relaxed);
    words[0].store(2, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 12);
    // The shrink freed the slot: 3 remain on this thread.
    assert_eq!(probe_slots(&RealSys, Scope::Thread(Tid::current())), Ok(3));
}

#[test]
fn failed_modify_keeps_the_old_watch_armed_and_counting() {
    let _hw = hw_shared();
    let words = Box::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let base = words.as_ptr() as u64;
    // Real kernel: a 2-piece watch; the kernel refuses the 2nd piece's modify (injected after
    // the 1st piece was really modified): the 1st must be modified back.
    let sys = Arc::new(Faulty::new(RealSys));
    let old = Spec::user(base, 16, Access::Write);
    let mut w = Watch::with_sys(
        sys.clone(),
        Target::current_thread(),
        old,
        &WatchOptions::default(),
    )
    .unwrap();
    words[0].store(1, Ordering::Relaxed);
    sys.fail_modify(2, Errno::EINVAL);
    let err = w
        .modify(Spec::user(base + 8, 16, Access::Write))
        .unwrap_err();
    assert!(matches!(err, Error::Sys { op: Op::Modify, .. }), "{err}");
    assert_eq!(w.spec(), old);
    words[0].store(2, Ordering::Relaxed);
    words[1].store(2, Ordering::Relaxed);
    words[2].store(2, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 3);

    // A disabled watch stays disabled through a failed (rolled back) modify.
    w.disable().unwrap();
    sys.fail_modify(2, Errno::EINVAL);
    assert!(w.modify(Spec::user(base + 8, 16, Access::Write)).is_err());
    words[0].store(9, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 3);
    w.enable().unwrap();

    // Real kernel, real refusal: growing to 3 pieces needs a slot that is not there.
    let w2 = Watch::new(
        Target::current_thread(),
        Spec::user(base + 16, 8, Access::ReadWrite),
    )
    .unwrap();
    let w3 = Watch::new(
        Target::current_thread(),
        Spec::user(base + 16, 8, Access::Write),
    )
    .unwrap();
    let err = w.modify(Spec::user(base, 24, Access::Write)).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOSPC), "{err}");
    assert_eq!(w.event_count(), 2);
    words[0].store(3, Ordering::Relaxed);
    words[2].store(3, Ordering::Relaxed);
    assert_eq!(w.count().unwrap(), 4);
    drop((w2, w3));
}

#[test]
fn enospc_rolls_back_every_piece_and_names_thread_and_slots() {
    let _hw = hw_shared();
    let buf = Box::new([0u64; 8]);
    let base = buf.as_ptr() as u64;
    let me = Tid::current();
    let held = Watch::new(
        Target::current_thread(),
        Spec::user(base, 16, Access::Write),
    )
    .unwrap();
    // Needs 3 pieces, 2 are free: pieces 0 and 1 open, piece 2 fails, all closed again.
    let err = Watch::new(
        Target::current_thread(),
        Spec::user(base + 24, 24, Access::Write),
    )
    .unwrap_err();
    match err {
        Error::Sys {
            op: Op::Open,
            at: Some(At { scope, piece }),
            errno,
            cause: Cause::NoSlot { pieces, holders },
        } => {
            assert_eq!(scope, Scope::Thread(me));
            assert_eq!(piece, 2);
            assert_eq!(errno, Errno::ENOSPC);
            assert_eq!(pieces, 3);
            assert_eq!(holders.tracer, None);
            // `held`'s two events (and any other test's watches in this process).
            assert!(holders.process_perf_events.unwrap() >= 2);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("needs 3 slots"), "{err}");
    assert_eq!(probe_slots(&RealSys, Scope::Thread(me)), Ok(2));
    drop(held);
    assert_eq!(probe_slots(&RealSys, Scope::Thread(me)), Ok(4));
}

#[test]
fn process_enospc_on_one_thread_closes_everything() {
    let _hw = hw_shared();
    // The child's own thread holds 3 slots; a 2-piece process watch fits nowhere on it.
    let mut child = ChildProc::spawn("holder:3:3");
    let holder = Tid::new(child.expect("ready").parse().unwrap()).unwrap();
    let other_buf = Box::new([0u64; 2]);
    let err = Watch::new(
        Target::Process(child.pid()),
        Spec::user(other_buf.as_ptr() as u64, 16, Access::Write),
    )
    .unwrap_err();
    match err {
        Error::Sys {
            at: Some(At { scope, piece }),
            cause: Cause::NoSlot { pieces, holders },
            ..
        } => {
            assert_eq!(scope, Scope::Thread(holder));
            assert_eq!(piece, 1);
            assert_eq!(pieces, 2);
            assert_eq!(holders.process_perf_events, Some(3));
        }
        other => panic!("unexpected {other}"),
    }
    // Nothing of ours is left on any of the child's threads.
    for tid in hwbp::target::list_threads(child.pid()).unwrap() {
        let free = probe_slots(&RealSys, Scope::Thread(tid)).unwrap();
        assert_eq!(free, if tid == holder { 1 } else { 4 }, "thread {tid}");
    }
    child.finish();
}

#[test]
fn fake_enospc_on_nth_open_of_a_process_closes_everything() {
    // No hardware: the fake stands in for the kernel. The lock only keeps the fd-leak test
    // from seeing the fake's sockets.
    let _hw = hw_shared();
    // This process has at least 4 threads (3 parked here, plus this one); each gets 2
    // pieces, so the 5th open is piece 0 of the 3rd thread.
    let park = Arc::new(std::sync::Barrier::new(4));
    let parked: Vec<_> = (0..3)
        .map(|_| {
            let b = Arc::clone(&park);
            std::thread::spawn(move || {
                b.wait();
            })
        })
        .collect();
    let fake = Arc::new(FakeSys::new());
    fake.fail_open(5, Errno::ENOSPC);
    let buf = Box::new([0u64; 2]);
    let err = Watch::with_sys(
        fake.clone(),
        Target::current_process(),
        Spec::user(buf.as_ptr() as u64, 16, Access::Write),
        &WatchOptions::default(),
    );
    park.wait();
    parked.into_iter().for_each(|t| t.join().unwrap());
    let err = err.unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOSPC));
    assert!(
        matches!(
            err,
            Error::Sys {
                at: Some(At { piece: 0, .. }),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fake.live_events(), 0);
    // A failing modify on the fake rolls back the already-modified events.
    let fake = Arc::new(FakeSys::new());
    let mut w = Watch::with_sys(
        fake.clone(),
        Target::current_thread(),
        Spec::user(buf.as_ptr() as u64, 16, Access::Write),
        &WatchOptions::default(),
    )
    .unwrap();
    let before: Vec<_> = fake.live_attrs();
    fake.fail_modify(2, Errno::EINVAL);
    assert!(w
        .modify(Spec::user(buf.as_ptr() as u64 + 8, 16, Access::Write))
        .is_err());
    assert_eq!(fake.live_attrs(), before);
    let log = fake.log();
    assert_eq!(log.len(), 5, "{log:?}"); // 2 opens, modify ok, modify refused, modify back
}

#[test]
fn every_errno_maps_to_a_cause_and_a_fix() {
    // No hardware: the fake refuses the first open with each errno.
    let _hw = hw_shared();
    let buf = Box::new([0u64; 2]);
    let spec = Spec::user(buf.as_ptr() as u64, 16, Access::Write);
    let open_err = |target: Target, errno: Errno| {
        let fake = Arc::new(FakeSys::new());
        fake.fail_open(1, errno);
        let e = Watch::with_sys(fake.clone(), target, spec, &WatchOptions::default()).unwrap_err();
        assert_eq!(fake.live_events(), 0);
        e
    };
    let cause = |e: &Error| match e {
        Error::Sys { cause, .. } => *cause,
        other => panic!("not a syscall error: {other}"),
    };
    let me = Target::current_thread();
    let e = open_err(me, Errno::ENOSPC);
    assert!(matches!(cause(&e), Cause::NoSlot { pieces: 2, .. }), "{e}");
    assert!(e.to_string().contains("needs 2 slots"), "{e}");
    let e = open_err(me, Errno::EACCES);
    let paranoid = hwbp::caps::read_paranoid();
    assert_eq!(
        cause(&e),
        Cause::Permission {
            paranoid,
            kernel: false,
            cpu_wide: false
        }
    );
    assert!(e.to_string().contains("CAP_PERFMON"), "{e}");
    let cpu0 = hwbp::target::online_cpus()
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let e = open_err(Target::Cpu(cpu0), Errno::EPERM);
    assert!(
        matches!(cause(&e), Cause::Permission { cpu_wide: true, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("CPU-wide events need"), "{e}");
    // The planner only produces valid pieces, so a kernel EINVAL is a feature this kernel
    // lacks, not a rule...
    let e = open_err(me, Errno::EINVAL);
    assert_eq!(cause(&e), Cause::KernelRefused);
    // ...while for a raw attr the validator names the rule.
    let bad = hwbp_core::BpAttr::user(buf.as_ptr() as u64 + 2, 8, 2);
    let e = Error::sys(
        Op::Open,
        None,
        Errno::EINVAL,
        &hwbp::error::ErrorCtx {
            attr: Some(bad),
            ..Default::default()
        },
    );
    assert!(
        matches!(
            cause(&e),
            Cause::Rule(hwbp_core::RuleError::Misaligned {
                required_align: 8,
                ..
            })
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("must start at a multiple of 8"),
        "{e}"
    );
    for errno in [Errno::ENOENT, Errno::ENODEV] {
        let e = open_err(me, errno);
        assert_eq!(cause(&e), Cause::NoBreakpointSupport);
        assert!(e.to_string().contains("no breakpoint PMU"), "{e}");
    }
    assert_eq!(cause(&open_err(me, Errno::EOPNOTSUPP)), Cause::NotSupported);
    assert_eq!(cause(&open_err(me, Errno::ESRCH)), Cause::TargetGone);
    // Errors before any syscall.
    let e = Watch::new(me, Spec::user(0x1000, 0, Access::Write)).unwrap_err();
    assert!(matches!(e, Error::Plan(_)), "{e}");
    let kernel = Spec {
        privilege: Privilege::Kernel,
        ..spec
    };
    let mut w =
        Watch::with_sys(Arc::new(FakeSys::new()), me, spec, &WatchOptions::default()).unwrap();
    assert_eq!(w.modify(kernel), Err(Error::PrivilegeChange));
    // This process cannot stop itself: a watch on it is armed live, and says so.
    let own = Watch::with_sys(
        Arc::new(FakeSys::new()),
        Target::current_process(),
        spec,
        &WatchOptions::default(),
    )
    .unwrap();
    assert!(own.armed_live());
    assert_eq!(
        own.arming(),
        hwbp::Arming::Live(hwbp::LiveReason::CallingProcess)
    );
}

#[test]
fn no_fd_or_slot_leak_after_10000_cycles() {
    let _hw = hw_exclusive();
    let me = Scope::Thread(Tid::current());
    let fds = fd_count();
    let slots = probe_slots(&RealSys, me).unwrap();
    let buf = Box::new([0u64; 4]);
    let base = buf.as_ptr() as u64;
    for i in 0..10_000u64 {
        // Alternate a 1-piece and a 3-piece (unaligned) watch, and a failing one.
        let spec = match i % 3 {
            0 => Spec::user(base, 8, Access::Write),
            1 => Spec::user(base + 4, 12, Access::ReadWrite),
            _ => Spec::user(base + 1, 40, Access::Write), // 6 pieces: ENOSPC, rolled back
        };
        let r = Watch::new(Target::current_thread(), spec);
        assert_eq!(r.is_ok(), i % 3 != 2, "cycle {i}");
    }
    assert_eq!(fd_count(), fds);
    assert_eq!(probe_slots(&RealSys, me).unwrap(), slots);
}

/// Runs `f` on a new thread pinned to `cpu` (the thread is on that CPU when `f` starts).
fn on_cpu<T: Send + 'static>(cpu: hwbp::Cpu, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        hwbp::sys::pin_current_thread(cpu).expect("sched_setaffinity");
        assert_eq!(hwbp::sys::current_cpu(), Some(cpu));
        f()
    })
    .join()
    .expect("pinned thread")
}

fn writes(word: &Arc<AtomicU64>, n: u64) -> impl FnOnce() + Send + 'static {
    let word = Arc::clone(word);
    move || (0..n).for_each(|i| word.store(i, Ordering::Relaxed))
}

/// Online CPUs, or `None` (with the reason printed) when CPU-bound tests cannot run here.
fn two_cpus_or_skip(test: &str) -> Option<(hwbp::Cpu, hwbp::Cpu)> {
    let cpus: Vec<_> = hwbp::target::online_cpus().unwrap().into_iter().collect();
    if cpus.len() < 2 {
        skip_note!("SKIP {test}: needs 2 online CPUs, have {}", cpus.len());
        return None;
    }
    Some((cpus[0], cpus[1]))
}

/// Arms or prints why the host forbids CPU-bound events (then the test is skipped).
fn arm_or_skip(test: &str, target: Target, spec: Spec) -> Option<Watch> {
    match Watch::new(target, spec) {
        Ok(w) => Some(w),
        Err(e) if matches!(e.errno(), Some(Errno::EACCES | Errno::EPERM)) => {
            skip_note!("SKIP {test}: the host forbids CPU-bound events: {e}");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

#[test]
fn cpu_target_counts_only_that_cpu() {
    let _hw = hw_exclusive();
    let Some((c0, c1)) = two_cpus_or_skip("cpu_target_counts_only_that_cpu") else {
        return;
    };
    let word = Arc::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let Some(w) = arm_or_skip("cpu_target", Target::Cpu(c0), spec) else {
        return;
    };
    on_cpu(c0, writes(&word, 1000));
    on_cpu(c1, writes(&word, 500));
    assert_eq!(w.count().unwrap(), 1000);
}

#[test]
fn all_cpus_target_sums_every_cpu() {
    let _hw = hw_exclusive();
    let Some((c0, c1)) = two_cpus_or_skip("all_cpus_target_sums_every_cpu") else {
        return;
    };
    let word = Arc::new(AtomicU64::new(0));
    // A 2-piece region: every CPU gets both pieces.
    let spec = Spec::user(word.as_ptr() as u64 + 4, 8, Access::Write);
    let Some(w) = arm_or_skip("all_cpus_target", Target::AllCpus, spec) else {
        return;
    };
    assert_eq!(
        w.event_count(),
        2 * hwbp::target::online_cpus().unwrap().len()
    );
    on_cpu(c0, writes(&word, 500));
    on_cpu(c1, writes(&word, 300));
    // Each 8-byte store overlaps both pieces (bytes 4..8 and 8..12 of the word are 4..8
    // only): the region 4..12 overlaps the word in bytes 4..8 -> one piece per store.
    let per_store = w
        .pieces()
        .iter()
        .filter(|p| {
            p.covers
                .overlaps(&hwbp_core::Region::new(word.as_ptr() as u64, 8))
        })
        .count() as u64;
    assert_eq!(w.count().unwrap(), 800 * per_store);
}

/// Puts a CPU back online when dropped, whatever happened in between.
struct OnlineGuard(hwbp::Cpu);

impl OnlineGuard {
    fn path(&self) -> String {
        format!("/sys/devices/system/cpu/cpu{}/online", self.0)
    }
    /// Offlining leaves a marker naming the CPU, removed once it is back online, so a run
    /// killed in between (no Drop) is repaired by the next run's [`hw_exclusive`].
    fn set(&self, online: bool) -> std::io::Result<()> {
        if !online {
            std::fs::write(OFFLINED_MARKER, self.0.to_string())?;
        }
        std::fs::write(self.path(), if online { "1" } else { "0" })?;
        if online {
            let _ = std::fs::remove_file(OFFLINED_MARKER);
        }
        Ok(())
    }
}

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        if let Err(e) = self.set(true) {
            eprintln!("could not bring CPU {} back online: {e}", self.0);
        }
    }
}

#[test]
fn cpu_hotplug_rearms_cpu_bound_watches() {
    let _hw = hw_exclusive();
    let Some((c0, c1)) = two_cpus_or_skip("cpu_hotplug_rearms_cpu_bound_watches") else {
        return;
    };
    let word = Arc::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let Some(one) = arm_or_skip("cpu_hotplug", Target::Cpu(c1), spec) else {
        return;
    };
    let all = Watch::new(Target::AllCpus, spec).unwrap();
    let monitored = Arc::new(std::sync::Mutex::new(
        Watch::new(Target::AllCpus, spec).unwrap(),
    ));
    let monitor = hwbp::HotplugMonitor::spawn(
        vec![Arc::clone(&monitored)],
        std::time::Duration::from_millis(5),
    );
    on_cpu(c1, writes(&word, 100));
    let guard = OnlineGuard(c1);
    if let Err(e) = guard.set(false) {
        skip_note!("SKIP cpu_hotplug: cannot offline CPU {c1}: {e}");
        std::mem::forget(guard);
        return;
    }
    let mut one = one;
    let mut all = all;
    let r = all.refresh().unwrap();
    assert_eq!(r.offline, vec![c1]);
    on_cpu(c0, writes(&word, 50));
    guard.set(true).unwrap();
    drop(guard);
    // Linux 6.18 leaves the events of a CPU that went offline dead (time_enabled frozen) and
    // still holding their slots: refresh closes them and opens new ones.
    let r = one.refresh().unwrap();
    assert_eq!(r.reopened, vec![c1]);
    let r = all.refresh().unwrap();
    assert_eq!(r.reopened, vec![c1]);
    // The monitor sees the online set change and refreshes its watch on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while monitor.reopen_rounds() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor never refreshed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(monitor.last_error(), None);
    on_cpu(c1, writes(&word, 100));
    assert_eq!(one.count().unwrap(), 200);
    assert_eq!(all.count().unwrap(), 250);
    drop(monitor);
    assert_eq!(monitored.lock().unwrap().count().unwrap(), 250);
    // A second refresh finds everything alive and changes nothing.
    assert_eq!(all.refresh().unwrap(), hwbp::watch::Refresh::default());
}

#[test]
fn caps_report_matches_this_machine_and_the_core_rules() {
    let _hw = hw_exclusive();
    let caps = hwbp::caps();
    eprintln!("{caps:#?}");
    assert_eq!(caps.breakpoint_pmu_type, Some(5));
    assert_eq!(caps.slots, Ok(4));
    assert_eq!(caps.self_test, hwbp::caps::SelfTest::Hits(1));
    assert!(caps.modify_attributes.ok());
    assert!(caps.sigtrap.ok());
    assert!(caps.inherit_thread.ok());
    assert_eq!(caps.accepted.len(), 32);
    // Differential: the kernel's answer for each (len, type) at an aligned address equals
    // hwbp-core's x86 validator.
    let arch = hwbp_core::arch::NativeArch::new();
    for a in &caps.accepted {
        let mut bp = hwbp_core::BpAttr::user(0x1000, a.len_bytes, a.bp_type);
        bp.disabled = true;
        let core = hwbp_core::arch::parse(&arch, &bp, hwbp_core::arch::ParseCtx::ROOT_TASK);
        match (core, a.probe) {
            (Ok(_), hwbp::caps::Probe::Yes) => {}
            (Err(rule), hwbp::caps::Probe::No(e)) => assert_eq!(rule.class().errno(), e.0, "{a:?}"),
            (core, kernel) => panic!("{a:?}: core {core:?}, kernel {kernel:?}"),
        }
    }
}

#[path = "linux/hotplug.rs"]
mod hotplug;
#[path = "linux/ptrace.rs"]
mod ptrace;
#[path = "linux/stream.rs"]
mod stream;
#[path = "linux/symbols.rs"]
mod symbols;
