//! Linux's powerpc (Book3S-64, DAWR) acceptance rules: `hw_breakpoint_arch_parse()`,
//! `hw_breakpoint_validate_len()`, `arch_check_bp_in_kernelspace()` and
//! `arch_bp_generic_fields()` in `arch/powerpc/kernel/hw_breakpoint.c`, in Linux's order.
//!
//! Assumptions, because [`BpAttr`] carries fewer fields than `perf_event_attr`:
//! - `exclude_user` is 0 (the USER bit is always set);
//! - `exclude_hv` equals `exclude_kernel`, as perf sets them: a user watch (`:u`) excludes both,
//!   a kernel one excludes neither.
//!
//! Not modelled: `ppc_breakpoint_available()` → `ENODEV` when the DAWR is off. On POWER9 Linux
//! leaves the DAWR off unless `/sys/kernel/debug/powerpc/dawr_enable_dangerous` is set (the
//! DD2.x errata); this model is the DAWR-enabled machine. Neither DABR (POWER7 and older, one
//! doubleword) nor 8xx (4-byte granule, 64 KiB ranges) is modelled.

use crate::access::{BP_R, BP_W};
use crate::attr::BpAttr;
use crate::error::RuleError;

use super::regs::{
    PowerHw, DAWR_BOUNDARY, DAWR_MAX_LEN, HW_BREAKPOINT_SIZE, HW_BRK_TYPE_HYP, HW_BRK_TYPE_KERNEL,
    HW_BRK_TYPE_READ, HW_BRK_TYPE_TRANSLATE, HW_BRK_TYPE_USER, HW_BRK_TYPE_WRITE, PAGE_OFFSET,
};

/// `ALIGN_DOWN(x, 8)`.
const fn align_down(x: u64) -> u64 {
    x & !(HW_BREAKPOINT_SIZE - 1)
}

/// `ALIGN(x, 8)` in `unsigned long` arithmetic: `(x + 7) & ~7`, wrapping.
const fn align_up(x: u64) -> u64 {
    x.wrapping_add(HW_BREAKPOINT_SIZE - 1) & !(HW_BREAKPOINT_SIZE - 1)
}

/// `hw_breakpoint_validate_len()` on the DAWR path: the hardware window and its limits.
///
/// ```text
/// start  = ALIGN_DOWN(address, 8)
/// end    = ALIGN(address + len, 8)                    // exclusive
/// hw_len = end - start                                // stored in a u16
/// !CPU_FTR_ARCH_31 && ALIGN_DOWN(start, 512) != ALIGN_DOWN(end - 1, 512)  -> EINVAL
/// hw_len > DAWR_MAX_LEN (512)                         -> EINVAL
/// ```
///
/// The 512-byte-boundary check comes first, so on POWER9 a too-long region reports the
/// boundary.
pub(super) fn validate_len(
    addr: u64,
    attr_len: u64,
    len: u16,
    boundary_rule: bool,
) -> Result<u16, RuleError> {
    let start = align_down(addr);
    let end = align_up(addr.wrapping_add(len as u64));
    let hw_len = end.wrapping_sub(start) as u16;
    if boundary_rule {
        let block = !(DAWR_BOUNDARY - 1);
        if start & block != end.wrapping_sub(1) & block {
            return Err(RuleError::CrossesBoundary {
                addr,
                len_bytes: attr_len,
                boundary: DAWR_BOUNDARY,
            });
        }
    }
    if hw_len as u64 > DAWR_MAX_LEN {
        return Err(RuleError::WindowTooLarge {
            addr,
            len_bytes: attr_len,
            window_len_bytes: hw_len as u64,
            max_window_bytes: DAWR_MAX_LEN,
        });
    }
    Ok(hw_len)
}

