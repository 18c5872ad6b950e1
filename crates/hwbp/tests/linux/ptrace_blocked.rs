//! A thread that blocks SIGTRAP (`pthread_sigmask(SIG_BLOCK, all)`): ptrace cannot stop its
//! hits at the access (the perf SIGTRAP waits in its queue), so the tracer counts them exactly
//! in `hits_not_stopped` from the events' counts, never a silent loss; and a SIGTRAP still
//! queued when the tracer lets go is removed, so the program does not die of it later.
//! Helpers (the fixture, `spawn`, `Recorder`) are the parent's.

use super::*;

/// The worker blocks every signal, writes 1000 times and exits with the SIGTRAP queued; then
/// main writes 100 times: 100 hits, exactly 1000 not stopped, and main's first hit has the
/// worker's last value as its old value (the shadow copy is re-read at the worker's exit).
#[test]
fn hits_of_a_thread_that_blocks_sigtrap_are_counted_not_stopped() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("blocked");
    let mut t = spawn(
        bin,
        &["blocked", "1000", "100", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 100);
    assert_eq!(t.hits_not_stopped(), 1000);
    assert_eq!(t.hits_seen(), 100);
    for (i, h) in rec.hits.iter().enumerate() {
        let i = i as i64;
        let old = if i == 0 { 1_000_999 } else { f(i - 1) };
        assert_eq!(
            (h.2, h.3),
            (Value::Int(old.into()), Value::Int(f(i).into())),
            "hit {i}"
        );
    }
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("sum {} writes 1100", seq_sum(100)));
}

/// The worker blocks every signal, writes 1000 times, and unblocks them after main wrote 100
/// times: its queued SIGTRAP is then delivered late (`TRAP_PERF_FLAG_ASYNC`), not at any
/// access: not a hit; the 1000 are counted not stopped.
#[test]
fn a_late_sigtrap_is_not_a_hit_and_its_hits_are_counted() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("blocked_late");
    let mut t = spawn(
        bin,
        &["blocked_late", "1000", "100", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!(rec.hits.len(), 100);
    assert!(rec.hits.iter().all(|h| h.0 == Tid(t.pid())), "main's hits");
    assert_eq!(t.hits_not_stopped(), 1000);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("sum {} writes 1100", seq_sum(100)));
}

/// Detach at main's first hit while the worker blocks SIGTRAP with one queued: the release
/// delivers and suppresses it (SIGTRAP unblocked for that one delivery, the worker's mask
/// restored), so when the worker unblocks its signals after hwbp is gone the program lives
/// on and exits 0; the worker's 1000 hits are counted not stopped.
#[test]
fn release_removes_a_sigtrap_queued_in_a_thread_that_blocks_it() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let out = out_file("blocked_detach");
    let mut t = spawn(
        bin,
        &["blocked_late", "1000", "100", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder {
        detach_at: Some(1),
        ..Recorder::default()
    };
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Detached);
    assert_eq!(rec.hits.len(), 1);
    assert_eq!(t.hits_not_stopped(), 1000);
    let pid = t.pid();
    drop(t);
    let mut status = 0;
    // SAFETY: waiting for our own child (the tracer spawned it and let it go).
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the program lives on after the release: status {status:#x}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("sum {} writes 1100", seq_sum(100)));
}

/// No false count: an 8-byte store over a 5-byte unaligned watch hits both its pieces in one
/// #DB (both events count it, one SIGTRAP is queued): 50 stores are 50 stops and nothing not
/// stopped; threads that leave SIGTRAP unblocked have every hit stopped too.
#[test]
fn stopped_hits_are_not_counted_as_not_stopped() {
    let (bin, _hw) = fixture_or_skip!();
    let addr = target_addr(bin);
    let w = WatchSpec {
        ty: ValueType::Bytes,
        ..WatchSpec::write(Region::new(addr + 3, 5))
    };
    let out = out_file("pieces_not_stopped");
    let mut t = spawn(
        bin,
        &["seq", "50", "nowait"],
        &out,
        vec![w],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!((rec.hits.len(), t.hits_not_stopped()), (50, 0));

    let mut t = spawn(
        bin,
        &["threads", "4", "250", "nowait"],
        &out,
        vec![watch_i64(addr)],
        StopOptions::default(),
    );
    let mut rec = Recorder::default();
    assert_eq!(t.run(&mut rec).unwrap(), RunEnd::Exited(0));
    assert_eq!((rec.hits.len(), t.hits_not_stopped()), (1000, 0));
}
