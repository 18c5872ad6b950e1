//! The memory shared by the agent (in the watched program) and hwbp (the consumer): a header
//! page and a ring of fixed-size hit records. Compiled into both sides (`#[path]` include), so
//! both agree on it byte for byte; the version field catches a stale agent.
//!
//! ```text
//! offset 0     Header (one page): what to read at a hit, the lock and ring indices
//! offset 4096  Record[SLOTS]: one per hit, written under the lock at `head % slots`
//! offset BYTES  [u8; stack_bytes][STACK_SLOTS]: with stack copies only (`stack_bytes` > 0),
//!               the top of the accessing thread's stack, one per ring slot
//! ```
//!
//! `slots` (the ring's capacity, [`slots`]) is [`SLOTS`], or [`STACK_SLOTS`] when
//! [`Header::stack_bytes`] is set: 512 × 8 KiB of stacks rather than 4096 × 8 KiB. hwbp sets
//! `stack_bytes` when it creates the memory; the agent maps [`total_bytes`] of it.
//!
//! Protocol: hwbp creates the memory (a memfd) with `state = NEW` and `consumer_pid` set; the
//! agent maps it in its constructor, installs its SIGTRAP handler and stores `agent_pid` and
//! `state = LOADED`. hwbp fills `watches` and opens the perf events (a hit can only happen
//! after that). At each hit the handler takes `lock`, waits while the ring is full, writes the
//! record at `head`, then publishes it by storing `head + 1` (release). hwbp reads records
//! from `tail` (acquire on `head`), and stores `tail` when done with one; if a producer is
//! waiting for space it bumps `space` and wakes it (futex). `state = CLOSED` tells the handler
//! to record nothing more (hwbp let go).

use core::sync::atomic::{AtomicU32, AtomicU64};

/// "hwbpagt1".
pub const MAGIC: u64 = u64::from_le_bytes(*b"hwbpagt1");
/// Bumped whenever anything below changes.
pub const VERSION: u32 = 4;
/// Watches per session (x86 has four debug registers).
pub const MAX_WATCHES: usize = 4;
/// Largest watched region (four aligned 8-byte pieces).
pub const MAX_BYTES: usize = 32;
/// Records in the ring.
pub const SLOTS: usize = 4096;
/// General-purpose registers per record, in `struct user_regs_struct` order.
pub const REGS: usize = 27;
/// Index of `rip` in [`Record::regs`].
pub const RIP: usize = 16;
/// Index of `rsp` in [`Record::regs`].
pub const RSP: usize = 19;
/// Index of `rbp` in [`Record::regs`].
pub const RBP: usize = 4;
/// Records in the ring when stacks are copied ([`Header::stack_bytes`] > 0).
pub const STACK_SLOTS: usize = 512;
/// Largest [`Header::stack_bytes`].
pub const MAX_STACK: usize = 64 * 1024;
/// Executable ranges in [`Header::ranges`].
pub const MAX_RANGES: usize = 64;
/// Size of the header page.
pub const HEADER_BYTES: usize = 4096;
/// Size of the whole shared memory.
pub const BYTES: usize = HEADER_BYTES + SLOTS * core::mem::size_of::<Record>();

/// `sig_data` of hwbp's perf events: "hwbp" in the top 32 bits, then the watch index (bits
/// 8..16) and the piece (bits 0..8). The same tag as the ptrace tracer's.
pub const TAG: u64 = 0x6877_6270 << 32;

/// [`Header::state`]: created by hwbp, no agent yet.
pub const STATE_NEW: u32 = 0;
/// [`Header::state`]: the agent is loaded and its handler installed.
pub const STATE_LOADED: u32 = 1;
/// [`Header::state`]: hwbp let go; hits are no longer recorded.
pub const STATE_CLOSED: u32 = 2;

/// [`Header::flags`]: fill every register of a record (else only `rip`).
pub const FLAG_REGS: u32 = 1;
/// [`Header::flags`]: [`Header::ranges`] is filled; a hit from outside it is synchronous.
pub const FLAG_RANGES: u32 = 2;

/// [`Record::flags`]: the watched bytes could not be read (`len` is 0).
pub const REC_UNREADABLE: u32 = 1;
/// [`Record::flags`]: the accessing instruction is outside [`Header::ranges`] (code mapped
/// since hwbp last read the memory map, e.g. a library loaded later): the thread waits until
/// hwbp has handled this record, so that hwbp can read the map while the code is there.
pub const REC_SYNC: u32 = 2;
/// [`Record::flags`]: the handler could not read the bytes (its `process_vm_readv` refused by
/// a seccomp filter of the program, and plain loads would trap): the thread waits until hwbp
/// has read them from outside and handled the record.
pub const REC_HWBP_READS: u32 = 4;

