//! Every `unsafe` system call of hwbp.

pub mod mmap;
pub mod signal;
