//! Our own `struct perf_event_attr` (uapi `include/uapi/linux/perf_event.h`), 128 bytes
//! (`PERF_ATTR_SIZE_VER7`), plus the constants breakpoint events use.
//!
//! The kernel accepts any size it knows (VER0..current) and zero-extends; 128 bytes covers every
//! field a breakpoint needs including `sig_data` (5.13). `config3` (VER8, 6.3) is not needed.
//!
//! Not for: opening events (see [`crate::sys`]) or choosing field values for a watch (see
//! [`crate::watch`]).

use hwbp_core::BpAttr;

/// `PERF_TYPE_BREAKPOINT`.
pub const PERF_TYPE_BREAKPOINT: u32 = 5;
/// `PERF_ATTR_SIZE_VER7`: the size of [`PerfEventAttr`].
pub const PERF_ATTR_SIZE_VER7: u32 = 128;

/// `PERF_SAMPLE_*` bits of `sample_type`.
pub mod sample {
    /// `PERF_SAMPLE_IP`.
    pub const IP: u64 = 1 << 0;
    /// `PERF_SAMPLE_TID`.
    pub const TID: u64 = 1 << 1;
    /// `PERF_SAMPLE_TIME`.
    pub const TIME: u64 = 1 << 2;
    /// `PERF_SAMPLE_ADDR` (for breakpoints: the configured `bp_addr`, not the accessed byte).
    pub const ADDR: u64 = 1 << 3;
    /// `PERF_SAMPLE_READ`.
    pub const READ: u64 = 1 << 4;
    /// `PERF_SAMPLE_CALLCHAIN`.
    pub const CALLCHAIN: u64 = 1 << 5;
    /// `PERF_SAMPLE_ID`.
    pub const ID: u64 = 1 << 6;
    /// `PERF_SAMPLE_CPU`.
    pub const CPU: u64 = 1 << 7;
    /// `PERF_SAMPLE_PERIOD`.
    pub const PERIOD: u64 = 1 << 8;
    /// `PERF_SAMPLE_STREAM_ID`.
    pub const STREAM_ID: u64 = 1 << 9;
    /// `PERF_SAMPLE_REGS_USER`.
    pub const REGS_USER: u64 = 1 << 12;
    /// `PERF_SAMPLE_STACK_USER`.
    pub const STACK_USER: u64 = 1 << 13;
    /// `PERF_SAMPLE_IDENTIFIER`.
    pub const IDENTIFIER: u64 = 1 << 16;
}

/// `PERF_FORMAT_*` bits of `read_format`.
pub mod read_format {
    /// `PERF_FORMAT_TOTAL_TIME_ENABLED`.
    pub const TOTAL_TIME_ENABLED: u64 = 1 << 0;
    /// `PERF_FORMAT_TOTAL_TIME_RUNNING`.
    pub const TOTAL_TIME_RUNNING: u64 = 1 << 1;
    /// `PERF_FORMAT_ID`.
    pub const ID: u64 = 1 << 2;
    /// `PERF_FORMAT_GROUP`.
    pub const GROUP: u64 = 1 << 3;
    /// `PERF_FORMAT_LOST` (6.0).
    pub const LOST: u64 = 1 << 4;
}

/// One flag of the bitfield word at offset 40, by its C declaration order.
///
/// C bitfields are allocated from the least significant bit on little-endian ABIs and from the
/// most significant bit on big-endian ones (ppc64 BE, s390x), so bit `n` of the declaration is
/// `1 << n` on LE and `1 << (63 - n)` on BE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Flag {
    /// `disabled`: off by default.
    Disabled = 0,
    /// `inherit`: children inherit the event.
    Inherit = 1,
    /// `pinned`: must always be on the PMU.
    Pinned = 2,
    /// `exclude_user`.
    ExcludeUser = 4,
    /// `exclude_kernel`: kernel-mode accesses are not counted.
    ExcludeKernel = 5,
    /// `exclude_hv`.
    ExcludeHv = 6,
    /// `mmap`.
    Mmap = 8,
    /// `comm`.
    Comm = 9,
    /// `freq`: `sample_freq` instead of `sample_period`.
    Freq = 10,
    /// `enable_on_exec`.
    EnableOnExec = 12,
    /// `task`: fork/exit records.
    Task = 13,
    /// `watermark`: `wakeup_watermark` (bytes) instead of `wakeup_events`.
    Watermark = 14,
    /// `sample_id_all`: the sample id trailer on non-sample records too.
    SampleIdAll = 18,
    /// `write_backward`.
    WriteBackward = 27,
    /// `inherit_thread` (5.13): inherit only into `CLONE_THREAD` children.
    InheritThread = 35,
    /// `remove_on_exec` (5.13).
    RemoveOnExec = 36,
    /// `sigtrap` (5.13): synchronous `SIGTRAP` on every event.
    Sigtrap = 37,
}

