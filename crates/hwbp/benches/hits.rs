//! Per-hit cost of hwbp's count, stream and signal delivery against raw `perf_event_open`
//! doing the same work (benches/hits_ref.c, compiled here with the system `cc`), in one run.
//!
//! `cargo bench -p hwbp --bench hits` (env: `HWBP_BENCH_HITS`, default 100000 hits per run;
//! `HWBP_BENCH_REPS`, default 9; `HWBP_BENCH_SEED`; `HWBP_BENCH_ONLY=signal` runs only the
//! modes whose name contains that text). A run is N stores to one watched 8-byte
//! word of the measuring thread in chunks of 1000 (stream and signal drain after each chunk),
//! timed from the first store to the end of the last drain (arming excluded) both in wall
//! time and in the storing thread's CPU time (which leaves out other processes' load on this
//! shared machine); each run's hit count is checked exactly. Every repetition runs every (raw, hwbp) pair once, pairs in a
//! freshly shuffled order and raw-first or hwbp-first at random, the two runs of a pair back
//! to back so they see the same machine load. Reported: median per-hit µs [min–max], and
//! hwbp/raw both as the ratio of medians and as the median of the per-pair ratios.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hwbp::signal::{Capture, SignalOptions, SignalWatch};
use hwbp::stream::{Stream, StreamOptions};
use hwbp::sys::clock::thread_cpu_time;
use hwbp::{Target, Watch};
use hwbp_core::{Access, Spec};

const CHUNK: u64 = 1000;

/// Time of one run: wall clock and the measuring thread's CPU time, in ns.
#[derive(Clone, Copy, Debug)]
struct Took {
    wall_ns: u64,
    cpu_ns: u64,
}

/// Starts timing a run.
struct Timer {
    wall: Instant,
    cpu: std::time::Duration,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }
    fn stop(self) -> Took {
        let cpu = thread_cpu_time();
        let wall = self.wall.elapsed();
        Took {
            wall_ns: wall.as_nanos() as u64,
            cpu_ns: (cpu - self.cpu).as_nanos() as u64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    RawCount,
    RawStream,
    RawSignal,
    Count,
    Stream,
    Signal,
    SignalCapture,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::RawCount => "raw count",
            Config::RawStream => "raw stream",
            Config::RawSignal => "raw signal",
            Config::Count => "count",
            Config::Stream => "stream",
            Config::Signal => "signal",
            Config::SignalCapture => "signal + value capture",
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn compile_reference() -> Result<PathBuf, String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/hits_ref.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hits_ref");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !status.success() {
        return Err(format!("cc failed on {}: {status}", src.display()));
    }
    Ok(out)
}

fn run_raw(bin: &PathBuf, mode: &str, n: u64) -> Took {
    let out = Command::new(bin)
        .args([mode, &n.to_string(), &CHUNK.to_string()])
        .output()
        .expect("run hits_ref");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hits_ref {mode}: {} {}",
        out.status,
        text
    );
    let mut it = text.split_whitespace();
    let mut field = || -> u64 { it.next().and_then(|v| v.parse().ok()).expect("a number") };
    let (wall_ns, cpu_ns, seen) = (field(), field(), field());
    assert_eq!(seen, n, "raw {mode} saw {seen} hits");
    Took { wall_ns, cpu_ns }
}

fn stores(word: &AtomicU64, from: u64, n: u64) -> u64 {
    let end = (from + CHUNK).min(n);
    for i in from..end {
        word.store(i, Ordering::Relaxed);
    }
    end
}

