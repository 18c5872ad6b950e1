//! Releasing the program whatever happens to the agent's consumer: shutdown signals at
//! random moments of a hit storm (one thread and four; also with a ring that never empties),
//! a panic in the handler, a SIGKILL (during a storm, with the ring full, while a thread waits
//! for its record), and the detach verdict. Helpers are the parent's (`agent.rs`).

use std::mem::offset_of;

use hwbp::caps::probe_slots;
use hwbp::sys::agent_layout::Header;
use hwbp::sys::{RealSys, Scope};

use super::*;

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
    // `jit`: the first hit is from code mapped after arming, so its thread waits for the
    // handler (a synchronous record) when the handler panics.
    for (mode, panic_at) in [("seq", 1), ("seq", 7), ("seq", 500), ("jit", 1)] {
        let (session, mut child) = start(
            bin,
            &[mode, "3000", "nowait"],
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
        assert_eq!(
            child.wait(),
            Ok(ExitStatus::Code(0)),
            "{mode}: panic at {panic_at}"
        );
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
    hold_at: Option<u64>,
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
                let end = session.run(&mut SeqCheck {
                    hold_at,
                    ..SeqCheck::default()
                });
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
        let (c, p) = supervised_consumer(bin, args, out.clone(), None, |consumer, program| {
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
        None,
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
/// (the consumer's perf descriptors are back to before arming, and as many breakpoints fit
/// on the program's thread as on a thread without any); 500 more writes after the detach reach nothing; the program
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
        // Once the program is done with the 1000 writes (and so has run, in its thread, the
        // SIGTRAP work of its last hit, which holds the event until then): free slots on its
        // thread, and on this (breakpoint-free) thread as the control, since a CPU-wide
        // breakpoint of any process takes one from both. Probed again if such an event came
        // or went between the two probes.
        let probe = |tid: i32| probe_slots(&RealSys, Scope::Thread(hwbp::Tid(tid))).unwrap();
        // Measured only, not asserted: right when `run` returned.
        let at_return = (probe(pid), probe(std::process::id() as i32));
        while !read_out(&out).contains("ok 1000") {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut free = (probe(pid), probe(std::process::id() as i32));
        for _ in 0..3 {
            if free.0 == free.1 {
                break;
            }
            free = (probe(pid), probe(std::process::id() as i32));
        }
        put(
            report,
            &[
                check.hits,
                check.wrong,
                session.hits_seen(),
                before as u64,
                armed as u64,
                after as u64,
                u64::from(free.0),
                u64::from(free.1),
                u64::from(at_return.0),
                u64::from(at_return.1),
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
    let [hits, wrong, seen, before, armed, after, free, control, at_return, control_at_return] =
        take::<10>(&mut report);
    assert_eq!((hits, wrong, seen), (100, 0, 100), "hits after the detach");
    assert_eq!(armed, before + 1, "one event (one thread, one piece)");
    assert_eq!(after, before, "the event is closed");
    assert_eq!(
        free, control,
        "the program's thread has every debug register back (as many free as on a thread \
         without breakpoints)"
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
    eprintln!(
        "agent detach: {dropped} queued SIGTRAP(s) dropped after the release; {free} \
         slots free on the program's thread after the detach ({control} on the control; \
         {at_return} right when run returned, {control_at_return} on the control)"
    );
    let text = read_out(&out);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    let sum = format!("sum {} writes 1500", seq_sum(1500));
    assert_eq!(lines, ["ok 1000", "ok 1500", sum.as_str()], "{text}");
}

/// A consumer slower than the program (it spins 50 us per hit): counts the hits it handles
/// while a shutdown signal is pending; gives up (detaches) past `give_up` of them.
struct Sluggish {
    hits: u64,
    after_signal: u64,
    give_up: u64,
}

impl StopHandler for Sluggish {
    fn hit(&mut self, _hit: &Hit<'_>) -> Verdict {
        self.hits += 1;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_micros(50) {
            std::hint::spin_loop();
        }
        // SAFETY: sigpending fills the set we own.
        let pending = unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigpending(&mut set);
            libc::sigismember(&set, libc::SIGTERM) == 1
        };
        if pending {
            self.after_signal += 1;
            if self.after_signal > self.give_up {
                return Verdict::Detach;
            }
        }
        Verdict::Continue
    }
}

/// A shutdown signal is taken even while the ring never empties (the program produces hits
/// faster than the consumer handles them): at most what the ring held when it arrived, and
/// what was already in it at the release, is handled after it.
#[test]
fn agent_shutdown_signal_is_taken_while_the_ring_never_empties() {
    let (bin, _hw) = agent_or_skip!("agent_shutdown_signal_is_taken_while_the_ring_never_empties");
    let addr = target_addr(bin);
    let out = out_file("agent-busy");
    let _ = std::fs::remove_file(&out);
    let n = 20_000_000i64;
    let slots = hwbp::sys::agent_layout::SLOTS as u64;
    let (consumer, mut report) = fork_reporting(&[], |report| {
        let (mut session, mut child) = start(
            bin,
            &["seq", &n.to_string(), "nowait"],
            &out,
            vec![watch_i64(addr)],
            StopOptions::default(),
        );
        install_shutdown_signals().unwrap();
        report.write_all(b"R").unwrap();
        let mut h = Sluggish {
            hits: 0,
            after_signal: 0,
            give_up: 4 * slots,
        };
        let end = session.run(&mut h).unwrap();
        let end = match end {
            RunEnd::Shutdown { .. } => 1,
            RunEnd::Detached => 2,
            _ => 3,
        };
        let status = status_code(child.wait().unwrap());
        put(report, &[end, h.hits, h.after_signal, status]);
    });
    assert_eq!(read_byte(&mut report), Some(b'R'));
    // Long enough for the ring to fill (4096 hits at >= 50 us each in the consumer).
    std::thread::sleep(std::time::Duration::from_millis(300));
    sys::kill(consumer, libc::SIGTERM).unwrap();
    let [end, hits, after_signal, status] = take::<4>(&mut report);
    assert!(libc::WIFEXITED(reap(consumer)));
    eprintln!(
        "agent busy ring: {hits} hits handled, {after_signal} of them with the signal pending"
    );
    assert_eq!(
        end, 1,
        "run ended by the signal (2: still draining, gave up)"
    );
    assert!(after_signal <= 2 * slots + 1, "{after_signal}");
    assert_eq!(status, 0);
    assert_eq!(
        read_out(&out).trim(),
        format!("sum {} writes {n}", seq_sum(n))
    );
}

/// SIGKILL of the consumer while the program's thread waits for its hit to be handled (a
/// synchronous record: `jit`'s first hit is from code mapped after arming, and the consumer
/// never returns from it): the thread notices its consumer is gone and the program finishes.
#[test]
fn agent_sigkill_while_the_program_waits_for_its_record() {
    let (bin, _hw) = agent_or_skip!("agent_sigkill_while_the_program_waits_for_its_record");
    let n = 1000i64;
    let out = out_file("agent-sync-kill");
    let (c, p) = supervised_consumer(
        bin,
        vec!["jit".into(), n.to_string(), "nowait".into()],
        out.clone(),
        Some(1),
        |consumer, program| {
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
