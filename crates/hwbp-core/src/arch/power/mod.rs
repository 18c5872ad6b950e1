//! powerpc (Book3S-64) data watchpoints: the DAWR/DAWRX pairs of POWER9 (one) and POWER10
//! (two, `CPU_FTR_DAWR1`).
//!
//! Linux sources: `arch/powerpc/kernel/hw_breakpoint.c`, `arch/powerpc/kernel/dawr.c`
//! (`set_dawr()`), `arch/powerpc/kernel/hw_breakpoint_constraints.c`,
//! `arch/powerpc/include/asm/hw_breakpoint.h`, `arch/powerpc/include/asm/reg.h`.
//!
//! Quirks that bite: a DAWR watches whole doublewords, so most regions get a wider window and
//! hits must be filtered to the requested bytes; before POWER10 the window may not cross a
//! 512-byte boundary; the exception is taken *before* the access completes and Linux emulates
//! or single-steps the instruction ("trigger-after-execute"); a cleared DAWRX is `0xfc00`, not 0.
//!
//! Not for: instruction breakpoints (perf offers none on powerpc: `hw_breakpoint_slots(TYPE_INST)
//! = 0`), DABR (POWER7 and older), 8xx, or the CIABR.

mod encode;
mod plan;
mod regs;
mod validate;

pub use encode::{set_dawr, NULL_BRK};
pub use regs::{
    Dawrx, PowerHw, PowerRegs, DAWRX_DR, DAWRX_DW, DAWRX_HYP, DAWRX_KERNEL, DAWRX_MRD_MASK,
    DAWRX_MRD_SHIFT, DAWRX_USER, DAWRX_WT, DAWRX_WTI, DAWR_BOUNDARY, DAWR_MAX_LEN,
    HW_BREAKPOINT_SIZE, HW_BRK_TYPE_HYP, HW_BRK_TYPE_KERNEL, HW_BRK_TYPE_PRIV_ALL,
    HW_BRK_TYPE_READ, HW_BRK_TYPE_TRANSLATE, HW_BRK_TYPE_USER, HW_BRK_TYPE_WRITE, PAGE_OFFSET,
};
pub use validate::arch_bp_generic_fields;

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::{Arch, Chunk, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Region, Spec};

/// `HBP_NUM_MAX`: the most DAWRs any POWER CPU has.
pub const HBP_NUM_MAX: u32 = 2;

/// Which POWER generation's DAWR rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PowerModel {
    /// ISA v3.0: one DAWR; windows may not cross a 512-byte boundary.
    Power9,
    /// ISA v3.1 (`CPU_FTR_ARCH_31`, `CPU_FTR_DAWR1`): two DAWRs, no boundary rule.
    Power10,
}

/// The powerpc watchpoint hardware of one POWER generation, with the DAWR enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Power {
    model: PowerModel,
}

impl Default for Power {
    /// POWER9, the stricter model: a plan that fits it fits POWER10.
    fn default() -> Self {
        Power::power9()
    }
}

impl Power {
    /// POWER9: 1 DAWR, 512-byte boundary rule.
    pub const fn power9() -> Power {
        Power {
            model: PowerModel::Power9,
        }
    }

    /// POWER10: 2 DAWRs, windows anywhere.
    pub const fn power10() -> Power {
        Power {
            model: PowerModel::Power10,
        }
    }

    /// The generation.
    pub const fn model(&self) -> PowerModel {
        self.model
    }

    /// Number of DAWRs (`nr_wp_slots()`: 2 with `CPU_FTR_DAWR1`, else 1).
    pub const fn dawrs(&self) -> u32 {
        match self.model {
            PowerModel::Power9 => 1,
            PowerModel::Power10 => 2,
        }
    }

    /// The boundary a window may not cross: `Some(512)` before POWER10, `None` on POWER10.
    pub const fn boundary(&self) -> Option<u64> {
        match self.model {
            PowerModel::Power9 => Some(DAWR_BOUNDARY),
            PowerModel::Power10 => None,
        }
    }
}

impl Arch for Power {
    type Hw = PowerHw;
    type Regs = PowerRegs;

    fn name(&self) -> &'static str {
        match self.model {
            PowerModel::Power9 => "power9",
            PowerModel::Power10 => "power10",
        }
    }

    fn mixed_pools(&self) -> bool {
        false
    }

    /// `hw_breakpoint_slots()`: `nr_wp_slots()` data slots, 0 instruction slots.
    fn slots(&self, pool: PoolKind) -> u32 {
        match pool {
            PoolKind::Inst => 0,
            PoolKind::Data => self.dawrs(),
        }
    }

    fn arch_parse(&self, attr: &BpAttr, _ctx: ParseCtx) -> Result<PowerHw, RuleError> {
        validate::arch_parse(attr, self.boundary().is_some())
    }

    fn in_kernel_space(&self, hw: &PowerHw) -> bool {
        validate::in_kernel_space(hw)
    }

    fn hw_access(&self, hw: &PowerHw) -> Access {
        match (
            hw.ty & HW_BRK_TYPE_READ != 0,
            hw.ty & HW_BRK_TYPE_WRITE != 0,
        ) {
            (true, false) => Access::Read,
            (false, true) => Access::Write,
            // Validation never produces neither.
            _ => Access::ReadWrite,
        }
    }

    /// `[ALIGN_DOWN(address, 8), + hw_len)`: whole doublewords.
    fn hw_window(&self, hw: &PowerHw) -> Region {
        Region::new(hw.address & !(HW_BREAKPOINT_SIZE - 1), u64::from(hw.hw_len))
    }

    /// Every existing DAWR cleared the way Linux clears it (`hw_breakpoint_disable()`:
    /// `set_dawr(i, &null_brk)` → DAWR 0, DAWRX `0xfc00`); a DAWR the model lacks reads 0.
    /// Installing and uninstalling returns the file to this value.
    fn empty_regs(&self) -> PowerRegs {
        let mut regs = PowerRegs::default();
        for n in 0..self.dawrs() {
            encode::uninstall(&mut regs, n);
        }
        regs
    }

    /// `set_dawr(index, hw)`. `pool` is ignored: every slot is a DAWR (data).
    fn install(&self, regs: &mut PowerRegs, _pool: PoolKind, index: u32, hw: &PowerHw) {
        encode::install(regs, index, hw);
    }

    fn uninstall(&self, regs: &mut PowerRegs, _pool: PoolKind, index: u32, _hw: &PowerHw) {
        encode::uninstall(regs, index);
    }

    fn plan(&self, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
        plan::plan(self, spec)
    }
}
