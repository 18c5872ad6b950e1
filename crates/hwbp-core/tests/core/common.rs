//! Helpers shared by the sections of the core test binary.

use hwbp_core::arch::{parse, Arch, ParseCtx};
use hwbp_core::{PlanError, Spec};

/// Checks that a successful plan covers exactly the spec's bytes: pieces in address order,
/// disjoint, contiguous, from the first byte to the last, each inside its hardware window,
/// each valid on its own. Returns how many pieces have a window wider than what they cover.
pub fn check_plan_covers<A: Arch>(arch: &A, spec: &Spec) -> Result<usize, PlanError> {
    let chunks = arch.plan(spec)?;
    assert!(!chunks.is_empty(), "{spec}: empty plan");
    let mut next = spec.region.addr;
    let mut wide = 0;
    for c in &chunks {
        if spec.access.is_data() {
            assert_eq!(c.covers.addr, next, "{spec}: gap or overlap at {next:#x}");
            next = c.covers.end().expect("covers does not wrap");
        }
        assert!(
            c.window.contains(&c.covers),
            "{spec}: window {} does not hold {}",
            c.window,
            c.covers
        );
        if !c.is_exact() {
            wide += 1;
        }
        assert_eq!(c.access(), spec.access, "{spec}");
        let hw = parse(arch, &c.attr, ParseCtx::ROOT_TASK);
        assert!(hw.is_ok(), "{spec}: piece {:?} refused: {hw:?}", c.attr);
        assert_eq!(
            arch.hw_window(&hw.unwrap()),
            c.window,
            "{spec}: the setting watches other bytes than the chunk says"
        );
    }
    if spec.access.is_data() {
        assert_eq!(Some(next), spec.region.end(), "{spec}: plan stops short");
    }
    Ok(wide)
}
