//! Stop mode's lifecycle: exec in the target, a second tracer, break, and releasing the target
//! whatever happens to the tracer: shutdown signals at random moments, a panic, a SIGKILL (and
//! its one documented window), the detach verdict and `kill_on_tracer_death`. Helpers (`fork_tracer`, the fixture, the lock) are the parent's.

use super::*;

#[test]
fn exec_in_the_target_removes_the_watches_and_can_rearm() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("exec");
    // Keep tracing without watches: the 100 writes before exec are hits, the 50 after are not.
    let mut t = spawn(
        bin,
        &["exec", "100", "50", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder {
        on_exec: Some(ExecVerdict::KeepTracing),
        ..Recorder::default()
    };
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!((rec.hits.len(), rec.execs), (100, 1));
    // Re-arm the (re-resolved; here identical) address in the new image: 50 more hits, the
    // first one's old value read from the new image (0 in fresh .bss).
    let mut t = spawn(
        bin,
        &["exec", "100", "50", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder {
        on_exec: Some(ExecVerdict::Rearm(vec![watch_i64(addr)])),
        ..Recorder::default()
    };
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!((rec.hits.len(), rec.execs), (150, 1));
    assert_eq!(
        (rec.hits[100].2, rec.hits[100].3),
        (Value::Int(0), Value::Int(f(0).into()))
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().last(),
        Some(format!("sum {} writes 50", seq_sum(50)).as_str())
    );
}

#[test]
fn a_second_tracer_is_named() {
    let (bin, _hw) = fixture_or_skip!();
    let target = Target::start(bin, &["idle"]);
    let pid = target.pid();
    // SAFETY: the child only calls ptrace and pause, then is killed.
    let other = unsafe { libc::fork() };
    if other == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0);
            loop {
                libc::pause();
            }
        }
    }
    while tracer_pid_of(pid) != other {
        std::thread::yield_now();
    }
    let err = Tracer::attach(pid, vec![watch_i64(0x1000)], StopOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        err,
        hwbp::ptrace::TraceError::AlreadyTraced {
            pid,
            tracer_pid: other
        }
    );
    assert!(err
        .to_string()
        .contains(&format!("already traced by process {other}")));
    sys::kill(other, libc::SIGKILL).unwrap();
    reap(other);
    let (status, out) = target.finish();
    assert!(status.success(), "{status:?}");
    assert_eq!(out, "sum 0 writes 0");
}

#[test]
fn break_leaves_the_target_stopped_detached_and_unwatched() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let mut target = Target::start(bin, &["seq", "2000"]);
    let pid = target.pid();
    let mut w = watch_i64(addr);
    w.condition = Some(Expr::parse("new == 600").unwrap()); // f(100) = 600
                                                            // Attach from another thread so that this thread stays the only waiter for the child.
                                                            // `go` only once `attach` has returned with the watch armed: TracerPid is already set at
                                                            // PTRACE_SEIZE, before the breakpoint events exist, so it is no sign of readiness.
    let (armed_tx, armed_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut t = Tracer::attach(pid, vec![w], StopOptions::default()).unwrap();
        armed_tx.send(()).unwrap();
        let mut rec = Recorder {
            break_at: Some(1),
            ..Recorder::default()
        };
        let end = t.run(&mut rec).unwrap();
        (end, rec.hits)
    });
    armed_rx.recv().unwrap();
    target.send("go\n");
    let (end, hits) = h.join().unwrap();
    assert_eq!(
        end,
        RunEnd::Break {
            pid,
            gdb_command: format!("gdb -p {pid}")
        }
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].2, hits[0].3),
        (Value::Int(f(99).into()), Value::Int(600))
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(state, "T", "stopped by SIGSTOP");
    assert_eq!(tracer_pid_of(pid), 0, "detached");
    sys::kill(pid, libc::SIGCONT).unwrap();
    let (status, out) = target.finish();
    assert!(status.success(), "no watch left behind: {status:?}");
    assert_eq!(out, format!("sum {} writes 2000", seq_sum(2000)));
}

