//! hwbp-core's integration tests: one binary, one module per area.

#[path = "core/arm64_power.rs"]
mod arm64_power;
#[path = "core/common.rs"]
mod common;
#[path = "core/regfile_props.rs"]
mod regfile_props;
#[path = "core/reserve_props.rs"]
mod reserve_props;
