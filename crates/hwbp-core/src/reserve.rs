//! TEMPORARY brute-force stand-in for the reservation engine (branch `reserve`); deleted when
//! that branch is merged. Same API, recomputes every CPU's usage from the live list.

use alloc::vec::Vec;
use core::fmt;

use crate::arch::Arch;
use crate::attr::PoolKind;

/// A task (thread) that breakpoints can be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// What a breakpoint is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// One CPU, whatever runs there.
    Cpu(u32),
    /// A task, on one CPU or on all.
    Task {
        /// The task.
        task: TaskId,
        /// `None`: all CPUs.
        cpu: Option<u32>,
    },
}

/// No slot left (`ENOSPC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoSlot {
    /// The pool that is full.
    pub pool: PoolKind,
    /// The CPU where it is full.
    pub cpu: u32,
    /// Slots in use there.
    pub used: u32,
    /// Slots in the pool.
    pub capacity: u32,
}

impl fmt::Display for NoSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no {} slot left on CPU {}: {} of {} in use",
            self.pool.as_str(),
            self.cpu,
            self.used,
            self.capacity
        )
    }
}

/// Slot accounting (brute force).
#[derive(Clone, Debug)]
pub struct Reservations {
    caps: [u32; 2],
    mixed: bool,
    possible: u32,
    live: Vec<(Target, usize)>,
}

impl Reservations {
    /// Empty accounting for `arch` with CPUs `0..possible_cpus`.
    pub fn for_arch<A: Arch>(arch: &A, possible_cpus: u32) -> Reservations {
        Reservations {
            caps: [arch.slots(PoolKind::Inst), arch.slots(PoolKind::Data)],
            mixed: arch.mixed_pools(),
            possible: possible_cpus,
            live: Vec::new(),
        }
    }

    fn idx(&self, pool: PoolKind) -> usize {
        if self.mixed {
            1
        } else {
            match pool {
                PoolKind::Inst => 0,
                PoolKind::Data => 1,
            }
        }
    }

    fn used(&self, c: u32, target: Target, idx: usize) -> u32 {
        let cpu_pinned = self
            .live
            .iter()
            .filter(|(t, i)| *i == idx && *t == Target::Cpu(c))
            .count() as u32;
        let tp = |k: TaskId| {
            self.live
                .iter()
                .filter(|(t, i)| {
                    *i == idx
                        && matches!(t, Target::Task { task, cpu } if *task == k && cpu.is_none_or(|x| x == c))
                })
                .count() as u32
        };
        let task_part = match target {
            Target::Task { task, .. } => tp(task),
            Target::Cpu(_) => self
                .live
                .iter()
                .filter_map(|(t, _)| match t {
                    Target::Task { task, .. } => Some(tp(*task)),
                    Target::Cpu(_) => None,
                })
                .max()
                .unwrap_or(0),
        };
        cpu_pinned + task_part
    }

    /// Admits one breakpoint (Linux's closed-form rule) or says where it does not fit.
    pub fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        let idx = self.idx(pool);
        let cap = self.capacity(pool);
        let cpus: Vec<u32> = match target {
            Target::Cpu(c) | Target::Task { cpu: Some(c), .. } => alloc::vec![c],
            Target::Task { cpu: None, .. } => (0..self.possible).collect(),
        };
        for c in cpus {
            let used = self.used(c, target, idx);
            if used + 1 > cap {
                return Err(NoSlot {
                    pool,
                    cpu: c,
                    used,
                    capacity: cap,
                });
            }
        }
        self.live.push((target, idx));
        Ok(())
    }

    /// Releases one breakpoint's reservation.
    pub fn release(&mut self, target: Target, pool: PoolKind) {
        let idx = self.idx(pool);
        if let Some(p) = self.live.iter().position(|e| *e == (target, idx)) {
            self.live.swap_remove(p);
        }
    }

    /// Whether anything is reserved.
    pub fn is_used(&self) -> bool {
        !self.live.is_empty()
    }

    /// Number of possible CPUs.
    pub fn possible_cpus(&self) -> u32 {
        self.possible
    }

    /// Slots in `pool`.
    pub fn capacity(&self, pool: PoolKind) -> u32 {
        self.caps[self.idx(pool)]
    }

    /// CPU-bound breakpoints committed on `cpu`.
    pub fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        let idx = self.idx(pool);
        self.live
            .iter()
            .filter(|(t, i)| *i == idx && *t == Target::Cpu(cpu))
            .count() as u32
    }
}