/// `hw_breakpoint_arch_parse()` for powerpc with the DAWR enabled.
///
/// 1. `bp_len == 0` → `EINVAL`;
/// 2. type = TRANSLATE, `| READ` if `bp_type & R`, `| WRITE` if `bp_type & W`; neither →
///    `EINVAL`. The X bit is ignored here: `R|X` becomes a read watchpoint. (An `X`-only
///    breakpoint never reaches this function: its pool has 0 slots, so reservation fails
///    first with `ENOSPC`.)
/// 3. privilege bits USER / KERNEL / HYP from `!exclude_user/kernel/hv` (see the module docs);
/// 4. `len = bp_len` into a **`u16`** (a length of 65536 + 8 is taken as 8);
/// 5. [`validate_len`] with the POWER9 boundary rule when `boundary_rule`.
pub(super) fn arch_parse(attr: &BpAttr, boundary_rule: bool) -> Result<PowerHw, RuleError> {
    if attr.len_bytes == 0 {
        return Err(RuleError::ZeroLength);
    }
    let mut ty = HW_BRK_TYPE_TRANSLATE;
    if attr.bp_type & BP_R != 0 {
        ty |= HW_BRK_TYPE_READ;
    }
    if attr.bp_type & BP_W != 0 {
        ty |= HW_BRK_TYPE_WRITE;
    }
    if ty == HW_BRK_TYPE_TRANSLATE {
        return Err(RuleError::InvalidType {
            bp_type: attr.bp_type,
        });
    }
    ty |= HW_BRK_TYPE_USER;
    if !attr.exclude_kernel {
        ty |= HW_BRK_TYPE_KERNEL | HW_BRK_TYPE_HYP;
    }
    let len = attr.len_bytes as u16; // `hw->len = attr->bp_len` (u16)
    let hw_len = validate_len(attr.addr, attr.len_bytes, len, boundary_rule)?;
    Ok(PowerHw {
        address: attr.addr,
        ty,
        len,
        hw_len,
    })
}

/// `arch_check_bp_in_kernelspace()`: `is_kernel_addr(address)`, i.e. `address >= PAGE_OFFSET`
/// (`0xc000_0000_0000_0000` on Book3S-64); the length plays no part.
pub(super) const fn in_kernel_space(hw: &PowerHw) -> bool {
    hw.address >= PAGE_OFFSET
}

