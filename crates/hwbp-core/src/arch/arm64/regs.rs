//! arm64 debug-register bit layouts (Arm ARM D13.3 `DBGBCR<n>_EL1`/`DBGWCR<n>_EL1`; Linux
//! `arch/arm64/include/asm/hw_breakpoint.h`).

use core::fmt;

use crate::attr::PoolKind;

/// `ARM_MAX_BRP`: Linux's register accessors stop at 16 breakpoint registers.
pub const ARM_MAX_BRP: u32 = 16;
/// `ARM_MAX_WRP`: Linux's register accessors stop at 16 watchpoint registers.
pub const ARM_MAX_WRP: u32 = 16;

/// `DBG_HMC_HYP`: control-register bit 13 (HMC), set by `encode_ctrl_reg()` for EL1-privilege
/// settings when the kernel itself runs at EL2 (VHE, `is_kernel_in_hyp_mode()`).
pub const DBG_HMC_HYP: u32 = 1 << 13;

/// Linux's `ARM_BREAKPOINT_LEN_1..8`: the byte-address-select masks for 1..8 bytes starting at
/// byte 0 of the doubleword (`0x1, 0x3, 0x7, 0xf, 0x1f, 0x3f, 0x7f, 0xff`).
pub const fn bas_for_len(len_bytes: u64) -> Option<u8> {
    match len_bytes {
        1..=8 => Some(((1u16 << len_bytes) - 1) as u8),
        _ => None,
    }
}

/// The control register's 2-bit LSC field (watchpoints) — Linux `ctrl.type`.
///
/// `ARM_BREAKPOINT_EXECUTE = 0` (the value Linux keeps for breakpoints; in a breakpoint control
/// register bits 4:3 are RES0), `ARM_BREAKPOINT_LOAD = 1`, `ARM_BREAKPOINT_STORE = 2`,
/// `LOAD | STORE = 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arm64Type {
    /// `ARM_BREAKPOINT_EXECUTE = 0`.
    Execute,
    /// `ARM_BREAKPOINT_LOAD = 1` (LSC = 0b01).
    Load,
    /// `ARM_BREAKPOINT_STORE = 2` (LSC = 0b10).
    Store,
    /// `ARM_BREAKPOINT_LOAD | ARM_BREAKPOINT_STORE = 3` (LSC = 0b11).
    LoadStore,
}

impl Arm64Type {
    /// The field value (0..=3).
    pub const fn code(self) -> u32 {
        match self {
            Arm64Type::Execute => 0,
            Arm64Type::Load => 1,
            Arm64Type::Store => 2,
            Arm64Type::LoadStore => 3,
        }
    }

    /// From the low two bits of `bits`.
    pub const fn from_bits(bits: u32) -> Arm64Type {
        match bits & 3 {
            0 => Arm64Type::Execute,
            1 => Arm64Type::Load,
            2 => Arm64Type::Store,
            _ => Arm64Type::LoadStore,
        }
    }
}

/// The control register's 2-bit PMC field — Linux `ctrl.privilege`.
///
/// Linux only ever produces `AARCH64_BREAKPOINT_EL1 = 1` and `AARCH64_BREAKPOINT_EL0 = 2`
/// (never both: "that would complicate the stepping code"); 0 and 3 exist so that any register
/// value decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arm64Privilege {
    /// PMC = 0b00: not produced by Linux.
    Reserved,
    /// `AARCH64_BREAKPOINT_EL1 = 1`: kernel (EL1) accesses.
    El1,
    /// `AARCH64_BREAKPOINT_EL0 = 2`: user (EL0) accesses.
    El0,
    /// PMC = 0b11, EL0 and EL1: not produced by Linux.
    El0AndEl1,
}

impl Arm64Privilege {
    /// The field value (0..=3).
    pub const fn code(self) -> u32 {
        match self {
            Arm64Privilege::Reserved => 0,
            Arm64Privilege::El1 => 1,
            Arm64Privilege::El0 => 2,
            Arm64Privilege::El0AndEl1 => 3,
        }
    }

