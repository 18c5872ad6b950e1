//! Register-file scenarios on x86-64, with DR7 values derived by hand.
//!
//! DR7 layout reminder: Gn = bit 2n+1, GE = bit 9 (0x200), slot n's nibble at bit 16+4n with
//! R/W in its low two bits (01 write, 11 read/write, 00 execute) and LEN in its high two bits
//! (00 = 1 byte, 01 = 2, 11 = 4, 10 = 8).

use super::*;
use crate::arch::x86_64::{Dr7, X86Regs, DR7_LE, TASK_SIZE_MAX, X86_64};
use crate::error::RuleError;
use crate::spec::{Privilege, Region};

fn file() -> RegFile<X86_64> {
    RegFile::new(X86_64::new(), ParseCtx::ROOT_TASK)
}

fn spec(text: &str) -> Spec {
    Spec::parse(text).unwrap()
}

fn slots_of(f: &RegFile<X86_64>, id: WatchId) -> Vec<u32> {
    f.watch(id)
        .unwrap()
        .pieces()
        .iter()
        .map(|p| p.slot.index)
        .collect()
}

fn refs(f: &RegFile<X86_64>, index: u32) -> u32 {
    f.slot(Slot {
        pool: PoolKind::Data,
        index,
    })
    .map_or(0, |o| o.refs)
}

#[test]
fn identical_watches_share_one_slot_by_reference_count() {
    let mut f = file();
    let a = f.insert(&spec("0x1000/8:w")).unwrap();
    let b = f.insert(&spec("0x1000/8:w")).unwrap();
    assert_ne!(a, b);
    assert_eq!((f.used(PoolKind::Data), refs(&f, 0)), (1, 2));
    // slot 0, write, 8 bytes: RW0=01 LEN0=10 -> nibble 0x9 at bit 16; G0 (0x2); GE (0x200)
    // -> 0x0009_0202
    assert_eq!(f.regs().dr7, Dr7(0x0009_0202));
    assert_eq!(f.regs().dr[0], 0x1000);

    assert_eq!(f.remove(a), Ok(spec("0x1000/8:w")));
    assert_eq!((f.used(PoolKind::Data), refs(&f, 0)), (1, 1));
    assert_eq!(f.regs().dr7, Dr7(0x0009_0202), "b still holds slot 0");
    f.remove(b).unwrap();
    assert_eq!(*f.regs(), X86Regs::default());
    assert!(f.is_empty());
}

#[test]
fn overlapping_watches_share_identical_pieces_only() {
    let mut f = file();
    let a = f.insert(&spec("0x1003/8:w")).unwrap();
    assert_eq!(slots_of(&f, a), [0, 1, 2, 3]);
    // 0x1003/1 -> slot 0: RW0=01 LEN0=00 -> 0x1 at bit 16 = 0x0001_0000, G0 = 0x002
    // 0x1004/4 -> slot 1: RW1=01 LEN1=11 -> 0xd at bit 20 = 0x00d0_0000, G1 = 0x008
    // 0x1008/2 -> slot 2: RW2=01 LEN2=01 -> 0x5 at bit 24 = 0x0500_0000, G2 = 0x020
    // 0x100a/1 -> slot 3: RW3=01 LEN3=00 -> 0x1 at bit 28 = 0x1000_0000, G3 = 0x080
    // + GE 0x200 -> 0x15d1_02aa
    assert_eq!(f.regs().dr7, Dr7(0x15d1_02aa));
    assert_eq!(f.regs().dr, [0x1003, 0x1004, 0x1008, 0x100a]);

    // The file is full, but 0x1004/4:w is exactly slot 1's piece.
    let b = f.insert(&spec("0x1004/4:w")).unwrap();
    assert_eq!(slots_of(&f, b), [1]);
    assert_eq!((refs(&f, 1), f.used(PoolKind::Data)), (2, 4));
    assert_eq!(f.regs().dr7, Dr7(0x15d1_02aa));

    // Same bytes, other access or other privilege: not identical, no free slot.
    let full = PlanError::DoesNotFit {
        pool: PoolKind::Data,
        access: Access::ReadWrite,
        needed: 1,
        available: 0,
        capacity: 4,
    };
    assert_eq!(f.insert(&spec("0x1004/4:rw")), Err(full));
    let kernel = Spec {
        privilege: Privilege::Kernel,
        ..Spec::user(0x1004, 4, Access::Write)
    };
    assert_eq!(
        f.insert(&kernel),
        Err(PlanError::DoesNotFit {
            pool: PoolKind::Data,
            access: Access::Write,
            needed: 1,
            available: 0,
            capacity: 4,
        })
    );

    f.remove(a).unwrap();
    // Only slot 1 is left: RW1=01 LEN1=11 G1, and GE stays -> 0x00d0_0208.
    assert_eq!(f.regs().dr7, Dr7(0x00d0_0208));
    assert_eq!(refs(&f, 1), 1);
    f.remove(b).unwrap();
    assert_eq!(*f.regs(), X86Regs::default());
}

