//! The constructor, the SIGTRAP handler and the interposers of `sigaction`, the `signal`
//! family, `sigprocmask` and `pthread_sigmask` (x86-64 Linux, glibc ABI). Every `unsafe` of
//! the agent is here.

use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

use crate::layout::{
    slots, total_bytes, Header, Record, WatchSlot, BYTES, FLAG_RANGES, FLAG_REGS, HEADER_BYTES,
    MAGIC, MAX_BYTES, MAX_RANGES, MAX_STACK, MAX_WATCHES, RBP, REC_HWBP_READS, REC_SYNC,
    REC_UNREADABLE, REGS, RIP, RSP, STATE_CLOSED, STATE_LOADED, STATE_NEW, TAG, VERSION,
    WATCH_WRITES_ONLY,
};

const SIGTRAP: c_int = 5;
const SIGCHLD: c_int = 17;
const TRAP_PERF: i32 = 6;
const SA_SIGINFO: c_int = 4;
const SA_RESTART: c_int = 0x1000_0000;
const SA_RESETHAND: c_int = 0x8000_0000_u32 as c_int;
const SA_NODEFER: c_int = 0x4000_0000;
const SIG_BLOCK: c_int = 0;
const SIG_UNBLOCK: c_int = 1;
const SIG_SETMASK: c_int = 2;
/// Offset of `uc_sigmask` in the kernel's x86-64 `ucontext` (after `uc_flags`, `uc_link`, the
/// 24-byte `uc_stack` and the 256-byte `uc_mcontext`): the mask of the interrupted code.
const UC_SIGMASK: usize = 296;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const SIG_HOLD: usize = 2;
const SIG_ERR: usize = usize::MAX;
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const PROT_READ_WRITE: c_int = 3;
const MAP_SHARED: c_int = 1;
const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

const EFAULT: c_int = 14;
/// The smallest page size (x86-64).
const PAGE: u64 = 4096;
const SYS_RT_SIGPROCMASK: c_long = 14;
const SYS_KILL: c_long = 62;
const SYS_PRCTL: c_long = 157;
const SYS_ARCH_PRCTL: c_long = 158;
const PR_GET_NAME: c_int = 16;
const SYS_GETTID: c_long = 186;
const SYS_FUTEX: c_long = 202;
const SYS_TGKILL: c_long = 234;
const SYS_PROCESS_VM_READV: c_long = 310;
const CLOCK_MONOTONIC: c_int = 1;
const FUTEX_WAIT: c_int = 0;
const FUTEX_WAKE: c_int = 1;
const ARCH_GET_FS: c_int = 0x1003;
const ARCH_GET_GS: c_int = 0x1004;

#[link(name = "c")]
extern "C" {
    fn getenv(name: *const c_char) -> *mut c_char;
    fn setenv(name: *const c_char, value: *const c_char, overwrite: c_int) -> c_int;
    fn unsetenv(name: *const c_char) -> c_int;
    fn syscall(n: c_long, ...) -> c_long;
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: i64,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    fn getpid() -> c_int;
    fn getppid() -> c_int;
    fn strlen(s: *const c_char) -> usize;
    fn clock_gettime(clock: c_int, ts: *mut [i64; 2]) -> c_int;
    fn __errno_location() -> *mut c_int;
}

/// glibc's `struct sigaction` on x86-64 (152 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: c_int,
    restorer: usize,
}

const EMPTY_ACTION: SigAction = SigAction {
    handler: SIG_DFL,
    mask: [0; 16],
    flags: 0,
    restorer: 0,
};

type SigactionFn = unsafe extern "C" fn(c_int, *const SigAction, *mut SigAction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, usize) -> usize;
type MaskFn = unsafe extern "C" fn(c_int, *const [u64; 16], *mut [u64; 16]) -> c_int;
type InfoHandler = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void);
type PlainHandler = unsafe extern "C" fn(c_int);

