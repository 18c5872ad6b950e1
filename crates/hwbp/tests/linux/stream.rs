//! Stream and signal delivery on the real kernel: exact sample and signal counts, sample
//! contents, lost-record accounting with a tiny ring. Every test arms task-bound events on its
//! own (test) thread only, so tests running in parallel in this process do not disturb it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use hwbp::ring::record::sample_bits;
use hwbp::signal::{Capture, HitInfo, SignalOptions, SignalWatch};
use hwbp::stream::{Stream, StreamOptions};
use hwbp::{Pid, Target, Tid};
use hwbp_core::{Access, Spec};

use crate::common::*;

fn online_cpus() -> BTreeSet<u32> {
    hwbp::target::online_cpus()
        .unwrap()
        .into_iter()
        .map(|c| c.get())
        .collect()
}

#[test]
fn stream_records_every_write_with_ip_tid_time_cpu_piece() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let mut s = Stream::new(Target::current_thread(), spec, &StreamOptions::default()).unwrap();
    for i in 0..1000 {
        word.store(i, Ordering::Relaxed);
    }
    let me = Tid::current().get() as u32;
    let pid = Pid::current().get() as u32;
    let cpus = online_cpus();
    let mut n = 0u64;
    let mut last_time = 0;
    let mut ips = BTreeSet::new();
    s.drain(|h| {
        n += 1;
        assert_eq!(h.piece, Some(0));
        assert_eq!(h.sample.tid, Some(me));
        assert_eq!(h.sample.pid, Some(pid));
        assert_eq!(h.sample.addr, Some(word.as_ptr() as u64));
        assert!(
            cpus.contains(&h.sample.cpu.unwrap()),
            "cpu {:?}",
            h.sample.cpu
        );
        let t = h.sample.time.unwrap();
        assert!(t >= last_time, "time went backwards");
        last_time = t;
        ips.insert(h.sample.ip.unwrap());
    });
    assert_eq!(n, 1000);
    // One store instruction in the loop: every sample has the same IP.
    assert_eq!(ips.len(), 1, "ips {ips:x?}");
    let st = s.stats();
    assert_eq!(
        (st.ring.samples, st.ring.lost, st.unknown_ids),
        (1000, 0, 0)
    );
    assert_eq!(s.watch().count().unwrap(), 1000);
}

#[test]
fn stream_two_pieces_share_one_ring_and_are_told_apart() {
    let _hw = hw_shared();
    // 16 bytes = two 8-byte pieces on x86-64.
    let words = Box::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let spec = Spec::user(words.as_ptr() as u64, 16, Access::Write);
    let mut s = Stream::new(Target::current_thread(), spec, &StreamOptions::default()).unwrap();
    assert_eq!(s.watch().pieces().len(), 2);
    assert_eq!(s.ring_count(), 1);
    for i in 0..300 {
        words[0].store(i, Ordering::Relaxed);
    }
    for i in 0..700 {
        words[1].store(i, Ordering::Relaxed);
    }
    let mut by_piece = [0u64; 2];
    let mut addr_of = [0u64; 2];
    s.drain(|h| {
        let p = h.piece.unwrap() as usize;
        by_piece[p] += 1;
        addr_of[p] = h.sample.addr.unwrap();
    });
    let piece_of_word0 = s
        .watch()
        .pieces()
        .iter()
        .position(|c| c.attr.addr == addr_of[0]);
    assert_eq!(by_piece[0] + by_piece[1], 1000);
    let (w0, w1) = if piece_of_word0 == Some(0) && addr_of[0] == words.as_ptr() as u64 {
        (by_piece[0], by_piece[1])
    } else {
        (by_piece[1], by_piece[0])
    };
    assert_eq!((w0, w1), (300, 700));
    assert_eq!(
        s.watch().counts_by_piece().unwrap().iter().sum::<u64>(),
        1000
    );
}

#[test]
fn stream_tiny_ring_accounts_every_lost_hit() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let opts = StreamOptions {
        data_pages_log2: 0,
        ..StreamOptions::default()
    };
    let mut s = Stream::new(
        Target::current_thread(),
        spec_of(&word, Access::Write),
        &opts,
    )
    .unwrap();
    for i in 0..1000 {
        word.store(i, Ordering::Relaxed);
    }
    let first = s.drain(|_| {});
    // The kernel writes the pending PERF_RECORD_LOST at the next sample that fits: one more hit.
    word.store(1, Ordering::Relaxed);
    let second = s.drain(|_| {});
    let st = s.stats().ring;
    let hits = s.watch().count().unwrap();
    assert_eq!(hits, 1001);
    assert!(st.lost > 0, "a 4 KiB ring cannot hold 1000 samples");
    assert_eq!(st.lost_records, 1);
    assert_eq!(second, 1);
    assert_eq!(first as u64 + second as u64, st.samples);
    assert_eq!(st.samples + st.lost, hits, "{st:?}");
}

