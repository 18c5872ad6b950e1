//! `hwbp run`, `attach`, `stat`, `demo` and `caps` on this machine's debug registers, against
//! the C fixtures of crates/hwbp/tests/fixtures (built here with the system `cc`): exact hit
//! counts, the exact file:line of every writer, every JSON line checked against the schema of
//! docs/JSON.md, and every error path with exit status 2 and nothing left running.
//!
//! The fixture `watch_target [WRITES [BEFORE [AFTER]]]` makes `WRITES` stores to `counter`
//! from each of 1 + BEFORE + AFTER threads (BEFORE threads exist before it waits for a byte on
//! stdin, AFTER threads are created after), 2 stores to `cfg.pos.y` and `table[3]` (one before
//! the wait, one after), `WRITES` stores to `lib_counter` in libwatchlib.so. With
//! `HWBP_FIXTURE_NO_WAIT=1` it does not wait.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::hw::*;

#[test]
fn run_counts_every_write_of_every_thread_with_its_line() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("run-counter");
    let (status, stdout, stderr) = run(&[
        "run",
        "-q",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "counter",
        "--",
        fx.target.to_str().unwrap(),
        "1000",
        "2",
        "3",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    // (The program's own count races between its threads; the hits do not.)
    assert!(stdout.contains("done counter="), "{stdout}");
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "start and summary only with -q");
    let s = summary(&recs);
    // 1000 writes by main + 2 + 3 threads, all created after arming (at the entry point).
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(6000), Some(6000))
    );
    assert_eq!(
        (s["lost"].as_u64(), s["exit_status"].as_i64()),
        (Some(0), Some(0))
    );
    let line = line_of("watch_target.c", "COUNTER_WRITE */");
    assert_eq!(
        sites(s),
        [site(
            "counter",
            "bump_counter",
            "watch_target.c",
            line,
            6000,
            6
        )]
    );
}

#[test]
fn attach_counts_threads_created_before_and_after_arming() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("attach");
    let o = out.to_str().unwrap();
    let (status, _, stderr) = on_waiting_fixture(
        fx,
        "500",
        "3",
        "2",
        &["attach", "-q", "--json", "-o", o, "--watch", "counter"],
        "hwbp: watching 1 watch in pid {PID}; Ctrl-C to stop\n",
    );
    assert_eq!((status, stderr.as_str()), (0, ""));
    let s = summary(&records(&out)).clone();
    // main + 3 threads created before arming + 2 after: 6 x 500.
    assert_eq!(
        (s["seen"].as_u64(), s["lost"].as_u64()),
        (Some(3000), Some(0))
    );
    let line = line_of("watch_target.c", "COUNTER_WRITE */");
    assert_eq!(
        sites(&s),
        [site(
            "counter",
            "bump_counter",
            "watch_target.c",
            line,
            3000,
            6
        )]
    );
    // --tid PID: the main thread's (tid = pid) 500 writes only.
    let (status, _, _) = on_waiting_fixture(
        fx,
        "500",
        "3",
        "2",
        &[
            "attach", "-q", "--json", "-o", o, "--tid", "{PID}", "--watch", "counter",
        ],
        "hwbp: watching 1 watch in pid {PID}; Ctrl-C to stop\n",
    );
    assert_eq!(status, 0);
    let s = summary(&records(&out)).clone();
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(3000), Some(500))
    );
}

#[test]
fn struct_fields_array_elements_and_library_symbols() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("fields");
    let (status, stdout, stderr) = run(&[
        "run",
        "-q",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "cfg.pos.y",
        "--watch",
        "table[3]",
        "--watch",
        "libwatchlib.so:lib_state.totals[2]",
        "--watch",
        "lib_counter",
        "--",
        fx.target.to_str().unwrap(),
        "10",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let recs = records(&out);
    // Resolved addresses are the ones the program prints about itself.
    let printed = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("addr {name} ")))
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .to_owned()
    };
    let watches = recs[0]["watches"].as_array().unwrap();
    for (w, name) in watches.iter().zip([
        "cfg.pos.y",
        "table[3]",
        "libwatchlib.so:lib_state.totals[2]",
        "lib_counter",
    ]) {
        assert_eq!(w["addr"].as_str().unwrap(), printed(name), "{name}");
    }
    assert_eq!(
        watches
            .iter()
            .map(|w| w["len"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 8, 8, 8]
    );
    let mut got = sites(summary(&recs));
    got.sort();
    assert_eq!(
        got,
        [
            site(
                "cfg.pos.y",
                "touch_fields",
                "watch_target.c",
                line_of("watch_target.c", "CFG_POS_Y_WRITE */"),
                2,
                1
            ),
            site(
                "lib_counter",
                "lib_bump",
                "watchlib.c",
                line_of("watchlib.c", "LIB_COUNTER_WRITE */"),
                10,
                1
            ),
            site(
                "table[3]",
                "touch_fields",
                "watch_target.c",
                line_of("watch_target.c", "TABLE3_WRITE */"),
                2,
                1
            ),
        ]
    );
}

