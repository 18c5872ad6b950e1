//! The debug-register file under random insert/remove sequences, against a brute-force model;
//! plan coverage and gdb's x86 piece count.

use std::collections::BTreeMap;

use hwbp_core::arch::arm64::Arm64;
use hwbp_core::arch::power::{set_dawr, Power, NULL_BRK};
use hwbp_core::arch::x86_64::{encode_dr7_slot, gdb_piece_len, X86Regs, DR7_GE, X86_64};
use hwbp_core::arch::{Arch, ParseCtx};
use hwbp_core::regfile::Slot;
use hwbp_core::{Access, PlanError, PoolKind, RegFile, Spec, WatchId};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::common::check_plan_covers;

#[derive(Clone, Debug)]
enum Op {
    Insert(Spec),
    /// Remove the n-th live watch (modulo their number).
    Remove(usize),
}

/// Small regions packed into 96 bytes so that pieces are often identical and shared.
fn small_spec() -> impl Strategy<Value = Spec> {
    (
        0u64..96,
        1u64..20,
        prop_oneof![Just(Access::Write), Just(Access::ReadWrite)],
    )
        .prop_map(|(off, len, access)| Spec::user(0x1000 + off, len, access))
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    ops_with(
        prop_oneof![
            3 => small_spec(),
            1 => (0x40_0000u64..0x40_0010).prop_map(|a| Spec::user(a, 1, Access::Execute)),
        ]
        .boxed(),
    )
}

/// arm64: reads too, and execute breakpoints at instruction (4-byte) addresses.
fn arm64_spec() -> BoxedStrategy<Spec> {
    prop_oneof![
        3 => (0u64..96, 1u64..20, prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::ReadWrite)])
            .prop_map(|(off, len, access)| Spec::user(0x1000 + off, len, access)),
        1 => (0u64..4).prop_map(|i| Spec::user(0x40_0000 + 4 * i, 4, Access::Execute)),
    ]
    .boxed()
}

/// powerpc: data only, regions up to a few doublewords, sometimes across a 512-byte boundary.
fn power_spec() -> BoxedStrategy<Spec> {
    (
        0u64..96,
        1u64..24,
        prop_oneof![
            Just(Access::Read),
            Just(Access::Write),
            Just(Access::ReadWrite)
        ],
    )
        .prop_map(|(off, len, access)| Spec::user(0x11c0 + off, len, access))
        .boxed()
}

fn ops_with(spec: BoxedStrategy<Spec>) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            3 => spec.prop_map(Op::Insert),
            2 => (0usize..8).prop_map(Op::Remove),
        ],
        0..40,
    )
}

/// Applies `ops`; after each: a failed insert changed nothing, reference counts equal the
/// live pieces naming each slot, `model` holds, and an empty file is exactly at its baseline.
/// Finally removes everything and checks that the file is back at its baseline.
fn run_ops<A: Arch + PartialEq>(
    mut f: RegFile<A>,
    ops: &[Op],
    model: fn(&RegFile<A>),
) -> Result<(), TestCaseError> {
    let mut live: Vec<WatchId> = Vec::new();
    let step = |f: &RegFile<A>| -> Result<(), TestCaseError> {
        let mut pieces: BTreeMap<Slot, u32> = BTreeMap::new();
        for w in f.watches() {
            for p in w.pieces() {
                *pieces.entry(p.slot).or_default() += 1;
                prop_assert!(
                    w.spec().region.contains(&p.chunk.covers) || !w.spec().access.is_data()
                );
            }
        }
        let refs: BTreeMap<Slot, u32> = f.occupied().map(|o| (o.slot, o.refs)).collect();
        prop_assert_eq!(refs, pieces, "reference counts");
        if f.is_empty() {
            prop_assert_eq!(f.regs(), f.baseline());
        }
        model(f);
        Ok(())
    };
    for op in ops {
        match op {
            Op::Insert(spec) => {
                let before = f.clone();
                match f.insert(spec) {
                    Ok(id) => live.push(id),
                    // A rule (power9's boundary) or a full pool: either way nothing changed.
                    Err(e) => prop_assert!(f == before, "failed insert ({e}) changed the file"),
                }
            }
            Op::Remove(n) if !live.is_empty() => {
                let id = live.remove(n % live.len());
                prop_assert!(f.remove(id).is_ok());
            }
            Op::Remove(_) => {}
        }
        step(&f)?;
    }
    for id in live.drain(..).rev() {
        f.remove(id).unwrap();
        step(&f)?;
    }
    prop_assert!(f.is_empty());
    prop_assert_eq!(f.regs(), &f.arch().empty_regs());
    Ok(())
}