#[test]
fn stream_callchain_registers_and_stack_bytes() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    // x86-64 perf_regs: AX=0 .. SP=7, IP=8.
    let regs_mask = 1 << 7 | 1 << 8;
    let opts = StreamOptions {
        callchain: true,
        regs_user: regs_mask,
        stack_user_bytes: 256,
        ..StreamOptions::default()
    };
    let fmt = Stream::sample_format(&opts);
    assert_ne!(fmt.sample_type & sample_bits::STACK_USER, 0);
    let mut s = Stream::new(
        Target::current_thread(),
        spec_of(&word, Access::Write),
        &opts,
    )
    .unwrap();
    for i in 0..100 {
        word.store(i, Ordering::Relaxed);
    }
    let mut n = 0;
    s.drain(|h| {
        n += 1;
        let cc = h.sample.callchain.unwrap();
        assert!(cc.len() >= 2, "callchain {cc:?}");
        let regs = h.sample.regs_user.unwrap();
        assert_eq!(regs.abi, 2); // PERF_SAMPLE_REGS_ABI_64
        assert_eq!(regs.regs.len(), 2);
        // The sampled IP register equals the sample's IP.
        if cfg!(target_arch = "x86_64") {
            assert_eq!(regs.regs.get(1), h.sample.ip);
        }
        assert_eq!(h.sample.stack_user.unwrap().data.len(), 256);
    });
    assert_eq!(n, 100);
    assert_eq!(s.stats().ring.lost, 0);
}

#[test]
fn stream_in_other_threads_counts_exactly() {
    let _hw = hw_shared();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let word = Box::new(AtomicU64::new(0));
                let mut s = Stream::new(
                    Target::current_thread(),
                    spec_of(&word, Access::Write),
                    &StreamOptions::default(),
                )
                .unwrap();
                let n = 500 + 250 * t;
                for i in 0..n {
                    word.store(i, Ordering::Relaxed);
                }
                let me = Tid::current().get() as u32;
                let mut got = 0;
                s.drain(|h| {
                    assert_eq!(h.sample.tid, Some(me));
                    got += 1;
                });
                (n, got)
            })
        })
        .collect();
    for h in handles {
        let (n, got) = h.join().unwrap();
        assert_eq!(got as u64, n);
    }
}

static CALLBACK_HITS: AtomicU64 = AtomicU64::new(0);

/// Async-signal-safe: one atomic add on a static.
fn count_hit(_: &HitInfo) {
    CALLBACK_HITS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn signal_every_write_is_one_sigtrap_with_the_new_value() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let opts = SignalOptions {
        capture: Capture::of_spec(&spec),
        callback: Some(count_hit),
        ..SignalOptions::default()
    };
    let before_cb = CALLBACK_HITS.load(Ordering::Relaxed);
    let w = SignalWatch::new(Target::current_thread(), spec, opts).unwrap();
    for i in 1..=1000u64 {
        word.store(i * 3, Ordering::Relaxed);
    }
    assert_eq!(w.sink().hits(), 1000);
    assert_eq!(w.watch().count().unwrap(), 1000);
    assert_eq!(w.missed_signals().unwrap(), 0);
    assert_eq!(w.sink().queue_dropped(), 0);
    // Other signal tests may run concurrently and use the same callback: at least ours.
    assert!(CALLBACK_HITS.load(Ordering::Relaxed) - before_cb >= 1000);
    let me = Tid::current().get() as u32;
    let mut values = Vec::new();
    let mut pcs = BTreeSet::new();
    w.sink().drain(|h| {
        assert_eq!(h.tid, me);
        assert_eq!(h.addr, word.as_ptr() as u64);
        assert_eq!(w.piece_of(h.addr), Some(0));
        assert!(!h.asynchronous);
        values.push(h.value.unwrap());
        pcs.insert(h.pc.unwrap());
    });
    let want: Vec<u64> = (1..=1000).map(|i| i * 3).collect();
    assert_eq!(values, want, "each hit sees the value just written");
    assert_eq!(pcs.len(), 1, "one store instruction: {pcs:x?}");
}

