//! Stop mode through the in-process agent (crates/hwbp-agent) on real hardware: issue 6's
//! reliability requirements for the agent path, next to the tracer's (`ptrace_lifecycle.rs`):
//! exact hits (threads too), ring backpressure, foreign SIGTRAPs, exec, code mapped later, and
//! no agent in the program's children; `agent_lifecycle.rs`: shutdown signals, a panic, SIGKILL
//! of the consumer, detach. Helpers (the fixture, the lock, `f`, `seq_sum`, `Recorder`) are
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

use hwbp::launch::{spawn_at_entry_with, Child, ExitStatus, Extra, Stopped};
use hwbp::ptrace::agent::{AgentLaunch, AgentSession};

use super::*;

/// The fixture, the hardware lock and no other stop-mode test of this process (these tests
/// fork: see `FORKERS`), or a printed skip (no `cc`, or no agent in this build).
macro_rules! agent_or_skip {
    ($test:expr) => {{
        let (bin, hw) = fixture_or_skip!(alone);
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

/// Closes every descriptor but stdio and `keep` (sorted, > 2): the first thing a forked child
/// does, a few `close_range(2)` calls and nothing else, so that it holds other tests' perf
/// events (a tracer's released watch would live on in it) for as short a time as possible.
fn close_inherited_fds(keep: &[u32]) {
    let mut first = 3u32;
    for &k in keep.iter().chain(&[u32::MAX]) {
        if k > first {
            // SAFETY: closes descriptors of this process only; no memory involved.
            unsafe { libc::syscall(libc::SYS_close_range, first, k - 1, 0) };
        }
        first = k.saturating_add(1);
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
    let mut keep: Vec<u32> = keep
        .iter()
        .chain(&[fds[1]])
        .filter(|&&fd| fd > 2)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    // SAFETY: the child runs single-threaded code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
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
    /// Never returns from this hit (until the process is killed).
    hold_at: Option<u64>,
}

impl StopHandler for SeqCheck {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        let k = self.hits as i64;
        self.hits += 1;
        if self.panic_at == Some(self.hits) {
            panic!("the handler panics at hit {}", self.hits);
        }
        while self.hold_at == Some(self.hits) {
            std::thread::sleep(std::time::Duration::from_secs(1));
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

/// A hit as [`Recorder`] keeps it: (thread, piece, old, new, watch).
type Seen = (Tid, usize, Value, Value, usize);

fn assert_exact_seq(hits: &[Seen], n: usize) {
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

    // Watched threads that exit: 4 x 250 hits, then the main thread alone writes f(0..100),
    // exact from its second write (its first `old` is the last worker's value).
    let out = out_file("agent-thread-exit");
    let (mut session, _child) = start(
        bin,
        &["thread_exit", "4", "250", "100", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let pid = session.pid();
    let mut rec = Recorder::default();
    assert_eq!(session.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!((rec.hits.len(), session.hits_seen()), (1100, 1100));
    let (workers, main): (Vec<&Seen>, Vec<&Seen>) = rec.hits.iter().partition(|h| h.0 != Tid(pid));
    let mut per_worker = std::collections::BTreeMap::new();
    workers
        .iter()
        .for_each(|h| *per_worker.entry(h.0).or_insert(0) += 1);
    assert_eq!(per_worker.values().collect::<Vec<_>>(), [&250; 4]);
    let main: Vec<(Value, Value)> = main.iter().map(|h| (h.2, h.3)).collect();
    assert_eq!(main.len(), 100);
    assert_eq!(main[0].1, Value::Int(f(0).into()));
    for (i, pair) in main.iter().enumerate().skip(1) {
        let i = i as i64;
        assert_eq!(
            *pair,
            (Value::Int(f(i - 1).into()), Value::Int(f(i).into()))
        );
    }
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes 1100", seq_sum(100))
    );
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

/// Counts hits and those from code hwbp had not seen (`Hit::new_code`: synchronous).
#[derive(Default)]
struct NewCode {
    rec: Recorder,
    new_code: usize,
}

impl StopHandler for NewCode {
    fn hit(&mut self, hit: &Hit<'_>) -> Verdict {
        self.new_code += usize::from(hit.new_code);
        self.rec.hit(hit)
    }
}

/// Code mapped after arming (`jit`: 70 executable mappings, more than the ring's header
/// holds, written from the highest): the first hit from it is synchronous (`new_code`), hwbp
/// reads the memory map again, and every later hit is ordinary.
#[test]
fn agent_code_mapped_later_is_new_once_even_past_the_header_ranges() {
    let (bin, _hw) = agent_or_skip!("agent_code_mapped_later");
    let addr = target_addr(bin);
    let out = out_file("agent-jit");
    let opts = StopOptions {
        ip: true,
        ..StopOptions::default()
    };
    let (mut session, _child) = start(
        bin,
        &["jit", "100", "nowait"],
        &out,
        vec![watch_i64(addr)],
        opts,
    );
    let mut h = NewCode::default();
    assert_eq!(session.run(&mut h).unwrap(), RunEnd::Exited(0));
    assert_exact_seq(&h.rec.hits, 100);
    assert_eq!(
        h.new_code, 1,
        "only the first hit is from code not seen yet"
    );
    // All from the same store routine: one page above the executable.
    let ips: std::collections::BTreeSet<_> = h.rec.ip_seen.iter().collect();
    assert_eq!(ips.len(), 1, "{ips:x?}");
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes 100", seq_sum(100))
    );
}

#[path = "agent_lifecycle.rs"]
mod lifecycle;