/// powerpc: each occupied DAWR holds Linux's `set_dawr()` pair for its setting; a free one
/// holds the cleared pair (DAWR 0, DAWRX 0xfc00).
fn check_power_model(f: &RegFile<Power>) {
    let regs = f.regs();
    for n in 0..f.capacity(PoolKind::Data) {
        let pair = (regs.dawr[n as usize], regs.dawrx[n as usize]);
        let slot = Slot {
            pool: PoolKind::Data,
            index: n,
        };
        match f.slot(slot) {
            Some(o) => assert_eq!(pair, set_dawr(&o.hw)),
            None => assert_eq!(pair, set_dawr(&NULL_BRK)),
        }
    }
}

/// arm64: each occupied slot's value register holds its address and its control register
/// `encode_ctrl_reg(ctrl) | E`; a free slot's control register is 0.
fn check_arm64_model(f: &RegFile<Arm64>) {
    let regs = f.regs();
    for (kind, values, ctrls) in [
        (PoolKind::Inst, &regs.bvr, &regs.bcr),
        (PoolKind::Data, &regs.wvr, &regs.wcr),
    ] {
        for n in 0..16u32 {
            let slot = Slot {
                pool: kind,
                index: n,
            };
            match f.slot(slot) {
                Some(o) => {
                    assert_eq!(o.slot.pool, kind);
                    assert_eq!(values[n as usize], o.hw.address);
                    assert_eq!(ctrls[n as usize], f.arch().ctrl_word(&o.hw));
                }
                None => assert_eq!(ctrls[n as usize], 0, "{kind:?} slot {n} is free"),
            }
        }
    }
}

/// The model: DR7 without GE is the OR of every occupied slot's own bits, DRn holds the
/// address of an occupied slot n, and each slot's reference count is the number of live
/// pieces naming it.
fn check_model(f: &RegFile<X86_64>) {
    let mut pieces_per_slot: BTreeMap<u32, u32> = BTreeMap::new();
    for w in f.watches() {
        for p in w.pieces() {
            *pieces_per_slot.entry(p.slot.index).or_default() += 1;
            assert!(w.spec().region.contains(&p.chunk.covers));
        }
    }
    let mut dr7 = 0;
    let mut seen = BTreeMap::new();
    for o in f.occupied() {
        dr7 |= encode_dr7_slot(o.slot.index, o.hw.len, o.hw.ty);
        assert_eq!(f.regs().dr[o.slot.index as usize], o.hw.address);
        seen.insert(o.slot.index, o.refs);
    }
    assert_eq!(seen, pieces_per_slot, "reference counts");
    assert_eq!(f.regs().dr7.0 & !DR7_GE, dr7, "DR7 slot bits");
    if f.is_empty() {
        assert_eq!(*f.regs(), X86Regs::default());
    } else {
        assert_eq!(f.regs().dr7.0 & DR7_GE, DR7_GE, "GE while slots are in use");
    }
    assert_eq!(f.used(PoolKind::Data), seen.len() as u32);
}

