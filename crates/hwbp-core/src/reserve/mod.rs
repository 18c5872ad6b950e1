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

use core::fmt;

use crate::arch::Arch;
use crate::attr::PoolKind;
use crate::error::ErrorClass;

pub mod model;

pub use model::BruteForce;

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
            "no free {} breakpoint slot on CPU {cpu}: {used} of {capacity} are held there by \
             CPU-bound breakpoints plus the busiest task's breakpoints that may run on it \
             (every possible CPU counts for a task breakpoint on all CPUs); close one of them, \
             or bind the new breakpoint to a task on another CPU",
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

/// The slot-reservation state of one machine: all pools, all possible CPUs, all tasks.
#[derive(Clone, Debug)]
pub struct Reservations {
    inner: BruteForce,
}

impl Reservations {
    /// Empty reservations for `arch` on CPUs `0..possible_cpus`.
    ///
    /// Capacities are `arch.slots(pool)`; instruction and data breakpoints share one pool
    /// (of `arch.slots(PoolKind::Data)` slots) when `arch.mixed_pools()`.
    pub fn for_arch<A: Arch>(arch: &A, possible_cpus: u32) -> Reservations {
        Reservations {
            inner: BruteForce::for_arch(arch, possible_cpus),
        }
    }

    /// Empty reservations with explicit pool sizes (e.g. a scenario's `slots data=N inst=M`).
    ///
    /// When `mixed`, both kinds share one pool of `data` slots and `inst` is ignored.
    pub fn with_capacities(possible_cpus: u32, mixed: bool, inst: u32, data: u32) -> Reservations {
        Reservations {
            inner: BruteForce::with_capacities(possible_cpus, mixed, inst, data),
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
    /// No slot is held back: a one-slot pool takes one breakpoint. A target naming a CPU
    /// that is not possible is refused with `capacity: 0` (perf refuses such a CPU before
    /// accounting; callers should too).
    pub fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        self.inner.reserve(target, pool)
    }

    /// Gives back the slot of a breakpoint reserved with the same `target` and `pool`.
    ///
    /// A release that matches no reservation (or names a CPU that is not possible) is a
    /// caller bug: it trips a `debug_assert!` and otherwise changes nothing.
    pub fn release(&mut self, target: Target, pool: PoolKind) {
        self.inner.release(target, pool)
    }

    /// Whether any slot is reserved anywhere (Linux `hw_breakpoint_is_used()`).
    pub fn is_used(&self) -> bool {
        self.inner.is_used()
    }

    /// Number of possible CPUs.
    pub fn possible_cpus(&self) -> u32 {
        self.inner.possible_cpus()
    }

    /// Slots of `pool` on each CPU (0 for a pool the arch lacks).
    pub fn capacity(&self, pool: PoolKind) -> u32 {
        self.inner.capacity(pool)
    }

    /// `C[c] + max_k TP_k(c)`: slots committed on `cpu` for `pool` (0 for an impossible CPU).
    pub fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        self.inner.committed(cpu, pool)
    }
}

#[cfg(test)]
mod tests;
