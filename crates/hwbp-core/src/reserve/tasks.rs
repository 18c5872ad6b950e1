//! Per-task breakpoint counts, in a hash table keyed by [`TaskId`].
//!
//! Linux keeps each task's breakpoints in a list found through an rhltable keyed by the task
//! (`task_bps_ht`, 0370dc314df3) and counts them on every request; here each task keeps the
//! counts themselves, so `TP_k(c)` is a lookup. The table is open addressing with linear
//! probing and backward-shift deletion, 16 bytes a bucket so that 100,000 tasks stay in a few
//! MiB of cache; the rarer per-CPU counts of tasks with CPU-bound breakpoints live in a side
//! slab. Nothing is allocated per request, only when the table grows or shrinks or a task
//! gets CPU-bound breakpoints for the first time.
//!
//! Not for: anything but the counts; which CPUs and histograms a task touches is decided by the
//! caller.

use alloc::vec::Vec;

use super::TaskId;

/// A task's CPU-bound breakpoints on one CPU, per pool index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OnCpu {
    pub(crate) cpu: u32,
    pub(crate) count: [u32; 2],
}

/// A task's breakpoints bound to one CPU (it has at least one, in some pool).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuBound {
    /// Summed over CPUs, per pool index. The task is *CPU-independent* in a pool (accounted in
    /// `tsk_pinned_all`) iff this is 0.
    pub(crate) bound: [u32; 2],
    /// Per CPU, sorted by CPU, no all-zero entries.
    pub(crate) on_cpu: Vec<OnCpu>,
}

impl CpuBound {
    /// The task's CPU-bound breakpoints on `cpu` in pool index `p`.
    pub(crate) fn on(&self, cpu: u32, p: usize) -> u32 {
        match self.on_cpu.binary_search_by_key(&cpu, |e| e.cpu) {
            Ok(i) => self.on_cpu[i].count[p],
            Err(_) => 0,
        }
    }

    fn add_on(&mut self, cpu: u32, p: usize) {
        match self.on_cpu.binary_search_by_key(&cpu, |e| e.cpu) {
            Ok(i) => self.on_cpu[i].count[p] += 1,
            Err(i) => {
                let mut count = [0; 2];
                count[p] = 1;
                self.on_cpu.insert(i, OnCpu { cpu, count });
            }
        }
        self.bound[p] += 1;
    }

    fn remove_on(&mut self, cpu: u32, p: usize) -> bool {
        let Ok(i) = self.on_cpu.binary_search_by_key(&cpu, |e| e.cpu) else {
            return false;
        };
        let e = &mut self.on_cpu[i];
        if e.count[p] == 0 {
            return false;
        }
        e.count[p] -= 1;
        if e.count == [0, 0] {
            self.on_cpu.remove(i);
        }
        self.bound[p] -= 1;
        true
    }

    fn is_empty(&self) -> bool {
        self.bound == [0, 0]
    }
}

/// Smallest non-zero table size.
const MIN_CAPACITY: usize = 16;
/// `Bucket::bound` of a free bucket.
const FREE: u32 = u32::MAX;
/// `Bucket::bound` of a task without CPU-bound breakpoints.
const NONE: u32 = u32::MAX - 1;

/// One bucket: a task and its all-CPU counts (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    task: TaskId,
    /// Breakpoints bound to the task on all CPUs, per pool index (at most the pool's
    /// capacity, which the engine keeps below 2^16).
    all: [u16; 2],
    /// Index of the task's [`CpuBound`] in the slab, or [`NONE`], or [`FREE`].
    bound: u32,
}

const EMPTY: Bucket = Bucket {
    task: TaskId(0),
    all: [0, 0],
    bound: FREE,
};

/// `TaskId` → counts, open addressing. Bucket indices stay valid until the next
/// [`TaskTable::insert`] or [`TaskTable::remove_if_empty`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskTable {
    /// Power-of-two number of buckets (or none).
    buckets: Vec<Bucket>,
    len: usize,
    /// Per-CPU counts of tasks with CPU-bound breakpoints; `free` lists reusable entries.
    slab: Vec<CpuBound>,
    free: Vec<u32>,
}