/// SIGINT, SIGTERM and SIGHUP to the tracer at random moments of a hit storm, 100 times:
/// every time the tracer shuts down in order and the target finishes with its full output.
#[test]
fn shutdown_signals_during_a_hit_storm_leave_the_target_intact_100_times() {
    let (bin, _hw) = fixture_or_skip!();
    let seed = seed_from_env_or_clock();
    eprintln!("shutdown storm seed {seed} (HWBP_SEED={seed} to replay)");
    let mut rng = StepRng::new(seed);
    let n = 40_000;
    for run in 0..100 {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP][run % 3];
        let mut target = Target::start(bin, &["seq", &n.to_string()]);
        let (tracer, mut report) = fork_tracer(target.pid(), StopOptions::default(), None);
        assert_eq!(read_byte(&mut report), Some(b'R'), "run {run}");
        target.send("go\n");
        std::thread::sleep(std::time::Duration::from_micros(500 + rng.below(60_000)));
        sys::kill(tracer, sig).unwrap();
        let end = read_byte(&mut report);
        let st = reap(tracer);
        let (status, out) = target.finish();
        assert_eq!(
            end,
            Some(b'S'),
            "run {run} signal {sig}: tracer end (X = storm already over)"
        );
        assert!(libc::WIFEXITED(st), "run {run}");
        assert!(
            status.success(),
            "run {run} signal {sig}: target {status:?}"
        );
        assert_eq!(out, format!("sum {} writes {n}", seq_sum(n)), "run {run}");
    }
}

/// The same with 4 threads hitting concurrently (all-stop active, hits queued behind interrupt
/// stops), 30 times: the release drains every queued SIGTRAP; the target always finishes.
#[test]
fn shutdown_signals_with_concurrent_threads_leave_the_target_intact() {
    let (bin, _hw) = fixture_or_skip!();
    let seed = seed_from_env_or_clock();
    eprintln!("threaded shutdown seed {seed} (HWBP_SEED={seed} to replay)");
    let mut rng = StepRng::new(seed);
    for run in 0..30 {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP][run % 3];
        let mut target = Target::start(bin, &["threads", "4", "20000"]);
        let (tracer, mut report) = fork_tracer(target.pid(), StopOptions::default(), None);
        assert_eq!(read_byte(&mut report), Some(b'R'), "run {run}");
        target.send("go\n");
        std::thread::sleep(std::time::Duration::from_micros(500 + rng.below(60_000)));
        sys::kill(tracer, sig).unwrap();
        let end = read_byte(&mut report);
        reap(tracer);
        let (status, out) = target.finish();
        assert_eq!(end, Some(b'S'), "run {run} signal {sig}: tracer end");
        assert!(
            status.success(),
            "run {run} signal {sig}: target {status:?}"
        );
        assert_eq!(out, "sum 0 writes 80000", "run {run}");
    }
}

/// A panic in the tracer's handler unwinds through `Tracer`'s `Drop`: the target is released.
#[test]
fn a_panic_in_the_tracer_releases_the_target() {
    let (bin, _hw) = fixture_or_skip!();
    for panic_at in [1, 7, 500] {
        let mut target = Target::start(bin, &["seq", "3000"]);
        let (tracer, mut report) =
            fork_tracer(target.pid(), StopOptions::default(), Some(panic_at));
        assert_eq!(read_byte(&mut report), Some(b'R'));
        target.send("go\n");
        assert_eq!(read_byte(&mut report), Some(b'P'));
        reap(tracer);
        let (status, out) = target.finish();
        assert!(status.success(), "{status:?}");
        assert_eq!(out, format!("sum {} writes 3000", seq_sum(3000)));
    }
}

/// SIGKILL of the tracer between hits: no watch survives it (the breakpoint events die with
/// the tracer's fds), so 1000 later writes to the watched variable do not kill the target.
/// With ptrace DR7 watches the first later write would (measured: killed by SIGTRAP).
#[test]
fn sigkill_of_the_tracer_leaves_no_watch_behind() {
    let (bin, _hw) = fixture_or_skip!();
    let mut target = Target::start(bin, &["cmd"]);
    let pid = target.pid();
    let (tracer, mut report) = fork_tracer(pid, StopOptions::default(), None);
    assert_eq!(read_byte(&mut report), Some(b'R'));
    target.send("w 200\n");
    assert_eq!(target.line(), "ok 200");
    sys::kill(tracer, libc::SIGKILL).unwrap();
    reap(tracer);
    while tracer_pid_of(pid) != 0 {
        std::thread::yield_now();
    }
    target.send("w 1000\n");
    assert_eq!(target.line(), "ok 1200");
    target.send("q\n");
    let (status, out) = target.finish();
    assert!(status.success(), "{status:?}");
    assert_eq!(out, format!("sum {} writes 1200", seq_sum(1200)));
}

