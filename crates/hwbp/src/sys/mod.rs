//! The only module with `unsafe`: raw Linux system calls, each wrapped once.

pub mod ptrace;
