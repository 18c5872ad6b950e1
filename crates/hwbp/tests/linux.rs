//! The hwbp crate's single integration-test binary: one module per area under `tests/linux/`.

#[path = "linux/ptrace.rs"]
mod ptrace;