impl Flag {
    /// The mask of this flag in the native-endian flags word.
    pub const fn mask(self) -> u64 {
        let n = self as u32;
        if cfg!(target_endian = "big") {
            1 << (63 - n)
        } else {
            1 << n
        }
    }
}

/// `struct perf_event_attr`, `PERF_ATTR_SIZE_VER7`.
///
/// Layout (bytes): `type@0 size@4 config@8 sample_period@16 sample_type@24 read_format@32
/// flags@40 wakeup_events@48 bp_type@52 bp_addr@56 bp_len@64 branch_sample_type@72
/// sample_regs_user@80 sample_stack_user@88 clockid@92 sample_regs_intr@96 aux_watermark@104
/// sample_max_stack@108 aux_sample_size@112 aux_action@116 sig_data@120`. Unions are flattened
/// to the name breakpoints use (`bp_addr` = `config1`, `bp_len` = `config2`,
/// `sample_period` = `sample_freq`, `wakeup_events` = `wakeup_watermark`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct PerfEventAttr {
    /// `type`: [`PERF_TYPE_BREAKPOINT`].
    pub type_: u32,
    /// `size`: [`PERF_ATTR_SIZE_VER7`].
    pub size: u32,
    /// `config`: 0 for breakpoints.
    pub config: u64,
    /// `sample_period` (or `sample_freq` with [`Flag::Freq`]); 0 = counting only.
    pub sample_period: u64,
    /// `sample_type`: [`sample`] bits.
    pub sample_type: u64,
    /// `read_format`: [`read_format`] bits.
    pub read_format: u64,
    /// The bitfield word; use [`PerfEventAttr::set_flag`].
    pub flags: u64,
    /// `wakeup_events` (or `wakeup_watermark` with [`Flag::Watermark`]).
    pub wakeup_events: u32,
    /// `bp_type`: `HW_BREAKPOINT_R = 1`, `W = 2`, `X = 4`.
    pub bp_type: u32,
    /// `bp_addr` (`config1`).
    pub bp_addr: u64,
    /// `bp_len` (`config2`).
    pub bp_len: u64,
    /// `branch_sample_type`.
    pub branch_sample_type: u64,
    /// `sample_regs_user`: register mask for `PERF_SAMPLE_REGS_USER`.
    pub sample_regs_user: u64,
    /// `sample_stack_user`: bytes of user stack for `PERF_SAMPLE_STACK_USER`.
    pub sample_stack_user: u32,
    /// `clockid` (with `use_clockid`).
    pub clockid: i32,
    /// `sample_regs_intr`.
    pub sample_regs_intr: u64,
    /// `aux_watermark`.
    pub aux_watermark: u32,
    /// `sample_max_stack`.
    pub sample_max_stack: u16,
    /// `__reserved_2`.
    pub reserved_2: u16,
    /// `aux_sample_size`.
    pub aux_sample_size: u32,
    /// `aux_action` (formerly `__reserved_3`).
    pub aux_action: u32,
    /// `sig_data` (5.13): copied into `si_perf_data` of `sigtrap` signals.
    pub sig_data: u64,
}

const _: () = assert!(core::mem::size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER7 as usize);

impl PerfEventAttr {
    /// A breakpoint event for `bp`: counting only (`sample_period = 0`), `exclude_hv`, and
    /// `exclude_kernel`/`disabled` as `bp` says.
    pub fn breakpoint(bp: &BpAttr) -> PerfEventAttr {
        let mut attr = PerfEventAttr {
            type_: PERF_TYPE_BREAKPOINT,
            size: PERF_ATTR_SIZE_VER7,
            ..PerfEventAttr::default()
        };
        attr.set_flag(Flag::ExcludeHv, true);
        attr.set_bp(bp);
        attr
    }

