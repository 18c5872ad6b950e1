//! `run --backtrace` on code without frame pointers: the call stack comes from DWARF CFI
//! unwinding of the sampled registers and user stack (`"unwind":"dwarf"` in the hit record);
//! with `--stop`, of the stack copied at each stop (the agent's handler, or the tracer).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::hw::*;

/// (function, line) of the outermost frame of a site (the function the address is in).
fn func_line(site: &Value) -> (String, u64) {
    let f = site["frames"].as_array().unwrap().last().unwrap();
    (
        f["function"].as_str().unwrap_or("?").to_owned(),
        f["line"].as_u64().unwrap_or(0),
    )
}

/// Builds unwind.c without frame pointers as `name`.
fn build_nofp(fx: &Fixtures, name: &str) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unwind.c");
    let exe = fx.dir.join(name);
    sh(Command::new("cc")
        .args(["-g", "-O1", "-fomit-frame-pointer", "-fPIE", "-pie", "-o"])
        .arg(&exe)
        .arg(&src))
    .unwrap();
    (src, exe)
}

/// c wrote; b, a and main are its callers at their call lines; below main is libc's start
/// code (not checked: it depends on the libc build).
fn expected_chain(src: &Path) -> [(String, u64); 4] {
    let text = std::fs::read_to_string(src).unwrap();
    let line = |m: &str| text.lines().position(|l| l.contains(m)).unwrap() as u64 + 1;
    [
        ("c".to_owned(), line("UNWIND_WRITE")),
        ("b".to_owned(), line("UNWIND_CALL_C")),
        ("a".to_owned(), line("UNWIND_CALL_B")),
        ("main".to_owned(), line("UNWIND_CALL_A")),
    ]
}

/// The hit's site and its callers, as (function, line).
fn chain(hit: &Value) -> Vec<(String, u64)> {
    let mut stack = vec![func_line(hit)];
    stack.extend(hit["backtrace"].as_array().unwrap().iter().map(func_line));
    stack
}

#[test]
fn stop_mode_backtrace_unwinds_every_hit_with_the_agent_and_with_ptrace() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let (src, exe) = build_nofp(fx, "unwind_nofp_stop");
    let want = expected_chain(&src);
    for via in ["agent", "ptrace"] {
        let out = tmp(&format!("unwind-stop-{via}"));
        let (status, _, stderr) = run(&[
            "run",
            "--stop",
            "--stop-via",
            via,
            "--backtrace",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--watch",
            "target",
            "--",
            exe.to_str().unwrap(),
            "100",
        ]);
        assert_eq!((status, stderr.as_str()), (0, ""), "{via}");
        let recs = records(&out);
        assert_eq!(recs[0]["stop"], via, "{via}");
        let hits: Vec<&Value> = recs
            .iter()
            .filter(|r| r["schema"] == "hwbp.hit/2")
            .collect();
        assert_eq!(hits.len(), 100, "{via}: one stop per write");
        for (i, hit) in hits.iter().enumerate() {
            assert_eq!(hit["unwind"], "dwarf", "{via} hit {i}: {hit}");
            assert_eq!(
                (&hit["old_int"], &hit["new_int"]),
                (&json!(if i == 0 { 0 } else { 4 }), &json!(4)),
                "{via} hit {i}"
            );
            assert_eq!(chain(hit)[..4], want, "{via} hit {i}: {hit}");
        }
    }
    // Text: each hit line is followed by its callers, numbered as in non-stop mode.
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--backtrace",
        "--watch",
        "target",
        "--",
        exe.to_str().unwrap(),
        "3",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let lines: Vec<&str> = stdout.lines().collect();
    let hit_at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(" target = "))
        .collect();
    assert_eq!(hit_at.len(), 3, "{stdout}");
    for &i in &hit_at {
        assert!(
            lines[i].contains("  c (") && lines[i].ends_with(&format!("unwind.c:{})", want[0].1)),
            "{stdout}"
        );
        for (k, (f, l)) in want[1..].iter().enumerate() {
            let frame = lines[i + 1 + k].trim_start();
            assert!(
                frame.starts_with(&format!("#{} {f} (", k + 1))
                    && frame.ends_with(&format!("unwind.c:{l})")),
                "{stdout}"
            );
        }
    }
}

#[test]
fn dwarf_unwinding_walks_frames_without_frame_pointers() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let (src, exe) = build_nofp(fx, "unwind_nofp");
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
    assert_eq!(chain(hit)[..4], expected_chain(&src), "{hit}");
}