/// The shared memory, once the agent is active.
static HEADER: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());
/// Our handler is installed: SIGTRAP dispositions are the program's view from now on.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGPROCMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_SIGMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_BSD_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_SYSV_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_SYSV_SIGNAL_GNU: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGSET: AtomicUsize = AtomicUsize::new(0);
/// The program's own SIGTRAP disposition (what it would have without the agent).
static USER_HANDLER: AtomicUsize = AtomicUsize::new(SIG_DFL);
static USER_FLAGS: AtomicUsize = AtomicUsize::new(0);
static USER_MASK: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

#[used]
#[link_section = ".init_array"]
static INIT: unsafe extern "C" fn() = init;

/// Resolves the next definition of `name` (libc's), once.
unsafe fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut f = cache.load(Relaxed);
    if f == 0 {
        f = dlsym(RTLD_NEXT, name.as_ptr()) as usize;
        cache.store(f, Relaxed);
    }
    f
}

unsafe fn real_sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int {
    match next_symbol(&REAL_SIGACTION, c"sigaction") {
        0 => -1,
        // SAFETY: dlsym returned libc's `sigaction`, whose type this is.
        f => core::mem::transmute::<usize, SigactionFn>(f)(sig, act, old),
    }
}

/// The constructor: activates the agent when hwbp started this process.
unsafe extern "C" fn init() {
    let value = getenv(c"HWBP_AGENT".as_ptr());
    if value.is_null() {
        return;
    }
    let fds = crate::parse_fds(core::slice::from_raw_parts(
        value.cast::<u8>(),
        strlen(value),
    ));
    // Whatever happens next, programs started from here must not load the agent.
    let preload = getenv(c"HWBP_AGENT_PRELOAD".as_ptr());
    if preload.is_null() {
        unsetenv(c"LD_PRELOAD".as_ptr());
    } else {
        setenv(c"LD_PRELOAD".as_ptr(), preload, 1);
        unsetenv(c"HWBP_AGENT_PRELOAD".as_ptr());
    }
    unsetenv(c"HWBP_AGENT".as_ptr());
    let Some((region_fd, library_fd)) = fds else {
        return;
    };
    close(library_fd);
    let p = mmap(
        ptr::null_mut(),
        BYTES,
        PROT_READ_WRITE,
        MAP_SHARED,
        region_fd,
        0,
    );
    if p == MAP_FAILED {
        close(region_fd);
        return;
    }
    let h = &*p.cast::<Header>();
    // Only hwbp's own child takes the session (not a process that inherited the variables).
    let stack = h.stack_bytes.load(Acquire) as usize;
    let ours = h.magic.load(Acquire) == MAGIC
        && h.version.load(Acquire) == VERSION
        && h.consumer_pid.load(Acquire) == getppid() as u32
        && h.state.load(Acquire) == STATE_NEW
        && stack <= MAX_STACK
        && stack.is_multiple_of(8);
    if !ours {
        munmap(p, BYTES);
        close(region_fd);
        return;
    }
    // With stack copies the memory is larger: map all of it (the header is at its start).
    let size = total_bytes(stack);
    let p = if size == BYTES {
        p
    } else {
        let whole = mmap(
            ptr::null_mut(),
            size,
            PROT_READ_WRITE,
            MAP_SHARED,
            region_fd,
            0,
        );
        munmap(p, BYTES);
        whole
    };
    close(region_fd);
    if p == MAP_FAILED {
        return;
    }
    let h = &*p.cast::<Header>();
    let act = SigAction {
        handler: on_sigtrap as InfoHandler as usize,
        mask: [0; 16],
        flags: SA_SIGINFO | SA_RESTART,
        restorer: 0,
    };
    let mut old = EMPTY_ACTION;
    if real_sigaction(SIGTRAP, &act, &mut old) != 0 {
        munmap(p, size);
        return;
    }
    set_user(&old);
    // Resolved now, not at first use: the program may call them from a signal handler, where
    // dlsym is not safe.
    next_symbol(&REAL_SIGNAL, c"signal");
    next_symbol(&REAL_SIGPROCMASK, c"sigprocmask");
    next_symbol(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask");
    next_symbol(&REAL_BSD_SIGNAL, c"bsd_signal");
    next_symbol(&REAL_SYSV_SIGNAL, c"__sysv_signal");
    next_symbol(&REAL_SYSV_SIGNAL_GNU, c"sysv_signal");
    next_symbol(&REAL_SIGSET, c"sigset");
    HEADER.store(p.cast(), Release);
    ACTIVE.store(true, Release);
    h.agent_pid.store(getpid() as u32, Release);
    h.state.store(STATE_LOADED, Release);
}

fn set_user(act: &SigAction) {
    for (slot, word) in USER_MASK.iter().zip(act.mask) {
        slot.store(word, Relaxed);
    }
    USER_FLAGS.store(act.flags as u32 as usize, Relaxed);
    USER_HANDLER.store(act.handler, Release);
}

fn user_action() -> SigAction {
    let mut act = EMPTY_ACTION;
    act.handler = USER_HANDLER.load(Acquire);
    act.flags = USER_FLAGS.load(Relaxed) as c_int;
    for (word, slot) in act.mask.iter_mut().zip(&USER_MASK) {
        *word = slot.load(Relaxed);
    }
    act
}

/// The SIGTRAP handler.
unsafe extern "C" fn on_sigtrap(sig: c_int, info: *mut c_void, uc: *mut c_void) {
    // siginfo_t: si_code at 8; for TRAP_PERF, si_perf_data at 24.
    let code = ptr::read(info.cast::<u8>().add(8).cast::<i32>());
    if code == TRAP_PERF {
        let data = ptr::read(info.cast::<u8>().add(24).cast::<u64>());
        if data & !0xffff_ffff == TAG {
            record_hit(data, uc);
            return;
        }
    }
    pass_on(sig, info, uc);
}

/// A SIGTRAP that is not hwbp's: what the program's own disposition would have done.
unsafe fn pass_on(sig: c_int, info: *mut c_void, uc: *mut c_void) {
    if let Some(h) = HEADER.load(Acquire).as_ref() {
        h.foreign.fetch_add(1, Relaxed);
    }
    let flags = USER_FLAGS.load(Relaxed) as c_int;
    let mut handler = USER_HANDLER.load(Acquire);
    // The kernel forces its own traps (int3, single-step: si_code > 0, but not perf's, which
    // is sent like kill): ignoring SIGTRAP does not ignore them, the default action is taken.
    let code = ptr::read(info.cast::<u8>().add(8).cast::<i32>());
    if handler == SIG_IGN && code > 0 && code != TRAP_PERF {
        handler = SIG_DFL;
    }
    match handler {
        SIG_IGN => {}
        SIG_DFL => {
            // Restore the default and re-raise: it is delivered (and acts: core dump) as soon
            // as this handler returns, exactly as without the agent.
            let mut act = EMPTY_ACTION;
            act.handler = SIG_DFL;
            real_sigaction(SIGTRAP, &act, ptr::null_mut());
            syscall(SYS_TGKILL, getpid(), syscall(SYS_GETTID), SIGTRAP);
        }
        f => {
            if flags & SA_RESETHAND != 0 {
                USER_HANDLER.store(SIG_DFL, Release);
            }
            // The mask the kernel gives the program's handler: the interrupted code's, the
            // handler's sa_mask, and SIGTRAP unless SA_NODEFER (ours only blocks SIGTRAP).
            let mut mask = ptr::read(uc.cast::<u8>().add(UC_SIGMASK).cast::<u64>())
                | USER_MASK[0].load(Relaxed);
            if flags & SA_NODEFER == 0 {
                mask |= 1 << (SIGTRAP - 1);
            }
            let mut ours = 0u64;
            syscall(
                SYS_RT_SIGPROCMASK,
                SIG_SETMASK,
                &mask as *const u64,
                &mut ours as *mut u64,
                8usize,
            );
            if flags & SA_SIGINFO != 0 {
                // SAFETY: the program installed this as an SA_SIGINFO handler.
                core::mem::transmute::<usize, InfoHandler>(f)(sig, info, uc);
            } else {
                // SAFETY: the program installed this as a plain handler.
                core::mem::transmute::<usize, PlainHandler>(f)(sig);
            }
            syscall(
                SYS_RT_SIGPROCMASK,
                SIG_SETMASK,
                &ours as *const u64,
                ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

unsafe fn futex(word: *const u32, op: c_int, val: u32, timeout_ns: u64) -> c_long {
    let ts = [
        (timeout_ns / 1_000_000_000) as i64,
        (timeout_ns % 1_000_000_000) as i64,
    ];
    let ts_ptr = if timeout_ns == 0 {
        ptr::null()
    } else {
        ts.as_ptr()
    };
    syscall(SYS_FUTEX, word, op, val, ts_ptr, 0usize, 0u32)
}

/// The ring's lock (Drepper's three-state futex mutex). The memory is shared with hwbp: no
/// `FUTEX_PRIVATE_FLAG`.
unsafe fn lock(h: &Header) {
    if h.lock.compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
        return;
    }
    while h.lock.swap(2, Acquire) != 0 {
        futex(h.lock.as_ptr(), FUTEX_WAIT, 2, 0);
    }
}

unsafe fn unlock(h: &Header) {
    if h.lock.swap(0, Release) == 2 {
        futex(h.lock.as_ptr(), FUTEX_WAKE, 1, 0);
    }
}

/// Waits until `done()` holds (hwbp consumed something). False if hwbp let go or is gone
/// (this process was re-parented).
unsafe fn wait_for(h: &Header, done: impl Fn() -> bool) -> bool {
    let mut kicked = false;
    loop {
        let event = h.space.load(SeqCst);
        if done() {
            return true;
        }
        if h.state.load(Acquire) != STATE_LOADED {
            return false;
        }
        let consumer = h.consumer_pid.load(Relaxed);
        if getppid() as u32 != consumer {
            h.state.store(STATE_CLOSED, Release);
            return false;
        }
        h.producer_waiting.store(1, SeqCst);
        if done() {
            return true;
        }
        if !kicked {
            // hwbp sleeps in sigtimedwait between polls: SIGCHLD ends that sleep.
            syscall(SYS_KILL, consumer as c_int, SIGCHLD);
            kicked = true;
        }
        futex(h.space.as_ptr(), FUTEX_WAIT, event, 10_000_000);
    }
}

/// Whether `ip` lies in code hwbp knows (always, unless hwbp published its ranges).
fn known_code(h: &Header, ip: u64) -> bool {
    if h.flags.load(Relaxed) & FLAG_RANGES == 0 {
        return true;
    }
    let n = (h.nranges.load(Acquire) as usize).min(MAX_RANGES);
    h.ranges[..n]
        .iter()
        .any(|[start, end]| (start.load(Relaxed)..end.load(Relaxed)).contains(&ip))
}

/// Records one hit of watch `(data >> 8) & 0xff`.
unsafe fn record_hit(data: u64, uc: *mut c_void) {
    let Some(h) = HEADER.load(Acquire).as_ref() else {
        return;
    };
    let watch = ((data >> 8) & 0xff) as usize;
    if h.state.load(Acquire) != STATE_LOADED
        || watch >= MAX_WATCHES
        || watch >= h.nwatch.load(Acquire) as usize
    {
        h.dropped.fetch_add(1, Relaxed);
        return;
    }
    let tid = syscall(SYS_GETTID) as u32;
    let mut ts = [0i64; 2];
    clock_gettime(CLOCK_MONOTONIC, &mut ts);
    let stack = (h.stack_bytes.load(Relaxed) as usize).min(MAX_STACK);
    let slots = slots(stack);
    lock(h);
    let free = || h.head.load(Relaxed).wrapping_sub(h.tail.load(SeqCst)) < slots as u64;
    if !wait_for(h, free) {
        unlock(h);
        h.dropped.fetch_add(1, Relaxed);
        return;
    }
    let head = h.head.load(Relaxed);
    let slot = (head % slots as u64) as usize;
    let rec = h_records(h).add(slot);
    let w = &h.watches[watch];
    let addr = w.addr.load(Relaxed);
    let len = (w.len.load(Relaxed) as usize).min(MAX_BYTES);
    let mut out = Record {
        tid,
        watch: watch as u16,
        piece: (data & 0xff) as u16,
        flags: 0,
        len: len as u32,
        time_ns: (ts[0] as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts[1] as u64),
        comm: [0; 16],
        bytes: [0; MAX_BYTES],
        regs: [0; REGS],
        stack_len: 0,
        _pad: 0,
    };
    syscall(SYS_PRCTL, PR_GET_NAME, out.comm.as_mut_ptr());
    // process_vm_readv on ourselves: a read through the kernel's mapping of the page, so a
    // read/write watch does not trap on it, and an unmapped byte is EFAULT, not SIGSEGV.
    let local = [out.bytes.as_mut_ptr() as usize, len];
    let remote = [addr as usize, len];
    let n = syscall(
        SYS_PROCESS_VM_READV,
        getpid(),
        local.as_ptr(),
        1usize,
        remote.as_ptr(),
        1usize,
        0usize,
    );
    if n != len as c_long {
        let refused = n < 0 && *__errno_location() != EFAULT;
        if refused && plain_read_is_safe(w, addr, len) {
            // Refused (a seccomp filter of the program): plain loads, which a write-only
            // watch does not trap on, from the page the access just wrote to.
            for (i, byte) in out.bytes[..len].iter_mut().enumerate() {
                *byte = ptr::read_volatile((addr as usize + i) as *const u8);
            }
        } else {
            out.flags |= REC_UNREADABLE;
            out.len = 0;
            if refused {
                out.flags |= REC_HWBP_READS;
            }
        }
    }
    fill_regs(
        &mut out.regs,
        uc,
        h.flags.load(Relaxed) & FLAG_REGS != 0,
        stack > 0,
    );
    if stack > 0 {
        let copy = h_stacks(h).add(slot * stack);
        out.stack_len = copy_stack(out.regs[RSP], copy, stack) as u32;
    }
    let sync = !known_code(h, out.regs[RIP]);
    if sync {
        out.flags |= REC_SYNC;
    }
    ptr::write_volatile(rec, out);
    h.head.store(head.wrapping_add(1), Release);
    unlock(h);
    if sync || out.flags & REC_HWBP_READS != 0 {
        // Held here until hwbp has handled the record (and read the new memory map, or the
        // watched bytes).
        wait_for(h, || h.tail.load(SeqCst) > head);
    }
}

/// Whether the handler may read watch `w`'s bytes with plain loads: the watch traps writes
/// only (a load does not trap) and the bytes lie in one page, which the hit's access just
/// wrote to (so it is mapped).
fn plain_read_is_safe(w: &WatchSlot, addr: u64, len: usize) -> bool {
    w.flags.load(Relaxed) & WATCH_WRITES_ONLY != 0 && (addr % PAGE) as usize + len <= PAGE as usize
}

unsafe fn h_records(h: &Header) -> *mut Record {
    (h as *const Header as *mut u8).add(HEADER_BYTES).cast()
}

/// The first stack copy (`stack` bytes per slot, after the records).
unsafe fn h_stacks(h: &Header) -> *mut u8 {
    (h as *const Header as *mut u8).add(BYTES)
}

/// Pages a stack copy may span ([`MAX_STACK`] from an unaligned `rsp`).
const STACK_PAGES: usize = MAX_STACK / PAGE as usize + 1;

/// Copies up to `len` bytes of this thread's stack from `sp` up into `to`; returns how many:
/// the readable part (the copy ends where the mapping does). `process_vm_readv` on ourselves,
/// one remote piece per page: a transfer stops at the first piece it cannot read, so what
/// precedes it is copied. Async-signal-safe (one system call).
unsafe fn copy_stack(sp: u64, to: *mut u8, len: usize) -> usize {
    let mut remote = [[0usize; 2]; STACK_PAGES];
    let mut n = 0;
    let mut addr = sp as usize;
    let end = match addr.checked_add(len) {
        Some(e) => e,
        None => return 0,
    };
    while addr < end && n < STACK_PAGES {
        let page_end = (addr | (PAGE as usize - 1)).saturating_add(1).min(end);
        remote[n] = [addr, page_end - addr];
        n += 1;
        addr = page_end;
    }
    let local = [to as usize, len];
    let r = syscall(
        SYS_PROCESS_VM_READV,
        getpid(),
        local.as_ptr(),
        1usize,
        remote.as_ptr(),
        n,
        0usize,
    );
    if r < 0 {
        0
    } else {
        r as usize
    }
}

/// The registers from the signal frame, in `user_regs_struct` order (what `PTRACE_GETREGS`
/// returns at the same stop). `uc_mcontext` starts at byte 40 of the kernel's `ucontext`:
/// r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags, cs|gs|fs|ss. Only `rip`
/// unless `all`, and `rsp`, `rbp` with `stack` (what unwinding needs).
unsafe fn fill_regs(regs: &mut [u64; REGS], uc: *mut c_void, all: bool, stack: bool) {
    let g = uc.cast::<u8>().add(40).cast::<u64>();
    let r = |i: usize| ptr::read(g.add(i));
    regs[RIP] = r(16);
    if stack {
        regs[RSP] = r(15);
        regs[RBP] = r(10);
    }
    if !all {
        return;
    }
    let segments = r(18);
    let (mut fs_base, mut gs_base) = (0u64, 0u64);
    syscall(SYS_ARCH_PRCTL, ARCH_GET_FS, &mut fs_base as *mut u64);
    syscall(SYS_ARCH_PRCTL, ARCH_GET_GS, &mut gs_base as *mut u64);
    let (ds, es, fs, gs, ss): (u16, u16, u16, u16, u16);
    core::arch::asm!(
        "mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs", "mov {4:x}, ss",
        out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, out(reg) ss,
        options(nomem, nostack, preserves_flags)
    );
    *regs = [
        r(7),              // r15
        r(6),              // r14
        r(5),              // r13
        r(4),              // r12
        r(10),             // rbp
        r(11),             // rbx
        r(3),              // r11
        r(2),              // r10
        r(1),              // r9
        r(0),              // r8
        r(13),             // rax
        r(14),             // rcx
        r(12),             // rdx
        r(9),              // rsi
        r(8),              // rdi
        u64::MAX,          // orig_rax: -1, a trap is not a system call
        r(16),             // rip
        segments & 0xffff, // cs
        r(17),             // eflags
        r(15),             // rsp
        u64::from(ss),
        fs_base,
        gs_base,
        u64::from(ds),
        u64::from(es),
        u64::from(fs),
        u64::from(gs),
    ];
}

/// `sigaction(2)`, interposed: while the agent is active, SIGTRAP's disposition is recorded
/// (and reported back) as the program's own, and the agent calls it for every SIGTRAP that is
/// not a hit. Other signals go to libc.
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const SigAction,
    old: *mut SigAction,
) -> c_int {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        if !old.is_null() {
            *old = user_action();
        }
        if let Some(act) = act.as_ref() {
            set_user(act);
        }
        return 0;
    }
    real_sigaction(sig, act, old)
}

/// Sets the program's SIGTRAP handler as a `signal`-like call does; returns the previous one.
fn set_user_handler(handler: usize, flags: c_int) -> usize {
    let previous = USER_HANDLER.load(Acquire);
    let mut act = EMPTY_ACTION;
    act.handler = handler;
    act.flags = flags;
    set_user(&act);
    previous
}

/// Calls libc's `signal`-like function `name` (resolved once into `cache`).
unsafe fn next_signal_fn(cache: &AtomicUsize, name: &CStr, sig: c_int, handler: usize) -> usize {
    match next_symbol(cache, name) {
        0 => SIG_ERR,
        // SAFETY: dlsym returned libc's `name`, a `signal`-like function of this type.
        f => core::mem::transmute::<usize, SignalFn>(f)(sig, handler),
    }
}

/// `signal(3)`, interposed like [`sigaction`] (glibc's `signal` has BSD semantics:
/// `SA_RESTART`, nothing blocked but the signal itself).
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: usize) -> usize {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        return set_user_handler(handler, SA_RESTART);
    }
    next_signal_fn(&REAL_SIGNAL, c"signal", sig, handler)
}

