//! `hwbp run` (non-stop) across CPU hotplug (review demand 1): every hit on a CPU that went
//! offline and came back, or that was offline when the watches were armed, is recorded; a hit
//! made on a CPU before hwbp mapped that CPU's ring is counted as lost, never dropped silently.
//!
//! The fixture `on_cpu CPU N` (tests/fixtures/on_cpu.c) creates a thread, prints "ready", and
//! after a byte on stdin its two threads each store N times to `counter` pinned to CPU. Every
//! test here holds the machine-wide lock exclusively and brings CPU 1 back online on every
//! path ([`OnlineGuard`]); one that cannot take CPU 1 offline says why and skips.

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

use serde_json::Value;

use super::hw::*;

const CPU: u32 = 1;
const WRITES: u64 = 1000;

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/on_cpu.c")
}

/// The fixture, built once, or `None` (with the reason printed).
fn fixture() -> Option<&'static Path> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let exe = EXE.get_or_init(|| {
        let fx = fixtures().ok_or("no C fixtures")?;
        let exe = fx.dir.join("on_cpu");
        sh(Command::new("cc")
            .args(["-g", "-O1", "-pthread", "-o"])
            .arg(&exe)
            .arg(source()))?;
        Ok(exe)
    });
    match exe {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build the on_cpu fixture: {why}");
            None
        }
    }
}

/// CPU 1 taken offline (its guard brings it back when dropped), or `None` with the reason
/// printed.
fn offline_or_skip(test: &str) -> Option<OnlineGuard> {
    let path = format!("/sys/devices/system/cpu/cpu{CPU}/online");
    if !Path::new(&path).exists() {
        skip_note!("SKIP {test}: CPU {CPU} cannot be taken offline here ({path} does not exist)");
        return None;
    }
    let guard = OnlineGuard(CPU);
    match guard.set(false) {
        Ok(()) => Some(guard),
        Err(e) => {
            skip_note!("SKIP {test}: cannot take CPU {CPU} offline: {e}");
            None
        }
    }
}

/// `hwbp CMD... --watch counter -- on_cpu 1 WRITES`, with the fixture at "ready".
struct Session {
    hwbp: Child,
    to_fixture: ChildStdin,
    fixture_out: Lines<BufReader<ChildStdout>>,
    err: BufReader<ChildStderr>,
    /// `run`'s JSON Lines.
    out: PathBuf,
    /// Dropped when the test is done with the processes; until then the watchdog waits.
    _done: mpsc::Sender<()>,
}

/// The note hwbp prints once it records a CPU that came online.
fn recording_note() -> String {
    format!(
        "hwbp: CPU {CPU} came online: recording its hits (any made there before this are \
         counted as lost)\n"
    )
}

impl Session {
    /// `hwbp run --json -o OUT ...`.
    fn run(exe: &Path, name: &str) -> Session {
        let out = tmp(name);
        let path = out.to_str().unwrap().to_owned();
        Session::start(exe, &["run", "--json", "-o", &path], out)
    }

