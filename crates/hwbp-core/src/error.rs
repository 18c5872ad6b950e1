//! Why a breakpoint was refused, with the data needed to explain it.
//!
//! Every refusal has an [`ErrorClass`] equal to the errno Linux returns for the same request, so
//! the core, the simulator and the real kernel can be compared outcome by outcome.

use core::fmt;

use crate::access::Access;
use crate::attr::PoolKind;

/// The errno-level outcome of a refused request, as Linux reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// `EINVAL`: the request breaks a rule.
    Invalid,
    /// `EOPNOTSUPP`: valid, but this CPU lacks the feature (e.g. AMD range breakpoints).
    NotSupported,
    /// `ENOSPC`: no slot left.
    NoSpace,
    /// `EPERM`: needs a privilege the caller lacks.
    Permission,
    /// `EIO`: a debug-register number that does not exist (ptrace DR4/DR5).
    Io,
    /// `ENOENT`: no such breakpoint.
    NotFound,
}

impl ErrorClass {
    /// The errno name, e.g. `"EINVAL"`.
    pub const fn errno_name(self) -> &'static str {
        match self {
            ErrorClass::Invalid => "EINVAL",
            ErrorClass::NotSupported => "EOPNOTSUPP",
            ErrorClass::NoSpace => "ENOSPC",
            ErrorClass::Permission => "EPERM",
            ErrorClass::Io => "EIO",
            ErrorClass::NotFound => "ENOENT",
        }
    }

    /// The Linux errno value (x86_64/arm64/powerpc share these numbers).
    pub const fn errno(self) -> i32 {
        match self {
            ErrorClass::Invalid => 22,
            ErrorClass::NotSupported => 95,
            ErrorClass::NoSpace => 28,
            ErrorClass::Permission => 1,
            ErrorClass::Io => 5,
            ErrorClass::NotFound => 2,
        }
    }

    /// The class for a Linux errno value, if it is one of ours.
    pub const fn from_errno(errno: i32) -> Option<ErrorClass> {
        match errno {
            22 => Some(ErrorClass::Invalid),
            95 => Some(ErrorClass::NotSupported),
            28 => Some(ErrorClass::NoSpace),
            1 => Some(ErrorClass::Permission),
            5 => Some(ErrorClass::Io),
            2 => Some(ErrorClass::NotFound),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.errno_name())
    }
}

