//! Stop mode on real hardware: exact hit counts and old → new values against a C fixture
//! (`fixtures/stop_target.c`, compiled here with the system `cc`), threads, exec, conditions,
//! break, second tracer, shutdown signals / panic / SIGKILL of the tracer, and the ptrace
//! DR-file differential.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use hwbp::ptrace::{
    install_shutdown_signals, random_steps, run_differential, CoreDrFile, DrFile, DrOp, DrOutcome,
    ExecVerdict, Expr, Hit, PtraceDrFile, RunEnd, StepRng, StopHandler, StopOptions, ThreadEvent,
    Tid, Tracer, Value, ValueType, Verdict, WatchSpec,
};
use hwbp::sys::ptrace as sys;
use hwbp_core::Region;

/// Compiles the fixture once; `None` (with the reason printed) when there is no `cc` or no
/// hardware breakpoint support.
fn fixture() -> Option<&'static PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/linux/fixtures/stop_target.c"
        );
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stop_target");
        let status = Command::new("cc")
            .args(["-O1", "-g", "-no-pie", "-pthread", "-o"])
            .arg(&out)
            .arg(src)
            .status();
        match status {
            Ok(s) if s.success() => Some(out),
            other => {
                skip_note!("SKIP stop-mode tests: cannot compile the fixture with cc: {other:?}");
                None
            }
        }
    })
    .as_ref()
}

/// The machine-wide hardware-test lock (`/tmp/hwbp-hardware-tests.lock`, shared mode), the
/// same `flock` the perf-layer tests take exclusively around CPU-bound events, slot probes and
/// CPU hotplug, so that those never run while a stop-mode test holds debug registers.
fn hw_shared_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open("/tmp/hwbp-hardware-tests.lock")
        .expect("open the hardware-test lock file");
    // SAFETY: flock on a descriptor we own; blocks until no exclusive holder remains.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) };
    assert_eq!(r, 0, "flock shared");
    file
}

/// Stop-mode tests that fork many processes (`alone`: the agent's) run with no other stop-mode
/// test of this process: a forked child holds a copy of every perf descriptor of this process
/// until it closes them or execs (or, under load, until it is first scheduled), so a watch a
/// tracer test releases (`break`, detach) can live on in it for a moment, long enough for a
/// hit to kill that test's target with its SIGTRAP (measured: 1 run in 3 of the tracer's
/// break test failed that way while the agent's tests ran next to it).
static FORKERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The fixture and the shared hardware lock (and, with `alone`, no other stop-mode test of
/// this process), or a printed skip.
macro_rules! fixture_or_skip {
    () => {
        match fixture() {
            Some(f) => (
                f,
                (
                    FORKERS.read().unwrap_or_else(|p| p.into_inner()),
                    hw_shared_lock(),
                ),
            ),
            None => return,
        }
    };
    (alone) => {
        match fixture() {
            Some(f) => (
                f,
                (
                    FORKERS.write().unwrap_or_else(|p| p.into_inner()),
                    hw_shared_lock(),
                ),
            ),
            None => return,
        }
    };
}

/// The fixture is built `-no-pie`: `target` has the same address in every run.
fn target_addr(bin: &Path) -> u64 {
    let out = Command::new(bin).arg("addr").output().expect("run fixture");
    let s = String::from_utf8(out.stdout).unwrap();
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
}

fn seed_from_env_or_clock() -> u64 {
    std::env::var("HWBP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn f(i: i64) -> i64 {
    7 * i - 100
}

fn seq_sum(n: i64) -> i64 {
    (0..n).map(f).sum()
}

fn watch_i64(addr: u64) -> WatchSpec {
    WatchSpec {
        ty: ValueType::Signed { len_bytes: 8 },
        ..WatchSpec::write(Region::new(addr, 8))
    }
}

#[derive(Default)]
struct Recorder {
    /// (thread, piece, old, new, watch)
    hits: Vec<(Tid, usize, Value, Value, usize)>,
    started: Vec<Tid>,
    exited: Vec<Tid>,
    execs: usize,
    on_exec: Option<ExecVerdict>,
    break_at: Option<usize>,
    rip_seen: Vec<u64>,
    /// `Hit::ip` of each hit (`None` when neither `ip` nor `regs` was asked).
    ip_seen: Vec<Option<u64>>,
    detach_at: Option<usize>,
    /// All-stop check: at each hit, every other thread of this process must be stopped.
    check_all_stopped: Option<i32>,
    others_running_at_a_hit: Vec<(Tid, String)>,
}

/// `/proc/PID/task/TID/stat` state letter of every thread but `except`.
fn other_thread_states(pid: i32, except: Tid) -> Vec<(Tid, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Tid))
        .filter(|t| *t != except)
        .filter_map(|t| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/stat")).ok()?;
            let state = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .to_string();
            Some((t, state))
        })
        .collect()
}

