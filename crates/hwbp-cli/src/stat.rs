//! `hwbp stat`: exact hit counts only, like `perf stat` — one line per watch, or per watch
//! and thread with `--per-thread`. Counts are read from counting events (no samples, no
//! symbolization), so this is the cheapest way to ask "how often is this touched?".
//!
//! Output goes to stderr, as `perf stat`'s does, so the program's own stdout stays clean.
//!
//! Not for: where the accesses come from (`hwbp run`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hwbp::launch::{self, Child, ExitStatus};
use hwbp::sys::Pid;
use hwbp::{Target, Watch};
use serde_json::json;

use crate::messages::Failure;
use crate::report::WatchInfo;
use crate::run::{self as cmd, WatchArgs};
use crate::session;

/// `hwbp stat [--per-thread] [--json] --watch SPEC... (-p PID [--duration SECS] | -- CMD...)`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Counts go to stderr like perf stat's. Exit status: CMD's (run form), \
    0 (attach form), 2 if the watches cannot be set up."
)]
pub struct Args {
    #[command(flatten)]
    watches: WatchArgs,
    /// Count in this running process instead of starting CMD
    #[arg(short, long, value_name = "PID", conflicts_with = "cmd")]
    pid: Option<i32>,
    /// With -p: stop counting after SECS seconds
    #[arg(long, value_name = "SECS", requires = "pid")]
    duration: Option<f64>,
    /// One line per watch and thread (records a sample per hit to know the thread)
    #[arg(long)]
    per_thread: bool,
    /// One JSON object (schema hwbp.stat/1) instead of text
    #[arg(long)]
    json: bool,
    /// The program to run and its arguments
    #[arg(last = true, value_name = "CMD", required_unless_present = "pid")]
    cmd: Vec<OsString>,
}

/// What counts: exact per-watch counters, or samples by thread.
enum Counting {
    Exact(Vec<Watch>),
    PerThread(
        crate::sampler::Sampler,
        BTreeMap<(usize, u32), u64>,
        HashMap<u32, Arc<str>>,
    ),
}

impl Counting {
    fn arm(pid: Pid, watches: &[WatchInfo], per_thread: bool) -> Result<Counting, Failure> {
        if per_thread {
            return Ok(Counting::PerThread(
                cmd::arm(pid, watches, false)?,
                BTreeMap::new(),
                HashMap::new(),
            ));
        }
        cmd::check_fit(watches)?;
        let mut armed = Vec::new();
        for w in watches {
            let watch = Watch::new(Target::Process(pid), w.spec).map_err(|e| {
                Failure::refused(
                    anyhow!("{e}").context(format!("cannot arm '{}' in pid {pid}", w.label)),
                )
            })?;
            armed.push(watch);
        }
        Ok(Counting::Exact(armed))
    }

    /// How the process's threads were armed (the first watch's, for exact counting: each
    /// watch is armed on its own).
    fn arming(&self) -> hwbp::Arming {
        match self {
            Counting::PerThread(s, _, _) => s.arming(),
            Counting::Exact(w) => w.first().map_or(hwbp::Arming::NotProcess, |w| w.arming()),
        }
    }

    fn drain(&mut self) {
        if let Counting::PerThread(s, counts, names) = self {
            s.drain(
                |h| {
                    if let (Some(w), Some(tid)) = (h.watch, h.sample.tid) {
                        *counts.entry((w, tid)).or_default() += 1;
                    }
                },
                |tid, name| {
                    names.insert(tid, Arc::from(name));
                },
            );
        }
    }

    /// Stops a per-thread sampler before its last drain: nothing is counted after it.
    fn stop(&self) {
        if let Counting::PerThread(s, _, _) = self {
            if let Err(e) = s.stop() {
                crate::messages::note(&format!(
                    "cannot stop the watches before the last read: {e}"
                ));
            }
        }
    }

    /// Per-thread counts come from samples: how many hits the kernel counted that no sample
    /// recorded (a full ring, or a CPU that came online before its ring was mapped), if any.
    fn missed_note(&self) -> Option<String> {
        let Counting::PerThread(s, _, _) = self else {
            return None;
        };
        let missed = s.stats().lost.saturating_add(s.unrecorded());
        (missed > 0).then(|| {
            format!(
                "{missed} hits were counted but not recorded (a full ring buffer, or a CPU that \
                 came online before hwbp could record it): the per-thread counts miss them"
            )
        })
    }

    fn wait(&mut self, d: Duration) {
        match self {
            Counting::PerThread(s, _, _) => {
                s.poll(d);
            }
            Counting::Exact(_) => std::thread::sleep(d),
        }
        self.drain();
    }
}

