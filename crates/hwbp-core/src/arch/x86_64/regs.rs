//! x86 debug-register bit layouts (Intel SDM Vol. 3B §18.2; Linux `asm/debugreg.h`).

use core::fmt;

/// DR7 bit 8, `DR_LOCAL_SLOWDOWN` (LE). Never set by Linux, never cleared by us.
pub const DR7_LE: u64 = 1 << 8;
/// DR7 bit 9, `DR_GLOBAL_SLOWDOWN` (GE). Set by every install, never cleared by uninstall.
pub const DR7_GE: u64 = 1 << 9;
/// DR7 bits 10–15 and 32–63, `DR_CONTROL_RESERVED` on x86-64.
pub const DR7_RESERVED: u64 = 0xFFFF_FFFF_0000_FC00;
/// `DR6_RESERVED`: DR6's value with no event; the active-low bits (BLD 11, RTM 16) read 1.
pub const DR6_RESERVED: u64 = 0xFFFF_0FF0;

/// Linux's `X86_BREAKPOINT_LEN_*` (`asm/hw_breakpoint.h`): `0x40 | LEN nibble bits`.
///
/// DR7 LEN field: `00` = 1 byte, `01` = 2, `11` = 4, `10` = 8 (64-bit only). Execute
/// breakpoints use `LEN_X` = `LEN_1` (LEN = 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum X86Len {
    /// `X86_BREAKPOINT_LEN_1 = 0x40` (also `LEN_X` for execute).
    Len1,
    /// `X86_BREAKPOINT_LEN_2 = 0x44`.
    Len2,
    /// `X86_BREAKPOINT_LEN_4 = 0x4c`.
    Len4,
    /// `X86_BREAKPOINT_LEN_8 = 0x48`.
    Len8,
}

impl X86Len {
    /// The kernel's constant (`0x40`, `0x44`, `0x4c`, `0x48`).
    pub const fn code(self) -> u8 {
        match self {
            X86Len::Len1 => 0x40,
            X86Len::Len2 => 0x44,
            X86Len::Len4 => 0x4c,
            X86Len::Len8 => 0x48,
        }
    }

    /// From the DR7 LEN field's two bits placed at bits 2–3 of the nibble
    /// (`decode_dr7`: `len = (info & 0xc) | 0x40`).
    pub const fn from_nibble(info: u64) -> X86Len {
        match info & 0xc {
            0x0 => X86Len::Len1,
            0x4 => X86Len::Len2,
            0xc => X86Len::Len4,
            _ => X86Len::Len8,
        }
    }

    /// Bytes covered (`arch_bp_generic_len()`).
    pub const fn bytes(self) -> u64 {
        match self {
            X86Len::Len1 => 1,
            X86Len::Len2 => 2,
            X86Len::Len4 => 4,
            X86Len::Len8 => 8,
        }
    }

    /// The length for 1, 2, 4 or 8 bytes.
    pub const fn from_bytes(len: u64) -> Option<X86Len> {
        match len {
            1 => Some(X86Len::Len1),
            2 => Some(X86Len::Len2),
            4 => Some(X86Len::Len4),
            8 => Some(X86Len::Len8),
            _ => None,
        }
    }
}

/// Linux's `X86_BREAKPOINT_*` types: `0x80 | R/W bits`.
///
/// DR7 R/W field: `00` execute, `01` write, `10` I/O (needs CR4.DE; never accepted),
/// `11` read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum X86Type {
    /// `X86_BREAKPOINT_EXECUTE = 0x80`.
    Execute,
    /// `X86_BREAKPOINT_WRITE = 0x81`.
    Write,
    /// R/W = `10`, I/O port breakpoints: decodable, refused by `arch_bp_generic_fields()`.
    Io,
    /// `X86_BREAKPOINT_RW = 0x83`.
    ReadWrite,
}

impl X86Type {
    /// The kernel's constant (`0x80`..`0x83`).
    pub const fn code(self) -> u8 {
        match self {
            X86Type::Execute => 0x80,
            X86Type::Write => 0x81,
            X86Type::Io => 0x82,
            X86Type::ReadWrite => 0x83,
        }
    }

    /// From the DR7 R/W bits (`decode_dr7`: `type = (info & 0x3) | 0x80`).
    pub const fn from_nibble(info: u64) -> X86Type {
        match info & 0x3 {
            0 => X86Type::Execute,
            1 => X86Type::Write,
            2 => X86Type::Io,
            _ => X86Type::ReadWrite,
        }
    }
}

/// A validated x86 breakpoint (Linux `struct arch_hw_breakpoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct X86Hw {
    /// Linear address for DRn.
    pub address: u64,
    /// AMD `BPEXT` address mask (`len - 1` for a range breakpoint), else 0.
    pub mask: u64,
    /// DR7 LEN.
    pub len: X86Len,
    /// DR7 R/W.
    pub ty: X86Type,
}

/// DR7, the debug control register.
///
/// Layout: Ln = bit 2n, Gn = bit 2n+1 (n = 0..3); LE = bit 8, GE = bit 9; per slot n a 4-bit
/// field at bit 16+4n: R/Wn in its low two bits, LENn in its high two bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Dr7(pub u64);

impl Dr7 {
    /// Whether slot `n` is enabled locally or globally (`(dr7 >> 2n) & 3 != 0`).
    pub const fn enabled(self, n: u32) -> bool {
        (self.0 >> (2 * n)) & 3 != 0
    }