/// Linux `arch_bp_generic_fields()`: `HW_BRK_TYPE_*` bits as perf's `bp_type`
/// (`READ` → `R`, `WRITE` → `W`); neither → `EINVAL`.
pub fn arch_bp_generic_fields(ty: u16) -> Result<u32, RuleError> {
    let mut bp_type = 0;
    if ty & HW_BRK_TYPE_READ != 0 {
        bp_type |= BP_R;
    }
    if ty & HW_BRK_TYPE_WRITE != 0 {
        bp_type |= BP_W;
    }
    if bp_type == 0 {
        return Err(RuleError::InvalidType { bp_type: 0 });
    }
    Ok(bp_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{BP_RW, BP_X};
    use crate::arch::power::Power;
    use crate::arch::{parse, Arch, ParseCtx};
    use crate::error::ErrorClass;
    use crate::spec::Region;

    fn p9(addr: u64, len: u64, t: u32) -> Result<PowerHw, RuleError> {
        arch_parse(&BpAttr::user(addr, len, t), true)
    }

    fn p10(addr: u64, len: u64, t: u32) -> Result<PowerHw, RuleError> {
        arch_parse(&BpAttr::user(addr, len, t), false)
    }

    #[test]
    fn windows_are_whole_doublewords() {
        // 0x1003/2: [0x1000, 0x1008) -> hw_len 8
        assert_eq!(p9(0x1003, 2, BP_W).unwrap().hw_len, 8);
        // 0x1006/4: [0x1000, 0x1010) -> 16
        assert_eq!(p9(0x1006, 4, BP_W).unwrap().hw_len, 16);
        // 0x1000/512: exactly one block -> 512
        assert_eq!(p9(0x1000, 512, BP_RW).unwrap().hw_len, 512);
        let h = p10(0x1001, 7, BP_R).unwrap();
        assert_eq!(
            (h.address, h.len, h.hw_len, h.ty),
            (
                0x1001,
                7,
                8,
                HW_BRK_TYPE_TRANSLATE | HW_BRK_TYPE_READ | HW_BRK_TYPE_USER
            )
        );
        assert_eq!(Power::power10().hw_window(&h), Region::new(0x1000, 8));
    }

    #[test]
    fn power9_boundary_rule() {
        // 0x11fc/8: [0x11f8, 0x1208) crosses 0x1200.
        let e = RuleError::CrossesBoundary {
            addr: 0x11fc,
            len_bytes: 8,
            boundary: 512,
        };
        assert_eq!(p9(0x11fc, 8, BP_W), Err(e));
        assert_eq!(e.class(), ErrorClass::Invalid);
        // POWER10 has no boundary rule.
        assert_eq!(p10(0x11fc, 8, BP_W).unwrap().hw_len, 16);
        // Ending exactly at the boundary is fine: 0x11f8/8 -> [0x11f8, 0x1200).
        assert_eq!(p9(0x11f8, 8, BP_W).unwrap().hw_len, 8);
        // A region longer than 512 always crosses: POWER9 reports the boundary first.
        assert!(matches!(
            p9(0x1000, 513, BP_W),
            Err(RuleError::CrossesBoundary { .. })
        ));
    }

    #[test]
    fn window_limit() {
        // 0x1001/512: [0x1000, 0x1208) = 520 bytes > 512.
        assert_eq!(
            p10(0x1001, 512, BP_W),
            Err(RuleError::WindowTooLarge {
                addr: 0x1001,
                len_bytes: 512,
                window_len_bytes: 520,
                max_window_bytes: 512
            })
        );
        // POWER10: any 512-byte window, aligned anywhere on 8.
        assert_eq!(p10(0x1108, 512, BP_W).unwrap().hw_len, 512);
        assert!(p9(0x1108, 512, BP_W).is_err());
    }

    #[test]
    fn u16_length_truncation_is_reproduced() {
        // bp_len 65536 + 8 is stored as 8 in `hw->len` and accepted as an 8-byte watch.
        let h = p10(0x1000, 65536 + 8, BP_W).unwrap();
        assert_eq!((h.len, h.hw_len), (8, 8));
        // bp_len 65536: the u16 is 0 but `!attr->bp_len` looked at the u64 — hw_len 0, and
        // set_dawr() turns that into MRD = 63 (512 bytes).
        let h = p10(0x1000, 65536, BP_W).unwrap();
        assert_eq!((h.len, h.hw_len), (0, 0));
        assert_eq!(super::super::set_dawr(&h).1 >> 10, 63);
    }

    #[test]
    fn types_and_zero_length() {
        assert_eq!(p10(0x1000, 0, BP_W), Err(RuleError::ZeroLength));
        assert_eq!(
            p10(0x1000, 8, BP_X),
            Err(RuleError::InvalidType { bp_type: BP_X })
        );
        assert_eq!(
            p10(0x1000, 8, 0),
            Err(RuleError::InvalidType { bp_type: 0 })
        );
        // R|X and W|X: the X bit is ignored.
        let rx = p10(0x1000, 8, BP_R | BP_X).unwrap();
        assert_eq!(
            rx.ty & (HW_BRK_TYPE_READ | HW_BRK_TYPE_WRITE),
            HW_BRK_TYPE_READ
        );
        // zero length is checked before the type
        assert_eq!(p10(0x1000, 0, BP_X), Err(RuleError::ZeroLength));
        assert_eq!(arch_bp_generic_fields(rx.ty), Ok(BP_R));
        assert_eq!(
            arch_bp_generic_fields(HW_BRK_TYPE_READ | HW_BRK_TYPE_WRITE),
            Ok(BP_RW)
        );
        assert!(arch_bp_generic_fields(HW_BRK_TYPE_TRANSLATE).is_err());
    }

    #[test]
    fn privilege_bits_and_kernel_addresses() {
        let arch = Power::power9();
        let k = 0xc000_0000_0100_0000;
        assert_eq!(
            parse(&arch, &BpAttr::user(k, 8, BP_W), ParseCtx::ROOT_TASK),
            Err(RuleError::KernelAddressExcluded { addr: k })
        );
        let mut attr = BpAttr::user(k, 8, BP_W);
        attr.exclude_kernel = false;
        let h = parse(&arch, &attr, ParseCtx::ROOT_TASK).unwrap();
        assert_eq!(
            h.ty,
            HW_BRK_TYPE_TRANSLATE
                | HW_BRK_TYPE_WRITE
                | HW_BRK_TYPE_USER
                | HW_BRK_TYPE_KERNEL
                | HW_BRK_TYPE_HYP
        );
        let no_cap = ParseCtx {
            task_bound: true,
            cap_sys_admin: false,
        };
        assert_eq!(
            parse(&arch, &attr, no_cap),
            Err(RuleError::KernelAddressNeedsPrivilege { addr: k })
        );
        // The top user address is not a kernel address; the length does not matter.
        assert!(parse(&arch, &BpAttr::user(PAGE_OFFSET - 8, 8, BP_W), no_cap).is_ok());
    }
}
