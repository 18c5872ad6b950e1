//! Ports of Linux's KUnit constraint tests (`kernel/events/hw_breakpoint_test.c`, 724c299c6a0e)
//! and the admission cases of spec §2.3, run against both the engine and the brute-force model.

extern crate std;

use alloc::vec;
use alloc::vec::Vec;
use std::println;

use super::{BruteForce, NoSlot, Reservations, Target, TaskId};
use crate::access::Access;
use crate::arch::arm64::Arm64;
use crate::arch::power::Power;
use crate::arch::x86_64::X86_64;
use crate::arch::{Arch, Chunk, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Region, Spec};

/// A test-only arch with separate instruction and data pools (as arm64 and powerpc have).
#[derive(Clone, Debug)]
struct SplitArch {
    inst: u32,
    data: u32,
}

impl Arch for SplitArch {
    type Hw = ();
    type Regs = ();
    fn name(&self) -> &'static str {
        "split-test"
    }
    fn mixed_pools(&self) -> bool {
        false
    }
    fn slots(&self, pool: PoolKind) -> u32 {
        match pool {
            PoolKind::Inst => self.inst,
            PoolKind::Data => self.data,
        }
    }
    fn arch_parse(&self, _attr: &BpAttr, _ctx: ParseCtx) -> Result<(), RuleError> {
        Ok(())
    }
    fn in_kernel_space(&self, _hw: &()) -> bool {
        false
    }
    fn hw_access(&self, _hw: &()) -> Access {
        Access::ReadWrite
    }
    fn hw_window(&self, _hw: &()) -> Region {
        Region::new(0, 1)
    }
    fn empty_regs(&self) {}
    fn install(&self, _regs: &mut (), _pool: PoolKind, _index: u32, _hw: &()) {}
    fn uninstall(&self, _regs: &mut (), _pool: PoolKind, _index: u32, _hw: &()) {}
    fn plan(&self, _spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
        Ok(Vec::new())
    }
}

/// What the tests need of an accounting implementation.
trait Acct {
    fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot>;
    fn release(&mut self, target: Target, pool: PoolKind);
    fn is_used(&self) -> bool;
    fn committed(&self, cpu: u32, pool: PoolKind) -> u32;
}

impl Acct for Reservations {
    fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        Reservations::reserve(self, target, pool)
    }
    fn release(&mut self, target: Target, pool: PoolKind) {
        Reservations::release(self, target, pool)
    }
    fn is_used(&self) -> bool {
        Reservations::is_used(self)
    }
    fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        Reservations::committed(self, cpu, pool)
    }
}

impl Acct for BruteForce {
    fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        BruteForce::reserve(self, target, pool)
    }
    fn release(&mut self, target: Target, pool: PoolKind) {
        BruteForce::release(self, target, pool)
    }
    fn is_used(&self) -> bool {
        BruteForce::is_used(self)
    }
    fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        BruteForce::committed(self, cpu, pool)
    }
}

const CURRENT: Option<TaskId> = Some(TaskId(1));
const OTHER: Option<TaskId> = Some(TaskId(2));
/// `MAX_TEST_BREAKPOINTS` of the KUnit test.
const MAX_TEST_BREAKPOINTS: usize = 512;

/// The KUnit fixture: `test_bps[]`, `get_test_bp_slots()`, `get_test_cpu()`; data pool
/// (`HW_BREAKPOINT_RW`), as `register_test_bp()` uses.
struct Kunit<A: Acct> {
    acct: A,
    slots: u32,
    cpus: u32,
    bps: Vec<Option<Target>>,
}

impl<A: Acct> Kunit<A> {
    fn new(acct: A, slots: u32, cpus: u32) -> Self {
        Kunit {
            acct,
            slots,
            cpus,
            bps: vec![None; MAX_TEST_BREAKPOINTS],
        }
    }

    /// `register_test_bp(cpu, tsk, idx)`: `cpu == None` is perf's -1.
    fn register(&mut self, cpu: Option<u32>, tsk: Option<TaskId>) -> Result<Target, NoSlot> {
        let target = match tsk {
            Some(task) => Target::Task { task, cpu },
            None => Target::Cpu(cpu.expect("perf refuses pid = -1 with cpu = -1")),
        };
        self.acct.reserve(target, PoolKind::Data).map(|()| target)
    }

