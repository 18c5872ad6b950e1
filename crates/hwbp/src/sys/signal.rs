//! The unsafe half of in-process SIGTRAP delivery: installing the handler, reading the
//! kernel's siginfo fields, chaining to the previous handler, reading watched memory without
//! faulting, and [`Published`], a pointer slot a signal handler can read while a normal thread
//! retires it.
//!
//! Not for: deciding what a trap means (safe code in `crate::signal::dispatch` does that).
//!
//! `siginfo_t` for `si_code == TRAP_PERF` (include/uapi/asm-generic/siginfo.h, `_sigfault`
//! with its `_perf` member; offsets checked with `offsetof` on this x86-64 machine; the layout
//! is the generic 64-bit one, also used by arm64):
//!
//! ```text
//! @0  i32 si_signo   @4 i32 si_errno   @8 i32 si_code (TRAP_PERF = 6)
//! @16 u64 si_addr        the event's bp_addr
//! @24 u64 si_perf_data   perf_event_attr::sig_data
//! @32 u32 si_perf_type   perf_event_attr::type (PERF_TYPE_BREAKPOINT = 5)
//! @36 u32 si_perf_flags  TRAP_PERF_FLAG_ASYNC (bit 0): delivered late because SIGTRAP was blocked
//! ```

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

/// `TRAP_PERF`: `si_code` of a perf `sigtrap` event.
pub const TRAP_PERF: i32 = 6;
/// `TRAP_PERF_FLAG_ASYNC`: `si_perf_flags` bit 0.
pub const TRAP_PERF_FLAG_ASYNC: u32 = 1;

const OFF_CODE: usize = 8;
const OFF_ADDR: usize = 16;
const OFF_PERF_DATA: usize = 24;
const OFF_PERF_TYPE: usize = 32;
const OFF_PERF_FLAGS: usize = 36;

/// The fields of one SIGTRAP, as read in the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTrap {
    /// `si_code`.
    pub code: i32,
    /// `si_addr`.
    pub addr: u64,
    /// `si_perf_data` (meaningful for `TRAP_PERF` only).
    pub perf_data: u64,
    /// `si_perf_type` (meaningful for `TRAP_PERF` only).
    pub perf_type: u32,
    /// `si_perf_flags` (meaningful for `TRAP_PERF` only; 0 on kernels before 5.18).
    pub perf_flags: u32,
    /// The interrupted program counter (on x86 the instruction after the access).
    pub pc: Option<u64>,
}

/// What the handler does with a trap after `crate::signal::dispatch` looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ours (or a stale one of ours): done.
    Handled,
    /// Not ours: pass to the handler that was installed before hwbp's.
    Chain,
}

