//! Slot reservation: which breakpoints may exist at once, across CPUs and tasks.
//!
//! Linux's constraint accounting (`kernel/events/hw_breakpoint.c`, spec §2): every breakpoint
//! takes one slot of its pool on each CPU where it can be installed, reserved when it is
//! created and given back when it is destroyed. Admission guarantees that whatever set of
//! tasks runs, every CPU can install all the breakpoints that apply there, so installing never
//! fails.
//!
//! Not for: choosing a register (assignment is the per-CPU install table's job), validating a
//! breakpoint's settings (`arch`), or deciding when a breakpoint holds its reservation (the
//! breakpoint manager keeps it from creation to destruction, enabled or not).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::arch::Arch;
use crate::attr::PoolKind;
use crate::error::ErrorClass;

mod histogram;
pub mod model;
mod tasks;

pub use model::BruteForce;
use tasks::{OnCpu, TaskTable};

/// Opaque task identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// What a breakpoint is bound to (perf's `pid`/`cpu` pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Bound to one CPU, whatever runs there (perf `pid = -1, cpu = c`).
    Cpu(u32),
    /// Bound to a task, on one CPU (`cpu: Some(c)`) or on every CPU (`None`, perf `cpu = -1`).
    Task {
        /// The task.
        task: TaskId,
        /// The only CPU where it counts, or `None` for all CPUs.
        cpu: Option<u32>,
    },
}

/// No slot left (`ENOSPC`): the pool, the CPU where the limit is hit, the slots committed
/// there and the pool's capacity.
///
/// `used` is what the admission rule counted on `cpu` before adding the new breakpoint (see
/// [`Reservations::reserve`]). A CPU that is not possible has a capacity of 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSlot {
    /// The pool that is full.
    pub pool: PoolKind,
    /// The CPU where it is full (for an all-CPU task breakpoint: the lowest-numbered such CPU).
    pub cpu: u32,
    /// Slots already committed there by the rule's count.
    pub used: u32,
    /// Slots the pool has on each CPU.
    pub capacity: u32,
}

impl NoSlot {
    /// Always [`ErrorClass::NoSpace`] (`ENOSPC`).
    pub const fn class(&self) -> ErrorClass {
        ErrorClass::NoSpace
    }
}

impl fmt::Display for NoSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NoSlot {
            pool,
            cpu,
            used,
            capacity,
        } = *self;
        if capacity == 0 {
            return write!(
                f,
                "no {} breakpoint slot exists on CPU {cpu} (it is not a possible CPU, or the \
                 hardware has none of this kind)",
                pool.as_str()
            );
        }
        write!(
            f,
            "no free {} breakpoint slot on CPU {cpu}: {used} of {capacity} are committed there \
             by breakpoints bound to that CPU plus task breakpoints that can run on it (the \
             busiest task's for a new CPU-bound breakpoint, the task's own for a task \
             breakpoint; other tasks never count); close one of them, or bind the new \
             breakpoint to another CPU",
            pool.as_str()
        )
    }
}

/// Pool sizes and the mapping from [`PoolKind`] to a pool index (Linux `TYPE_INST`/`TYPE_DATA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pools {
    mixed: bool,
    /// Capacity per pool index; index 1 is unused when `mixed`.
    capacity: [u32; 2],
}

impl Pools {
    pub(crate) fn new(mixed: bool, inst: u32, data: u32) -> Pools {
        let capacity = if mixed { [data, 0] } else { [inst, data] };
        Pools { mixed, capacity }
    }

    pub(crate) fn for_arch<A: Arch>(arch: &A) -> Pools {
        Pools::new(
            arch.mixed_pools(),
            arch.slots(PoolKind::Inst),
            arch.slots(PoolKind::Data),
        )
    }

    /// Pool index: 0 for both kinds when mixed, else 0 = instruction, 1 = data.
    pub(crate) fn index(&self, pool: PoolKind) -> usize {
        match pool {
            PoolKind::Data if !self.mixed => 1,
            _ => 0,
        }
    }

    pub(crate) fn capacity(&self, pool: PoolKind) -> u32 {
        self.capacity[self.index(pool)]
    }
}

/// One pool's accounting (Linux `bp_cpuinfo[t]`, `cpu_pinned[t]`, `tsk_pinned_all[t]`).
#[derive(Clone, Debug)]
struct PoolState {
    /// `N`: slots per CPU.
    capacity: u32,
    /// `C[c]`: CPU-bound breakpoints (no task) per CPU (`bp_cpuinfo::cpu_pinned`).
    cpu_pinned: Vec<u32>,
    /// Histogram over CPUs of `C[c]` (`cpu_pinned[t]`).
    cpu_hist: Vec<u32>,
    /// Histogram over CPU-independent tasks (all their breakpoints of this pool on all CPUs)
    /// of their breakpoint count (`tsk_pinned_all[t]`).
    tsk_all: Vec<u32>,
    /// Per CPU `c`, a histogram over CPU-dependent tasks (at least one breakpoint of this pool
    /// bound to one CPU) of `TP_k(c)` (`bp_cpuinfo::tsk_pinned`); CPU `c`'s histogram is
    /// `tsk_cpu[c * N .. (c + 1) * N]`.
    tsk_cpu: Vec<u32>,
}

