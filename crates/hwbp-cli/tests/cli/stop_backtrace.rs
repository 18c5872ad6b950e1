//! `attach --stop --backtrace`: the tracer copies the stopped thread's stack at each hit and
//! the CLI unwinds it (the `run --stop --backtrace` tests of both backends are in unwind.rs).

use std::io::Write;

use serde_json::Value;

use super::*;

/// (function, line) of the outermost frame of a site.
fn func_line(site: &Value) -> (String, u64) {
    let f = site["frames"].as_array().unwrap().last().unwrap();
    (
        f["function"].as_str().unwrap_or("?").to_owned(),
        f["line"].as_u64().unwrap_or(0),
    )
}

#[test]
fn attach_stop_backtrace_unwinds_every_hit() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-attach-backtrace");
    let mut target = waiting(exe, &["seq", "50"], None);
    let (hwbp, mut err) = attach(
        target.id(),
        &[
            "--backtrace",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--watch",
            "target",
        ],
    );
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(target.wait().unwrap().success());
    let status = hwbp.wait_with_output().unwrap().status;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(0), ""));
    let recs = records(&out);
    assert_eq!(recs[0]["stop"], "ptrace");
    let hits = stop_hits(&recs);
    assert_eq!(hits.len(), 50);
    let store = line_of_stop("i < from + n; i++) { target = f(i)");
    let call = line_of_stop("if (!strcmp(mode, \"seq\")) seq(0, atol(argv[2]));");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h["unwind"], "dwarf", "hit {i}: {h}");
        assert_eq!(h["new_int"], f(i as i64), "hit {i}");
        let callers: Vec<(String, u64)> = h["backtrace"]
            .as_array()
            .unwrap()
            .iter()
            .map(func_line)
            .collect();
        assert_eq!(
            (func_line(h), callers[0].clone()),
            (("seq".to_owned(), store), ("main".to_owned(), call)),
            "hit {i}: {h}"
        );
    }
}