#[test]
fn text_lines_show_thread_access_value_and_site() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("text");
    let (status, _, stderr) = run(&[
        "run",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "cfg.pos.y",
        "--",
        fx.target.to_str().unwrap(),
        "1",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let line = line_of("watch_target.c", "CFG_POS_Y_WRITE */");
    let suffix = format!(
        " watch_target    w  cfg.pos.y = 42  touch_fields ({}:{line})",
        src("watch_target.c").display()
    );
    let hits: Vec<&str> = text.lines().filter(|l| l.ends_with(&suffix)).collect();
    assert_eq!(hits.len(), 2, "{text}");
    assert!(
        text.contains("\n2 hits seen, 2 reported, 0 lost in "),
        "{text}"
    );
}

#[test]
fn changed_reports_only_the_write_that_changed_the_value() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("changed");
    // cfg.pos.y: 0 -> 42, then 42 -> 42.
    let (status, _, stderr) = run(&[
        "run",
        "--changed",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "cfg.pos.y",
        "--",
        fx.target.to_str().unwrap(),
        "1",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let recs = records(&out);
    let hits: Vec<&Value> = recs
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (
            &hits[0]["changed"],
            &hits[0]["value_int"],
            &hits[0]["value"]
        ),
        (
            &Value::Bool(true),
            &Value::from(42),
            &Value::from("0x0000002a")
        )
    );
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn limit_stops_reporting_and_tid_filters() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("limit");
    let (status, _, _) = run(&[
        "run",
        "--limit",
        "5",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "counter",
        "--",
        fx.target.to_str().unwrap(),
        "100",
    ]);
    assert_eq!(status, 0);
    let recs = records(&out);
    assert_eq!(
        recs.iter().filter(|r| r["schema"] == "hwbp.hit/1").count(),
        5
    );
    assert_eq!(summary(&recs)["reported"].as_u64(), Some(5));
    // --tid of a thread that does not exist: every hit is seen, none reported.
    let (status, _, _) = run(&[
        "run",
        "--tid",
        "1",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "counter",
        "--",
        fx.target.to_str().unwrap(),
        "100",
        "0",
        "1",
    ]);
    assert_eq!(status, 0);
    let recs = records(&out);
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(200), Some(0))
    );
}

