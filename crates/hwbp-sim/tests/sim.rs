//! hwbp-sim's integration tests: every scenario file, the scenario runner's own behaviour, and
//! property tests against a brute-force reference.

use std::path::PathBuf;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios")
}

#[test]
fn every_scenario_file_holds() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("tests/scenarios exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hwbp"))
        .collect();
    paths.sort();
    let mut failed = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let report = hwbp_sim::scenario::run(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.checked > 0, "{name} checks nothing");
        for f in report.failures {
            failed.push(f.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "failed expectations:\n{}",
        failed.join("\n")
    );
}

#[test]
fn failed_expectation_names_file_line_expected_and_actual() {
    let text = "cpus 1\nopen a cpu=0 w 0x1000/4 => ok\n\n# note\nopen b cpu=0 w 0x1001/4 => ok\n";
    let report = hwbp_sim::scenario::run(text, "demo.hwbp").unwrap();
    assert_eq!(
        report.output,
        [
            "cpus 1 => ok",
            "open a cpu=0 w 0x1000/4 => ok",
            "open b cpu=0 w 0x1001/4 => EINVAL"
        ]
    );
    assert_eq!(report.checked, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(
        report.failures[0].to_string(),
        "demo.hwbp:5: `open b cpu=0 w 0x1001/4`: expected ok, got EINVAL"
    );
}

#[test]
fn malformed_scenarios_are_a_distinct_error() {
    let cases = [
        ("open a w 0x1000/4\n", 1, "task=NAME or cpu=N"),
        ("cpus 1\nfly away\n", 2, "unknown command `fly`"),
        ("task t\ncpus 2\n", 2, "must come before"),
        ("open a cpu=0 q 0x1000\n", 1, "ACCESS must be"),
        ("run ghost on 0\n", 1, "unknown task `ghost`"),
        ("arch vax\n", 1, "unknown arch `vax`"),
        ("slots data=5\n", 1, "cannot have"),
        ("cpus 1 => \n", 1, "without an expected value"),
    ];
    for (text, line, needle) in cases {
        let e = hwbp_sim::scenario::run(text, "bad.hwbp").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line),
            ("bad.hwbp", line),
            "{text:?}: {e}"
        );
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn run_files_reports_pass_fail_and_malformed() {
    let dir = std::env::temp_dir().join(format!("hwbp-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.hwbp");
    let bad = dir.join("bad.hwbp");
    let broken = dir.join("broken.hwbp");
    std::fs::write(&good, "cpus 1\nopen a cpu=0 w 0x1000/4 => ok\n").unwrap();
    std::fs::write(&bad, "cpus 1\nopen a cpu=0 w 0x1000/4 => ENOSPC\n").unwrap();
    std::fs::write(&broken, "cpus\n").unwrap();
    let mut out = Vec::new();
    assert!(hwbp_sim::scenario::run_files(&[&good], &mut out).unwrap());
    let mut out = Vec::new();
    assert!(!hwbp_sim::scenario::run_files(&[&good, &bad], &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!(
            "FAILED {}:2: `open a cpu=0 w 0x1000/4`: expected ENOSPC, got ok",
            bad.display()
        )),
        "{text}"
    );
    let mut out = Vec::new();
    let e = hwbp_sim::scenario::run_files(&[&good, &broken], &mut out).unwrap_err();
    assert_eq!(e.line, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
