//! DR7 encoding and install/uninstall, exactly as Linux's `arch/x86/kernel/hw_breakpoint.c`.

use super::regs::{Dr7, X86Hw, X86Len, X86Regs, X86Type, DR7_GE};

/// Linux `__encode_dr7()`: slot `n`'s R/W+LEN nibble at bit 16+4n and its Gn bit (2n+1).
///
/// `(((len | type) & 0xf) << (16 + 4n)) | (2 << 2n)`.
pub const fn encode_dr7_slot(n: u32, len: X86Len, ty: X86Type) -> u64 {
    let nibble = ((len.code() | ty.code()) & 0xf) as u64;
    (nibble << (16 + 4 * n)) | (2u64 << (2 * n))
}

/// Linux `encode_dr7()`: [`encode_dr7_slot`] plus GE (bit 9, `DR_GLOBAL_SLOWDOWN`).
pub const fn encode_dr7(n: u32, len: X86Len, ty: X86Type) -> u64 {
    encode_dr7_slot(n, len, ty) | DR7_GE
}

/// Linux `decode_dr7()`: slot `n`'s length and type, and its enable bits (`(dr7 >> 2n) & 3`;
/// non-zero means enabled locally or globally).
pub const fn decode_dr7(dr7: u64, n: u32) -> (u32, X86Len, X86Type) {
    let info = dr7 >> (16 + 4 * n);
    (
        ((dr7 >> (2 * n)) & 3) as u32,
        X86Len::from_nibble(info),
        X86Type::from_nibble(info),
    )
}

/// `arch_install_hw_breakpoint()`: DRn = address, DR7 |= `encode_dr7(n, ..)` (with GE).
pub(super) fn install(regs: &mut X86Regs, n: u32, hw: &X86Hw) {
    let i = n as usize;
    regs.dr[i] = hw.address;
    regs.dr7 = Dr7(regs.dr7.0 | encode_dr7(n, hw.len, hw.ty));
    regs.addr_mask[i] = hw.mask;
}

/// `arch_uninstall_hw_breakpoint()`: DR7 &= `!__encode_dr7(n, ..)` — the slot's own nibble
/// and G bit only; GE and LE stay as they are (review demand 5). DRn keeps its stale value,
/// as in Linux (it is disabled by DR7).
pub(super) fn uninstall(regs: &mut X86Regs, n: u32, hw: &X86Hw) {
    regs.dr7 = Dr7(regs.dr7.0 & !encode_dr7_slot(n, hw.len, hw.ty));
    regs.addr_mask[n as usize] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_dr7_values() {
        // slot 0, write, 8 bytes: RW0=01 LEN0=10 -> nibble 0b1001 = 0x9 at bit 16; G0 = bit 1;
        // GE = bit 9 -> 0x9_0000 | 0x2 | 0x200 = 0x0009_0202
        assert_eq!(encode_dr7(0, X86Len::Len8, X86Type::Write), 0x0009_0202);
        // slot 1, write, 4 bytes: RW1=01 LEN1=11 -> 0xd at bit 20; G1 = bit 3 -> 0x00d0_0208
        assert_eq!(encode_dr7(1, X86Len::Len4, X86Type::Write), 0x00d0_0208);
        // slot 2, rw, 2 bytes: RW2=11 LEN2=01 -> 0x7 at bit 24; G2 = bit 5 (0x20) -> 0x0700_0220
        assert_eq!(encode_dr7(2, X86Len::Len2, X86Type::ReadWrite), 0x0700_0220);
        // slot 3, execute: RW3=00 LEN3=00 -> nibble 0; G3 = bit 7 (0x80) -> 0x0000_0280
        assert_eq!(encode_dr7(3, X86Len::Len1, X86Type::Execute), 0x0000_0280);
        // slot 3, rw, 1 byte: RW3=11 LEN3=00 -> 0x3 at bit 28; G3 -> 0x3000_0080 without GE
        assert_eq!(
            encode_dr7_slot(3, X86Len::Len1, X86Type::ReadWrite),
            0x3000_0080
        );
    }

    #[test]
    fn decode_reads_back_the_ptrace_selftest_value() {
        // measured: ptrace enabling all four slots as L-bit, RW=01 LEN=10 (write, 8 bytes)
        // reads back DR7 = 0x99990055: each nibble 0x9, L0..L3 = 0x55.
        for n in 0..4 {
            assert_eq!(
                decode_dr7(0x9999_0055, n),
                (1, X86Len::Len8, X86Type::Write)
            );
        }
        assert_eq!(decode_dr7(0, 2), (0, X86Len::Len1, X86Type::Execute));
        assert_eq!(decode_dr7(0x0020_0000, 1), (0, X86Len::Len1, X86Type::Io));
    }

    #[test]
    fn uninstall_keeps_ge_and_le() {
        let hw = X86Hw {
            address: 0x1000,
            mask: 0,
            len: X86Len::Len4,
            ty: X86Type::Write,
        };
        let mut regs = X86Regs::default();
        regs.dr7 = Dr7(super::super::regs::DR7_LE);
        install(&mut regs, 1, &hw);
        assert_eq!(regs.dr7.0, 0x00d0_0308); // slot bits | GE | LE
        uninstall(&mut regs, 1, &hw);
        assert_eq!(regs.dr7.0, 0x0300); // GE and LE stay
    }
}
