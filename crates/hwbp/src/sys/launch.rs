//! The launcher's system calls: fork + `PTRACE_TRACEME` + exec, `waitpid` decoded for the
//! launcher, and the SIGINT/SIGTERM flag. The ptrace requests that run a fresh process to its
//! entry point (and `kill`) are [`super::ptrace`]'s, shared with stop mode.
//!
//! Not for: policy (see [`crate::launch`]) or debugging a process (the `ptrace` backend).

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};

use super::ptrace::check;
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

/// Forks; the child asks to be traced (`PTRACE_TRACEME`) and execs `path` with `argv`, so it
/// stops with SIGTRAP right after the exec. `env`: the environment (else this process's);
/// `inherit`: descriptors whose `FD_CLOEXEC` the child clears, so the program gets them.
/// Returns the child's pid, or the child's exec errno (the child is reaped then).
pub fn spawn_traced(
    path: &CStr,
    argv: &[CString],
    env: Option<&[CString]>,
    inherit: &[i32],
) -> Result<Pid, Errno> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let envp: Option<Vec<*const libc::c_char>> = env.map(|env| {
        let mut v: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        v.push(std::ptr::null());
        v
    });
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a live array of two c_ints that pipe2 fills.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: fork has no memory preconditions. The child only calls async-signal-safe
    // functions (ptrace, execv, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Child.
        // SAFETY: see above; `ptrs` and `envp` are NULL-terminated arrays of NUL-terminated
        // strings that outlive the call; `err` is a live 4-byte buffer.
        unsafe {
            libc::close(rd);
            let kept = inherit.iter().all(|&fd| super::agent::inherit_fd(fd));
            if kept && libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
                match &envp {
                    Some(envp) => libc::execve(path.as_ptr(), ptrs.as_ptr(), envp.as_ptr()),
                    None => libc::execv(path.as_ptr(), ptrs.as_ptr()),
                };
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
    loop {
        let status = match super::ptrace::wait_any_thread(pid.get(), !block) {
            Err(e) if e == Errno::EINTR && block => continue,
            Err(e) => return Err(e),
            Ok(None) => return Ok(None),
            Ok(Some(w)) => w.status,
        };
        return Ok(Some(if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Stopped(libc::WSTOPSIG(status), (status >> 16) & 0xff)
        }));
    }
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
