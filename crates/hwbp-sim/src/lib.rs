//! hwbp-sim: a deterministic multi-CPU machine for hwbp-core.
#![forbid(unsafe_code)]
