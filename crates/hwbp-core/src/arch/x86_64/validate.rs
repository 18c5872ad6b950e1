//! Linux's x86 acceptance rules (`hw_breakpoint_arch_parse()`, `arch_build_bp_info()`,
//! `arch_check_bp_in_kernelspace()`, `arch_bp_generic_fields()`), in Linux's order.
//!
//! Not modelled: `within_cpu_entry()` and the kprobe blacklist, which depend on the running
//! kernel's layout; both only concern kernel addresses, which need `CAP_SYS_ADMIN` anyway.

use crate::access::{BP_R, BP_W, BP_X};
use crate::attr::BpAttr;
use crate::error::RuleError;

use super::regs::{X86Hw, X86Len, X86Type};

/// `TASK_SIZE_MAX` with 4-level paging: `(1 << 47) - PAGE_SIZE`. Addresses at or above it are
/// kernel addresses.
pub const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;

/// `sizeof(long)` on x86-64: the only length perf accepts for execute breakpoints.
const EXECUTE_LEN: u64 = 8;

/// `hw_breakpoint_arch_parse()` for x86-64.
///
/// 1. `bp_addr + bp_len - 1` must not wrap (`EINVAL`);
/// 2. type: `W` → WRITE, `W|R` → RW, `X` → EXECUTE only with `bp_len == sizeof(long)`;
///    anything else (`R` alone, `R|X`, ...) → `EINVAL`;
/// 3. length 1/2/4/8; otherwise an AMD range breakpoint: power of two (`EINVAL`), aligned to
///    itself (`EINVAL`), and the CPU must have `BPEXT` (`EOPNOTSUPP`);
/// 4. the address must be aligned to the length: `addr & (len - 1) == 0` (`EINVAL`).
pub(super) fn arch_parse(attr: &BpAttr, bpext: bool) -> Result<X86Hw, RuleError> {
    let wrap = RuleError::AddressWrap {
        addr: attr.addr,
        len_bytes: attr.len_bytes,
    };
    // bp_end = bp_addr + bp_len - 1 in unsigned long arithmetic; bp_end < bp_addr → EINVAL.
    let bp_end = attr.addr.wrapping_add(attr.len_bytes).wrapping_sub(1);
    if bp_end < attr.addr {
        return Err(wrap);
    }
    let ty = match attr.bp_type {
        t if t == BP_W => X86Type::Write,
        t if t == BP_W | BP_R => X86Type::ReadWrite,
        t if t == BP_X => {
            if attr.len_bytes == EXECUTE_LEN {
                return Ok(X86Hw {
                    address: attr.addr,
                    mask: 0,
                    len: X86Len::Len1, // X86_BREAKPOINT_LEN_X
                    ty: X86Type::Execute,
                });
            }
            return Err(RuleError::ExecuteLength {
                len_bytes: attr.len_bytes,
                required: EXECUTE_LEN,
            });
        }
        t if t == BP_R => return Err(RuleError::ReadOnlyUnsupported),
        t => return Err(RuleError::InvalidType { bp_type: t }),
    };
    let (len, mask) = match X86Len::from_bytes(attr.len_bytes) {
        Some(len) => (len, 0),
        None => {
            let n = attr.len_bytes;
            if !n.is_power_of_two() {
                return Err(RuleError::UnsupportedLength {
                    len_bytes: n,
                    max_len_bytes: 8,
                });
            }
            if attr.addr & (n - 1) != 0 {
                return Err(RuleError::Misaligned {
                    addr: attr.addr,
                    len_bytes: n,
                    required_align: n,
                });
            }
            if !bpext {
                return Err(RuleError::RangeUnsupported { len_bytes: n });
            }
            (X86Len::Len1, n - 1)
        }
    };
    let align = if mask != 0 { mask } else { len.bytes() - 1 };
    if attr.addr & align != 0 {
        return Err(RuleError::Misaligned {
            addr: attr.addr,
            len_bytes: attr.len_bytes,
            required_align: align + 1,
        });
    }
    Ok(X86Hw {
        address: attr.addr,
        mask,
        len,
        ty,
    })
}

/// `arch_check_bp_in_kernelspace()`: `va >= TASK_SIZE_MAX || va + len - 1 >= TASK_SIZE_MAX`,
/// where a range breakpoint counts as length 1.
pub(super) fn in_kernel_space(hw: &X86Hw) -> bool {
    let va = hw.address;
    va >= TASK_SIZE_MAX || va.saturating_add(hw.len.bytes() - 1) >= TASK_SIZE_MAX
}

