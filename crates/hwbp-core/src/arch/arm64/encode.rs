//! Control-register encoding and install/uninstall, exactly as Linux's
//! `arch/arm64/include/asm/hw_breakpoint.h` (`encode_ctrl_reg`, `decode_ctrl_reg`) and
//! `arch/arm64/kernel/hw_breakpoint.c` (`hw_breakpoint_control()`).

use crate::attr::PoolKind;

use super::regs::{Arm64Ctrl, Arm64Hw, Arm64Privilege, Arm64Regs, Arm64Type, DBG_HMC_HYP};

/// Linux `encode_ctrl_reg()`: `(len << 5) | (type << 3) | (privilege << 1) | enabled`, plus
/// HMC ([`DBG_HMC_HYP`], bit 13) when the kernel runs at EL2 (`kernel_in_hyp_mode`, VHE) and
/// the privilege is EL1.
///
/// BAS = bits 12:5, LSC = bits 4:3, PMC = bits 2:1, E = bit 0.
pub const fn encode_ctrl_reg(ctrl: Arm64Ctrl, kernel_in_hyp_mode: bool) -> u32 {
    let mut val = ((ctrl.bas as u32) << 5)
        | (ctrl.ty.code() << 3)
        | (ctrl.privilege.code() << 1)
        | ctrl.enabled as u32;
    if kernel_in_hyp_mode && matches!(ctrl.privilege, Arm64Privilege::El1) {
        val |= DBG_HMC_HYP;
    }
    val
}

/// Linux `decode_ctrl_reg()`: E = bit 0, PMC = bits 2:1, LSC = bits 4:3, BAS = bits 12:5.
/// HMC and every other bit are ignored, as in Linux.
pub const fn decode_ctrl_reg(reg: u32) -> Arm64Ctrl {
    Arm64Ctrl {
        enabled: reg & 1 != 0,
        privilege: Arm64Privilege::from_bits(reg >> 1),
        ty: Arm64Type::from_bits(reg >> 3),
        bas: ((reg >> 5) & 0xff) as u8,
    }
}

/// `hw_breakpoint_control(bp, HW_BREAKPOINT_INSTALL)`: the value register gets the address,
/// then the control register gets `encode_ctrl_reg(ctrl) | 1`.
///
/// Linux writes `reg_enable ? ctrl | 0x1 : ctrl & ~0x1` with `reg_enable =
/// !debug_info->{bps,wps}_disabled`: the E bit comes from the thread's step-over state, not from
/// `ctrl.enabled` (a disabled perf event is never installed). This model has no step-over
/// state, so E is always set.
pub(super) fn install(
    regs: &mut Arm64Regs,
    pool: PoolKind,
    n: u32,
    hw: &Arm64Hw,
    kernel_in_hyp_mode: bool,
) {
    let i = n as usize;
    let ctrl = encode_ctrl_reg(hw.ctrl, kernel_in_hyp_mode) | 1;
    match pool {
        PoolKind::Inst => {
            regs.bvr[i] = hw.address;
            regs.bcr[i] = ctrl;
        }
        PoolKind::Data => {
            regs.wvr[i] = hw.address;
            regs.wcr[i] = ctrl;
        }
    }
}

