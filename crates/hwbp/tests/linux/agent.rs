//! Stop mode through the in-process agent (crates/hwbp-agent) on real hardware: issue 6's
//! reliability requirements for the agent path, next to the tracer's (`ptrace_lifecycle.rs`):
//! exact hits, shutdown signals at random moments of a hit storm, a panic in the handler,
//! SIGKILL of the consumer (also with the ring full), detach, ring backpressure, and no agent
//! in the program's children. Helpers (the fixture, the lock, `f`, `seq_sum`, `Recorder`) are
//! the parent's.
//!
//! The consumer runs in this process when nothing can disturb what is checked, and in a
//! forked process when it must take a shutdown signal (a single-threaded process, so
//! [`install_shutdown_signals`] covers every thread), be killed, or count its own perf
//! descriptors. A forked consumer first closes every descriptor it inherited (other tests'
//! perf events, pipes), so that it keeps nothing of theirs alive and they nothing of its.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::FromRawFd;

use hwbp::caps::probe_slots;
use hwbp::launch::{spawn_at_entry_with, Child, ExitStatus, Extra, Stopped};
use hwbp::ptrace::agent::{AgentLaunch, AgentSession};
use hwbp::sys::agent_layout::Header;
use hwbp::sys::{RealSys, Scope};
use std::mem::offset_of;

use super::*;

/// The fixture and the hardware lock, or a printed skip (no `cc`, or no agent in this build).
macro_rules! agent_or_skip {
    ($test:expr) => {{
        let (bin, hw) = fixture_or_skip!();
        if !hwbp::ptrace::agent::available() {
            skip_note!(
                "SKIP {}: this build carries no agent (x86-64 Linux only)",
                $test
            );
            return;
        }
        (bin, hw)
    }};
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Starts `bin args` with the agent's files (stdout to `out`), stopped at its entry point;
/// `tweak` may change the environment first.
fn launch_with(
    bin: &Path,
    args: &[&str],
    out: &Path,
    tweak: impl FnOnce(&mut Extra),
) -> (AgentLaunch, Stopped) {
    let launch = AgentLaunch::new().expect("the agent's files");
    let mut extra = launch.extra();
    extra
        .env
        .push(("HWBP_FIXTURE_OUT".into(), out.as_os_str().to_owned()));
    tweak(&mut extra);
    let stopped = spawn_at_entry_with(bin.as_os_str(), &os_args(args), &extra)
        .expect("start the program at its entry point");
    (launch, stopped)
}

/// Whether `pid` catches SIGTRAP (`SigCgt` of /proc/PID/status): the agent's handler is
/// installed exactly when it activated.
fn catches_sigtrap(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGTRAP - 1)) != 0
}

/// Arms `watches` on a program started by [`launch_with`] and lets it run.
fn arm(
    launch: AgentLaunch,
    stopped: Stopped,
    watches: Vec<WatchSpec>,
    opts: StopOptions,
) -> (AgentSession, Child) {
    let pid = stopped.pid().get();
    assert!(launch.loaded(pid), "the agent loaded into {pid}");
    assert!(
        catches_sigtrap(pid),
        "the agent's SIGTRAP handler is installed"
    );
    let session = launch
        .arm(pid, watches, opts)
        .expect("arm through the agent");
    assert_eq!(session.pid(), pid);
    let child = stopped.resume().expect("resume");
    (session, child)
}

/// `bin args` under the agent, `watches` armed, running.
fn start(
    bin: &Path,
    args: &[&str],
    out: &Path,
    watches: Vec<WatchSpec>,
    opts: StopOptions,
) -> (AgentSession, Child) {
    let (launch, stopped) = launch_with(bin, args, out, |_| {});
    arm(launch, stopped, watches, opts)
}

fn read_out(out: &Path) -> String {
    std::fs::read_to_string(out).unwrap_or_default()
}

/// This process's perf event descriptors.
fn perf_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.as_os_str() == "anon_inode:[perf_event]")
        .count()
}

/// Closes every descriptor but stdio and `keep` (in a forked child).
fn close_inherited_fds(keep: &[i32]) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing a descriptor number of our own (one that is already gone: EBADF).
        unsafe { libc::close(fd) };
    }
}