/// `arch_bp_generic_fields()`: a DR7 LEN/R-W pair as perf's `(bp_len, bp_type)`.
///
/// Execute requires LEN = 00 and becomes `(sizeof(long), X)`; write → `W`; read/write →
/// `W|R`; I/O → `EINVAL`.
pub fn arch_bp_generic_fields(len: X86Len, ty: X86Type) -> Result<(u64, u32), RuleError> {
    match ty {
        X86Type::Execute => {
            if len != X86Len::Len1 {
                return Err(RuleError::ExecuteLength {
                    len_bytes: len.bytes(),
                    required: 1,
                });
            }
            Ok((EXECUTE_LEN, BP_X))
        }
        X86Type::Write => Ok((len.bytes(), BP_W)),
        X86Type::ReadWrite => Ok((len.bytes(), BP_W | BP_R)),
        X86Type::Io => Err(RuleError::InvalidType { bp_type: 0x82 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::BP_RW;
    use crate::arch::{parse, x86_64::X86_64, ParseCtx};
    use crate::error::ErrorClass;

    fn class(addr: u64, len: u64, bp_type: u32) -> Result<(), ErrorClass> {
        parse(
            &X86_64::new(),
            &BpAttr::user(addr, len, bp_type),
            ParseCtx::ROOT_TASK,
        )
        .map(|_| ())
        .map_err(|e| e.class())
    }

    #[test]
    fn alignment_matches_the_measured_kernel() {
        // measured: len 8 only at offset 0 mod 8; len 4 at 0 and 4; len 2 even; len 1 anywhere.
        for off in 0..8u64 {
            let a = 0x1000 + off;
            assert_eq!(class(a, 8, BP_W).is_ok(), off == 0, "len 8 off {off}");
            assert_eq!(class(a, 4, BP_W).is_ok(), off % 4 == 0, "len 4 off {off}");
            assert_eq!(class(a, 2, BP_W).is_ok(), off % 2 == 0, "len 2 off {off}");
            assert!(class(a, 1, BP_W).is_ok());
        }
        // len 3, 5, 6, 7 always EINVAL.
        for len in [3, 5, 6, 7] {
            assert_eq!(class(0x1000, len, BP_W), Err(ErrorClass::Invalid));
        }
    }

    #[test]
    fn types_match_the_measured_kernel() {
        assert_eq!(
            class(0x1000, 8, BP_R),
            Err(ErrorClass::Invalid),
            "no read-only"
        );
        assert!(class(0x1000, 8, BP_RW).is_ok());
        assert!(class(0x1001, 8, BP_X).is_ok(), "execute is never aligned");
        for len in [1, 2, 4] {
            assert_eq!(class(0x1000, len, BP_X), Err(ErrorClass::Invalid));
        }
        assert_eq!(class(0x1000, 8, BP_R | BP_X), Err(ErrorClass::Invalid));
    }

    #[test]
    fn ranges_need_bpext() {
        assert_eq!(class(0x1000, 16, BP_W), Err(ErrorClass::NotSupported));
        assert_eq!(class(0x1008, 16, BP_W), Err(ErrorClass::Invalid));
        assert_eq!(class(0x1000, 24, BP_W), Err(ErrorClass::Invalid));
        let amd = X86_64::new().with_bpext();
        let hw = parse(&amd, &BpAttr::user(0x1000, 16, BP_W), ParseCtx::ROOT_TASK).unwrap();
        assert_eq!((hw.mask, hw.len), (15, X86Len::Len1));
    }

    #[test]
    fn kernel_addresses() {
        let k = TASK_SIZE_MAX;
        assert_eq!(
            class(k, 8, BP_W),
            Err(ErrorClass::Invalid),
            "exclude_kernel"
        );
        let mut attr = BpAttr::user(k, 8, BP_W);
        attr.exclude_kernel = false;
        assert!(parse(&X86_64::new(), &attr, ParseCtx::ROOT_TASK).is_ok());
        let user_ctx = ParseCtx {
            task_bound: true,
            cap_sys_admin: false,
        };
        assert_eq!(
            parse(&X86_64::new(), &attr, user_ctx).map_err(|e| e.class()),
            Err(ErrorClass::Permission)
        );
        // last user byte: 8 bytes ending just below TASK_SIZE_MAX are user space.
        assert!(class(k - 8, 8, BP_W).is_ok());
    }

    #[test]
    fn wrap_and_zero_length() {
        assert_eq!(class(u64::MAX, 2, BP_W), Err(ErrorClass::Invalid));
        assert_eq!(class(0x1000, 0, BP_W), Err(ErrorClass::Invalid));
        // addr 0, len 0: bp_end wraps to ~0 which is not < 0, so the length rule refuses it.
        assert!(matches!(
            arch_parse(&BpAttr::user(0, 0, BP_W), false),
            Err(RuleError::UnsupportedLength { .. })
        ));
    }

    #[test]
    fn generic_fields() {
        assert_eq!(
            arch_bp_generic_fields(X86Len::Len1, X86Type::Execute),
            Ok((8, BP_X))
        );
        assert!(arch_bp_generic_fields(X86Len::Len4, X86Type::Execute).is_err());
        assert_eq!(
            arch_bp_generic_fields(X86Len::Len4, X86Type::ReadWrite),
            Ok((4, BP_RW))
        );
        assert!(arch_bp_generic_fields(X86Len::Len4, X86Type::Io).is_err());
    }
}
