//! Shared by the hardware modules of the CLI tests: the C fixtures (built with the system
//! `cc`), running hwbp, the machine-wide hardware-test lock, and the JSON schema check of
//! docs/JSON.md.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// Every hardware test holds the machine-wide shared lock of the hwbp test suites (tests
/// that open CPU-wide events, which take slots from every thread, hold it exclusively).
pub fn hw_shared() -> std::fs::File {
    let f = lock_file_open();
    hwbp::sys::lock_file(f.as_fd(), hwbp::sys::LockMode::Shared).expect("flock shared");
    f
}

fn lock_file_open() -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open("/tmp/hwbp-hardware-tests.lock")
        .expect("open the hardware-test lock file")
}

/// Written (with the CPU number) before a test offlines a CPU, removed once it is back online;
/// the same file as the library's hotplug tests use.
pub const OFFLINED_MARKER: &str = "/tmp/hwbp-hardware-tests.offlined-cpu";

/// For tests that hotplug CPUs: the machine-wide lock held exclusively (no other hwbp test
/// runs meanwhile). A CPU left offline by a killed run (its marker is there) is brought back.
pub fn hw_exclusive() -> std::fs::File {
    let f = lock_file_open();
    hwbp::sys::lock_file(f.as_fd(), hwbp::sys::LockMode::Exclusive).expect("flock exclusive");
    if let Ok(cpu) = std::fs::read_to_string(OFFLINED_MARKER) {
        let path = format!("/sys/devices/system/cpu/cpu{}/online", cpu.trim());
        match std::fs::write(&path, "1") {
            Ok(()) => {
                skip_note!(
                    "brought CPU {} back online (left offline by a killed run)",
                    cpu.trim()
                );
                let _ = std::fs::remove_file(OFFLINED_MARKER);
            }
            Err(e) => skip_note!("could not bring CPU {} back online: {e}", cpu.trim()),
        }
    }
    f
}

/// Brings its CPU back online when dropped, on every path (a failed assertion included).
pub struct OnlineGuard(pub u32);

impl OnlineGuard {
    /// Offlining leaves [`OFFLINED_MARKER`], removed once the CPU is back online, so a run
    /// killed in between (no Drop) is repaired by the next [`hw_exclusive`].
    pub fn set(&self, online: bool) -> std::io::Result<()> {
        if !online {
            std::fs::write(OFFLINED_MARKER, self.0.to_string())?;
        }
        std::fs::write(
            format!("/sys/devices/system/cpu/cpu{}/online", self.0),
            if online { "1" } else { "0" },
        )?;
        if online {
            let _ = std::fs::remove_file(OFFLINED_MARKER);
        }
        Ok(())
    }
}

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        if let Err(e) = self.set(true) {
            skip_note!("could not bring CPU {} back online: {e}", self.0);
        }
    }
}

pub struct Fixtures {
    pub dir: PathBuf,
    pub target: PathBuf,
    /// `watch_target` with frame pointers (for `--backtrace`).
    pub frame_pointers: PathBuf,
    pub no_dwarf: PathBuf,
    pub stripped: Option<PathBuf>,
}

pub fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hwbp/tests/fixtures")
        .join(name)
}

pub fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

pub fn build() -> Result<Fixtures, String> {
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
pub fn fixtures() -> Option<&'static Fixtures> {
    static F: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    match F.get_or_init(build) {
        Ok(f) => Some(f),
        Err(why) => {
            skip_note!("SKIP: cannot build the C fixtures: {why}");
            None
        }
    }
}

/// The 1-based line of the line of `file` containing `marker`.
pub fn line_of(file: &str, marker: &str) -> u64 {
    let text = std::fs::read_to_string(src(file)).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u64 + 1
}

/// Runs hwbp with the fixture not waiting; returns (status, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    run_env(args, &[])
}

/// [`run`] with environment changes: `(name, Some(value))` sets, `(name, None)` removes.
pub fn run_env(args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hwbp"));
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd
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

pub fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-out");
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}-{}", std::process::id()))
}