/// Runs `body` in a forked child and leaves with `_exit` (a panic is reported as `P`).
fn in_child(report: &mut File, body: impl FnOnce(&mut File)) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(report)));
    if let Err(p) = &r {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("?");
        let _ = std::io::stderr().write_all(format!("agent consumer panicked: {msg}\n").as_bytes());
        let _ = report.write_all(b"P");
    }
    // SAFETY: leave without running the harness's exit machinery.
    unsafe { libc::_exit(i32::from(r.is_err())) }
}

/// Forks a child that keeps only stdio, `keep` and the write end of a report pipe, and runs
/// `body` with that end. Returns the child and the read end.
fn fork_reporting(keep: &[i32], body: impl FnOnce(&mut File)) -> (i32, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child runs single-threaded code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut keep = keep.to_vec();
        keep.push(fds[1]);
        close_inherited_fds(&keep);
        // SAFETY: fds[1] is ours in the child.
        let mut report = unsafe { File::from_raw_fd(fds[1]) };
        in_child(&mut report, body);
    }
    assert!(pid > 0, "fork");
    // SAFETY: the parent closes its copy of the write end and owns the read end.
    unsafe { libc::close(fds[1]) };
    (pid, unsafe { File::from_raw_fd(fds[0]) })
}

fn put(report: &mut File, values: &[u64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    report.write_all(&bytes).unwrap();
}

fn take<const N: usize>(report: &mut File) -> [u64; N] {
    let mut b = vec![0u8; 8 * N];
    std::io::Read::read_exact(report, &mut b).expect("the consumer's report");
    std::array::from_fn(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()))
}

/// An exit status as a number: the code, or 1000 + the signal.
fn status_code(s: ExitStatus) -> u64 {
    match s {
        ExitStatus::Code(c) => c as u64,
        ExitStatus::Signal(s) => 1000 + s as u64,
    }
}

/// Checks each hit against `seq`'s writes: hit k (from 0) is f(k - 1) -> f(k) (0 before).
#[derive(Default)]
struct SeqCheck {
    hits: u64,
    wrong: u64,
    panic_at: Option<u64>,
    detach_at: Option<u64>,
}

impl StopHandler for SeqCheck {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        let k = self.hits as i64;
        self.hits += 1;
        if self.panic_at == Some(self.hits) {
            panic!("the handler panics at hit {}", self.hits);
        }
        let old = if k == 0 { 0 } else { f(k - 1) };
        let expected = (Value::Int(old.into()), Value::Int(f(k).into()));
        if (hit.old_value, hit.new_value) != expected || hit.piece != 0 || hit.watch != 0 {
            self.wrong += 1;
        }
        if self.detach_at == Some(self.hits) {
            return Verdict::Detach;
        }
        Verdict::Continue
    }
}

fn assert_exact_seq(hits: &[(Tid, usize, Value, Value, usize)], n: usize) {
    assert_eq!(hits.len(), n);
    for (i, &(_, piece, old, new, watch)) in hits.iter().enumerate() {
        let i = i as i64;
        let expect_old = if i == 0 { 0 } else { f(i - 1) };
        assert_eq!((piece, watch), (0, 0), "hit {i}");
        assert_eq!(
            (old, new),
            (Value::Int(expect_old.into()), Value::Int(f(i).into())),
            "hit {i}"
        );
    }
}

