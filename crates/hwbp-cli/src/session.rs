//! The watch session shared by `run`, `attach` and `demo`: take the samples a [`Drainer`]
//! thread copied out of the rings, turn each into a [`Hit`] (thread name, symbolized accessing
//! instruction, value read right after the batch), filter, print, summarize, until the
//! program ends, a signal, `--duration` or `--limit`. However long symbolizing or printing
//! takes, the rings keep being emptied (see [`crate::drainer`] for why and the numbers).
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

use crate::drainer::{Batch, Drainer};
use crate::hit::{unknown_site, Filter, FilterSpec, Hit, Verdict};
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

/// How often an unknown IP may make the session re-read `/proc/PID/maps`.
const REFRESH_MAPS: Duration = Duration::from_secs(1);

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

/// Starts the [`Drainer`] thread that empties the rings (and unwinds with `--backtrace`, from
/// the modules mapped now). Call it before the program runs: the first hits then meet a
/// reader already waiting, not a ring filling while the unwind tables are built.
pub fn drain(
    sampler: Sampler,
    symbolizer: &Symbolizer,
    opts: &Options,
) -> Result<Drainer, Failure> {
    let unwinder = opts.backtrace.then(|| Unwinder::new(symbolizer.space()));
    Drainer::spawn(sampler, unwinder)
        .context("starting the thread that reads the samples")
        .map_err(Failure::failed)
}

/// Runs the session on the rings `drainer` empties; the sampler is dropped (every event
/// closed) before this returns.
///
/// This loop symbolizes, filters and prints the drainer's batches, and checks between them
/// whether the session should end.
#[allow(clippy::too_many_arguments)]
pub fn watch(
    pid: Pid,
    drainer: Drainer,
    watches: &[WatchInfo],
    symbolizer: &mut Symbolizer,
    mut until: Until<'_>,
    initial: Vec<Option<Vec<u8>>>,
    opts: &Options,
    out: &mut Out,
) -> Result<(Outcome, Summary), Failure> {
    let trace = match &opts.trace_out {
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
    let mut c = Consumer {
        pid,
        watches,
        symbolizer,
        opts,
        mem: Memory::open(pid),
        filter: Filter::new(opts.filter.clone(), initial),
        summary: Summary::default(),
        status: StatusLine::new(!opts.json && out.stderr_is_terminal()),
        trace,
        names: HashMap::new(),
        // Threads that exit before their first hit is drained keep the process's name.
        process_name: comm(pid, None),
        cache: report::SiteCache::default(),
        exec_sites: HashMap::new(),
        last_refresh: None,
        line: String::with_capacity(512),
        t0: None,
        seen: 0,
        lost: 0,
    };
    let start = Instant::now();
    let mut outcome = Outcome {
        totals: Totals::default(),
        signal: None,
        exit: None,
    };
    loop {
        outcome.signal = launch::stop_signal();
        let timed_out = opts.duration.is_some_and(|d| start.elapsed() >= d);
        // Whether the program ended: checked before the last drain is asked for, so that it
        // sees every sample the program wrote.
        let ended = match &mut until {
            // A child stopped at its exit still has its memory: the last values are read.
            Until::Child(ch) => match ch.poll() {
                Ok(ChildState::Running) => false,
                Ok(ChildState::Exiting) | Err(_) => true,
                Ok(ChildState::Exited(s)) => {
                    outcome.exit = Some(s);
                    true
                }
            },
            Until::Process(p) => !alive(*p),
        };
        if ended || timed_out || outcome.signal.is_some() || c.filter.done() {
            drainer.finish();
            for batch in drainer.rest() {
                c.batch(batch, &drainer, out)?;
            }
            c.tick(out);
            break;
        }
        if let Some(batch) = drainer.next(Duration::from_millis(50)) {
            c.batch(batch, &drainer, out)?;
        }
        c.tick(out);
    }
    let sampler = drainer.join();
    outcome.totals = Totals {
        seen: c.seen,
        reported: c.filter.reported(),
        // Hits on a CPU that came online before its ring was mapped are lost too.
        lost: sampler.stats().lost.saturating_add(sampler.unrecorded()),
        duration_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    drop(sampler);
    out.status(c.status.clear());
    if let Some(t) = c.trace {
        t.finish()
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("--trace-out")))?;
    }
    Ok((outcome, c.summary))
}

