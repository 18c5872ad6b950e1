//! `hwbp run --stop` and `hwbp attach --stop` (issue 6) on this machine's debug registers,
//! against the stop-mode fixture of the library's tests
//! (crates/hwbp/tests/linux/fixtures/stop_target.c, built here with the system `cc`): exact
//! hit counts and exact old -> new pairs, `--changed`, `--if` on a signed type, threads created
//! after attaching, `--break`, shutdown signals at random moments, every JSON line checked
//! against docs/JSON.md, and every error path with exit status 2 and nothing left behind.
//!
//! The fixture writes `target = f(i) = 7i - 100` for `seq N`, `i / 2` for `pairs N`, and
//! `1000000 (t + 1) + i` from T threads for `threads T N`; unless the last argument is
//! `nowait` it prints `addr 0x...` and waits for a line on stdin first; at the end it prints
//! `sum S writes W` and exits 0.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::hw::*;

fn f(i: i64) -> i64 {
    7 * i - 100
}

/// The fixture, or `None` (reason printed) where no C compiler exists.
fn stop_target() -> Option<&'static Path> {
    static F: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = F.get_or_init(|| build_stop_target("stop_target", &[]));
    match r {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build the stop-mode fixture: {why}");
            None
        }
    }
}

/// Builds stop_target.c as `name` in the fixtures directory, with `flags` added to the usual
/// `-g -O1 -pthread`.
fn build_stop_target(name: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let exe = dir.join(name);
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwbp/tests/linux/fixtures/stop_target.c");
    sh(Command::new("cc")
        .args(["-g", "-O1", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(src))?;
    Ok(exe)
}

/// A copy of the fixture under another name, for tests that count the processes running it
/// (other tests run the fixture concurrently); made again when the fixture was rebuilt since.
fn private_copy(exe: &Path, name: &str) -> PathBuf {
    let copy = exe.with_file_name(name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&copy) < modified(exe) {
        let tmp = exe.with_file_name(format!("{name}.{}", std::process::id()));
        std::fs::copy(exe, &tmp).unwrap();
        std::fs::rename(&tmp, &copy).unwrap();
    }
    copy
}

fn exe_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `hwbp.hit/2` records of a JSON Lines file (every line schema-checked).
fn stop_hits(recs: &[Value]) -> Vec<&Value> {
    recs.iter()
        .filter(|r| r["schema"] == "hwbp.hit/2")
        .collect()
}

fn pairs(hits: &[&Value]) -> Vec<(i64, i64)> {
    hits.iter()
        .map(|h| {
            (
                h["old_int"].as_i64().unwrap(),
                h["new_int"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn run_stop_reports_every_write_with_its_exact_old_and_new_value() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-seq");
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "300",
        "nowait",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    let sum: i64 = (0..300).map(f).sum();
    assert_eq!(stdout, format!("sum {sum} writes 300\n"));
    let recs = records(&out);
    let hits = stop_hits(&recs);
    let want: Vec<(i64, i64)> = (0..300)
        .map(|i| (if i == 0 { 0 } else { f(i - 1) }, f(i)))
        .collect();
    assert_eq!(pairs(&hits), want);
    let line = line_of_stop("i < from + n; i++) { target = f(i)");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h["type"], "i64");
        assert_eq!(h["seq"], i as u64 + 1);
        assert_eq!(h["regs"], Value::Null, "registers only with --regs");
        assert_eq!(
            (h["function"].as_str(), h["line"].as_u64()),
            (Some("seq"), Some(line))
        );
    }
    let s = summary(&recs);
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["exit_status"].as_i64()
        ),
        (Some(300), Some(300), Some(0))
    );
}

/// The 1-based line of stop_target.c containing `marker`.
fn line_of_stop(marker: &str) -> u64 {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwbp/tests/linux/fixtures/stop_target.c"),
    )
    .unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u64 + 1
}

#[test]
fn text_lines_show_old_to_new_and_registers() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--regs",
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "3",
        "nowait",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    // The program's own line may come before or after hwbp's buffered lines.
    let sum_line = "sum -279 writes 3";
    assert_eq!(stdout.matches(sum_line).count(), 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| *l != sum_line).collect();
    let line = line_of_stop("i < from + n; i++) { target = f(i)");
    // The path the fixture was compiled with (DWARF keeps it as given).
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwbp/tests/linux/fixtures/stop_target.c");
    // Three hits, each followed by its registers, then the summary.
    for (k, (old, new)) in [(0i64, -100i64), (-100, -93), (-93, -86)]
        .iter()
        .enumerate()
    {
        let hit = lines[2 * k];
        let tail = format!(
            " stop_target     w  target = {old} -> {new}  seq ({}:{line})",
            file.display()
        );
        assert!(hit.ends_with(&tail), "{hit:?} !~ {tail:?}\n{stdout}");
        let regs = lines[2 * k + 1].trim_start();
        assert!(
            regs.starts_with("rip=0x") && regs.contains(" rsp=0x"),
            "{regs}"
        );
        // The fixture (gcc -O1) stores the new value from rax.
        assert!(regs.contains(&format!(" rax={:#x}", *new as u64)), "{regs}");
    }
    assert_eq!(lines[6], "");
    assert!(
        lines[7].starts_with("3 hits seen, 3 reported, 0 lost in "),
        "{stdout}"
    );
    assert!(
        lines[9].starts_with("   3  target  w       seq  "),
        "{stdout}"
    );
}

