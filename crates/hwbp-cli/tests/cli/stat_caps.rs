//! `hwbp stat` (run and attach forms, per thread) and `hwbp caps` on this machine.

use serde_json::Value;

use super::hw::*;

#[test]
fn stat_attach_counts_threads_created_before_and_after_arming() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let (status, _, stderr) = on_waiting_fixture(
        fx,
        "700",
        "2",
        "3",
        &[
            "stat",
            "--json",
            "--watch",
            "counter",
            "--watch",
            "cfg.pos.y",
        ],
        "hwbp: counting 2 watches in pid {PID}; Ctrl-C to stop\n",
    );
    assert_eq!(status, 0, "{stderr}");
    let v: Value = serde_json::from_str(stderr.trim()).unwrap();
    let hits: Vec<u64> = v["watches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["hits"].as_u64().unwrap())
        .collect();
    // counter: 700 x (1 + 2 + 3); cfg.pos.y: the one store after arming.
    assert_eq!(hits, [4200, 1]);
    assert_eq!(v["exit_status"], Value::Null);
}

#[test]
fn stat_counts_exactly_per_watch_and_per_thread() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let exe = fx.target.to_str().unwrap();
    let (status, _, stderr) = run(&[
        "stat",
        "--watch",
        "counter",
        "--watch",
        "cfg.pos.y",
        "--",
        exe,
        "1000",
        "2",
        "2",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let counts: Vec<(u64, &str)> = stderr
        .lines()
        .filter(|l| l.contains(":w)"))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap().parse().unwrap(), it.next().unwrap())
        })
        .collect();
    assert_eq!(counts, [(5000, "counter"), (2, "cfg.pos.y")], "{stderr}");
    let (status, _, stderr) = run(&[
        "stat",
        "--per-thread",
        "--json",
        "--watch",
        "counter",
        "--",
        exe,
        "1000",
        "1",
        "2",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let v: Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(v["schema"], "hwbp.stat/1");
    let w = &v["watches"][0];
    assert_eq!(w["hits"], 4000);
    let per: Vec<u64> = w["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hits"].as_u64().unwrap())
        .collect();
    assert_eq!(per, [1000, 1000, 1000, 1000]);
}

#[test]
fn caps_reports_four_slots_and_a_passing_self_test() {
    let _hw = hw_shared();
    let (status, stdout, _) = run(&["caps", "--json"]);
    assert_eq!(status, 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["schema"], "hwbp.caps/1");
    assert_eq!(
        v["self_test"],
        serde_json::json!({"passed": true, "hits": 1})
    );
    assert_eq!(v["lengths"]["w"], serde_json::json!([1, 2, 4, 8]));
    // x86-64: the stop-mode agent is built in.
    assert_eq!(v["stop_agent"], cfg!(target_arch = "x86_64"));
    let mlock_kb: Option<u64> = std::fs::read_to_string("/proc/sys/kernel/perf_event_mlock_kb")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    assert_eq!(
        v["ring_memory"]["perf_event_mlock_kb"],
        serde_json::json!(mlock_kb)
    );
    let (status, stdout, _) = run(&["caps"]);
    assert_eq!(status, 0);
    assert!(stdout.contains("\nself-test:             passed (1 watched write, 1 hit)\n"));
    if cfg!(target_arch = "x86_64") {
        assert!(stdout.contains(
            "\nstop-mode agent:       yes (preloaded into programs `hwbp run --stop` starts)\n"
        ));
    }
}
