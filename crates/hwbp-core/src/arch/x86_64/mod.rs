//! x86-64 debug registers: DR0–DR3 addresses, DR7 control, DR6 status.
//!
//! Linux sources: `arch/x86/kernel/hw_breakpoint.c`, `arch/x86/include/uapi/asm/debugreg.h`,
//! `arch/x86/include/asm/hw_breakpoint.h`; Intel SDM Vol. 3B §18.2.
//!
//! Quirk that bites: data breakpoints are *traps* — they fire after the access retires, so the
//! reported instruction pointer is the instruction after the access.

mod encode;
mod hits;
mod plan;
mod ptrace;
mod regs;
mod validate;

pub use encode::{decode_dr7, encode_dr7, encode_dr7_slot};
pub use hits::{dr6_status, handle_dr6, DebugOutcome};
pub use plan::{gdb_piece_len, x86_piece_count};
pub use ptrace::{DebugRegFile, DrError};
pub use regs::{
    Dr6, Dr7, X86Hw, X86Len, X86Regs, X86Type, DR6_RESERVED, DR7_GE, DR7_LE, DR7_RESERVED,
};
pub use validate::{arch_bp_generic_fields, TASK_SIZE_MAX};

use alloc::vec::Vec;

use crate::access::Access;
use crate::arch::{Arch, Chunk, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Region, Spec};

/// Number of debug address registers (Linux `HBP_NUM`).
pub const HBP_NUM: u32 = 4;

/// The x86-64 breakpoint hardware: one shared pool of up to four slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct X86_64 {
    slots: u32,
    bpext: bool,
}

impl Default for X86_64 {
    fn default() -> Self {
        X86_64::new()
    }
}

impl X86_64 {
    /// The real hardware: four slots, no AMD range breakpoints.
    pub const fn new() -> X86_64 {
        X86_64 {
            slots: HBP_NUM,
            bpext: false,
        }
    }

    /// Fewer usable slots (1..=4), e.g. to model a debugger that already holds some.
    /// Returns `None` outside 1..=4: the register file has four address registers.
    pub const fn with_slots(slots: u32) -> Option<X86_64> {
        if slots == 0 || slots > HBP_NUM {
            return None;
        }
        Some(X86_64 {
            slots,
            bpext: false,
        })
    }

    /// With AMD's `BPEXT` address masks: power-of-two ranges in one slot.
    pub const fn with_bpext(mut self) -> X86_64 {
        self.bpext = true;
        self
    }

    /// Whether AMD range breakpoints are available.
    pub const fn bpext(&self) -> bool {
        self.bpext
    }
}

impl Arch for X86_64 {
    type Hw = X86Hw;
    type Regs = X86Regs;

    fn name(&self) -> &'static str {
        "x86_64"
    }

    fn mixed_pools(&self) -> bool {
        true
    }

    fn slots(&self, _pool: PoolKind) -> u32 {
        self.slots
    }

    fn arch_parse(&self, attr: &BpAttr, _ctx: ParseCtx) -> Result<X86Hw, RuleError> {
        validate::arch_parse(attr, self.bpext)
    }

    fn in_kernel_space(&self, hw: &X86Hw) -> bool {
        validate::in_kernel_space(hw)
    }

    fn hw_access(&self, hw: &X86Hw) -> Access {
        match hw.ty {
            X86Type::Execute => Access::Execute,
            X86Type::Write => Access::Write,
            // I/O breakpoints are never produced by validation.
            X86Type::ReadWrite | X86Type::Io => Access::ReadWrite,
        }
    }

    fn hw_window(&self, hw: &X86Hw) -> Region {
        if hw.ty == X86Type::Execute {
            return Region::new(hw.address, 1);
        }
        let len = if hw.mask != 0 {
            hw.mask + 1
        } else {
            hw.len.bytes()
        };
        Region::new(hw.address, len)
    }

    fn empty_regs(&self) -> X86Regs {
        X86Regs::default()
    }

    fn install(&self, regs: &mut X86Regs, _pool: PoolKind, index: u32, hw: &X86Hw) {
        encode::install(regs, index, hw);
    }

    fn uninstall(&self, regs: &mut X86Regs, _pool: PoolKind, index: u32, hw: &X86Hw) {
        encode::uninstall(regs, index, hw);
    }

    fn plan(&self, spec: &Spec) -> Result<Vec<Chunk>, PlanError> {
        plan::plan(self, spec)
    }

    fn trapping_registers(
        &self,
        regs: &X86Regs,
        _pool: PoolKind,
        access: Access,
        region: Region,
    ) -> Option<u32> {
        Some(hits::trapping_registers(regs, access, region))
    }

    fn fmt_regs(&self, regs: &X86Regs, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        hits::fmt_regs(regs, out)
    }
}
