//! Covering a region with aligned 1/2/4/8-byte pieces, as gdb's
//! `x86_handle_nonaligned_watchpoint()` (`gdb/nat/x86-dregs.c`) does.
//!
//! gdb's `size_try_array[min(len, 8) - 1][addr % 8]` picks, at each step, the largest power of
//! two that is at most the remaining length and divides the address; the loop below computes
//! the same value without the table. That greedy choice is the minimum number of aligned
//! pieces.

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::{Chunk, MAX_PLAN_CHUNKS};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Privilege, Region, Spec};

use super::X86_64;

/// gdb's piece length at `addr` with `len` bytes left: the largest power of two
/// `<= min(len, 8)` that `addr` is aligned to.
pub fn gdb_piece_len(addr: u64, len: u64) -> u64 {
    let mut size = 8;
    while size > 1 && (size > len || !addr.is_multiple_of(size)) {
        size /= 2;
    }
    size
}

/// The number of pieces [`gdb_piece_len`] produces for a region, in O(1).
pub fn x86_piece_count(addr: u64, len: u64) -> u64 {
    // Head: pieces until the address is 8-aligned (at most 3), then whole 8-byte pieces, then
    // the tail (at most 3 pieces).
    let mut count = 0;
    let (mut a, mut left) = (addr, len);
    while left > 0 && !a.is_multiple_of(8) {
        let s = gdb_piece_len(a, left);
        a = a.wrapping_add(s);
        left -= s;
        count += 1;
    }
    count += left / 8;
    let mut tail = left % 8;
    while tail > 0 {
        let s = gdb_piece_len(0, tail);
        tail -= s;
        count += 1;
    }
    count
}

pub(super) fn plan(arch: &X86_64, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
    spec.region.check()?;
    let exclude_kernel = spec.privilege == Privilege::User;
    let addr = spec.region.addr;
    let len = spec.region.len_bytes;
    if spec.access == Access::Execute {
        // One instruction: the spec's length is 1 (the byte the instruction starts at) or
        // perf's sizeof(long); perf itself requires 8.
        if len != 1 && len != 8 {
            return Err(RuleError::ExecuteRegion { len_bytes: len }.into());
        }
        return Ok(alloc::vec![Chunk {
            attr: BpAttr {
                addr,
                len_bytes: 8,
                bp_type: spec.access.bp_type(),
                exclude_kernel,
                disabled: false,
            },
            covers: Region::new(addr, 1),
            window: Region::new(addr, 1),
        }]);
    }
    if spec.access == Access::Read {
        return Err(RuleError::ReadOnlyUnsupported.into());
    }
    let count = x86_piece_count(addr, len);
    if count > MAX_PLAN_CHUNKS {
        return Err(PlanError::DoesNotFit {
            pool: PoolKind::Data,
            access: spec.access,
            needed: u32::try_from(count).unwrap_or(u32::MAX),
            available: arch.slots,
            capacity: arch.slots,
        });
    }
    let mut chunks = Vec::with_capacity(count as usize);
    let (mut a, mut left) = (addr, len);
    while left > 0 {
        let size = gdb_piece_len(a, left);
        let piece = Region::new(a, size);
        chunks.push(Chunk {
            attr: BpAttr {
                addr: a,
                len_bytes: size,
                bp_type: spec.access.bp_type(),
                exclude_kernel,
                disabled: false,
            },
            covers: piece,
            window: piece,
        });
        // Cannot overflow: the region was checked not to wrap.
        a = a.wrapping_add(size);
        left -= size;
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gdb's table, verbatim from `gdb/nat/x86-dregs.c`.
    const SIZE_TRY_ARRAY: [[u64; 8]; 8] = [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [2, 1, 2, 1, 2, 1, 2, 1],
        [2, 1, 2, 1, 2, 1, 2, 1],
        [4, 1, 2, 1, 4, 1, 2, 1],
        [4, 1, 2, 1, 4, 1, 2, 1],
        [4, 1, 2, 1, 4, 1, 2, 1],
        [4, 1, 2, 1, 4, 1, 2, 1],
        [8, 1, 2, 1, 4, 1, 2, 1],
    ];

    #[test]
    fn piece_len_is_gdbs_table() {
        for len in 1..=8u64 {
            for align in 0..8u64 {
                assert_eq!(
                    gdb_piece_len(0x1000 + align, len),
                    SIZE_TRY_ARRAY[len as usize - 1][align as usize],
                    "len {len} align {align}"
                );
            }
        }
    }

    #[test]
    fn golden_splits() {
        let arch = X86_64::new();
        let pieces = |addr, len| -> Vec<(u64, u64)> {
            plan(&arch, &Spec::user(addr, len, Access::Write))
                .unwrap()
                .iter()
                .map(|c| (c.attr.addr, c.attr.len_bytes))
                .collect()
        };
        // 0x1003/8: 1 byte to reach 4-alignment, 4 to reach 8, then 2 and 1 for the rest.
        assert_eq!(
            pieces(0x1003, 8),
            [(0x1003, 1), (0x1004, 4), (0x1008, 2), (0x100a, 1)]
        );
        assert_eq!(pieces(0x1000, 32).len(), 4);
        assert_eq!(pieces(0x1001, 7), [(0x1001, 1), (0x1002, 2), (0x1004, 4)]);
        assert_eq!(pieces(0x1000, 3), [(0x1000, 2), (0x1002, 1)]);
        assert_eq!(x86_piece_count(0x1003, 8), 4);
        assert_eq!(x86_piece_count(0x1000, 1 << 40), 1 << 37);
    }

    #[test]
    fn execute_and_read() {
        let arch = X86_64::new();
        let c = plan(&arch, &Spec::user(0x401000, 1, Access::Execute)).unwrap();
        assert_eq!(c[0].attr.len_bytes, 8);
        assert_eq!(c[0].covers, Region::new(0x401000, 1));
        assert_eq!(
            plan(&arch, &Spec::user(0x401000, 4, Access::Execute)),
            Err(RuleError::ExecuteRegion { len_bytes: 4 }.into())
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x1000, 4, Access::Read)),
            Err(RuleError::ReadOnlyUnsupported.into())
        );
    }
}