impl PoolState {
    fn new(capacity: u32, possible_cpus: u32) -> PoolState {
        let n = capacity as usize;
        let cpus = possible_cpus as usize;
        PoolState {
            capacity,
            cpu_pinned: vec![0; cpus],
            cpu_hist: vec![0; n],
            tsk_all: vec![0; n],
            tsk_cpu: vec![0; n * cpus],
        }
    }

    fn tsk_cpu(&mut self, cpu: u32) -> &mut [u32] {
        let n = self.capacity as usize;
        let at = cpu as usize * n;
        &mut self.tsk_cpu[at..at + n]
    }

    /// Moves one holder from `old` to `new` slots in every CPU's task histogram.
    fn move_everywhere(&mut self, old: u32, new: u32) {
        if self.capacity == 0 {
            return;
        }
        for h in self.tsk_cpu.chunks_exact_mut(self.capacity as usize) {
            histogram::move_holder(h, old, new);
        }
    }

    /// In every CPU's task histogram, moves the task's `TP_k(c) = all + on(c)` by `delta`
    /// (±1): one more or one fewer breakpoint on all CPUs for a CPU-dependent task.
    fn shift_task(&mut self, all: u32, on_cpu: &[OnCpu], p: usize, grow: bool) {
        if self.capacity == 0 {
            return;
        }
        let mut on = on_cpu.iter().peekable();
        let hists = self.tsk_cpu.chunks_exact_mut(self.capacity as usize);
        for (c, h) in (0u32..).zip(hists) {
            let tp = all + on.next_if(|e| e.cpu == c).map_or(0, |e| e.count[p]);
            histogram::move_holder(h, tp, if grow { tp + 1 } else { tp - 1 });
        }
    }

    /// `max_k TP_k(c)` (`max_task_bp_pinned()`): the per-CPU histogram merged with the
    /// CPU-independent tasks' histogram, which counts on every CPU.
    fn max_task_pinned(&self, cpu: u32) -> u32 {
        let n = self.capacity as usize;
        let at = cpu as usize * n;
        histogram::max_merge(&self.tsk_cpu[at..at + n], &self.tsk_all)
    }

    /// `C[c] + max_k TP_k(c)`.
    fn committed(&self, cpu: u32) -> u32 {
        self.cpu_pinned[cpu as usize] + self.max_task_pinned(cpu)
    }

    fn is_used(&self) -> bool {
        let nonzero = |h: &[u32]| h.iter().any(|&c| c != 0);
        nonzero(&self.cpu_pinned)
            || nonzero(&self.cpu_hist)
            || nonzero(&self.tsk_all)
            || nonzero(&self.tsk_cpu)
    }
}

/// The slot-reservation state of one machine: all pools, all possible CPUs, all tasks.
///
/// Linux's design since v6.1 (spec §2.2, §2.4): per pool, `C[c]` and a histogram of it over
/// CPUs, a histogram over CPU-independent tasks, and per CPU a histogram over the tasks that
/// have CPU-bound breakpoints; per task, its counts in a hash table. Costs, with `N` slots
/// and `P` possible CPUs, independent of the number of tasks and breakpoints:
/// - CPU-bound breakpoint: O(N);
/// - task breakpoint on all CPUs, task without CPU-bound breakpoints (the common case:
///   perf, ptrace, gdb): O(N);
/// - a task's first CPU-bound breakpoint of a pool, or its last: O(P·N); any other task
///   breakpoint of a task that has CPU-bound ones: O(P) on all CPUs, O(log P) on one.
#[derive(Clone, Debug)]
pub struct Reservations {
    pools: Pools,
    possible_cpus: u32,
    /// Per pool index; index 1 is unused (empty) when the pools are mixed.
    state: [PoolState; 2],
    tasks: TaskTable,
}

impl Reservations {
    /// Empty reservations for `arch` on CPUs `0..possible_cpus`.
    ///
    /// Capacities are `arch.slots(pool)`; instruction and data breakpoints share one pool
    /// (of `arch.slots(PoolKind::Data)` slots) when `arch.mixed_pools()`.
    ///
    /// # Panics
    /// If `possible_cpus` is 0, or a pool has more than 65535 slots.
    pub fn for_arch<A: Arch>(arch: &A, possible_cpus: u32) -> Reservations {
        Reservations::with_pools(Pools::for_arch(arch), possible_cpus)
    }

