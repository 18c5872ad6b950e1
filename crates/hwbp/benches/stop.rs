//! Stop mode (issue 6): per-hit cost of `hwbp run --stop` (the in-process agent, the default)
//! vs `hwbp run --stop --stop-via ptrace` vs the library `Tracer` vs the minimal C ptrace
//! tracer vs gdb `watch` (with a `commands silent / continue` script), same workload
//! (`benches/stop/workload.c`: N stores of changing values to a watched `long`), same run,
//! interleaved. Reference rows (`benches/stop/inproc.c`) split the agent's cost: the #DB trap
//! alone, plus an empty in-process SIGTRAP handler, plus the agent's handler work.
//!
//! Per-hit cost = slope of the time between two workload sizes (start-up cancels), minus the
//! unwatched baseline's slope: from the medians over repetitions at each size (the spec's
//! "slope"; goals and ratios use it), and within each repetition (median and range, the
//! spread). Wall and CPU time (tool + workload). Each repetition runs every (row, size) once
//! in a freshly shuffled order. Every run's hit count must be exactly N, else the bench panics.
//!
//! Reproduce: `cargo bench -p hwbp --bench stop`. It builds the release `hwbp` binary itself
//! (`cargo build --release -p hwbp-cli`, same target directory) unless `HWBP_BIN` names one.
//! Env: `STOP_BENCH_REPS` (default 11), `STOP_BENCH_N` (default 50000; the small size is N/5),
//! `STOP_BENCH_GDB_N` (default 10000, small size N/5), `STOP_BENCH_SEED`, `STOP_BENCH_GDB`
//! (the gdb to run, default `gdb`; missing: its row says NOT MEASURED).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hwbp::ptrace::agent::AgentLaunch;
use hwbp::ptrace::{Hit, RunEnd, StopHandler, StopOptions, Tracer, Verdict, WatchSpec};
use hwbp::sys::ptrace as sys;
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

/// The release `hwbp` binary: `HWBP_BIN`, or built now with `cargo build --release` into this
/// bench's own target directory (so it is never stale).
fn hwbp_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HWBP_BIN") {
        return PathBuf::from(bin);
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "-p", "hwbp-cli", "--bin", "hwbp"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cargo build --release -p hwbp-cli failed");
    target.join("release/hwbp")
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tool {
    Baseline,
    /// `hwbp run --stop -q --json -o F` (the agent, the default).
    CliAgent,
    /// The same without `-q`: one JSON line per hit written to F.
    CliAgentJson,
    /// The same with `--backtrace`: an 8 KiB stack copy per hit, unwound by hwbp.
    CliAgentBacktrace,
    /// `hwbp run --stop --stop-via ptrace -q --json -o F`.
    CliPtrace,
    /// The library: `AgentLaunch` + `AgentSession` with a counting handler.
    LibAgent,
    /// The library: `Tracer::spawn` with a counting handler.
    LibTracer,
    CTracer,
    Gdb,
    /// In-process perf breakpoint, counting only (the #DB trap).
    InprocCount,
    /// In-process perf sigtrap, empty handler.
    InprocEmpty,
    /// In-process perf sigtrap, the agent's handler work, no consumer.
    InprocAgent,
}

const TOOLS: [(Tool, &str); 12] = [
    (Tool::Baseline, "baseline (no watch)"),
    (
        Tool::CliAgent,
        "`hwbp run --stop -q --json -o F` (agent, default)",
    ),
    (
        Tool::CliAgentJson,
        "`hwbp run --stop --json -o F` (agent, every hit written)",
    ),
    (
        Tool::CliAgentBacktrace,
        "`hwbp run --stop --backtrace --json -o F` (agent, every hit unwound and written)",
    ),
    (
        Tool::CliPtrace,
        "`hwbp run --stop --stop-via ptrace -q --json -o F`",
    ),
    (Tool::LibAgent, "library `AgentSession`, counting handler"),
    (
        Tool::LibTracer,
        "library `Tracer` (ptrace), counting handler",
    ),
    (Tool::CTracer, "minimal C ptrace tracer (DR0/DR7)"),
    (Tool::Gdb, "gdb `watch` + `commands silent / continue`"),
    (
        Tool::InprocCount,
        "ref: in-process perf counting (the #DB trap)",
    ),
    (
        Tool::InprocEmpty,
        "ref: in-process perf sigtrap, empty handler",
    ),
    (
        Tool::InprocAgent,
        "ref: in-process sigtrap, agent's handler work, no consumer",
    ),
];

