//! The launcher's system calls: fork + `PTRACE_TRACEME` + exec, `waitpid`, the few ptrace
//! requests that run a fresh process to its entry point, `kill`, and the SIGINT/SIGTERM flag.
//!
//! Not for: policy (see [`crate::launch`]) or debugging a process (the `ptrace` backend).

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{Errno, Pid};

/// How a child changed state (`waitpid(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// `WIFEXITED`: exit code.
    Exited(i32),
    /// `WIFSIGNALED`: the signal that killed it.
    Signaled(i32),
    /// `WIFSTOPPED`: the stop signal (a ptrace stop) and the `PTRACE_EVENT_*` (0 = none).
    Stopped(i32, i32),
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Forks; the child asks to be traced (`PTRACE_TRACEME`) and execs `path` with `argv`, so it
/// stops with SIGTRAP right after the exec. Returns the child's pid, or the child's exec errno
/// (the child is reaped then).
pub fn spawn_traced(path: &CStr, argv: &[CString]) -> Result<Pid, Errno> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a live array of two c_ints that pipe2 fills.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: fork has no memory preconditions. The child only calls async-signal-safe
    // functions (ptrace, execv, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Child.
        // SAFETY: see above; `ptrs` is a NULL-terminated array of NUL-terminated strings that
        // outlive the call; `err` is a live 4-byte buffer.
        unsafe {
            libc::close(rd);
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
                libc::execv(path.as_ptr(), ptrs.as_ptr());
            }
            let err = (*libc::__errno_location()).to_ne_bytes();
            libc::write(wr, err.as_ptr().cast(), 4);
            libc::_exit(127);
        }
    }
    // SAFETY: `wr` is our end of the pipe, still open.
    unsafe { libc::close(wr) };
    if pid < 0 {
        let e = Errno::last();
        // SAFETY: `rd` is open and ours.
        unsafe { libc::close(rd) };
        return Err(e);
    }
    let mut err = [0u8; 4];
    let mut got = 0usize;
    loop {
        // SAFETY: reading into the unread tail of a live 4-byte buffer.
        let n = unsafe { libc::read(rd, err[got..].as_mut_ptr().cast(), 4 - got) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
        if got == 4 {
            break;
        }
    }
    // SAFETY: `rd` is open and ours.
    unsafe { libc::close(rd) };
    let pid = Pid::new(pid).ok_or(Errno::EINVAL)?;
    if got == 4 {
        // exec failed: reap the child, report its errno.
        let _ = wait(pid, false);
        return Err(Errno(i32::from_ne_bytes(err)));
    }
    Ok(pid)
}

/// `waitpid(pid, __WALL | (WNOHANG if !block))`, retried on EINTR when blocking; `Ok(None)`
/// when not blocking and nothing changed.
pub fn wait(pid: Pid, block: bool) -> Result<Option<WaitStatus>, Errno> {
    let flags = libc::__WALL | if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live c_int.
        let r = unsafe { libc::waitpid(pid.get(), &mut status, flags) };
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EINTR && block {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Stopped(libc::WSTOPSIG(status), (status >> 16) & 0xff)
        }));
    }
}

fn ptrace(req: libc::c_uint, pid: Pid, addr: u64, data: u64) -> Result<libc::c_long, Errno> {
    // SAFETY: only requests that take integer addr/data are passed here (SETOPTIONS, POKETEXT,
    // CONT, DETACH); none dereferences memory of ours.
    check(unsafe {
        libc::ptrace(
            req,
            pid.get(),
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    })
}

/// `PTRACE_SETOPTIONS`.
pub fn set_options(pid: Pid, options: u64) -> Result<(), Errno> {
    ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options).map(drop)
}

/// `PTRACE_O_EXITKILL`: the tracee is killed if the tracer exits.
pub const O_EXITKILL: u64 = libc::PTRACE_O_EXITKILL as u64;
/// `PTRACE_O_TRACEEXIT`: stop at `PTRACE_EVENT_EXIT`, before the memory is released.
pub const O_TRACEEXIT: u64 = libc::PTRACE_O_TRACEEXIT as u64;
/// `PTRACE_O_TRACEEXEC`: an exec is a `PTRACE_EVENT_EXEC` stop, not a plain SIGTRAP.
pub const O_TRACEEXEC: u64 = libc::PTRACE_O_TRACEEXEC as u64;
/// `PTRACE_EVENT_EXIT`.
pub const EVENT_EXIT: i32 = libc::PTRACE_EVENT_EXIT;

