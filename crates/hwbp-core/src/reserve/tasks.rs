//! Per-task breakpoint counts, in a hash table keyed by [`TaskId`].
//!
//! Linux keeps each task's breakpoints in a list found through an rhltable keyed by the task
//! (`task_bps_ht`, 0370dc314df3) and counts them on every request; here each task keeps the
//! counts themselves, so `TP_k(c)` is a lookup. The table is open addressing with linear
//! probing and backward-shift deletion: no allocation per request, only when the table
//! grows or shrinks.
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

/// One task's reservations, per pool index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskSlots {
    /// Breakpoints bound to the task on all CPUs.
    pub(crate) all: [u32; 2],
    /// Breakpoints bound to the task on one CPU, summed over CPUs. The task is
    /// *CPU-independent* in a pool (accounted in `tsk_pinned_all`) iff this is 0.
    pub(crate) bound: [u32; 2],
    /// Breakpoints bound to the task on one CPU, per CPU, sorted by CPU, no all-zero entries.
    pub(crate) on_cpu: Vec<OnCpu>,
}

impl TaskSlots {
    /// The task's CPU-bound breakpoints on `cpu` in pool index `p`.
    pub(crate) fn on(&self, cpu: u32, p: usize) -> u32 {
        match self.on_cpu.binary_search_by_key(&cpu, |e| e.cpu) {
            Ok(i) => self.on_cpu[i].count[p],
            Err(_) => 0,
        }
    }

    /// `TP_k(c)`: the task's breakpoints in pool index `p` that apply on `cpu`.
    pub(crate) fn tp(&self, cpu: u32, p: usize) -> u32 {
        self.all[p] + self.on(cpu, p)
    }

    /// Adds one CPU-bound breakpoint on `cpu`.
    pub(crate) fn add_on(&mut self, cpu: u32, p: usize) {
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

    /// Removes one CPU-bound breakpoint on `cpu`; false (and no change) if there is none.
    pub(crate) fn remove_on(&mut self, cpu: u32, p: usize) -> bool {
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

    /// Whether the task holds nothing in any pool.
    pub(crate) fn is_empty(&self) -> bool {
        self.all == [0, 0] && self.bound == [0, 0]
    }
}

/// Smallest non-zero table size.
const MIN_CAPACITY: usize = 16;

/// `TaskId` → [`TaskSlots`], open addressing.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskTable {
    /// Power-of-two number of buckets (or empty).
    buckets: Vec<Option<(TaskId, TaskSlots)>>,
    len: usize,
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

    /// The bucket holding `task`, or `Err` with the empty bucket where it would go.
    fn find(&self, task: TaskId) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(task);
        loop {
            match &self.buckets[i] {
                None => return Err(i),
                Some((k, _)) if *k == task => return Ok(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub(crate) fn get(&self, task: TaskId) -> Option<&TaskSlots> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(task).ok()?;
        self.buckets[i].as_ref().map(|(_, s)| s)
    }

    pub(crate) fn get_mut(&mut self, task: TaskId) -> Option<&mut TaskSlots> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(task).ok()?;
        self.buckets[i].as_mut().map(|(_, s)| s)
    }

    /// The task's entry, created empty if missing.
    pub(crate) fn get_or_insert(&mut self, task: TaskId) -> &mut TaskSlots {
        // Load factor at most 3/4.
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.resize((self.buckets.len() * 2).max(MIN_CAPACITY));
        }
        let i = match self.find(task) {
            Ok(i) => i,
            Err(i) => {
                self.buckets[i] = Some((task, TaskSlots::default()));
                self.len += 1;
                i
            }
        };
        match &mut self.buckets[i] {
            Some((_, s)) => s,
            None => unreachable!("bucket just filled"),
        }
    }

    /// Removes `task` if present.
    pub(crate) fn remove(&mut self, task: TaskId) {
        if self.len == 0 {
            return;
        }
        let Ok(mut hole) = self.find(task) else {
            return;
        };
        self.buckets[hole] = None;
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole when their home
        // bucket is not inside the cyclic range (hole, j].
        let mask = self.mask();
        let mut j = (hole + 1) & mask;
        while let Some((k, _)) = &self.buckets[j] {
            let home = self.home(*k);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = self.buckets[j].take();
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
        fresh.resize_with(new_len, || None);
        let old = core::mem::replace(&mut self.buckets, fresh);
        for (k, s) in old.into_iter().flatten() {
            match self.find(k) {
                Err(i) => self.buckets[i] = Some((k, s)),
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
                t.get_or_insert(id).all[0] += 1;
                *m.entry(id).or_insert(0u32) += 1;
            } else {
                t.remove(id);
                m.remove(&id);
            }
            assert_eq!(t.len(), m.len());
        }
        for (k, v) in &m {
            assert_eq!(t.get(*k).map(|s| s.all[0]), Some(*v));
        }
        let keys: Vec<TaskId> = m.keys().copied().collect();
        for k in keys {
            t.remove(k);
            assert!(t.get(k).is_none());
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.buckets.len(), MIN_CAPACITY);
    }

    #[test]
    fn on_cpu_counts() {
        let mut s = TaskSlots::default();
        s.add_on(5, 1);
        s.add_on(2, 1);
        s.add_on(5, 0);
        assert_eq!(s.on(5, 1), 1);
        assert_eq!(s.tp(5, 0), 1);
        assert_eq!(s.bound, [1, 2]);
        assert!(!s.remove_on(3, 1));
        assert!(s.remove_on(5, 1));
        assert!(!s.remove_on(5, 1));
        assert_eq!(s.on_cpu.len(), 2);
        assert!(s.remove_on(5, 0));
        assert!(s.remove_on(2, 1));
        assert!(s.is_empty());
        assert!(s.on_cpu.is_empty());
    }
}