/// SIGKILL of the tracer at random moments of a hit storm: the target either finishes with its
/// full output or — inside the remaining window (a hit whose SIGTRAP was generated but not yet
/// turned into a delivery stop) — dies of SIGTRAP. Nothing else (no hang, no other death).
#[test]
fn sigkill_during_a_hit_storm_only_the_documented_window_remains() {
    let (bin, _hw) = fixture_or_skip!();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("sigkill storm seed {seed}");
    let mut rng = StepRng::new(seed);
    let n = 40_000;
    let (mut ok, mut trapped) = (0, 0);
    for run in 0..30 {
        let mut target = Target::start(bin, &["seq", &n.to_string()]);
        let (tracer, mut report) = fork_tracer(target.pid(), StopOptions::default(), None);
        assert_eq!(read_byte(&mut report), Some(b'R'));
        target.send("go\n");
        std::thread::sleep(std::time::Duration::from_micros(500 + rng.below(60_000)));
        sys::kill(tracer, libc::SIGKILL).unwrap();
        reap(tracer);
        let (status, out) = target.finish();
        use std::os::unix::process::ExitStatusExt;
        if status.success() {
            assert_eq!(out, format!("sum {} writes {n}", seq_sum(n)), "run {run}");
            ok += 1;
        } else {
            assert_eq!(
                status.signal(),
                Some(libc::SIGTRAP),
                "run {run}: {status:?}"
            );
            trapped += 1;
        }
    }
    eprintln!("SIGKILL during storm: {ok} finished, {trapped} killed by SIGTRAP in the window");
    assert_eq!(ok + trapped, 30);
}

/// `Verdict::Detach` at hit 10: the watches are removed, the target runs on unwatched and
/// finishes normally.
#[test]
fn detach_verdict_lets_the_target_finish() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("detach");
    let mut t = spawn(
        bin,
        &["seq", "500", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let pid = t.pid();
    let mut rec = Recorder {
        detach_at: Some(10),
        ..Recorder::default()
    };
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Detached);
    assert_eq!(rec.hits.len(), 10);
    drop(t);
    let st = reap(pid);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{st:#x}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        format!("sum {} writes 500", seq_sum(500))
    );
}

/// `StopOptions::kill_on_tracer_death` (PTRACE_O_EXITKILL) for spawned targets: the target
/// dies with the tracer.
#[test]
fn exitkill_option_takes_a_spawned_target_down_with_the_tracer() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("exitkill");
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two fds we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs single-threaded code and leaves with _exit.
    let tracer = unsafe { libc::fork() };
    if tracer == 0 {
        let opts = StopOptions {
            kill_on_tracer_death: true,
            ..StopOptions::default()
        };
        let mut t = spawn(
            bin,
            &["seq", "100000000", "nowait"],
            &out,
            vec![watch_i64(addr)],
            opts,
        );
        let pid = t.pid().to_ne_bytes();
        // SAFETY: fds[1] is a valid pipe end; `pid` is 4 readable bytes.
        unsafe { libc::write(fds[1], pid.as_ptr().cast(), 4) };
        let _ = t.run(&mut Recorder::default());
        // SAFETY: leave without running the harness's exit machinery.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the parent closes its copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut pid = [0u8; 4];
    // SAFETY: fds[0] is ours; reading 4 bytes into `pid`.
    assert_eq!(unsafe { libc::read(fds[0], pid.as_mut_ptr().cast(), 4) }, 4);
    let target = i32::from_ne_bytes(pid);
    sys::kill(tracer, libc::SIGKILL).unwrap();
    reap(tracer);
    // Reparented to init, which reaps it once the kernel's SIGKILL has taken it down.
    while std::fs::read_to_string(format!("/proc/{target}/stat")).is_ok_and(|s| !s.contains(") Z"))
    {
        std::thread::yield_now();
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!text.contains("sum"), "the target did not finish: {text}");
}
