//! Process targets with threads appearing while hwbp arms: the default (ptrace seize) covers
//! every thread exactly once, job control sees nothing, and a traced target is armed live and
//! says so.

use std::sync::mpsc;

use hwbp::sys::ptrace as pt;
use hwbp::watch::{ProcessArming, WatchOptions};
use hwbp::{Arming, LiveReason, Target, Tid, Watch};
use hwbp_core::{Access, Spec};

use super::common::*;

/// How many times the churn run repeats in one test (every run must be exact).
const CHURN_RUNS: usize = 20;

/// Arms a churning child (threads keep appearing while this arms) and checks the count is
/// exactly `threads x N`; returns how the watch was armed.
fn churn_once(opts: &WatchOptions, check: impl FnOnce(&ChildProc)) -> Arming {
    const N: u64 = 100;
    let mut child = ChildProc::spawn(&format!("churn:{N}"));
    let addr = parse_hex(&child.expect("ready"));
    let w = Watch::with_options(
        Target::Process(child.pid()),
        Spec::user(addr, 8, Access::Write),
        opts,
    )
    .unwrap();
    check(&child);
    child.say("stop");
    let created: u64 = child.expect("created").parse().unwrap();
    child.say("go");
    child.expect("done");
    // Every created thread is alive until it has written: any double or missed coverage
    // shows in the count (live arming of this child counts about twice as many here).
    assert_eq!(w.count().unwrap(), created * N, "{created} threads");
    child.finish();
    w.arming()
}

#[test]
fn process_threads_created_during_arming_are_all_covered() {
    let _hw = hw_shared();
    for run in 0..CHURN_RUNS {
        let how = churn_once(&WatchOptions::default(), |_| {});
        assert_eq!(how, Arming::Seized, "run {run}");
    }
}

#[test]
fn sigstop_freeze_is_exact_too() {
    let _hw = hw_shared();
    let opts = WatchOptions {
        process_arming: ProcessArming::Freeze,
        ..WatchOptions::default()
    };
    assert_eq!(churn_once(&opts, |_| {}), Arming::Stopped);
}

/// The states of every thread of `pid` (`/proc/PID/task/*/stat`).
fn states(pid: hwbp::Pid) -> Vec<char> {
    hwbp::target::list_threads(pid)
        .unwrap()
        .into_iter()
        .filter_map(|t| hwbp::target::thread_state(pid, t))
        .collect()
}

#[test]
fn seized_arming_is_invisible_to_job_control() {
    let _hw = hw_shared();
    // The parent (this process) is told nothing: no stop, no continue, and no thread is left
    // stopped ('T') or traced ('t').
    let how = churn_once(&WatchOptions::default(), |child| {
        let pid = child.pid().get();
        assert_eq!(pt::wait_job_change(pid).unwrap(), None);
        let st = states(child.pid());
        assert!(st.iter().all(|s| !matches!(s, 'T' | 't')), "{st:?}");
        assert_eq!(hwbp::target::tracer_of(child.pid()), None);
    });
    assert_eq!(how, Arming::Seized);
    // The same check tells a job-control freeze: the SIGSTOP/SIGCONT is reported.
    let opts = WatchOptions {
        process_arming: ProcessArming::Freeze,
        ..WatchOptions::default()
    };
    churn_once(&opts, |child| {
        let seen = pt::wait_job_change(child.pid().get()).unwrap();
        assert!(
            seen.is_some(),
            "SIGSTOP freeze went unnoticed by the parent"
        );
    });
}

#[test]
fn traced_target_is_armed_live_and_says_who_traces_it() {
    let _hw = hw_shared();
    let mut child = ChildProc::spawn("threads:2:0:10");
    let addr = parse_hex(&child.expect("ready"));
    let leader = child.pid().leader();
    // Another tracer (a thread of this process, as a debugger would be) holds the leader.
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let tracer = std::thread::spawn(move || {
        pt::seize(pt::Tid(leader.get()), 0).expect("seize");
        tx.send(Tid::current()).unwrap();
        // Exiting detaches.
        done_rx.recv().unwrap();
    });
    let tracer_tid = rx.recv().unwrap();
    let w = Watch::new(
        Target::Process(child.pid()),
        Spec::user(addr, 8, Access::Write),
    )
    .unwrap();
    assert_eq!(
        w.arming(),
        Arming::Live(LiveReason::Traced {
            tid: leader,
            tracer: tracer_tid
        })
    );
    assert!(w.armed_live());
    done_tx.send(()).unwrap();
    tracer.join().unwrap();
    // Armed live, but armed: nothing appears meanwhile here, so the count is exact.
    child.say("go");
    child.expect("done");
    assert_eq!(w.count().unwrap(), 3 * 10);
    child.finish();
}

#[test]
fn threads_exiting_while_seized_are_skipped() {
    let _hw = hw_shared();
    const N: u64 = 1000;
    for run in 0..5 {
        let mut child = ChildProc::spawn(&format!("exiters:3:{N}"));
        let addr = parse_hex(&child.expect("ready"));
        let w = Watch::new(
            Target::Process(child.pid()),
            Spec::user(addr, 8, Access::Write),
        )
        .unwrap();
        assert_eq!(w.arming(), Arming::Seized, "run {run}");
        child.say("go");
        child.expect("done");
        // The 3 writers and the role's thread; the short-lived threads never write.
        assert_eq!(w.count().unwrap(), 4 * N, "run {run}");
        child.finish();
    }
}

#[test]
fn target_traced_by_the_calling_thread_is_armed_live_untouched() {
    let _hw = hw_shared();
    let mut child = ChildProc::spawn("threads:1:0:10");
    let addr = parse_hex(&child.expect("ready"));
    let leader = child.pid().leader();
    // This thread traces the leader already (as a launcher does): arming must neither wait
    // for nor detach it.
    pt::seize(pt::Tid(leader.get()), 0).expect("seize");
    let w = Watch::new(
        Target::Process(child.pid()),
        Spec::user(addr, 8, Access::Write),
    )
    .unwrap();
    assert_eq!(
        w.arming(),
        Arming::Live(LiveReason::Traced {
            tid: leader,
            tracer: Tid::current()
        })
    );
    // Still ours: stop it and let it go.
    pt::interrupt(pt::Tid(leader.get())).expect("interrupt");
    let st = pt::wait(leader.get(), false)
        .expect("wait")
        .expect("status");
    assert!(matches!(st.kind(), pt::WaitKind::Stopped { .. }), "{st:?}");
    pt::detach(pt::Tid(leader.get()), 0).expect("detach");
    child.say("go");
    child.expect("done");
    assert_eq!(w.count().unwrap(), 2 * 10);
    child.finish();
}
