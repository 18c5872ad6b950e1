//! A brute-force reference model of slot reservation, for tests and benchmarks.
//!
//! It keeps nothing but the list of live reservations and recomputes every CPU's usage from
//! that list on each request, straight from the closed form of spec §2.3. It is slow on
//! purpose (O(live reservations + CPUs) per request) so that it is obviously right; property
//! tests check that [`super::Reservations`] decides exactly as it does, and the benchmark
//! measures how much faster the engine is.
//!
//! Not for: production use. It answers the same questions with the same errors as the engine,
//! but nothing about its cost is acceptable outside tests.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::{NoSlot, Pools, Target, TaskId};
use crate::arch::Arch;
use crate::attr::PoolKind;

/// Slot reservation recomputed from the list of live reservations on every request.
///
/// Same API and same answers (including the data in [`NoSlot`]) as [`super::Reservations`].
#[derive(Clone, Debug)]
pub struct BruteForce {
    pools: Pools,
    possible_cpus: u32,
    /// Every live reservation: target and pool index, in no particular order.
    live: Vec<(Target, usize)>,
}

impl BruteForce {
    /// A model for `arch` with CPUs `0..possible_cpus` (at least one).
    pub fn for_arch<A: Arch>(arch: &A, possible_cpus: u32) -> BruteForce {
        BruteForce::with_pools(Pools::for_arch(arch), possible_cpus)
    }

    /// A model with explicit pool sizes (see [`super::Reservations::with_capacities`]).
    pub fn with_capacities(possible_cpus: u32, mixed: bool, inst: u32, data: u32) -> BruteForce {
        BruteForce::with_pools(Pools::new(mixed, inst, data), possible_cpus)
    }

    fn with_pools(pools: Pools, possible_cpus: u32) -> BruteForce {
        assert!(possible_cpus > 0, "a machine has at least one possible CPU");
        BruteForce {
            pools,
            possible_cpus,
            live: Vec::new(),
        }
    }

    /// Number of possible CPUs.
    pub fn possible_cpus(&self) -> u32 {
        self.possible_cpus
    }

    /// Slots in `pool` on every CPU.
    pub fn capacity(&self, pool: PoolKind) -> u32 {
        self.pools.capacity(pool)
    }

    /// Whether any reservation is live.
    pub fn is_used(&self) -> bool {
        !self.live.is_empty()
    }

    /// Number of live reservations.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no reservation is live (same as `!is_used()`).
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// `C[c]`: CPU-bound reservations on `cpu` in pool index `p`.
    fn cpu_bound(&self, cpu: u32, p: usize) -> u32 {
        let n = self
            .live
            .iter()
            .filter(|(t, lp)| *lp == p && *t == Target::Cpu(cpu))
            .count();
        n as u32
    }

    /// `TP_k(c)`: task `task`'s reservations in pool index `p` that apply on `cpu`.
    fn task_on(&self, task: TaskId, cpu: u32, p: usize) -> u32 {
        let n = self
            .live
            .iter()
            .filter(|(t, lp)| {
                *lp == p
                    && matches!(*t, Target::Task { task: k, cpu: c }
                        if k == task && (c.is_none() || c == Some(cpu)))
            })
            .count();
        n as u32
    }

    /// `max_k TP_k(c)` over every task.
    fn max_task_on(&self, cpu: u32, p: usize) -> u32 {
        let mut per_task: BTreeMap<TaskId, u32> = BTreeMap::new();
        for (t, lp) in &self.live {
            if let Target::Task { task, cpu: c } = *t {
                if *lp == p && (c.is_none() || c == Some(cpu)) {
                    *per_task.entry(task).or_insert(0) += 1;
                }
            }
        }
        per_task.values().copied().max().unwrap_or(0)
    }

    /// `C[c] + max_k TP_k(c)`: slots committed on `cpu` for `pool`.
    pub fn committed(&self, cpu: u32, pool: PoolKind) -> u32 {
        if cpu >= self.possible_cpus {
            return 0;
        }
        let p = self.pools.index(pool);
        self.cpu_bound(cpu, p) + self.max_task_on(cpu, p)
    }

    /// Admits one breakpoint by recomputing spec §2.3's closed form from scratch.
    pub fn reserve(&mut self, target: Target, pool: PoolKind) -> Result<(), NoSlot> {
        let p = self.pools.index(pool);
        let capacity = self.pools.capacity(pool);
        let ncpus = self.possible_cpus;
        let (cpu, used) = match target {
            Target::Cpu(c) | Target::Task { cpu: Some(c), .. } if c >= ncpus => {
                return Err(NoSlot {
                    pool,
                    cpu: c,
                    used: 0,
                    capacity: 0,
                });
            }
            Target::Cpu(c) => (c, self.cpu_bound(c, p) + self.max_task_on(c, p)),
            Target::Task { task, cpu: Some(c) } => {
                (c, self.cpu_bound(c, p) + self.task_on(task, c, p))
            }
            Target::Task { task, cpu: None } => {
                // Usage of every CPU, recomputed in one pass over the list.
                let mut usage = vec![0u32; ncpus as usize];
                for (t, lp) in &self.live {
                    if *lp != p {
                        continue;
                    }
                    match *t {
                        Target::Cpu(c) => usage[c as usize] += 1,
                        Target::Task { task: k, cpu: c } if k == task => match c {
                            Some(c) => usage[c as usize] += 1,
                            None => usage.iter_mut().for_each(|u| *u += 1),
                        },
                        Target::Task { .. } => {}
                    }
                }
                let mut best = (0, 0);
                for (c, &u) in usage.iter().enumerate() {
                    if u > best.1 {
                        best = (c as u32, u);
                    }
                }
                best
            }
        };
        if used + 1 > capacity {
            return Err(NoSlot {
                pool,
                cpu,
                used,
                capacity,
            });
        }
        self.live.push((target, p));
        Ok(())
    }

    /// Records a reservation without checking it, to build large states quickly in benchmarks.
    ///
    /// The caller guarantees that [`BruteForce::reserve`] would have admitted it.
    #[doc(hidden)]
    pub fn preload(&mut self, target: Target, pool: PoolKind) {
        let p = self.pools.index(pool);
        self.live.push((target, p));
    }

    /// Drops one live reservation equal to `(target, pool)`.
    ///
    /// An unmatched release is a caller bug: `debug_assert!`, otherwise ignored.
    pub fn release(&mut self, target: Target, pool: PoolKind) {
        let p = self.pools.index(pool);
        match self.live.iter().rposition(|e| *e == (target, p)) {
            Some(i) => {
                self.live.swap_remove(i);
            }
            None => debug_assert!(
                false,
                "release of {target:?} {pool:?} without a reservation"
            ),
        }
    }
}