    /// Sets the four fields `PERF_EVENT_IOC_MODIFY_ATTRIBUTES` may change (`bp_addr`,
    /// `bp_len`, `bp_type`, `disabled`) and `exclude_kernel` (which it may not).
    pub fn set_bp(&mut self, bp: &BpAttr) {
        self.bp_addr = bp.addr;
        self.bp_len = bp.len_bytes;
        self.bp_type = bp.bp_type;
        self.set_flag(Flag::ExcludeKernel, bp.exclude_kernel);
        self.set_flag(Flag::Disabled, bp.disabled);
    }

    /// The breakpoint fields back as a core [`BpAttr`].
    pub fn bp(&self) -> BpAttr {
        BpAttr {
            addr: self.bp_addr,
            len_bytes: self.bp_len,
            bp_type: self.bp_type,
            exclude_kernel: self.flag(Flag::ExcludeKernel),
            disabled: self.flag(Flag::Disabled),
        }
    }

    /// Sets or clears one flag bit.
    pub fn set_flag(&mut self, flag: Flag, on: bool) {
        if on {
            self.flags |= flag.mask();
        } else {
            self.flags &= !flag.mask();
        }
    }

    /// Whether a flag bit is set.
    pub fn flag(&self, flag: Flag) -> bool {
        self.flags & flag.mask() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_uapi_header() {
        // Numbers from ecosystem.md §3.2, checked there against the C header.
        assert_eq!(offset_of!(PerfEventAttr, sample_period), 16);
        assert_eq!(offset_of!(PerfEventAttr, sample_type), 24);
        assert_eq!(offset_of!(PerfEventAttr, read_format), 32);
        assert_eq!(offset_of!(PerfEventAttr, flags), 40);
        assert_eq!(offset_of!(PerfEventAttr, wakeup_events), 48);
        assert_eq!(offset_of!(PerfEventAttr, bp_type), 52);
        assert_eq!(offset_of!(PerfEventAttr, bp_addr), 56);
        assert_eq!(offset_of!(PerfEventAttr, bp_len), 64);
        assert_eq!(offset_of!(PerfEventAttr, branch_sample_type), 72);
        assert_eq!(offset_of!(PerfEventAttr, sample_regs_user), 80);
        assert_eq!(offset_of!(PerfEventAttr, sample_stack_user), 88);
        assert_eq!(offset_of!(PerfEventAttr, clockid), 92);
        assert_eq!(offset_of!(PerfEventAttr, sample_regs_intr), 96);
        assert_eq!(offset_of!(PerfEventAttr, aux_watermark), 104);
        assert_eq!(offset_of!(PerfEventAttr, sample_max_stack), 108);
        assert_eq!(offset_of!(PerfEventAttr, aux_sample_size), 112);
        assert_eq!(offset_of!(PerfEventAttr, sig_data), 120);
        assert_eq!(core::mem::size_of::<PerfEventAttr>(), 128);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn flag_bits_follow_declaration_order() {
        // disabled:1, inherit:1, pinned:1, exclusive:1, exclude_user:1, exclude_kernel:1 ...
        assert_eq!(Flag::Disabled.mask(), 0x1);
        assert_eq!(Flag::Inherit.mask(), 0x2);
        assert_eq!(Flag::ExcludeKernel.mask(), 0x20);
        assert_eq!(Flag::ExcludeHv.mask(), 0x40);
        assert_eq!(Flag::Watermark.mask(), 1 << 14);
        assert_eq!(Flag::SampleIdAll.mask(), 1 << 18);
        // ... bpf_event:1 (30), aux_output:1, cgroup:1, text_poke:1, build_id:1,
        // inherit_thread:1 (35), remove_on_exec:1, sigtrap:1 (37).
        assert_eq!(Flag::InheritThread.mask(), 1 << 35);
        assert_eq!(Flag::Sigtrap.mask(), 1 << 37);
    }

    #[test]
    fn breakpoint_attr_round_trips_bp_fields() {
        let bp = BpAttr::user(0x1000, 4, 3);
        let attr = PerfEventAttr::breakpoint(&bp);
        assert_eq!(attr.bp(), bp);
        assert_eq!(attr.type_, 5);
        assert!(attr.flag(Flag::ExcludeHv));
        assert!(attr.flag(Flag::ExcludeKernel));
        assert!(!attr.flag(Flag::Disabled));
    }
}