#[test]
fn trace_out_has_one_track_per_thread_and_an_event_per_hit() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let trace = tmp("trace");
    let (status, _, stderr) = run(&[
        "run",
        "-q",
        "-o",
        "/dev/null",
        "--trace-out",
        trace.to_str().unwrap(),
        "--watch",
        "counter",
        "--",
        fx.target.to_str().unwrap(),
        "10",
        "0",
        "2",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let v: Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let evs = v["traceEvents"].as_array().unwrap();
    let count = |ph: &str, name: Option<&str>| {
        evs.iter()
            .filter(|e| e["ph"] == ph && name.is_none_or(|n| e["name"] == n))
            .count()
    };
    assert_eq!(count("i", Some("w counter")), 30);
    assert_eq!(count("M", Some("thread_name")), 3);
    assert_eq!(count("M", Some("process_name")), 1);
}

#[test]
fn run_exits_with_the_programs_status() {
    let _hw = hw_shared();
    let (status, stdout, _) = run(&[
        "run",
        "-q",
        "--watch",
        "0x10000/8",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(status, 7);
    assert!(
        stdout.starts_with("\n0 hits seen, 0 reported, 0 lost in "),
        "{stdout}"
    );
    let (status, _, _) = run(&[
        "run",
        "-q",
        "--watch",
        "0x10000/8",
        "--",
        "sh",
        "-c",
        "kill $$",
    ]);
    assert_eq!(status, 128 + 15);
}

#[test]
fn demo_pins_the_rogue_write_to_its_function_and_line() {
    let _hw = hw_shared();
    let (status, stdout, stderr) = run(&["demo"]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo_target.rs"))
            .unwrap();
    let line = |marker: &str| text.lines().position(|l| l.contains(marker)).unwrap() + 1;
    let rogue = line("// ROGUE_WRITE");
    // The table: 4 tellers x 2500 updates, half deposits, half withdrawals; one rogue write.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.contains("demo_target::BALANCE  w"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |f: &str| {
        rows.iter()
            .find(|r| r[3] == f)
            .map(|r| (r[0], r[4], r[5]))
            .unwrap_or_else(|| panic!("no row for {f}: {stdout}"))
    };
    let deposit = format!(
        "hwbp-cli/src/demo_target.rs:{}",
        line("BALANCE.fetch_add(cents")
    );
    let withdraw = format!(
        "hwbp-cli/src/demo_target.rs:{}",
        line("BALANCE.fetch_sub(cents")
    );
    let rogue_at = format!("hwbp-cli/src/demo_target.rs:{rogue}");
    assert_eq!(
        row("hwbp::demo_target::deposit"),
        ("5000", deposit.as_str(), "4")
    );
    assert_eq!(
        row("hwbp::demo_target::withdraw"),
        ("5000", withdraw.as_str(), "4")
    );
    assert_eq!(
        row("hwbp::demo_target::rogue_audit_adjustment"),
        ("1", rogue_at.as_str(), "1")
    );
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(stdout.contains("\n10001 hits seen, 10001 reported, 0 lost in "));
    let suspect = stdout
        .lines()
        .find(|l| l.contains("rogue_audit_adjustment (") && l.contains(" by thread "))
        .unwrap();
    assert!(
        suspect.starts_with(&format!(
            "  hwbp::demo_target::rogue_audit_adjustment ({rogue_at}) by thread "
        )) && suspect.ends_with(" (audit)"),
        "{suspect}"
    );
}

#[test]
fn backtrace_names_each_writers_caller() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("backtrace");
    let (status, _, stderr) = run(&[
        "run",
        "--backtrace",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "counter",
        "--",
        fx.frame_pointers.to_str().unwrap(),
        "3",
        "0",
        "1",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let recs = records(&out);
    let mut callers: Vec<String> = recs
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .map(|r| {
            let caller = &r["backtrace"][0];
            let frames = caller["frames"].as_array().unwrap();
            frames.last().unwrap()["function"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    callers.sort();
    // bump_counter(3) from main and from the one late thread.
    assert_eq!(
        callers,
        [
            "late_writer",
            "late_writer",
            "late_writer",
            "main",
            "main",
            "main"
        ]
    );
}

#[test]
fn ctrl_c_prints_the_summary_and_terminates_the_program_like_perf_record() {
    let _hw = hw_shared();
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args([
            "run",
            "--json",
            "--watch",
            "0x10000/8",
            "--",
            "sleep",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(hwbp.stdout.take().unwrap()).lines();
    let start: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(start["schema"], "hwbp.start/1");
    let child = start["pid"].as_u64().unwrap() as u32;
    signal(hwbp.id(), libc::SIGINT);
    let status = hwbp.wait().unwrap();
    // The program got SIGTERM: hwbp exits with 128 + 15, after the summary.
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let last: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(last["schema"], "hwbp.summary/1");
    assert_eq!(last["exit_status"], 128 + libc::SIGTERM);
    assert!(!Path::new(&format!("/proc/{child}")).exists());
}

#[test]
fn ctrl_c_on_attach_leaves_the_process_running() {
    let _hw = hw_shared();
    let mut target = Command::new("sleep").arg("100").spawn().unwrap();
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(["attach", "-q", "-p", &target.id().to_string()])
        .args(["--watch", "0x10000/8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(hwbp.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("hwbp: watching 1 watch in pid "),
        "{first}"
    );
    signal(hwbp.id(), libc::SIGTERM);
    let out = hwbp.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("\n0 hits seen, 0 reported, 0 lost"));
    // Still running, not stopped, no perf event left in it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", target.id())).unwrap();
    assert!(status.contains("State:\tS (sleeping)"), "{status}");
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
    assert_eq!(target.try_wait().unwrap(), None);
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn watches_are_armed_before_constructors_run() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctor.c");
    let exe = fx.dir.join("ctor");
    sh(Command::new("cc")
        .args(["-g", "-O1", "-o"])
        .arg(&exe)
        .arg(&src))
    .unwrap();
    let out = tmp("ctor");
    let (status, _, stderr) = run(&[
        "run",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "early",
        "--",
        exe.to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{stderr}");
    let text = std::fs::read_to_string(&src).unwrap();
    let line = |m: &str| text.lines().position(|l| l.contains(m)).unwrap() as u64 + 1;
    let hits: Vec<(String, u64, i64)> = records(&out)
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .map(|r| {
            (
                r["function"].as_str().unwrap().to_owned(),
                r["line"].as_u64().unwrap(),
                r["value_int"].as_i64().unwrap(),
            )
        })
        .collect();
    // Values are read at the program's exit stop: 2 for both.
    assert_eq!(
        hits,
        [
            ("init".to_owned(), line("CTOR_WRITE"), 2),
            ("main".to_owned(), line("MAIN_WRITE"), 2)
        ]
    );
}

#[test]
fn attach_duration_ends_the_watch_and_leaves_the_process_running() {
    let _hw = hw_shared();
    let mut target = Command::new("sleep").arg("100").spawn().unwrap();
    let (status, stdout, stderr) = run(&[
        "attach",
        "--json",
        "--duration",
        "0.2",
        "-p",
        &target.id().to_string(),
        "--watch",
        "0x10000/8",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["schema"], &last["seen"]),
        (&Value::from("hwbp.summary/1"), &Value::from(0))
    );
    assert_eq!(last["exit_status"], Value::Null);
    assert_eq!(target.try_wait().unwrap(), None, "the process runs on");
    target.kill().unwrap();
    target.wait().unwrap();
    for cmd in ["attach", "stat"] {
        let args = [cmd, "--duration=0", "-p", "1", "--watch", "0x10000/8"];
        let (status, _, stderr) = run(&args);
        assert_eq!(
            (status, stderr.as_str()),
            (2, "hwbp: --duration 0: give a positive number of seconds\n")
        );
    }
}

#[test]
fn execute_breakpoint_reports_the_instruction_itself() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let out = tmp("exec");
    let (status, _, stderr) = run(&[
        "run",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "bump_counter:x",
        "--",
        fx.target.to_str().unwrap(),
        "3",
        "0",
        "1",
    ]);
    assert_eq!(status, 0, "{stderr}");
    let recs = records(&out);
    let start = &recs[0]["watches"][0];
    let hits: Vec<&Value> = recs
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .collect();
    // Called once by main and once by the late thread; an execute breakpoint traps before
    // the instruction, so the reported IP is the function's first instruction.
    assert_eq!(hits.len(), 2);
    for h in &hits {
        assert_eq!(
            (&h["ip"], &h["function"]),
            (&start["addr"], &Value::from("bump_counter"))
        );
        assert_eq!(
            (&h["access"], &h["value"]),
            (&Value::from("x"), &Value::Null)
        );
    }
    let tids: std::collections::BTreeSet<u64> =
        hits.iter().map(|h| h["tid"].as_u64().unwrap()).collect();
    assert_eq!(tids.len(), 2);
}

#[test]
fn status_line_only_on_a_terminal() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    // Not a terminal (every other test): stderr stays empty.
    let (status, _, stderr) = run(&[
        "run",
        "-q",
        "--watch",
        "counter",
        "--",
        fx.target.to_str().unwrap(),
        "100",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    // A terminal: `script` gives hwbp a pseudo-terminal.
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip_note!("SKIP: no `script` (util-linux) to run hwbp on a pseudo-terminal");
        return;
    }
    let cmd = format!(
        "{} run -q --watch counter -- {} 100 > /dev/null",
        env!("CARGO_BIN_EXE_hwbp"),
        fx.target.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HWBP_FIXTURE_NO_WAIT", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    // Drawn at least once (the first refresh is immediate), then erased before exit.
    assert!(tty.contains(" total, 0 lost\x1b[K"), "{tty:?}");
    assert!(tty.ends_with("\r\x1b[K"), "{tty:?}");
}

#[test]
fn a_writer_in_a_library_loaded_later_is_symbolized() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (exe, lib) = (fx.dir.join("dlopen_main"), fx.dir.join("libpoke.so"));
    sh(Command::new("cc")
        .args(["-g", "-O1", "-o"])
        .arg(&exe)
        .arg(dir.join("dlopen_main.c"))
        .arg("-ldl"))
    .unwrap();
    sh(Command::new("cc")
        .args(["-g", "-O1", "-fPIC", "-shared", "-o"])
        .arg(&lib)
        .arg(dir.join("poke.c")))
    .unwrap();
    let out = tmp("dlopen");
    let (status, _, stderr) = run(&[
        "run",
        "-q",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "shared",
        "--",
        exe.to_str().unwrap(),
        lib.to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{stderr}");
    let text = std::fs::read_to_string(dir.join("poke.c")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("POKE_WRITE */"))
        .unwrap() as u64
        + 1;
    assert_eq!(
        sites(summary(&records(&out))),
        [site("shared", "poke", "poke.c", line, 1, 1)]
    );
}
