//! hwbp's in-process agent: the fast path of stop mode (`hwbp run --stop`).
//!
//! hwbp starts the program with this library in `LD_PRELOAD` (a memfd, `/proc/self/fd/N`) and
//! the shared memory of [`layout`] in another inherited descriptor, named by `HWBP_AGENT`. The
//! constructor maps that memory, closes both descriptors, takes its variables out of the
//! environment (programs this one starts do not load the agent) and installs a SIGTRAP handler.
//! hwbp then opens the watches as perf breakpoints with `sigtrap=1` on the program (it owns the
//! events: they die with hwbp, whatever kills it).
//!
//! At a hit, the kernel sends the accessing thread a SIGTRAP with `si_code = TRAP_PERF` and
//! hwbp's tag in `si_perf_data`. The handler runs in that thread, right after the access, with
//! the thread held: it takes the ring's lock, reads the watched bytes (`process_vm_readv` on
//! itself: a kernel access, so a read/write watch does not trap on it; plain loads for a
//! write-only watch where the program's seccomp filter refuses that call), copies the registers
//! from the signal frame and publishes one record. No context switch, no tracer: the hit costs
//! the trap and a signal delivery. hwbp keeps the shadow copy, evaluates `--if`, `--changed`
//! and prints, in its own process.
//!
//! Anything else (an `int3`, `raise(SIGTRAP)`, another perf user's sigtrap) goes to the
//! program's own SIGTRAP disposition: `sigaction` and libc's `signal` family (`signal`,
//! `bsd_signal`, `__sysv_signal` — `signal` in strict ISO C builds —, `sysv_signal`, `sigset`)
//! are interposed for SIGTRAP, so a handler the program installs later is recorded and called
//! from here with the mask the kernel would give it, and the default action is re-raised as it
//! would have happened (also for a kernel-forced trap, int3, under SIG_IGN). A program that
//! sets SIGTRAP's action with a raw `rt_sigaction` system call replaces the agent's handler:
//! use `--stop-via ptrace` for it. `sigprocmask` and
//! `pthread_sigmask` are interposed so that SIGTRAP is never blocked: a thread that blocks
//! every signal (worker threads often do) still takes its hits at the access (a blocked perf
//! SIGTRAP would wait in the queue and be read late, or never). The program's view of its
//! mask then lacks SIGTRAP; calls through `syscall(2)` or glibc's internal ones are not
//! interposed.
//!
//! Every function called from the handler is async-signal-safe: atomics, raw system calls,
//! no allocation, no lock but the ring's futex (never taken twice by one thread: SIGTRAP is
//! blocked while the handler runs).

#![allow(clippy::missing_safety_doc)]
// Built by crates/hwbp/build.rs with `--cfg hwbp_agent_nostd -C panic=abort`: no std, so the
// library needs nothing but libc (Cargo's own build, for clippy and tests, keeps std).
#![cfg_attr(hwbp_agent_nostd, no_std)]

pub mod layout;

#[cfg(hwbp_agent_nostd)]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing here can panic (no indexing out of bounds, no arithmetic overflow checks in
    // release); if it ever did, stopping the program is the only safe answer.
    extern "C" {
        fn abort() -> !;
    }
    // SAFETY: libc's abort takes no arguments and does not return.
    unsafe { abort() }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod agent;

/// Parses the `HWBP_AGENT` value `"REGION_FD,LIBRARY_FD"`.
pub fn parse_fds(value: &[u8]) -> Option<(i32, i32)> {
    let comma = value.iter().position(|&b| b == b',')?;
    Some((number(&value[..comma])?, number(&value[comma + 1..])?))
}

fn number(digits: &[u8]) -> Option<i32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0i32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_pair_parses_and_junk_does_not() {
        assert_eq!(parse_fds(b"5,6"), Some((5, 6)));
        assert_eq!(parse_fds(b"123,7"), Some((123, 7)));
        assert_eq!(parse_fds(b"5"), None);
        assert_eq!(parse_fds(b",6"), None);
        assert_eq!(parse_fds(b"5,"), None);
        assert_eq!(parse_fds(b"-5,6"), None);
        assert_eq!(parse_fds(b"5,6,7"), None);
        assert_eq!(parse_fds(b"9999999999,1"), None);
    }

    #[test]
    fn the_shared_memory_fits_its_header_page_and_records_stay_aligned() {
        assert!(std::mem::size_of::<layout::Header>() <= layout::HEADER_BYTES);
        assert_eq!(std::mem::size_of::<layout::Record>(), 296);
        assert_eq!(layout::BYTES, 4096 + 4096 * 296);
        assert_eq!(layout::slots(0), 4096);
        assert_eq!(layout::slots(8192), 512);
        assert_eq!(layout::total_bytes(0), layout::BYTES);
        assert_eq!(layout::total_bytes(8192), layout::BYTES + 512 * 8192);
        assert_eq!(layout::TAG >> 32, u64::from(u32::from_be_bytes(*b"hwbp")));
    }
}
