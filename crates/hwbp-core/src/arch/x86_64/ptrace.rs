//! The x86 ptrace debug-register file (`PTRACE_PEEKUSER`/`POKEUSER` on `u_debugreg[0..8]`),
//! emulated on the generic manager with Linux's exact semantics (`arch/x86/kernel/ptrace.c`).
//!
//! Per thread Linux keeps `ptrace_bps[4]` (one perf breakpoint per DRn, bound to the task on all
//! CPUs), `ptrace_dr7` (the last value the debugger wrote successfully, raw) and `virtual_dr6`
//! (positive polarity). The rules reproduced here:
//! - DR0–DR3 write: no breakpoint yet → register a *disabled* placeholder (`LEN_1`, `WRITE`) at
//!   the address, which already holds a slot; else modify the address (validated against the
//!   current length and type even while disabled).
//! - DR4/DR5: write → `EIO`, read → 0. DR6 write: `virtual_dr6 = val ^ DR6_RESERVED`;
//!   read: `virtual_dr6 ^ DR6_RESERVED`.
//! - DR7 write (`ptrace_write_dr7()`): `data &= !DR_CONTROL_RESERVED`; `old = ptrace_get_dr7()`
//!   (rebuilt with `encode_dr7()` from the enabled breakpoints: G bits and GE, not the raw
//!   value); walk slots 0..3: no breakpoint and disabled → skip; no breakpoint and enabled →
//!   register one at address 0; else modify length/type/disabled. On the first error, walk
//!   again with `old` and return that error. Breakpoints registered in the failed pass stay.
//!   Read: the raw value of the last successful write.
//!
//! Not for: other arches' debugger interfaces (arm64 uses regsets of address/control pairs).

use core::fmt;

use crate::arch::ParseCtx;
use crate::attr::BpAttr;
use crate::error::ErrorClass;
use crate::manager::{BpError, BpId, Manager};
use crate::reserve::{Target, TaskId};

use super::encode::{decode_dr7, encode_dr7};
use super::hits::{handle_dr6, DebugOutcome};
use super::regs::{Dr6, X86Len, X86Type, DR6_RESERVED, DR7_RESERVED};
use super::validate::arch_bp_generic_fields;
use super::{HBP_NUM, X86_64};

/// A refused debug-register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrError {
    /// DR4, DR5 or a number past DR7: Linux `EIO`.
    NoSuchRegister {
        /// The register number.
        n: u32,
    },
    /// The breakpoint layer refused the change.
    Bp(BpError),
}

impl DrError {
    /// The errno Linux returns.
    pub const fn class(&self) -> ErrorClass {
        match self {
            DrError::NoSuchRegister { .. } => ErrorClass::Io,
            DrError::Bp(e) => e.class(),
        }
    }
}

impl From<BpError> for DrError {
    fn from(e: BpError) -> Self {
        DrError::Bp(e)
    }
}

impl fmt::Display for DrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrError::NoSuchRegister { n } => write!(
                f,
                "DR{n} cannot be written through ptrace (DR4/DR5 do not exist, only DR0-DR3, \
                 DR6, DR7 do); use one of those"
            ),
            DrError::Bp(e) => e.fmt(f),
        }
    }
}

/// One thread's emulated debug registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegFile {
    bps: [Option<BpId>; HBP_NUM as usize],
    ptrace_dr7: u64,
    virtual_dr6: u64,
}

/// `ptrace_breakpoint_init()`: user-only, task-bound.
const PTRACE_CTX: ParseCtx = ParseCtx {
    task_bound: true,
    cap_sys_admin: false,
};

impl DebugRegFile {
    /// A thread nobody has written debug registers of.
    pub const fn new() -> DebugRegFile {
        DebugRegFile {
            bps: [None; HBP_NUM as usize],
            ptrace_dr7: 0,
            virtual_dr6: 0,
        }
    }

    /// The breakpoint behind DR0..DR3.
    pub fn breakpoints(&self) -> [Option<BpId>; HBP_NUM as usize] {
        self.bps
    }

    /// `virtual_dr6`, positive polarity.
    pub fn virtual_dr6(&self) -> u64 {
        self.virtual_dr6
    }

    /// `PTRACE_PEEKUSER` of `u_debugreg[n]` (`ptrace_get_debugreg()`).
    pub fn peek(&self, manager: &Manager<X86_64>, n: u32) -> Result<u64, DrError> {
        match n {
            0..=3 => Ok(match self.bps[n as usize] {
                Some(id) => manager.info(id)?.hw.address,
                None => 0,
            }),
            4 | 5 => Ok(0),
            // DR6_RESERVED is an unsigned int in C: zero-extended before the XOR.
            6 => Ok(self.virtual_dr6 ^ DR6_RESERVED),
            7 => Ok(self.ptrace_dr7),
            _ => Err(DrError::NoSuchRegister { n }),
        }
    }

    /// `PTRACE_POKEUSER` of `u_debugreg[n]` for `task` (`ptrace_set_debugreg()`).
    pub fn poke(
        &mut self,
        manager: &mut Manager<X86_64>,
        task: TaskId,
        n: u32,
        value: u64,
    ) -> Result<(), DrError> {
        match n {
            0..=3 => self.set_breakpoint_addr(manager, task, n as usize, value),
            6 => {
                self.virtual_dr6 = value ^ DR6_RESERVED;
                Ok(())
            }
            7 => {
                self.write_dr7(manager, task, value)?;
                self.ptrace_dr7 = value;
                Ok(())
            }
            _ => Err(DrError::NoSuchRegister { n }),
        }
    }