impl StopHandler for Recorder {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        self.hits
            .push((hit.tid, hit.piece, hit.old_value, hit.new_value, hit.watch));
        if let Some(r) = hit.regs {
            self.rip_seen.push(r.ip());
        }
        self.ip_seen.push(hit.ip);
        if let Some(pid) = self.check_all_stopped {
            // 't' = ptrace stop; a thread that already exited may show as zombie or dead.
            let running = other_thread_states(pid, hit.tid)
                .into_iter()
                .filter(|(_, s)| !matches!(s.as_str(), "t" | "Z" | "X"));
            self.others_running_at_a_hit.extend(running);
        }
        if self.break_at == Some(self.hits.len()) {
            return Verdict::Break;
        }
        if self.detach_at == Some(self.hits.len()) {
            return Verdict::Detach;
        }
        Verdict::Continue
    }
    fn exec(&mut self, _pid: Tid) -> ExecVerdict {
        self.execs += 1;
        self.on_exec.clone().unwrap_or(ExecVerdict::Detach)
    }
    fn thread(&mut self, e: ThreadEvent) {
        match e {
            ThreadEvent::Started(t) => self.started.push(t),
            ThreadEvent::Exited(t) => self.exited.push(t),
        }
    }
}

fn out_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.out", std::process::id()))
}

fn spawn(
    bin: &Path,
    args: &[&str],
    out: &Path,
    watches: Vec<WatchSpec>,
    opts: StopOptions,
) -> Tracer {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = vec![(
        "HWBP_FIXTURE_OUT".to_string(),
        out.to_string_lossy().into_owned(),
    )];
    Tracer::spawn(bin.to_str().unwrap(), &args, &env, watches, opts).expect("spawn under stop mode")
}

#[test]
fn spawned_target_reports_every_write_with_exact_old_and_new() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("seq");
    let mut t = spawn(
        bin,
        &["seq", "1000", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 1000);
    for (i, &(_, piece, old, new, _)) in rec.hits.iter().enumerate() {
        let i = i as i64;
        let expect_old = if i == 0 { 0 } else { f(i - 1) };
        assert_eq!(piece, 0);
        assert_eq!(
            (old, new),
            (Value::Int(expect_old.into()), Value::Int(f(i).into())),
            "hit {i}"
        );
    }
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("sum {} writes 1000", seq_sum(1000)));
}

/// SIGTRAP and SIGUSR1 the target raises itself are not hits: they reach its handlers
/// unchanged, while every write is still exactly one hit.
#[test]
fn foreign_signals_are_reinjected_unchanged() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("signals");
    let mut t = spawn(
        bin,
        &["signals", "200", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 200);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        format!("traps 200 usr1 200\nsum {} writes 200\n", seq_sum(200))
    );
    assert!(hwbp::ptrace::resolve_program("sh").is_some_and(|p| p.is_absolute()));
}

/// Job control still works under stop mode: SIGSTOP stops the target (the tracer leaves the
/// group stop in place with `PTRACE_LISTEN`) until SIGCONT; the tracer then follows it to its
/// normal exit.
#[test]
fn sigstop_and_sigcont_keep_their_meaning() {
    let (bin, _hw) = fixture_or_skip!();
    let mut target = Target::start(bin, &["cmd"]);
    let pid = target.pid();
    let (tracer, mut report) = fork_tracer(pid, StopOptions::default(), None);
    assert_eq!(read_byte(&mut report), Some(b'R'));
    target.send("w 10\n");
    assert_eq!(target.line(), "ok 10");
    sys::kill(pid, libc::SIGSTOP).unwrap();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // Stopped by job control ('T' or, while a ptrace stop is being turned into the listening
    // group stop, 't'); it does not run on: a command sent now is not answered until SIGCONT.
    while !matches!(state().as_str(), "T" | "t") {
        std::thread::yield_now();
    }
    target.send("w 5\n");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        matches!(state().as_str(), "T" | "t"),
        "still stopped: {}",
        state()
    );
    sys::kill(pid, libc::SIGCONT).unwrap();
    assert_eq!(target.line(), "ok 15");
    target.send("q\n");
    let (status, out) = target.finish();
    assert_eq!(read_byte(&mut report), Some(b'X'));
    reap(tracer);
    assert!(status.success(), "{status:?}");
    assert_eq!(out, format!("sum {} writes 15", seq_sum(15)));
}

