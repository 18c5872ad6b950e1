//! hwbp: hardware watchpoints on Linux, through `perf_event_open(PERF_TYPE_BREAKPOINT)`.
//!
//! A [`Watch`] covers any region of memory (hwbp-core's planner splits it into aligned
//! pieces, one debug slot each) on a [`Target`] — a thread, a whole process including threads
//! created later, one CPU, or every CPU (hotplug-aware) — and counts every access exactly.
//! Arming and modifying are transactional. [`caps()`] reports what this machine allows.
//!
//! Three deliveries, one shape (`X::new(target, spec, options)`):
//! - count: [`Watch`] — exact hits per watch, [`Watch::count`];
//! - stream: [`Stream`] — every hit as a sample from perf ring buffers, lost records counted;
//! - signal: [`SignalWatch`] — synchronous SIGTRAP in the thread that touched the memory
//!   (this process only).
//!
//! Where `unsafe` lives: only in [`sys`] (every system call; `sys::mmap` for the ring buffers,
//! `sys::signal` for the SIGTRAP handler, `sys::ptrace` for ptrace and waitpid, `sys::clock`
//! for the clock, `sys::agent` for stop mode's in-process agent: memfds, shared ring, futex)
//! — the crate denies `unsafe_code` everywhere else. Everything above is safe code over
//! [`std::os::fd::OwnedFd`], [`Tid`], [`Pid`] and [`Cpu`]. The agent itself, preloaded into
//! the watched program, is the separate crate `hwbp-agent` (built by this crate's build.rs).
//!
//! Not for: ptrace-based debugging (the `ptrace` backend) or printing (the CLI).
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod attr;
pub mod caps;
pub mod error;
pub mod fake;
pub mod hotplug;
pub mod launch;
pub mod ptrace;
pub mod ring;
pub mod seize;
pub mod signal;
pub mod stream;
pub mod symbols;
#[allow(unsafe_code)]
pub mod sys;
pub mod target;
pub mod watch;

pub use caps::{caps, Caps};
pub use error::{Cause, Error};
pub use hotplug::HotplugMonitor;
pub use signal::{SignalOptions, SignalWatch};
pub use stream::{Stream, StreamOptions};
pub use sys::{Cpu, Errno, Pid, Tid};
pub use target::Target;
pub use watch::{Arming, LiveReason, ProcessArming, Watch, WatchOptions};