    /// Empty reservations with explicit pool sizes (e.g. a scenario's `slots data=N inst=M`).
    ///
    /// When `mixed`, both kinds share one pool of `data` slots and `inst` is ignored.
    ///
    /// # Panics
    /// If `possible_cpus` is 0, or a pool has more than 65535 slots.
    pub fn with_capacities(possible_cpus: u32, mixed: bool, inst: u32, data: u32) -> Reservations {
        Reservations::with_pools(Pools::new(mixed, inst, data), possible_cpus)
    }

    fn with_pools(pools: Pools, possible_cpus: u32) -> Reservations {
        assert!(possible_cpus > 0, "a machine has at least one possible CPU");
        // Per-task counts are stored in 16 bits; no arch has more than 16 slots a pool.
        assert!(
            pools.capacity.iter().all(|&n| n <= u32::from(u16::MAX)),
            "at most 65535 slots a pool"
        );
        Reservations {
            pools,
            possible_cpus,
            state: [
                PoolState::new(pools.capacity[0], possible_cpus),
                PoolState::new(pools.capacity[1], possible_cpus),
            ],
            tasks: TaskTable::default(),
        }
    }

    /// Reserves one slot of `pool` for a new breakpoint bound to `target` (weight 1).
    ///
    /// Linux's admission rule (spec §2.3), with `N` the pool's capacity, `C[c]` the CPU-bound
    /// breakpoints on CPU `c` and `TP_k(c)` task `k`'s breakpoints that apply on `c` (bound to
    /// `c` or to all CPUs), over every *possible* CPU:
    ///
    /// | new breakpoint | admitted iff |
    /// |---|---|
    /// | `Cpu(c)` | `C[c] + max_k TP_k(c) + 1 <= N` |
    /// | task `k` on `c` | `C[c] + TP_k(c) + 1 <= N` |
    /// | task `k` on all CPUs | `max_c (C[c] + TP_k(c)) + 1 <= N` |
    ///
    /// No slot is held back: a one-slot pool takes one breakpoint. Different tasks never
    /// constrain each other. The error's `used` is the left-hand side without the `+ 1`, at
    /// the lowest-numbered CPU where it is largest. A target naming a CPU that is not
    /// possible is refused with `capacity: 0` (perf refuses such a CPU before accounting;
    /// callers should too).
    pub fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        let p = self.pools.index(pool);
        let ncpus = self.possible_cpus;
        let st = &mut self.state[p];
        let capacity = st.capacity;
        let no_slot = |cpu, used| NoSlot {
            pool,
            cpu,
            used,
            capacity,
        };
        match target {
            Target::Cpu(c) | Target::Task { cpu: Some(c), .. } if c >= ncpus => Err(NoSlot {
                pool,
                cpu: c,
                used: 0,
                capacity: 0,
            }),
            Target::Cpu(c) => {
                let old = st.cpu_pinned[c as usize];
                let used = old + st.max_task_pinned(c);
                // C[c] + max_k TP_k(c) + 1 <= N
                if used + 1 > capacity {
                    return Err(no_slot(c, used));
                }
                histogram::move_holder(&mut st.cpu_hist, old, old + 1);
                st.cpu_pinned[c as usize] = old + 1;
                Ok(())
            }
            Target::Task { task, cpu: Some(c) } => {
                let found = self.tasks.find(task);
                let tp = found.map_or(0, |i| self.tasks.tp(i, c, p));
                let used = st.cpu_pinned[c as usize] + tp;
                // C[c] + TP_k(c) + 1 <= N
                if used + 1 > capacity {
                    return Err(no_slot(c, used));
                }
                let i = found.unwrap_or_else(|| self.tasks.insert(task));
                let all = self.tasks.all(i, p);
                let independent = self.tasks.cpu_bound(i).is_none_or(|b| b.bound[p] == 0);
                if independent && all > 0 {
                    // The task becomes CPU-dependent (Linux case 2a): move it from the
                    // all-CPU histogram into every CPU's.
                    histogram::move_holder(&mut st.tsk_all, all, 0);
                    st.move_everywhere(0, all);
                }
                histogram::move_holder(st.tsk_cpu(c), tp, tp + 1);
                self.tasks.add_on(i, c, p);
                Ok(())
            }
            Target::Task { task, cpu: None } => {
                let found = self.tasks.find(task);
                let all = found.map_or(0, |i| self.tasks.all(i, p));
                let bound = found
                    .and_then(|i| self.tasks.cpu_bound(i))
                    .filter(|b| b.bound[p] > 0);
                // max_c (C[c] + TP_k(c)) + 1 <= N
                let (cpu, used) = match bound {
                    // CPU-independent task: TP_k(c) = all on every CPU, so the maximum is
                    // all + max_c C[c], from the histogram over CPUs.
                    None => {
                        let used = all + histogram::max(&st.cpu_hist);
                        if used + 1 > capacity {
                            let max_c = used - all;
                            let at = st.cpu_pinned.iter().position(|&n| n == max_c);
                            (at.unwrap_or(0) as u32, used)
                        } else {
                            (0, used)
                        }
                    }
                    Some(b) => {
                        let mut best = (0, 0);
                        let mut on = b.on_cpu.iter().peekable();
                        for (c, &cp) in st.cpu_pinned.iter().enumerate() {
                            let c = c as u32;
                            let n = cp + all + on.next_if(|e| e.cpu == c).map_or(0, |e| e.count[p]);
                            if n > best.1 {
                                best = (c, n);
                            }
                        }
                        best
                    }
                };
                if used + 1 > capacity {
                    return Err(no_slot(cpu, used));
                }
                let i = found.unwrap_or_else(|| self.tasks.insert(task));
                match self.tasks.cpu_bound(i).filter(|b| b.bound[p] > 0) {
                    // Linux case 1: only the all-CPU histogram changes.
                    None => histogram::move_holder(&mut st.tsk_all, all, all + 1),
                    // Linux case 3: every CPU's TP_k(c) grows by one.
                    Some(b) => st.shift_task(all, &b.on_cpu, p, true),
                }
                self.tasks.set_all(i, p, all + 1);
                Ok(())
            }
        }
    }

    /// Gives back the slot of a breakpoint reserved with the same `target` and `pool`.
    ///
    /// A release that matches no reservation (or names a CPU that is not possible) is a
    /// caller bug: it trips a `debug_assert!` and otherwise changes nothing.
    pub fn release(&mut self, target: Target, pool: PoolKind) {
        let p = self.pools.index(pool);
        let ncpus = self.possible_cpus;
        let st = &mut self.state[p];
        let unmatched = || {
            debug_assert!(
                false,
                "release of {target:?} {pool:?} without a reservation"
            )
        };
        match target {
            Target::Cpu(c) | Target::Task { cpu: Some(c), .. } if c >= ncpus => unmatched(),
            Target::Cpu(c) => {
                let old = st.cpu_pinned[c as usize];
                if old == 0 {
                    return unmatched();
                }
                histogram::move_holder(&mut st.cpu_hist, old, old - 1);
                st.cpu_pinned[c as usize] = old - 1;
            }
            Target::Task { task, cpu: Some(c) } => {
                let Some(i) = self.tasks.find(task) else {
                    return unmatched();
                };
                let tp = self.tasks.tp(i, c, p);
                if !self.tasks.remove_on(i, c, p) {
                    return unmatched();
                }
                histogram::move_holder(st.tsk_cpu(c), tp, tp - 1);
                let all = self.tasks.all(i, p);
                let independent = self.tasks.cpu_bound(i).is_none_or(|b| b.bound[p] == 0);
                if independent && all > 0 {
                    // The last CPU-bound one is gone (Linux case 2b): the task moves back from
                    // every CPU's histogram to the all-CPU one.
                    st.move_everywhere(all, 0);
                    histogram::move_holder(&mut st.tsk_all, 0, all);
                }
                self.tasks.remove_if_empty(i);
            }
            Target::Task { task, cpu: None } => {
                let Some(i) = self.tasks.find(task) else {
                    return unmatched();
                };
                let all = self.tasks.all(i, p);
                if all == 0 {
                    return unmatched();
                }
                match self.tasks.cpu_bound(i).filter(|b| b.bound[p] > 0) {
                    None => histogram::move_holder(&mut st.tsk_all, all, all - 1),
                    Some(b) => st.shift_task(all, &b.on_cpu, p, false),
                }
                self.tasks.set_all(i, p, all - 1);
                self.tasks.remove_if_empty(i);
            }
        }
    }

    /// Whether any slot is reserved anywhere (Linux `hw_breakpoint_is_used()`: any count or
    /// histogram bucket non-zero; here also any task entry).
    pub fn is_used(&self) -> bool {
        self.tasks.len() > 0 || self.state.iter().any(PoolState::is_used)
    }

    /// Number of possible CPUs.
    pub fn possible_cpus(&self) -> u32 {
        self.possible_cpus
    }

    /// Slots of `pool` on each CPU (0 for a pool the arch lacks).
    pub fn capacity(&self, pool: PoolKind) -> u32 {
        self.pools.capacity(pool)
    }

    /// `C[c] + max_k TP_k(c)`: slots committed on `cpu` for `pool` (0 for an impossible CPU).
    pub fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        if cpu >= self.possible_cpus {
            return 0;
        }
        self.state[self.pools.index(pool)].committed(cpu)
    }
}

#[cfg(test)]
mod tests;
