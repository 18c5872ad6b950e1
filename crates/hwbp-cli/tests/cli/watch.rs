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

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// Every hardware test holds the machine-wide shared lock of the hwbp test suites (tests
/// that open CPU-wide events, which take slots from every thread, hold it exclusively).
fn hw_shared() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open("/tmp/hwbp-hardware-tests.lock")
        .expect("open the hardware-test lock file");
    hwbp::sys::lock_file(f.as_fd(), hwbp::sys::LockMode::Shared).expect("flock shared");
    f
}

struct Fixtures {
    dir: PathBuf,
    target: PathBuf,
    /// `watch_target` with frame pointers (for `--backtrace`).
    frame_pointers: PathBuf,
    no_dwarf: PathBuf,
    stripped: Option<PathBuf>,
}

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hwbp/tests/fixtures")
        .join(name)
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn build() -> Result<Fixtures, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    sh(Command::new("cc")
        .args(["-g", "-O1", "-fPIC", "-shared", "-o"])
        .arg(dir.join("libwatchlib.so"))
        .arg(src("watchlib.c")))?;
    let exe = |out: &str, flags: &[&str]| -> Result<PathBuf, String> {
        let path = dir.join(out);
        sh(Command::new("cc")
            .args(flags)
            .args(["-fPIE", "-pie", "-pthread", "-o"])
            .arg(&path)
            .arg(src("watch_target.c"))
            .arg("-L")
            .arg(&dir)
            .args(["-lwatchlib", "-Wl,-rpath,$ORIGIN"]))?;
        Ok(path)
    };
    let target = exe("watch_target", &["-g", "-O1"])?;
    let no_dwarf = exe("watch_target_nodwarf", &["-O1"])?;
    let frame_pointers = exe(
        "watch_target_fp",
        // gcc 12 -O1 drops the frame pointer of the leaf bump_counter even with
        // -fno-omit-frame-pointer; at -O0 every function keeps it.
        &["-g", "-O0", "-fno-omit-frame-pointer"],
    )?;
    let stripped = dir.join("watch_target_stripped");
    std::fs::copy(&target, &stripped).map_err(|e| e.to_string())?;
    let stripped = sh(Command::new("strip").arg(&stripped))
        .ok()
        .map(|()| stripped);
    Ok(Fixtures {
        dir,
        target,
        frame_pointers,
        no_dwarf,
        stripped,
    })
}

/// The fixtures, or `None` (with the reason printed) where no C compiler exists.
fn fixtures() -> Option<&'static Fixtures> {
    static F: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    match F.get_or_init(build) {
        Ok(f) => Some(f),
        Err(why) => {
            eprintln!("SKIP: cannot build the C fixtures: {why}");
            None
        }
    }
}

/// The 1-based line of the line of `file` containing `marker`.
fn line_of(file: &str, marker: &str) -> u64 {
    let text = std::fs::read_to_string(src(file)).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u64 + 1
}

/// Runs hwbp with the fixture not waiting; returns (status, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(args)
        .env("HWBP_FIXTURE_NO_WAIT", "1")
        .stdin(Stdio::null())
        .output()
        .expect("hwbp runs");
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-out");
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}-{}", std::process::id()))
}

