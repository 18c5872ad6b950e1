//! `run --backtrace` under a storm of hits: every hit is reported with its whole DWARF-unwound
//! call stack or counted in `lost` — exactly — and a storm paced to the ring loses nothing.
//!
//! The fixture `storm N BURST` (tests/fixtures/storm.c) stores N times to `target` from
//! poke <- burst <- main, in bursts of BURST stores, reading one byte from stdin before each.
//!
//! What is guaranteed, and so asserted: a sample with its 8 KiB stack copy is at most ~9.2 KiB
//! (8312 bytes measured here, plus at most 127 kernel callchain entries), so one CPU's
//! 64 MiB `--backtrace` ring holds more than 7,000. A burst of 5,000 that starts only once the
//! test has read every hit before it (so no earlier sample is still in a ring) fits in a ring
//! even if hwbp's reader did not run at all during it: `lost` 0 holds on any machine load
//! (the sizes are checked by the unit test
//! `run::tests::a_backtrace_ring_holds_a_burst_of_5000_largest_samples`).
//! An unpaced storm of 50,000 does not fit: whether hwbp's drainer thread keeps up depends on
//! the scheduler (it did in every run measured, see docs/BENCHMARKS.md), so that test asserts
//! the exact accounting — reported + lost = N, every reported hit with its full stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::hw::*;

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/storm.c")
}

/// The fixture, built once without frame pointers, or `None` (with the reason printed).
fn fixture() -> Option<&'static Path> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let exe = EXE.get_or_init(|| {
        let fx = fixtures().ok_or("no C fixtures")?;
        let exe = fx.dir.join("storm_nofp");
        sh(Command::new("cc")
            .args(["-g", "-O1", "-fomit-frame-pointer", "-fPIE", "-pie", "-o"])
            .arg(&exe)
            .arg(source()))?;
        Ok(exe)
    });
    match exe {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build storm.c: {why}");
            None
        }
    }
}

/// The 1-based line of storm.c containing `marker`.
fn line(marker: &str) -> u64 {
    let text = std::fs::read_to_string(source()).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u64 + 1
}

/// (function, line) of the outermost frame of a site (the function the address is in).
fn func_line(site: &Value) -> (String, u64) {
    let f = site["frames"].as_array().unwrap().last().unwrap();
    (
        f["function"].as_str().unwrap_or("?").to_owned(),
        f["line"].as_u64().unwrap_or(0),
    )
}

/// What one storm printed.
struct Storm {
    status: i32,
    stderr: String,
    hits: Vec<Value>,
    summary: Value,
}

/// Runs `hwbp run --backtrace --json --watch target -- storm N BURST`, sending the byte for
/// each next burst once every hit of the bursts before it has been read from hwbp's output.
fn storm(exe: &Path, n: u64, burst: u64) -> Storm {
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(["run", "--backtrace", "--json", "--watch", "target", "--"])
        .arg(exe)
        .args([n.to_string(), burst.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = watchdog(hwbp.id());
    let mut err = hwbp.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut to_fixture = Some(hwbp.stdin.take().unwrap());
    let mut go = |sent: &mut u64| {
        if let Some(w) = &mut to_fixture {
            w.write_all(b"g").unwrap();
            *sent += 1;
            if *sent * burst >= n {
                // The last burst: EOF lets a stuck fixture exit.
                to_fixture = None;
            }
        }
    };
    let mut sent = 0u64;
    go(&mut sent);
    let mut hits = Vec::new();
    let mut summary = Value::Null;
    for l in BufReader::new(hwbp.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        check_record(&v);
        match v["schema"].as_str() {
            Some("hwbp.hit/1") => {
                hits.push(v);
                if hits.len() as u64 == sent * burst {
                    go(&mut sent);
                }
            }
            Some("hwbp.summary/1") => summary = v,
            _ => {}
        }
    }
    let status = hwbp.wait().unwrap().code().unwrap_or_else(|| {
        panic!(
            "hwbp was killed by the watchdog after {} of {n} hits (a burst never completed)",
            hits.len()
        )
    });
    drop(done);
    Storm {
        status,
        stderr: stderr.join().unwrap(),
        hits,
        summary,
    }
}

/// Every hit has the full stack poke <- burst <- main, found by DWARF unwinding.
fn assert_full_stacks(hits: &[Value]) {
    let want = [
        ("poke".to_owned(), line("STORM_WRITE")),
        ("burst".to_owned(), line("STORM_CALL_POKE")),
        ("main".to_owned(), line("STORM_CALL_BURST")),
    ];
    for hit in hits {
        assert_eq!(hit["unwind"], "dwarf", "{hit}");
        let mut stack = vec![func_line(hit)];
        stack.extend(hit["backtrace"].as_array().unwrap().iter().map(func_line));
        assert_eq!(stack.get(..3), Some(&want[..]), "{hit}");
    }
}

#[test]
fn paced_storm_reports_every_hit_with_its_stack_and_loses_none() {
    let Some(exe) = fixture() else { return };
    let _hw = hw_shared();
    const N: u64 = 50_000;
    // 5,000 samples of at most ~9.4 KiB: 47 MB, less than one 64 MiB ring (module docs).
    let s = storm(exe, N, 5_000);
    assert_eq!((s.status, s.stderr.as_str()), (0, ""));
    assert_eq!(s.hits.len() as u64, N);
    assert_full_stacks(&s.hits);
    assert_eq!(
        (
            &s.summary["seen"],
            &s.summary["reported"],
            &s.summary["lost"]
        ),
        (&Value::from(N), &Value::from(N), &Value::from(0)),
        "{}",
        s.summary
    );
}

#[test]
fn unpaced_storm_reports_or_counts_every_hit_exactly() {
    let Some(exe) = fixture() else { return };
    let _hw = hw_shared();
    const N: u64 = 50_000;
    let s = storm(exe, N, N);
    assert_eq!((s.status, s.stderr.as_str()), (0, ""));
    assert_full_stacks(&s.hits);
    let reported = s.hits.len() as u64;
    let lost = s.summary["lost"].as_u64().unwrap();
    assert_eq!(s.summary["seen"].as_u64(), Some(reported), "{}", s.summary);
    assert_eq!(reported + lost, N, "{}", s.summary);
    if lost > 0 {
        // Not a failure (the drainer was not scheduled in time; the count is exact), but
        // worth seeing in a passing run.
        skip_note!("note: the unpaced --backtrace storm lost {lost} of {N} hits (counted)");
    }
}
