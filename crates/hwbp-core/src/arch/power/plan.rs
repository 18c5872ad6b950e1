//! Covering a region with DAWR windows: one window of whole doublewords when it fits, else one
//! per 512-byte piece when the CPU has enough DAWRs (POWER10 has 2).
//!
//! A DAWR watches `(MRD + 1) * 8` bytes from an aligned doubleword, so a region that does not
//! start and end on doublewords gets a **wider** window: the chunk's `window` is that aligned
//! window and `covers` the requested bytes, and hits outside `covers` must be filtered (Linux
//! does the same: `wp_check_constraints()` marks them `HW_BRK_TYPE_EXTRANEOUS_IRQ` and reports
//! no event).
//!
//! Not for: instruction breakpoints — powerpc exposes none through perf (0 instruction slots).

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::Chunk;
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Privilege, Region, Spec};

use super::regs::{DAWR_MAX_LEN, HW_BREAKPOINT_SIZE};
use super::Power;

/// The aligned window of a non-wrapping region, as `[start, end)` in `u128` (the end of a region
/// ending at `u64::MAX` is 2^64).
fn aligned_window(region: &Region) -> (u128, u128) {
    let g = u128::from(HW_BREAKPOINT_SIZE);
    let start = u128::from(region.addr) / g * g;
    let end = u128::from(region.addr) + u128::from(region.len_bytes);
    (start, end.div_ceil(g) * g)
}

/// The cut points that split window `[start, end)` into pieces the DAWR can watch: every
/// multiple of `boundary` inside it (POWER9), else every 512 bytes from `start` (POWER10).
/// Returns the piece starts (the first is `start`).
fn piece_starts(start: u128, end: u128, boundary: Option<u64>) -> Vec<u128> {
    let mut starts = alloc::vec![start];
    let step = u128::from(DAWR_MAX_LEN);
    let mut cut = match boundary {
        Some(b) => (start / u128::from(b) + 1) * u128::from(b),
        None => start + step,
    };
    while cut < end {
        starts.push(cut);
        cut += step;
    }
    starts
}