#[test]
fn agent_reports_every_write_with_exact_old_and_new_and_exact_per_thread_counts() {
    let (bin, _hw) = agent_or_skip!("agent_reports_every_write");
    let addr = target_addr(bin);
    let out = out_file("agent-seq");
    let (mut session, _child) = start(
        bin,
        &["seq", "1000", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_exact_seq(&rec.hits, 1000);
    assert_eq!(session.hits_seen(), 1000);
    assert_eq!((session.dropped(), session.foreign_sigtraps()), (0, 0));
    assert!(rec.hits.iter().all(|h| h.0 == Tid(session.pid())));
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes 1000", seq_sum(1000))
    );

    // 4 threads created after arming (inherited events), 250 writes each: exactly 250 hits
    // per thread, none by the main thread.
    let out = out_file("agent-threads");
    let (mut session, _child) = start(
        bin,
        &["threads", "4", "250", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let pid = session.pid();
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 1000);
    assert_eq!(session.hits_seen(), 1000);
    let mut per_thread = std::collections::BTreeMap::new();
    for h in &rec.hits {
        *per_thread.entry(h.0).or_insert(0) += 1;
        // The bytes are read in the accessing thread right after its access; another thread
        // may have written since: always a value some thread wrote.
        let Value::Int(v) = h.3 else {
            panic!("typed i64")
        };
        assert!(
            (1..=4).contains(&(v / 1_000_000)) && v % 1_000_000 < 250,
            "{v}"
        );
    }
    assert!(!per_thread.contains_key(&Tid(pid)), "{per_thread:?}");
    assert_eq!(per_thread.len(), 4, "{per_thread:?}");
    assert!(per_thread.values().all(|&n| n == 250), "{per_thread:?}");
    assert_eq!(read_out(&out).trim(), "sum 0 writes 1000");
}

/// Checks hits of `threads 4 N`: each by one of the 4 threads, never the main one, the value one
/// a thread wrote; counts hits and wrong ones.
struct ThreadsCheck {
    pid: i32,
    hits: u64,
    wrong: u64,
}

impl StopHandler for ThreadsCheck {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        self.hits += 1;
        let plausible =
            matches!(hit.new_value, Value::Int(v) if (1..=4).contains(&(v / 1_000_000)));
        if !plausible || hit.tid == Tid(self.pid) {
            self.wrong += 1;
        }
        Verdict::Continue
    }
}

/// What [`shutdown_storm`] measured over its runs.
#[derive(Debug, Default)]
struct ShutdownStats {
    /// Hits reported per run.
    reported: Vec<u64>,
    /// Hits that reached the agent after the release (`dropped`), per run, after the
    /// program's exit, and at the return of `run`.
    dropped: Vec<(u64, u64)>,
}

/// `runs` times: the consumer (a forked process, shutdown signals blocked) starts `args`
/// under the agent, and gets SIGINT, SIGTERM or SIGHUP in turn at a random moment of
/// 0.5-60 ms; it must end `run` with `Shutdown`, then wait for the program. The program must
/// exit 0 with output `expect`, and at most `max_dropped` hits may reach the agent after
/// the release. Every reported hit is checked (`seq`: exact pairs; `threads`: by a worker).
fn shutdown_storm(
    bin: &'static Path,
    args: &[&str],
    runs: usize,
    expect: &str,
    max_dropped: u64,
) -> ShutdownStats {
    let addr = target_addr(bin);
    let seed = seed_from_env_or_clock();
    eprintln!("agent shutdown storm {args:?} seed {seed} (HWBP_SEED={seed} to replay)");
    let mut rng = StepRng::new(seed);
    let out = out_file(&format!("agent-shutdown-{}", args[0]));
    let mut stats = ShutdownStats::default();
    for run in 0..runs {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP][run % 3];
        let _ = std::fs::remove_file(&out);
        let (consumer, mut report) = fork_reporting(&[], |report| {
            let (mut session, mut child) = start(
                bin,
                args,
                &out,
                vec![watch_i64(addr)],
                StopOptions::default(),
            );
            // Blocked only now: the program keeps the default mask.
            install_shutdown_signals().unwrap();
            report.write_all(b"R").unwrap();
            let (end, hits, wrong) = if args[0] == "seq" {
                let mut check = SeqCheck::default();
                let end = session.run(&mut check).unwrap();
                (end, check.hits, check.wrong)
            } else {
                let pid = session.pid();
                let mut check = ThreadsCheck {
                    pid,
                    hits: 0,
                    wrong: 0,
                };
                let end = session.run(&mut check).unwrap();
                (end, check.hits, check.wrong)
            };
            let signal = match end {
                RunEnd::Shutdown { signal } => signal as u64,
                other => panic!("run ended with {other:?}"),
            };
            let at_release = session.dropped();
            let status = status_code(child.wait().unwrap());
            let seen = session.hits_seen();
            put(
                report,
                &[
                    signal,
                    hits,
                    wrong,
                    seen,
                    at_release,
                    session.dropped(),
                    status,
                ],
            );
        });
        assert_eq!(read_byte(&mut report), Some(b'R'), "run {run}");
        std::thread::sleep(std::time::Duration::from_micros(500 + rng.below(59_500)));
        sys::kill(consumer, sig).unwrap();
        let [signal, hits, wrong, seen, at_release, after, status] = take::<7>(&mut report);
        let st = reap(consumer);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "run {run}"
        );
        assert_eq!(signal, sig as u64, "run {run}: Shutdown by the signal sent");
        assert_eq!(wrong, 0, "run {run}: every reported hit right");
        assert_eq!(hits, seen, "run {run}");
        assert_eq!(status, 0, "run {run} signal {sig}: program exit");
        assert_eq!(read_out(&out).trim(), expect, "run {run}");
        // Nothing after the release but what was already under way: per thread, one SIGTRAP
        // queued when the events were closed, or one hit waiting for ring space.
        assert!(
            after <= max_dropped,
            "run {run}: {after} hits after the shutdown"
        );
        stats.reported.push(hits);
        stats.dropped.push((after, at_release));
    }
    stats
}