    fn start(exe: &Path, cmd: &[&str], out: PathBuf) -> Session {
        let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
            .args(cmd)
            .args(["--watch", "counter", "--"])
            .arg(exe)
            .args([CPU.to_string(), WRITES.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let done = watchdog(hwbp.id());
        let to_fixture = hwbp.stdin.take().unwrap();
        let mut fixture_out = BufReader::new(hwbp.stdout.take().unwrap()).lines();
        let err = BufReader::new(hwbp.stderr.take().unwrap());
        assert_eq!(fixture_out.next().unwrap().unwrap(), "ready");
        Session {
            hwbp,
            to_fixture,
            fixture_out,
            err,
            out,
            _done: done,
        }
    }

    /// Lets the fixture write; returns once it wrote everything.
    fn go(&mut self) {
        self.to_fixture.write_all(b"g").unwrap();
        assert_eq!(self.fixture_out.next().unwrap().unwrap(), "done");
    }

    /// Waits for hwbp to exit 0; returns its stderr from where the test stopped reading.
    fn stderr(mut self) -> String {
        let mut rest = String::new();
        self.err.read_to_string(&mut rest).unwrap();
        let status = self.hwbp.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{rest}");
        rest
    }

    /// [`Session::stderr`], the summary and every hit's (cpu, tid) of `run`.
    fn finish(self) -> (String, Value, Vec<(u64, u64)>) {
        let out = self.out.clone();
        let rest = self.stderr();
        let recs = records(&out);
        let hits = recs
            .iter()
            .filter(|r| r["schema"] == "hwbp.hit/1")
            .map(|r| (r["cpu"].as_u64().unwrap(), r["tid"].as_u64().unwrap()))
            .collect();
        (rest, summary(&recs).clone(), hits)
    }
}

/// Asserts `2 * WRITES` hits, all on CPU 1, from the fixture's two threads, none lost, at
/// the fixture's one store.
fn all_recorded(test: &str, s: &Value, hits: &[(u64, u64)]) {
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["lost"].as_u64(),
            s["reported"].as_u64()
        ),
        (Some(2 * WRITES), Some(0), Some(2 * WRITES)),
        "{test}: {s}"
    );
    assert!(hits.iter().all(|&(cpu, _)| cpu == u64::from(CPU)), "{test}");
    let line = std::fs::read_to_string(source())
        .unwrap()
        .lines()
        .position(|l| l.contains("/* ON_CPU_WRITE */"))
        .unwrap() as u64
        + 1;
    assert_eq!(
        sites(s),
        [site(
            "counter",
            "write_on_cpu",
            "on_cpu.c",
            line,
            2 * WRITES,
            2
        )],
        "{test}"
    );
}

#[test]
fn run_records_every_hit_on_a_cpu_that_went_offline_and_came_back() {
    let test = "run_records_every_hit_on_a_cpu_that_went_offline_and_came_back";
    let Some(exe) = fixture() else { return };
    let _hw = hw_exclusive();
    let mut run = Session::run(exe, "hotplug-back");
    // Armed with CPU 1 online: its per-task events live in the threads' contexts and survive
    // CPU 1 going away, and so does its ring.
    let Some(guard) = offline_or_skip(test) else {
        run.go();
        run.finish();
        return;
    };
    guard.set(true).unwrap();
    drop(guard);
    run.go();
    let (stderr, s, hits) = run.finish();
    // Nothing to re-arm: no note.
    assert_eq!(stderr, "", "{test}");
    all_recorded(test, &s, &hits);
}

#[test]
fn run_records_every_hit_on_a_cpu_that_was_offline_at_start() {
    let test = "run_records_every_hit_on_a_cpu_that_was_offline_at_start";
    let Some(exe) = fixture() else { return };
    let _hw = hw_exclusive();
    let Some(guard) = offline_or_skip(test) else {
        return;
    };
    // Armed with CPU 1 offline (events on it all the same); the fixture's second thread is
    // created after arming, while CPU 1 is still offline, and inherits them.
    let mut run = Session::run(exe, "hotplug-late");
    guard.set(true).unwrap();
    drop(guard);
    // Its events already count; hwbp says when it has mapped CPU 1's ring.
    let mut note = String::new();
    run.err.read_line(&mut note).unwrap();
    assert_eq!(note, recording_note(), "{test}");
    run.go();
    let (stderr, s, hits) = run.finish();
    assert_eq!(stderr, "", "{test}");
    all_recorded(test, &s, &hits);
}

/// Whether every thread of `pid` is stopped (`T` in /proc/PID/task/TID/stat).
fn all_stopped(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
}

