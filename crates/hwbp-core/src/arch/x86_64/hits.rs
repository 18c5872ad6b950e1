//! x86 hit matching and the #DB flow: which DRn trap an access, and DR6 ⇄ [`HitStatus`].
//!
//! Matching (Intel SDM Vol. 3B §18.2.5): slot n traps when Ln or Gn is set in DR7, its R/W
//! condition matches (00 instruction fetch at exactly DRn; 01 writes; 11 reads or writes; 10 I/O,
//! never from memory) and the access touches any byte of the window `DRn & !(LEN-1)` of LEN
//! bytes (AMD `BPEXT`: `DRn & !mask`, `mask + 1` bytes). Data breakpoints are traps: they are
//! reported after the access completes.
//!
//! Not for: signals and ptrace's `virtual_dr6` (see `ptrace.rs`), or which breakpoint owns a
//! register (the generic per-CPU tables).

use core::fmt;

use crate::access::Access;
use crate::hit::{Dispatched, HitStatus};
use crate::manager::{BpId, Manager};
use crate::spec::Region;

use super::encode::decode_dr7;
use super::regs::{Dr6, X86Regs, X86Type};
use super::X86_64;

/// Registers of `regs` that trap `access` of `region` (bit n = DRn).
pub(super) fn trapping_registers(regs: &X86Regs, access: Access, region: Region) -> u32 {
    let mut mask = 0;
    for n in 0..4u32 {
        let (enabled, len, ty) = decode_dr7(regs.dr7.0, n);
        if enabled == 0 {
            continue;
        }
        let addr = regs.dr[n as usize];
        let hit = match ty {
            X86Type::Execute => access == Access::Execute && region.addr == addr,
            X86Type::Io => false,
            X86Type::Write | X86Type::ReadWrite => {
                let cond = if ty == X86Type::Write {
                    Access::Write
                } else {
                    Access::ReadWrite
                };
                let amask = regs.addr_mask[n as usize];
                let window = if amask != 0 {
                    Region::new(addr & !amask, amask.saturating_add(1))
                } else {
                    Region::new(addr & !(len.bytes() - 1), len.bytes())
                };
                access != Access::Execute && cond.traps(access) && window.overlaps(&region)
            }
        };
        if hit {
            mask |= 1 << n;
        }
    }
    mask
}

/// `dr0=0x.. dr1=0x.. dr2=0x.. dr3=0x.. dr6=0x.. dr7=0x..` (DR6 in raw polarity).
pub(super) fn fmt_regs(regs: &X86Regs, out: &mut dyn fmt::Write) -> fmt::Result {
    write!(
        out,
        "dr0={:#x} dr1={:#x} dr2={:#x} dr3={:#x} dr7={:#x}",
        regs.dr[0], regs.dr[1], regs.dr[2], regs.dr[3], regs.dr7.0
    )
}

/// DR6 (positive polarity, as `debug_read_clear_dr6()` returns it) as a generic status:
/// B0–B3 are the fired registers, BS the single step.
pub fn dr6_status(dr6: Dr6) -> HitStatus {
    HitStatus {
        fired: [dr6.trap_bits() as u32, 0],
        single_step: dr6.single_step(),
    }
}

/// What the #DB handler did with one DR6 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOutcome {
    /// DR6 after the breakpoint handler consumed the bits it delivered.
    pub dr6: Dr6,
    /// The handler set `EFLAGS.RF` (an instruction breakpoint was delivered).
    pub resume_flag: bool,
    /// Counted breakpoint hits.
    pub dispatched: Dispatched,
}

/// Linux `hw_breakpoint_handler()` on `cpu`: delivers B0–B3 to the breakpoints installed in
/// DR0–DR3 (not if an execute breakpoint coincides with BS), clears their bits, sets RF for
/// execute breakpoints. `on_hit` is the breakpoints' overflow handler.
pub fn handle_dr6(
    manager: &mut Manager<X86_64>,
    cpu: u32,
    dr6: Dr6,
    on_hit: &mut dyn FnMut(BpId),
) -> DebugOutcome {
    let dispatched = manager.dispatch(cpu, &dr6_status(dr6), on_hit);
    DebugOutcome {
        dr6: Dr6(dr6.0 & !u64::from(dispatched.consumed[0])),
        resume_flag: dispatched.resume_flag,
        dispatched,
    }
}