/// SIGINT, SIGTERM and SIGHUP to the consumer at a random moment (0.5-60 ms) of a 40 000-write
/// storm, 100 times: `run` returns `Shutdown`, every reported hit is exact, the program
/// finishes with exit 0 and its full output, and after the shutdown at most one hit (the one
/// under way at the release) reaches the agent: the program runs on unwatched.
#[test]
fn agent_shutdown_signals_during_a_hit_storm_leave_the_program_intact_100_times() {
    let (bin, _hw) = agent_or_skip!("agent_shutdown_signals");
    let n = 40_000;
    let expect = format!("sum {} writes {n}", seq_sum(n));
    let stats = shutdown_storm(bin, &["seq", &n.to_string(), "nowait"], 100, &expect, 1);
    let ring = hwbp::sys::agent_layout::SLOTS as u64;
    let runs_with = |d: u64| stats.dropped.iter().filter(|r| r.0 == d).count();
    let small = stats
        .reported
        .iter()
        .zip(&stats.dropped)
        .filter(|(hits, d)| **hits < ring && d.0 == 1)
        .count();
    eprintln!(
        "agent shutdown: 100 runs, hits reported {}..={} of {n}; hits reaching the agent \
         after the release: 0 in {} runs, 1 in {} runs ({} of those with fewer hits reported \
         than the ring holds, so not a producer waiting for space; {} counted already when \
         run returned)",
        stats.reported.iter().min().unwrap(),
        stats.reported.iter().max().unwrap(),
        runs_with(0),
        runs_with(1),
        small,
        stats.dropped.iter().filter(|r| r.1 > 0).count(),
    );
}

/// The same with 4 threads hitting concurrently (created after arming), 30 times: at most
/// one hit per thread after the release.
#[test]
fn agent_shutdown_signals_with_concurrent_threads_leave_the_program_intact() {
    let (bin, _hw) = agent_or_skip!("agent_shutdown_signals_with_concurrent_threads");
    let stats = shutdown_storm(
        bin,
        &["threads", "4", "20000", "nowait"],
        30,
        "sum 0 writes 80000",
        4,
    );
    let mut hist = [0; 5];
    stats.dropped.iter().for_each(|d| hist[d.0 as usize] += 1);
    eprintln!(
        "agent threaded shutdown: 30 runs, hits reported {}..={} of 80000; runs by hits \
         reaching the agent after the release (0..=4): {hist:?}",
        stats.reported.iter().min().unwrap(),
        stats.reported.iter().max().unwrap(),
    );
}

/// A panic in the handler (at hits 1, 7, 500) unwinds through `run` and drops the session:
/// the program finishes with exit 0 and its full output.
#[test]
fn agent_panic_in_the_handler_releases_the_program() {
    let (bin, _hw) = agent_or_skip!("agent_panic_in_the_handler");
    let addr = target_addr(bin);
    let out = out_file("agent-panic");
    for panic_at in [1, 7, 500] {
        let (session, mut child) = start(
            bin,
            &["seq", "3000", "nowait"],
            &out,
            vec![watch_i64(addr)],
            StopOptions::default(),
        );
        let mut check = SeqCheck {
            panic_at: Some(panic_at),
            ..SeqCheck::default()
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Owned here: the unwinding drops it.
            let mut session = session;
            session.run(&mut check)
        }));
        assert!(r.is_err(), "the handler panicked");
        assert_eq!((check.hits, check.wrong), (panic_at, 0));
        assert_eq!(child.wait(), Ok(ExitStatus::Code(0)), "panic at {panic_at}");
        assert_eq!(
            read_out(&out).trim(),
            format!("sum {} writes 3000", seq_sum(3000))
        );
    }
}