pub fn is_hex(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.starts_with("0x") && s.len() > 2 && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

pub fn opt(v: &Value, f: fn(&Value) -> bool) -> bool {
    v.is_null() || f(v)
}

pub fn check_frames(v: &Value) {
    for f in v.as_array().expect("frames is an array") {
        assert!(opt(&f["function"], Value::is_string), "{f}");
        assert!(opt(&f["file"], Value::is_string), "{f}");
        assert!(opt(&f["line"], Value::is_u64), "{f}");
        assert!(opt(&f["column"], Value::is_u64), "{f}");
        assert!(f["inlined"].is_boolean(), "{f}");
    }
}

pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

/// Checks one record against docs/JSON.md (every field, its type, no other field).
pub fn check_record(v: &Value) {
    match v["schema"].as_str() {
        Some("hwbp.start/1") => {
            assert_eq!(keys(v), ["pid", "schema", "stop", "watches"]);
            assert!(v["pid"].is_u64());
            assert!([Some("agent"), Some("ptrace"), None].contains(&v["stop"].as_str()));
            assert!(v["stop"].is_string() || v["stop"].is_null());
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
            }
            if let Some(u) = v.get("unwind") {
                assert!(u == "dwarf" || u == "fp", "{v}");
                want.push("unwind");
            }
            want.sort_unstable();
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
        Some("hwbp.hit/2") => {
            let mut want = vec![
                "access",
                "changed",
                "condition_error",
                "cpu",
                "file",
                "frames",
                "function",
                "ip",
                "label",
                "line",
                "new",
                "new_int",
                "new_text",
                "old",
                "old_int",
                "old_text",
                "regs",
                "schema",
                "seq",
                "thread",
                "tid",
                "time_ns",
                "type",
                "watch",
            ];
            // With --backtrace, as in hwbp.hit/1 (stop mode always unwinds with DWARF).
            if v.get("backtrace").is_some() {
                want.push("backtrace");
            }
            if let Some(u) = v.get("unwind") {
                assert_eq!(u, "dwarf", "{v}");
                want.push("unwind");
            }
            want.sort_unstable();
            assert_eq!(keys(v), want, "{v}");
            assert!(v["time_ns"].is_u64() && v["tid"].is_u64() && v["watch"].is_u64());
            assert!(v["cpu"].is_null() && is_hex(&v["ip"]) && v["seq"].is_u64());
            assert!(opt(&v["thread"], Value::is_string) && v["label"].is_string());
            assert!(opt(&v["function"], Value::is_string) && opt(&v["file"], Value::is_string));
            assert!(opt(&v["line"], Value::is_u64));
            assert!(is_hex(&v["old"]) && is_hex(&v["new"]));
            assert!(v["old_text"].is_string() && v["new_text"].is_string());
            assert!(opt(&v["old_int"], Value::is_number) && opt(&v["new_int"], Value::is_number));
            let ty = v["type"].as_str().unwrap();
            let ints = [
                "i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128",
            ];
            assert!(
                ints.contains(&ty) || ["bool", "f32", "f64", "ptr", "bytes"].contains(&ty),
                "{ty}"
            );
            assert_eq!(v["changed"], v["old"] != v["new"]);
            assert!(opt(&v["condition_error"], Value::is_string));
            if !v["regs"].is_null() {
                let regs = v["regs"].as_object().unwrap();
                assert_eq!(regs.len(), 27);
                assert!(regs.values().all(is_hex) && regs.contains_key("rip"));
            }
            check_frames(&v["frames"]);
        }
        Some("hwbp.break/1") => {
            assert_eq!(keys(v), ["gdb_command", "pid", "schema"]);
            assert!(v["pid"].is_u64());
            assert_eq!(v["gdb_command"], format!("gdb -p {}", v["pid"]));
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
pub fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            check_record(&v);
            v
        })
        .collect()
}

pub fn summary(recs: &[Value]) -> &Value {
    let last = recs.last().expect("records");
    assert_eq!(last["schema"], "hwbp.summary/1");
    last
}

/// (label, function, file name, line, hits, threads) of every summary site.
pub fn sites(s: &Value) -> Vec<(String, String, String, u64, u64, u64)> {
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

pub fn site(label: &str, function: &str, file: &str, line: u64, hits: u64, threads: u64) -> Site {
    (
        label.into(),
        function.into(),
        file.into(),
        line,
        hits,
        threads,
    )
}
pub type Site = (String, String, String, u64, u64, u64);

/// Starts the waiting fixture with `before` threads and runs `hwbp ARGS -p PID` on it once
/// they exist; releases the fixture once hwbp says it is armed (its first stderr line, which
/// must start with `armed`). Returns hwbp's (status, stdout, rest of stderr).
pub fn on_waiting_fixture(
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

/// Processes still running `exe`.
pub fn running(exe: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .count()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Not a timed assertion: a hwbp that never prints what a test waits for would leave the test
/// waiting forever; killing it (SIGKILL, after 300 s) makes the test fail on what it read.
/// Drop the returned sender once done with `pid`.
pub fn watchdog(pid: u32) -> std::sync::mpsc::Sender<()> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if wait.recv_timeout(std::time::Duration::from_secs(300))
            == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        {
            // SAFETY: kill(2) has no memory preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    done
}