#[test]
fn signal_threads_each_get_their_own_exact_signals() {
    let _hw = hw_shared();
    let handles: Vec<_> = (0..3u64)
        .map(|t| {
            std::thread::spawn(move || {
                let word = Box::new(AtomicU64::new(0));
                let spec = spec_of(&word, Access::Write);
                let opts = SignalOptions {
                    queue_capacity: 0,
                    ..SignalOptions::default()
                };
                let w = SignalWatch::new(Target::current_thread(), spec, opts).unwrap();
                let n = 1000 + 100 * t;
                for i in 0..n {
                    word.store(i, Ordering::Relaxed);
                }
                assert_eq!(
                    w.sink().queue_dropped(),
                    n,
                    "no queue: every hit counted as dropped"
                );
                (n, w.sink().hits(), w.watch().count().unwrap())
            })
        })
        .collect();
    for h in handles {
        let (n, hits, count) = h.join().unwrap();
        assert_eq!((hits, count), (n, n));
    }
}

#[test]
fn signal_watch_refuses_other_processes_and_cpus() {
    let word = AtomicU64::new(0);
    let spec = spec_of(&word, Access::Write);
    let err = SignalWatch::new(Target::AllCpus, spec, SignalOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        hwbp::signal::SignalWatchError::NotThisProcess { .. }
    ));
    // pid 1 is never the test process.
    let init = Target::Process(Pid::new(1).unwrap());
    assert!(SignalWatch::new(init, spec, SignalOptions::default()).is_err());
}

#[test]
fn stream_poll_wakes_after_wakeup_samples() {
    let _hw = hw_shared();
    let word = Box::new(AtomicU64::new(0));
    let opts = StreamOptions {
        wakeup: Some(hwbp::stream::Wakeup::Samples(10)),
        ..StreamOptions::default()
    };
    let mut s = Stream::new(
        Target::current_thread(),
        spec_of(&word, Access::Write),
        &opts,
    )
    .unwrap();
    let zero = Some(std::time::Duration::ZERO);
    assert!(!s.poll(zero).unwrap(), "nothing written yet");
    for i in 0..9 {
        word.store(i, Ordering::Relaxed);
    }
    assert!(
        !s.poll(zero).unwrap(),
        "9 samples are below wakeup_events = 10"
    );
    word.store(9, Ordering::Relaxed);
    assert!(s.poll(Some(std::time::Duration::from_secs(5))).unwrap());
    assert_eq!(s.drain(|_| {}), 10);
}

/// Runs one test of this binary again in a child process with `HWBP_STREAM_CHILD=role`;
/// process-wide events would take slots from the other tests' threads in this process.
fn run_child(test: &str, role: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("HWBP_STREAM_CHILD", role)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {role} failed: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn stream_process_target_sees_threads_created_before_and_after_arming() {
    if std::env::var("HWBP_STREAM_CHILD").as_deref() != Ok("process") {
        let _hw = hw_shared();
        let text = run_child(
            "stream::stream_process_target_sees_threads_created_before_and_after_arming",
            "process",
        );
        assert!(text.contains("PROCESS-CHILD-OK"), "{text}");
        return;
    }
    use std::sync::{Arc, Barrier};
    let word = Arc::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    // One thread exists before arming and writes after.
    let go = Arc::new(Barrier::new(2));
    let early = {
        let (word, go) = (word.clone(), go.clone());
        std::thread::spawn(move || {
            go.wait();
            for i in 0..300 {
                word.store(i, Ordering::Relaxed);
            }
            Tid::current().get() as u32
        })
    };
    let mut s = Stream::new(Target::current_process(), spec, &StreamOptions::default()).unwrap();
    go.wait();
    let early_tid = early.join().unwrap();
    // Two threads are created after arming (they inherit the watch).
    let late: Vec<u32> = (0..2)
        .map(|_| {
            let word = word.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    word.store(i, Ordering::Relaxed);
                }
                Tid::current().get() as u32
            })
            .join()
            .unwrap()
        })
        .collect();
    for i in 0..100 {
        word.store(i, Ordering::Relaxed);
    }
    let me = Tid::current().get() as u32;
    let mut by_tid = std::collections::BTreeMap::new();
    s.drain(|h| {
        assert_eq!(h.piece, Some(0));
        *by_tid.entry(h.sample.tid.unwrap()).or_insert(0u64) += 1;
    });
    let mut want = std::collections::BTreeMap::new();
    want.insert(early_tid, 300);
    want.insert(late[0], 200);
    want.insert(late[1], 200);
    want.insert(me, 100);
    assert_eq!(by_tid, want);
    assert_eq!(s.stats().ring.lost, 0);
    assert_eq!(s.watch().count().unwrap(), 800);
    println!("PROCESS-CHILD-OK");
}