/// The consumer C (a child of a subreaper S forked by the test) starts the program P under
/// the agent and reads its hits; the test acts on C (`act` with C's and P's pids); S reaps
/// C, then P (re-parented to S), and reports both raw wait statuses.
fn supervised_consumer(
    bin: &'static Path,
    args: Vec<String>,
    out: PathBuf,
    act: impl FnOnce(i32, i32),
) -> (i32, i32) {
    let addr = target_addr(bin);
    let (supervisor, mut report) = fork_reporting(&[], |report| {
        // SAFETY: prctl with integer arguments.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
            0
        );
        // SAFETY: this process is single-threaded; the child leaves with _exit.
        let consumer = unsafe { libc::fork() };
        if consumer == 0 {
            in_child(report, |report| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (mut session, _child) = start(
                    bin,
                    &args,
                    &out,
                    vec![watch_i64(addr)],
                    StopOptions::default(),
                );
                let mut ready = vec![b'R'];
                ready.extend_from_slice(&std::process::id().to_le_bytes());
                ready.extend_from_slice(&session.pid().to_le_bytes());
                report.write_all(&ready).unwrap();
                let end = session.run(&mut SeqCheck::default());
                report.write_all(b"X").unwrap();
                panic!("the consumer was not killed: {end:?}");
            });
        }
        let c_status = reap(consumer);
        let mut p_status = 0;
        // SAFETY: waiting for any child of this process (the re-parented program).
        let p = unsafe { libc::waitpid(-1, &mut p_status, 0) };
        assert!(p > 0, "the program was re-parented to the supervisor");
        report.write_all(b"E").unwrap();
        put(report, &[c_status as u32 as u64, p_status as u32 as u64]);
    });
    assert_eq!(read_byte(&mut report), Some(b'R'), "the consumer started");
    let mut pids = [0u8; 8];
    std::io::Read::read_exact(&mut report, &mut pids).unwrap();
    let consumer = i32::from_le_bytes(pids[..4].try_into().unwrap());
    let program = i32::from_le_bytes(pids[4..].try_into().unwrap());
    act(consumer, program);
    assert_eq!(
        read_byte(&mut report),
        Some(b'E'),
        "the supervisor's report"
    );
    let [c, p] = take::<2>(&mut report);
    assert!(libc::WIFEXITED(reap(supervisor)));
    (c as i32, p as i32)
}

/// SIGKILL of the consumer at a uniformly random moment (0.5-60 ms) of a continuous hit storm,
/// 30 times: the program finishes with its full output and exit 0 every time. The events die
/// with the consumer's descriptors and a SIGTRAP already queued lands in the agent's handler:
/// no window (the tracer has one, `sigkill_during_a_hit_storm_only_the_documented_window_remains`).
#[test]
fn agent_sigkill_of_the_consumer_during_a_hit_storm_never_hurts_the_program() {
    let (bin, _hw) = agent_or_skip!("agent_sigkill_of_the_consumer");
    let seed = seed_from_env_or_clock();
    eprintln!("agent sigkill storm seed {seed} (HWBP_SEED={seed} to replay)");
    let mut rng = StepRng::new(seed);
    // Far more writes than a consumer alive for 60 ms can see: the storm is on at the kill.
    // Odd runs: 4 threads hitting concurrently.
    let n = 1_000_000i64;
    let seq = format!("sum {} writes {n}", seq_sum(n));
    let out = out_file("agent-sigkill");
    let mut late_hits = Vec::new();
    for run in 0..30 {
        let _ = std::fs::remove_file(&out);
        let delay = 500 + rng.below(59_500);
        let (args, expect) = if run % 2 == 0 {
            (vec!["seq".into(), n.to_string()], seq.clone())
        } else {
            let each = n / 4;
            let args = vec!["threads".into(), "4".into(), each.to_string()];
            (args, format!("sum 0 writes {n}"))
        };
        let mut args: Vec<String> = args;
        args.push("nowait".into());
        let mut ring = None;
        let (c, p) = supervised_consumer(bin, args, out.clone(), |consumer, program| {
            let r = ring_of(program);
            std::thread::sleep(std::time::Duration::from_micros(delay));
            let head = r
                .as_ref()
                .map(|r| ring_counter(r, offset_of!(Header, head)));
            sys::kill(consumer, libc::SIGKILL).unwrap();
            ring = r.zip(head);
        });
        if let Some((r, head)) = ring {
            // Hits that reached the agent after the kill was sent: recorded (nobody reads
            // them) or dropped (ring full, consumer gone).
            let late = ring_counter(&r, offset_of!(Header, head)) - head
                + ring_counter(&r, offset_of!(Header, dropped));
            late_hits.push((run % 2 == 1, late));
        }
        assert!(
            libc::WIFSIGNALED(c) && libc::WTERMSIG(c) == libc::SIGKILL,
            "run {run}: consumer {c:#x}"
        );
        assert!(
            libc::WIFEXITED(p) && libc::WEXITSTATUS(p) == 0,
            "run {run} (kill after {delay} us): program status {p:#x}"
        );
        assert_eq!(read_out(&out).trim(), expect, "run {run}");
    }
    if late_hits.is_empty() {
        skip_note!("agent sigkill: the ring could not be opened through /proc/PID/map_files");
    } else {
        late_hits.sort_unstable();
        let of = |threads: bool| -> Vec<u64> {
            late_hits
                .iter()
                .filter(|h| h.0 == threads)
                .map(|h| h.1)
                .collect()
        };
        eprintln!(
            "agent sigkill: 30 runs, all finished; hits that reached the agent after kill(2) \
             of the consumer, per run: 1 thread {:?}, 4 threads {:?}",
            of(false),
            of(true)
        );
    }
}

