//! The debug-register file under random insert/remove sequences, against a brute-force model;
//! plan coverage and gdb's x86 piece count.

use std::collections::BTreeMap;

use hwbp_core::arch::x86_64::{encode_dr7_slot, gdb_piece_len, X86Regs, DR7_GE, X86_64};
use hwbp_core::arch::{Arch, ParseCtx};
use hwbp_core::regfile::Slot;
use hwbp_core::{Access, PlanError, PoolKind, RegFile, Spec, WatchId};
use proptest::prelude::*;

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
    proptest::collection::vec(
        prop_oneof![
            3 => small_spec().prop_map(Op::Insert),
            2 => (0usize..8).prop_map(Op::Remove),
            1 => (0x40_0000u64..0x40_0010).prop_map(|a| Op::Insert(Spec::user(a, 1, Access::Execute))),
        ],
        0..40,
    )
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
        let mut f = RegFile::new(X86_64::new(), ParseCtx::ROOT_TASK);
        let mut live: Vec<WatchId> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(spec) => {
                    let before = f.clone();
                    match f.insert(&spec) {
                        Ok(id) => live.push(id),
                        Err(e) => {
                            prop_assert!(matches!(e, PlanError::DoesNotFit { .. }), "{e}");
                            prop_assert_eq!(&f, &before, "failed insert changed the file");
                        }
                    }
                }
                Op::Remove(n) if !live.is_empty() => {
                    let id = live.remove(n % live.len());
                    prop_assert!(f.remove(id).is_ok());
                }
                Op::Remove(_) => {}
            }
            check_model(&f);
        }
        for id in live.drain(..).rev() {
            f.remove(id).unwrap();
            check_model(&f);
        }
        prop_assert!(f.is_empty());
        prop_assert_eq!(*f.regs(), X86Regs::default());
        prop_assert_eq!(f.regs().dr7.0, 0);
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