    /// From the low two bits of `bits`.
    pub const fn from_bits(bits: u32) -> Arm64Privilege {
        match bits & 3 {
            0 => Arm64Privilege::Reserved,
            1 => Arm64Privilege::El1,
            2 => Arm64Privilege::El0,
            _ => Arm64Privilege::El0AndEl1,
        }
    }
}

/// Linux `struct arch_hw_breakpoint_ctrl`: the fields of a breakpoint/watchpoint control
/// register that Linux programs.
///
/// Register layout (`encode_ctrl_reg()`: `(len << 5) | (type << 3) | (privilege << 1) | enabled`):
/// - bit 0, **E**: enable;
/// - bits 2:1, **PMC**: privilege mode control ([`Arm64Privilege`]);
/// - bits 4:3, **LSC**: load/store control ([`Arm64Type`]; RES0 in a breakpoint register);
/// - bits 12:5, **BAS**: byte address select, one bit per byte of the doubleword at the value
///   register's address (breakpoints use bits 8:5; Linux's 8-bit `len` field spills into 12:9
///   for a misaligned execute address);
/// - bit 13, **HMC**: set only for EL1 settings on a VHE kernel ([`DBG_HMC_HYP`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arm64Ctrl {
    /// BAS, Linux `ctrl.len` (an 8-bit bitfield: shifts past bit 7 are lost).
    pub bas: u8,
    /// LSC, Linux `ctrl.type`.
    pub ty: Arm64Type,
    /// PMC, Linux `ctrl.privilege`.
    pub privilege: Arm64Privilege,
    /// E, Linux `ctrl.enabled` (`!attr.disabled`).
    pub enabled: bool,
}

/// A validated arm64 breakpoint or watchpoint (Linux `struct arch_hw_breakpoint`, without the
/// run-time `trigger` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arm64Hw {
    /// The value register: the requested address aligned down to 8 (watchpoints) or 4
    /// (breakpoints); the offset moved into BAS.
    pub address: u64,
    /// The control register fields.
    pub ctrl: Arm64Ctrl,
}

/// One CPU's or thread's breakpoint (`DBGBVR/DBGBCR<n>_EL1`) and watchpoint
/// (`DBGWVR/DBGWCR<n>_EL1`) registers, `ARM_MAX_BRP`/`ARM_MAX_WRP` = 16 of each; a CPU
/// implements only the first `BRPs + 1` / `WRPs + 1`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Arm64Regs {
    /// Breakpoint value registers `DBGBVR<n>_EL1`.
    pub bvr: [u64; 16],
    /// Breakpoint control registers `DBGBCR<n>_EL1` (the low 32 bits Linux writes).
    pub bcr: [u32; 16],
    /// Watchpoint value registers `DBGWVR<n>_EL1`.
    pub wvr: [u64; 16],
    /// Watchpoint control registers `DBGWCR<n>_EL1` (the low 32 bits Linux writes).
    pub wcr: [u32; 16],
}

impl Arm64Regs {
    /// Slot `n`'s value register in `pool` (`DBGBVR<n>` for instruction, `DBGWVR<n>` for data).
    pub const fn value(&self, pool: PoolKind, n: usize) -> u64 {
        match pool {
            PoolKind::Inst => self.bvr[n],
            PoolKind::Data => self.wvr[n],
        }
    }

    /// Slot `n`'s control register in `pool` (`DBGBCR<n>` / `DBGWCR<n>`).
    pub const fn ctrl(&self, pool: PoolKind, n: usize) -> u32 {
        match pool {
            PoolKind::Inst => self.bcr[n],
            PoolKind::Data => self.wcr[n],
        }
    }
}

impl fmt::Debug for Arm64Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the slots in use, to keep test failures readable.
        let mut s = f.debug_struct("Arm64Regs");
        for (name, vals, ctrls) in [("bp", &self.bvr, &self.bcr), ("wp", &self.wvr, &self.wcr)] {
            for i in 0..16 {
                if vals[i] != 0 || ctrls[i] != 0 {
                    s.field(
                        name,
                        &format_args!("[{i}] {:#x} ctrl {:#x}", vals[i], ctrls[i]),
                    );
                }
            }
        }
        s.finish()
    }
}
