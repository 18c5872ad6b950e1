//! Per-architecture rules, register layouts and encodings.
//!
//! One folder per architecture, the same files in each: `regs.rs` (bit layouts), `validate.rs`
//! (Linux's `hw_breakpoint_arch_parse()` rules), `encode.rs` (install/uninstall into the
//! register file) and `plan.rs` (covering any region with the fewest slots). Every arch
//! compiles and is tested on every host; only [`NativeArch`] depends on the build target.
//!
//! Not for: slot accounting (which breakpoints may exist at once) — that is generic and lives
//! above this module.

use alloc::vec::Vec;
use core::fmt::Debug;

use crate::access::Access;
use crate::attr::{BpAttr, PoolKind};
use crate::error::{PlanError, RuleError};
use crate::spec::{Region, Spec};

pub mod arm64;
pub mod power;
pub mod x86_64;

/// The host's architecture, for callers that want "whatever this machine has".
#[cfg(target_arch = "x86_64")]
pub type NativeArch = x86_64::X86_64;

/// The host's architecture, for callers that want "whatever this machine has".
#[cfg(target_arch = "aarch64")]
pub type NativeArch = arm64::Arm64;

/// The host's architecture, for callers that want "whatever this machine has" (POWER9 rules,
/// which also hold on POWER10; the generation is not known at compile time).
#[cfg(target_arch = "powerpc64")]
pub type NativeArch = power::Power;

/// Planners refuse to produce more pieces than this: no architecture has more slots
/// (arm64's maximum is 16 per pool), so a larger plan could never be armed.
pub const MAX_PLAN_CHUNKS: u64 = 64;

/// Who asks for a breakpoint, as far as validation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseCtx {
    /// Bound to a task (perf `pid >= 0`), rather than only to a CPU.
    pub task_bound: bool,
    /// The caller has `CAP_SYS_ADMIN` (needed for kernel addresses).
    pub cap_sys_admin: bool,
}

impl ParseCtx {
    /// A privileged, task-bound request (what a root debugger sends).
    pub const ROOT_TASK: ParseCtx = ParseCtx {
        task_bound: true,
        cap_sys_admin: true,
    };
}

/// One hardware slot's worth of a planned watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// The breakpoint to program, as perf would be asked for it.
    pub attr: BpAttr,
    /// The bytes of the watched region this piece is responsible for.
    pub covers: Region,
    /// The bytes the hardware actually watches. Wider than `covers` where the hardware window
    /// is coarser than the region (powerpc's 8-byte granules): hits must then be filtered to
    /// `covers` by the consumer.
    pub window: Region,
}

impl Chunk {
    /// Whether the hardware window is exactly the covered bytes (no filtering needed).
    pub fn is_exact(&self) -> bool {
        self.window == self.covers
    }

    /// The access this piece traps.
    pub fn access(&self) -> Access {
        Access::from_bp_type(self.attr.bp_type).unwrap_or(Access::ReadWrite)
    }
}

/// An architecture's breakpoint hardware, as Linux programs it.
pub trait Arch: Clone + Debug {
    /// A validated single-slot setting (Linux `struct arch_hw_breakpoint`).
    type Hw: Copy + Eq + Debug;
    /// One CPU's (or one thread's) debug registers.
    type Regs: Clone + Eq + Debug;

    /// The arch's name as the CLI spells it (`x86_64`, `arm64`, `power9`, `power10`).
    fn name(&self) -> &'static str;

    /// Whether instruction and data breakpoints share one pool of registers
    /// (Linux `CONFIG_HAVE_MIXED_BREAKPOINTS_REGS`: x86).
    fn mixed_pools(&self) -> bool;

    /// Number of slots in a pool (`hw_breakpoint_slots(type)`).
    fn slots(&self, pool: PoolKind) -> u32;

    /// Linux `hw_breakpoint_arch_parse()`: validates one slot's worth and computes its setting.
    fn arch_parse(&self, attr: &BpAttr, ctx: ParseCtx) -> Result<Self::Hw, RuleError>;

    /// Linux `arch_check_bp_in_kernelspace()`.
    fn in_kernel_space(&self, hw: &Self::Hw) -> bool;

    /// The access a validated setting traps.
    fn hw_access(&self, hw: &Self::Hw) -> Access;

    /// The bytes the hardware watches for this setting (for execute: the instruction's first
    /// byte).
    fn hw_window(&self, hw: &Self::Hw) -> Region;

    /// A register file with nothing installed.
    fn empty_regs(&self) -> Self::Regs;

    /// Linux `arch_install_hw_breakpoint()` into register `index` of `pool`.
    fn install(&self, regs: &mut Self::Regs, pool: PoolKind, index: u32, hw: &Self::Hw);

    /// Linux `arch_uninstall_hw_breakpoint()`: clears only the bits this slot owns (never
    /// global enables such as x86 GE/LE — review demand 5).
    fn uninstall(&self, regs: &mut Self::Regs, pool: PoolKind, index: u32, hw: &Self::Hw);

    /// Covers `spec` exactly with the fewest slots this arch allows. Each chunk's `attr` passes
    /// [`Arch::arch_parse`].
    fn plan(&self, spec: &Spec) -> Result<Vec<Chunk>, PlanError>;

    /// Which registers of `pool` in `regs` trap an access of kind `access` to `region`, read
    /// from the register file with the hardware's own matching rules (bit `i` = register `i`).
    ///
    /// `None` (the default): the arch does not decode its register file, and callers match the
    /// installed settings with [`crate::hit::hw_traps`] instead.
    fn trapping_registers(
        &self,
        _regs: &Self::Regs,
        _pool: PoolKind,
        _access: Access,
        _region: Region,
    ) -> Option<u32> {
        None
    }

    /// Whether data watchpoints trap before the access is performed (arm64) rather than after
    /// it (x86, the default).
    fn data_traps_before_access(&self) -> bool {
        false
    }

    /// Writes a register file for people (x86: `dr0=.. dr7=..` in hex). Default: `Debug`.
    fn fmt_regs(&self, regs: &Self::Regs, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(out, "{regs:?}")
    }

    /// Index of `pool` among the arch's pools: 0 for both kinds on mixed arches.
    fn pool_index(&self, pool: PoolKind) -> usize {
        if self.mixed_pools() {
            0
        } else {
            match pool {
                PoolKind::Inst => 0,
                PoolKind::Data => 1,
            }
        }
    }
}

/// Linux `hw_breakpoint_parse()`: the arch rules, then the generic kernel-address rules
/// (`exclude_kernel` → `EINVAL`; no `CAP_SYS_ADMIN` → `EPERM`).
pub fn parse<A: Arch>(arch: &A, attr: &BpAttr, ctx: ParseCtx) -> Result<A::Hw, RuleError> {
    let hw = arch.arch_parse(attr, ctx)?;
    if arch.in_kernel_space(&hw) {
        if attr.exclude_kernel {
            return Err(RuleError::KernelAddressExcluded { addr: attr.addr });
        }
        if !ctx.cap_sys_admin {
            return Err(RuleError::KernelAddressNeedsPrivilege { addr: attr.addr });
        }
    }
    Ok(hw)
}
