//! Slot histograms (Linux `struct bp_slots_histogram`, 16db2839a5a5).
//!
//! A histogram over a set of holders (CPUs or tasks) of a pool with `N` slots is `N` counters:
//! `count[n - 1]` is the number of holders using exactly `n` slots. Holders using 0 slots are
//! not counted. The largest `n` with a non-zero counter is the maximum over all holders,
//! found in O(N) without visiting any holder.
//!
//! Not for: anything but counting; the histograms do not know who their holders are.

/// Moves one holder from `old` slots to `new` slots (`bp_slots_histogram_add(h, old, new - old)`).
///
/// `old` and `new` are at most `count.len()`; a counter never goes below zero.
pub(crate) fn move_holder(count: &mut [u32], old: u32, new: u32) {
    if old == new {
        return;
    }
    if old > 0 {
        let c = &mut count[old as usize - 1];
        debug_assert!(*c > 0, "inconsistent breakpoint slots histogram");
        *c = c.saturating_sub(1);
    }
    if new > 0 {
        count[new as usize - 1] += 1;
    }
}

/// The largest number of slots any holder uses (`bp_slots_histogram_max()`), 0 if none.
pub(crate) fn max(count: &[u32]) -> u32 {
    match count.iter().rposition(|&c| c > 0) {
        Some(i) => i as u32 + 1,
        None => 0,
    }
}

/// The largest number of slots any holder of either histogram uses
/// (`bp_slots_histogram_max_merge()`), 0 if none.
pub(crate) fn max_merge(a: &[u32], b: &[u32]) -> u32 {
    debug_assert_eq!(a.len(), b.len());
    for i in (0..a.len()).rev() {
        if a[i] > 0 || b[i] > 0 {
            return i as u32 + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_and_max() {
        let mut h = [0u32; 4];
        assert_eq!(max(&h), 0);
        move_holder(&mut h, 0, 2); // a holder appears with 2 slots
        move_holder(&mut h, 0, 1);
        assert_eq!(h, [1, 1, 0, 0]);
        assert_eq!(max(&h), 2);
        move_holder(&mut h, 2, 4);
        assert_eq!(h, [1, 0, 0, 1]);
        assert_eq!(max(&h), 4);
        assert_eq!(max_merge(&[1, 0, 0, 0], &[0, 0, 1, 0]), 3);
        move_holder(&mut h, 4, 0);
        move_holder(&mut h, 1, 0);
        assert_eq!(h, [0; 4]);
        assert_eq!(max_merge(&h, &h), 0);
    }
}