#[test]
fn ge_stays_while_slots_remain_and_new_pieces_take_the_lowest_free_slot() {
    let mut f = file();
    let a = f.insert(&spec("0x1000/8:w")).unwrap();
    let b = f.insert(&spec("0x2004/4:w")).unwrap();
    // slot 0 write 8: 0x0009_0002; slot 1 write 4: RW1=01 LEN1=11 -> 0x00d0_0008; GE 0x200
    // -> 0x00d9_020a
    assert_eq!(f.regs().dr7, Dr7(0x00d9_020a));
    f.remove(a).unwrap();
    // Linux's uninstall clears slot 0's nibble and G0 only; GE stays -> 0x00d0_0208.
    assert_eq!(f.regs().dr7, Dr7(0x00d0_0208));
    assert_eq!(
        f.regs().dr[0],
        0x1000,
        "DR0 keeps its stale value, disabled by DR7"
    );

    let c = f.insert(&spec("0x3000/2:rw")).unwrap();
    assert_eq!(slots_of(&f, c), [0], "lowest free register");
    // slot 0 rw 2: RW0=11 LEN0=01 -> 0x7 at bit 16 = 0x0007_0000, G0 0x2
    // -> 0x00d0_0208 | 0x0007_0002 = 0x00d7_020a
    assert_eq!(f.regs().dr7, Dr7(0x00d7_020a));
    assert_eq!(f.regs().dr[..2], [0x3000, 0x2004]);
    f.remove(b).unwrap();
    f.remove(c).unwrap();
    assert_eq!(*f.regs(), X86Regs::default());
}

#[test]
fn a_multi_slot_insert_that_does_not_fit_changes_nothing() {
    let mut f = file();
    f.insert(&spec("0x1004/4:w")).unwrap();
    f.insert(&spec("0x2000/8:w")).unwrap();
    f.insert(&spec("0x3000/8:w")).unwrap();
    let before = f.clone();
    // 0x1003/8 is 4 pieces; 0x1004/4 is already held, so 3 new slots for 1 free one.
    assert_eq!(
        f.insert(&spec("0x1003/8:w")),
        Err(PlanError::DoesNotFit {
            pool: PoolKind::Data,
            access: Access::Write,
            needed: 3,
            available: 1,
            capacity: 4,
        })
    );
    assert_eq!(f, before);
}

#[test]
fn a_multi_slot_insert_whose_later_piece_breaks_a_rule_changes_nothing() {
    let mut f = file();
    f.insert(&spec("0x1000/8:w")).unwrap();
    let before = f.clone();
    // 16 bytes ending across TASK_SIZE_MAX: the first piece is a user address, the second
    // (at TASK_SIZE_MAX itself) a kernel address with kernel accesses excluded.
    let s = Spec::user(TASK_SIZE_MAX - 8, 16, Access::Write);
    assert_eq!(
        f.insert(&s),
        Err(PlanError::Rule(RuleError::KernelAddressExcluded {
            addr: TASK_SIZE_MAX
        }))
    );
    assert_eq!(f, before);
}

