//! `run --backtrace` on code without frame pointers: the call stack comes from DWARF CFI
//! unwinding of the sampled registers and user stack (`"unwind":"dwarf"` in the hit record).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::hw::*;

/// (function, line) of the outermost frame of a site (the function the address is in).
fn func_line(site: &Value) -> (String, u64) {
    let f = site["frames"].as_array().unwrap().last().unwrap();
    (
        f["function"].as_str().unwrap_or("?").to_owned(),
        f["line"].as_u64().unwrap_or(0),
    )
}

#[test]
fn dwarf_unwinding_walks_frames_without_frame_pointers() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unwind.c");
    let exe = fx.dir.join("unwind_nofp");
    sh(Command::new("cc")
        .args(["-g", "-O1", "-fomit-frame-pointer", "-fPIE", "-pie", "-o"])
        .arg(&exe)
        .arg(&src))
    .unwrap();
    let out = tmp("unwind");
    let (status, _, stderr) = run(&[
        "run",
        "--backtrace",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "target",
        "--",
        exe.to_str().unwrap(),
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let recs = records(&out);
    let hits: Vec<&Value> = recs
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .collect();
    assert_eq!(hits.len(), 1, "{recs:?}");
    let hit = hits[0];
    assert_eq!(hit["unwind"], "dwarf", "{hit}");
    let line = |m: &str| {
        let text = std::fs::read_to_string(&src).unwrap();
        text.lines().position(|l| l.contains(m)).unwrap() as u64 + 1
    };
    let mut stack = vec![func_line(hit)];
    stack.extend(hit["backtrace"].as_array().unwrap().iter().map(func_line));
    // c wrote; b, a and main are its callers at their call lines; below main is libc's
    // start code (not checked: it depends on the libc build).
    assert_eq!(
        stack[..4],
        [
            ("c".to_owned(), line("UNWIND_WRITE")),
            ("b".to_owned(), line("UNWIND_CALL_C")),
            ("a".to_owned(), line("UNWIND_CALL_B")),
            ("main".to_owned(), line("UNWIND_CALL_A")),
        ],
        "{hit}"
    );
}