impl TaskTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// Fibonacci hashing: the top bits of `id * 2^64/φ`.
    fn home(&self, task: TaskId) -> usize {
        let h = task.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let bits = self.buckets.len().trailing_zeros();
        (h >> (64 - bits)) as usize
    }

    /// The bucket holding `task`, or `Err` with the free bucket where it would go.
    fn probe(&self, task: TaskId) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(task);
        loop {
            let b = &self.buckets[i];
            if b.bound == FREE {
                return Err(i);
            }
            if b.task == task {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The bucket of `task`, if it holds anything.
    pub(crate) fn find(&self, task: TaskId) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        self.probe(task).ok()
    }

    /// Breakpoints of bucket `i`'s task on all CPUs in pool index `p`.
    pub(crate) fn all(&self, i: usize, p: usize) -> u32 {
        u32::from(self.buckets[i].all[p])
    }

    /// Sets that count (`n` is at most the pool's capacity).
    pub(crate) fn set_all(&mut self, i: usize, p: usize, n: u32) {
        debug_assert!(n <= u32::from(u16::MAX));
        self.buckets[i].all[p] = n as u16;
    }

    /// Bucket `i`'s task's CPU-bound breakpoints, if it has any.
    pub(crate) fn cpu_bound(&self, i: usize) -> Option<&CpuBound> {
        match self.buckets[i].bound {
            NONE => None,
            s => Some(&self.slab[s as usize]),
        }
    }

    /// `TP_k(c)` of bucket `i`'s task in pool index `p`.
    pub(crate) fn tp(&self, i: usize, cpu: u32, p: usize) -> u32 {
        self.all(i, p) + self.cpu_bound(i).map_or(0, |b| b.on(cpu, p))
    }

    /// Adds one breakpoint bound to bucket `i`'s task on `cpu`.
    pub(crate) fn add_on(&mut self, i: usize, cpu: u32, p: usize) {
        let s = match self.buckets[i].bound {
            NONE => {
                let s = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.slab.push(CpuBound::default());
                        (self.slab.len() - 1) as u32
                    }
                };
                self.buckets[i].bound = s;
                s
            }
            s => s,
        };
        self.slab[s as usize].add_on(cpu, p);
    }

    /// Removes one breakpoint bound to bucket `i`'s task on `cpu`; false (and no change) if
    /// there is none.
    pub(crate) fn remove_on(&mut self, i: usize, cpu: u32, p: usize) -> bool {
        let s = self.buckets[i].bound;
        if s == NONE {
            return false;
        }
        let b = &mut self.slab[s as usize];
        if !b.remove_on(cpu, p) {
            return false;
        }
        if b.is_empty() {
            self.buckets[i].bound = NONE;
            self.free.push(s);
        }
        true
    }

    /// The bucket of `task`, created with no breakpoints if missing.
    pub(crate) fn insert(&mut self, task: TaskId) -> usize {
        // Load factor at most 3/4.
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.resize((self.buckets.len() * 2).max(MIN_CAPACITY));
        }
        match self.probe(task) {
            Ok(i) => i,
            Err(i) => {
                self.buckets[i] = Bucket {
                    task,
                    all: [0, 0],
                    bound: NONE,
                };
                self.len += 1;
                i
            }
        }
    }

    /// Drops bucket `i` if its task holds nothing any more.
    pub(crate) fn remove_if_empty(&mut self, i: usize) {
        let b = self.buckets[i];
        if b.all != [0, 0] || b.bound != NONE {
            return;
        }
        let mut hole = i;
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole when their home
        // bucket is not inside the cyclic range (hole, j].
        let mask = self.mask();
        let mut j = (hole + 1) & mask;
        while self.buckets[j].bound != FREE {
            let home = self.home(self.buckets[j].task);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = self.buckets[j];
                self.buckets[j] = EMPTY;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        if self.buckets.len() > MIN_CAPACITY && self.len * 8 < self.buckets.len() {
            self.resize(self.buckets.len() / 2);
        }
    }

    fn resize(&mut self, new_len: usize) {
        debug_assert!(new_len.is_power_of_two());
        let mut fresh = Vec::with_capacity(new_len);
        fresh.resize(new_len, EMPTY);
        let old = core::mem::replace(&mut self.buckets, fresh);
        for b in old.into_iter().filter(|b| b.bound != FREE) {
            match self.probe(b.task) {
                Err(i) => self.buckets[i] = b,
                Ok(_) => unreachable!("duplicate task in the table"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn table_matches_a_btreemap_through_growth_and_shrinking() {
        let mut t = TaskTable::default();
        let mut m = BTreeMap::new();
        // A deterministic scramble of inserts and removes over colliding and distant ids.
        let mut x: u64 = 12345;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = TaskId((x >> 33) % 3000 * if step % 3 == 0 { 1 << 40 } else { 1 });
            if (x >> 20) % 5 < 3 {
                let i = t.insert(id);
                t.set_all(i, 0, t.all(i, 0) + 1);
                *m.entry(id).or_insert(0u32) += 1;
            } else if let Some(i) = t.find(id) {
                t.set_all(i, 0, 0);
                t.remove_if_empty(i);
                m.remove(&id);
            }
            assert_eq!(t.len(), m.len());
        }
        for (k, v) in &m {
            assert_eq!(t.find(*k).map(|i| t.all(i, 0)), Some(*v));
        }
        let keys: Vec<TaskId> = m.keys().copied().collect();
        for k in keys {
            let i = t.find(k).unwrap();
            t.set_all(i, 0, 0);
            t.remove_if_empty(i);
            assert!(t.find(k).is_none());
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.buckets.len(), MIN_CAPACITY);
    }

    #[test]
    fn cpu_bound_counts_and_slab_reuse() {
        let mut t = TaskTable::default();
        let i = t.insert(TaskId(9));
        t.add_on(i, 5, 1);
        t.add_on(i, 2, 1);
        t.add_on(i, 5, 0);
        t.set_all(i, 1, 2);
        assert_eq!(t.tp(i, 5, 1), 3);
        assert_eq!(t.tp(i, 5, 0), 1);
        assert_eq!(t.tp(i, 7, 1), 2);
        assert_eq!(t.cpu_bound(i).unwrap().bound, [1, 2]);
        assert!(!t.remove_on(i, 3, 1));
        assert!(t.remove_on(i, 5, 1));
        assert!(!t.remove_on(i, 5, 1));
        assert_eq!(t.cpu_bound(i).unwrap().on_cpu.len(), 2);
        assert!(t.remove_on(i, 5, 0));
        assert!(t.remove_on(i, 2, 1));
        assert!(t.cpu_bound(i).is_none());
        assert_eq!(t.free, [0]);
        t.remove_if_empty(i); // still holds 2 all-CPU breakpoints
        assert_eq!(t.len(), 1);
        t.set_all(i, 1, 0);
        t.remove_if_empty(i);
        assert_eq!(t.len(), 0);
        let j = t.insert(TaskId(10));
        t.add_on(j, 0, 0);
        assert!(t.free.is_empty(), "slab entry reused");
        assert_eq!(t.slab.len(), 1);
    }
}
