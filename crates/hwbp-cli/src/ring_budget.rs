//! How big each CPU's perf ring may be for a user without `CAP_IPC_LOCK`.
//!
//! The kernel's rule (`perf_mmap()`, kernel/events/core.c): a ring of `n` data pages locks
//! `n + 1` pages; a user may lock `perf_event_mlock_kb` × online CPUs of them, and beyond that
//! each ring is charged to the process's pinned memory, which `RLIMIT_MEMLOCK` caps — unless
//! `CAP_IPC_LOCK` or `perf_event_paranoid` = -1. Measured here as `nobody`
//! (perf_event_mlock_kb 516, RLIMIT_MEMLOCK 8192 KiB, 2 CPUs): 129 × 2 + 2048 = 2306 pages,
//! so two rings of 1024 data pages (2 × 1025) map and two of 2048 (the default) do not.
//!
//! The budget is computed before the events are opened (their wake-up watermark is a fraction
//! of the ring) and then verified by mapping: the sampler halves the rings while the kernel
//! still refuses (other processes of the same user with perf rings mapped use the same
//! per-user allowance, invisibly from here).
//!
//! Not for: the mapping itself (`crate::sampler`).

use hwbp::caps::LockLimits;

/// The smallest ring hwbp maps: 2^4 data pages (64 KiB with 4 KiB pages: 1,365 plain samples,
/// 7 with a `--backtrace` stack copy).
pub const MIN_DATA_PAGES_LOG2: u32 = 4;

/// The largest `log2` in `min..=want` such that `rings` rings of `2^log2 + 1` pages fit in
/// `budget` pages (`None`: unlimited, so `want`); `min` if none does (the mapping then shows
/// the kernel's verdict).
pub fn fit_log2(budget: Option<u64>, rings: u64, want: u32, min: u32) -> u32 {
    let Some(budget) = budget else { return want };
    let min = min.min(want);
    (min..=want)
        .rev()
        .find(|&k| {
            1u64.checked_shl(k)
                .and_then(|n| n.checked_add(1))
                .and_then(|n| n.checked_mul(rings))
                .is_some_and(|total| total <= budget)
        })
        .unwrap_or(min)
}

/// Why the rings are smaller than wanted, for the note on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The ring size used (`2^used` data pages per CPU).
    pub used: u32,
    /// The size asked for.
    pub wanted: u32,
    /// The limits that applied.
    pub limits: LockLimits,
}

impl Shrunk {
    /// The note: the size used, the limits with their values, how to get bigger rings.
    pub fn note(&self, page: u64) -> String {
        format!(
            "note: perf rings of {} per CPU instead of {}: the memory a user without \
             CAP_IPC_LOCK may lock for them is {}; hits beyond a full ring are counted as lost. \
             For bigger rings raise `ulimit -l` or /proc/sys/kernel/perf_event_mlock_kb, or run \
             with CAP_IPC_LOCK or as root",
            size(page << self.used),
            size(page << self.wanted),
            self.limits
        )
    }
}

/// `4 MiB`, `64 KiB`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine as `nobody`: 516 KiB x 2 CPUs + 8192 KiB = 2306 pages; two rings of
    /// 1025 pages fit (2050), two of 2049 do not.
    #[test]
    fn budget_of_nobody_on_two_cpus_is_two_rings_of_1024_pages() {
        let limits = LockLimits {
            mlock_kb: Some(516),
            online_cpus: 2,
            memlock_kb: Some(8192),
            exempt: false,
        };
        let budget = limits.budget_pages(4096, 0);
        assert_eq!(budget, Some(2306));
        assert_eq!(fit_log2(budget, 2, 11, MIN_DATA_PAGES_LOG2), 10);
        // --backtrace wants 2^14: the same 2^10.
        assert_eq!(fit_log2(budget, 2, 14, MIN_DATA_PAGES_LOG2), 10);
        // Pinned memory of the process comes off RLIMIT_MEMLOCK: 2306 - 2048 + 1 = 259 pages
        // hold two rings of 2^7 + 1 (258); 257 only two of 2^6 + 1.
        assert_eq!(limits.budget_pages(4096, 8188), Some(259));
        assert_eq!(fit_log2(Some(259), 2, 11, MIN_DATA_PAGES_LOG2), 7);
        assert_eq!(fit_log2(Some(257), 2, 11, MIN_DATA_PAGES_LOG2), 6);
    }

    #[test]
    fn per_user_allowance_alone_fits_perfs_default_on_any_cpu_count() {
        // RLIMIT_MEMLOCK 64 KiB (the old default), 64 CPUs: 129 x 64 + 16 pages; 64 rings of
        // 2^7 + 1 = 8256 fit, of 2^8 + 1 do not.
        let limits = LockLimits {
            mlock_kb: Some(516),
            online_cpus: 64,
            memlock_kb: Some(64),
            exempt: false,
        };
        let budget = limits.budget_pages(4096, 0);
        assert_eq!(budget, Some(129 * 64 + 16));
        assert_eq!(fit_log2(budget, 64, 11, MIN_DATA_PAGES_LOG2), 7);
    }

    #[test]
    fn exempt_or_unknown_and_too_small() {
        let exempt = LockLimits {
            mlock_kb: Some(516),
            online_cpus: 2,
            memlock_kb: Some(8192),
            exempt: true,
        };
        assert_eq!(exempt.budget_pages(4096, 0), None);
        assert_eq!(fit_log2(None, 2, 14, MIN_DATA_PAGES_LOG2), 14);
        // Not even the minimum fits: the minimum (the mapping names the limit).
        assert_eq!(
            fit_log2(Some(10), 2, 11, MIN_DATA_PAGES_LOG2),
            MIN_DATA_PAGES_LOG2
        );
        // Exactly two rings of 2^4 + 1.
        assert_eq!(fit_log2(Some(34), 2, 11, MIN_DATA_PAGES_LOG2), 4);
        assert_eq!(fit_log2(Some(33), 2, 11, MIN_DATA_PAGES_LOG2), 4);
        // Want below the minimum: want.
        assert_eq!(fit_log2(Some(10), 2, 2, MIN_DATA_PAGES_LOG2), 2);
    }

    #[test]
    fn note_text() {
        let s = Shrunk {
            used: 10,
            wanted: 11,
            limits: LockLimits {
                mlock_kb: Some(516),
                online_cpus: 2,
                memlock_kb: Some(8192),
                exempt: false,
            },
        };
        assert_eq!(
            s.note(4096),
            "note: perf rings of 4 MiB per CPU instead of 8 MiB: the memory a user without \
             CAP_IPC_LOCK may lock for them is perf_event_mlock_kb (516 KiB) x 2 online CPUs \
             per user plus RLIMIT_MEMLOCK (8192 KiB) per process; hits beyond a full ring are \
             counted as lost. For bigger rings raise `ulimit -l` or \
             /proc/sys/kernel/perf_event_mlock_kb, or run with CAP_IPC_LOCK or as root"
        );
    }
}