#[test]
fn stream_cpu_target_records_exactly_on_that_cpu() {
    let _hw = hw_exclusive();
    let cpu = *hwbp::target::online_cpus()
        .unwrap()
        .iter()
        .next_back()
        .unwrap();
    hwbp::sys::pin_current_thread(cpu).unwrap();
    let word = Box::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let mut s = Stream::new(Target::Cpu(cpu), spec, &StreamOptions::default()).unwrap();
    for i in 0..1000 {
        word.store(i, Ordering::Relaxed);
    }
    let me = Tid::current().get() as u32;
    let mut n = 0;
    s.drain(|h| {
        assert_eq!(h.sample.cpu, Some(cpu.get()));
        assert_eq!(h.sample.tid, Some(me));
        assert_eq!(h.scope, Some(hwbp::sys::Scope::Cpu(cpu)));
        n += 1;
    });
    hwbp::sys::unpin_current_thread().unwrap();
    assert_eq!(n, 1000);
    assert_eq!(s.stats().ring.lost, 0);
}

#[test]
fn stream_all_cpus_target_has_a_ring_per_cpu_and_counts_exactly() {
    let _hw = hw_exclusive();
    let cpus = online_cpus();
    let word = Box::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let mut s = Stream::new(Target::AllCpus, spec, &StreamOptions::default()).unwrap();
    assert_eq!(s.ring_count(), cpus.len());
    // Hop across CPUs while writing so more than one ring is used when there are several.
    let mut written = 0u64;
    for c in hwbp::target::online_cpus().unwrap() {
        hwbp::sys::pin_current_thread(c).unwrap();
        for i in 0..500 {
            word.store(i, Ordering::Relaxed);
        }
        written += 500;
    }
    hwbp::sys::unpin_current_thread().unwrap();
    let mut per_cpu = std::collections::BTreeMap::new();
    s.drain(|h| {
        let cpu = h.sample.cpu.unwrap();
        assert_eq!(
            h.scope,
            Some(hwbp::sys::Scope::Cpu(hwbp::Cpu::new(cpu).unwrap()))
        );
        *per_cpu.entry(cpu).or_insert(0u64) += 1;
    });
    let want: std::collections::BTreeMap<u32, u64> = cpus.iter().map(|&c| (c, 500)).collect();
    assert_eq!(per_cpu, want);
    assert_eq!(s.watch().count().unwrap(), written);
}

#[test]
fn signal_process_target_signals_every_thread_exactly() {
    if std::env::var("HWBP_STREAM_CHILD").as_deref() != Ok("signal-process") {
        let _hw = hw_shared();
        let text = run_child(
            "stream::signal_process_target_signals_every_thread_exactly",
            "signal-process",
        );
        assert!(text.contains("SIGNAL-PROCESS-CHILD-OK"), "{text}");
        return;
    }
    use std::sync::{Arc, Barrier};
    let word = Arc::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let go = Arc::new(Barrier::new(2));
    let early = {
        let (word, go) = (word.clone(), go.clone());
        std::thread::spawn(move || {
            go.wait();
            for i in 0..300 {
                word.store(i, Ordering::Relaxed);
            }
            Tid::current().get() as u32
        })
    };
    let opts = SignalOptions {
        capture: Capture::of_spec(&spec),
        ..SignalOptions::default()
    };
    let w = SignalWatch::new(Target::current_process(), spec, opts).unwrap();
    go.wait();
    let early_tid = early.join().unwrap();
    let late_word = word.clone();
    let late_tid = std::thread::spawn(move || {
        for i in 0..200 {
            late_word.store(1_000_000 + i, Ordering::Relaxed);
        }
        Tid::current().get() as u32
    })
    .join()
    .unwrap();
    let mut by_tid = std::collections::BTreeMap::new();
    let mut late_values = Vec::new();
    w.sink().drain(|h| {
        *by_tid.entry(h.tid).or_insert(0u64) += 1;
        if h.tid == late_tid {
            late_values.push(h.value.unwrap());
        }
    });
    let want: std::collections::BTreeMap<u32, u64> = [(early_tid, 300), (late_tid, 200)].into();
    assert_eq!(by_tid, want);
    assert_eq!(late_values, (1_000_000..1_000_200).collect::<Vec<u64>>());
    assert_eq!(w.sink().hits(), 500);
    assert_eq!(w.watch().count().unwrap(), 500);
    println!("SIGNAL-PROCESS-CHILD-OK");
}
