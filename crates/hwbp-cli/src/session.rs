//! The watch session shared by `run`, `attach` and `demo`: drain the samples, turn each into a
//! [`Hit`] (thread name, symbolized accessing instruction, value read right after the batch),
//! filter, print, summarize, until the program ends, a signal, `--duration` or `--limit`.
//!
//! Not for: starting or attaching (the subcommands do that) or formatting ([`crate::report`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hwbp::launch::{self, Child, ChildState, ExitStatus};
use hwbp::symbols::maps::AddressSpace;
use hwbp::symbols::symbolize::{Site, Symbolizer};
use hwbp::symbols::unwind::Unwinder;
use hwbp::sys::Pid;
use hwbp_core::Access;

use crate::hit::{unknown_site, Filter, FilterSpec, Hit, UnwindMethod, Verdict};
use crate::messages::{Failure, Out};
use crate::report::{self, Summary, Totals, WatchInfo};
use crate::sampler::Sampler;
use crate::status::StatusLine;
use crate::trace::TraceWriter;

/// How hits are reported.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--tid`, `--changed`, `--limit`.
    pub filter: FilterSpec,
    /// `--json`: JSON Lines instead of text.
    pub json: bool,
    /// `--backtrace`: unwind (DWARF, else the kernel callchain) and symbolize the callers.
    pub backtrace: bool,
    /// `--trace-out FILE`.
    pub trace_out: Option<PathBuf>,
    /// `--duration`: stop watching after this long.
    pub duration: Option<Duration>,
    /// `--quiet`: no line per hit, only the summary.
    pub quiet: bool,
}

/// What ends the session besides a signal, the duration and the limit.
pub enum Until<'a> {
    /// The child `run` started exits.
    Child(&'a mut Child),
    /// The attached process exits.
    Process(Pid),
}

/// How the session ended.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Totals for the summary.
    pub totals: Totals,
    /// The SIGINT/SIGTERM that stopped it, if any.
    pub signal: Option<i32>,
    /// The child's exit status, if it exited while watched.
    pub exit: Option<ExitStatus>,
}

/// A hit as drained, before symbolization.
struct Raw {
    watch: usize,
    tid: u32,
    time: u64,
    cpu: Option<u32>,
    ip: u64,
    /// Return addresses of the callers (`--backtrace`), innermost first.
    callers: Vec<u64>,
    unwind: Option<UnwindMethod>,
}

/// At most this many caller frames per hit.
const MAX_FRAMES: usize = 128;

/// The callers of a sampled hit: DWARF-unwound from the sampled registers and stack when the
/// sample has them and that finds at least one caller, else the kernel's frame-pointer
/// callchain (without the sampled IP itself).
fn callers(
    unwinder: Option<&mut Unwinder>,
    s: &hwbp::ring::record::Sample<'_>,
) -> (Vec<u64>, UnwindMethod) {
    if let (Some(u), Some(regs), Some(stack)) = (unwinder, s.regs_user, s.stack_user) {
        if let (1.., Some(bp), Some(sp), Some(ip)) = (
            regs.abi,
            regs.regs.get(0),
            regs.regs.get(1),
            regs.regs.get(2),
        ) {
            let frames = u.unwind([bp, sp, ip], stack.data, MAX_FRAMES);
            if !frames.is_empty() {
                return (frames, UnwindMethod::Dwarf);
            }
        }
    }
    let fp = s
        .callchain
        .map(|c| {
            c.iter()
                .filter(|&ip| ip < PERF_CONTEXT_MAX)
                .skip(1) // the sampled IP itself
                .take(MAX_FRAMES)
                .collect()
        })
        .unwrap_or_default();
    (fp, UnwindMethod::FramePointer)
}

/// How often an unknown IP may make the session re-read `/proc/PID/maps`.
const REFRESH_MAPS: Duration = Duration::from_secs(1);

/// `PERF_CONTEXT_*` markers are the top 4095 values of u64.
const PERF_CONTEXT_MAX: u64 = u64::MAX - 4094;

/// Reads the watched bytes of a process through `/proc/PID/mem`.
pub struct Memory {
    file: Option<File>,
}

impl Memory {
    /// Opens `/proc/PID/mem` (reads fail quietly once the process is gone).
    pub fn open(pid: Pid) -> Memory {
        Memory {
            file: File::open(format!("/proc/{pid}/mem")).ok(),
        }
    }