/// One watched region.
#[repr(C)]
pub struct WatchSlot {
    /// First byte.
    pub addr: AtomicU64,
    /// Length in bytes (at most [`MAX_BYTES`]).
    pub len: AtomicU32,
    /// [`WATCH_WRITES_ONLY`].
    pub flags: AtomicU32,
}

/// [`WatchSlot::flags`]: the watch traps writes only, so the handler may read its bytes with
/// plain loads (no trap) where `process_vm_readv` is refused (a seccomp filter of the program).
pub const WATCH_WRITES_ONLY: u32 = 1;

/// The header page.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`STATE_NEW`], [`STATE_LOADED`] or [`STATE_CLOSED`].
    pub state: AtomicU32,
    /// The process hwbp started (the agent activates only in hwbp's direct child).
    pub consumer_pid: AtomicU32,
    /// Set by the agent: the process it runs in.
    pub agent_pid: AtomicU32,
    /// [`FLAG_REGS`].
    pub flags: AtomicU32,
    /// Watches in use.
    pub nwatch: AtomicU32,
    /// The watches, by the index in the events' tag.
    pub watches: [WatchSlot; MAX_WATCHES],
    /// Serializes the handlers of concurrent hits: 0 free, 1 taken, 2 taken with waiters.
    pub lock: AtomicU32,
    /// A producer waits for space (futex on `space`).
    pub producer_waiting: AtomicU32,
    /// Bumped by hwbp when it frees space while a producer waits.
    pub space: AtomicU32,
    /// Padding to keep the indices 8-byte aligned.
    pub _pad: AtomicU32,
    /// Records published (next slot to write).
    pub head: AtomicU64,
    /// Records consumed (next slot to read).
    pub tail: AtomicU64,
    /// Hits not recorded because hwbp was gone or had let go.
    pub dropped: AtomicU64,
    /// SIGTRAPs that were not hwbp's, passed on to the program's own disposition.
    pub foreign: AtomicU64,
    /// Ranges in use in `ranges`.
    pub nranges: AtomicU32,
    /// Bytes of stack copied per hit from the accessing thread's `rsp` up (0: none; at most
    /// [`MAX_STACK`]). Set by hwbp before the program starts; never changes.
    pub stack_bytes: AtomicU32,
    /// The executable mappings hwbp knew when it last read the memory map: `[start, end)`.
    /// hwbp rewrites them while handlers may read them; a torn read only makes one hit
    /// synchronous that need not be, or one hit from new code asynchronous.
    pub ranges: [[AtomicU64; 2]; MAX_RANGES],
}

/// One hit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    /// The thread that made the access.
    pub tid: u32,
    /// Watch index (from the tag).
    pub watch: u16,
    /// Piece index (from the tag).
    pub piece: u16,
    /// [`REC_UNREADABLE`].
    pub flags: u32,
    /// Bytes valid in `bytes`.
    pub len: u32,
    /// `CLOCK_MONOTONIC` at the hit, in nanoseconds.
    pub time_ns: u64,
    /// The thread's name at the hit (`PR_GET_NAME`, NUL-padded): the thread may be gone, or
    /// the process re-exec'd, by the time hwbp reads the record.
    pub comm: [u8; 16],
    /// The watched bytes, read in the handler right after the access.
    pub bytes: [u8; MAX_BYTES],
    /// The registers at the trap (`user_regs_struct` order); only `rip` unless [`FLAG_REGS`].
    pub regs: [u64; REGS],
    /// Bytes valid in this slot's stack copy (0 without stack copies, or if `rsp` was not
    /// readable); `rsp` and `rbp` are in `regs` whenever stacks are copied.
    pub stack_len: u32,
    /// Padding.
    pub _pad: u32,
}

/// The ring's capacity for `stack_bytes` ([`Header::stack_bytes`]).
pub const fn slots(stack_bytes: usize) -> usize {
    if stack_bytes == 0 {
        SLOTS
    } else {
        STACK_SLOTS
    }
}

/// Size of the whole shared memory for `stack_bytes` (records and stack copies).
pub const fn total_bytes(stack_bytes: usize) -> usize {
    if stack_bytes == 0 {
        BYTES
    } else {
        BYTES + STACK_SLOTS * stack_bytes
    }
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER_BYTES);
const _: () = assert!(core::mem::size_of::<Record>().is_multiple_of(8));
// The stack area starts on a page: the agent may map it separately.
const _: () = assert!(BYTES.is_multiple_of(4096));