pub(super) fn plan(arch: &Power, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
    spec.region.check()?;
    if spec.access == Access::Execute {
        // Linux: hw_breakpoint_slots(TYPE_INST) = 0, so reservation fails with ENOSPC.
        return Err(RuleError::NoSlotsOfKind {
            pool: PoolKind::Inst,
        }
        .into());
    }
    let exclude_kernel = spec.privilege == Privilege::User;
    let region = spec.region;
    let (start, end) = aligned_window(&region);
    let window_len = end - start;
    let starts = piece_starts(start, end, arch.boundary());
    if starts.len() as u64 > u64::from(arch.dawrs()) {
        // Not even with every DAWR: name the single-window rule that fails.
        let err = if window_len > u128::from(DAWR_MAX_LEN) {
            RuleError::WindowTooLarge {
                addr: region.addr,
                len_bytes: region.len_bytes,
                window_len_bytes: u64::try_from(window_len).unwrap_or(u64::MAX),
                max_window_bytes: DAWR_MAX_LEN,
            }
        } else {
            RuleError::CrossesBoundary {
                addr: region.addr,
                len_bytes: region.len_bytes,
                boundary: arch.boundary().unwrap_or(DAWR_MAX_LEN),
            }
        };
        return Err(err.into());
    }
    let region_end = u128::from(region.addr) + u128::from(region.len_bytes);
    let mut chunks = Vec::with_capacity(starts.len());
    for (i, &piece_start) in starts.iter().enumerate() {
        let piece_end = starts.get(i + 1).copied().unwrap_or(end);
        let cover_start = piece_start.max(u128::from(region.addr));
        let cover_end = piece_end.min(region_end);
        // All values fit in u64: starts are at or below the region's first byte's window, and
        // lengths are at most 512.
        let covers = Region::new(cover_start as u64, (cover_end - cover_start) as u64);
        let window = Region::new(piece_start as u64, (piece_end - piece_start) as u64);
        chunks.push(Chunk {
            attr: BpAttr {
                addr: covers.addr,
                len_bytes: covers.len_bytes,
                bp_type: spec.access.bp_type(),
                exclude_kernel,
                disabled: false,
            },
            covers,
            window,
        });
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(arch: &Power, addr: u64, len: u64) -> Result<Vec<(Region, Region)>, PlanError> {
        plan(arch, &Spec::user(addr, len, Access::Write))
            .map(|c| c.iter().map(|c| (c.covers, c.window)).collect())
    }

    #[test]
    fn one_window_wider_than_the_region() {
        let r = Region::new;
        // 0x1003/2: the doubleword [0x1000, 0x1008) — filter hits to 0x1003..=0x1004.
        assert_eq!(
            plan_of(&Power::power9(), 0x1003, 2),
            Ok(alloc::vec![(r(0x1003, 2), r(0x1000, 8))])
        );
        // 0x1000/16: exact.
        assert_eq!(
            plan_of(&Power::power10(), 0x1000, 16),
            Ok(alloc::vec![(r(0x1000, 16), r(0x1000, 16))])
        );
        // 0x11fc/8 on POWER10: one 16-byte window across 0x1200.
        assert_eq!(
            plan_of(&Power::power10(), 0x11fc, 8),
            Ok(alloc::vec![(r(0x11fc, 8), r(0x11f8, 16))])
        );
    }

    #[test]
    fn power9_cannot_split() {
        assert_eq!(
            plan_of(&Power::power9(), 0x11fc, 8),
            Err(RuleError::CrossesBoundary {
                addr: 0x11fc,
                len_bytes: 8,
                boundary: 512
            }
            .into())
        );
        assert_eq!(
            plan_of(&Power::power9(), 0x1000, 520),
            Err(RuleError::WindowTooLarge {
                addr: 0x1000,
                len_bytes: 520,
                window_len_bytes: 520,
                max_window_bytes: 512
            }
            .into())
        );
    }

    #[test]
    fn power10_splits_over_two_dawrs() {
        let r = Region::new;
        // 0x1001/600: window [0x1000, 0x1260) = 608 bytes -> [0x1000, 0x1200) + [0x1200, 0x1260).
        assert_eq!(
            plan_of(&Power::power10(), 0x1001, 600),
            Ok(alloc::vec![
                (r(0x1001, 511), r(0x1000, 512)),
                (r(0x1200, 89), r(0x1200, 96)),
            ])
        );
        // 1024 aligned bytes: exactly two full windows.
        assert_eq!(plan_of(&Power::power10(), 0x1008, 1024).unwrap().len(), 2);
        // 1025: three windows > 2 DAWRs.
        assert_eq!(
            plan_of(&Power::power10(), 0x1008, 1025),
            Err(RuleError::WindowTooLarge {
                addr: 0x1008,
                len_bytes: 1025,
                window_len_bytes: 1032,
                max_window_bytes: 512
            }
            .into())
        );
    }

    #[test]
    fn execute_has_no_slots() {
        let e = plan(&Power::power10(), &Spec::user(0x1000, 4, Access::Execute)).unwrap_err();
        assert_eq!(
            e,
            RuleError::NoSlotsOfKind {
                pool: PoolKind::Inst
            }
            .into()
        );
        assert_eq!(e.class().errno_name(), "ENOSPC");
    }

    #[test]
    fn top_of_the_address_space() {
        // The last 4 bytes: window [2^64 - 8, 2^64), 8 bytes, which Linux's wrapping arithmetic
        // also computes (ALIGN(0) - start = 8).
        let c = plan(&Power::power9(), &Spec::user(u64::MAX - 3, 4, Access::Read)).unwrap();
        assert_eq!(c[0].window, Region::new(u64::MAX - 7, 8));
    }
}
