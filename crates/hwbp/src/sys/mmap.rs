//! The perf mmap ring buffer: mapping, the head/tail counters, and poll(2) on the event.
//!
//! Not for: framing or decoding records (safe code in `ring.rs` does that through the
//! [`RingMemory`] trait this type implements), nor the ring ioctls `SET_OUTPUT`/`ID`
//! (`sys::Ioctl`).
//!
//! `struct perf_event_mmap_page` (include/uapi/linux/perf_event.h; offsets checked with
//! `offsetof` on this machine's 6.1 headers against a 6.18 kernel):
//!
//! ```text
//! @1024 u64 data_head    written by the kernel with smp_store_release
//! @1032 u64 data_tail    written by us; the kernel reads it (READ_ONCE) before writing
//! @1040 u64 data_offset  start of the data area in the mapping (page size)
//! @1048 u64 data_size    size of the data area (2^n pages)
//! ```

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ring::RingMemory;

const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

/// One mapped perf ring: 1 control page plus 2^n data pages, mapped read-write so the kernel
/// honours `data_tail` and never overwrites unread records.
#[derive(Debug)]
pub struct PerfMmap {
    base: NonNull<u8>,
    len: usize,
    data_offset: usize,
    data_size: usize,
}

// SAFETY: PerfMmap owns its mapping exclusively (no aliasing handles exist); the only state
// shared with the kernel is accessed through atomics or through the stable [tail, head) range.
unsafe impl Send for PerfMmap {}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

impl PerfMmap {
    /// Maps the ring of perf event `fd` with `2^data_pages_log2` data pages.
    pub fn map(fd: BorrowedFd<'_>, data_pages_log2: u32) -> io::Result<Self> {
        let page = page_size();
        let data_pages = 1usize
            .checked_shl(data_pages_log2)
            .filter(|n| *n <= 1 << 20)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let len = page
            .checked_mul(data_pages + 1)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh shared mapping of a perf fd; we pass no address hint, so no existing
        // memory is replaced. The result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let mut m = PerfMmap {
            base,
            len,
            data_offset: page,
            data_size: len - page,
        };
        // Kernels since 4.1 fill data_offset/data_size; keep the classic layout otherwise.
        let (off, size) = (m.load_u64(DATA_OFFSET), m.load_u64(DATA_SIZE));
        if size != 0 {
            let (off, size) = (off as usize, size as usize);
            if size.is_power_of_two() && off.checked_add(size).is_some_and(|end| end <= len) {
                m.data_offset = off;
                m.data_size = size;
            }
        }
        Ok(m)
    }

    /// The u64 control field at `offset` (one of the DATA_* constants).
    fn field(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: offset is one of the 8-aligned DATA_* constants, inside the first page of a
        // live mapping that `self` owns (page-aligned base), so the pointer is valid and
        // aligned for AtomicU64 for the lifetime of `&self`. The kernel accesses these fields
        // only with single-copy-atomic aligned 8-byte loads and stores.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn load_u64(&self, offset: usize) -> u64 {
        self.field(offset).load(Ordering::Acquire)
    }
}

impl RingMemory for PerfMmap {
    fn data_size(&self) -> usize {
        self.data_size
    }

    fn head(&self) -> u64 {
        // Acquire pairs with the kernel's smp_store_release of data_head in
        // perf_output_put_handle(): record bytes below head are visible after this load.
        self.field(DATA_HEAD).load(Ordering::Acquire)
    }

    fn tail(&self) -> u64 {
        self.field(DATA_TAIL).load(Ordering::Relaxed)
    }

    fn set_tail(&mut self, tail: u64) {
        // Release: every read of the consumed records happens before the kernel may reuse
        // their bytes (the kernel pairs this with its smp_mb() after READ_ONCE(data_tail)).
        self.field(DATA_TAIL).store(tail, Ordering::Release);
    }

    fn readable(&self, tail: u64, head: u64) -> (&[u8], &[u8]) {
        let size = self.data_size;
        let len = (head.wrapping_sub(tail) as usize).min(size);
        let start = (tail % size as u64) as usize;
        let first = len.min(size - start);
        // SAFETY: [data_offset, data_offset + data_size) lies inside the mapping (checked in
        // `map`), and start + first <= size, len - first <= start. The kernel does not write
        // bytes in [tail, head) of a writable ring until data_tail moves past them, which
        // needs `&mut self` (`set_tail`), so these shared slices are never written to while
        // they live.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            (
                std::slice::from_raw_parts(data.add(start), first),
                std::slice::from_raw_parts(data, len - first),
            )
        }
    }
}

impl Drop for PerfMmap {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping created in `map`, and no slice borrowed
        // from it can outlive `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Waits until one of the perf events `fds` has data to read (its wakeup_events/watermark
/// was reached) or hung up (its task exited), or `timeout` passes (`None`: no limit).
/// Returns whether one is readable.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<bool> {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfds that poll may write to.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            let ready = libc::POLLIN | libc::POLLHUP;
            return Ok(pfds.iter().any(|p| p.revents & ready != 0));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