#[test]
fn conditions_and_changed_filter_exactly() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    // `new < 0` over f(i) = 7i - 100, i < 300: exactly the i with 7i < 100, i.e. 0..=14.
    let mut w = watch_i64(addr);
    w.condition = Some(Expr::parse("new < 0 && new != old").unwrap());
    let out = out_file("cond");
    let mut t = spawn(
        bin,
        &["seq", "300", "nowait"],
        &out,
        vec![w],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(t.hits_seen(), 300, "every write was seen, 15 reported");
    let expected: Vec<i64> = (0..300).map(f).filter(|v| *v < 0).collect();
    let got: Vec<Value> = rec.hits.iter().map(|h| h.3).collect();
    assert_eq!(
        got,
        expected
            .iter()
            .map(|&v| Value::Int(v.into()))
            .collect::<Vec<_>>()
    );
    assert_eq!(got.len(), 15);

    // `changed` like gdb's watch: `pairs 400` writes i/2, each value twice; the first write
    // (0 over 0) and every second write of a value change nothing -> 199 reported hits.
    let mut w = watch_i64(addr);
    w.changed_only = true;
    let mut t = spawn(
        bin,
        &["pairs", "400", "nowait"],
        &out,
        vec![w],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 199);
    for (k, h) in rec.hits.iter().enumerate() {
        assert_eq!(
            (h.2, h.3),
            (Value::Int(k as i128), Value::Int(k as i128 + 1))
        );
    }
}

#[test]
fn registers_and_pieces_of_an_unaligned_region() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    // Bytes 3..8 of `target`: planned as 1 byte at +3 and 4 bytes at +4. An 8-byte store
    // to `target` matches both pieces in one #DB; the two SIGTRAPs coalesce (a non-RT signal
    // is queued once), so each store is exactly one stop.
    let w = WatchSpec {
        ty: ValueType::Bytes,
        ..WatchSpec::write(Region::new(addr + 3, 5))
    };
    let out = out_file("regs");
    let opts = StopOptions {
        regs: true,
        ..StopOptions::default()
    };
    let mut t = spawn(bin, &["seq", "50", "nowait"], &out, vec![w], opts);
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 50, "one stop per store");
    assert!(
        rec.hits.iter().all(|h| h.1 <= 1),
        "pieces {:?}",
        rec.hits.iter().map(|h| h.1).collect::<Vec<_>>()
    );
    assert_eq!(rec.rip_seen.len(), 50);
    // -no-pie: .text is mapped at 0x401000 and is far below the data at `target`.
    assert!(
        rec.rip_seen
            .iter()
            .all(|&ip| (0x40_1000..addr).contains(&ip)),
        "{:x?}",
        &rec.rip_seen[..3]
    );
}

#[test]
fn ip_alone_is_the_registers_rip() {
    let (bin, _hw) = fixture_or_skip!();
    let w = WatchSpec::write(Region::new(target_addr(bin), 8));
    let mut runs = Vec::new();
    for (regs, ip) in [(true, false), (false, true), (false, false)] {
        let out = out_file(&format!("ip-{regs}-{ip}"));
        let opts = StopOptions {
            regs,
            ip,
            ..StopOptions::default()
        };
        let mut t = spawn(bin, &["seq", "20", "nowait"], &out, vec![w.clone()], opts);
        let mut rec = Recorder::default();
        assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
        assert_eq!(rec.hits.len(), 20);
        assert_eq!(rec.rip_seen.len(), if regs { 20 } else { 0 });
        runs.push(rec.ip_seen);
    }
    // One PTRACE_PEEKUSER of rip gives what PTRACE_GETREGS gives; neither asked: no IP.
    assert!(runs[0].iter().all(Option::is_some), "{:x?}", runs[0]);
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[2], vec![None; 20]);
}

