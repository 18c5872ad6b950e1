//! arm64 breakpoint and watchpoint registers: `DBGBVR/DBGBCR<n>_EL1` (instruction) and
//! `DBGWVR/DBGWCR<n>_EL1` (data), in separate pools.
//!
//! Linux sources: `arch/arm64/kernel/hw_breakpoint.c`, `arch/arm64/include/asm/hw_breakpoint.h`;
//! Arm ARM D2.9–D2.10 (breakpoint and watchpoint exceptions), D13.3 (register layouts).
//!
//! Quirks that bite: watchpoints are *faults* — they fire before the access completes, with
//! the pc at the accessing instruction, so the kernel must disable and single-step past them;
//! a watchpoint selects bytes of one aligned doubleword through BAS, and bytes of a request that
//! run past that doubleword are silently dropped by Linux (see `validate.rs`).
//!
//! Not for: AArch32 (compat) tasks, whose alignment rules differ.

mod encode;
mod hits;
mod plan;
mod regs;
mod validate;

pub use encode::{decode_ctrl_reg, encode_ctrl_reg};
pub use plan::doublewords_touched;
pub use regs::{
    bas_for_len, Arm64Ctrl, Arm64Hw, Arm64Privilege, Arm64Regs, Arm64Type, ARM_MAX_BRP,
    ARM_MAX_WRP, DBG_HMC_HYP,
};
pub use validate::{
    arch_bp_generic_fields, check_bp_in_kernelspace, get_hbp_len, EXECUTE_LEN_BYTES, MAX_LEN_BYTES,
};

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::{Arch, Chunk, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Region, Spec};

/// `TASK_SIZE_64` with 48-bit virtual addresses (`1 << vabits_actual`), the usual
/// configuration; addresses at or above it are kernel addresses.
pub const TASK_SIZE_48: u64 = 1 << 48;

/// Breakpoint registers when not configured (a common Cortex-A count: `ID_AA64DFR0_EL1.BRPs = 5`).
pub const DEFAULT_BRPS: u32 = 6;
/// Watchpoint registers when not configured (`ID_AA64DFR0_EL1.WRPs = 3`).
pub const DEFAULT_WRPS: u32 = 4;

/// The arm64 breakpoint hardware: `brps` breakpoint and `wrps` watchpoint registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arm64 {
    brps: u32,
    wrps: u32,
    va_bits: u32,
    kernel_in_hyp_mode: bool,
}

impl Default for Arm64 {
    fn default() -> Self {
        Arm64::new()
    }
}

impl Arm64 {
    /// 6 breakpoints, 4 watchpoints, 48-bit user address space, kernel at EL1.
    pub const fn new() -> Arm64 {
        Arm64 {
            brps: DEFAULT_BRPS,
            wrps: DEFAULT_WRPS,
            va_bits: 48,
            kernel_in_hyp_mode: false,
        }
    }

    /// A CPU with `brps` breakpoint and `wrps` watchpoint registers. The architecture has
    /// 2..=16 of each (`ID_AA64DFR0_EL1.BRPs/WRPs + 1`, at least 2); `None` outside.
    pub const fn with_slots(brps: u32, wrps: u32) -> Option<Arm64> {
        if brps < 2 || brps > ARM_MAX_BRP || wrps < 2 || wrps > ARM_MAX_WRP {
            return None;
        }
        let mut a = Arm64::new();
        a.brps = brps;
        a.wrps = wrps;
        Some(a)
    }

    /// A different user address-space size, `TASK_SIZE = 1 << va_bits` (39, 42, 47, 48 or 52
    /// on real kernels); `None` outside 36..=52.
    pub const fn with_va_bits(mut self, va_bits: u32) -> Option<Arm64> {
        if va_bits < 36 || va_bits > 52 {
            return None;
        }
        self.va_bits = va_bits;
        Some(self)
    }

    /// A kernel running at EL2 (VHE): EL1-privilege control words get HMC ([`DBG_HMC_HYP`]).
    pub const fn with_kernel_in_hyp_mode(mut self) -> Arm64 {
        self.kernel_in_hyp_mode = true;
        self
    }

    /// Linux `TASK_SIZE` for a native task: `1 << va_bits`.
    pub const fn task_size(&self) -> u64 {
        1 << self.va_bits
    }

    /// Whether the kernel runs at EL2 (`is_kernel_in_hyp_mode()`).
    pub const fn kernel_in_hyp_mode(&self) -> bool {
        self.kernel_in_hyp_mode
    }

    /// The control-register value [`Arch::install`] writes for `hw` (with E set).
    pub const fn ctrl_word(&self, hw: &Arm64Hw) -> u32 {
        encode_ctrl_reg(hw.ctrl, self.kernel_in_hyp_mode) | 1
    }
}

impl Arch for Arm64 {
    type Hw = Arm64Hw;
    type Regs = Arm64Regs;

    fn name(&self) -> &'static str {
        "arm64"
    }

    fn mixed_pools(&self) -> bool {
        false
    }

    fn slots(&self, pool: PoolKind) -> u32 {
        match pool {
            PoolKind::Inst => self.brps,
            PoolKind::Data => self.wrps,
        }
    }

    fn arch_parse(&self, attr: &BpAttr, ctx: ParseCtx) -> Result<Arm64Hw, RuleError> {
        validate::arch_parse(attr, ctx, self.task_size())
    }

    /// The generic re-check on the finished setting (see [`check_bp_in_kernelspace`]).
    fn in_kernel_space(&self, hw: &Arm64Hw) -> bool {
        check_bp_in_kernelspace(hw.address, hw.ctrl.bas, self.task_size())
    }

    fn hw_access(&self, hw: &Arm64Hw) -> Access {
        match hw.ctrl.ty {
            Arm64Type::Execute => Access::Execute,
            Arm64Type::Load => Access::Read,
            Arm64Type::Store => Access::Write,
            Arm64Type::LoadStore => Access::ReadWrite,
        }
    }

    /// Watchpoints: the bytes BAS selects, from its lowest to its highest set bit (Linux only
    /// produces contiguous masks). Breakpoints: the first selected byte. An empty BAS (never
    /// produced by validation) gives an empty region at the value address.
    fn hw_window(&self, hw: &Arm64Hw) -> Region {
        let bas = hw.ctrl.bas;
        if bas == 0 {
            return Region::new(hw.address, 0);
        }
        let first = u64::from(bas.trailing_zeros());
        let addr = hw.address.wrapping_add(first);
        if hw.ctrl.ty == Arm64Type::Execute {
            return Region::new(addr, 1);
        }
        let last = u64::from(7 - bas.leading_zeros());
        Region::new(addr, last - first + 1)
    }

    fn empty_regs(&self) -> Arm64Regs {
        Arm64Regs::default()
    }

    fn install(&self, regs: &mut Arm64Regs, pool: PoolKind, index: u32, hw: &Arm64Hw) {
        encode::install(regs, pool, index, hw, self.kernel_in_hyp_mode);
    }

    fn uninstall(&self, regs: &mut Arm64Regs, pool: PoolKind, index: u32, _hw: &Arm64Hw) {
        encode::uninstall(regs, pool, index);
    }

    fn plan(&self, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
        plan::plan(self, spec)
    }

    /// Watchpoints are faults: the exception comes before the access completes.
    fn data_traps_before_access(&self) -> bool {
        true
    }

    fn trapping_registers(
        &self,
        regs: &Arm64Regs,
        pool: PoolKind,
        access: Access,
        region: Region,
    ) -> Option<u32> {
        Some(hits::trapping_registers(
            regs,
            pool,
            self.slots(pool),
            access,
            region,
        ))
    }
}
