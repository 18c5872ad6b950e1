//! arm64 and powerpc: encode/decode round trips and planning properties.

use hwbp_core::arch::arm64::{self, Arm64, Arm64Ctrl, Arm64Privilege, Arm64Type};
use hwbp_core::arch::{Arch, Chunk, ParseCtx};
use hwbp_core::{Access, PoolKind, Privilege, Region, Spec};
use proptest::prelude::*;

/// A CPU-bound root request: the context in which every planned chunk must validate (a
/// task-bound kernel address is an arm64 rule of its own, tested in the unit tests).
const CPU_ROOT: ParseCtx = ParseCtx {
    task_bound: false,
    cap_sys_admin: true,
};

/// A non-wrapping region: small user addresses, addresses near the top, and anything between.
fn region(max_len: u64) -> impl Strategy<Value = Region> {
    let addr = prop_oneof![
        0u64..0x1_0000,
        (u64::MAX - 0x1_0000)..=u64::MAX,
        any::<u64>(),
    ];
    (addr, 1..=max_len).prop_map(|(addr, len)| {
        let addr = addr.min(u64::MAX - (len - 1));
        Region::new(addr, len)
    })
}

fn data_access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::ReadWrite)
    ]
}

fn spec(region: Region, access: Access, kernel: bool) -> Spec {
    Spec {
        region,
        access,
        privilege: if kernel {
            Privilege::Kernel
        } else {
            Privilege::User
        },
    }
}

/// The chunks' `covers` are disjoint, in order, and their union is exactly `region`.
fn assert_exact_cover(chunks: &[Chunk], region: Region) {
    assert!(!chunks.is_empty());
    let mut next = region.addr;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(
            c.covers.addr, next,
            "chunk {i} starts where the previous ended"
        );
        assert!(c.covers.len_bytes > 0);
        assert!(region.contains(&c.covers));
        assert!(
            c.window.contains(&c.covers),
            "window {:?} holds covers",
            c.window
        );
        match c.covers.end() {
            Some(end) => next = end,
            None => assert_eq!(i, chunks.len() - 1, "only the last chunk ends at 2^64"),
        }
    }
    assert_eq!(chunks.last().unwrap().covers.last(), region.last());
}

mod arm64_props {
    use super::*;

    fn ctrl() -> impl Strategy<Value = Arm64Ctrl> {
        (any::<u8>(), 0u32..4, 0u32..4, any::<bool>()).prop_map(|(bas, ty, pmc, enabled)| {
            Arm64Ctrl {
                bas,
                ty: Arm64Type::from_bits(ty),
                privilege: Arm64Privilege::from_bits(pmc),
                enabled,
            }
        })
    }

    proptest! {
        #[test]
        fn ctrl_round_trips(c in ctrl(), vhe in any::<bool>()) {
            prop_assert_eq!(arm64::decode_ctrl_reg(arm64::encode_ctrl_reg(c, vhe)), c);
        }

        #[test]
        fn ctrl_word_round_trips(reg in 0u32..(1 << 13)) {
            // Every value of the 13 bits Linux programs (without HMC) survives decode+encode.
            prop_assert_eq!(arm64::encode_ctrl_reg(arm64::decode_ctrl_reg(reg), false), reg);
        }

        #[test]
        fn plan_covers_exactly_one_watchpoint_per_doubleword(
            r in region(300),
            access in data_access(),
            kernel in any::<bool>(),
        ) {
            let arch = Arm64::new();
            let chunks = arch.plan(&spec(r, access, kernel)).unwrap();
            assert_exact_cover(&chunks, r);
            prop_assert_eq!(chunks.len() as u64, arm64::doublewords_touched(&r));
            let mut regs = arch.empty_regs();
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.is_exact());
                prop_assert_eq!(c.access(), access);
                let hw = arch.arch_parse(&c.attr, CPU_ROOT).unwrap();
                prop_assert_eq!(arch.hw_window(&hw), c.window);
                prop_assert_eq!(arch.hw_access(&hw), access);
                prop_assert_eq!(hw.address % 8, 0);
                // The piece never runs past its doubleword: no BAS bit was dropped.
                prop_assert_eq!(u64::from(hw.ctrl.bas.count_ones()), c.covers.len_bytes);
                let slot = (i % 16) as u32;
                arch.install(&mut regs, PoolKind::Data, slot, &hw);
                prop_assert_eq!(regs.wvr[slot as usize], hw.address);
                prop_assert_eq!(
                    arm64::decode_ctrl_reg(regs.wcr[slot as usize]).bas,
                    hw.ctrl.bas
                );
                arch.uninstall(&mut regs, PoolKind::Data, slot, &hw);
            }
            prop_assert_eq!(regs.wcr, [0; 16]);
            prop_assert_eq!(regs.bcr, [0; 16]);
        }

        #[test]
        fn any_single_watchpoint_selects_the_bytes_left_in_its_doubleword(
            addr in any::<u64>(),
            len in 1u64..=8,
        ) {
            // Linux keeps the bytes up to the end of the doubleword and drops the rest.
            let arch = Arm64::new();
            let attr = hwbp_core::BpAttr::user(addr, len, Access::Write.bp_type());
            let hw = arch.arch_parse(&attr, CPU_ROOT).unwrap();
            let kept = len.min(8 - addr % 8);
            prop_assert_eq!(arch.hw_window(&hw), Region::new(addr, kept));
        }
    }

    #[test]
    fn slot_configuration() {
        let a = Arm64::new();
        assert_eq!((a.slots(PoolKind::Inst), a.slots(PoolKind::Data)), (6, 4));
        assert_eq!(a.name(), "arm64");
        assert!(!a.mixed_pools());
        assert_eq!(
            (a.pool_index(PoolKind::Inst), a.pool_index(PoolKind::Data)),
            (0, 1)
        );
        let b = Arm64::with_slots(16, 2).unwrap();
        assert_eq!((b.slots(PoolKind::Inst), b.slots(PoolKind::Data)), (16, 2));
        for (brps, wrps) in [(1, 4), (6, 1), (17, 4), (6, 17), (0, 0)] {
            assert_eq!(Arm64::with_slots(brps, wrps), None, "{brps}/{wrps}");
        }
        assert_eq!(Arm64::new().with_va_bits(39).unwrap().task_size(), 1 << 39);
        assert_eq!(Arm64::new().with_va_bits(53), None);
    }
}