/// A breakpoint request that an architecture's rules refuse.
///
/// `Display` names the rule that was broken and the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleError {
    /// `bp_type` is `HW_BREAKPOINT_EMPTY`, `INVALID`, or a combination no arch has (`R|X`).
    InvalidType {
        /// The raw `bp_type` bits.
        bp_type: u32,
    },
    /// A region of zero bytes.
    ZeroLength,
    /// `addr + len - 1` overflows the address space.
    AddressWrap {
        /// Start of the region.
        addr: u64,
        /// Its length.
        len_bytes: u64,
    },
    /// The address is not aligned to what this length requires.
    Misaligned {
        /// Start of the region.
        addr: u64,
        /// Its length.
        len_bytes: u64,
        /// The alignment the hardware needs, in bytes.
        required_align: u64,
    },
    /// A length the hardware cannot express in one slot.
    UnsupportedLength {
        /// The refused length.
        len_bytes: u64,
        /// The largest single-slot length (all powers of two up to it are allowed on x86).
        max_len_bytes: u64,
    },
    /// A range breakpoint (power-of-two length above the register size) on a CPU without the
    /// feature (x86: AMD `BPEXT`). Linux answers `EOPNOTSUPP`.
    RangeUnsupported {
        /// The requested length.
        len_bytes: u64,
    },
    /// Read-only watchpoints do not exist on this arch (x86 has write and read/write only).
    ReadOnlyUnsupported,
    /// Execute breakpoints need a specific length on this arch.
    ExecuteLength {
        /// The requested length.
        len_bytes: u64,
        /// The only length accepted.
        required: u64,
    },
    /// A kernel address with kernel-mode accesses excluded (`exclude_kernel`): Linux `EINVAL`.
    KernelAddressExcluded {
        /// The kernel address.
        addr: u64,
    },
    /// A kernel address without `CAP_SYS_ADMIN`: Linux `EPERM`.
    KernelAddressNeedsPrivilege {
        /// The kernel address.
        addr: u64,
    },
    /// A task-bound breakpoint on a kernel address, which arm64 refuses.
    KernelAddressForTask {
        /// The kernel address.
        addr: u64,
    },
    /// The hardware window (aligned to the arch's granule) is larger than one slot can watch.
    WindowTooLarge {
        /// Start of the region.
        addr: u64,
        /// Its length.
        len_bytes: u64,
        /// The aligned window the hardware would need.
        window_len_bytes: u64,
        /// The largest window.
        max_window_bytes: u64,
    },
    /// The hardware window crosses a boundary it may not cross (POWER9 DAWR: 512 bytes).
    CrossesBoundary {
        /// Start of the region.
        addr: u64,
        /// Its length.
        len_bytes: u64,
        /// The boundary, in bytes.
        boundary: u64,
    },
    /// The arch has no slot of this kind at all (powerpc: no instruction breakpoints).
    NoSlotsOfKind {
        /// The missing pool.
        pool: PoolKind,
    },
    /// An execute breakpoint names more than one instruction.
    ExecuteRegion {
        /// The requested length.
        len_bytes: u64,
    },
    /// A length outside 1..=max that one slot cannot express (arm64: 1..=8, any length).
    LengthOutOfRange {
        /// The refused length.
        len_bytes: u64,
        /// The largest single-slot length.
        max_len_bytes: u64,
    },
    /// A byte-address-select mask that is not one contiguous run of bytes (arm64
    /// `arch_bp_generic_fields()`).
    InvalidBas {
        /// The refused mask.
        bas: u8,
    },
    /// An execute breakpoint at an address no instruction can start at (arm64: A64
    /// instructions are 4-byte aligned, so the breakpoint could never trigger).
    InstructionMisaligned {
        /// The requested address.
        addr: u64,
        /// The instruction alignment.
        required_align: u64,
    },
}