/// `bsd_signal(3)`: glibc's `signal` under another name, interposed like it.
#[no_mangle]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: usize) -> usize {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        return set_user_handler(handler, SA_RESTART);
    }
    next_signal_fn(&REAL_BSD_SIGNAL, c"bsd_signal", sig, handler)
}

/// `__sysv_signal`: what `signal` calls in strict ISO C builds (`-std=c11`, glibc's
/// `__REDIRECT`); System V semantics, the handler is reset on entry and not deferred.
#[no_mangle]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: usize) -> usize {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        return set_user_handler(handler, SA_RESETHAND | SA_NODEFER);
    }
    next_signal_fn(&REAL_SYSV_SIGNAL, c"__sysv_signal", sig, handler)
}

/// `sysv_signal(3)`: [`__sysv_signal`] under its GNU name.
#[no_mangle]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: usize) -> usize {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        return set_user_handler(handler, SA_RESETHAND | SA_NODEFER);
    }
    next_signal_fn(&REAL_SYSV_SIGNAL_GNU, c"sysv_signal", sig, handler)
}

/// `sigset(3)` (System V): sets the handler and unblocks the signal, or with `SIG_HOLD` blocks
/// it; returns `SIG_HOLD` if it was blocked, else the previous handler (glibc's rules).
#[no_mangle]
pub unsafe extern "C" fn sigset(sig: c_int, disp: usize) -> usize {
    if sig == SIGTRAP && ACTIVE.load(Acquire) {
        let bit: u64 = 1 << (SIGTRAP - 1);
        let (how, previous) = if disp == SIG_HOLD {
            (SIG_BLOCK, USER_HANDLER.load(Acquire))
        } else {
            (SIG_UNBLOCK, set_user_handler(disp, 0))
        };
        let mut old = 0u64;
        syscall(
            SYS_RT_SIGPROCMASK,
            how,
            &bit as *const u64,
            &mut old as *mut u64,
            8usize,
        );
        return if old & bit != 0 { SIG_HOLD } else { previous };
    }
    next_signal_fn(&REAL_SIGSET, c"sigset", sig, disp)
}

