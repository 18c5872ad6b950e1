//! hwbp's integration tests (one binary per crate; see the modules).

#[path = "linux/symbols.rs"]
mod symbols;
