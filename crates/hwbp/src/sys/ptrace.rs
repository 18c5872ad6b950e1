//! Raw system calls of stop mode: ptrace, waitpid, signals, process_vm_readv, and the
//! tracer-owned `sigtrap` breakpoint events. Every `unsafe` of [`crate::ptrace`] lives here.
//!
//! Each function does one system call (or one fixed sequence) and returns [`Errno`] on
//! failure; nothing here decides policy. The `hwbp run` launcher ([`super::launch`]) uses the
//! same wrappers. Not for: perf counting/sampling (the `linux` layer).

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};

pub use super::{Errno, Tid};

/// `PTRACE_O_*` options hwbp sets on every tracee.
pub const TRACE_OPTIONS: u32 =
    (libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_TRACEEXIT) as u32;
/// `PTRACE_O_EXITKILL`: the kernel SIGKILLs the tracee when the tracer exits.
pub const OPT_EXITKILL: u32 = libc::PTRACE_O_EXITKILL as u32;
/// `PTRACE_O_TRACEEXIT`: stop at `PTRACE_EVENT_EXIT`, before the memory is released.
pub const OPT_TRACEEXIT: u32 = libc::PTRACE_O_TRACEEXIT as u32;
/// `PTRACE_O_TRACEEXEC`: an exec is a `PTRACE_EVENT_EXEC` stop, not a plain SIGTRAP.
pub const OPT_TRACEEXEC: u32 = libc::PTRACE_O_TRACEEXEC as u32;
/// `PTRACE_EVENT_EXIT`: `status >> 16` of an exit event-stop.
pub const EVENT_EXIT: i32 = libc::PTRACE_EVENT_EXIT;

/// `PERF_FLAG_FD_CLOEXEC` (`include/uapi/linux/perf_event.h`).
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `si_code` of a perf `sigtrap` event's SIGTRAP (`TRAP_PERF`, since 5.13).
pub const TRAP_PERF: i32 = 6;

/// `Err(errno)` for a `-1` return, else the value.
pub(super) fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `PTRACE_SEIZE` with `options`: attach without stopping the thread.
pub fn seize(tid: Tid, options: u32) -> Result<(), Errno> {
    // SAFETY: PTRACE_SEIZE takes no pointers; `data` is the options bit mask.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid.0, 0usize, options as usize) };
    check(r).map(drop)
}

/// `PTRACE_INTERRUPT`: bring a seized, running thread into a `PTRACE_EVENT_STOP`.
pub fn interrupt(tid: Tid) -> Result<(), Errno> {
    // SAFETY: no pointers are passed.
    let r = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid.0, 0usize, 0usize) };
    check(r).map(drop)
}

/// `PTRACE_LISTEN`: leave a thread in its group stop (until SIGCONT) without a ptrace stop.
pub fn listen(tid: Tid) -> Result<(), Errno> {
    // SAFETY: no pointers are passed.
    let r = unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid.0, 0usize, 0usize) };
    check(r).map(drop)
}

/// `PTRACE_CONT`, delivering `sig` (0 = none).
pub fn cont(tid: Tid, sig: i32) -> Result<(), Errno> {
    // SAFETY: no pointers are passed; `data` is a signal number.
    let r = unsafe { libc::ptrace(libc::PTRACE_CONT, tid.0, 0usize, sig as usize) };
    check(r).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 = none).
pub fn detach(tid: Tid, sig: i32) -> Result<(), Errno> {
    // SAFETY: no pointers are passed; `data` is a signal number.
    let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid.0, 0usize, sig as usize) };
    check(r).map(drop)
}

/// `PTRACE_GETEVENTMSG`: the new thread's id after `PTRACE_EVENT_CLONE`, the former thread
/// id after `PTRACE_EVENT_EXEC`, the exit status at `PTRACE_EVENT_EXIT`.
pub fn event_msg(tid: Tid) -> Result<u64, Errno> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: `data` points to a writable c_ulong that outlives the call.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid.0,
            0usize,
            &mut msg as *mut libc::c_ulong,
        )
    };
    check(r).map(|_| msg as u64)
}