fn is_hex(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.starts_with("0x") && s.len() > 2 && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn opt(v: &Value, f: fn(&Value) -> bool) -> bool {
    v.is_null() || f(v)
}

fn check_frames(v: &Value) {
    for f in v.as_array().expect("frames is an array") {
        assert!(opt(&f["function"], Value::is_string), "{f}");
        assert!(opt(&f["file"], Value::is_string), "{f}");
        assert!(opt(&f["line"], Value::is_u64), "{f}");
        assert!(opt(&f["column"], Value::is_u64), "{f}");
        assert!(f["inlined"].is_boolean(), "{f}");
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

/// Checks one record against docs/JSON.md (every field, its type, no other field).
fn check_record(v: &Value) {
    match v["schema"].as_str() {
        Some("hwbp.start/1") => {
            assert_eq!(keys(v), ["pid", "schema", "watches"]);
            assert!(v["pid"].is_u64());
            for w in v["watches"].as_array().unwrap() {
                assert_eq!(keys(w), ["access", "addr", "label", "len", "watch"]);
                assert!(is_hex(&w["addr"]) && w["len"].is_u64() && w["watch"].is_u64());
                assert!(["r", "w", "rw", "x"].contains(&w["access"].as_str().unwrap()));
            }
        }
        Some("hwbp.hit/1") => {
            let mut want = vec![
                "access",
                "changed",
                "cpu",
                "file",
                "frames",
                "function",
                "ip",
                "label",
                "line",
                "schema",
                "thread",
                "tid",
                "time_ns",
                "value",
                "value_int",
                "watch",
            ];
            if v.get("backtrace").is_some() {
                want.push("backtrace");
                want.sort_unstable();
            }
            assert_eq!(keys(v), want, "{v}");
            assert!(v["time_ns"].is_u64() && v["tid"].is_u64() && v["watch"].is_u64());
            assert!(opt(&v["cpu"], Value::is_u64) && is_hex(&v["ip"]));
            assert!(opt(&v["thread"], Value::is_string) && v["label"].is_string());
            assert!(opt(&v["function"], Value::is_string) && opt(&v["file"], Value::is_string));
            assert!(opt(&v["line"], Value::is_u64));
            assert!(opt(&v["value"], is_hex) && opt(&v["value_int"], Value::is_i64));
            assert!(opt(&v["changed"], Value::is_boolean));
            check_frames(&v["frames"]);
        }
        Some("hwbp.summary/1") => {
            assert_eq!(
                keys(v),
                [
                    "duration_ns",
                    "exit_status",
                    "lost",
                    "reported",
                    "schema",
                    "seen",
                    "sites"
                ]
            );
            for k in ["duration_ns", "lost", "reported", "seen"] {
                assert!(v[k].is_u64(), "{k}");
            }
            for s in v["sites"].as_array().unwrap() {
                assert_eq!(
                    keys(s),
                    [
                        "access", "file", "first_ns", "function", "hits", "ip", "label", "last_ns",
                        "line", "threads", "watch"
                    ]
                );
                assert!(s["hits"].is_u64() && s["threads"].is_u64() && is_hex(&s["ip"]));
            }
        }
        other => panic!("unknown schema {other:?} in {v}"),
    }
}

/// Reads a JSON Lines file, checking every line; returns the records.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            check_record(&v);
            v
        })
        .collect()
}

fn summary(recs: &[Value]) -> &Value {
    let last = recs.last().expect("records");
    assert_eq!(last["schema"], "hwbp.summary/1");
    last
}