/// The `sigaction` that was installed before ours, read once before installing.
struct PrevAction(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written once under INSTALL before PREV_READY is set (Release); read only after
// PREV_READY is seen (Acquire), never written again.
unsafe impl Sync for PrevAction {}

static PREV: PrevAction = PrevAction(UnsafeCell::new(MaybeUninit::uninit()));
static PREV_READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Mutex<bool> = Mutex::new(false);

/// Installs hwbp's SIGTRAP handler for the whole process (once; later calls do nothing).
///
/// The previous disposition is kept and receives every SIGTRAP that is not a `TRAP_PERF` trap
/// of hwbp's; a handler installed *after* this one replaces it (and then hwbp sees nothing).
pub fn install_handler() -> io::Result<()> {
    let mut done = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    // SAFETY: PREV is written only here, under INSTALL, before PREV_READY is published, and
    // no handler of ours is installed yet, so nothing reads it concurrently. sigaction with a
    // NULL new action only writes the old one into the pointed-to storage.
    let r = unsafe { libc::sigaction(libc::SIGTRAP, ptr::null(), (*PREV.0.get()).as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    PREV_READY.store(true, Ordering::Release);
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags); we then set the
    // handler to a function with the SA_SIGINFO signature.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = trampoline as *const () as libc::sighandler_t;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `act` is a fully initialised sigaction on the stack; the old action is not needed.
    let r = unsafe { libc::sigaction(libc::SIGTRAP, &act, ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    *done = true;
    Ok(())
}

/// The SA_SIGINFO handler. Async-signal-safe: no allocation, no locks, errno preserved.
extern "C" fn trampoline(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t (128 bytes) for SA_SIGINFO handlers; the
        // offsets are the uapi layout documented above, within those 128 bytes and naturally
        // aligned. The perf fields are plain integers, so any bit pattern is valid.
        let trap = unsafe {
            let base = info.cast::<u8>();
            RawTrap {
                code: ptr::read(base.add(OFF_CODE).cast::<i32>()),
                addr: ptr::read(base.add(OFF_ADDR).cast::<u64>()),
                perf_data: ptr::read(base.add(OFF_PERF_DATA).cast::<u64>()),
                perf_type: ptr::read(base.add(OFF_PERF_TYPE).cast::<u32>()),
                perf_flags: ptr::read(base.add(OFF_PERF_FLAGS).cast::<u32>()),
                pc: context_pc(ctx),
            }
        };
        if crate::signal::dispatch(&trap) == Verdict::Chain {
            // SAFETY: sig/info/ctx are the kernel's arguments to this handler, passed on as-is.
            unsafe { chain(sig, info, ctx, trap.code) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The interrupted PC from the `ucontext_t` the kernel passed.
fn context_pc(ctx: *mut libc::c_void) -> Option<u64> {
    if ctx.is_null() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: for SA_SIGINFO handlers the third argument points to the ucontext_t the
        // kernel built on this thread's signal stack; it is valid during the handler.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        Some(uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64)
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as for x86-64.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        Some(uc.uc_mcontext.pc)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

/// Passes a SIGTRAP that is not ours to the previous disposition.
///
/// # Safety
/// Only from `trampoline`, with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, code: i32) {
    if !PREV_READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: PREV_READY (Acquire) guarantees PREV was fully written and is never written again.
    let prev = unsafe { (*PREV.0.get()).assume_init_ref() };
    let h = prev.sa_sigaction;
    if h == libc::SIG_IGN {
        return;
    }
    if h == libc::SIG_DFL {
        if code == TRAP_PERF {
            // A perf sigtrap event of this process that is not hwbp's, and nobody else
            // handles SIGTRAP: the default action would kill the process for a benign,
            // already-counted event (`crate::signal::foreign_traps`), so it is dropped.
            return;
        }
        // Reproduce the default action: restore SIG_DFL and re-raise. SIGTRAP is blocked
        // while we run, so the process terminates (with a core) right after we return,
        // exactly as it would have without hwbp.
        // SAFETY: an all-zero sigaction with SIG_DFL (0) is valid; sigaction and raise are
        // async-signal-safe.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGTRAP, &dfl, ptr::null_mut());
            libc::raise(libc::SIGTRAP);
        }
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the stored handler has this signature (sigaction(2)).
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the stored handler is a `void (*)(int)`.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

/// Reads `out.len()` (at most 8) bytes of this process's memory at `addr` without ever
/// faulting: `process_vm_readv` on ourselves copies through the kernel and returns EFAULT for
/// unmapped memory. Async-signal-safe (one system call), and no Rust-level access to the
/// watched object, so it cannot race with the program's own accesses in the language's sense.
/// Returns whether all bytes were read.
pub fn read_own_memory(addr: u64, out: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` describes the live, writable `out`; the kernel validates `remote` and
    // never touches our memory through it except by copying out of it.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == out.len() as isize
}

/// The calling thread's id (async-signal-safe).
pub fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// A slot holding at most one `Box<T>` that signal handlers may borrow ([`Published::with`],
/// wait-free, no allocation) while a normal thread publishes and retires it.
///
/// Protocol (both sides SeqCst, so it is a Dekker handshake):
/// reader: `readers += 1; p = ptr; use *p if non-null; readers -= 1`;
/// retire: `p = swap(ptr, null); spin until readers == 0; drop(Box(p))`.
/// After the swap no new reader can see `p`, and every reader that saw it has finished once
/// `readers` reads 0. The spin is bounded by one handler run on another thread; it cannot
/// deadlock because a handler never waits for a normal thread and normal code of a thread
/// never runs while that thread's handler is active.
pub struct Published<T> {
    ptr: AtomicPtr<T>,
    readers: AtomicU32,
}

impl<T> Published<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Published {
            ptr: AtomicPtr::new(ptr::null_mut()),
            readers: AtomicU32::new(0),
        }
    }

    /// Puts `value` in the slot if it is empty; gives it back otherwise.
    pub fn publish(&self, value: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(value);
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(()),
            // SAFETY: `p` came from Box::into_raw just above and was not published.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    /// Whether the slot is empty (a hint: it may change right after).
    pub fn is_empty(&self) -> bool {
        self.ptr.load(Ordering::SeqCst).is_null()
    }

    /// Calls `f` with the published value, if any. Safe to call from a signal handler.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let p = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null `p` came from Box::into_raw in `publish`, and `retire` does not
        // free it until `readers` (which counts us) drops back to 0.
        let r = if p.is_null() {
            None
        } else {
            Some(f(unsafe { &*p }))
        };
        self.readers.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Empties the slot, waits for handlers still using the value, and returns it.
    /// Must not be called from a signal handler.
    pub fn retire(&self) -> Option<Box<T>> {
        let p = self.ptr.swap(ptr::null_mut(), Ordering::SeqCst);
        if p.is_null() {
            return None;
        }
        while self.readers.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // SAFETY: `p` came from Box::into_raw, is no longer reachable through the slot, and
        // no reader holds it (readers == 0 after the swap).
        Some(unsafe { Box::from_raw(p) })
    }
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Published<T> {
    fn drop(&mut self) {
        drop(self.retire());
    }
}

// SAFETY: the slot hands out only `&T` (needs T: Sync) and moves the Box between threads
// (needs T: Send).
unsafe impl<T: Send + Sync> Sync for Published<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Published<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_roundtrip() {
        let p: Published<u32> = Published::new();
        assert_eq!(p.with(|v| *v), None);
        p.publish(Box::new(7)).unwrap();
        assert_eq!(p.publish(Box::new(8)).unwrap_err().as_ref(), &8);
        assert_eq!(p.with(|v| *v), Some(7));
        assert_eq!(p.retire().as_deref(), Some(&7));
        assert!(p.is_empty());
    }

    static PRIOR_HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    extern "C" fn prior_handler(_: libc::c_int) {
        PRIOR_HITS.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `test` of this binary again in a child process with `HWBP_SIGNAL_CHILD=role` and
    /// returns its exit status. Handler installation is once per process, so chaining is
    /// tested in fresh processes.
    fn run_child(test: &str, role: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("HWBP_SIGNAL_CHILD", role)
            .output()
            .unwrap()
    }

    /// In the child: a prior `void (*)(int)` handler gets the non-perf SIGTRAPs, hwbp gets
    /// the perf ones.
    #[test]
    fn chains_non_perf_traps_to_the_previous_handler() {
        if std::env::var("HWBP_SIGNAL_CHILD").as_deref() != Ok("chain") {
            let out = run_child(
                "sys::signal::tests::chains_non_perf_traps_to_the_previous_handler",
                "chain",
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed: {} {text}", out.status);
            assert!(
                text.contains("CHAIN-CHILD-OK"),
                "child did not run the scenario: {text}"
            );
            return;
        }
        // SAFETY: installs a plain handler that only does an atomic add (async-signal-safe).
        unsafe {
            libc::signal(
                libc::SIGTRAP,
                prior_handler as *const () as libc::sighandler_t,
            );
        }
        let sink = crate::signal::SignalSink::new(Default::default()).unwrap();
        for _ in 0..3 {
            // SAFETY: raise has no memory preconditions.
            unsafe { libc::raise(libc::SIGTRAP) };
        }
        assert_eq!(PRIOR_HITS.load(Ordering::Relaxed), 3);
        assert_eq!(sink.hits(), 0);
        // A real perf sigtrap hit goes to the sink, not to the prior handler.
        let word = Box::new(std::sync::atomic::AtomicU64::new(0));
        let spec = hwbp_core::Spec::user(word.as_ptr() as u64, 8, hwbp_core::Access::Write);
        let opts = crate::watch::WatchOptions {
            sigtrap: Some(sink.sig_data()),
            ..Default::default()
        };
        let w = crate::watch::Watch::with_options(crate::Target::current_thread(), spec, &opts);
        let w = w.unwrap();
        for i in 0..10 {
            word.store(i, Ordering::Relaxed);
        }
        drop(w);
        assert_eq!(sink.hits(), 10);
        assert_eq!(PRIOR_HITS.load(Ordering::Relaxed), 3);
        println!("CHAIN-CHILD-OK");
    }

    /// In the child: with no previous handler, a stray SIGTRAP still kills the process with
    /// SIGTRAP, as it would without hwbp.
    #[test]
    fn default_disposition_is_kept_for_stray_traps() {
        if std::env::var("HWBP_SIGNAL_CHILD").as_deref() != Ok("default") {
            let out = run_child(
                "sys::signal::tests::default_disposition_is_kept_for_stray_traps",
                "default",
            );
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGTRAP), "{:?}", out);
            assert!(String::from_utf8_lossy(&out.stdout).contains("DEFAULT-CHILD-ARMED"));
            return;
        }
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads one live rlimit; no core file is wanted from this death.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
        let _sink = crate::signal::SignalSink::new(Default::default()).unwrap();
        println!("DEFAULT-CHILD-ARMED");
        // SAFETY: raise has no memory preconditions.
        unsafe { libc::raise(libc::SIGTRAP) };
        println!("DEFAULT-CHILD-SURVIVED");
    }

    #[test]
    fn read_own_memory_faults_softly() {
        let x: u64 = 0x1122_3344_5566_7788;
        let mut out = [0u8; 8];
        assert!(read_own_memory(&x as *const u64 as u64, &mut out));
        assert_eq!(u64::from_le_bytes(out), x);
        assert!(!read_own_memory(8, &mut out)); // page 0 is never mapped
    }
}