/// The fields of a stopped thread's `siginfo_t` stop mode looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    /// `si_signo`.
    pub signo: i32,
    /// `si_code` (`TRAP_PERF` = 6 for a perf `sigtrap` event, `TRAP_HWBKPT` = 4 for ptrace
    /// debug registers).
    pub code: i32,
    /// `si_addr` (fault address; for perf breakpoints the event's `bp_addr`).
    pub addr: u64,
    /// `si_perf_data`: the event's `sig_data` when `code == TRAP_PERF`.
    pub perf_data: u64,
    /// `si_perf_flags` (at 36) when `code == TRAP_PERF`: bit 0 `TRAP_PERF_FLAG_ASYNC`, the
    /// signal was generated while SIGTRAP was blocked in the thread (so it is not delivered
    /// at the access). 0 before Linux 5.18.
    pub perf_flags: u32,
}

/// `TRAP_PERF_FLAG_ASYNC`: `si_perf_flags` bit 0 (`send_sig_perf`, kernel/signal.c).
pub const TRAP_PERF_FLAG_ASYNC: u32 = 1;

/// siginfo_t layout for the fault group on 64-bit Linux: `si_signo, si_errno, si_code` (3 ×
/// i32, padded to 16), `si_addr` at 16, then the union whose `_perf._data` is at 24.
fn decode_siginfo(raw: &libc::siginfo_t) -> SigInfo {
    // SAFETY: siginfo_t is plain old data of 128 bytes; reading it as bytes is always valid.
    let bytes: &[u8; 128] = unsafe { &*(raw as *const libc::siginfo_t as *const [u8; 128]) };
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_ne_bytes(b)
    };
    SigInfo {
        signo: raw.si_signo,
        code: raw.si_code,
        addr: u64_at(16),
        perf_data: u64_at(24),
        perf_flags: u32::from_ne_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]),
    }
}

/// `PTRACE_GETSIGINFO` of a thread in a ptrace stop.
pub fn siginfo(tid: Tid) -> Result<SigInfo, Errno> {
    let mut raw = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `data` points to a writable siginfo_t; the kernel fills at most its size.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid.0, 0usize, raw.as_mut_ptr()) };
    check(r)?;
    // SAFETY: zero-initialised and then written by the kernel; every bit pattern is valid.
    Ok(decode_siginfo(unsafe { raw.assume_init_ref() }))
}

/// Whether a queued (not yet delivered) signal of this thread's private queue is a perf
/// `sigtrap` SIGTRAP ([`pending_perf_traps`]).
pub fn pending_perf_trap(tid: Tid) -> Result<bool, Errno> {
    pending_perf_traps(tid).map(|(n, _)| n > 0)
}

/// The perf `sigtrap` SIGTRAPs queued (not yet delivered) in this thread's private queue
/// (`PTRACE_PEEKSIGINFO`, up to 8 entries): how many, and whether one was generated while
/// SIGTRAP was blocked (`TRAP_PERF_FLAG_ASYNC`). SIGTRAP is a legacy signal: at most one
/// is queued, every later one is dropped while it waits (`legacy_queue`, kernel/signal.c).
pub fn pending_perf_traps(tid: Tid) -> Result<(usize, bool), Errno> {
    let args = libc::ptrace_peeksiginfo_args {
        off: 0,
        flags: 0,
        nr: 8,
    };
    let mut out = [MaybeUninit::<libc::siginfo_t>::zeroed(); 8];
    // SAFETY: `addr` points to the args struct, `data` to room for `nr` siginfo_t records.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_PEEKSIGINFO,
            tid.0,
            &args as *const libc::ptrace_peeksiginfo_args,
            out.as_mut_ptr(),
        )
    };
    let n = check(r)? as usize;
    let mut found = (0, false);
    for s in &out[..n.min(8)] {
        // SAFETY: the kernel wrote the first `n` records; the rest stay zeroed.
        let info = decode_siginfo(unsafe { s.assume_init_ref() });
        if info.signo == libc::SIGTRAP && info.code == TRAP_PERF {
            found.0 += 1;
            found.1 |= info.perf_flags & TRAP_PERF_FLAG_ASYNC != 0;
        }
    }
    Ok(found)
}

/// `PTRACE_GETSIGMASK`: the signals a stopped thread blocks (bit `n - 1` for signal `n`;
/// the mask it returns to when stopped inside `ppoll`/`sigsuspend`).
pub fn sigmask(tid: Tid) -> Result<u64, Errno> {
    let mut mask: u64 = 0;
    // SAFETY: `data` points to a writable 8-byte kernel sigset_t; `addr` is its size.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid.0,
            8usize,
            &mut mask as *mut u64,
        )
    };
    check(r).map(|_| mask)
}