/// `hw_breakpoint_control(bp, HW_BREAKPOINT_UNINSTALL)`: writes 0 to that slot's control
/// register only; the value register keeps its stale address, as in Linux.
pub(super) fn uninstall(regs: &mut Arm64Regs, pool: PoolKind, n: u32) {
    match pool {
        PoolKind::Inst => regs.bcr[n as usize] = 0,
        PoolKind::Data => regs.wcr[n as usize] = 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctrl(bas: u8, ty: Arm64Type, privilege: Arm64Privilege) -> Arm64Ctrl {
        Arm64Ctrl {
            bas,
            ty,
            privilege,
            enabled: true,
        }
    }

    #[test]
    fn golden_ctrl_values() {
        use Arm64Privilege::{El0, El1};
        use Arm64Type::{Execute, Load, LoadStore, Store};
        // wp, store, 4 bytes at offset 0: BAS=0b1111<<5 (0x1e0), LSC=10<<3 (0x10),
        // PMC=EL0 10<<1 (0x4), E=1 -> 0x1f5
        assert_eq!(encode_ctrl_reg(ctrl(0x0f, Store, El0), false), 0x1f5);
        // wp, load, 1 byte at offset 3: BAS=0b1000<<5 (0x100), LSC=01<<3 (0x8), PMC=EL0 (0x4),
        // E=1 -> 0x10d
        assert_eq!(encode_ctrl_reg(ctrl(0x08, Load, El0), false), 0x10d);
        // wp, rw, 8 bytes: BAS=0xff<<5 (0x1fe0), LSC=11<<3 (0x18), PMC=EL0 (0x4), E=1 -> 0x1ffd
        assert_eq!(encode_ctrl_reg(ctrl(0xff, LoadStore, El0), false), 0x1ffd);
        // bp, execute, 4 bytes: BAS=0b1111<<5 (0x1e0), LSC=00, PMC=EL0 (0x4), E=1 -> 0x1e5
        assert_eq!(encode_ctrl_reg(ctrl(0x0f, Execute, El0), false), 0x1e5);
        // bp, execute, kernel: BAS 0x1e0 | PMC=EL1 01<<1 (0x2) | E -> 0x1e3
        assert_eq!(encode_ctrl_reg(ctrl(0x0f, Execute, El1), false), 0x1e3);
        // same on a VHE kernel: | HMC (1<<13 = 0x2000) -> 0x21e3
        assert_eq!(encode_ctrl_reg(ctrl(0x0f, Execute, El1), true), 0x21e3);
        // HMC only for EL1: EL0 store 4 bytes on VHE stays 0x1f5
        assert_eq!(encode_ctrl_reg(ctrl(0x0f, Store, El0), true), 0x1f5);
        // wp, store, 2 bytes at offset 6, disabled: BAS=0b1100_0000<<5 (0x1800), LSC 0x10,
        // PMC=EL0 0x4, E=0 -> 0x1814
        let mut c = ctrl(0xc0, Store, El0);
        c.enabled = false;
        assert_eq!(encode_ctrl_reg(c, false), 0x1814);
    }

    #[test]
    fn decode_reads_back_fields_and_ignores_hmc() {
        assert_eq!(
            decode_ctrl_reg(0x21e3),
            ctrl(0x0f, Arm64Type::Execute, Arm64Privilege::El1)
        );
        assert_eq!(
            decode_ctrl_reg(0x1f5),
            ctrl(0x0f, Arm64Type::Store, Arm64Privilege::El0)
        );
        let zero = decode_ctrl_reg(0);
        assert_eq!(
            (zero.bas, zero.ty, zero.privilege, zero.enabled),
            (0, Arm64Type::Execute, Arm64Privilege::Reserved, false)
        );
    }

    #[test]
    fn uninstall_clears_only_that_control_register() {
        let hw = Arm64Hw {
            address: 0x1000,
            ctrl: ctrl(0x0f, Arm64Type::Store, Arm64Privilege::El0),
        };
        let mut regs = Arm64Regs::default();
        install(&mut regs, PoolKind::Data, 1, &hw, false);
        install(&mut regs, PoolKind::Data, 2, &hw, false);
        assert_eq!((regs.wvr[1], regs.wcr[1]), (0x1000, 0x1f5));
        uninstall(&mut regs, PoolKind::Data, 1);
        assert_eq!((regs.wvr[1], regs.wcr[1]), (0x1000, 0)); // value stays, as in Linux
        assert_eq!(regs.wcr[2], 0x1f5);
        assert_eq!(regs.bcr, [0; 16]);
    }

    #[test]
    fn install_sets_e_even_for_a_disabled_setting() {
        let mut c = ctrl(0x0f, Arm64Type::Store, Arm64Privilege::El0);
        c.enabled = false;
        let hw = Arm64Hw {
            address: 0x2000,
            ctrl: c,
        };
        let mut regs = Arm64Regs::default();
        install(&mut regs, PoolKind::Data, 0, &hw, false);
        assert_eq!(regs.wcr[0], 0x1f5); // reg_enable ? ctrl | 0x1 : ..
    }
}