    fn set_breakpoint_addr(
        &mut self,
        manager: &mut Manager<X86_64>,
        task: TaskId,
        n: usize,
        addr: u64,
    ) -> Result<(), DrError> {
        match self.bps[n] {
            None => {
                // Stub length and type: an inactive but correct breakpoint.
                let id = register(manager, task, X86Len::Len1, X86Type::Write, addr, true)?;
                self.bps[n] = Some(id);
            }
            Some(id) => {
                let mut attr = manager.info(id)?.attr;
                attr.addr = addr;
                manager.modify(id, attr, false)?;
            }
        }
        Ok(())
    }

    /// `ptrace_get_dr7()`: DR7 rebuilt from the enabled breakpoints.
    fn get_dr7(&self, manager: &Manager<X86_64>) -> u64 {
        let mut dr7 = 0;
        for (n, id) in self.bps.iter().enumerate() {
            if let Some(info) = id.and_then(|id| manager.info(id).ok()) {
                if !info.attr.disabled {
                    dr7 |= encode_dr7(n as u32, info.hw.len, info.hw.ty);
                }
            }
        }
        dr7
    }

    fn write_dr7(
        &mut self,
        manager: &mut Manager<X86_64>,
        task: TaskId,
        data: u64,
    ) -> Result<(), DrError> {
        let data = data & !DR7_RESERVED;
        let old_dr7 = self.get_dr7(manager);
        match self.walk_dr7(manager, task, data) {
            Ok(()) => Ok(()),
            Err(first) => {
                let second = self.walk_dr7(manager, task, old_dr7);
                debug_assert!(second.is_ok(), "restoring the old DR7 failed: {second:?}");
                Err(first)
            }
        }
    }

    fn walk_dr7(
        &mut self,
        manager: &mut Manager<X86_64>,
        task: TaskId,
        data: u64,
    ) -> Result<(), DrError> {
        for n in 0..HBP_NUM {
            let (enabled, len, ty) = decode_dr7(data, n);
            let disabled = enabled == 0;
            match self.bps[n as usize] {
                None => {
                    if disabled {
                        continue;
                    }
                    let id = register(manager, task, len, ty, 0, disabled)?;
                    self.bps[n as usize] = Some(id);
                }
                Some(id) => {
                    let mut attr = manager.info(id)?.attr;
                    fill_bp_fields(&mut attr, len, ty, disabled)?;
                    manager.modify(id, attr, false)?;
                }
            }
        }
        Ok(())
    }

    /// `ptrace_triggered()`: the overflow handler of this thread's breakpoints.
    pub fn triggered(&mut self, bp: BpId) {
        if let Some(n) = self.bps.iter().position(|b| *b == Some(bp)) {
            self.virtual_dr6 |= 1 << n;
        }
    }

    /// The user-mode #DB path (`exc_debug_user()`) for this thread on `cpu`: `virtual_dr6`
    /// starts as DR6's BS bit, the breakpoint handler delivers B0–B3 (this thread's ptrace
    /// breakpoints set their DRn bit in `virtual_dr6`), and a `SIGTRAP` is due if the merged
    /// DR6 has BS or any B bit left. Returns the handler outcome and whether SIGTRAP is sent.
    pub fn debug_exception(
        &mut self,
        manager: &mut Manager<X86_64>,
        cpu: u32,
        dr6: Dr6,
        on_hit: &mut dyn FnMut(BpId),
    ) -> (DebugOutcome, bool) {
        self.virtual_dr6 = dr6.0 & Dr6::BS;
        let outcome = handle_dr6(manager, cpu, dr6, &mut |id| {
            self.triggered(id);
            on_hit(id);
        });
        let merged = outcome.dr6.0 | self.virtual_dr6;
        let sigtrap = merged & (Dr6::BS | Dr6::TRAP_BITS) != 0;
        (outcome, sigtrap)
    }

    /// `flush_ptrace_hw_breakpoint()` (exec): closes every breakpoint, clears DR6 and DR7.
    pub fn flush(&mut self, manager: &mut Manager<X86_64>) {
        for id in self.bps.iter_mut().filter_map(Option::take) {
            let _ = manager.close(id);
        }
        *self = DebugRegFile::new();
    }
}

/// `ptrace_fill_bp_fields()`: DR7's LEN/R-W as perf's length and type (`EINVAL` for I/O or an
/// execute breakpoint with LEN != 00).
fn fill_bp_fields(
    attr: &mut BpAttr,
    len: X86Len,
    ty: X86Type,
    disabled: bool,
) -> Result<(), BpError> {
    let (len_bytes, bp_type) = arch_bp_generic_fields(len, ty)?;
    attr.len_bytes = len_bytes;
    attr.bp_type = bp_type;
    attr.disabled = disabled;
    Ok(())
}

/// `ptrace_register_breakpoint()`: a user-only breakpoint bound to `task` on all CPUs.
fn register(
    manager: &mut Manager<X86_64>,
    task: TaskId,
    len: X86Len,
    ty: X86Type,
    addr: u64,
    disabled: bool,
) -> Result<BpId, BpError> {
    let mut attr = BpAttr::user(addr, 0, 0);
    fill_bp_fields(&mut attr, len, ty, disabled)?;
    manager.create(attr, Target::Task { task, cpu: None }, PTRACE_CTX)
}
