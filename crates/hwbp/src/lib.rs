//! hwbp: hardware watchpoints on Linux.
