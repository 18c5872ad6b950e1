//! hwbp: hardware watchpoints on Linux.
pub mod symbols;