/// `PTRACE_SETSIGMASK`: sets a stopped thread's blocked signals (SIGKILL/SIGSTOP ignored).
pub fn set_sigmask(tid: Tid, mask: u64) -> Result<(), Errno> {
    // SAFETY: `data` points to an 8-byte kernel sigset_t that outlives the call.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, tid.0, 8usize, &mask as *const u64) };
    check(r).map(drop)
}

/// Bit of `sig` in a kernel signal mask.
pub const fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// A perf event's count (`read(2)` with `read_format` 0: one u64). Readable after the
/// thread exited (the final count) and after `PERF_EVENT_IOC_DISABLE`.
pub fn read_count(fd: &OwnedFd) -> Result<u64, Errno> {
    use std::os::fd::AsRawFd;
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a u64 we own.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    match check(r as libc::c_long)? {
        8 => Ok(v),
        _ => Err(Errno(libc::EIO)),
    }
}

/// `PERF_EVENT_IOC_DISABLE`: the event counts no more hits and sends no more signals.
pub fn disable_event(fd: &OwnedFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
    // SAFETY: an ioctl without argument on a perf event descriptor we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_DISABLE as _, 0) };
    check(r as libc::c_long).map(drop)
}

/// Byte offset of `u_debugreg[n]` in `struct user` (x86-64: 848 + 8n).
pub fn debugreg_offset(n: u32) -> usize {
    std::mem::offset_of!(libc::user, u_debugreg) + 8 * n as usize
}

/// A `PTRACE_PEEK*` request: returns the word; -1 is a valid word, so errno is cleared first
/// and tells failures apart.
fn peek(req: libc::c_uint, tid: Tid, addr: usize) -> Result<u64, Errno> {
    // SAFETY: __errno_location() is this thread's errno; writing 0 is allowed.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: only PEEKUSER (an offset inside `struct user`) and PEEKTEXT (an address in the
    // tracee) come here; neither dereferences memory of ours.
    let r = unsafe { libc::ptrace(req, tid.0, addr, 0usize) };
    if r == -1 {
        let e = Errno::last();
        if e.0 != 0 {
            return Err(e);
        }
    }
    Ok(r as u64)
}

/// `PTRACE_PEEKUSER` of debug register `n` (0..=7).
pub fn peek_debugreg(tid: Tid, n: u32) -> Result<u64, Errno> {
    peek(libc::PTRACE_PEEKUSER, tid, debugreg_offset(n))
}

/// `PTRACE_POKEUSER` of debug register `n` (0..=7).
pub fn poke_debugreg(tid: Tid, n: u32, value: u64) -> Result<(), Errno> {
    // SAFETY: POKEUSER takes the offset and the value; no pointers.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_POKEUSER,
            tid.0,
            debugreg_offset(n),
            value as usize,
        )
    };
    check(r).map(drop)
}

/// `PTRACE_PEEKUSER` of the instruction pointer (`regs.rip` in `struct user`): one word,
/// cheaper than [`regs`] when only the IP is needed.
pub fn peek_ip(tid: Tid) -> Result<u64, Errno> {
    let off =
        std::mem::offset_of!(libc::user, regs) + std::mem::offset_of!(libc::user_regs_struct, rip);
    peek(libc::PTRACE_PEEKUSER, tid, off)
}

/// `PTRACE_PEEKTEXT`: one word of the tracee's memory at `addr`.
pub fn peek_text(tid: Tid, addr: u64) -> Result<u64, Errno> {
    peek(libc::PTRACE_PEEKTEXT, tid, addr as usize)
}

/// `PTRACE_POKETEXT`: writes one word of the tracee's memory at `addr`.
pub fn poke_text(tid: Tid, addr: u64, word: u64) -> Result<(), Errno> {
    // SAFETY: POKETEXT takes an address in the tracee and the word; no pointers of ours.
    let r = unsafe { libc::ptrace(libc::PTRACE_POKETEXT, tid.0, addr as usize, word as usize) };
    check(r).map(drop)
}

