//! arm64 hit matching read from the register file (Arm ARM D2.9 breakpoints, D2.10
//! watchpoints), for user-mode (EL0) accesses.
//!
//! A slot matches when its control register has E set and PMC includes EL0, and:
//! - breakpoint: the instruction starts at the first byte BAS selects past `DBGBVR<n>`;
//! - watchpoint: LSC includes the access (bit 0 loads, bit 1 stores) and the access touches
//!   a byte `DBGWVR<n> + i` whose BAS bit `i` is set.
//!
//! Watchpoints are faults: the exception is taken before the access completes. Not for:
//! deciding which watchpoint Linux reports for a "near" multi-byte access; every matching slot
//! is reported.

use crate::access::Access;
use crate::attr::PoolKind;
use crate::spec::Region;

use super::encode::decode_ctrl_reg;
use super::regs::{Arm64Privilege, Arm64Regs, Arm64Type};

/// Registers of `pool` (the first `slots`) that trap `access` of `region` (bit n = slot n).
pub(super) fn trapping_registers(
    regs: &Arm64Regs,
    pool: PoolKind,
    slots: u32,
    access: Access,
    region: Region,
) -> u32 {
    let mut mask = 0;
    for n in 0..slots.min(16) {
        let ctrl = decode_ctrl_reg(regs.ctrl(pool, n as usize));
        let el0 = matches!(
            ctrl.privilege,
            Arm64Privilege::El0 | Arm64Privilege::El0AndEl1
        );
        if !ctrl.enabled || !el0 || ctrl.bas == 0 {
            continue;
        }
        let value = regs.value(pool, n as usize);
        let hit = match pool {
            PoolKind::Inst => {
                access == Access::Execute
                    && value.checked_add(u64::from(ctrl.bas.trailing_zeros())) == Some(region.addr)
            }
            PoolKind::Data => {
                let lsc = match ctrl.ty {
                    Arm64Type::Execute => 0,
                    Arm64Type::Load => 1,
                    Arm64Type::Store => 2,
                    Arm64Type::LoadStore => 3,
                };
                let wants = match access {
                    Access::Read => 1,
                    Access::Write => 2,
                    Access::ReadWrite => 3,
                    Access::Execute => 0,
                };
                lsc & wants != 0
                    && (0..8u64).any(|i| {
                        ctrl.bas & (1 << i) != 0
                            && value
                                .checked_add(i)
                                .is_some_and(|b| region.overlaps(&Region::new(b, 1)))
                    })
            }
        };
        if hit {
            mask |= 1 << n;
        }
    }
    mask
}
