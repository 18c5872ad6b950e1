//! Linux's arm64 acceptance rules for native AArch64 tasks (`arch_build_bp_info()`,
//! `hw_breakpoint_arch_parse()`, `arch_check_bp_in_kernelspace()`, `arch_bp_generic_fields()`
//! in `arch/arm64/kernel/hw_breakpoint.c`), in Linux's order.
//!
//! Not modelled: compat (AArch32) tasks, whose execute lengths must be 2 or 4 and whose
//! watchpoints get only the halfword/byte alignment fix-ups; CPU-bound breakpoints count as
//! native too, as in Linux (`is_compat_bp()` is false without a task).

use crate::access::{BP_R, BP_RW, BP_W, BP_X};
use crate::arch::ParseCtx;
use crate::attr::BpAttr;
use crate::error::RuleError;

use super::regs::{bas_for_len, Arm64Ctrl, Arm64Hw, Arm64Privilege, Arm64Type};

/// Longest watchpoint Linux accepts (`HW_BREAKPOINT_LEN_8`).
pub const MAX_LEN_BYTES: u64 = 8;

/// The length every native execute breakpoint is rewritten to (`ARM_BREAKPOINT_LEN_4`).
pub const EXECUTE_LEN_BYTES: u64 = 4;

/// Linux `get_hbp_len()`: the byte count of an *unshifted* BAS mask (`0x1` → 1 … `0xff` → 8),
/// and 0 for any other value — including every mask shifted by a non-zero offset.
pub const fn get_hbp_len(bas: u8) -> u64 {
    match bas {
        0x01 => 1,
        0x03 => 2,
        0x07 => 3,
        0x0f => 4,
        0x1f => 5,
        0x3f => 6,
        0x7f => 7,
        0xff => 8,
        _ => 0,
    }
}

/// Linux `arch_check_bp_in_kernelspace()`:
/// `va >= TASK_SIZE && va + get_hbp_len(bas) - 1 >= TASK_SIZE` (`&&`, not `||` as on x86;
/// `unsigned long` arithmetic, so the sum may wrap).
///
/// It runs twice in Linux: in `arch_build_bp_info()` on the raw address and unshifted length
/// (choosing the EL1/EL0 privilege), and again in the generic `hw_breakpoint_parse()` on the
/// finished setting — aligned address, BAS already shifted, so `get_hbp_len()` is 0 for any
/// non-zero offset and the test becomes `va >= TASK_SIZE && va - 1 >= TASK_SIZE`.
pub const fn check_bp_in_kernelspace(va: u64, bas: u8, task_size: u64) -> bool {
    let len = get_hbp_len(bas);
    va >= task_size && va.wrapping_add(len).wrapping_sub(1) >= task_size
}

/// `hw_breakpoint_arch_parse()` for a native AArch64 task (or a CPU-bound breakpoint).
///
/// 1. type: `X` → EXECUTE, `R` → LOAD, `W` → STORE, `RW` → LOAD|STORE; anything else `EINVAL`;
/// 2. length 1..=8 (`HW_BREAKPOINT_LEN_1..8`), else `EINVAL`;
/// 3. execute: any accepted length is **silently rewritten to 4** (Linux's FIXME: "perf assumes
///    breakpoints should be sizeof(long)");
/// 4. privilege: EL1 if [`check_bp_in_kernelspace`] on the raw address, else EL0;
///    `enabled = !attr.disabled`;
/// 5. alignment, never refused: `mask = 3` (execute) or `7` (watchpoint);
///    `offset = addr & mask`; `address = addr & !mask`; `BAS <<= offset`.
///    BAS is Linux's 8-bit `ctrl.len` bitfield, so when `offset + len > 8` the bits shifted past
///    bit 7 are **silently dropped**: `0x1003/8` watches only `0x1003..=0x1007`
///    (`0xff << 3 = 0x7f8` → BAS `0xf8`), and nothing reports the lost bytes;
/// 6. a task-bound breakpoint with EL1 privilege → `EINVAL` (no per-task kernel breakpoints).
///
/// There is no address-wrap check on arm64.
pub(super) fn arch_parse(
    attr: &BpAttr,
    ctx: ParseCtx,
    task_size: u64,
) -> Result<Arm64Hw, RuleError> {
    let ty = match attr.bp_type {
        BP_X => Arm64Type::Execute,
        BP_R => Arm64Type::Load,
        BP_W => Arm64Type::Store,
        BP_RW => Arm64Type::LoadStore,
        t => return Err(RuleError::InvalidType { bp_type: t }),
    };
    let mut bas = match bas_for_len(attr.len_bytes) {
        Some(bas) => bas,
        None if attr.len_bytes == 0 => return Err(RuleError::ZeroLength),
        None => {
            return Err(RuleError::LengthOutOfRange {
                len_bytes: attr.len_bytes,
                max_len_bytes: MAX_LEN_BYTES,
            })
        }
    };
    if ty == Arm64Type::Execute {
        bas = 0x0f; // ARM_BREAKPOINT_LEN_4, whatever was asked for
    }
    let privilege = if check_bp_in_kernelspace(attr.addr, bas, task_size) {
        Arm64Privilege::El1
    } else {
        Arm64Privilege::El0
    };
    let align_mask: u64 = if ty == Arm64Type::Execute { 0x3 } else { 0x7 };
    let offset = attr.addr & align_mask;
    // `hw->ctrl.len <<= offset` into an 8-bit unsigned bitfield: reduced modulo 2^8.
    let shifted = ((bas as u32) << offset) as u8;
    let hw = Arm64Hw {
        address: attr.addr & !align_mask,
        ctrl: Arm64Ctrl {
            bas: shifted,
            ty,
            privilege,
            enabled: !attr.disabled,
        },
    };
    if privilege == Arm64Privilege::El1 && ctx.task_bound {
        return Err(RuleError::KernelAddressForTask { addr: attr.addr });
    }
    Ok(hw)
}