/// `PTRACE_SETOPTIONS` (`PTRACE_O_*` bits).
pub fn set_options(tid: Tid, options: u32) -> Result<(), Errno> {
    // SAFETY: no pointers are passed; `data` is the options bit mask.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, tid.0, 0usize, options as usize) };
    check(r).map(drop)
}

/// `PTRACE_GETREGS`: the thread's general-purpose registers.
pub fn regs(tid: Tid) -> Result<libc::user_regs_struct, Errno> {
    let mut regs = MaybeUninit::<libc::user_regs_struct>::zeroed();
    // SAFETY: `data` points to a writable user_regs_struct.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid.0, 0usize, regs.as_mut_ptr()) };
    check(r)?;
    // SAFETY: written by the kernel (and zeroed before); all-integer struct.
    Ok(unsafe { regs.assume_init() })
}

/// `PTRACE_SETREGS`: replaces the thread's general-purpose registers.
pub fn set_regs(tid: Tid, regs: &libc::user_regs_struct) -> Result<(), Errno> {
    // SAFETY: `data` points to a live user_regs_struct the kernel only reads.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGS,
            tid.0,
            0usize,
            regs as *const libc::user_regs_struct,
        )
    };
    check(r).map(drop)
}

/// Sets the thread's instruction pointer (`PTRACE_GETREGS` + `PTRACE_SETREGS`).
pub fn set_ip(tid: Tid, ip: u64) -> Result<(), Errno> {
    let mut r = regs(tid)?;
    r.rip = ip;
    set_regs(tid, &r)
}

/// `process_vm_readv`: copies `buf.len()` bytes at `addr` of the thread's process.
/// Returns the number of bytes read (short at an unmapped page).
pub fn read_memory(tid: Tid, addr: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which is writable for its length; `remote` is only
    // dereferenced by the kernel in the other process.
    let r = unsafe { libc::process_vm_readv(tid.0, &local, 1, &remote, 1, 0) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// Reads up to `buf.len()` bytes at `addr` of `tid`'s memory, page by page in one
/// `process_vm_readv` (a transfer ends at the first remote piece it cannot read): returns how
/// many leading bytes were read — all, or those before the first unreadable page (0 on error).
pub fn read_memory_prefix(tid: Tid, addr: u64, buf: &mut [u8]) -> usize {
    const PAGE: u64 = 4096;
    let Some(end) = addr.checked_add(buf.len() as u64) else {
        return 0;
    };
    let mut remote = Vec::new();
    let mut at = addr;
    while at < end {
        let next = (at | (PAGE - 1)).saturating_add(1).min(end);
        remote.push(libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: (next - at) as usize,
        });
        at = next;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which is writable for its length; the remote pieces
    // are only dereferenced by the kernel in the other process.
    let r = unsafe {
        libc::process_vm_readv(
            tid.0,
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    usize::try_from(r).unwrap_or(0)
}

/// A `waitpid` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus {
    /// The thread that changed state.
    pub tid: Tid,
    /// The raw status word.
    pub status: i32,
}

/// `waitpid(pid, flags)`; `Ok(None)` when `WNOHANG` finds nothing to report.
fn waitpid(pid: i32, flags: i32) -> Result<Option<WaitStatus>, Errno> {
    let mut status = 0;
    // SAFETY: `status` is a writable int that outlives the call.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    match r {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        t => Ok(Some(WaitStatus {
            tid: Tid(t),
            status,
        })),
    }
}

/// `waitpid(pid, __WALL | __WNOTHREAD | flags)`; `Ok(None)` for `WNOHANG` with nothing to report.
pub fn wait(pid: i32, nohang: bool) -> Result<Option<WaitStatus>, Errno> {
    // __WNOTHREAD: only this thread's children and tracees (other threads may trace too).
    waitpid(
        pid,
        libc::__WALL | libc::__WNOTHREAD | if nohang { libc::WNOHANG } else { 0 },
    )
}

/// `waitpid(pid, __WALL | flags)`: like [`wait`] but also for children and tracees of the
/// other threads of this process (the launcher's form).
pub fn wait_any_thread(pid: i32, nohang: bool) -> Result<Option<WaitStatus>, Errno> {
    waitpid(pid, libc::__WALL | if nohang { libc::WNOHANG } else { 0 })
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: i32, tid: Tid, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid.0, sig) };
    check(r).map(drop)
}

