//! hwbp: hardware watchpoints on Linux, through `perf_event_open(PERF_TYPE_BREAKPOINT)`.
//!
//! A [`Watch`] covers any region of memory (hwbp-core's planner splits it into aligned
//! pieces, one debug slot each) on a [`Target`] — a thread, a whole process including threads
//! created later, one CPU, or every CPU (hotplug-aware) — and counts every access exactly.
//! Arming and modifying are transactional. [`caps()`] reports what this machine allows.
//!
//! Where `unsafe` lives: only in [`sys`] (every system call) and its `mmap`/`signal`/`clock`
//! submodules. Everything else is safe code over [`std::os::fd::OwnedFd`], [`Tid`], [`Pid`]
//! and [`Cpu`].
//!
//! Not for: ptrace-based debugging (the `ptrace` backend) or printing (the CLI).
#![warn(missing_docs)]

pub mod attr;
pub mod caps;
pub mod error;
pub mod fake;
pub mod hotplug;
pub mod ring;
pub mod signal;
pub mod stream;
pub mod sys;
pub mod target;
pub mod watch;

pub use caps::{caps, Caps};
pub use error::{Cause, Error};
pub use hotplug::HotplugMonitor;
pub use sys::{Cpu, Errno, Pid, Tid};
pub use target::Target;
pub use watch::{Watch, WatchOptions};