#[test]
fn changed_drops_writes_that_keep_the_value_like_gdb_watch() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-changed");
    let (status, _, stderr) = run(&[
        "run",
        "--stop",
        "--changed",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "pairs",
        "400",
        "nowait",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let recs = records(&out);
    // 0,0,1,1,...,199,199 over an initial 0: the first 0 is no change (gdb: N - 1 = 199).
    let want: Vec<(i64, i64)> = (1..200).map(|k| (k - 1, k)).collect();
    assert_eq!(pairs(&stop_hits(&recs)), want);
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(400), Some(199))
    );
}

#[test]
fn condition_is_typed_from_dwarf_signed_long() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-if");
    let (status, _, stderr) = run(&[
        "run",
        "--stop",
        "--if",
        "new < 0",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "40",
        "nowait",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let recs = records(&out);
    // 7i - 100 < 0 for i = 0..=14: 15 hits, as a signed long (unsigned, none would be < 0).
    let want: Vec<(i64, i64)> = (0..15)
        .map(|i| (if i == 0 { 0 } else { f(i - 1) }, f(i)))
        .collect();
    assert_eq!(pairs(&stop_hits(&recs)), want);
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(40), Some(15))
    );
}

/// Starts the waiting fixture with `args`; returns it once it printed its `addr` line.
fn waiting(exe: &Path, args: &[&str], out: Option<&Path>) -> Child {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
    if let Some(o) = out {
        cmd.env("HWBP_FIXTURE_OUT", o);
    }
    let mut child = cmd.spawn().unwrap();
    match out {
        None => {
            let mut first = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut first)
                .unwrap();
            assert!(first.starts_with("addr 0x"), "{first}");
        }
        // Its stdout goes to the file: wait for the line there.
        Some(o) => {
            while !std::fs::read_to_string(o).is_ok_and(|s| s.starts_with("addr 0x")) {
                std::thread::yield_now();
            }
        }
    }
    child
}

/// Starts `hwbp attach --stop ARGS -p PID`; returns it once it says it is armed.
fn attach(pid: u32, args: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(["attach", "--stop"])
        .args(args)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(hwbp.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert_eq!(
        first,
        format!("hwbp: watching 1 watch in pid {pid} (stop mode); Ctrl-C to stop\n")
    );
    (hwbp, err)
}

#[test]
fn attach_stops_threads_created_after_attaching() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-threads");
    let mut target = waiting(exe, &["threads", "4", "250"], None);
    let (hwbp, mut err) = attach(
        target.id(),
        &["--json", "-o", out.to_str().unwrap(), "--watch", "target"],
    );
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(target.wait().unwrap().success());
    let out_h = hwbp.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!((out_h.status.code(), rest.as_str()), (Some(0), ""));
    let recs = records(&out);
    let hits = stop_hits(&recs);
    assert_eq!(hits.len(), 1000);
    // Per thread: 250 hits. (The values are not compared per thread: four threads store to
    // the same variable, so another thread's store may already show when the value is read,
    // as in gdb; docs/STOP_MODE.md, "Values".)
    let mut by_tid: std::collections::BTreeMap<u64, u64> = Default::default();
    for h in &hits {
        *by_tid.entry(h["tid"].as_u64().unwrap()).or_default() += 1;
        let v = h["new_int"].as_i64().unwrap();
        assert!(
            (1_000_000..5_000_000).contains(&v) && v % 1_000_000 < 250,
            "{v}"
        );
    }
    assert_eq!(by_tid.values().copied().collect::<Vec<_>>(), [250; 4]);
    assert!(
        !by_tid.contains_key(&u64::from(target.id())),
        "the main thread does not write"
    );
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(1000), Some(1000))
    );
}