/// The calling thread's id.
pub fn gettid() -> Tid {
    Tid::current()
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::kill(pid, sig) };
    check(r as libc::c_long).map(drop)
}

/// A breakpoint event with `sigtrap` on one thread, opened by the tracer.
///
/// `perf_event_attr` (136 bytes, `PERF_ATTR_SIZE_VER8`): `type` 0, `size` 4, `sample_period`
/// 16, flag bits at 40 (`exclude_kernel` 5, `exclude_hv` 6, `remove_on_exec` 36, `sigtrap` 37),
/// `bp_type` 52, `bp_addr` 56, `bp_len` 64, `sig_data` 120.
pub fn open_sigtrap_breakpoint(
    tid: Tid,
    addr: u64,
    len_bytes: u64,
    bp_type: u32,
    sig_data: u64,
) -> Result<OwnedFd, Errno> {
    open_sigtrap_breakpoint_on(tid, addr, len_bytes, bp_type, sig_data, false)
}

/// [`open_sigtrap_breakpoint`], and with `inherit`: also `inherit` (bit 1) and
/// `inherit_thread` (bit 35), so threads the thread creates later get the breakpoint (a forked
/// child does not).
pub fn open_sigtrap_breakpoint_on(
    tid: Tid,
    addr: u64,
    len_bytes: u64,
    bp_type: u32,
    sig_data: u64,
    inherit: bool,
) -> Result<OwnedFd, Errno> {
    let mut attr = [0u8; 136];
    let mut put = |off: usize, bytes: &[u8]| attr[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &5u32.to_ne_bytes()); // PERF_TYPE_BREAKPOINT
    put(4, &136u32.to_ne_bytes());
    put(16, &1u64.to_ne_bytes()); // sample_period = 1: every hit overflows
    let mut flags: u64 = (1 << 5) | (1 << 6) | (1 << 36) | (1 << 37);
    if inherit {
        flags |= (1 << 1) | (1 << 35);
    }
    put(40, &flags.to_ne_bytes());
    put(52, &bp_type.to_ne_bytes());
    put(56, &addr.to_ne_bytes());
    put(64, &len_bytes.to_ne_bytes());
    put(120, &sig_data.to_ne_bytes());
    // SAFETY: `attr` is a complete perf_event_attr of the size it declares and outlives the
    // call; the returned fd is fresh and owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            tid.0,
            -1i32,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let fd = check(fd)?;
    // SAFETY: perf_event_open returned a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A program ready to be started stopped: everything allocated before `fork`.
#[derive(Debug)]
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Prepared {
    /// `path` must already be resolved (no `PATH` search after `fork`).
    pub fn new(path: &str, args: &[String], env: &[(String, String)]) -> Option<Prepared> {
        let c = |s: &str| CString::new(s).ok();
        let mut argv = vec![c(path)?];
        for a in args {
            argv.push(c(a)?);
        }
        let mut envs = Vec::new();
        for (k, v) in env {
            envs.push(c(&format!("{k}={v}"))?);
        }
        Some(Prepared {
            path: c(path)?,
            argv,
            env: envs,
        })
    }
}

/// `fork`; the child stops itself with SIGSTOP, then `execve`s. Returns the child's id once it
/// is stopped (`waitpid(WUNTRACED)`), ready to be seized.
pub fn fork_stopped(p: &Prepared) -> Result<Tid, Errno> {
    let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: after fork the child only calls async-signal-safe functions (raise, execve,
    // _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; the pointers stay valid in the child's copy of the memory.
        unsafe {
            libc::raise(libc::SIGSTOP);
            libc::execve(p.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(Errno::last());
    }
    match waitpid(pid, libc::WUNTRACED) {
        Ok(Some(w)) if w.tid.0 == pid && libc::WIFSTOPPED(w.status) => Ok(Tid(pid)),
        _ => Err(Errno(libc::ECHILD)),
    }
}

/// Signals a tracer turns into an orderly shutdown.
pub const SHUTDOWN_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub(crate) fn sigset(signals: &[i32]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset/sigaddset initialise and edit the set we own.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

/// Blocks `signals` in the calling thread; returns the previous mask.
pub fn block_signals(signals: &[i32]) -> Result<libc::sigset_t, Errno> {
    let set = sigset(signals);
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: both sets are valid; pthread_sigmask only edits this thread's mask.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
    if r != 0 {
        return Err(Errno(r));
    }
    // SAFETY: written by pthread_sigmask.
    Ok(unsafe { old.assume_init() })
}

/// Restores a mask returned by [`block_signals`].
pub fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is a valid set obtained from pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// `sigwaitinfo` on `signals` (which must be blocked): the signal number taken.
pub fn wait_signal(signals: &[i32]) -> Result<i32, Errno> {
    let set = sigset(signals);
    // SAFETY: `set` is valid; a null info pointer is allowed.
    let r = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
    check(r as libc::c_long).map(|s| s as i32)
}

/// Whether `sig` is blocked in the calling thread.
pub fn signal_blocked(sig: i32) -> bool {
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: a null `set` only queries the mask into `old`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), old.as_mut_ptr());
        libc::sigismember(old.as_ptr(), sig) == 1
    }
}

/// `PTRACE_O_TRACECLONE` alone: threads created by a seized thread are attached to the same
/// tracer and start in a `PTRACE_EVENT_STOP` (used by the perf layer's arming freeze).
pub const OPT_TRACECLONE: u32 = libc::PTRACE_O_TRACECLONE as u32;
/// `PTRACE_EVENT_CLONE`: `status >> 16` of a clone event-stop.
pub const EVENT_CLONE: i32 = libc::PTRACE_EVENT_CLONE;
/// `PTRACE_EVENT_STOP`: `status >> 16` of an interrupt, group-stop or new-thread stop of a
/// seized thread.
pub const EVENT_STOP: i32 = libc::PTRACE_EVENT_STOP;

/// What a [`WaitStatus`] word says about the thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// It exited or was killed (gone).
    Gone,
    /// It is in a ptrace stop: `event` = `status >> 16` (0 for a signal-delivery-stop, else a
    /// `PTRACE_EVENT_*`), `sig` = `WSTOPSIG`.
    Stopped {
        /// `status >> 16`.
        event: i32,
        /// `WSTOPSIG(status)`.
        sig: i32,
    },
    /// Anything else (`WIFCONTINUED`).
    Other,
}

