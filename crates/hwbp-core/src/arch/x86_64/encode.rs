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

    const LENS: [X86Len; 4] = [X86Len::Len1, X86Len::Len2, X86Len::Len4, X86Len::Len8];
    const TYPES: [X86Type; 4] = [
        X86Type::Execute,
        X86Type::Write,
        X86Type::Io,
        X86Type::ReadWrite,
    ];

    #[test]
    fn encode_decode_round_trip_every_slot_length_and_type() {
        for n in 0..4 {
            for len in LENS {
                for ty in TYPES {
                    let dr7 = encode_dr7(n, len, ty);
                    // G bit only (2), and the fields read back.
                    assert_eq!(decode_dr7(dr7, n), (2, len, ty), "slot {n} {len:?} {ty:?}");
                    for other in (0..4).filter(|&m| m != n) {
                        assert_eq!(decode_dr7(dr7, other).0, 0, "slot {other} stays off");
                    }
                    assert_eq!(dr7 & DR7_GE, DR7_GE);
                    assert_eq!(encode_dr7_slot(n, len, ty) & DR7_GE, 0);
                }
            }
        }
    }

    proptest::proptest! {
        /// Any DR7 value: re-encoding what decode_dr7 reads for an enabled slot gives back
        /// exactly that slot's nibble and G bit (L bits are the caller's, never ours).
        #[test]
        fn decode_then_encode_reproduces_the_slot_bits(dr7 in proptest::prelude::any::<u64>(), n in 0u32..4) {
            let (_, len, ty) = decode_dr7(dr7, n);
            let slot_bits = encode_dr7_slot(n, len, ty);
            let mask = (0xfu64 << (16 + 4 * n)) | (2u64 << (2 * n));
            proptest::prop_assert_eq!(slot_bits & !mask, 0);
            proptest::prop_assert_eq!(slot_bits & (0xf << (16 + 4 * n)), dr7 & (0xf << (16 + 4 * n)));
        }

        /// Installing then uninstalling any sequence of slots leaves other slots' bits, GE and LE
        /// exactly as they were.
        #[test]
        fn uninstall_touches_only_its_own_slot(
            ops in proptest::collection::vec((0u32..4, 0usize..4, 0usize..4), 1..12),
            le in proptest::prelude::any::<bool>(),
        ) {
            let mut regs = X86Regs::default();
            if le {
                regs.dr7 = Dr7(super::super::regs::DR7_LE);
            }
            let mut live: [Option<X86Hw>; 4] = [None; 4];
            for (n, l, t) in ops {
                let i = n as usize;
                if let Some(hw) = live[i].take() {
                    let before = regs.dr7.0;
                    uninstall(&mut regs, n, &hw);
                    let mask = encode_dr7_slot(n, hw.len, hw.ty);
                    proptest::prop_assert_eq!(regs.dr7.0, before & !mask);
                } else {
                    let hw = X86Hw { address: 0x1000 * u64::from(n + 1), mask: 0, len: LENS[l], ty: TYPES[t] };
                    install(&mut regs, n, &hw);
                    live[i] = Some(hw);
                    proptest::prop_assert_eq!(decode_dr7(regs.dr7.0, n), (2, hw.len, hw.ty));
                }
            }
            for (n, hw) in live.iter().enumerate() {
                if let Some(hw) = hw {
                    uninstall(&mut regs, n as u32, hw);
                }
            }
            // Every slot's nibble and G bit are gone; GE (set by the first install) and LE stay.
            let expect_le = if le { super::super::regs::DR7_LE } else { 0 };
            proptest::prop_assert_eq!(regs.dr7.0, DR7_GE | expect_le);
        }
    }
}
