//! Covering a region with arm64 watchpoints: one per touched 8-byte doubleword, each selecting
//! exactly the region's bytes in that doubleword through BAS.
//!
//! A watchpoint's BAS can select any contiguous 1..=8 bytes of one aligned doubleword, so a
//! region touching `n` doublewords needs exactly `n` watchpoints and no fewer (one
//! watchpoint never spans two doublewords): `0x1003/2` needs 1, an unaligned `0x1003/8` needs
//! 2. Each piece is asked for at its own (possibly unaligned) address and length, which
//! Linux's `hw_breakpoint_arch_parse()` turns into `address & !7` and `BAS << (address & 7)`
//! without dropping a byte (the piece never runs past its doubleword).
//!
//! Not for: MASK-based (power-of-two range) watchpoints, which Linux does not program.

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::{Chunk, MAX_PLAN_CHUNKS};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Privilege, Region, Spec};

use super::validate::EXECUTE_LEN_BYTES;
use super::Arm64;

/// Bytes in the doubleword a watchpoint's BAS selects from.
const DOUBLEWORD: u64 = 8;

/// Number of aligned doublewords `region` touches: `(last / 8) - (addr / 8) + 1`, or 0 for an
/// empty or wrapping region.
pub fn doublewords_touched(region: &Region) -> u64 {
    match region.last() {
        Some(last) => last / DOUBLEWORD - region.addr / DOUBLEWORD + 1,
        None => 0,
    }
}

pub(super) fn plan(arch: &Arm64, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
    spec.region.check()?;
    let exclude_kernel = spec.privilege == Privilege::User;
    let addr = spec.region.addr;
    let len = spec.region.len_bytes;
    let bp_type = spec.access.bp_type();
    if spec.access == Access::Execute {
        // One instruction: the spec names its first byte (1), the instruction (4) or perf's
        // sizeof(long) (8); Linux rewrites every length to 4.
        if len != 1 && len != EXECUTE_LEN_BYTES && len != 8 {
            return Err(RuleError::ExecuteRegion { len_bytes: len }.into());
        }
        // Linux accepts a misaligned execute address (BAS 0xf shifted by addr & 3) but an A64
        // pc is always 4-aligned, so such a breakpoint could never trigger: refuse it.
        if !addr.is_multiple_of(EXECUTE_LEN_BYTES) {
            return Err(RuleError::InstructionMisaligned {
                addr,
                required_align: EXECUTE_LEN_BYTES,
            }
            .into());
        }
        let at = Region::new(addr, 1);
        return Ok(alloc::vec![Chunk {
            attr: BpAttr {
                addr,
                len_bytes: EXECUTE_LEN_BYTES,
                bp_type,
                exclude_kernel,
                disabled: false,
            },
            covers: at,
            window: at,
        }]);
    }
    let count = doublewords_touched(&spec.region);
    if count > MAX_PLAN_CHUNKS {
        let capacity = arch.wrps;
        return Err(PlanError::DoesNotFit {
            pool: PoolKind::Data,
            access: spec.access,
            needed: u32::try_from(count).unwrap_or(u32::MAX),
            available: capacity,
            capacity,
        });
    }
    let mut chunks = Vec::with_capacity(count as usize);
    let (mut a, mut left) = (addr, len);
    while left > 0 {
        // Bytes from `a` to the end of its doubleword, or fewer if the region ends first.
        let room = DOUBLEWORD - a % DOUBLEWORD;
        let size = room.min(left);
        let piece = Region::new(a, size);
        chunks.push(Chunk {
            attr: BpAttr {
                addr: a,
                len_bytes: size,
                bp_type,
                exclude_kernel,
                disabled: false,
            },
            covers: piece,
            window: piece,
        });
        left -= size;
        if left > 0 {
            // Cannot overflow: the region was checked not to wrap and bytes remain after `a`.
            a += size;
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(addr: u64, len: u64) -> Vec<(u64, u64)> {
        plan(&Arm64::new(), &Spec::user(addr, len, Access::Write))
            .unwrap()
            .iter()
            .map(|c| (c.attr.addr, c.attr.len_bytes))
            .collect()
    }

    #[test]
    fn golden_splits() {
        assert_eq!(pieces(0x1003, 2), [(0x1003, 2)]);
        assert_eq!(pieces(0x1003, 8), [(0x1003, 5), (0x1008, 3)]);
        assert_eq!(pieces(0x1000, 8), [(0x1000, 8)]);
        assert_eq!(pieces(0x1007, 2), [(0x1007, 1), (0x1008, 1)]);
        assert_eq!(pieces(0x1001, 20), [(0x1001, 7), (0x1008, 8), (0x1010, 5)]);
        assert_eq!(pieces(u64::MAX, 1), [(u64::MAX, 1)]);
        assert_eq!(doublewords_touched(&Region::new(0x1003, 8)), 2);
        assert_eq!(doublewords_touched(&Region::new(0, 1 << 40)), 1 << 37);
    }

    #[test]
    fn execute_and_limits() {
        let arch = Arm64::new();
        let c = plan(&arch, &Spec::user(0x40_1000, 8, Access::Execute)).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].attr.len_bytes, c[0].covers),
            (4, Region::new(0x40_1000, 1))
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x40_1000, 2, Access::Execute)),
            Err(RuleError::ExecuteRegion { len_bytes: 2 }.into())
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x40_1002, 4, Access::Execute)),
            Err(RuleError::InstructionMisaligned {
                addr: 0x40_1002,
                required_align: 4
            }
            .into())
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x1000, 0, Access::Write)),
            Err(RuleError::ZeroLength.into())
        );
        assert_eq!(
            plan(&arch, &Spec::user(u64::MAX, 2, Access::Write)),
            Err(RuleError::AddressWrap {
                addr: u64::MAX,
                len_bytes: 2
            }
            .into())
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x1000, 8 * 65, Access::Read)),
            Err(PlanError::DoesNotFit {
                pool: PoolKind::Data,
                access: Access::Read,
                needed: 65,
                available: 4,
                capacity: 4
            })
        );
        assert_eq!(
            plan(&arch, &Spec::user(0x1000, 8 * 64, Access::Read))
                .unwrap()
                .len(),
            64
        );
    }
}
