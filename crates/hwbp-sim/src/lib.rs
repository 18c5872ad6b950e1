//! hwbp-sim: a deterministic multi-CPU machine for hwbp-core.
//!
//! [`machine::Machine`] runs the core's breakpoint manager on N possible CPUs with tasks,
//! hotplug, suspend/resume and memory accesses matched by the hardware's rules;
//! [`scenario`] runs the `hwbp sim` scenario language on it. No unsafe code, no system calls.
//!
//! Not for: real hardware (that is the `hwbp` crate).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arch_glue;
pub mod machine;
pub mod scenario;
