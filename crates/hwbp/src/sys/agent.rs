//! The system calls of the agent's consumer side (stop mode's fast path, see
//! [`crate::ptrace::agent`]): the two memfds given to the program (the agent library and the
//! shared ring), the mapping of the ring, record copies, the producer wake-up (futex) and a
//! timed wait for signals.
//!
//! Not for: the agent itself (crates/hwbp-agent, in the watched program) or the session logic.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::agent_layout::{slots, total_bytes, Header, Record, BYTES, HEADER_BYTES, MAX_STACK};
use super::ptrace::check;
use super::Errno;

/// The agent library, built by build.rs (empty where the agent does not exist).
pub static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libhwbp_agent.so"));

fn memfd(name: &std::ffi::CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `name` is NUL-terminated; the returned fd is new and only ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    check(fd.into())?;
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A memfd holding `bytes` (the agent library), for `LD_PRELOAD=/proc/self/fd/N`.
pub fn library_file(bytes: &[u8]) -> Result<OwnedFd, Errno> {
    let fd = memfd(c"hwbp-agent.so")?;
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: writing from a live slice to our own fd.
        let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        done += check(n as libc::c_long)? as usize;
    }
    Ok(fd)
}

/// The shared ring: a memfd of [`total_bytes`], mapped here; the program maps the same file.
pub struct SharedRing {
    fd: OwnedFd,
    base: NonNull<u8>,
    /// Bytes of stack copied per hit (`Header::stack_bytes`).
    stack: usize,
}

// SAFETY: the mapping is plain shared memory accessed through atomics and volatile copies;
// the owner may move between threads.
unsafe impl Send for SharedRing {}

impl SharedRing {
    /// Creates and maps it, zero-filled, with room for `stack` bytes of stack per hit (0:
    /// none; a multiple of 8, at most [`MAX_STACK`]) and `Header::stack_bytes` set.
    pub fn create(stack: usize) -> Result<SharedRing, Errno> {
        if stack > MAX_STACK || !stack.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        let fd = memfd(c"hwbp-agent-ring")?;
        let size = total_bytes(stack);
        // SAFETY: plain syscall on our fd.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) }.into())?;
        // SAFETY: a fresh shared mapping of a file of `size` bytes; unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(Errno::EINVAL)?;
        let ring = SharedRing { fd, base, stack };
        ring.header()
            .stack_bytes
            .store(stack as u32, std::sync::atomic::Ordering::Relaxed);
        Ok(ring)
    }

    /// Records the ring holds.
    pub fn slots(&self) -> usize {
        slots(self.stack)
    }

    /// Bytes of stack copied per hit (0: none).
    pub fn stack_bytes(&self) -> usize {
        self.stack
    }

    /// Copies the first `len` bytes (at most the copy's size) of record `index`'s stack copy
    /// into `out` (cleared first). Same contract as [`SharedRing::record`].
    pub fn stack(&self, index: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        if self.stack == 0 {
            return;
        }
        let slot = (index % self.slots() as u64) as usize;
        let len = len.min(self.stack);
        // SAFETY: the slot's copy lies inside the mapping (`total_bytes`); the program wrote
        // it before publishing the record (release store of `head`, acquired by the caller),
        // and does not write it again before the caller releases the slot.
        unsafe {
            let p = self.base.as_ptr().add(BYTES + slot * self.stack);
            out.extend_from_slice(std::slice::from_raw_parts(p, len));
        }
    }

    /// The file, to hand to the program.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The header page.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is BYTES long, page-aligned, lives as long as `self`, and the
        // header is all atomics (shared with the program's agent).
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// A copy of record `index` (modulo the ring size). The caller has seen `head > index`
    /// (acquire) and not yet released the slot (`tail`).
    pub fn record(&self, index: u64) -> Record {
        let slot = (index % self.slots() as u64) as usize;
        // SAFETY: the slot lies inside the mapping; a volatile copy, since the program wrote
        // it (published by its release store of `head`, which the caller acquired).
        unsafe {
            let p = self
                .base
                .as_ptr()
                .add(HEADER_BYTES)
                .cast::<Record>()
                .add(slot);
            std::ptr::read_volatile(p)
        }
    }
}

impl Drop for SharedRing {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), total_bytes(self.stack)) };
    }
}

/// Wakes every waiter on `word` (shared memory: no `FUTEX_PRIVATE_FLAG`).
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only reads the address, which is a live u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        )
    };
}

/// `sigtimedwait` for one of `signals` (blocked by the caller), at most `timeout`.
/// `Ok(None)` on timeout.
pub fn wait_signal_for(signals: &[i32], timeout: Duration) -> Result<Option<i32>, Errno> {
    let set = super::ptrace::sigset(signals);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` and `ts` are valid; a null info pointer is allowed.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    if r < 0 {
        return match Errno::last() {
            Errno(libc::EAGAIN) | Errno::EINTR => Ok(None),
            e => Err(e),
        };
    }
    Ok(Some(r))
}

/// Clears `FD_CLOEXEC` (in a forked child, before exec: the program inherits the fd).
/// Async-signal-safe: callable between fork and exec.
pub(crate) fn inherit_fd(fd: i32) -> bool {
    // SAFETY: fcntl on an integer fd; no memory involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) == 0 }
}
