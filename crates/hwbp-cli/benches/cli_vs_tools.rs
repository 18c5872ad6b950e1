//! The `hwbp` command against the tools it replaces, in one run, on one workload (issue 5):
//!
//! - `hwbp stat --watch target -- W N`  vs  `perf stat -e mem:ADDR/8:w:u W N`
//! - `hwbp run --json -o F --watch target -- W N`  vs  `perf record -e mem:ADDR/8:w:u -c 1`
//!   followed by `perf script` (the symbolized stream, both ways)
//! - gdb `watch target` with `commands silent; continue; end` (on a smaller N: ~100 us/hit)
//! - stop mode (issue 6; the in-process agent, checked from the start record), on gdb's N:
//!   `hwbp run --stop -q --json -o F --watch target -- W N`
//!   vs gdb vs the minimal C ptrace tracer (`crates/hwbp/benches/stop/c_tracer.c`: DR0/DR7,
//!   per hit `waitpid`, `PEEKUSER` DR6, `PEEKDATA`, `POKEUSER` DR6, `PTRACE_CONT`)
//! - bpftrace `watchpoint:ADDR:8:w` where bpftrace is installed (it is not by default)
//!
//! `W` (benches/workload.c) makes N stores to `volatile long target`. Every configuration runs
//! once per repetition, in a shuffled order, next to an unwatched baseline of the same
//! repetition; per-hit cost = (median wall time - median baseline) / N. Every run's hit count
//! is checked (N exactly, 0 lost) before its time counts.
//!
//! Run: `cargo bench -p hwbp-cli --bench cli_vs_tools` (env `HWBP_BENCH_N`, `HWBP_BENCH_REPS`,
//! `HWBP_BENCH_GDB_N`). Prints a Markdown table for docs/BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` (a shell command line), returns (seconds, stdout, stderr); panics on failure.
fn timed(cmd: &str) -> (f64, String, String) {
    let t = Instant::now();
    let out = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        secs,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Config {
    name: &'static str,
    /// The shell command; `{N}` is replaced by the store count.
    cmd: String,
    /// Checks the run's output and returns the hits it saw.
    hits: fn(&str, &str, &Path) -> u64,
    /// Store count for this configuration.
    n: u64,
    times: Vec<f64>,
    /// Times at `n / 4` (for the slope, which cancels start-up and tear-down).
    times_small: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

fn main() {
    let n = env_u64("HWBP_BENCH_N", 200_000);
    let reps = env_u64("HWBP_BENCH_REPS", 5) as usize;
    let gdb_n = env_u64("HWBP_BENCH_GDB_N", 5_000);
    let hwbp = env!("CARGO_BIN_EXE_hwbp");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/workload.c");
    let w = dir.join("workload");
    let st = Command::new("cc")
        .args(["-g", "-O1", "-no-pie", "-o"])
        .arg(&w)
        .arg(&src)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: no C compiler to build benches/workload.c");
        return;
    }
    let nm = Command::new("nm").arg(&w).output().unwrap();
    let addr = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|l| l.ends_with(" target"))
        .map(|l| format!("0x{}", l.split(' ').next().unwrap()))
        .expect("nm finds target");
    let w = w.to_str().unwrap().to_owned();
    let f = dir.join("out");
    let fs = f.to_str().unwrap().to_owned();
    let have_perf = have("perf");
    let have_gdb = have("gdb");
    let have_bpftrace = have("bpftrace");
    let mut configs = vec![Config {
        name: "baseline (no watch)",
        cmd: format!("{w} {{N}}"),
        hits: |_, _, _| 0,
        n,
        times: vec![],
        times_small: vec![],
    }];
    configs.push(Config {
        name: "hwbp stat",
        cmd: format!("{hwbp} stat --json --watch target -- {w} {{N}}"),
        hits: |_, err, _| {
            let v: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
            v["watches"][0]["hits"].as_u64().unwrap()
        },
        n,
        times: vec![],
        times_small: vec![],
    });
    configs.push(Config {
        name: "hwbp run --json > file",
        cmd: format!("{hwbp} run --json --watch target -- {w} {{N}} > {fs}.jsonl"),
        hits: |_, _, f| {
            let text = std::fs::read_to_string(f.with_extension("jsonl")).unwrap();
            let last: serde_json::Value =
                serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert_eq!(last["lost"], 0);
            let hits = text
                .lines()
                .filter(|l| l.contains("\"hwbp.hit/1\""))
                .count() as u64;
            assert_eq!(Some(hits), last["seen"].as_u64());
            hits
        },
        n,
        times: vec![],
        times_small: vec![],
    });
    if have_perf {
        configs.push(Config {
            name: "perf stat -e mem:ADDR/8:w:u",
            cmd: format!("perf stat -x, -e mem:{addr}/8:w:u {w} {{N}}"),
            hits: |_, err, _| {
                err.lines()
                    .find_map(|l| l.split(',').next()?.parse().ok())
                    .unwrap()
            },
            n,
            times: vec![],
            times_small: vec![],
        });
        configs.push(Config {
            name: "perf record -c 1 + perf script",
            cmd: format!(
                "perf record -q -e mem:{addr}/8:w:u -c 1 -o {fs}.data {w} {{N}} && \
                 perf script -i {fs}.data > {fs}.txt"
            ),
            hits: |_, _, f| {
                std::fs::read_to_string(f.with_extension("txt"))
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains(" mem:0x"))
                    .count() as u64
            },
            n,
            times: vec![],
            times_small: vec![],
        });
    }
    configs.push(Config {
        name: "hwbp run --stop --json > file",
        cmd: format!("{hwbp} run --stop -q --json -o {fs}.stop.jsonl --watch target -- {w} {{N}}"),
        hits: |_, _, f| {
            let text = std::fs::read_to_string(f.with_extension("stop.jsonl")).unwrap();
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            // The default backend: the in-process agent (docs/STOP_MODE.md).
            assert_eq!(first["stop"], "agent", "{first}");
            let last: serde_json::Value =
                serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert_eq!(last["seen"], last["reported"]);
            last["seen"].as_u64().unwrap()
        },
        n: gdb_n,
        times: vec![],
        times_small: vec![],
    });
    let ct = dir.join("c_tracer");
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&ct)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwbp/benches/stop/c_tracer.c"))
        .status()
        .is_ok_and(|s| s.success());
    if built {
        configs.push(Config {
            name: "minimal C ptrace tracer (DR0/DR7)",
            cmd: format!("{} {addr} {w} {{N}}", ct.display()),
            hits: |out, _, _| out.trim().parse().unwrap(),
            n: gdb_n,
            times: vec![],
            times_small: vec![],
        });
    }
    configs.push(Config {
        name: "baseline (gdb N)",
        cmd: format!("{w} {{N}}"),
        hits: |_, _, _| 0,
        n: gdb_n,
        times: vec![],
        times_small: vec![],
    });
    if have_gdb {
        let script = dir.join("gdb.cmds");
        std::fs::write(
            &script,
            "watch target\ncommands\nsilent\ncontinue\nend\nrun\n",
        )
        .unwrap();
        configs.push(Config {
            name: "gdb watch (commands silent; continue)",
            cmd: format!(
                "gdb -batch -nx -x {} --args {w} {{N}} > /dev/null 2>&1",
                script.display()
            ),
            // gdb reports value changes; the count is not printed by this script.
            hits: |_, _, _| 0,
            n: gdb_n,
            times: vec![],
            times_small: vec![],
        });
    }
    if have_bpftrace {
        configs.push(Config {
            name: "bpftrace watchpoint",
            cmd: format!(
                "bpftrace -e 'watchpoint:{addr}:8:w {{ @h = count(); }}' -c '{w} {{N}}' \
                 2> /dev/null"
            ),
            // bpftrace prints its map at exit: `@h: 200008`.
            hits: |out, _, _| {
                out.lines()
                    .find_map(|l| l.strip_prefix("@h: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            },
            n,
            times: vec![],
            times_small: vec![],
        });
    }
    let mut seed = 0x5eed_u64;
    for rep in 0..reps {
        let mut order: Vec<usize> = (0..configs.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (lcg(&mut seed) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &i in &order {
            let c = &mut configs[i];
            for small in [false, true] {
                let n = if small { c.n / 4 } else { c.n };
                let cmd = c.cmd.replace("{N}", &n.to_string());
                let (secs, out, err) = timed(&cmd);
                let hits = (c.hits)(&out, &err, &f);
                if c.name.starts_with("hwbp") || c.name.starts_with("minimal C") {
                    assert_eq!(hits, n, "{}: {hits} hits for {n} stores", c.name);
                } else if c.name.starts_with("perf") && hits != n {
                    // perf occasionally records one sample more than there were stores.
                    assert!(hits >= n, "{}: {hits} hits for {n} stores", c.name);
                    eprintln!("note: {}: {hits} samples for {n} stores", c.name);
                } else if c.name.starts_with("bpftrace") {
                    // bpftrace also counts the kernel's writes (the ELF loader zeroing .bss).
                    assert!(hits >= n, "{}: {hits} hits for {n} stores", c.name);
                }
                if small {
                    c.times_small.push(secs);
                } else {
                    c.times.push(secs);
                }
            }
        }
        eprintln!("repetition {} of {reps} done", rep + 1);
    }
    // (median at N, median at N/4, N) of a configuration.
    let med = |name: &str, configs: &mut Vec<Config>| -> Option<(f64, f64, u64)> {
        let c = configs.iter_mut().find(|c| c.name == name)?;
        Some((median(&mut c.times), median(&mut c.times_small), c.n))
    };
    let base = med("baseline (no watch)", &mut configs).unwrap();
    let gdb_base = med("baseline (gdb N)", &mut configs).unwrap_or(base);
    // (µs per hit from the N run against the baseline, µs per hit from the slope N/4 -> N).
    let per_hit = |name: &str, configs: &mut Vec<Config>| -> Option<(f64, f64)> {
        let (t, ts, n) = med(name, configs)?;
        let (b, bs, _) = if n == gdb_base.2 { gdb_base } else { base };
        let paired = (t - b) / n as f64 * 1e6;
        let slope = ((t - ts) - (b - bs)) / (n - n / 4) as f64 * 1e6;
        Some((paired, slope))
    };
    println!(
        "N = {n} stores (and N/4 for the slope; {reps} repetitions, shuffled; gdb: N = {gdb_n}); \
         wall-clock medians. \"paired\" = (median at N - baseline median) / N, start-up \
         included; \"slope\" = the extra time per extra hit from N/4 to N, start-up cancelled\n"
    );
    println!("| configuration | median wall at N (s) | µs per hit, paired | µs per hit, slope |");
    println!("|---|---|---|---|");
    let names: Vec<&'static str> = configs.iter().map(|c| c.name).collect();
    for name in &names {
        let (t, _, _) = med(name, &mut configs).unwrap();
        let (p, sl) = if name.starts_with("baseline") {
            ("–".to_owned(), "–".to_owned())
        } else {
            let (p, sl) = per_hit(name, &mut configs).unwrap();
            (format!("{p:.2}"), format!("{sl:.2}"))
        };
        println!("| {name} | {t:.3} | {p} | {sl} |");
    }
    if !have_bpftrace {
        println!("| bpftrace watchpoint | not installed (`apt-get install bpftrace`) | – | – |");
    }
    if have_perf {
        let r = |a: &str, b: &str, configs: &mut Vec<Config>| {
            let (pa, sa) = per_hit(a, configs).unwrap();
            let (pb, sb) = per_hit(b, configs).unwrap();
            (pa / pb, sa / sb)
        };
        let stat = r("hwbp stat", "perf stat -e mem:ADDR/8:w:u", &mut configs);
        let stream = r(
            "hwbp run --json > file",
            "perf record -c 1 + perf script",
            &mut configs,
        );
        println!();
        println!(
            "- hwbp stat / perf stat, per hit: {:.2} paired, {:.2} slope (goal <= 1.05)",
            stat.0, stat.1
        );
        println!(
            "- hwbp run --json / (perf record + perf script), per hit: {:.2} paired, {:.2} slope \
             (goal <= 0.85)",
            stream.0, stream.1
        );
        if have_gdb {
            let g = r(
                "gdb watch (commands silent; continue)",
                "hwbp run --json > file",
                &mut configs,
            );
            println!("- gdb watch / hwbp run --json, per hit: {:.0}x paired", g.0);
        }
    }
    let stop = "hwbp run --stop --json > file";
    if let Some((sp, ss)) = per_hit(stop, &mut configs) {
        println!();
        if let Some((cp, cs)) = per_hit("minimal C ptrace tracer (DR0/DR7)", &mut configs) {
            println!(
                "- hwbp run --stop / minimal C tracer, per hit: {:.2} paired, {:.2} slope \
                 (goal < 1)",
                sp / cp,
                ss / cs
            );
        }
        if let Some((gp, gs)) = per_hit("gdb watch (commands silent; continue)", &mut configs) {
            println!(
                "- gdb watch / hwbp run --stop, per hit: {:.1}x paired, {:.1}x slope (goal >= 4)",
                gp / sp,
                gs / ss
            );
        }
    }
}