#[test]
fn planner_overflow_reports_this_files_free_slots() {
    let mut f = file();
    f.insert(&spec("0x1000/8:w")).unwrap();
    // 1024 aligned bytes are 128 eight-byte pieces; one of four slots is taken.
    assert_eq!(
        f.insert(&spec("0x4000/1024:w")),
        Err(PlanError::DoesNotFit {
            pool: PoolKind::Data,
            access: Access::Write,
            needed: 128,
            available: 3,
            capacity: 4,
        })
    );
}

#[test]
fn execute_breakpoints_share_the_x86_pool() {
    let mut f = RegFile::new(X86_64::with_slots(2).unwrap(), ParseCtx::ROOT_TASK);
    assert_eq!(
        (f.capacity(PoolKind::Inst), f.capacity(PoolKind::Data)),
        (2, 2)
    );
    let x = f.insert(&spec("0x401000:x")).unwrap();
    let piece = f.watch(x).unwrap().pieces()[0];
    assert_eq!(
        piece.slot,
        Slot {
            pool: PoolKind::Inst,
            index: 0
        }
    );
    assert_eq!(piece.chunk.covers, Region::new(0x401000, 1));
    // slot 0 execute: RW0=00 LEN0=00 -> nibble 0; G0 0x2; GE 0x200 -> 0x0000_0202
    assert_eq!(f.regs().dr7, Dr7(0x0000_0202));
    assert_eq!((f.used(PoolKind::Data), f.used(PoolKind::Inst)), (1, 1));
    f.insert(&spec("0x2000/8:rw")).unwrap();
    assert_eq!(
        f.insert(&spec("0x402000:x")),
        Err(PlanError::DoesNotFit {
            pool: PoolKind::Inst,
            access: Access::Execute,
            needed: 1,
            available: 0,
            capacity: 2,
        })
    );
    let occupied: Vec<Slot> = f.occupied().map(|o| o.slot).collect();
    assert_eq!(
        occupied,
        [
            Slot {
                pool: PoolKind::Inst,
                index: 0
            },
            Slot {
                pool: PoolKind::Data,
                index: 1
            }
        ]
    );
}

#[test]
fn removing_everything_restores_the_baseline_exactly() {
    let baseline = X86Regs {
        dr: [0xdead_0000, 0, 0, 0],
        dr7: Dr7(DR7_LE),
        ..X86Regs::default()
    };
    let mut f = RegFile::with_baseline(X86_64::new(), ParseCtx::ROOT_TASK, baseline);
    let a = f.insert(&spec("0x1000/8:w")).unwrap();
    // LE (0x100) from the baseline | slot 0 write 8 (0x0009_0002) | GE 0x200 -> 0x0009_0302
    assert_eq!(f.regs().dr7, Dr7(0x0009_0302));
    f.insert(&spec("0x1001/3:rw")).unwrap();
    f.remove(a).unwrap();
    assert_ne!(*f.regs(), baseline);
    f.clear();
    assert_eq!(*f.regs(), baseline);
    assert!(f.watches().is_empty());

    let b = f.insert(&spec("0x1001/3:rw")).unwrap();
    f.remove(b).unwrap();
    assert_eq!(*f.regs(), baseline);
    assert_eq!(
        f.regs().dr[0],
        0xdead_0000,
        "DR0 back to the baseline's value"
    );
}

#[test]
fn unknown_and_removed_ids_are_refused() {
    let mut f = file();
    let a = f.insert(&spec("0x1000/8:w")).unwrap();
    assert_eq!(a.get(), 1);
    f.remove(a).unwrap();
    let err = f.remove(a).unwrap_err();
    assert_eq!(err, RegFileError::UnknownWatch { id: a });
    assert_eq!(err.class(), ErrorClass::NotFound);
    // Ids are never reused.
    assert_eq!(f.insert(&spec("0x1000/8:w")).unwrap().get(), 2);
}

#[test]
fn rules_are_checked_before_accounting() {
    let mut f = file();
    for s in ["0x1000/8:w", "0x2000/8:w", "0x3000/8:w", "0x4000/8:w"] {
        f.insert(&spec(s)).unwrap();
    }
    // The file is full, but the rule error is what the user must fix first.
    assert_eq!(
        f.insert(&spec("0x5000/8:r")),
        Err(PlanError::Rule(RuleError::ReadOnlyUnsupported))
    );
}