/// Runs `hwbp stat`.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let duration = cmd::duration(args.duration)?;
    let start;
    let (pid, what, mut child, counting, watches);
    if let Some(p) = args.pid {
        pid = cmd::live_pid(p)?;
        launch::install_stop_handler()
            .map_err(|e| Failure::failed(anyhow!("installing the SIGINT handler: {e}")))?;
        let (w, _) = cmd::resolve(pid, &args.watches.watch)?;
        counting = Counting::arm(pid, &w, args.per_thread)?;
        if let Some(note) = cmd::live_note(pid, counting.arming()) {
            crate::messages::note(&note);
        }
        watches = w;
        what = format!("process {pid}");
        crate::messages::armed_note("counting", watches.len(), pid, None);
        child = None;
        start = Instant::now();
    } else {
        let stopped = cmd::start(&args.cmd)?;
        pid = stopped.pid();
        let (w, _) = cmd::resolve(pid, &args.watches.watch)?;
        counting = Counting::arm(pid, &w, args.per_thread)?;
        watches = w;
        what = args
            .cmd
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        start = Instant::now();
        child = Some(stopped.resume().map_err(Failure::failed)?);
    }
    // Read now: threads that exit keep the process's name in the report.
    let process = session::comm(pid, None);
    let mut counting = counting;
    let status = watch_until(&mut counting, pid, child.as_mut(), duration)?;
    counting.stop();
    counting.drain();
    if let Some(note) = counting.missed_note() {
        crate::messages::note(&note);
    }
    let elapsed = start.elapsed();
    let text = match &counting {
        Counting::Exact(ws) => {
            let mut counts = Vec::new();
            for (w, info) in ws.iter().zip(&watches) {
                let n = w.count().map_err(|e| {
                    Failure::failed(anyhow!("{e}").context(format!("reading '{}'", info.label)))
                })?;
                counts.push(n);
            }
            report(&what, &watches, &counts, None, elapsed, status, args.json)
        }
        Counting::PerThread(_, by_tid, seen_names) => {
            let mut counts = vec![0u64; watches.len()];
            for (&(w, _), &n) in by_tid {
                counts[w] += n;
            }
            let names = |tid: u32| {
                seen_names
                    .get(&tid)
                    .cloned()
                    .or_else(|| session::comm(pid, Some(tid)))
                    .or_else(|| process.clone())
            };
            report(
                &what,
                &watches,
                &counts,
                Some((by_tid, &names)),
                elapsed,
                status,
                args.json,
            )
        }
    };
    drop(counting);
    crate::messages::stderr(&text);
    Ok(match status {
        Some(s) => cmd::exit_code(s),
        None => ExitCode::SUCCESS,
    })
}

/// Waits for the child's exit (or the process's, with `-p`), a signal or the duration; a
/// child still running after a signal gets SIGTERM, like under `perf stat`.
fn watch_until(
    counting: &mut Counting,
    pid: Pid,
    mut child: Option<&mut Child>,
    duration: Option<Duration>,
) -> Result<Option<ExitStatus>, Failure> {
    let start = Instant::now();
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Some(s) = c
                .try_wait()
                .map_err(|e| Failure::failed(anyhow!("waitpid: {e}")))?
            {
                return Ok(Some(s));
            }
            if launch::stop_signal().is_some() {
                let _ = c.signal(libc::SIGTERM);
                let s = c
                    .wait()
                    .map_err(|e| Failure::failed(anyhow!("waitpid: {e}")))?;
                return Ok(Some(s));
            }
        } else if launch::stop_signal().is_some()
            || duration.is_some_and(|d| start.elapsed() >= d)
            || !session::alive(pid)
        {
            return Ok(None);
        }
        counting.wait(Duration::from_millis(20));
    }
}

type Names<'a> = &'a dyn Fn(u32) -> Option<Arc<str>>;
/// Hits by (watch, tid).
type ByThread = BTreeMap<(usize, u32), u64>;

fn report(
    what: &str,
    watches: &[WatchInfo],
    counts: &[u64],
    per_thread: Option<(&ByThread, Names<'_>)>,
    elapsed: Duration,
    status: Option<ExitStatus>,
    json: bool,
) -> String {
    if json {
        let ws: Vec<_> = watches
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(i, (w, n))| {
                let mut v = json!({
                    "watch": i + 1,
                    "label": w.label,
                    "addr": format!("{:#x}", w.spec.region.addr),
                    "len": w.spec.region.len_bytes,
                    "access": w.spec.access.as_str(),
                    "hits": n,
                });
                if let Some((by_tid, names)) = per_thread {
                    v["threads"] = by_tid
                        .iter()
                        .filter(|((wi, _), _)| *wi == i)
                        .map(|((_, tid), n)| {
                            json!({"tid": tid, "thread": names(*tid).as_deref(), "hits": n})
                        })
                        .collect();
                }
                v
            })
            .collect();
        let v = json!({
            "schema": "hwbp.stat/1",
            "target": what,
            "duration_ns": u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            "exit_status": status.map(ExitStatus::shell_code),
            "watches": ws,
        });
        return format!("{v}\n");
    }
    let mut out = format!("\n hwbp stat for '{what}':\n\n");
    for (i, (w, n)) in watches.iter().zip(counts).enumerate() {
        let _ = writeln!(
            out,
            "{n:>16}      {}  ({}:{})",
            w.label,
            w.spec.region,
            w.spec.access.as_str()
        );
        if let Some((by_tid, names)) = per_thread {
            for ((_, tid), n) in by_tid.iter().filter(|((wi, _), _)| *wi == i) {
                let name = names(*tid);
                let _ = writeln!(
                    out,
                    "{n:>16}        thread {tid} ({})",
                    name.as_deref().unwrap_or("?")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n {:>15.6} seconds time elapsed\n",
        elapsed.as_secs_f64()
    );
    out
}
