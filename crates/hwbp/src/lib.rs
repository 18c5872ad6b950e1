//! hwbp: hardware watchpoints on Linux.

pub mod ring;
pub mod signal;
mod sys;