/// The agent's shared ring as mapped in `pid` (`/proc/PID/map_files`, which needs
/// CAP_SYS_ADMIN): to read its counters after the consumer is gone. `None` without access.
fn ring_of(pid: i32) -> Option<File> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let line = maps.lines().find(|l| l.contains("hwbp-agent-ring"))?;
    let range = line.split_whitespace().next()?;
    File::open(format!("/proc/{pid}/map_files/{range}")).ok()
}

/// The u64 at `offset` of the ring's header.
fn ring_counter(ring: &File, offset: usize) -> u64 {
    let mut b = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(ring, &mut b, offset as u64).unwrap();
    u64::from_le_bytes(b)
}

/// Whether the (single-threaded) program is blocked in `futex(2)` (`/proc/PID/syscall`: the
/// number, or `running`); `None` once it is gone.
fn in_futex(pid: i32) -> Option<bool> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if state.contains(") Z") {
        return None;
    }
    let nr = text.split_whitespace().next()?;
    Some(nr == libc::SYS_futex.to_string())
}

/// The ring full when the consumer dies: the consumer is stopped (SIGSTOP) until the program
/// waits for ring space (in `futex`), then killed. The program notices that its consumer is
/// gone, drops the hit and finishes with exit 0 and its full output.
#[test]
fn agent_program_with_a_full_ring_survives_the_consumers_death() {
    let (bin, _hw) = agent_or_skip!("agent_program_with_a_full_ring");
    let n = 200_000i64;
    let out = out_file("agent-full");
    let (c, p) = supervised_consumer(
        bin,
        vec!["seq".into(), n.to_string(), "nowait".into()],
        out.clone(),
        |consumer, program| {
            sys::kill(consumer, libc::SIGSTOP).unwrap();
            // 4096 records fill the ring; the next hit waits in futex(2) for space.
            while !in_futex(program).expect("the program ended early") {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            sys::kill(consumer, libc::SIGKILL).unwrap();
        },
    );
    assert!(libc::WIFSIGNALED(c) && libc::WTERMSIG(c) == libc::SIGKILL);
    assert!(
        libc::WIFEXITED(p) && libc::WEXITSTATUS(p) == 0,
        "program {p:#x}"
    );
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes {n}", seq_sum(n))
    );
}

