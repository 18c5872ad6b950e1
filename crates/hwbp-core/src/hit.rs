//! Hits: what the hardware reports after a debug exception, in generic form, and which
//! installed settings an access matches.
//!
//! Each arch turns its own status register into a [`HitStatus`] (x86: DR6's B0–B3 and BS, see
//! `arch::x86_64::dr6_status`); [`crate::manager::Manager::dispatch`] turns that into counted
//! hits. Not for: deciding signals or ptrace state — that is the arch's ABI layer.

use crate::access::Access;
use crate::arch::Arch;
use crate::spec::Region;

/// Which registers fired, per pool index (bit `i` = register `i`), and whether the exception
/// is also a single step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HitStatus {
    /// Fired registers of pool index 0 and 1 ([`Arch::pool_index`]).
    pub fired: [u32; 2],
    /// The same exception reports a completed single step (x86 DR6.BS).
    pub single_step: bool,
}

impl HitStatus {
    /// Whether no register fired.
    pub const fn is_empty(&self) -> bool {
        self.fired[0] == 0 && self.fired[1] == 0
    }
}

/// What dispatching a [`HitStatus`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Dispatched {
    /// Registers whose hit was delivered to their breakpoint (their status bits are consumed).
    pub consumed: [u32; 2],
    /// Number of breakpoints counted.
    pub delivered: u32,
    /// An execute breakpoint was delivered: the arch must resume with its "don't re-trap this
    /// instruction" flag (x86 `EFLAGS.RF`).
    pub resume_flag: bool,
}

/// Whether a setting traps an access of `region` of kind `access`, with the generic hardware
/// semantics: data settings trap a matching read or write touching any byte of their window;
/// execute settings trap an instruction whose first byte is in their window.
pub fn hw_traps<A: Arch>(arch: &A, hw: &A::Hw, access: Access, region: Region) -> bool {
    let want = arch.hw_access(hw);
    let window = arch.hw_window(hw);
    match (want, access) {
        (Access::Execute, Access::Execute) => window.overlaps(&Region::new(region.addr, 1)),
        (Access::Execute, _) | (_, Access::Execute) => false,
        (want, by) => want.traps(by) && window.overlaps(&region),
    }
}