    /// Whether any slot is globally enabled (`hw_breakpoint_active()`: `dr7 & 0xAA`).
    pub const fn any_global(self) -> bool {
        self.0 & 0xAA != 0
    }
}

impl fmt::Debug for Dr7 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dr7({:#x})", self.0)
    }
}

/// DR6, the debug status register, in *positive polarity*: every bit reads 1 when its
/// condition happened, including the active-low BLD (bit 11) and RTM (bit 16).
///
/// Raw hardware DR6 idles at [`DR6_RESERVED`]; positive = raw ^ `DR6_RESERVED`, as Linux's
/// `debug_read_clear_dr6()` computes it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Dr6(pub u64);

impl Dr6 {
    /// B0–B3, `DR_TRAP0..3`.
    pub const TRAP_BITS: u64 = 0xF;
    /// BLD, bus-lock detected (bit 11; active-low in hardware).
    pub const BUS_LOCK: u64 = 1 << 11;
    /// BD, debug-register access detected (bit 13).
    pub const BD: u64 = 1 << 13;
    /// BS, single step (bit 14, `DR_STEP`).
    pub const BS: u64 = 1 << 14;
    /// BT, task switch (bit 15, `DR_SWITCH`).
    pub const BT: u64 = 1 << 15;
    /// RTM, debug event inside a transaction (bit 16; active-low in hardware).
    pub const RTM: u64 = 1 << 16;

    /// From the raw hardware value.
    pub const fn from_raw(raw: u64) -> Dr6 {
        Dr6((raw ^ DR6_RESERVED) & 0xFFFF_FFFF)
    }

    /// The raw hardware value.
    pub const fn to_raw(self) -> u64 {
        self.0 ^ DR6_RESERVED
    }

    /// Whether slot `n`'s condition was met (Bn).
    pub const fn hit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }

    /// The B0–B3 bits.
    pub const fn trap_bits(self) -> u64 {
        self.0 & Self::TRAP_BITS
    }

    /// Single-step (BS).
    pub const fn single_step(self) -> bool {
        self.0 & Self::BS != 0
    }

    /// Debug-register access (BD).
    pub const fn register_access(self) -> bool {
        self.0 & Self::BD != 0
    }

    /// Task switch (BT).
    pub const fn task_switch(self) -> bool {
        self.0 & Self::BT != 0
    }

    /// Bus lock detected.
    pub const fn bus_lock(self) -> bool {
        self.0 & Self::BUS_LOCK != 0
    }

    /// Inside an RTM transaction.
    pub const fn rtm(self) -> bool {
        self.0 & Self::RTM != 0
    }
}

impl fmt::Debug for Dr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dr6({:#x})", self.0)
    }
}

/// One CPU's or thread's debug registers.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct X86Regs {
    /// DR0–DR3.
    pub dr: [u64; 4],
    /// DR7.
    pub dr7: Dr7,
    /// DR6, positive polarity.
    pub dr6: Dr6,
    /// AMD `BPEXT` address masks (MSRs `DR0_ADDRESS_MASK`..), 0 when unused.
    pub addr_mask: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dr6_golden_decodes() {
        // Idle DR6 is DR6_RESERVED: every condition reads 0 in positive polarity.
        assert_eq!(Dr6::from_raw(0xFFFF_0FF0), Dr6(0));
        // measured via PTRACE_PEEKUSER after a DR0 hit: 0xffff0ff1 -> B0.
        let d = Dr6::from_raw(0xFFFF_0FF1);
        assert!(d.hit(0) && !d.hit(1) && d.trap_bits() == 0x1);
        // measured after a DR1 hit: 0xffff0ff2 -> B1.
        assert_eq!(Dr6::from_raw(0xFFFF_0FF2).trap_bits(), 0x2);
        // BD is bit 13: 0xffff0ff0 | 0x2000 = 0xffff2ff0.
        assert!(Dr6::from_raw(0xFFFF_2FF0).register_access());
        // BS is bit 14: 0xffff4ff0; with B3 (bit 3): 0xffff4ff8.
        let d = Dr6::from_raw(0xFFFF_4FF8);
        assert!(d.single_step() && d.hit(3) && !d.task_switch());
        // BT is bit 15: 0xffff8ff0.
        assert!(Dr6::from_raw(0xFFFF_8FF0).task_switch());
        // RTM (bit 16) and BLD (bit 11) are active-low: cleared in hardware means "happened".
        // 0xffff0ff0 with bit 16 cleared = 0xfffe0ff0 -> RTM.
        let d = Dr6::from_raw(0xFFFE_0FF0);
        assert!(d.rtm() && !d.bus_lock());
        assert_eq!(d.0, Dr6::RTM);
        // 0xffff0ff0 with bit 11 cleared = 0xffff07f0 -> bus lock.
        let d = Dr6::from_raw(0xFFFF_07F0);
        assert!(d.bus_lock() && !d.rtm());
        assert_eq!(d.0, Dr6::BUS_LOCK);
        // And back: positive B0 + BS is raw 0xffff4ff1.
        assert_eq!(Dr6(Dr6::BS | 1).to_raw(), 0xFFFF_4FF1);
    }

    proptest! {
        #[test]
        fn dr6_raw_round_trips(raw in 0u64..=0xFFFF_FFFF) {
            prop_assert_eq!(Dr6::from_raw(raw).to_raw(), raw);
        }

        #[test]
        fn dr6_positive_round_trips(positive in 0u64..=0xFFFF_FFFF) {
            prop_assert_eq!(Dr6::from_raw(Dr6(positive).to_raw()), Dr6(positive));
        }
    }
}
