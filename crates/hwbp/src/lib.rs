//! hwbp: hardware watchpoints on Linux.
pub mod ptrace;
pub mod sys;