/// The session's state between batches.
struct Consumer<'a> {
    pid: Pid,
    watches: &'a [WatchInfo],
    symbolizer: &'a mut Symbolizer,
    opts: &'a Options,
    mem: Memory,
    filter: Filter,
    summary: Summary,
    status: StatusLine,
    trace: Option<TraceWriter<std::io::BufWriter<File>>>,
    names: HashMap<u32, Option<Arc<str>>>,
    process_name: Option<Arc<str>>,
    cache: report::SiteCache,
    exec_sites: HashMap<u64, Arc<Site>>,
    last_refresh: Option<Instant>,
    line: String,
    /// Time stamp of the first hit (hit times are relative to it).
    t0: Option<u64>,
    seen: u64,
    /// Lost so far (for the status line).
    lost: u64,
}

impl Consumer<'_> {
    /// Symbolizes, filters and prints one batch of the drainer.
    fn batch(&mut self, batch: Batch, drainer: &Drainer, out: &mut Out) -> Result<(), Failure> {
        let Batch {
            mut raws,
            comms,
            notes,
            stats,
        } = batch;
        for note in notes {
            crate::messages::note(&note);
        }
        for (tid, name) in comms {
            self.names.insert(tid, Some(Arc::from(name)));
        }
        self.lost = stats.lost;
        let n = raws.len();
        // Rings are drained one CPU after the other: restore time order.
        raws.sort_by_key(|r| r.time);
        self.seen += n as u64;
        // Code bytes under an execute breakpoint are not a value worth showing.
        let values: Vec<Option<Vec<u8>>> = self
            .watches
            .iter()
            .map(|w| w.spec.access.is_data().then(|| self.mem.read(w)).flatten())
            .collect();
        let watches = self.watches;
        let pid = self.pid;
        for r in raws {
            if self.filter.done() {
                // `--limit` reached: nothing more is reported, so the rest of a backlog (the
                // drainer may be far ahead) is not symbolized; it is counted in `seen`.
                break;
            }
            let base = *self.t0.get_or_insert(r.time);
            let process_name = &self.process_name;
            let thread = self
                .names
                .entry(r.tid)
                .or_insert_with(|| comm(pid, Some(r.tid)).or_else(|| process_name.clone()))
                .clone();
            let site = if r.ip == 0 {
                Arc::new(unknown_site(0))
            } else if watches[r.watch].spec.access == Access::Execute {
                // An execute breakpoint traps before the instruction runs: the sampled IP
                // is the instruction itself, not the one after it.
                let symbolizer = &mut *self.symbolizer;
                self.exec_sites
                    .entry(r.ip)
                    .or_insert_with(|| {
                        let mut site = unknown_site(r.ip);
                        site.frames = symbolizer.frames(r.ip);
                        Arc::new(site)
                    })
                    .clone()
            } else {
                self.data_site(r.ip, drainer)
            };
            let backtrace: Vec<Arc<Site>> = r
                .callers
                .iter()
                .map(|&ret| self.symbolizer.site(ret))
                .collect();
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
            let verdict = self.filter.judge(&mut hit);
            if verdict == Verdict::Skip {
                continue;
            }
            self.summary.add(&hit);
            if !self.opts.quiet {
                self.line.clear();
                if self.opts.json {
                    report::hit_json(&mut self.line, &hit, watches, &mut self.cache);
                } else {
                    report::hit_text(&mut self.line, &hit, watches, &mut self.cache);
                }
                out.hit_with_status(&mut self.status, &self.line);
            }
            if let Some(t) = &mut self.trace {
                t.hit(&hit, watches)
                    .map_err(|e| Failure::failed(anyhow::Error::new(e).context("--trace-out")))?;
            }
        }
        drainer.taken(n);
        Ok(())
    }

    /// After each batch or wait: the output so far goes out (the start record too), and the
    /// status line is redrawn when due.
    fn tick(&mut self, out: &mut Out) {
        out.flush();
        if let Some(line) = self.status.tick(Instant::now(), self.seen, self.lost) {
            out.status(&line);
        }
    }

    /// The site of a data access at `ip`. An IP in no known module is in a library loaded
    /// since (dlopen): the memory map is re-read, at most once every [`REFRESH_MAPS`], and
    /// with `--backtrace` the drainer gets the new unwind tables.
    fn data_site(&mut self, ip: u64, drainer: &Drainer) -> Arc<Site> {
        let site = self.symbolizer.site(ip);
        if site.module.is_some()
            || self
                .last_refresh
                .is_some_and(|t| t.elapsed() < REFRESH_MAPS)
        {
            return site;
        }
        self.last_refresh = Some(Instant::now());
        match AddressSpace::from_pid(self.pid.get() as u32) {
            Ok(space) => {
                if self.opts.backtrace {
                    drainer.set_unwinder(Unwinder::new(&space));
                }
                self.symbolizer.set_space(space);
                self.cache = report::SiteCache::default();
                self.symbolizer.site(ip)
            }
            Err(_) => site,
        }
    }
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