    fn fill_one(&mut self, id: &mut usize, cpu: Option<u32>, tsk: Option<TaskId>) {
        let target = match self.register(cpu, tsk) {
            Ok(t) => t,
            Err(e) => panic!("fill_one_bp_slot({cpu:?}, {tsk:?}) at id {id}: {e}"),
        };
        assert!(self.bps[*id].is_none());
        self.bps[*id] = Some(target);
        *id += 1;
    }

    /// `fill_bp_slots()`: leaves `skip` slots free; returns whether it can be called again.
    fn fill(&mut self, id: &mut usize, cpu: Option<u32>, tsk: Option<TaskId>, skip: u32) -> bool {
        for _ in 0..self.slots - skip {
            self.fill_one(id, cpu, tsk);
        }
        *id + self.slots as usize <= MAX_TEST_BREAKPOINTS
    }

    #[track_caller]
    fn expect_nospc(&mut self, cpu: Option<u32>, tsk: Option<TaskId>) {
        match self.register(cpu, tsk) {
            Err(e) => {
                assert_eq!(e.capacity, self.slots);
                assert_eq!(e.used, self.slots, "{e}");
            }
            Ok(_) => panic!("register_test_bp({cpu:?}, {tsk:?}) was admitted"),
        }
    }

    fn unregister(&mut self, i: usize) {
        let target = self.bps[i]
            .take()
            .expect("unregister of an empty test_bps[] entry");
        self.acct.release(target, PoolKind::Data);
    }

    /// `test_exit()`: unregister everything, then the state must be empty.
    fn exit(mut self) {
        for i in 0..MAX_TEST_BREAKPOINTS {
            if self.bps[i].is_some() {
                self.unregister(i);
            }
        }
        assert!(!self.acct.is_used());
        for c in 0..self.cpus {
            assert_eq!(self.acct.committed(c, PoolKind::Data), 0);
        }
    }
}

const CPU0: Option<u32> = Some(0);
const CPU1: Option<u32> = Some(1);

fn test_one_cpu<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, CPU0, None, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, None);
}

fn test_many_cpus<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    // CPUs are independent.
    for cpu in 0..t.cpus {
        let do_continue = t.fill(&mut idx, Some(cpu), None, 0);
        t.expect_nospc(Some(cpu), None);
        if !do_continue {
            break;
        }
    }
}

fn test_one_task_on_all_cpus<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, None, CURRENT, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, None);
    // Remove one and adding back CPU-target should work.
    t.unregister(0);
    t.fill_one(&mut idx, CPU0, None);
}

fn test_two_tasks_on_all_cpus<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    // Tasks are independent.
    t.fill(&mut idx, None, CURRENT, 0);
    t.fill(&mut idx, None, OTHER, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(None, OTHER);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, OTHER);
    t.expect_nospc(CPU0, None);
    // Remove one from first task and adding back CPU-target should not work.
    t.unregister(0);
    t.expect_nospc(CPU0, None);
}

fn test_one_task_on_one_cpu<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, CPU0, CURRENT, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, None);
    // Remove one and adding back CPU-target should work; the task's constraints are
    // CPU-dependent here.
    t.unregister(0);
    t.fill_one(&mut idx, CPU0, None);
}

fn test_one_task_mixed<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill_one(&mut idx, CPU0, CURRENT);
    t.fill(&mut idx, None, CURRENT, 1);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, None);
    // Transition from CPU-dependent pinned count to CPU-independent.
    t.unregister(0);
    t.unregister(1);
    t.fill_one(&mut idx, CPU0, None);
    t.fill_one(&mut idx, CPU0, None);
    t.expect_nospc(CPU0, None);
}

fn test_two_tasks_on_one_cpu<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, CPU0, CURRENT, 0);
    t.fill(&mut idx, CPU0, OTHER, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(None, OTHER);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, OTHER);
    t.expect_nospc(CPU0, None);
    // Can still create breakpoints on some other CPU.
    t.fill(&mut idx, CPU1, None, 0);
}

fn test_two_tasks_on_one_all_cpus<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, CPU0, CURRENT, 0);
    t.fill(&mut idx, None, OTHER, 0);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(None, OTHER);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, OTHER);
    t.expect_nospc(CPU0, None);
    // Cannot create breakpoints on some other CPU either.
    t.expect_nospc(CPU1, None);
}