    /// The bytes of `w`'s region, if readable.
    pub fn read(&self, w: &WatchInfo) -> Option<Vec<u8>> {
        let len = usize::try_from(w.spec.region.len_bytes).ok()?.min(4096);
        let mut buf = vec![0u8; len];
        self.file
            .as_ref()?
            .read_exact_at(&mut buf, w.spec.region.addr)
            .ok()?;
        Some(buf)
    }
}

/// Runs the session; `sampler` is dropped (every event closed) before this returns.
#[allow(clippy::too_many_arguments)]
pub fn watch(
    pid: Pid,
    sampler: Sampler,
    watches: &[WatchInfo],
    symbolizer: &mut Symbolizer,
    mut until: Until<'_>,
    initial: Vec<Option<Vec<u8>>>,
    opts: &Options,
    out: &mut Out,
) -> Result<(Outcome, Summary), Failure> {
    let mut sampler = sampler;
    let mem = Memory::open(pid);
    let mut filter = Filter::new(opts.filter.clone(), initial);
    let mut summary = Summary::default();
    let mut status = StatusLine::new(!opts.json && out.stderr_is_terminal());
    let mut trace = match &opts.trace_out {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("creating --trace-out {}", path.display()))
                .map_err(Failure::refused)?;
            let name = comm(pid, None).map_or_else(|| "?".to_owned(), |s| s.to_string());
            Some(
                TraceWriter::new(std::io::BufWriter::new(f), pid.get(), &name)
                    .map_err(|e| Failure::failed(anyhow::Error::new(e).context("--trace-out")))?,
            )
        }
        None => None,
    };
    if opts.json {
        out.hit(&report::start_json(pid.get(), watches, None));
    }
    let mut names: HashMap<u32, Option<Arc<str>>> = HashMap::new();
    // Threads that exit before their first hit is drained keep the process's name.
    let process_name = comm(pid, None);
    let mut raws: Vec<Raw> = Vec::new();
    let mut cache = report::SiteCache::default();
    let mut exec_sites: HashMap<u64, Arc<Site>> = HashMap::new();
    let mut last_refresh: Option<Instant> = None;
    let mut line = String::with_capacity(512);
    // DWARF unwind tables of the modules mapped now (rebuilt with the symbolizer's map).
    let mut unwinder = opts.backtrace.then(|| Unwinder::new(symbolizer.space()));
    let start = Instant::now();
    let mut t0: Option<u64> = None;
    let mut seen = 0u64;
    let mut outcome = Outcome {
        totals: Totals::default(),
        signal: None,
        exit: None,
    };
    loop {
        outcome.signal = launch::stop_signal();
        let timed_out = opts.duration.is_some_and(|d| start.elapsed() >= d);
        // Whether the program ended: checked before draining, so the last drain sees every
        // sample it wrote.
        let ended = match &mut until {
            // A child stopped at its exit still has its memory: the last values are read.
            Until::Child(c) => match c.poll() {
                Ok(ChildState::Running) => false,
                Ok(ChildState::Exiting) | Err(_) => true,
                Ok(ChildState::Exited(s)) => {
                    outcome.exit = Some(s);
                    true
                }
            },
            Until::Process(p) => !alive(*p),
        };
        let last = ended || timed_out || outcome.signal.is_some() || filter.done();
        if !last {
            sampler.poll(Duration::from_millis(50));
        } else if let Err(e) = sampler.stop() {
            crate::messages::note(&format!(
                "cannot stop the watches before the last read ({e}): hits made after it may \
                 be counted as lost"
            ));
        }
        for news in sampler.hotplug_news() {
            crate::messages::note(&news.to_string());
        }
        raws.clear();
        let backtrace = opts.backtrace;
        sampler.drain(
            |s| {
                let Some(watch) = s.watch else { return };
                let (callers, unwind) = if backtrace {
                    let (c, m) = callers(unwinder.as_mut(), &s.sample);
                    (c, Some(m))
                } else {
                    (Vec::new(), None)
                };
                raws.push(Raw {
                    watch,
                    tid: s.sample.tid.unwrap_or(0),
                    time: s.sample.time.unwrap_or(0),
                    cpu: s.sample.cpu,
                    ip: s.sample.ip.unwrap_or(0),
                    callers,
                    unwind,
                });
            },
            |tid, name| {
                names.insert(tid, Some(Arc::from(name)));
            },
        );
        // Rings are drained one CPU after the other: restore time order.
        raws.sort_by_key(|r| r.time);
        seen += raws.len() as u64;
        // Code bytes under an execute breakpoint are not a value worth showing.
        let values: Vec<Option<Vec<u8>>> = watches
            .iter()
            .map(|w| w.spec.access.is_data().then(|| mem.read(w)).flatten())
            .collect();
        for r in raws.drain(..) {
            let base = *t0.get_or_insert(r.time);
            let thread = names
                .entry(r.tid)
                .or_insert_with(|| comm(pid, Some(r.tid)).or_else(|| process_name.clone()))
                .clone();
            let site = if r.ip == 0 {
                Arc::new(unknown_site(0))
            } else if watches[r.watch].spec.access == Access::Execute {
                // An execute breakpoint traps before the instruction runs: the sampled IP
                // is the instruction itself, not the one after it.
                exec_sites
                    .entry(r.ip)
                    .or_insert_with(|| {
                        let mut site = unknown_site(r.ip);
                        site.frames = symbolizer.frames(r.ip);
                        Arc::new(site)
                    })
                    .clone()
            } else {
                let site = symbolizer.site(r.ip);
                // An IP in no known module: a library loaded since (dlopen). Re-read the
                // memory map, at most once a second.
                if site.module.is_none() && last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_MAPS)
                {
                    last_refresh = Some(Instant::now());
                    match AddressSpace::from_pid(pid.get() as u32) {
                        Ok(space) => {
                            if opts.backtrace {
                                unwinder = Some(Unwinder::new(&space));
                            }
                            symbolizer.set_space(space);
                            cache = report::SiteCache::default();
                            symbolizer.site(r.ip)
                        }
                        Err(_) => site,
                    }
                } else {
                    site
                }
            };
            let backtrace: Vec<Arc<Site>> =
                r.callers.iter().map(|&ret| symbolizer.site(ret)).collect();
            let mut hit = Hit {
                time_ns: r.time.saturating_sub(base),
                tid: r.tid,
                thread,
                cpu: r.cpu,
                watch: r.watch,
                access: watches[r.watch].spec.access,
                site,
                value: values[r.watch].clone(),
                changed: None,
                backtrace,
                unwind: r.unwind,
            };
            let verdict = filter.judge(&mut hit);
            if verdict == Verdict::Skip {
                continue;
            }
            summary.add(&hit);
            if !opts.quiet {
                line.clear();
                if opts.json {
                    report::hit_json(&mut line, &hit, watches, &mut cache);
                } else {
                    report::hit_text(&mut line, &hit, watches, &mut cache);
                }
                out.hit_with_status(&mut status, &line);
            }
            if let Some(t) = &mut trace {
                t.hit(&hit, watches)
                    .map_err(|e| Failure::failed(anyhow::Error::new(e).context("--trace-out")))?;
            }
        }
        out.flush();
        let lost = sampler.stats().lost;
        if let Some(line) = status.tick(Instant::now(), seen, lost) {
            out.status(&line);
        }
        if last {
            break;
        }
    }
    outcome.totals = Totals {
        seen,
        reported: filter.reported(),
        // Hits on a CPU that came online before its ring was mapped are lost too.
        lost: sampler.stats().lost.saturating_add(sampler.unrecorded()),
        duration_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    drop(sampler);
    out.status(status.clear());
    if let Some(t) = trace {
        t.finish()
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("--trace-out")))?;
    }
    Ok((outcome, summary))
}

/// Whether `pid` still runs: it exists and is not a zombie (`/proc/PID/stat` state `Z`/`X`),
/// which it stays until its parent reaps it.
pub fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

/// A thread's (or, with `None`, the process's) name from `/proc`.
pub fn comm(pid: Pid, tid: Option<u32>) -> Option<Arc<str>> {
    let path = match tid {
        Some(t) => format!("/proc/{pid}/task/{t}/comm"),
        None => format!("/proc/{pid}/comm"),
    };
    std::fs::read_to_string(path)
        .ok()
        .map(|s| Arc::from(s.trim_end()))
}