/// `Verdict::Detach` at hit 100 of 1000: exactly 100 hits reported; the events are closed
/// (the consumer's perf descriptors are back to before arming, and 4 breakpoints fit on the
/// program's thread again); 500 more writes after the detach reach nothing; the program
/// finishes with exit 0 and its full output.
#[test]
fn agent_detach_verdict_closes_the_events_and_lets_the_program_finish() {
    let (bin, _hw) = agent_or_skip!("agent_detach_verdict");
    let addr = target_addr(bin);
    let out = out_file("agent-detach");
    let _ = std::fs::remove_file(&out);
    let mut stdin = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(
        unsafe { libc::pipe2(stdin.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    let (consumer, mut report) = fork_reporting(&[stdin[0]], |report| {
        // The program reads its commands from the pipe.
        // SAFETY: plain descriptor calls on our own fds.
        unsafe {
            assert_eq!(libc::dup2(stdin[0], 0), 0);
            libc::close(stdin[0]);
        }
        let (launch, stopped) = launch_with(bin, &["cmd"], &out, |_| {});
        let before = perf_fds();
        let pid = stopped.pid().get();
        let (mut session, mut child) = arm(
            launch,
            stopped,
            vec![watch_i64(addr)],
            StopOptions::default(),
        );
        let armed = perf_fds();
        report.write_all(b"R").unwrap();
        let mut check = SeqCheck {
            detach_at: Some(100),
            ..SeqCheck::default()
        };
        let end = session.run(&mut check).unwrap();
        assert_eq!(end, RunEnd::Detached);
        let after = perf_fds();
        let free = probe_slots(&RealSys, Scope::Thread(hwbp::Tid(pid))).unwrap();
        put(
            report,
            &[
                check.hits,
                check.wrong,
                session.hits_seen(),
                before as u64,
                armed as u64,
                after as u64,
                u64::from(free),
            ],
        );
        let status = status_code(child.wait().unwrap());
        put(report, &[session.dropped(), status]);
    });
    // SAFETY: the program's end of the pipe is the consumer's now.
    unsafe { libc::close(stdin[0]) };
    // SAFETY: our end of the pipe.
    let mut commands = unsafe { File::from_raw_fd(stdin[1]) };
    assert_eq!(read_byte(&mut report), Some(b'R'));
    commands.write_all(b"w 1000\n").unwrap();
    let [hits, wrong, seen, before, armed, after, free] = take::<7>(&mut report);
    assert_eq!((hits, wrong, seen), (100, 0, 100), "hits after the detach");
    assert_eq!(armed, before + 1, "one event (one thread, one piece)");
    assert_eq!(after, before, "the event is closed");
    assert_eq!(
        free, 4,
        "every debug register of the program's thread is free"
    );
    commands.write_all(b"w 500\nq\n").unwrap();
    let [dropped, status] = take::<2>(&mut report);
    assert!(libc::WIFEXITED(reap(consumer)));
    assert_eq!(status, 0, "program exit");
    // Hits after the release: at most a SIGTRAP queued at the close, none of the 500 writes.
    assert!(
        dropped <= 1,
        "{dropped} hits reached the agent after the detach"
    );
    eprintln!("agent detach: {dropped} queued SIGTRAP(s) dropped after the release");
    let text = read_out(&out);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    let sum = format!("sum {} writes 1500", seq_sum(1500));
    assert_eq!(lines, ["ok 1000", "ok 1500", sum.as_str()], "{text}");
}

/// A consumer that holds its first hit until the program waits for ring space (the ring
/// holds 4096 records), then 50 ms more.
struct Slow {
    pid: i32,
    rec: Recorder,
    saw_producer_wait: bool,
}

impl StopHandler for Slow {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        if self.rec.hits.is_empty() {
            loop {
                match in_futex(self.pid) {
                    Some(true) => {
                        self.saw_producer_wait = true;
                        break;
                    }
                    None => break, // gone: the counts below tell
                    Some(false) => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.rec.hit(hit)
    }
}

/// Backpressure: a consumer slower than the program makes the program wait (the ring is
/// full); all 20 000 writes are reported, in order, with exact values, none lost.
#[test]
fn agent_ring_backpressure_loses_no_hit() {
    let (bin, _hw) = agent_or_skip!("agent_ring_backpressure");
    let addr = target_addr(bin);
    let out = out_file("agent-backpressure");
    let (mut session, _child) = start(
        bin,
        &["seq", "20000", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut slow = Slow {
        pid: session.pid(),
        rec: Recorder::default(),
        saw_producer_wait: false,
    };
    assert_eq!(session.run(&mut slow).unwrap(), RunEnd::Exited(0));
    assert!(slow.saw_producer_wait, "the program waited for ring space");
    assert_exact_seq(&slow.rec.hits, 20_000);
    assert_eq!((session.hits_seen(), session.dropped()), (20_000, 0));
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes 20000", seq_sum(20_000))
    );
}

/// The environment of a program started by the watched program (`child_env`: fork + exec
/// `env`), and the watched program's own hits (exact: the fork disturbs nothing).
fn child_environment(bin: &Path, user_preload: Option<&str>) -> Vec<String> {
    let addr = target_addr(bin);
    let out = out_file("agent-child-env");
    let (launch, stopped) = launch_with(bin, &["child_env", "100", "nowait"], &out, |extra| {
        // As `AgentLaunch::extra` does with a user's LD_PRELOAD (this process has none).
        if let Some(user) = user_preload {
            for (name, value) in &mut extra.env {
                if name == "LD_PRELOAD" {
                    value.push(":");
                    value.push(user);
                }
            }
            extra.env.push(("HWBP_AGENT_PRELOAD".into(), user.into()));
        }
    });
    let (mut session, _child) = arm(
        launch,
        stopped,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_exact_seq(&rec.hits, 100);
    let text = read_out(&out);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(format!("sum {} writes 100", seq_sum(100)).as_str())
    );
    assert!(
        lines.iter().any(|l| l.starts_with("HWBP_FIXTURE_OUT=")),
        "the child inherited the environment: {lines:?}"
    );
    lines
}

/// The agent takes its variables out of the program's environment: a program it starts
/// (fork + exec) loads no agent; a user's `LD_PRELOAD` is given back. And a process that
/// gets the variables and descriptors but is not the consumer's own child (a grandchild)
/// does not activate: no handler, the ring stays unclaimed, the program runs normally.
#[test]
fn agent_stays_out_of_the_programs_children() {
    let (bin, _hw) = agent_or_skip!("agent_stays_out_of_the_programs_children");
    let env = child_environment(bin, None);
    let agent_vars: Vec<&String> = env
        .iter()
        .filter(|l| l.starts_with("HWBP_AGENT") || l.starts_with("LD_PRELOAD="))
        .collect();
    assert_eq!(agent_vars, Vec::<&String>::new());

    let env = child_environment(bin, Some("libc.so.6"));
    let agent_vars: Vec<&String> = env
        .iter()
        .filter(|l| l.starts_with("HWBP_AGENT") || l.starts_with("LD_PRELOAD="))
        .collect();
    assert_eq!(agent_vars, vec!["LD_PRELOAD=libc.so.6"]);

    // The consumer is this process; the program is started by a child of it.
    let out = out_file("agent-grandchild");
    let launch = AgentLaunch::new().unwrap();
    let mut extra = launch.extra();
    extra
        .env
        .push(("HWBP_FIXTURE_OUT".into(), out.as_os_str().to_owned()));
    let keep = extra.inherit.clone();
    let (middle, mut report) = fork_reporting(&keep, |report| {
        let stopped =
            spawn_at_entry_with(bin.as_os_str(), &os_args(&["seq", "50", "nowait"]), &extra)
                .unwrap();
        let pid = stopped.pid().get();
        let (loaded, caught) = (launch.loaded(pid), catches_sigtrap(pid));
        let status = status_code(stopped.resume().unwrap().wait().unwrap());
        put(report, &[u64::from(loaded), u64::from(caught), status]);
    });
    let [loaded, caught, status] = take::<3>(&mut report);
    assert!(libc::WIFEXITED(reap(middle)));
    assert_eq!((loaded, caught), (0, 0), "the agent did not activate");
    assert_eq!(status, 0);
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes 50", seq_sum(50))
    );
}

/// SIGTRAP and SIGUSR1 the program raises itself (`signals`: its own handlers, installed with
/// `signal()` after the agent's) are not hits: they reach its handlers, each write is
/// exactly one hit, and the agent counts the foreign SIGTRAPs.
#[test]
fn agent_passes_foreign_sigtraps_to_the_programs_handler() {
    let (bin, _hw) = agent_or_skip!("agent_passes_foreign_sigtraps");
    let addr = target_addr(bin);
    let out = out_file("agent-signals");
    let (mut session, _child) = start(
        bin,
        &["signals", "200", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_exact_seq(&rec.hits, 200);
    assert_eq!((session.foreign_sigtraps(), session.dropped()), (200, 0));
    assert_eq!(
        read_out(&out),
        format!("traps 200 usr1 200\nsum {} writes 200\n", seq_sum(200))
    );
}

/// Exec ends watching (`remove_on_exec`; the new image starts without the agent): the 100
/// writes before the exec are hits, the 50 after are not, and the new image finishes.
#[test]
fn agent_exec_in_the_program_ends_watching() {
    let (bin, _hw) = agent_or_skip!("agent_exec_in_the_program");
    let addr = target_addr(bin);
    let out = out_file("agent-exec");
    let (mut session, _child) = start(
        bin,
        &["exec", "100", "50", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_exact_seq(&rec.hits, 100);
    assert_eq!(
        (rec.execs, session.hits_seen(), session.dropped()),
        (0, 100, 0)
    );
    assert_eq!(
        read_out(&out),
        format!("sum {} writes 50\n", seq_sum(50)),
        "the new image reopened the output: its own lines only"
    );
}