/// gdb's `x86_handle_nonaligned_watchpoint()` loop, literally (`gdb/nat/x86-dregs.c`),
/// with `max_wp_len = 8` (x86-64 has LEN = 8).
fn gdb_pieces(mut addr: u64, mut len: i64) -> Vec<(u64, u64)> {
    const SIZE_TRY_ARRAY: [[i64; 8]; 8] = [
        [1, 1, 1, 1, 1, 1, 1, 1], // Trying size one.
        [2, 1, 2, 1, 2, 1, 2, 1], // Trying size two.
        [2, 1, 2, 1, 2, 1, 2, 1], // Trying size three.
        [4, 1, 2, 1, 4, 1, 2, 1], // Trying size four.
        [4, 1, 2, 1, 4, 1, 2, 1], // Trying size five.
        [4, 1, 2, 1, 4, 1, 2, 1], // Trying size six.
        [4, 1, 2, 1, 4, 1, 2, 1], // Trying size seven.
        [8, 1, 2, 1, 4, 1, 2, 1], // Trying size eight.
    ];
    let max_wp_len = 8i64;
    let mut out = Vec::new();
    while len > 0 {
        let align = (addr % max_wp_len as u64) as usize;
        let attempt = (if len > max_wp_len {
            max_wp_len - 1
        } else {
            len - 1
        }) as usize;
        let size = SIZE_TRY_ARRAY[attempt][align];
        out.push((addr, size as u64));
        addr += size as u64;
        len -= size;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sequences_never_leak(ops in ops()) {
        run_ops(RegFile::new(X86_64::new(), ParseCtx::ROOT_TASK), &ops, check_model)?;
    }

    #[test]
    fn random_sequences_never_leak_on_arm64(ops in ops_with(arm64_spec())) {
        let arch = Arm64::with_slots(2, 4).unwrap();
        run_ops(RegFile::new(arch, ParseCtx::ROOT_TASK), &ops, check_arm64_model)?;
    }

    #[test]
    fn random_sequences_never_leak_on_power10(ops in ops_with(power_spec())) {
        run_ops(RegFile::new(Power::power10(), ParseCtx::ROOT_TASK), &ops, check_power_model)?;
    }

    #[test]
    fn random_sequences_never_leak_on_power9(ops in ops_with(power_spec())) {
        run_ops(RegFile::new(Power::power9(), ParseCtx::ROOT_TASK), &ops, check_power_model)?;
    }

    #[test]
    fn a_failed_insert_leaves_the_file_identical(
        setup in proptest::collection::vec(small_spec(), 0..6),
        spec in small_spec(),
    ) {
        let mut f = RegFile::new(X86_64::with_slots(3).unwrap(), ParseCtx::ROOT_TASK);
        for s in &setup {
            let _ = f.insert(s);
        }
        let before = f.clone();
        let fits_before = f.free(PoolKind::Data);
        match f.insert(&spec) {
            Ok(id) => {
                // Every piece it did not share took a free slot.
                let new_slots: std::collections::BTreeSet<Slot> = f
                    .watch(id)
                    .unwrap()
                    .pieces()
                    .iter()
                    .map(|p| p.slot)
                    .filter(|s| before.slot(*s).is_none())
                    .collect();
                prop_assert_eq!(f.free(PoolKind::Data), fits_before - new_slots.len() as u32);
            }
            Err(PlanError::DoesNotFit { needed, available, capacity, .. }) => {
                prop_assert!(needed > available);
                prop_assert_eq!((available, capacity), (fits_before, 3));
                prop_assert_eq!(&f, &before);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn x86_plans_cover_exactly_the_requested_bytes(
        addr in prop_oneof![0u64..0x100, (0x7fff_ffff_f000u64 - 0x100)..0x7fff_ffff_f000, any::<u64>()],
        len in 1u64..200,
        access in prop_oneof![Just(Access::Write), Just(Access::ReadWrite)],
    ) {
        let spec = Spec::user(addr, len, access);
        let arch = X86_64::new();
        let kernel = Spec { privilege: hwbp_core::Privilege::Kernel, ..spec };
        match check_plan_covers(&arch, &kernel) {
            Ok(wide) => prop_assert_eq!(wide, 0, "x86 windows are exact"),
            Err(e) => prop_assert!(
                spec.region.check().is_err(),
                "only wrapping regions fail to plan: {e}"
            ),
        }
    }

    #[test]
    fn arm64_plans_cover_exactly_the_requested_bytes(
        addr in prop_oneof![0u64..0x100, ((1u64 << 48) - 0x400)..((1u64 << 48) - 0x100), 0u64..(1u64 << 47)],
        len in 1u64..200,
        access in prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::ReadWrite)],
    ) {
        let spec = Spec::user(addr, len, access);
        let wide = check_plan_covers(&Arm64::new(), &spec);
        prop_assert_eq!(wide, Ok(0), "BAS selects exactly the bytes");
    }

    #[test]
    fn power_plans_cover_exactly_the_requested_bytes(
        addr in prop_oneof![0u64..0x1000, 0u64..(1u64 << 60)],
        len in 1u64..1100,
        access in prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::ReadWrite)],
        power10 in any::<bool>(),
    ) {
        let spec = Spec::user(addr, len, access);
        let arch = if power10 { Power::power10() } else { Power::power9() };
        match check_plan_covers(&arch, &spec) {
            // A wider window is allowed (and flagged by the chunk); the bytes are still exact.
            Ok(_) => {}
            Err(PlanError::Rule(_)) => {}
            Err(PlanError::DoesNotFit { needed, capacity, .. }) => prop_assert!(needed > capacity),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn x86_pieces_are_gdbs(addr in any::<u64>(), len in 1u64..=600) {
        prop_assume!(addr.checked_add(len).is_some());
        let gdb = gdb_pieces(addr, len as i64);
        let spec = Spec::user(addr, len, Access::Write);
        match X86_64::new().plan(&spec) {
            Ok(chunks) => {
                let ours: Vec<(u64, u64)> =
                    chunks.iter().map(|c| (c.attr.addr, c.attr.len_bytes)).collect();
                prop_assert_eq!(&ours, &gdb);
            }
            // More than 64 pieces could never be armed: the planner says how many.
            Err(PlanError::DoesNotFit { needed, .. }) => {
                prop_assert!(gdb.len() > 64);
                prop_assert_eq!(needed as usize, gdb.len());
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        prop_assert_eq!(
            hwbp_core::arch::x86_64::x86_piece_count(addr, len),
            gdb.len() as u64
        );
        // And gdb's step is the one-piece rule the planner uses.
        prop_assert_eq!(gdb_piece_len(addr, len), gdb[0].1);
    }
}
