//! powerpc DAWR/DAWRX bit layouts (Power ISA v3.0B/v3.1 Book III §9.4 "Data Address Watchpoint";
//! Linux `arch/powerpc/include/asm/reg.h`, `arch/powerpc/include/asm/hw_breakpoint.h`).
//!
//! Bit numbers below are Linux's `__MASK(n)` = `1 << n` (least-significant bit 0); the ISA's
//! big-endian numbering is `63 - n`.

/// `HW_BRK_TYPE_READ`: trap loads (`hw_breakpoint.h`; the first six type bits follow DABR/DABRX).
pub const HW_BRK_TYPE_READ: u16 = 0x01;
/// `HW_BRK_TYPE_WRITE`: trap stores.
pub const HW_BRK_TYPE_WRITE: u16 = 0x02;
/// `HW_BRK_TYPE_TRANSLATE`: match translated (data relocation on) accesses; always set.
pub const HW_BRK_TYPE_TRANSLATE: u16 = 0x04;
/// `HW_BRK_TYPE_USER`: match in problem state (`!exclude_user`).
pub const HW_BRK_TYPE_USER: u16 = 0x08;
/// `HW_BRK_TYPE_KERNEL`: match in privileged state (`!exclude_kernel`).
pub const HW_BRK_TYPE_KERNEL: u16 = 0x10;
/// `HW_BRK_TYPE_HYP`: match in hypervisor state (`!exclude_hv`).
pub const HW_BRK_TYPE_HYP: u16 = 0x20;
/// `HW_BRK_TYPE_PRIV_ALL`: the three privilege bits.
pub const HW_BRK_TYPE_PRIV_ALL: u16 = HW_BRK_TYPE_USER | HW_BRK_TYPE_KERNEL | HW_BRK_TYPE_HYP;

/// `HW_BREAKPOINT_SIZE`: the DAWR granule, one doubleword (Book3S; 4 on 8xx).
pub const HW_BREAKPOINT_SIZE: u64 = 8;
/// `DAWR_MAX_LEN`: 64 doublewords.
pub const DAWR_MAX_LEN: u64 = 512;
/// `SZ_512`: before POWER10 (`!CPU_FTR_ARCH_31`) a DAWR window may not cross a multiple of it.
pub const DAWR_BOUNDARY: u64 = 512;
/// Book3S-64 `PAGE_OFFSET`: `is_kernel_addr(x)` is `x >= PAGE_OFFSET`.
pub const PAGE_OFFSET: u64 = 0xc000_0000_0000_0000;

/// `DAWRX_USER` = `__MASK(0)` (ISA bit 63, PRIVM problem state).
pub const DAWRX_USER: u64 = 1 << 0;
/// `DAWRX_KERNEL` = `__MASK(1)` (ISA bit 62, PRIVM privileged non-hypervisor).
pub const DAWRX_KERNEL: u64 = 1 << 1;
/// `DAWRX_HYP` = `__MASK(2)` (ISA bit 61, PRIVM hypervisor).
pub const DAWRX_HYP: u64 = 1 << 2;
/// `DAWRX_WTI` = `__MASK(3)` (ISA bit 60, match translation ignored). Never set by `set_dawr()`.
pub const DAWRX_WTI: u64 = 1 << 3;
/// `DAWRX_WT` = `__MASK(4)` (ISA bit 59, match translation: MSR.DR must equal it).
pub const DAWRX_WT: u64 = 1 << 4;
/// `DAWRX_DR` = `__MASK(5)` (ISA bit 58, match data reads).
pub const DAWRX_DR: u64 = 1 << 5;
/// `DAWRX_DW` = `__MASK(6)` (ISA bit 57, match data writes).
pub const DAWRX_DW: u64 = 1 << 6;
/// MRD ("match range in doublewords") shift: ISA bits 48:53 = bits 10..=15 here.
pub const DAWRX_MRD_SHIFT: u32 = 10;
/// MRD field width mask (6 bits: 1..=64 doublewords, biased by -1).
pub const DAWRX_MRD_MASK: u64 = 0x3f;

/// A DAWRX value as its fields.
///
/// Layout (`__MASK` numbering): USER bit 0, KERNEL bit 1, HYP bit 2, WTI bit 3, WT bit 4,
/// DR bit 5, DW bit 6, MRD bits 10..=15 (window = `(MRD + 1) * 8` bytes from the DAWR's
/// doubleword). Bits Linux never writes (HRAMMC and the reserved bits) are not represented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Dawrx {
    /// Match range in doublewords minus one (0..=63).
    pub mrd: u8,
    /// DW: match stores.
    pub dw: bool,
    /// DR: match loads.
    pub dr: bool,
    /// WT: translation must be on.
    pub wt: bool,
    /// WTI: ignore translation.
    pub wti: bool,
    /// PRIVM hypervisor.
    pub hyp: bool,
    /// PRIVM privileged (kernel).
    pub kernel: bool,
    /// PRIVM problem state (user).
    pub user: bool,
}

impl Dawrx {
    /// The register value.
    pub const fn encode(self) -> u64 {
        (((self.mrd as u64) & DAWRX_MRD_MASK) << DAWRX_MRD_SHIFT)
            | if self.dw { DAWRX_DW } else { 0 }
            | if self.dr { DAWRX_DR } else { 0 }
            | if self.wt { DAWRX_WT } else { 0 }
            | if self.wti { DAWRX_WTI } else { 0 }
            | if self.hyp { DAWRX_HYP } else { 0 }
            | if self.kernel { DAWRX_KERNEL } else { 0 }
            | if self.user { DAWRX_USER } else { 0 }
    }

    /// The fields of a register value (other bits ignored).
    pub const fn decode(v: u64) -> Dawrx {
        Dawrx {
            mrd: ((v >> DAWRX_MRD_SHIFT) & DAWRX_MRD_MASK) as u8,
            dw: v & DAWRX_DW != 0,
            dr: v & DAWRX_DR != 0,
            wt: v & DAWRX_WT != 0,
            wti: v & DAWRX_WTI != 0,
            hyp: v & DAWRX_HYP != 0,
            kernel: v & DAWRX_KERNEL != 0,
            user: v & DAWRX_USER != 0,
        }
    }

    /// Bytes the hardware watches: `(MRD + 1) * 8`.
    pub const fn window_len_bytes(self) -> u64 {
        ((self.mrd as u64 & DAWRX_MRD_MASK) + 1) * HW_BREAKPOINT_SIZE
    }
}

/// A validated powerpc watchpoint (Linux `struct arch_hw_breakpoint`, without the run-time
/// `flags`/`perf_single_step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PowerHw {
    /// `bp_addr`, unaligned; also the DAWR value (the hardware ignores its low 3 bits).
    pub address: u64,
    /// `HW_BRK_TYPE_*` bits.
    pub ty: u16,
    /// `bp_len` as Linux stores it: a `u16`, so lengths above 65535 wrap.
    pub len: u16,
    /// The hardware window length in bytes, `ALIGN(addr + len, 8) - ALIGN_DOWN(addr, 8)`
    /// (also a `u16`).
    pub hw_len: u16,
}

/// One CPU's or thread's DAWRs: `DAWR0/DAWRX0` and, on POWER10, `DAWR1/DAWRX1`
/// (`HBP_NUM_MAX = 2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PowerRegs {
    /// `SPRN_DAWR0`, `SPRN_DAWR1`.
    pub dawr: [u64; 2],
    /// `SPRN_DAWRX0`, `SPRN_DAWRX1`.
    pub dawrx: [u64; 2],
}
