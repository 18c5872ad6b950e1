//! The raw breakpoint request as Linux's `perf_event_attr` carries it.

use crate::access::{BP_EMPTY, BP_INVALID, BP_RW};

/// The breakpoint fields of a `perf_event_attr`, unvalidated.
///
/// Kept raw (a `bp_type` that may be `HW_BREAKPOINT_EMPTY`, `R|X`, ...) so that validation can
/// reproduce Linux's answer for every input, not only for well-formed [`crate::Spec`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BpAttr {
    /// `bp_addr`.
    pub addr: u64,
    /// `bp_len`, in bytes.
    pub len_bytes: u64,
    /// `bp_type` bits (`HW_BREAKPOINT_R = 1`, `W = 2`, `X = 4`).
    pub bp_type: u32,
    /// `exclude_kernel`: kernel-mode accesses are not counted (and kernel addresses refused).
    pub exclude_kernel: bool,
    /// `disabled`: created or modified into the off state; still validated and still holds its
    /// slot (review demands 3 and 6).
    pub disabled: bool,
}

impl BpAttr {
    /// A user-space, enabled breakpoint.
    pub const fn user(addr: u64, len_bytes: u64, bp_type: u32) -> BpAttr {
        BpAttr {
            addr,
            len_bytes,
            bp_type,
            exclude_kernel: true,
            disabled: false,
        }
    }

    /// Whether the generic layer refuses the type before any arch code runs
    /// (`HW_BREAKPOINT_EMPTY` or `HW_BREAKPOINT_INVALID`, `__reserve_bp_slot()`).
    pub const fn type_is_empty_or_invalid(&self) -> bool {
        self.bp_type == BP_EMPTY || self.bp_type == BP_INVALID
    }

    /// The slot pool this breakpoint is accounted in (`find_slot_idx()`:
    /// `bp_type & HW_BREAKPOINT_RW` → data, else instruction).
    pub const fn pool_kind(&self) -> PoolKind {
        if self.bp_type & BP_RW != 0 {
            PoolKind::Data
        } else {
            PoolKind::Inst
        }
    }
}

/// Linux's `enum bp_type_idx`: which pool of slots a breakpoint uses.
///
/// On architectures with mixed registers (x86) both kinds share one pool; see
/// [`crate::arch::Arch::pool_index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolKind {
    /// Instruction breakpoints (`TYPE_INST`).
    Inst,
    /// Data watchpoints (`TYPE_DATA`).
    Data,
}

impl PoolKind {
    /// Both kinds, instruction first (Linux's order).
    pub const ALL: [PoolKind; 2] = [PoolKind::Inst, PoolKind::Data];

    /// `"instruction"` or `"data"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PoolKind::Inst => "instruction",
            PoolKind::Data => "data",
        }
    }
}