impl RuleError {
    /// The errno Linux returns for this refusal.
    pub const fn class(&self) -> ErrorClass {
        match self {
            RuleError::RangeUnsupported { .. } => ErrorClass::NotSupported,
            RuleError::KernelAddressNeedsPrivilege { .. } => ErrorClass::Permission,
            RuleError::NoSlotsOfKind { .. } => ErrorClass::NoSpace,
            _ => ErrorClass::Invalid,
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RuleError::InvalidType { bp_type } => write!(
                f,
                "breakpoint type {bp_type:#x} is not one of r (1), w (2), rw (3), x (4); \
                 execute cannot be combined with read or write"
            ),
            RuleError::ZeroLength => f.write_str(
                "a watched region must be at least 1 byte long; give a LEN of 1 or more",
            ),
            RuleError::AddressWrap { addr, len_bytes } => write!(
                f,
                "region {addr:#x}/{len_bytes} wraps past the end of the address space; \
                 shorten it or lower the address"
            ),
            RuleError::Misaligned {
                addr,
                len_bytes,
                required_align,
            } => write!(
                f,
                "a {len_bytes}-byte slot must start at a multiple of {required_align}, \
                 but {addr:#x} is {} past one; use an aligned address (hwbp plan splits any \
                 region into aligned pieces)",
                addr % required_align
            ),
            RuleError::UnsupportedLength {
                len_bytes,
                max_len_bytes,
            } => write!(
                f,
                "one slot cannot watch {len_bytes} bytes: lengths are powers of two up to \
                 {max_len_bytes}; split the region (hwbp plan does it)"
            ),
            RuleError::RangeUnsupported { len_bytes } => write!(
                f,
                "a {len_bytes}-byte range breakpoint needs AMD's breakpoint address masks \
                 (BPEXT), which this CPU lacks; split the region into 8-byte pieces instead"
            ),
            RuleError::ReadOnlyUnsupported => f.write_str(
                "x86 debug registers cannot trap reads alone (R/W=10 is I/O); \
                 use rw, which traps reads and writes (gdb's rwatch does the same)",
            ),
            RuleError::ExecuteLength {
                len_bytes,
                required,
            } => write!(
                f,
                "execute breakpoints take a length of exactly {required} on this arch, \
                 not {len_bytes}; omit the length"
            ),
            RuleError::KernelAddressExcluded { addr } => write!(
                f,
                "{addr:#x} is a kernel address but kernel-mode accesses are excluded; \
                 ask for kernel privilege (the :k modifier) or watch a user address"
            ),
            RuleError::KernelAddressNeedsPrivilege { addr } => write!(
                f,
                "watching kernel address {addr:#x} needs CAP_SYS_ADMIN; run as root"
            ),
            RuleError::KernelAddressForTask { addr } => write!(
                f,
                "{addr:#x} is a kernel address, and per-task breakpoints may only watch user \
                 addresses on this arch; bind the breakpoint to a CPU instead"
            ),
            RuleError::WindowTooLarge {
                addr,
                len_bytes,
                window_len_bytes,
                max_window_bytes,
            } => write!(
                f,
                "region {addr:#x}/{len_bytes} needs a {window_len_bytes}-byte hardware window \
                 but one slot watches at most {max_window_bytes}; watch a smaller region"
            ),
            RuleError::CrossesBoundary {
                addr,
                len_bytes,
                boundary,
            } => write!(
                f,
                "region {addr:#x}/{len_bytes} crosses a {boundary}-byte boundary, which this \
                 CPU's watchpoint window may not cross; watch the parts on each side separately"
            ),
            RuleError::NoSlotsOfKind { pool } => write!(
                f,
                "this arch has no {} breakpoint slots; watch data instead",
                pool.as_str()
            ),
            RuleError::ExecuteRegion { len_bytes } => write!(
                f,
                "an execute breakpoint names one instruction, not a {len_bytes}-byte region; \
                 omit the length"
            ),
            RuleError::LengthOutOfRange {
                len_bytes,
                max_len_bytes,
            } => write!(
                f,
                "one slot watches 1 to {max_len_bytes} bytes, not {len_bytes}; split the region \
                 (hwbp plan does it)"
            ),
            RuleError::InvalidBas { bas } => write!(
                f,
                "byte-address-select mask {bas:#04x} does not select one contiguous run of bytes; \
                 use a mask such as 0x0f or 0x3c"
            ),
            RuleError::InstructionMisaligned {
                addr,
                required_align,
            } => write!(
                f,
                "instructions start at multiples of {required_align}, so a breakpoint at {addr:#x} \
                 could never trigger; use the instruction's address"
            ),
        }
    }
}

/// A set of watches that cannot be planned into one register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlanError {
    /// One piece breaks an arch rule.
    Rule(RuleError),
    /// The pieces need more slots than are free.
    DoesNotFit {
        /// The pool that ran out.
        pool: PoolKind,
        /// Access of the watch that did not fit.
        access: Access,
        /// Slots this watch needs (after sharing identical pieces).
        needed: u32,
        /// Slots still free when it was inserted.
        available: u32,
        /// Slots the pool has in all.
        capacity: u32,
    },
}

impl PlanError {
    /// The errno Linux would return.
    pub const fn class(&self) -> ErrorClass {
        match self {
            PlanError::Rule(r) => r.class(),
            PlanError::DoesNotFit { .. } => ErrorClass::NoSpace,
        }
    }
}

impl From<RuleError> for PlanError {
    fn from(e: RuleError) -> Self {
        PlanError::Rule(e)
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlanError::Rule(r) => r.fmt(f),
            PlanError::DoesNotFit {
                pool,
                access,
                needed,
                available,
                capacity,
            } => write!(
                f,
                "does not fit: this {access} watch needs {needed} {} slot{} but only {available} \
                 of {capacity} are free; watch a smaller or better-aligned region, or remove \
                 another watch",
                pool.as_str(),
                if needed == 1 { "" } else { "s" }
            ),
        }
    }
}