/// Linux `arch_bp_generic_fields()`: a control word as perf's `(bp_len, bp_type)` plus the
/// byte offset of the first selected byte (`__ffs(BAS)`).
///
/// `BAS == 0`, a BAS whose bits above the offset are not one of `LEN_1..8` (not contiguous),
/// or an LSC that is not a valid type → `EINVAL`.
pub fn arch_bp_generic_fields(ctrl: Arm64Ctrl) -> Result<(u64, u32, u32), RuleError> {
    let bp_type = match ctrl.ty {
        Arm64Type::Execute => BP_X,
        Arm64Type::Load => BP_R,
        Arm64Type::Store => BP_W,
        Arm64Type::LoadStore => BP_RW,
    };
    if ctrl.bas == 0 {
        return Err(RuleError::ZeroLength);
    }
    let offset = ctrl.bas.trailing_zeros();
    match get_hbp_len(ctrl.bas >> offset) {
        0 => Err(RuleError::InvalidBas { bas: ctrl.bas }),
        len => Ok((len, bp_type, offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::arm64::{Arm64, TASK_SIZE_48};
    use crate::arch::{parse, Arch};
    use crate::error::ErrorClass;

    const CPU_ROOT: ParseCtx = ParseCtx {
        task_bound: false,
        cap_sys_admin: true,
    };

    fn hw(addr: u64, len: u64, bp_type: u32) -> Arm64Hw {
        arch_parse(
            &BpAttr::user(addr, len, bp_type),
            ParseCtx::ROOT_TASK,
            TASK_SIZE_48,
        )
        .unwrap()
    }

    #[test]
    fn unaligned_watchpoints_shift_bas() {
        // 0x1003/2: offset 3, BAS 0b11 << 3 = 0x18 at 0x1000.
        assert_eq!(hw(0x1003, 2, BP_W).address, 0x1000);
        assert_eq!(hw(0x1003, 2, BP_W).ctrl.bas, 0x18);
        // 0x1007/1: BAS 0x80.
        assert_eq!(hw(0x1007, 1, BP_RW).ctrl.bas, 0x80);
        // 0x1008/8: aligned, BAS 0xff at 0x1008.
        let h = hw(0x1008, 8, BP_R);
        assert_eq!(
            (h.address, h.ctrl.bas, h.ctrl.ty),
            (0x1008, 0xff, Arm64Type::Load)
        );
    }

    #[test]
    fn bytes_past_the_doubleword_are_dropped() {
        // 0x1003/8: 0xff << 3 = 0x7f8, the 8-bit field keeps 0xf8: bytes 3..=7 only.
        let h = hw(0x1003, 8, BP_W);
        assert_eq!((h.address, h.ctrl.bas), (0x1000, 0xf8));
        assert_eq!(Arm64::new().hw_window(&h), crate::Region::new(0x1003, 5));
        // 0x1007/8: 0xff << 7 = 0x7f80 -> 0x80, one byte left.
        assert_eq!(hw(0x1007, 8, BP_W).ctrl.bas, 0x80);
    }

    #[test]
    fn execute_is_rewritten_to_four_bytes() {
        for len in 1..=8 {
            let h = hw(0x40_1000, len, BP_X);
            assert_eq!((h.address, h.ctrl.bas), (0x40_1000, 0x0f), "len {len}");
        }
        // Misaligned execute: mask 3, offset 2, BAS 0xf << 2 = 0x3c (accepted; never matches
        // an A64 pc, which is always 4-aligned).
        let h = hw(0x40_1002, 4, BP_X);
        assert_eq!((h.address, h.ctrl.bas), (0x40_1000, 0x3c));
        assert_eq!(
            arch_parse(&BpAttr::user(0x40_1000, 9, BP_X), CPU_ROOT, TASK_SIZE_48),
            Err(RuleError::LengthOutOfRange {
                len_bytes: 9,
                max_len_bytes: 8
            })
        );
    }

    #[test]
    fn rejections_name_the_rule() {
        let p = |addr, len, t| arch_parse(&BpAttr::user(addr, len, t), CPU_ROOT, TASK_SIZE_48);
        assert_eq!(p(0x1000, 4, 0), Err(RuleError::InvalidType { bp_type: 0 }));
        assert_eq!(p(0x1000, 4, 5), Err(RuleError::InvalidType { bp_type: 5 }));
        assert_eq!(p(0x1000, 4, 7), Err(RuleError::InvalidType { bp_type: 7 }));
        assert_eq!(p(0x1000, 0, BP_W), Err(RuleError::ZeroLength));
        assert_eq!(
            p(0x1000, 16, BP_W),
            Err(RuleError::LengthOutOfRange {
                len_bytes: 16,
                max_len_bytes: 8
            })
        );
        // type is checked before length
        assert_eq!(p(0x1000, 0, 6), Err(RuleError::InvalidType { bp_type: 6 }));
        for e in [p(0x1000, 0, BP_W), p(0x1000, 9, BP_W), p(0x1000, 4, 0)] {
            assert_eq!(e.unwrap_err().class(), ErrorClass::Invalid);
        }
    }

    #[test]
    fn kernel_addresses() {
        let arch = Arm64::new();
        let k = 0xffff_8000_1000_0000;
        let mut attr = BpAttr::user(k, 8, BP_W);
        // per-task kernel watchpoint: EINVAL from arch_parse, before the generic checks.
        assert_eq!(
            arch.arch_parse(&attr, ParseCtx::ROOT_TASK),
            Err(RuleError::KernelAddressForTask { addr: k })
        );
        // CPU-bound: arch rules pass, then exclude_kernel -> EINVAL, no CAP -> EPERM.
        assert_eq!(
            parse(&arch, &attr, CPU_ROOT),
            Err(RuleError::KernelAddressExcluded { addr: k })
        );
        attr.exclude_kernel = false;
        let h = parse(&arch, &attr, CPU_ROOT).unwrap();
        assert_eq!(h.ctrl.privilege, Arm64Privilege::El1);
        let no_cap = ParseCtx {
            task_bound: false,
            cap_sys_admin: false,
        };
        assert_eq!(
            parse(&arch, &attr, no_cap),
            Err(RuleError::KernelAddressNeedsPrivilege { addr: k })
        );
        // The last user doubleword is EL0.
        let h = hw(TASK_SIZE_48 - 8, 8, BP_W);
        assert_eq!(h.ctrl.privilege, Arm64Privilege::El0);
        // `&&`: the first byte decides; a region starting below TASK_SIZE and ending above it
        // is user (EL0), where x86's `||` would call it kernel.
        let h = hw(TASK_SIZE_48 - 4, 8, BP_W);
        assert_eq!(h.ctrl.privilege, Arm64Privilege::El0);
        assert!(!arch.in_kernel_space(&h));
    }

    #[test]
    fn second_kernelspace_check_sees_the_shifted_bas() {
        // TASK_SIZE + 1 (1 byte): build_bp_info says EL1 (va >= TASK_SIZE, va + 0 >= TASK_SIZE),
        // but after alignment the generic check sees va = TASK_SIZE and get_hbp_len(0x2) = 0,
        // so va - 1 < TASK_SIZE: "not kernel space" — no exclude_kernel/CAP check. The EL1
        // privilege still makes a per-task request fail.
        let arch = Arm64::new();
        let attr = BpAttr::user(TASK_SIZE_48 + 1, 1, BP_W);
        let h = parse(&arch, &attr, CPU_ROOT).unwrap();
        assert_eq!((h.address, h.ctrl.bas), (TASK_SIZE_48, 0x02));
        assert_eq!(h.ctrl.privilege, Arm64Privilege::El1);
        assert!(!arch.in_kernel_space(&h));
        assert_eq!(
            parse(&arch, &attr, ParseCtx::ROOT_TASK),
            Err(RuleError::KernelAddressForTask {
                addr: TASK_SIZE_48 + 1
            })
        );
        // Top of the address space: va + len - 1 wraps, so build_bp_info picks EL0 ...
        let top = BpAttr::user(0xffff_ffff_ffff_fffc, 8, BP_W);
        let h = arch_parse(&top, ParseCtx::ROOT_TASK, TASK_SIZE_48).unwrap();
        assert_eq!(h.ctrl.privilege, Arm64Privilege::El0);
        // ... and the generic re-check (aligned va, len 0) calls it kernel: exclude_kernel.
        assert_eq!(
            parse(&arch, &top, ParseCtx::ROOT_TASK),
            Err(RuleError::KernelAddressExcluded {
                addr: 0xffff_ffff_ffff_fffc
            })
        );
    }

    #[test]
    fn generic_fields() {
        let c = hw(0x1003, 2, BP_W).ctrl;
        assert_eq!(arch_bp_generic_fields(c), Ok((2, BP_W, 3)));
        let c = hw(0x1000, 8, BP_RW).ctrl;
        assert_eq!(arch_bp_generic_fields(c), Ok((8, BP_RW, 0)));
        let mut c = hw(0x1000, 4, BP_X).ctrl;
        assert_eq!(arch_bp_generic_fields(c), Ok((4, BP_X, 0)));
        c.bas = 0b0101_0000;
        assert_eq!(
            arch_bp_generic_fields(c),
            Err(RuleError::InvalidBas { bas: 0b0101_0000 })
        );
        c.bas = 0;
        assert!(arch_bp_generic_fields(c).is_err());
    }
}