struct Target {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Target {
    fn start(bin: &Path, args: &[&str]) -> Target {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fixture");
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        assert!(first.starts_with("addr "), "{first}");
        Target { child, lines }
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn send(&mut self, s: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(s.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.lines.read_line(&mut l).unwrap();
        l.trim().to_string()
    }
    /// Exit status and the remaining output.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.lines, &mut rest).unwrap();
        (self.child.wait().unwrap(), rest.trim().to_string())
    }
}

/// Attach runs in a forked child process (the tracer role), so that the test thread stays the
/// target's real parent and can check its exit status. Returns the tracer's pid and the read
/// end of its report pipe; the child writes `b'R'` once armed, then its end code:
/// `S` shutdown, `X` target exited, `B` break, `D` detached, `E` error, `P` panic caught;
/// after a normal end also its counts (see [`read_counts`]).
///
/// (A tracer thread next to a test thread that waits for the same child would not work: a
/// `waitpid` without `__WNOTHREAD` in any thread of the tracer's process also takes that
/// thread's ptrace stops.)
fn fork_tracer(pid: i32, opts: StopOptions, panic_at: Option<usize>) -> (i32, std::fs::File) {
    let addr = target_addr(fixture().unwrap());
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two fds we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs single-threaded code and leaves with _exit.
    let tracer = unsafe { libc::fork() };
    if tracer == 0 {
        // SAFETY: fds[1] is ours in the child.
        let mut report = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            install_shutdown_signals().unwrap();
            let mut t = match Tracer::attach(pid, vec![watch_i64(addr)], opts) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("tracer role: attach failed: {e}");
                    return (b'E', [0; 3]);
                }
            };
            report.write_all(b"R").unwrap();
            struct Panicky(Option<usize>, usize, [u64; 3], i32);
            impl StopHandler for Panicky {
                fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
                    self.1 += 1;
                    if Some(self.1) == self.0 {
                        panic!("handler panics at hit {}", self.1);
                    }
                    self.2[0] += 1;
                    if hit.tid != Tid(self.3) {
                        self.2[1] += 1;
                    }
                    Verdict::Continue
                }
                fn thread(&mut self, e: ThreadEvent) {
                    if matches!(e, ThreadEvent::Started(_)) {
                        self.2[2] += 1;
                    }
                }
            }
            let mut h = Panicky(panic_at, 0, [0; 3], pid);
            let code = match t.run(&mut h) {
                Ok(RunEnd::Shutdown { .. }) => b'S',
                Ok(RunEnd::Exited(_)) => b'X',
                Ok(RunEnd::Break { .. }) => b'B',
                Ok(_) => b'D',
                Err(e) => {
                    eprintln!("tracer role: run failed: {e}");
                    b'E'
                }
            };
            (code, h.2)
        }))
        .unwrap_or((b'P', [0; 3]));
        let _ = report.write_all(&[code.0]);
        for c in code.1 {
            let _ = report.write_all(&c.to_le_bytes());
        }
        // SAFETY: leave without running the test harness's atexit machinery.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the parent closes its copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is ours.
    (tracer, unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
    })
}

/// After the end code: (hits, hits by threads other than the leader, threads started).
fn read_counts(f: &mut std::fs::File) -> (u64, u64, u64) {
    let mut b = [0u8; 24];
    std::io::Read::read_exact(f, &mut b).unwrap();
    let at = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    (at(0), at(1), at(2))
}