fn proc_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_owned()
}

fn stat_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .trim_start()
        .chars()
        .next()
        .unwrap()
}

#[test]
fn break_leaves_the_process_stopped_for_gdb_and_sigcont_lets_it_finish() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-break");
    let fixture_out = tmp("stop-break-fixture");
    let mut target = waiting(exe, &["seq", "50"], Some(&fixture_out));
    let pid = target.id();
    let (hwbp, mut err) = attach(
        pid,
        &[
            "--if",
            "new > 0",
            "--break",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--watch",
            "target",
        ],
    );
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out_h = hwbp.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(out_h.status.code(), Some(0), "{rest}");
    assert_eq!(
        rest,
        format!(
            "hwbp: pid {pid} is left stopped (SIGSTOP) at the hit above, with no tracer \
             attached; continue in a debugger: gdb -p {pid}\n"
        )
    );
    // Stopped, untraced, every thread.
    assert_eq!(stat_state(pid), 'T');
    assert_eq!(proc_field(pid, "TracerPid:"), "0");
    let recs = records(&out);
    // The first positive value: f(15) = 5, over f(14) = -2.
    assert_eq!(pairs(&stop_hits(&recs)), [(-2, 5)]);
    let brk = recs.iter().find(|r| r["schema"] == "hwbp.break/1").unwrap();
    assert_eq!(brk["gdb_command"], format!("gdb -p {pid}"));
    signal(pid, libc::SIGCONT);
    assert!(target.wait().unwrap().success());
    let sum: i64 = (0..50).map(f).sum();
    let text = std::fs::read_to_string(&fixture_out).unwrap();
    assert!(text.ends_with(&format!("sum {sum} writes 50\n")), "{text}");
}

