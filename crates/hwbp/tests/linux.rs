//! hwbp on the real kernel: exact hit counts on this machine's debug registers.
//!
//! Hygiene: `cargo test` runs these as threads of one process, next to other crates' tests
//! in other processes. Task-bound tests on the test's own threads only constrain that thread,
//! but CPU-bound events take slots from every thread on their CPU — so every hardware test
//! takes [`hw_shared`] and tests that open CPU-bound events, probe slots or hotplug CPUs take
//! [`hw_exclusive`] (an in-process RwLock plus an `flock` on a machine-wide file, so hwbp test
//! binaries of other worktrees wait too). Process targets are tested on child processes
//! (this binary re-executed with `HWBP_CHILD_ROLE`).

mod common;

use common::*;

use std::sync::atomic::{AtomicU64, Ordering};

use hwbp::{Target, Watch};
use hwbp_core::Access;

#[test]
fn thread_counts_exact_writes() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let w = Watch::new(Target::current_thread(), spec_of(&word, Access::Write)).unwrap();
    for i in 0..1000 {
        word.store(i, Ordering::Relaxed);
    }
    assert_eq!(w.count().unwrap(), 1000);
}

#[path = "linux/stream.rs"]
mod stream;

#[path = "linux/symbols.rs"]
mod symbols;