fn name(t: Tool) -> &'static str {
    TOOLS.iter().find(|(u, _)| *u == t).unwrap().1
}

struct Setup {
    hwbp: PathBuf,
    wl: PathBuf,
    ct: PathBuf,
    inproc: PathBuf,
    addr: u64,
    gdb: OsString,
    gdb_script: PathBuf,
    out: PathBuf,
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `hwbp run --stop`: checks the start record's backend, the summary (seen == reported == N,
/// lost 0, exit 0) and, when every hit is written, the number of hit records.
fn cli_hits(
    s: &Setup,
    n: u64,
    via: &str,
    (quiet, backtrace): (bool, bool),
    clock: &mut Clock,
) -> u64 {
    let mut cmd = Command::new(&s.hwbp);
    cmd.args(["run", "--stop"]);
    if via == "ptrace" {
        cmd.args(["--stop-via", "ptrace"]);
    }
    if quiet {
        cmd.arg("-q");
    }
    if backtrace {
        cmd.arg("--backtrace");
    }
    let st = cmd
        .args(["--json", "-o"])
        .arg(&s.out)
        .args(["--watch", "target", "--"])
        .arg(&s.wl)
        .arg(n.to_string())
        .status()
        .unwrap();
    clock.stop();
    assert!(st.success(), "hwbp run --stop ({via}): {st}");
    let recs = json_lines(&s.out);
    // Not left for the next run to truncate (inside its timing).
    std::fs::remove_file(&s.out).unwrap();
    let start = &recs[0];
    assert_eq!(start["schema"], "hwbp.start/1", "{start}");
    assert_eq!(start["stop"], via, "start record: {start}");
    let sum = recs.last().unwrap();
    assert_eq!(sum["schema"], "hwbp.summary/1", "{sum}");
    assert_eq!(sum["exit_status"], 0, "{sum}");
    assert_eq!(sum["lost"], 0, "{sum}");
    assert_eq!(sum["seen"], sum["reported"], "{sum}");
    let seen = sum["seen"].as_u64().unwrap();
    if !quiet {
        let hits = recs.len() as u64 - 2;
        assert_eq!(hits, seen, "hit records vs summary");
    }
    if backtrace {
        // Every hit unwound: the store is in the workload's main, its caller is libc's.
        for h in &recs[1..recs.len() - 1] {
            assert_eq!(h["unwind"], "dwarf", "{h}");
            assert!(
                h["backtrace"].as_array().is_some_and(|b| !b.is_empty()),
                "{h}"
            );
        }
    }
    seen
}

fn lib_agent_hits(s: &Setup, n: u64, clock: &mut Clock) -> u64 {
    let agent = AgentLaunch::new().expect("agent");
    let args = [OsString::from(n.to_string())];
    let stopped =
        hwbp::launch::spawn_at_entry_with(s.wl.as_os_str(), &args, &agent.extra()).unwrap();
    // As the CLI runs it: SIGCHLD and the shutdown signals blocked (taken by sigtimedwait).
    let mut set = sys::SHUTDOWN_SIGNALS.to_vec();
    set.push(libc::SIGCHLD);
    let old = sys::block_signals(&set).expect("block signals");
    let pid = stopped.pid().get();
    assert!(agent.loaded(pid), "the agent did not load");
    let opts = StopOptions {
        ip: true,
        ..StopOptions::default()
    };
    let mut session = agent
        .arm(pid, vec![WatchSpec::write(Region::new(s.addr, 8))], opts)
        .expect("arm");
    let _child = stopped.resume().unwrap();
    let mut c = Count(0);
    let end = session.run(&mut c);
    clock.stop();
    assert_eq!(end.unwrap(), RunEnd::Exited(0));
    assert_eq!(session.dropped(), 0);
    drop(session);
    sys::restore_signals(&old);
    c.0
}

/// Runs `prog args`, checks exit 0, returns its stdout's number.
fn printed_count(cmd: &mut Command, clock: &mut Clock) -> u64 {
    let out = cmd.output().unwrap();
    clock.stop();
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{cmd:?} printed {text:?}"))
}

/// CPU seconds (user + system) of this process and its reaped descendants: every row's
/// programs are waited for (the workload by its tool), so this is the run's whole CPU time.
fn cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut ru);
            ru
        };
        for t in [ru.ru_utime, ru.ru_stime] {
            total += t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        }
    }
    total
}

