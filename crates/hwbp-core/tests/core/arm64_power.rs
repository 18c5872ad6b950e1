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

mod power_props {
    use super::*;
    use hwbp_core::arch::power::{self, Dawrx, Power};
    use hwbp_core::{ErrorClass, RuleError};

    fn dawrx() -> impl Strategy<Value = Dawrx> {
        (0u8..64, any::<[bool; 7]>()).prop_map(|(mrd, b)| Dawrx {
            mrd,
            dw: b[0],
            dr: b[1],
            wt: b[2],
            wti: b[3],
            hyp: b[4],
            kernel: b[5],
            user: b[6],
        })
    }

    fn model() -> impl Strategy<Value = Power> {
        prop_oneof![Just(Power::power9()), Just(Power::power10())]
    }

    /// Brute force: the fewest 8-aligned windows of at most 512 bytes (each inside one
    /// 512-byte block on POWER9) that cover `r`.
    fn windows_needed(arch: &Power, r: Region) -> u128 {
        let start = u128::from(r.addr) / 8 * 8;
        let end = (u128::from(r.addr) + u128::from(r.len_bytes)).div_ceil(8) * 8;
        match arch.boundary() {
            Some(b) => (end - 1) / u128::from(b) - start / u128::from(b) + 1,
            None => (end - start).div_ceil(512),
        }
    }

    proptest! {
        #[test]
        fn dawrx_round_trips(d in dawrx()) {
            prop_assert_eq!(Dawrx::decode(d.encode()), d);
        }

        #[test]
        fn dawrx_word_round_trips(v in any::<u64>()) {
            // The bits Linux programs (0..=6 and MRD 10..=15) survive decode+encode.
            let known = 0x7f | (0x3f << 10);
            prop_assert_eq!(Dawrx::decode(v).encode(), v & known);
        }

        #[test]
        fn set_dawr_decodes_to_the_setting(
            arch in model(),
            r in region(512),
            access in data_access(),
            kernel in any::<bool>(),
        ) {
            let s = spec(r, access, kernel);
            let Ok(hw) = arch.arch_parse(&s.attr(), CPU_ROOT) else {
                // Too wide or across a boundary: the planner's job.
                return Ok(());
            };
            let (dawr, dawrx) = power::set_dawr(&hw);
            prop_assert_eq!(dawr, r.addr);
            let d = Dawrx::decode(dawrx);
            prop_assert_eq!(d.dr, access.traps(Access::Read));
            prop_assert_eq!(d.dw, access.traps(Access::Write));
            prop_assert!(d.wt && !d.wti && d.user);
            prop_assert_eq!((d.kernel, d.hyp), (kernel, kernel));
            prop_assert_eq!(d.window_len_bytes(), u64::from(hw.hw_len));
            prop_assert_eq!(arch.hw_window(&hw).len_bytes, u64::from(hw.hw_len));
        }

        #[test]
        fn plan_covers_exactly_with_the_fewest_windows(
            arch in model(),
            r in region(1100),
            access in data_access(),
            kernel in any::<bool>(),
        ) {
            let needed = windows_needed(&arch, r);
            let result = arch.plan(&spec(r, access, kernel));
            if needed > u128::from(arch.dawrs()) {
                let err = result.unwrap_err();
                prop_assert_eq!(err.class(), ErrorClass::Invalid);
                return Ok(());
            }
            let chunks = result.unwrap();
            prop_assert_eq!(chunks.len() as u128, needed);
            assert_exact_cover(&chunks, r);
            let mut regs = arch.empty_regs();
            for (i, c) in chunks.iter().enumerate() {
                let hw = arch.arch_parse(&c.attr, CPU_ROOT).unwrap();
                prop_assert_eq!(arch.hw_window(&hw), c.window);
                prop_assert_eq!(arch.hw_access(&hw), access);
                prop_assert_eq!(c.access(), access);
                prop_assert_eq!(c.window.addr % 8, 0);
                prop_assert_eq!(c.window.len_bytes % 8, 0);
                prop_assert!(c.window.len_bytes <= 512);
                if let Some(b) = arch.boundary() {
                    prop_assert_eq!(c.window.addr / b, c.window.last().unwrap() / b);
                }
                // Wider exactly when the covered bytes do not start and end on doublewords.
                let aligned = c.covers.addr % 8 == 0
                    && c.covers.end().is_none_or(|e| e % 8 == 0);
                prop_assert_eq!(c.is_exact(), aligned);
                arch.install(&mut regs, PoolKind::Data, i as u32, &hw);
            }
            for (i, c) in chunks.iter().enumerate() {
                let hw = arch.arch_parse(&c.attr, CPU_ROOT).unwrap();
                arch.uninstall(&mut regs, PoolKind::Data, i as u32, &hw);
            }
            prop_assert_eq!(regs, arch.empty_regs());
        }
    }

    #[test]
    fn models() {
        let (p9, p10) = (Power::power9(), Power::power10());
        assert_eq!((p9.name(), p10.name()), ("power9", "power10"));
        assert_eq!(
            (p9.slots(PoolKind::Data), p10.slots(PoolKind::Data)),
            (1, 2)
        );
        assert_eq!(
            (p9.slots(PoolKind::Inst), p10.slots(PoolKind::Inst)),
            (0, 0)
        );
        assert_eq!(p9.empty_regs().dawrx, [0xfc00, 0]);
        assert_eq!(p10.empty_regs().dawrx, [0xfc00, 0xfc00]);
        for arch in [p9, p10] {
            let e = arch
                .plan(&Spec::user(0x1000, 4, Access::Execute))
                .unwrap_err();
            assert_eq!(e.class(), ErrorClass::NoSpace);
            assert_eq!(
                e,
                RuleError::NoSlotsOfKind {
                    pool: PoolKind::Inst
                }
                .into()
            );
        }
    }
}

#[test]
fn new_rule_messages_name_the_rule_and_the_fix() {
    use hwbp_core::RuleError;
    let msg = |e: RuleError| alloc_string(&e);
    assert_eq!(
        msg(RuleError::LengthOutOfRange {
            len_bytes: 9,
            max_len_bytes: 8
        }),
        "one slot watches 1 to 8 bytes, not 9; split the region (hwbp plan does it)"
    );
    assert_eq!(
        msg(RuleError::InvalidBas { bas: 0x50 }),
        "byte-address-select mask 0x50 does not select one contiguous run of bytes; \
         use a mask such as 0x0f or 0x3c"
    );
    assert_eq!(
        msg(RuleError::InstructionMisaligned {
            addr: 0x401002,
            required_align: 4
        }),
        "instructions start at multiples of 4, so a breakpoint at 0x401002 could never \
         trigger; use the instruction's address"
    );
}

fn alloc_string(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}
