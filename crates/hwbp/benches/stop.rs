//! Stop mode (issue 6): per-hit cost of hwbp's stop mode vs gdb `watch` (with a
//! `commands silent / continue` script) vs the minimal C ptrace tracer, same workload
//! (`benches/stop/workload.c`: N stores to a watched `long`), same run, shuffled order.
//!
//! Per-hit cost = slope of wall time between two workload sizes (start-up cancels), per
//! repetition; the median and range over repetitions are printed. Every run's hit count is
//! checked. Reproduce: `cargo bench -p hwbp --bench stop` (env `STOP_BENCH_REPS`, default 5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hwbp::ptrace::{Hit, RunEnd, StopHandler, StopOptions, Tracer, Verdict, WatchSpec};
use hwbp_core::Region;

fn build(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/stop/{name}.c"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stop-bench-{name}"));
    let ok = Command::new("cc")
        .args(["-O1", "-g", "-no-pie", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cc {}", src.display());
    out
}

fn symbol_addr(bin: &Path, sym: &str) -> u64 {
    let out = Command::new("nm").arg(bin).output().expect("nm");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with(&format!(" {sym}")))
        .expect("symbol");
    u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap()
}

struct Count(u64);

impl StopHandler for Count {
    fn hit(&mut self, _: &Hit<'_>) -> Verdict {
        self.0 += 1;
        Verdict::Continue
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Baseline,
    Hwbp,
    HwbpRegs,
    CTracer,
    Gdb,
    GdbCounted,
}

/// One run: wall seconds and the hit count the tool saw.
fn run(tool: Tool, n: u64, wl: &Path, ct: &Path, addr: u64, script: &Path) -> (f64, u64) {
    let t0 = Instant::now();
    let hits = match tool {
        Tool::Baseline => {
            assert!(Command::new(wl)
                .arg(n.to_string())
                .status()
                .unwrap()
                .success());
            n
        }
        Tool::Hwbp | Tool::HwbpRegs => {
            let w = WatchSpec::write(Region::new(addr, 8));
            let opts = StopOptions {
                regs: tool == Tool::HwbpRegs,
                ..StopOptions::default()
            };
            let mut t = Tracer::spawn(wl.to_str().unwrap(), &[n.to_string()], &[], vec![w], opts)
                .expect("spawn");
            let mut c = Count(0);
            assert_eq!(t.run(&mut c).unwrap(), RunEnd::Exited(0));
            c.0
        }
        Tool::CTracer => {
            let out = Command::new(ct)
                .arg(format!("{addr:#x}"))
                .arg(wl)
                .arg(n.to_string())
                .output()
                .unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        }
        Tool::Gdb | Tool::GdbCounted => {
            let script = if tool == Tool::Gdb {
                script.with_extension("min.gdb")
            } else {
                script.to_path_buf()
            };
            let out = Command::new("gdb")
                .args(["-batch", "-nx", "-x"])
                .arg(&script)
                .arg("--args")
                .arg(wl)
                .arg(n.to_string())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let hits = text
                .lines()
                .filter_map(|l| l.strip_prefix("HITS "))
                .next_back()
                .map(|h| h.trim().parse().unwrap())
                .unwrap_or(0);
            if tool == Tool::Gdb {
                // No counter in the script (the cheapest `commands`): checked by the
                // counted variant in the same repetition.
                n
            } else {
                // gdb reports value changes: the first store (0 over 0) is not a hit.
                hits + 1
            }
        }
    };
    (t0.elapsed().as_secs_f64(), hits)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let wl = build("workload");
    let ct = build("c_tracer");
    let addr = symbol_addr(&wl, "target");
    let script = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stop-bench.gdb");
    std::fs::write(
        &script,
        "set $hits = 0\nwatch target\ncommands\nsilent\nset $hits = $hits + 1\ncontinue\nend\nrun\nprintf \"HITS %d\\n\", $hits\n",
    )
    .unwrap();
    std::fs::write(
        script.with_extension("min.gdb"),
        "watch target\ncommands\nsilent\ncontinue\nend\nrun\n",
    )
    .unwrap();
    let gdb_ok = Command::new("gdb").arg("--version").output().is_ok();
    let reps: usize = std::env::var("STOP_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut tools = vec![Tool::Baseline, Tool::Hwbp, Tool::HwbpRegs, Tool::CTracer];
    if gdb_ok {
        tools.push(Tool::Gdb);
        tools.push(Tool::GdbCounted);
    } else {
        eprintln!("gdb not found: its row is skipped");
    }
    let sizes = |t: Tool| {
        if matches!(t, Tool::Gdb | Tool::GdbCounted) {
            (2_000, 10_000)
        } else {
            (5_000, 25_000)
        }
    };
    let mut rng = hwbp::ptrace::StepRng::new(0x5709);
    let mut per_hit: Vec<(Tool, Vec<f64>)> = tools.iter().map(|&t| (t, Vec::new())).collect();
    for rep in 0..reps {
        // Fresh shuffled order each repetition, each with its own baseline.
        let mut order: Vec<Tool> = tools.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut slope = std::collections::HashMap::new();
        for &t in &order {
            let (n1, n2) = sizes(t);
            let (w1, h1) = run(t, n1, &wl, &ct, addr, &script);
            let (w2, h2) = run(t, n2, &wl, &ct, addr, &script);
            assert_eq!((h1, h2), (n1, n2), "{t:?}: hit counts");
            slope.insert(format!("{t:?}"), (w2 - w1) / (n2 - n1) as f64);
        }
        let base = slope["Baseline"];
        for (t, v) in per_hit.iter_mut() {
            if *t != Tool::Baseline {
                v.push((slope[&format!("{t:?}")] - base) * 1e6);
            }
        }
        eprintln!("rep {rep} done");
    }
    println!("| tool | per hit, µs (median) | min–max | reps |");
    println!("|---|---|---|---|");
    let mut medians = std::collections::HashMap::new();
    for (t, v) in per_hit.iter_mut() {
        if *t == Tool::Baseline {
            continue;
        }
        let (lo, hi) = (
            v.iter().cloned().fold(f64::MAX, f64::min),
            v.iter().cloned().fold(f64::MIN, f64::max),
        );
        let m = median(v);
        medians.insert(format!("{t:?}"), m);
        let name = match t {
            Tool::Hwbp => "hwbp stop mode (perf sigtrap + ptrace)",
            Tool::HwbpRegs => "hwbp stop mode + registers",
            Tool::CTracer => "minimal C ptrace tracer (DR0/DR7)",
            Tool::Gdb => "gdb watch + commands (silent, continue)",
            Tool::GdbCounted => "gdb watch + commands (silent, $hits++, continue)",
            Tool::Baseline => unreachable!(),
        };
        println!("| {name} | {m:.1} | {lo:.1}–{hi:.1} | {} |", v.len());
    }
    let h = medians["Hwbp"];
    println!();
    println!("hwbp vs C tracer: {:.2}x", medians["CTracer"] / h);
    if let Some(g) = medians.get("Gdb") {
        println!("hwbp vs gdb: {:.2}x", g / h);
    }
}