/// Brings CPU 1 online and lets the fixture write while hwbp is stopped (SIGSTOP, all its
/// threads, the hotplug monitor's included), then resumes hwbp.
fn online_while_stopped(run: &mut Session, guard: OnlineGuard) {
    let pid = run.hwbp.id();
    signal(pid, libc::SIGSTOP);
    while !all_stopped(pid) {
        std::thread::yield_now();
    }
    guard.set(true).unwrap();
    drop(guard);
    run.go();
    signal(pid, libc::SIGCONT);
}

#[test]
fn run_counts_hits_before_a_new_cpus_ring_is_mapped_as_lost() {
    let test = "run_counts_hits_before_a_new_cpus_ring_is_mapped_as_lost";
    let Some(exe) = fixture() else { return };
    let _hw = hw_exclusive();
    let Some(guard) = offline_or_skip(test) else {
        return;
    };
    let mut run = Session::run(exe, "hotplug-gap");
    // hwbp (and its hotplug monitor) frozen: CPU 1 comes online and every write happens
    // before hwbp can map CPU 1's ring. The kernel counts them but has nowhere to record them.
    online_while_stopped(&mut run, guard);
    let (stderr, s, hits) = run.finish();
    // Whether hwbp still mapped the ring before the program's exit ended the session.
    assert!(
        stderr.is_empty() || stderr == recording_note(),
        "{test}: {stderr}"
    );
    assert_eq!(
        (s["seen"].as_u64(), s["lost"].as_u64()),
        (Some(0), Some(2 * WRITES)),
        "{test}: {s}"
    );
    assert!(hits.is_empty(), "{test}");
}

#[test]
fn stat_per_thread_says_how_many_hits_it_could_not_record() {
    let test = "stat_per_thread_says_how_many_hits_it_could_not_record";
    let Some(exe) = fixture() else { return };
    let _hw = hw_exclusive();
    let Some(guard) = offline_or_skip(test) else {
        return;
    };
    let mut stat = Session::start(exe, &["stat", "--per-thread", "--json"], PathBuf::new());
    online_while_stopped(&mut stat, guard);
    let stderr = stat.stderr();
    let (note, report) = stderr.split_once('\n').unwrap();
    assert_eq!(
        note,
        format!(
            "hwbp: {} hits were counted but not recorded (a full ring buffer, or a CPU that \
             came online before hwbp could record it): the per-thread counts miss them",
            2 * WRITES
        ),
        "{test}"
    );
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["watches"][0]["hits"], 0, "{test}: {v}");
}

#[test]
fn attach_records_every_hit_on_a_cpu_that_was_offline_when_it_armed() {
    let test = "attach_records_every_hit_on_a_cpu_that_was_offline_when_it_armed";
    let Some(exe) = fixture() else { return };
    let _hw = hw_exclusive();
    let Some(guard) = offline_or_skip(test) else {
        return;
    };
    let mut target = Command::new(exe)
        .args([CPU.to_string(), WRITES.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = target.id().to_string();
    let out = tmp("hotplug-attach");
    // Both threads exist and are held still (ptrace seize) while armed, CPU 1 offline.
    let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .args(["attach", "--json", "-o", out.to_str().unwrap()])
        .args(["--watch", "counter", "-p", &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _done = watchdog(hwbp.id());
    let mut err = BufReader::new(hwbp.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!("hwbp: watching 1 watch in pid {pid}; Ctrl-C to stop\n")
    );
    guard.set(true).unwrap();
    drop(guard);
    line.clear();
    err.read_line(&mut line).unwrap();
    assert_eq!(line, recording_note(), "{test}");
    target.stdin.take().unwrap().write_all(b"g").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    assert!(target.wait().unwrap().success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!((hwbp.wait().unwrap().code(), rest.as_str()), (Some(0), ""));
    let recs = records(&out);
    let hits: Vec<(u64, u64)> = recs
        .iter()
        .filter(|r| r["schema"] == "hwbp.hit/1")
        .map(|r| (r["cpu"].as_u64().unwrap(), r["tid"].as_u64().unwrap()))
        .collect();
    all_recorded(test, summary(&recs), &hits);
}