/// Times one run: from its creation to the first [`Clock::stop`], which each row calls as soon
/// as its program has ended, before checking its output (outside the timing).
struct Clock {
    t0: Instant,
    c0: f64,
    end: Option<(f64, f64)>,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            c0: cpu_seconds(),
            t0: Instant::now(),
            end: None,
        }
    }

    fn stop(&mut self) {
        if self.end.is_none() {
            self.end = Some((self.t0.elapsed().as_secs_f64(), cpu_seconds() - self.c0));
        }
    }
}

/// One run: wall seconds, CPU seconds and the hit count the tool saw.
fn run(tool: Tool, n: u64, s: &Setup) -> (f64, f64, u64) {
    let mut clock = Clock::start();
    let k = &mut clock;
    let hits = match tool {
        Tool::Baseline => {
            assert!(Command::new(&s.wl)
                .arg(n.to_string())
                .status()
                .unwrap()
                .success());
            n
        }
        Tool::CliAgent => cli_hits(s, n, "agent", (true, false), k),
        Tool::CliAgentJson => cli_hits(s, n, "agent", (false, false), k),
        Tool::CliAgentBacktrace => cli_hits(s, n, "agent", (false, true), k),
        Tool::CliPtrace => cli_hits(s, n, "ptrace", (true, false), k),
        Tool::LibAgent => lib_agent_hits(s, n, k),
        Tool::LibTracer => {
            let w = WatchSpec::write(Region::new(s.addr, 8));
            let mut t = Tracer::spawn(
                s.wl.to_str().unwrap(),
                &[n.to_string()],
                &[],
                vec![w],
                StopOptions::default(),
            )
            .expect("spawn");
            let mut c = Count(0);
            let end = t.run(&mut c);
            k.stop();
            assert_eq!(end.unwrap(), RunEnd::Exited(0));
            c.0
        }
        Tool::CTracer => printed_count(
            Command::new(&s.ct)
                .arg(format!("{:#x}", s.addr))
                .arg(&s.wl)
                .arg(n.to_string()),
            k,
        ),
        Tool::Gdb => {
            let out = Command::new(&s.gdb)
                .args(["-batch", "-nx", "-x"])
                .arg(&s.gdb_script)
                .arg("--args")
                .arg(&s.wl)
                .arg(n.to_string())
                .output()
                .unwrap();
            k.stop();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.lines().any(|l| l == "EXIT 0"),
                "gdb: the workload did not exit 0:\n{text}"
            );
            // `info watchpoints`: "breakpoint already hit N times" (every store changes the
            // value, so gdb stops at each).
            text.lines()
                .find_map(|l| l.trim().strip_prefix("breakpoint already hit "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|h| h.parse().ok())
                .unwrap_or_else(|| panic!("gdb: no hit count in its output:\n{text}"))
        }
        Tool::InprocCount | Tool::InprocEmpty | Tool::InprocAgent => {
            let mode = match tool {
                Tool::InprocCount => "count",
                Tool::InprocEmpty => "empty",
                _ => "agent",
            };
            printed_count(Command::new(&s.inproc).arg(mode).arg(n.to_string()), k)
        }
    };
    clock.stop();
    let (wall, cpu) = clock.end.unwrap();
    (wall, cpu, hits)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    let hi = v.iter().cloned().fold(f64::MIN, f64::max);
    (lo, hi)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {cpu}, kernel {}", kernel.trim())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hwbp = hwbp_binary();
    let wl = build("workload");
    let s = Setup {
        hwbp,
        addr: symbol_addr(&wl, "target"),
        wl,
        ct: build("c_tracer"),
        inproc: build("inproc"),
        gdb: std::env::var_os("STOP_BENCH_GDB").unwrap_or_else(|| "gdb".into()),
        gdb_script: Path::new(env!("CARGO_TARGET_TMPDIR")).join("stop-bench.gdb"),
        out: Path::new(env!("CARGO_TARGET_TMPDIR")).join("stop-bench.jsonl"),
    };
    std::fs::write(
        &s.gdb_script,
        "watch target\ncommands\nsilent\ncontinue\nend\nrun\ninfo watchpoints\n\
         printf \"EXIT %d\\n\", $_exitcode\n",
    )
    .unwrap();
    let gdb_version = Command::new(&s.gdb)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        });
    if gdb_version.is_none() {
        eprintln!(
            "\n*** gdb NOT FOUND: the gdb row is NOT MEASURED (install it: scripts/bench-deps) ***\n"
        );
    }
    let reps = env_u64("STOP_BENCH_REPS", 11) as usize;
    let big = env_u64("STOP_BENCH_N", 50_000);
    let gdb_big = env_u64("STOP_BENCH_GDB_N", 10_000);
    let seed = env_u64("STOP_BENCH_SEED", 0x5709);
    let sizes = |t: Tool| {
        let b = if t == Tool::Gdb { gdb_big } else { big };
        (b / 5, b)
    };
    let tools: Vec<Tool> = TOOLS
        .iter()
        .map(|&(t, _)| t)
        .filter(|&t| t != Tool::Gdb || gdb_version.is_some())
        .collect();
    println!(
        "# stop-mode bench: {} ({}), date {}, load before {}",
        machine(),
        gdb_version.as_deref().unwrap_or("gdb: NOT INSTALLED"),
        String::from_utf8_lossy(
            &Command::new("date")
                .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim(),
        loadavg()
    );
    println!(
        "# hwbp: {}; N = {}/{} (gdb {}/{}), {reps} reps, seed {seed:#x}",
        s.hwbp.display(),
        big / 5,
        big,
        gdb_big / 5,
        gdb_big
    );
    let mut rng = hwbp::ptrace::StepRng::new(seed);
    // Every run's (wall, CPU) seconds, by (row, large size).
    let mut all: HashMap<(Tool, bool), Vec<(f64, f64)>> = HashMap::new();
    // Per row, per repetition: wall µs per hit (slope within the repetition, minus the
    // baseline's).
    let mut per_rep: HashMap<Tool, Vec<f64>> = HashMap::new();
    for rep in 0..reps {
        // Every (row, size) once, in a fresh shuffled order.
        let mut order: Vec<(Tool, bool)> = tools
            .iter()
            .flat_map(|&t| [(t, false), (t, true)])
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut times: HashMap<(Tool, bool), f64> = HashMap::new();
        for &(t, large) in &order {
            let (n1, n2) = sizes(t);
            let n = if large { n2 } else { n1 };
            let (w, c, h) = run(t, n, &s);
            assert_eq!(h, n, "{}: {h} hits counted for {n} stores", name(t));
            times.insert((t, large), w);
            all.entry((t, large)).or_default().push((w, c));
        }
        let slope = |t: Tool| {
            let (n1, n2) = sizes(t);
            (times[&(t, true)] - times[&(t, false)]) / (n2 - n1) as f64
        };
        let base = slope(Tool::Baseline);
        for &t in &tools {
            let b = if t == Tool::Baseline { 0.0 } else { base };
            per_rep.entry(t).or_default().push((slope(t) - b) * 1e6);
        }
        eprintln!("rep {rep} done (load {})", loadavg());
    }
    println!("# load after {}", loadavg());
    // The slope of the medians (measured-on-this-machine.md's "slope"): (median at the large
    // size - median at the small size) / (difference in stores), minus the baseline's; wall
    // and CPU, µs per hit.
    let slope_of_medians = |t: Tool| -> (f64, f64) {
        let (n1, n2) = sizes(t);
        let m = |large: bool, cpu: bool| {
            let v: Vec<f64> = all[&(t, large)]
                .iter()
                .map(|&(w, c)| if cpu { c } else { w })
                .collect();
            median(&v)
        };
        let d = (n2 - n1) as f64;
        (
            (m(true, false) - m(false, false)) / d * 1e6,
            (m(true, true) - m(false, true)) / d * 1e6,
        )
    };
    let (bw, bc) = slope_of_medians(Tool::Baseline);
    let mut med: HashMap<Tool, f64> = HashMap::new();
    let mut cpu: HashMap<Tool, f64> = HashMap::new();
    for &t in &tools {
        let (w, c) = slope_of_medians(t);
        let (w, c) = if t == Tool::Baseline {
            (w, c)
        } else {
            (w - bw, c - bc)
        };
        med.insert(t, w);
        cpu.insert(t, c);
    }
    println!();
    println!(
        "| row | wall µs per hit (slope of medians) | per-repetition slopes: median [min–max] \
         | CPU µs per hit (slope of medians) | reps |"
    );
    println!("|---|---|---|---|---|");
    for &(t, label) in &TOOLS {
        match per_rep.get(&t) {
            Some(v) => {
                let (lo, hi) = range(v);
                let label = if t == Tool::Baseline {
                    format!("{label} (its slope, subtracted from every row)")
                } else {
                    label.to_owned()
                };
                println!(
                    "| {label} | {:.2} | {:.2} [{lo:.2}–{hi:.2}] | {:.2} | {} |",
                    med[&t],
                    median(v),
                    cpu[&t],
                    v.len()
                );
            }
            None => println!("| {label} | **NOT MEASURED: gdb not installed** | – | – | 0 |"),
        }
    }
    let agent = med[&Tool::CliAgent];
    let ratio = |num: Tool, den: Tool| -> Option<String> {
        let (a, b) = (per_rep.get(&num)?, per_rep.get(&den)?);
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        let (lo, hi) = range(&r);
        Some(format!(
            "{:.2} (wall; CPU time: {:.2}); per repetition: median {:.2} [{lo:.2}–{hi:.2}]",
            med[&num] / med[&den],
            cpu[&num] / cpu[&den],
            median(&r)
        ))
    };
    let na = || "NOT MEASURED (gdb not installed)".to_owned();
    println!();
    println!(
        "hwbp(agent) / C tracer: {}",
        ratio(Tool::CliAgent, Tool::CTracer).unwrap()
    );
    println!(
        "gdb / hwbp(agent): {}",
        ratio(Tool::Gdb, Tool::CliAgent).unwrap_or_else(na)
    );
    println!(
        "hwbp --stop-via ptrace / hwbp(agent): {}",
        ratio(Tool::CliPtrace, Tool::CliAgent).unwrap()
    );
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    let c_ratio = agent / med[&Tool::CTracer];
    println!();
    println!(
        "goal <= 20 µs per hit (hwbp run --stop, agent): {agent:.1} µs: {}",
        verdict(agent <= 20.0)
    );
    println!(
        "goal faster than the minimal C tracer: {c_ratio:.2}: {}",
        verdict(c_ratio < 1.0)
    );
    match med.get(&Tool::Gdb).map(|g| g / agent) {
        Some(g) => println!("goal >= 4x faster than gdb: {g:.1}x: {}", verdict(g >= 4.0)),
        None => println!("goal >= 4x faster than gdb: {}", na()),
    }
    println!();
    println!("agent cost breakdown (slopes of medians, µs per hit, wall / CPU):");
    let steps = [
        (Tool::InprocCount, "#DB trap (perf counting)"),
        (Tool::InprocEmpty, "+ SIGTRAP delivery to an empty handler"),
        (
            Tool::InprocAgent,
            "+ the agent's handler work (no consumer)",
        ),
        (
            Tool::LibAgent,
            "+ preloaded agent, ring consumed by hwbp (library)",
        ),
        (Tool::CliAgent, "+ the CLI's handler (`hwbp run --stop -q`)"),
        (Tool::CliAgentJson, "+ one JSON line per hit"),
        (Tool::CliAgentBacktrace, "+ an 8 KiB stack copy, unwound"),
    ];
    let (mut pw, mut pc) = (0.0, 0.0);
    for (t, label) in steps {
        let (w, c) = (med[&t], cpu[&t]);
        println!(
            "  {label}: {w:.2} ({:+.2}) / {c:.2} ({:+.2})",
            w - pw,
            c - pc
        );
        (pw, pc) = (w, c);
    }
    if gdb_version.is_none() {
        eprintln!(
            "\n*** gdb NOT FOUND: the gdb row was NOT MEASURED (install it: scripts/bench-deps) ***"
        );
    }
}