/// Whether the tracee's current stop is a signal-delivery-stop (`PTRACE_GETSIGINFO`
/// succeeds) rather than a group-stop (it fails with `EINVAL`).
pub fn is_signal_delivery_stop(pid: Pid) -> bool {
    // SAFETY: siginfo_t is plain data; GETSIGINFO fills the live struct we pass.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            pid.get(),
            std::ptr::null_mut::<libc::c_void>(),
            &mut info as *mut libc::siginfo_t,
        ) == 0
    }
}

/// `PTRACE_PEEKTEXT`: one word of the tracee's memory.
pub fn peek_text(pid: Pid, addr: u64) -> Result<u64, Errno> {
    // PEEKTEXT returns the word; -1 is a valid word, so errno tells failures apart.
    // SAFETY: __errno_location returns this thread's errno slot; PEEKTEXT takes integer args.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::ptrace(
            libc::PTRACE_PEEKTEXT,
            pid.get(),
            addr as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        );
        if v == -1 && *libc::__errno_location() != 0 {
            return Err(Errno::last());
        }
        Ok(v as u64)
    }
}

/// `PTRACE_POKETEXT`.
pub fn poke_text(pid: Pid, addr: u64, word: u64) -> Result<(), Errno> {
    ptrace(libc::PTRACE_POKETEXT, pid, addr, word).map(drop)
}

/// `PTRACE_CONT` with signal `sig` (0 = none).
pub fn cont(pid: Pid, sig: i32) -> Result<(), Errno> {
    ptrace(libc::PTRACE_CONT, pid, 0, sig as u64).map(drop)
}

/// `PTRACE_DETACH`: the tracee runs on with signal `sig` (0 = none).
pub fn detach(pid: Pid, sig: i32) -> Result<(), Errno> {
    ptrace(libc::PTRACE_DETACH, pid, 0, sig as u64).map(drop)
}

/// The tracee's instruction pointer (`PTRACE_GETREGS`, x86-64 `rip`).
#[cfg(target_arch = "x86_64")]
pub fn get_ip(pid: Pid) -> Result<u64, Errno> {
    // SAFETY: user_regs_struct is plain data; GETREGS fills the live struct we pass.
    unsafe {
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        check(libc::ptrace(
            libc::PTRACE_GETREGS,
            pid.get(),
            std::ptr::null_mut::<libc::c_void>(),
            &mut regs as *mut libc::user_regs_struct,
        ))?;
        Ok(regs.rip)
    }
}

/// Sets the tracee's instruction pointer (`PTRACE_GETREGS` + `PTRACE_SETREGS`).
#[cfg(target_arch = "x86_64")]
pub fn set_ip(pid: Pid, ip: u64) -> Result<(), Errno> {
    // SAFETY: as in get_ip; SETREGS reads the live struct we pass.
    unsafe {
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        check(libc::ptrace(
            libc::PTRACE_GETREGS,
            pid.get(),
            std::ptr::null_mut::<libc::c_void>(),
            &mut regs as *mut libc::user_regs_struct,
        ))?;
        regs.rip = ip;
        check(libc::ptrace(
            libc::PTRACE_SETREGS,
            pid.get(),
            std::ptr::null_mut::<libc::c_void>(),
            &regs as *const libc::user_regs_struct,
        ))?;
    }
    Ok(())
}

/// `kill(pid, sig)`.
pub fn kill(pid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill has no memory preconditions.
    check(unsafe { libc::kill(pid.get(), sig) }.into()).map(drop)
}

/// The last stop signal received (0 = none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs a handler for SIGINT and SIGTERM that only records the signal (no `SA_RESTART`,
/// so a blocking `poll` returns `EINTR`). Handlers are reset to default in exec'd children.
pub fn install_stop_handler() -> Result<(), Errno> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data (all-zero is valid: empty mask, no flags); the
        // handler is an extern "C" fn that only does an atomic store.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            check(libc::sigaction(sig, &sa, std::ptr::null_mut()).into())?;
        }
    }
    Ok(())
}

/// The SIGINT/SIGTERM received since [`install_stop_handler`], if any.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
