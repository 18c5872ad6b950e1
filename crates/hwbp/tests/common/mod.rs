//! Shared helpers of the integration binary.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicU64;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hwbp::sys::{lock_file, LockMode};
use hwbp_core::{Access, Spec};

static HW: RwLock<()> = RwLock::new(());

/// Machine-wide lock file shared by every hwbp test binary.
const LOCK_PATH: &str = "/tmp/hwbp-hardware-tests.lock";

/// Held by a test using the debug registers in a way others may disturb or be disturbed by.
pub struct HwGuard {
    _file: File,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

fn lock_file_open() -> File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .expect("open the hardware-test lock file")
}

/// For tests that only use task-bound breakpoints on their own threads or children.
pub fn hw_shared() -> HwGuard {
    let g = HW.read().unwrap_or_else(|p| p.into_inner());
    let file = lock_file_open();
    lock_file(file.as_fd(), LockMode::Shared).expect("flock shared");
    HwGuard {
        _file: file,
        _shared: Some(g),
        _exclusive: None,
    }
}

/// For tests that open CPU-bound events, probe slots, or hotplug CPUs.
pub fn hw_exclusive() -> HwGuard {
    let g = HW.write().unwrap_or_else(|p| p.into_inner());
    let file = lock_file_open();
    lock_file(file.as_fd(), LockMode::Exclusive).expect("flock exclusive");
    HwGuard {
        _file: file,
        _shared: None,
        _exclusive: Some(g),
    }
}

/// A user-mode spec over one 8-byte word.
pub fn spec_of(word: &AtomicU64, access: Access) -> Spec {
    Spec::user(word.as_ptr() as u64, 8, access)
}