#[test]
fn run_break_leaves_the_program_stopped_and_waits_for_it() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args([
            "run",
            "--stop",
            "--break",
            "--if",
            "new == old + 7 && new > 100",
        ])
        .args([
            "--watch",
            "target",
            "--",
            exe_str(exe),
            "seq",
            "60",
            "nowait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(hwbp.stderr.take().unwrap());
    let mut note = String::new();
    err.read_line(&mut note).unwrap();
    let pid: u32 = note
        .rsplit("gdb -p ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        note,
        format!(
            "hwbp: pid {pid} is left stopped (SIGSTOP) at the hit above, with no tracer \
             attached; continue in a debugger: gdb -p {pid}\n"
        )
    );
    // hwbp stays its parent (an orphaned stopped process would get SIGHUP from the kernel).
    assert_eq!(stat_state(pid), 'T');
    assert_eq!(proc_field(pid, "TracerPid:"), "0");
    signal(pid, libc::SIGCONT);
    let out = hwbp.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let sum: i64 = (0..60).map(f).sum();
    assert_eq!(
        stdout.matches(&format!("sum {sum} writes 60\n")).count(),
        1,
        "{stdout}"
    );
    // f(29) = 103 over f(28) = 96: the only hit reported.
    assert_eq!(stdout.matches(" -> ").count(), 1, "{stdout}");
    assert!(stdout.contains("target = 96 -> 103  seq ("), "{stdout}");
}

#[test]
fn shutdown_signals_at_random_moments_let_the_program_finish() {
    let Some(exe) = stop_target() else { return };
    let exe = &private_copy(exe, "stop_target_signals");
    let _hw = hw_shared();
    let mut seed: u64 = std::env::var("HWBP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 2_654_435_761);
    eprintln!("shutdown signals: seed {seed} (HWBP_SEED replays)");
    let sum: i64 = (0..40_000).map(f).sum();
    for (k, sig) in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGINT,
        libc::SIGTERM,
    ]
    .into_iter()
    .enumerate()
    {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay_us = 500 + (seed >> 33) % 60_000;
        let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
            .args([
                "run",
                "--stop",
                "-q",
                "--watch",
                "target",
                "--",
                exe_str(exe),
                "seq",
                "40000",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(hwbp.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(first.starts_with("addr 0x"), "{first}");
        // The program runs (armed); start its hit storm and signal hwbp during it.
        hwbp.stdin.take().unwrap().write_all(b"go\n").unwrap();
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        signal(hwbp.id(), sig);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = hwbp.wait_with_output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            (out.status.code(), stderr.as_str()),
            (Some(0), ""),
            "run {k}: signal {sig} after {delay_us} µs\n{rest}"
        );
        assert!(
            rest.starts_with(&format!("sum {sum} writes 40000\n")),
            "run {k}: signal {sig} after {delay_us} µs: {rest}"
        );
    }
    assert_eq!(running(exe), 0);
}

#[test]
fn errors_are_one_line_exit_2_and_leave_nothing_behind() {
    let Some(exe) = stop_target() else { return };
    let exe = &private_copy(exe, "stop_target_errors");
    let _hw = hw_shared();
    let e = exe_str(exe);
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "run", "--if", "new < 0", "--watch", "target", "--", e, "seq", "1", "nowait",
            ],
            "hwbp: --if needs --stop: only stop mode reads the exact old and new value at each \
             hit (non-stop mode reads the value after the fact); add --stop\n",
        ),
        (
            &[
                "run", "--break", "--watch", "target", "--", e, "seq", "1", "nowait",
            ],
            "hwbp: --break needs --stop: only stop mode can leave the program stopped at a \
             hit; add --stop\n",
        ),
        (
            &[
                "run", "--stop", "--if", "new <", "--watch", "target", "--", e, "seq", "1",
                "nowait",
            ],
            "hwbp: --if 'new <': condition: at column 6: expected a value (new, old, a number, \
             true, false or '('), found end of input (operands are new, old and literals; e.g. \
             'new != old && new < 0')\n",
        ),
        (
            &["attach", "--stop", "-p", "999999999", "--watch", "target"],
            "hwbp: no process 999999999: it has exited or never existed (check with \
             `ps -p 999999999`)\n",
        ),
        (
            &[
                "run", "--stop", "--watch", "nosuch", "--", e, "seq", "1", "nowait",
            ],
            "hwbp: cannot watch 'nosuch': no global or static variable named `nosuch` in \
             stop_target_errors, libc.so.6, ld-linux-x86-64.so.2; check the spelling, or watch by \
             address with 0xADDR/LEN\n",
        ),
    ];
    for (args, message) in cases {
        let (status, stdout, stderr) = run(args);
        assert_eq!(
            (status, stdout.as_str(), stderr.as_str()),
            (2, "", message),
            "{args:?}"
        );
    }
    // A spec stop mode cannot arm: an execute breakpoint (the address differs per run).
    let (status, stdout, stderr) = run(&[
        "run", "--stop", "--watch", "target:x", "--", e, "seq", "1", "nowait",
    ]);
    assert_eq!((status, stdout.as_str()), (2, ""));
    assert!(
        stderr.starts_with("hwbp: cannot watch 'target' (0x")
            && stderr.ends_with(
                "/8:x) with --stop: stop mode watches data writes (:w) and reads/writes (:rw); \
                 without --stop, execute breakpoints are reported\n"
            ),
        "{stderr}"
    );
    // More pieces than debug registers: refused before the program runs.
    let (status, _, stderr) = run(&[
        "run",
        "--stop",
        "--watch",
        "0x1001/40",
        "--",
        e,
        "seq",
        "1",
        "nowait",
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(running(exe), 0, "no program left running or stopped");
}

#[test]
fn a_second_tracer_is_named_and_the_target_is_untouched() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let mut target = waiting(exe, &["seq", "10"], None);
    let pid = target.id();
    // This test thread becomes the target's tracer (a debugger already attached).
    // SAFETY: ptrace(2) with integer arguments on our own child.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid as i32, 0, 0) };
    assert_eq!(r, 0, "PTRACE_SEIZE");
    // TracerPid is the tracing thread's id.
    // SAFETY: gettid(2) has no arguments and cannot fail.
    let me = unsafe { libc::gettid() };
    let (status, stdout, stderr) = run(&[
        "attach",
        "--stop",
        "-p",
        &pid.to_string(),
        "--watch",
        "target",
    ]);
    assert_eq!(
        (status, stdout.as_str(), stderr.as_str()),
        (
            2,
            "",
            format!(
                "hwbp: stop mode in pid {pid}: process {pid} is already traced by process {me} \
                 (TracerPid in /proc/{pid}/status); detach that debugger first (gdb: `detach`), \
                 only one tracer is allowed\n"
            )
            .as_str()
        )
    );
    assert_eq!(proc_field(pid, "TracerPid:"), me.to_string());
    target.kill().unwrap();
    target.wait().unwrap();
}

#[path = "stop_types.rs"]
mod types;

/// A worker that blocks every signal writes 1000 times, then main writes 100 times. Through
/// ptrace the worker's hits cannot be stopped (its perf SIGTRAP stays queued): 100 hits, the
/// summary's `lost` is exactly 1000 and stderr says why and what to do. The default agent
/// keeps SIGTRAP unblocked: all 1100 hits, nothing lost, no note.
#[test]
fn hits_of_a_thread_that_blocks_sigtrap_are_lost_through_ptrace_not_with_the_agent() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-blocked-ptrace");
    let args = |via: Option<&'static str>, out: &Path| {
        let mut v = vec!["run".to_string(), "--stop".to_string()];
        if let Some(via) = via {
            v.extend(["--stop-via".to_string(), via.to_string()]);
        }
        for a in [
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--watch",
            "target",
            "--",
        ] {
            v.push(a.to_string());
        }
        for a in [exe_str(exe), "blocked", "1000", "100", "nowait"] {
            v.push(a.to_string());
        }
        v
    };
    let a = args(Some("ptrace"), &out);
    let (status, stdout, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let sum: i64 = (0..100).map(f).sum();
    assert_eq!(
        (status, stdout.as_str()),
        (0, format!("sum {sum} writes 1100\n").as_str()),
        "{stderr}"
    );
    assert_eq!(
        stderr,
        "hwbp: 1000 hits could not be stopped (counted as lost): the threads that made them \
         block SIGTRAP (pthread_sigmask/sigprocmask), so ptrace never stops them at the \
         access; use `hwbp run --stop` with the default agent (drop --stop-via ptrace): it \
         never lets the program block SIGTRAP\n"
    );
    let recs = records(&out);
    assert_eq!(recs[0]["stop"], "ptrace");
    let hits = stop_hits(&recs);
    // The shadow copy is re-read when the worker exits: main's first old value is exact.
    let want: Vec<(i64, i64)> = (0..100)
        .map(|i| (if i == 0 { 1_000_999 } else { f(i - 1) }, f(i)))
        .collect();
    assert_eq!(pairs(&hits), want);
    let s = summary(&recs);
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["lost"].as_u64()
        ),
        (Some(100), Some(100), Some(1000))
    );

    let out = tmp("stop-blocked-agent");
    let a = args(None, &out);
    let (status, stdout, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        (status, stdout.as_str(), stderr.as_str()),
        (0, format!("sum {sum} writes 1100\n").as_str(), "")
    );
    let recs = records(&out);
    assert_eq!(recs[0]["stop"], "agent");
    let hits = stop_hits(&recs);
    let worker: Vec<i64> = hits[..1000]
        .iter()
        .map(|h| h["new_int"].as_i64().unwrap())
        .collect();
    assert_eq!(worker, (0..1000).map(|i| 1_000_000 + i).collect::<Vec<_>>());
    assert_eq!(hits.len(), 1100);
    let s = summary(&recs);
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["lost"].as_u64()
        ),
        (Some(1100), Some(1100), Some(0))
    );
}

/// `attach --stop` to the same program: the worker's 1000 hits are `lost`, and the note says
/// that attach has no remedy.
#[test]
fn attach_counts_the_hits_of_a_thread_that_blocks_sigtrap_as_lost() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-blocked-attach");
    let mut target = waiting(exe, &["blocked", "1000", "100"], None);
    let (hwbp, mut err) = attach(
        target.id(),
        &["--json", "-o", out.to_str().unwrap(), "--watch", "target"],
    );
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(target.wait().unwrap().success());
    let status = hwbp.wait_with_output().unwrap().status;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(
        rest.starts_with("hwbp: 1000 hits could not be stopped (counted as lost)")
            && rest.ends_with("; attach has no remedy: only a program hwbp starts (`hwbp run --stop`, the default agent) can be kept from blocking SIGTRAP\n"),
        "{rest}"
    );
    let recs = records(&out);
    assert_eq!(stop_hits(&recs).len(), 100);
    let s = summary(&recs);
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["lost"].as_u64()
        ),
        (Some(100), Some(100), Some(1000))
    );
}

#[path = "stop_agent.rs"]
mod agent;

#[path = "stop_backtrace.rs"]
mod backtrace;
