//! Child roles: this test binary re-executed with `HWBP_CHILD_ROLE=name:args`, talking to the
//! parent test over stdin/stdout (`@key value` lines).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use hwbp::{Target, Watch};
use hwbp_core::{Access, Spec};

use super::{hear, tell};

static WORD: AtomicU64 = AtomicU64::new(0);

/// Runs the role named in the environment, if any.
pub fn run_if_requested() {
    let Ok(role) = std::env::var(super::ROLE_ENV) else {
        return;
    };
    let parts: Vec<&str> = role.split(':').collect();
    let num = |i: usize| -> u64 { parts[i].parse().expect("role argument") };
    match parts[0] {
        "threads" => threads(num(1), num(2), num(3), false),
        "holder" => holder(num(1), num(2)),
        "churn" => churn(num(1)),
        "exiters" => threads(num(1), 0, num(2), true),
        other => panic!("unknown child role {other}"),
    }
}

fn write_n(n: u64) {
    for i in 0..n {
        WORD.store(i, Ordering::Relaxed);
    }
}

/// `before` threads exist (blocked) when the parent arms; after `go`, they, the role's own
/// thread and `after` new threads each write `n` times to WORD; all join; then `done`.
/// `exiting`: until `go`, another thread keeps creating threads that exit at once (so threads
/// vanish while the parent arms; they never write).
fn threads(before: u64, after: u64, n: u64, exiting: bool) {
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let churner = exiting.then(|| {
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                std::thread::spawn(|| {}).join().expect("short-lived");
            }
        })
    });
    let barrier = Arc::new(Barrier::new(before as usize + 1));
    let early: Vec<_> = (0..before)
        .map(|_| {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                write_n(n);
            })
        })
        .collect();
    tell("ready", &format!("{:#x}", WORD.as_ptr() as u64));
    assert_eq!(hear(), "go");
    stop.store(true, Ordering::Release);
    if let Some(c) = churner {
        c.join().expect("churner");
    }
    barrier.wait();
    write_n(n);
    let late: Vec<_> = (0..after)
        .map(|_| std::thread::spawn(move || write_n(n)))
        .collect();
    for t in early.into_iter().chain(late) {
        t.join().expect("writer");
    }
    tell("done", "");
    assert_eq!(hear(), "exit");
}

/// `threads` idle threads; the role's own thread holds a watch of `pieces` slots on itself.
fn holder(threads: u64, pieces: u64) {
    let stop = Arc::new(Barrier::new(threads as usize + 1));
    let idle: Vec<_> = (0..threads)
        .map(|_| {
            let b = Arc::clone(&stop);
            std::thread::spawn(move || {
                b.wait();
            })
        })
        .collect();
    let buf = Box::new([0u64; 8]);
    let spec = Spec::user(buf.as_ptr() as u64, 8 * pieces, Access::Write);
    let w = Watch::new(Target::current_thread(), spec).expect("holder watch");
    assert_eq!(w.event_count() as u64, pieces);
    tell("ready", &hwbp::Tid::current().to_string());
    assert_eq!(hear(), "exit");
    stop.wait();
    for t in idle {
        t.join().expect("idle");
    }
    drop(w);
}

/// A spawner thread creates threads (each waits for `go`) as fast as it can, from before
/// `ready` until the parent says `stop` (at most 400) — so threads appear while the parent
/// arms the process. Then every thread writes `n` times.
fn churn(n: u64) {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Condvar, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new((Mutex::new(false), Condvar::new()));
    let (stop2, go2) = (Arc::clone(&stop), Arc::clone(&go));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let spawner = std::thread::spawn(move || {
        let mut kids = Vec::new();
        while !stop2.load(Ordering::Acquire) && kids.len() < 400 {
            let go = Arc::clone(&go2);
            kids.push(std::thread::spawn(move || {
                let (flag, cv) = &*go;
                let mut on = flag.lock().expect("go lock");
                while !*on {
                    on = cv.wait(on).expect("go wait");
                }
                drop(on);
                write_n(n);
            }));
            if kids.len() == 10 {
                started_tx.send(()).expect("started");
            }
            std::thread::yield_now();
        }
        kids
    });
    started_rx.recv().expect("spawner started");
    tell("ready", &format!("{:#x}", WORD.as_ptr() as u64));
    assert_eq!(hear(), "stop");
    stop.store(true, Ordering::Release);
    let kids = spawner.join().expect("spawner");
    tell("created", &kids.len().to_string());
    assert_eq!(hear(), "go");
    *go.0.lock().expect("go lock") = true;
    go.1.notify_all();
    for k in kids {
        k.join().expect("kid");
    }
    tell("done", "");
    assert_eq!(hear(), "exit");
}