impl WaitStatus {
    /// Decodes the status word (`WIFEXITED`/`WIFSIGNALED`/`WIFSTOPPED`).
    pub fn kind(&self) -> WaitKind {
        let s = self.status;
        if libc::WIFEXITED(s) || libc::WIFSIGNALED(s) {
            WaitKind::Gone
        } else if libc::WIFSTOPPED(s) {
            WaitKind::Stopped {
                event: s >> 16,
                sig: libc::WSTOPSIG(s),
            }
        } else {
            WaitKind::Other
        }
    }
}

/// `waitpid(pid, WUNTRACED | WCONTINUED | WNOHANG)`: what the *parent* of `pid` is told about
/// job control (a stop or a continue), without reaping an exit that is not yet there.
/// `Ok(None)`: nothing to report.
pub fn wait_job_change(pid: i32) -> Result<Option<WaitStatus>, Errno> {
    waitpid(pid, libc::WUNTRACED | libc::WCONTINUED | libc::WNOHANG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_memory_prefix_keeps_the_readable_part_before_a_mapping_ends() {
        // Two pages, the second made unreadable: a read across the boundary keeps the first.
        // SAFETY: a fresh private anonymous mapping, only used here and unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the first page is ours and writable; the second is ours to protect.
        unsafe {
            std::ptr::write_bytes(base.cast::<u8>(), 0xa5, 4096);
            assert_eq!(
                libc::mprotect(base.cast::<u8>().add(4096).cast(), 4096, libc::PROT_NONE),
                0
            );
        }
        let me = Tid(std::process::id() as i32);
        let addr = base as u64;
        let mut buf = vec![0u8; 8192];
        assert_eq!(read_memory_prefix(me, addr + 4000, &mut buf), 96);
        assert!(buf[..96].iter().all(|&b| b == 0xa5));
        assert_eq!(read_memory_prefix(me, addr, &mut buf[..4096]), 4096);
        assert_eq!(read_memory_prefix(me, addr + 4096, &mut buf), 0);
        assert_eq!(read_memory_prefix(me, u64::MAX - 8, &mut buf), 0);
        // SAFETY: unmapping the mapping made above; nothing refers to it any more.
        unsafe { libc::munmap(base, 8192) };
    }
}
