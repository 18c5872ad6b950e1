//! hwbp-core: the hardware-breakpoint layer without an operating system.
//!
//! What a hardware breakpoint is on each architecture (validation with Linux's exact rules,
//! register encodings), how any memory region is covered by the fewest hardware slots
//! (planning), and the per-thread debug-register file model. Slot reservation across CPUs and
//! tasks and the per-CPU lifecycle build on these.
//!
//! Not for: talking to an OS. Nothing here performs a system call; the Linux backend
//! (`hwbp` crate) and the simulator (`hwbp-sim`) drive this code.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod access;
pub mod arch;
pub mod attr;
pub mod error;
pub mod hit;
pub mod manager;
pub mod percpu;
pub mod regfile;
pub mod reserve;
pub mod spec;

pub use access::Access;
pub use attr::{BpAttr, PoolKind};
pub use error::{ErrorClass, PlanError, RuleError};
pub use regfile::{RegFile, WatchId};
pub use spec::{Privilege, Region, Spec};