/// A mask change with SIGTRAP taken out of what would be blocked: a hit in a thread that
/// blocks every signal (a common worker-thread idiom) must still be taken at the access, not
/// later (a blocked perf SIGTRAP is queued and delivered whenever the mask allows).
unsafe fn mask_without_sigtrap(
    cache: &AtomicUsize,
    name: &core::ffi::CStr,
    how: c_int,
    set: *const [u64; 16],
    old: *mut [u64; 16],
) -> c_int {
    let f = next_symbol(cache, name);
    if f == 0 {
        return -1;
    }
    // SAFETY: dlsym returned libc's function of this name, whose type this is.
    let real = core::mem::transmute::<usize, MaskFn>(f);
    match set.as_ref() {
        Some(set) if how != SIG_UNBLOCK && ACTIVE.load(Acquire) => {
            let mut copy = *set;
            copy[0] &= !(1u64 << (SIGTRAP - 1));
            real(how, &copy, old)
        }
        _ => real(how, set, old),
    }
}

/// `sigprocmask(2)`, interposed: never blocks SIGTRAP while the agent is active.
#[no_mangle]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const [u64; 16],
    old: *mut [u64; 16],
) -> c_int {
    mask_without_sigtrap(&REAL_SIGPROCMASK, c"sigprocmask", how, set, old)
}

/// `pthread_sigmask(3)`, interposed: never blocks SIGTRAP while the agent is active.
#[no_mangle]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const [u64; 16],
    old: *mut [u64; 16],
) -> c_int {
    mask_without_sigtrap(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask", how, set, old)
}
