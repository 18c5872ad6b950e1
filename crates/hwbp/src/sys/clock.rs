//! The calling thread's CPU time (for benchmarks that must not count time other processes
//! run on the same CPU).
//!
//! Also `CLOCK_MONOTONIC` for stop mode's hit times. Not for: timestamps of perf samples (they
//! carry their own `PERF_SAMPLE_TIME`).

use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds (the clock the agent stamps hits with, and `Instant`'s).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local `ts`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time the calling thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`): user and
/// kernel time, including the kernel's handling of this thread's debug exceptions and
/// signals; excluding time other tasks ran and, with paravirtual steal-time accounting, time
/// the hypervisor took the vCPU away.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local `ts`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