fn run_hwbp(config: Config, n: u64) -> Took {
    let word = Box::new(AtomicU64::new(0));
    let spec = Spec::user(word.as_ptr() as u64, 8, Access::Write);
    let me = Target::current_thread();
    match config {
        Config::Count => {
            let w = Watch::new(me, spec).expect("arm count");
            let t0 = Timer::start();
            let mut done = 0;
            while done < n {
                done = stores(&word, done, n);
            }
            let ns = t0.stop();
            assert_eq!(w.count().unwrap(), n);
            ns
        }
        Config::Stream => {
            let opts = StreamOptions {
                data_pages_log2: 6,
                ..StreamOptions::default()
            };
            let mut s = Stream::new(me, spec, &opts).expect("arm stream");
            let mut sum = 0u64;
            let t0 = Timer::start();
            let mut done = 0;
            while done < n {
                done = stores(&word, done, n);
                s.drain(|h| {
                    let x = &h.sample;
                    sum = sum.wrapping_add(
                        x.ip.unwrap_or(0)
                            + u64::from(x.tid.unwrap_or(0))
                            + x.time.unwrap_or(0)
                            + x.addr.unwrap_or(0)
                            + x.stream_id.unwrap_or(0)
                            + u64::from(x.cpu.unwrap_or(0)),
                    );
                });
            }
            let ns = t0.stop();
            std::hint::black_box(sum);
            let st = s.stats().ring;
            assert_eq!((st.samples, st.lost), (n, 0), "{st:?}");
            ns
        }
        Config::Signal | Config::SignalCapture => {
            let capture = (config == Config::SignalCapture)
                .then(|| Capture::of_spec(&spec))
                .flatten();
            let opts = SignalOptions {
                capture,
                ..SignalOptions::default()
            };
            let w = SignalWatch::new(me, spec, opts).expect("arm signal");
            let mut sum = 0u64;
            let t0 = Timer::start();
            let mut done = 0;
            while done < n {
                done = stores(&word, done, n);
                w.sink()
                    .drain(|h| sum = sum.wrapping_add(h.addr ^ h.value.unwrap_or(0)));
            }
            let ns = t0.stop();
            std::hint::black_box(sum);
            assert_eq!(w.sink().hits(), n);
            assert_eq!(w.sink().queue_dropped(), 0);
            ns
        }
        _ => unreachable!(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// (hwbp configuration, its raw reference): run back to back.
const PAIRS: [(Config, Config); 4] = [
    (Config::Count, Config::RawCount),
    (Config::Stream, Config::RawStream),
    (Config::Signal, Config::RawSignal),
    (Config::SignalCapture, Config::RawSignal),
];

/// µs per hit of one run: (wall, thread CPU).
fn run(bin: &PathBuf, config: Config, n: u64) -> (f64, f64) {
    let t = match config {
        Config::RawCount => run_raw(bin, "count", n),
        Config::RawStream => run_raw(bin, "stream", n),
        Config::RawSignal => run_raw(bin, "signal", n),
        _ => run_hwbp(config, n),
    };
    let us = |ns: u64| ns as f64 / n as f64 / 1000.0;
    (us(t.wall_ns), us(t.cpu_ns))
}

/// Prints one table: `pick` chooses wall (0) or CPU (1) time from each run.
fn table(title: &str, hw: &[Vec<(f64, f64)>], raw: &[Vec<(f64, f64)>], pick: usize) {
    let get = |v: &[(f64, f64)]| -> Vec<f64> {
        v.iter()
            .map(|t| if pick == 0 { t.0 } else { t.1 })
            .collect()
    };
    let span = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(0f64, f64::max);
        format!("{:.2} [{lo:.2}–{hi:.2}]", median(&mut v.to_vec()))
    };
    println!("\n{title}\n");
    println!(
        "| mode | raw µs/hit: median [min–max] | hwbp µs/hit: median [min–max] | \
         hwbp/raw: ratio of medians | hwbp/raw: median of paired ratios [min–max] |"
    );
    println!("|---|---|---|---|---|");
    for (p, (h, _)) in PAIRS.iter().enumerate() {
        if hw[p].is_empty() {
            continue;
        }
        let (hv, rv) = (get(&hw[p]), get(&raw[p]));
        let mut paired: Vec<f64> = hv.iter().zip(&rv).map(|(a, b)| a / b).collect();
        let lo = paired.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = paired.iter().cloned().fold(0f64, f64::max);
        let ratio = median(&mut hv.clone()) / median(&mut rv.clone());
        println!(
            "| {} | {} | {} | {ratio:.3}x | {:.3}x [{lo:.2}–{hi:.2}] |",
            h.name(),
            span(&rv),
            span(&hv),
            median(&mut paired)
        );
    }
}

fn main() {
    let n = env_u64("HWBP_BENCH_HITS", 100_000);
    let reps = env_u64("HWBP_BENCH_REPS", 9) as usize;
    let mut seed = env_u64("HWBP_BENCH_SEED", 0);
    if seed == 0 {
        seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
    }
    let bin = match compile_reference() {
        Ok(b) => b,
        Err(why) => {
            println!("hits: SKIPPED, no raw reference: {why}");
            return;
        }
    };
    println!("hits: {n} hits per run, {reps} repetitions, seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // hw[pair][rep], raw[pair][rep]: (wall, CPU) µs per hit.
    let mut hw = vec![Vec::new(); PAIRS.len()];
    let mut raw = vec![Vec::new(); PAIRS.len()];
    for rep in 0..reps {
        let only = std::env::var("HWBP_BENCH_ONLY").unwrap_or_default();
        let mut order: Vec<usize> = (0..PAIRS.len())
            .filter(|&p| PAIRS[p].0.name().contains(only.as_str()))
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for &p in &order {
            let (h, r) = PAIRS[p];
            if next() % 2 == 0 {
                raw[p].push(run(&bin, r, n));
                hw[p].push(run(&bin, h, n));
            } else {
                hw[p].push(run(&bin, h, n));
                raw[p].push(run(&bin, r, n));
            }
        }
        eprintln!("hits: repetition {} of {reps} done", rep + 1);
    }
    table(
        "Thread CPU time (CLOCK_THREAD_CPUTIME_ID of the storing thread)",
        &hw,
        &raw,
        1,
    );
    table("Wall time", &hw, &raw, 0);
}