/// (label, function, file name, line, hits, threads) of every summary site.
fn sites(s: &Value) -> Vec<(String, String, String, u64, u64, u64)> {
    s["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let file = x["file"].as_str().unwrap_or("");
            (
                x["label"].as_str().unwrap().to_owned(),
                x["function"].as_str().unwrap_or("").to_owned(),
                file.rsplit('/').next().unwrap().to_owned(),
                x["line"].as_u64().unwrap_or(0),
                x["hits"].as_u64().unwrap(),
                x["threads"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn site(label: &str, function: &str, file: &str, line: u64, hits: u64, threads: u64) -> Site {
    (
        label.into(),
        function.into(),
        file.into(),
        line,
        hits,
        threads,
    )
}
type Site = (String, String, String, u64, u64, u64);

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

/// Starts the waiting fixture with `before` threads and runs `hwbp ARGS -p PID` on it once
/// they exist; releases the fixture once hwbp says it is armed (its first stderr line, which
/// must start with `armed`). Returns hwbp's (status, stdout, rest of stderr).
fn on_waiting_fixture(
    fx: &Fixtures,
    writes: &str,
    before: &str,
    after: &str,
    args: &[&str],
    armed: &str,
) -> (i32, String, String) {
    let mut target = Command::new(&fx.target)
        .args([writes, before, after])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        if l.unwrap() == "ready" {
            break;
        }
    }
    let pid = target.id().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("{PID}", &pid)).collect();
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(&args)
        .args(["-p", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(hwbp.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert_eq!(first, armed.replace("{PID}", &pid));
    target.stdin.take().unwrap().write_all(b"g").unwrap();
    assert!(target.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let out = hwbp.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        rest,
    )
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
    let (status, stdout, _) = run(&["caps"]);
    assert_eq!(status, 0);
    assert!(stdout.contains("\nself-test:             passed (1 watched write, 1 hit)\n"));
}

/// Processes still running `exe`.
fn running(exe: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .count()
}

#[test]
fn bad_input_is_one_line_exit_2_and_leaves_nothing_running() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let exe = fx.dir.join("watch_target_errors");
    std::fs::copy(&fx.target, &exe).unwrap();
    let e = exe.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["run", "--watch", "countr", "--", e],
            "hwbp: cannot watch 'countr': no global or static variable named `countr` in \
             watch_target_errors, libc.so.6, libwatchlib.so, ld-linux-x86-64.so.2; did you \
             mean counter?\n"
                .into(),
        ),
        (
            vec!["run", "--watch", "table", "--", e],
            "does not fit: this w watch needs 16 data slots but only 4 of 4 are free; watch a \
             smaller or better-aligned region, or remove another watch\n"
                .into(),
        ),
        (
            vec![
                "run",
                "--watch",
                "counter",
                "--watch",
                "cfg.pos.y",
                "--watch",
                "table[3]",
                "--watch",
                "ready_flag",
                "--watch",
                "lib_counter",
                "--",
                e,
            ],
            "this w watch needs 1 data slot but only 0 of 4 are free; watch a smaller or \
             better-aligned region, or remove another watch\n"
                .into(),
        ),
        (
            vec!["run", "--watch", "counter:r", "--", e],
            "x86 debug registers cannot trap reads alone (R/W=10 is I/O); use rw, which traps \
             reads and writes (gdb's rwatch does the same)\n"
                .into(),
        ),
        (
            vec!["stat", "--watch", "nosuch_symbol_here", "--", e],
            "hwbp: cannot watch 'nosuch_symbol_here': no global or static variable named".into(),
        ),
        (
            vec!["run", "--watch", "counter", "--", "./no-such-program-here"],
            "hwbp: cannot run './no-such-program-here': exec failed with ENOENT (No such file \
             or directory (os error 2))\n"
                .into(),
        ),
        (
            vec!["attach", "-p", "999999999", "--watch", "counter"],
            "hwbp: no process 999999999: it has exited or never existed (check with `ps -p \
             999999999`)\n"
                .into(),
        ),
    ];
    let nodwarf = fx.no_dwarf.to_str().unwrap();
    let mut cases = cases;
    cases.push((
        vec!["run", "--watch", "cfg.pos.y", "--", nodwarf],
        format!(
            "hwbp: cannot watch 'cfg.pos.y': `cfg` has a symbol but {nodwarf} has no DWARF \
             type information for a field or index path; rebuild with -g, or use NAME+OFF/LEN\n"
        ),
    ));
    match &fx.stripped {
        Some(p) => cases.push((
            vec!["run", "--watch", "counter", "--", p.to_str().unwrap()],
            format!(
                "hwbp: cannot watch 'counter': {} is stripped (no symbol table, no DWARF); \
                 rebuild without stripping (and with -g for fields), or watch by address with \
                 0xADDR/LEN\n",
                p.display()
            ),
        )),
        None => eprintln!("SKIP stripped-binary case: no `strip` on this machine"),
    }
    for (args, message) in &cases {
        let (status, stdout, stderr) = run(args);
        assert_eq!(status, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("hwbp: ") && stderr.contains(message.as_str()),
            "{args:?}:\n got {stderr}\nwant {message}"
        );
        assert!(
            !stdout.contains("done counter"),
            "the program must not run: {stdout}"
        );
    }
    // Nothing left behind: no stopped or running copy of the program.
    assert_eq!(running(&exe), 0);
    assert_eq!(running(&fx.no_dwarf), 0);
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

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
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
fn permission_refused_names_the_setting_and_the_fix() {
    let _hw = hw_shared();
    let setpriv = Command::new("setpriv").arg("--version").output();
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    if !root || !setpriv.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: needs root and setpriv to run hwbp as another user");
        return;
    }
    // hwbp as `nobody`, attaching to a process of root's.
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-as-nobody");
    std::fs::copy(env!("CARGO_BIN_EXE_hwbp"), &bin).unwrap();
    let mut target = Command::new("sleep").arg("100").spawn().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args([
            "attach",
            "-p",
            &target.id().to_string(),
            "--watch",
            "0x10000/8",
        ])
        .output()
        .unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied") && stderr.contains(&bin.display().to_string()) {
        eprintln!(
            "SKIP: {} is not executable by nobody: {stderr}",
            bin.display()
        );
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "hwbp: reading the memory map of pid {}: cannot read /proc/{}/maps: Permission \
             denied (os error 13) (run as the process's owner, or with CAP_SYS_PTRACE)\n",
            target.id(),
            target.id()
        )
    );
}
