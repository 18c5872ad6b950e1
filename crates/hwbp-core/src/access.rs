//! Access kinds a breakpoint traps on, and their Linux `bp_type` bits.

use core::fmt;

/// The kind of access a breakpoint traps on.
///
/// Linux `include/uapi/linux/hw_breakpoint.h`: `HW_BREAKPOINT_R = 1`, `W = 2`, `RW = 3`, `X = 4`.
/// Combinations of execute with read or write do not exist on any architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// Data reads only (gdb `rwatch`). x86 has no read-only condition.
    Read,
    /// Data writes (gdb `watch`, perf `:w`).
    Write,
    /// Data reads and writes (gdb `awatch`, perf `:rw`).
    ReadWrite,
    /// Instruction execution (gdb `hbreak`, perf `:x`).
    Execute,
}

/// Linux `HW_BREAKPOINT_EMPTY`.
pub const BP_EMPTY: u32 = 0;
/// Linux `HW_BREAKPOINT_R`.
pub const BP_R: u32 = 1;
/// Linux `HW_BREAKPOINT_W`.
pub const BP_W: u32 = 2;
/// Linux `HW_BREAKPOINT_RW`.
pub const BP_RW: u32 = BP_R | BP_W;
/// Linux `HW_BREAKPOINT_X`.
pub const BP_X: u32 = 4;
/// Linux `HW_BREAKPOINT_INVALID` (`RW | X`).
pub const BP_INVALID: u32 = BP_RW | BP_X;

impl Access {
    /// All four kinds, in `bp_type` order.
    pub const ALL: [Access; 4] = [
        Access::Read,
        Access::Write,
        Access::ReadWrite,
        Access::Execute,
    ];

    /// The Linux `bp_type` bits of this access.
    pub const fn bp_type(self) -> u32 {
        match self {
            Access::Read => BP_R,
            Access::Write => BP_W,
            Access::ReadWrite => BP_RW,
            Access::Execute => BP_X,
        }
    }

    /// The access for Linux `bp_type` bits, if it is one of the four valid kinds.
    pub const fn from_bp_type(bp_type: u32) -> Option<Access> {
        match bp_type {
            BP_R => Some(Access::Read),
            BP_W => Some(Access::Write),
            BP_RW => Some(Access::ReadWrite),
            BP_X => Some(Access::Execute),
            _ => None,
        }
    }

    /// Parses `r`, `w`, `rw` (or `wr`) and `x`.
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "r" => Some(Access::Read),
            "w" => Some(Access::Write),
            "rw" | "wr" => Some(Access::ReadWrite),
            "x" => Some(Access::Execute),
            _ => None,
        }
    }

    /// Whether this is a data (read and/or write) access.
    pub const fn is_data(self) -> bool {
        !matches!(self, Access::Execute)
    }

    /// Whether a data access of kind `by` (a read or a write) is trapped by this condition.
    pub const fn traps(self, by: Access) -> bool {
        self.bp_type() & by.bp_type() != 0
    }

    /// The short name used in specs: `r`, `w`, `rw`, `x`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "r",
            Access::Write => "w",
            Access::ReadWrite => "rw",
            Access::Execute => "x",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