fn read_byte(f: &mut std::fs::File) -> Option<u8> {
    let mut b = [0u8];
    match std::io::Read::read(f, &mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

fn reap(pid: i32) -> i32 {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    st
}

fn tracer_pid_of(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn attach_follows_threads_created_later_and_their_exit() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let mut target = Target::start(bin, &["thread_exit", "4", "250", "100"]);
    let pid = target.pid();
    let (tracer, mut report) = fork_tracer(pid, StopOptions::default(), None);
    assert_eq!(read_byte(&mut report), Some(b'R'));
    target.send("go\n");
    let (status, out) = target.finish();
    assert_eq!(
        read_byte(&mut report),
        Some(b'X'),
        "the tracer saw the target exit"
    );
    reap(tracer);
    assert!(status.success());
    assert_eq!(out, format!("sum {} writes 1100", seq_sum(100)));

    // Same in-process, to count hits per thread and thread events.
    let mut target = Target::start(bin, &["thread_exit", "4", "250", "100"]);
    let pid = target.pid();
    let mut t = Tracer::attach(pid, vec![watch_i64(addr)], StopOptions::default()).unwrap();
    assert_eq!(t.threads(), vec![Tid(pid)]);
    target.send("go\n");
    let mut rec = Recorder {
        check_all_stopped: Some(pid),
        ..Recorder::default()
    };
    // The target is also our child: the tracer reaps its exit.
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 4 * 250 + 100);
    assert_eq!(
        rec.others_running_at_a_hit,
        vec![],
        "all-stop: every thread stopped at each hit"
    );
    assert_eq!(rec.started.len(), 4);
    assert_eq!(rec.exited.len(), 4);
    for tid in &rec.started {
        let n = rec.hits.iter().filter(|h| h.0 == *tid).count();
        assert_eq!(n, 250, "thread {tid} hits");
        // Concurrent writers: `new` is the memory when the stop is read, which another
        // running thread may already have overwritten; it is always a value some thread wrote.
        for h in rec.hits.iter().filter(|h| h.0 == *tid) {
            let Value::Int(v) = h.3 else {
                panic!("typed i64")
            };
            assert!(
                (1..=4).contains(&(v / 1_000_000)) && v % 1_000_000 < 250,
                "{v}"
            );
        }
    }
    // After the threads exited, the main thread alone writes f(0..100): exact old -> new.
    let main: Vec<(Value, Value)> = rec
        .hits
        .iter()
        .filter(|h| h.0 == Tid(pid))
        .map(|h| (h.2, h.3))
        .collect();
    assert_eq!(main.len(), 100);
    for (i, (old, new)) in main.iter().enumerate().skip(1) {
        assert_eq!(
            (*old, *new),
            (
                Value::Int(f(i as i64 - 1).into()),
                Value::Int(f(i as i64).into())
            )
        );
    }
    assert_eq!(rec.hits.iter().filter(|h| h.0 == Tid(pid)).count(), 100);
}

/// Attach while the target creates and ends threads without pause: the seize loop re-lists
/// until stable, threads gone before they are armed are skipped, threads created later are
/// armed at their first stop. Hits on `target` (main thread only) stay exact.
#[test]
fn attach_during_thread_churn() {
    let (bin, _hw) = fixture_or_skip!();
    for run in 0..5 {
        let mut target = Target::start(bin, &["churn", "500"]);
        let (tracer, mut report) = fork_tracer(target.pid(), StopOptions::default(), None);
        assert_eq!(read_byte(&mut report), Some(b'R'), "run {run}");
        target.send("go\n");
        let (status, out) = target.finish();
        assert_eq!(read_byte(&mut report), Some(b'X'), "run {run}");
        let (hits, by_others, started) = read_counts(&mut report);
        reap(tracer);
        assert!(status.success(), "run {run}: {status:?}");
        assert_eq!(out, format!("sum {} writes 500", seq_sum(500)), "run {run}");
        assert_eq!((hits, by_others), (500, 0), "run {run}");
        assert!(started > 5, "run {run}: threads followed: {started}");
    }
}

/// Two watches at once: each hit names its watch; values exact for both.
#[test]
fn two_watches_are_told_apart() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = Command::new(bin).arg("addr_other").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let other = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap();
    let out = out_file("two");
    let watches = vec![watch_i64(addr), watch_i64(other)];
    let mut t = spawn(
        bin,
        &["two", "300", "nowait"],
        &out,
        watches,
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 600);
    for (k, h) in rec.hits.iter().enumerate() {
        let i = (k / 2) as i64;
        let (watch, old, new) = if k % 2 == 0 {
            (0, if i == 0 { 0 } else { f(i - 1) }, f(i))
        } else {
            (1, if i == 0 { 0 } else { -(i - 1) }, -i)
        };
        assert_eq!(h.4, watch, "hit {k}");
        assert_eq!(
            (h.2, h.3),
            (Value::Int(old.into()), Value::Int(new.into())),
            "hit {k}"
        );
    }
}

/// Refusals that need no process: they come before anything is spawned or attached.
#[test]
fn planning_errors_come_first() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("plan");
    let env = vec![(
        "HWBP_FIXTURE_OUT".to_string(),
        out.to_string_lossy().into_owned(),
    )];
    let args = vec!["seq".to_string(), "1".to_string(), "nowait".to_string()];
    // addr+3, 40 bytes: 1 + 4 + 4 x 8 + 2 + 1 aligned pieces = 8 > 4 debug registers.
    let wide = WatchSpec::write(Region::new(addr + 3, 40));
    let err = Tracer::spawn(
        bin.to_str().unwrap(),
        &args,
        &env,
        vec![wide],
        StopOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        hwbp::ptrace::TraceError::TooManyPieces {
            needed: 8,
            capacity: 4
        }
    );
    let read = WatchSpec {
        access: hwbp_core::Access::Read,
        ..WatchSpec::write(Region::new(addr, 8))
    };
    let err = Tracer::spawn(
        bin.to_str().unwrap(),
        &args,
        &env,
        vec![read],
        StopOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        hwbp::ptrace::TraceError::Plan(hwbp_core::PlanError::Rule(
            hwbp_core::RuleError::ReadOnlyUnsupported
        ))
    );
    assert!(!out.exists(), "nothing was started");
}

#[path = "agent.rs"]
mod agent;
#[path = "ptrace_blocked.rs"]
mod blocked;
#[path = "ptrace_drfile.rs"]
mod drfile;
#[path = "ptrace_lifecycle.rs"]
mod lifecycle;