fn test_task_on_all_and_one_cpu<A: Acct>(t: &mut Kunit<A>) {
    let mut idx = 0;
    t.fill(&mut idx, None, CURRENT, 2);
    // Transitioning from only all CPU breakpoints to mixed.
    let tsk_on_cpu_idx = idx;
    t.fill_one(&mut idx, CPU0, CURRENT);
    t.fill_one(&mut idx, None, CURRENT);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, None);
    // We should still be able to use up another CPU's slots.
    let cpu_idx = idx;
    t.fill_one(&mut idx, CPU1, None);
    t.expect_nospc(CPU1, None);
    // Transitioning back to task target on all CPUs.
    t.unregister(tsk_on_cpu_idx);
    // Still have a CPU target breakpoint in CPU 1.
    t.expect_nospc(None, CURRENT);
    // Remove it and try again.
    t.unregister(cpu_idx);
    t.fill_one(&mut idx, None, CURRENT);
    t.expect_nospc(None, CURRENT);
    t.expect_nospc(CPU0, CURRENT);
    t.expect_nospc(CPU0, None);
    t.expect_nospc(CPU1, None);
}

type Case<A> = (&'static str, u32, fn(&mut Kunit<A>));

/// The KUnit cases with `TEST_REQUIRES_BP_SLOTS` (minimum data slots).
fn cases<A: Acct>() -> [Case<A>; 9] {
    [
        ("test_one_cpu", 1, test_one_cpu),
        ("test_many_cpus", 1, test_many_cpus),
        ("test_one_task_on_all_cpus", 1, test_one_task_on_all_cpus),
        ("test_two_tasks_on_all_cpus", 1, test_two_tasks_on_all_cpus),
        ("test_one_task_on_one_cpu", 1, test_one_task_on_one_cpu),
        ("test_one_task_mixed", 3, test_one_task_mixed),
        ("test_two_tasks_on_one_cpu", 1, test_two_tasks_on_one_cpu),
        (
            "test_two_tasks_on_one_all_cpus",
            1,
            test_two_tasks_on_one_all_cpus,
        ),
        (
            "test_task_on_all_and_one_cpu",
            3,
            test_task_on_all_and_one_cpu,
        ),
    ]
}

/// Runs every KUnit case on a fresh state from `make`; returns how many ran.
fn run_kunit<A: Acct>(what: &str, slots: u32, cpus: u32, make: impl Fn() -> A) -> usize {
    let mut ran = 0;
    for (name, needs, case) in cases::<A>() {
        if slots < needs {
            println!("{what}: {name} skipped: requires breakpoint slots: {needs} > {slots}");
            continue;
        }
        let mut t = Kunit::new(make(), slots, cpus);
        case(&mut t);
        t.exit();
        ran += 1;
    }
    ran
}

#[test]
fn kunit_cases_x86_engine_and_model() {
    // `test_init` wants two CPUs; 200 CPUs exercise test_many_cpus's MAX_TEST_BREAKPOINTS stop.
    for cpus in [2, 3, 8, 200] {
        let arch = X86_64::new();
        let ran = run_kunit("engine", 4, cpus, || Reservations::for_arch(&arch, cpus));
        assert_eq!(ran, 9);
        let ran = run_kunit("model", 4, cpus, || BruteForce::for_arch(&arch, cpus));
        assert_eq!(ran, 9);
    }
}

#[test]
fn kunit_cases_every_x86_slot_count() {
    for slots in 1..=4 {
        let arch = X86_64::with_slots(slots).unwrap();
        let expected = if slots >= 3 { 9 } else { 7 };
        for cpus in [2, 5] {
            let ran = run_kunit("engine", slots, cpus, || {
                Reservations::for_arch(&arch, cpus)
            });
            assert_eq!(ran, expected);
            let ran = run_kunit("model", slots, cpus, || BruteForce::for_arch(&arch, cpus));
            assert_eq!(ran, expected);
        }
    }
}

/// Every KUnit case on the data pool of `arch`; the instruction pool must stay fully usable
/// on every CPU whatever the data cases did. Returns how many cases ran.
fn kunit_on_separate_pools<A: Arch>(arch: &A, cpus: u32) -> usize {
    assert!(!arch.mixed_pools());
    let (inst, data) = (arch.slots(PoolKind::Inst), arch.slots(PoolKind::Data));
    let mut ran = 0;
    for (name, needs, case) in cases::<Reservations>() {
        if data < needs {
            println!(
                "{}: {name} skipped: requires breakpoint slots: {needs} > {data}",
                arch.name()
            );
            continue;
        }
        let mut t = Kunit::new(Reservations::for_arch(arch, cpus), data, cpus);
        assert_eq!(t.acct.capacity(PoolKind::Inst), inst);
        case(&mut t);
        for c in 0..cpus {
            assert_eq!(t.acct.committed(c, PoolKind::Inst), 0, "{name}");
            for _ in 0..inst {
                t.acct.reserve(Target::Cpu(c), PoolKind::Inst).unwrap();
            }
            let e = t.acct.reserve(Target::Cpu(c), PoolKind::Inst).unwrap_err();
            assert_eq!(
                (e.pool, e.cpu, e.used, e.capacity),
                (PoolKind::Inst, c, inst, inst)
            );
        }
        for c in 0..cpus {
            for _ in 0..inst {
                t.acct.release(Target::Cpu(c), PoolKind::Inst);
            }
        }
        t.exit();
        ran += 1;
    }
    ran
}

#[test]
fn kunit_cases_separate_pools_leave_the_other_pool_free() {
    assert_eq!(
        kunit_on_separate_pools(&SplitArch { inst: 6, data: 4 }, 3),
        9
    );
    assert_eq!(
        kunit_on_separate_pools(&SplitArch { inst: 1, data: 2 }, 2),
        7
    );
}

#[test]
fn kunit_cases_on_arm64_and_power() {
    // arm64: separate breakpoint (BRP) and watchpoint (WRP) pools.
    let arm64 = Arm64::new();
    assert_eq!(kunit_on_separate_pools(&arm64, 4), 9);
    let small = Arm64::with_slots(2, 2).unwrap();
    assert_eq!(kunit_on_separate_pools(&small, 2), 7);
    // POWER9: one DAWR, no instruction slots; POWER10: two DAWRs.
    for (power, dawrs) in [(Power::power9(), 1), (Power::power10(), 2)] {
        assert_eq!(kunit_on_separate_pools(&power, 3), 7);
        let r = Reservations::for_arch(&power, 3);
        assert_eq!(r.capacity(PoolKind::Data), dawrs);
        assert_eq!(r.capacity(PoolKind::Inst), 0);
    }
}

#[test]
fn power9_single_dawr_is_fully_usable_and_has_no_instruction_slot() {
    let mut r = Reservations::for_arch(&Power::power9(), 2);
    let task = Target::Task {
        task: TaskId(3),
        cpu: None,
    };
    r.reserve(task, PoolKind::Data).unwrap();
    let e = r.reserve(task, PoolKind::Data).unwrap_err();
    assert_eq!(
        (e.pool, e.cpu, e.used, e.capacity),
        (PoolKind::Data, 0, 1, 1)
    );
    let e = r.reserve(Target::Cpu(1), PoolKind::Inst).unwrap_err();
    assert_eq!(
        (e.pool, e.cpu, e.used, e.capacity),
        (PoolKind::Inst, 1, 0, 0)
    );
    // Another task has its own DAWR.
    let other = Target::Task {
        task: TaskId(4),
        cpu: Some(1),
    };
    r.reserve(other, PoolKind::Data).unwrap();
    r.release(other, PoolKind::Data);
    r.release(task, PoolKind::Data);
    assert!(!r.is_used());
}

#[test]
fn one_slot_pool_is_fully_usable() {
    // Review demand 2: nothing is held back for flexible breakpoints.
    let arch = X86_64::with_slots(1).unwrap();
    let mut r = Reservations::for_arch(&arch, 2);
    assert_eq!(r.capacity(PoolKind::Data), 1);
    r.reserve(Target::Cpu(0), PoolKind::Data).unwrap();
    assert_eq!(r.committed(0, PoolKind::Data), 1);
    let e = r.reserve(Target::Cpu(0), PoolKind::Inst).unwrap_err();
    assert_eq!(
        e,
        NoSlot {
            pool: PoolKind::Inst,
            cpu: 0,
            used: 1,
            capacity: 1
        }
    );
    r.release(Target::Cpu(0), PoolKind::Data);
    let task = Target::Task {
        task: TaskId(7),
        cpu: None,
    };
    r.reserve(task, PoolKind::Data).unwrap();
    assert_eq!(r.committed(1, PoolKind::Data), 1);
    r.release(task, PoolKind::Data);
    assert!(!r.is_used());
}

#[test]
fn mixed_pools_share_slots_and_separate_pools_do_not() {
    let x86 = X86_64::new();
    let mut r = Reservations::for_arch(&x86, 2);
    assert_eq!(r.capacity(PoolKind::Inst), 4);
    assert_eq!(r.capacity(PoolKind::Data), 4);
    for _ in 0..2 {
        r.reserve(Target::Cpu(1), PoolKind::Inst).unwrap();
        r.reserve(Target::Cpu(1), PoolKind::Data).unwrap();
    }
    assert_eq!(r.committed(1, PoolKind::Inst), 4);
    assert_eq!(r.committed(1, PoolKind::Data), 4);
    assert!(r.reserve(Target::Cpu(1), PoolKind::Inst).is_err());
    assert!(r.reserve(Target::Cpu(1), PoolKind::Data).is_err());

    let split = SplitArch { inst: 2, data: 4 };
    let mut r = Reservations::for_arch(&split, 2);
    assert_eq!(r.capacity(PoolKind::Inst), 2);
    assert_eq!(r.capacity(PoolKind::Data), 4);
    for _ in 0..2 {
        r.reserve(Target::Cpu(1), PoolKind::Inst).unwrap();
    }
    for _ in 0..4 {
        r.reserve(Target::Cpu(1), PoolKind::Data).unwrap();
    }
    assert_eq!(r.committed(1, PoolKind::Inst), 2);
    assert_eq!(r.committed(1, PoolKind::Data), 4);
    let e = r.reserve(Target::Cpu(1), PoolKind::Inst).unwrap_err();
    assert_eq!((e.used, e.capacity), (2, 2));
    let e = r.reserve(Target::Cpu(1), PoolKind::Data).unwrap_err();
    assert_eq!((e.used, e.capacity), (4, 4));
}

#[test]
fn empty_pool_refuses_everything() {
    // powerpc has no instruction breakpoints.
    let arch = SplitArch { inst: 0, data: 1 };
    let mut r = Reservations::for_arch(&arch, 2);
    let task = Target::Task {
        task: TaskId(1),
        cpu: None,
    };
    let e = r.reserve(task, PoolKind::Inst).unwrap_err();
    assert_eq!((e.cpu, e.used, e.capacity), (0, 0, 0));
    r.reserve(task, PoolKind::Data).unwrap();
    r.release(task, PoolKind::Data);
    assert!(!r.is_used());
}

#[test]
fn cpu_bound_breakpoints_fill_one_cpu_and_block_every_all_cpu_task_breakpoint() {
    let mut r = Reservations::for_arch(&X86_64::new(), 4);
    for _ in 0..4 {
        r.reserve(Target::Cpu(3), PoolKind::Data).unwrap();
    }
    for k in 0..10 {
        let all = Target::Task {
            task: TaskId(k),
            cpu: None,
        };
        let e = r.reserve(all, PoolKind::Data).unwrap_err();
        assert_eq!(
            e,
            NoSlot {
                pool: PoolKind::Data,
                cpu: 3,
                used: 4,
                capacity: 4
            }
        );
        // Bound to another CPU, the same task fits.
        let on0 = Target::Task {
            task: TaskId(k),
            cpu: Some(0),
        };
        r.reserve(on0, PoolKind::Data).unwrap();
    }
    assert_eq!(r.committed(0, PoolKind::Data), 1);
    for k in 0..10 {
        let on0 = Target::Task {
            task: TaskId(k),
            cpu: Some(0),
        };
        r.release(on0, PoolKind::Data);
    }
    for _ in 0..4 {
        r.release(Target::Cpu(3), PoolKind::Data);
    }
    assert!(!r.is_used());
}

#[test]
fn impossible_cpu_has_no_slots() {
    let mut r = Reservations::for_arch(&X86_64::new(), 2);
    let e = r.reserve(Target::Cpu(2), PoolKind::Data).unwrap_err();
    assert_eq!((e.cpu, e.used, e.capacity), (2, 0, 0));
    let t = Target::Task {
        task: TaskId(1),
        cpu: Some(9),
    };
    let e = r.reserve(t, PoolKind::Data).unwrap_err();
    assert_eq!((e.cpu, e.used, e.capacity), (9, 0, 0));
    assert!(!r.is_used());
    assert_eq!(r.committed(9, PoolKind::Data), 0);
}

#[test]
fn no_slot_display_names_the_rule() {
    let e = NoSlot {
        pool: PoolKind::Data,
        cpu: 3,
        used: 4,
        capacity: 4,
    };
    assert_eq!(e.class().errno_name(), "ENOSPC");
    let text = alloc::format!("{e}");
    assert!(text.starts_with("no free data breakpoint slot on CPU 3: 4 of 4 are committed"));
    let none = NoSlot {
        pool: PoolKind::Inst,
        cpu: 0,
        used: 0,
        capacity: 0,
    };
    assert!(alloc::format!("{none}").starts_with("no instruction breakpoint slot exists on CPU 0"));
}
