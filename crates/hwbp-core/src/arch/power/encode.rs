//! DAWR/DAWRX encoding and install/uninstall, exactly as Linux's `set_dawr()`
//! (`arch/powerpc/kernel/dawr.c`) and `arch_install/uninstall_hw_breakpoint()`
//! (`arch/powerpc/kernel/hw_breakpoint.c`).

use super::regs::{
    PowerHw, PowerRegs, DAWRX_MRD_MASK, DAWRX_MRD_SHIFT, HW_BRK_TYPE_PRIV_ALL, HW_BRK_TYPE_READ,
    HW_BRK_TYPE_TRANSLATE, HW_BRK_TYPE_WRITE,
};

/// The all-zero `struct arch_hw_breakpoint null_brk = {0}` Linux programs to clear a DAWR.
pub const NULL_BRK: PowerHw = PowerHw {
    address: 0,
    ty: 0,
    len: 0,
    hw_len: 0,
};

/// Linux `set_dawr()`: the `(DAWR, DAWRX)` pair for a setting.
///
/// ```text
/// dawr   = address
/// dawrx  = (type & (READ | WRITE)) << (63 - 58)          // DR bit 5, DW bit 6
/// dawrx |= ((type & TRANSLATE) >> 2) << (63 - 59)        // WT bit 4
/// dawrx |= (type & PRIV_ALL) >> 3                        // USER 0, KERNEL 1, HYP 2
/// mrd    = ((hw_len + 7) >> 3) - 1                       // doublewords, biased by -1
/// dawrx |= (mrd & 0x3f) << (63 - 53)                     // MRD bits 10..=15
/// ```
///
/// WTI is never set. For [`NULL_BRK`] `mrd` is `-1`, so a cleared DAWRX reads **`0xfc00`**
/// (MRD = 63, nothing else), not 0.
pub const fn set_dawr(hw: &PowerHw) -> (u64, u64) {
    let ty = hw.ty as u64;
    let mut dawrx = (ty & (HW_BRK_TYPE_READ | HW_BRK_TYPE_WRITE) as u64) << (63 - 58);
    dawrx |= ((ty & HW_BRK_TYPE_TRANSLATE as u64) >> 2) << (63 - 59);
    dawrx |= (ty & HW_BRK_TYPE_PRIV_ALL as u64) >> 3;
    let mrd = ((hw.hw_len as u64 + 7) >> 3).wrapping_sub(1);
    dawrx |= (mrd & DAWRX_MRD_MASK) << DAWRX_MRD_SHIFT;
    (hw.address, dawrx)
}

/// `arch_install_hw_breakpoint()` → `__set_breakpoint(i, info)` → `set_dawr(i, info)`.
pub(super) fn install(regs: &mut PowerRegs, n: u32, hw: &PowerHw) {
    let (dawr, dawrx) = set_dawr(hw);
    regs.dawr[n as usize] = dawr;
    regs.dawrx[n as usize] = dawrx;
}

/// `arch_uninstall_hw_breakpoint()` → `__set_breakpoint(i, &null_brk)`: DAWR = 0,
/// DAWRX = `0xfc00`, that slot only.
pub(super) fn uninstall(regs: &mut PowerRegs, n: u32) {
    install(regs, n, &NULL_BRK);
}

#[cfg(test)]
mod tests {
    use super::super::regs::{Dawrx, HW_BRK_TYPE_HYP, HW_BRK_TYPE_KERNEL, HW_BRK_TYPE_USER};
    use super::*;

    const T: u16 = HW_BRK_TYPE_TRANSLATE;

    fn hw(address: u64, ty: u16, hw_len: u16) -> PowerHw {
        PowerHw {
            address,
            ty,
            len: hw_len,
            hw_len,
        }
    }

    #[test]
    fn golden_dawrx_values() {
        // user write, 8 bytes: DW (0x02<<5 = 0x40) | WT (0x04>>2<<4 = 0x10) | USER (0x08>>3 = 0x1)
        // | MRD ((8+7)>>3)-1 = 0 -> 0x51
        assert_eq!(
            set_dawr(&hw(0x1000, T | HW_BRK_TYPE_WRITE | HW_BRK_TYPE_USER, 8)),
            (0x1000, 0x51)
        );
        // user read, 16 bytes: DR 0x20 | WT 0x10 | USER 0x1 | MRD 1<<10 (0x400) -> 0x431
        assert_eq!(
            set_dawr(&hw(0x1003, T | HW_BRK_TYPE_READ | HW_BRK_TYPE_USER, 16)),
            (0x1003, 0x431)
        );
        // user+kernel+hyp rw, 512 bytes: DW|DR 0x60 | WT 0x10 | PRIV 0x38>>3 = 0x7
        // | MRD 63<<10 (0xfc00) -> 0xfc77
        let all = HW_BRK_TYPE_USER | HW_BRK_TYPE_KERNEL | HW_BRK_TYPE_HYP;
        assert_eq!(
            set_dawr(&hw(
                0x2000,
                T | HW_BRK_TYPE_READ | HW_BRK_TYPE_WRITE | all,
                512
            )),
            (0x2000, 0xfc77)
        );
        // user write, 24 bytes: MRD ((24+7)>>3)-1 = 2 -> 0x800 | 0x51 -> 0x851
        assert_eq!(
            set_dawr(&hw(0x1001, T | HW_BRK_TYPE_WRITE | HW_BRK_TYPE_USER, 24)).1,
            0x851
        );
        // null_brk: mrd = 0 - 1 -> & 0x3f = 63 -> 0xfc00
        assert_eq!(set_dawr(&NULL_BRK), (0, 0xfc00));
    }

    #[test]
    fn dawrx_fields() {
        let d = Dawrx::decode(0xfc77);
        assert_eq!(d.mrd, 63);
        assert!(d.dw && d.dr && d.wt && !d.wti && d.hyp && d.kernel && d.user);
        assert_eq!(d.window_len_bytes(), 512);
        assert_eq!(Dawrx::decode(0x51).window_len_bytes(), 8);
        assert_eq!(d.encode(), 0xfc77);
    }

    #[test]
    fn uninstall_clears_one_slot_to_the_null_breakpoint() {
        let mut regs = PowerRegs::default();
        let h = hw(0x1000, T | HW_BRK_TYPE_WRITE | HW_BRK_TYPE_USER, 8);
        install(&mut regs, 0, &h);
        install(&mut regs, 1, &h);
        uninstall(&mut regs, 0);
        assert_eq!(regs.dawr, [0, 0x1000]);
        assert_eq!(regs.dawrx, [0xfc00, 0x51]);
    }
}
