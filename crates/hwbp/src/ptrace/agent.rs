//! Stop mode without a tracer: the in-process agent (crates/hwbp-agent), for programs hwbp
//! starts. The fast path of `hwbp run --stop`; the [`super::Tracer`] remains the general one.
//!
//! The program is started with the agent preloaded ([`AgentLaunch::extra`] for
//! [`crate::launch::spawn_at_entry_with`]); its constructor installs a SIGTRAP handler before
//! any code of the program runs. At the entry point, [`AgentLaunch::loaded`] says whether it is
//! there (a static or setuid program, or a foreign libc, ignores `LD_PRELOAD`: use the tracer),
//! and [`AgentLaunch::arm`] opens every planned piece as a perf breakpoint with `sigtrap=1`,
//! `inherit` + `inherit_thread` (threads created later follow, forked children do not) and
//! `remove_on_exec`, **owned by hwbp** — so they vanish with hwbp, however it dies.
//!
//! A hit stops the accessing thread in the agent's handler, which reads the watched bytes and
//! the registers right after the access and appends a record to a ring shared with hwbp; the
//! thread goes on without a context switch. [`AgentSession::run`] reads the records in order
//! and applies exactly what the tracer applies at a stop: the shadow copy (`old`), `--if`,
//! `--changed`, and calls the same [`StopHandler`] with the same [`Hit`].
//!
//! What differs from the tracer, by design (docs/STOP_MODE.md):
//! - only the accessing thread is held during its hit (gdb's non-stop), not all threads;
//! - [`Verdict::Break`] cannot leave the thread stopped at the access (it is inside the
//!   handler): it is taken as [`Verdict::Detach`]; use the tracer for `--break`;
//! - `exec` removes the watches (`remove_on_exec`) and the new image runs without the agent:
//!   [`StopHandler::exec`] is not called (the tracer's default, `Detach`, is what happens);
//! - no [`StopHandler::thread`] events (threads are not traced).
//!
//! Reliability: when hwbp lets go (end, [`Verdict::Detach`], a shutdown signal, a panic via
//! `Drop`) it closes the events and marks the ring closed; a SIGTRAP already queued is taken by
//! the agent's handler and dropped. After a SIGKILL of hwbp the events are gone with its fds and
//! any queued SIGTRAP still lands in the handler: no window in which the program can be killed
//! by a stray SIGTRAP (the tracer has one, docs/STOP_MODE.md).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::Duration;

use super::tracer::{plan_all, task_ids};
use super::{judge, Hit, Judged, Regs, RunEnd, StackCopy, StopHandler, StopOptions};
use super::{Errno, Tid, WatchSpec};
use super::{TraceError, Verdict};
use crate::launch::Extra;
use crate::sys::agent::{self as sys, SharedRing};
use crate::sys::agent_layout as layout;
use crate::sys::launch::WaitStatus;
use crate::sys::ptrace as pt;
use crate::sys::Pid;

/// Whether this build carries the agent (x86-64 Linux).
pub fn available() -> bool {
    !sys::LIBRARY.is_empty()
}

/// Why the agent is not used for a program, known from its file before it starts (so that
/// it does not inherit the agent's descriptors and variables for nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsuitable {
    /// Set-user-ID or set-group-ID changing this process's real ids: a secure execution, the
    /// loader ignores `LD_PRELOAD` paths.
    SecureExecution,
    /// No `PT_INTERP` program header: no dynamic loader to preload anything.
    StaticallyLinked,
    /// Another ELF class or machine than the agent's (x86-64); the loader would print an
    /// error into the program's stderr.
    ForeignMachine,
    /// A Go program (a `.go.buildinfo` section): the Go runtime installs its own SIGTRAP
    /// handler with raw `rt_sigaction` system calls, which the agent cannot see; the agent's
    /// handler would be replaced and the first hit would crash the program.
    GoRuntime,
}

impl std::fmt::Display for Unsuitable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsuitable::SecureExecution => "it is set-user-ID or set-group-ID",
            Unsuitable::StaticallyLinked => "it is statically linked",
            Unsuitable::ForeignMachine => "it is not an x86-64 program",
            Unsuitable::GoRuntime => {
                "it is a Go program, whose runtime takes SIGTRAP over with raw system calls"
            }
        })
    }
}

/// Why the agent cannot be used for `program` ([`Unsuitable`]), from the file: a set-user-ID
/// or set-group-ID program that changes this process's real ids (a secure execution: the
/// loader ignores `LD_PRELOAD` paths), a statically linked program (no `PT_INTERP` program
/// header: no dynamic loader), or one for another class or machine than the agent's (x86-64;
/// the loader would print an error into the program's stderr), or a Go program. `None` when
/// unknown (not an ELF file — a script —, unreadable).
///
/// ```text
/// ELF header: e_ident[0..4] = \x7fELF, [4] EI_CLASS (2 = 64-bit), [5] EI_DATA (1 = LE);
///             e_machine u16 at 0x12 (62 = x86-64); ELF64: e_phoff u64 at 0x20,
///             e_phentsize u16 at 0x36, e_phnum u16 at 0x38
/// program header: p_type u32 at 0 (PT_INTERP = 3)
/// ```
pub fn unsuitable(program: &std::path::Path) -> Option<Unsuitable> {
    use std::os::unix::fs::FileExt;
    let Ok(file) = std::fs::File::open(program) else {
        return None;
    };
    if secure_execution(&file) {
        return Some(Unsuitable::SecureExecution);
    }
    let mut header = [0u8; 64];
    if file.read_exact_at(&mut header, 0).is_err() || header[..4] != *b"\x7fELF" {
        return None;
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([header[o], header[o + 1]]));
    if header[4] != 2 || header[5] != 1 || u16_at(0x12) != 62 {
        return Some(Unsuitable::ForeignMachine);
    }
    let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().unwrap_or_default());
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    if phentsize < 4 || phnum == 0 {
        return None;
    }
    let mut p_type = [0u8; 4];
    for i in 0..phnum {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))?;
        file.read_exact_at(&mut p_type, at).ok()?;
        if u32::from_le_bytes(p_type) == 3 {
            return go_program(file).then_some(Unsuitable::GoRuntime);
        }
    }
    Some(Unsuitable::StaticallyLinked)
}

/// Whether the ELF file has a `.go.buildinfo` section (every Go binary since Go 1.13). Reads
/// only the section headers and names, not the whole file.
fn go_program(file: std::fs::File) -> bool {
    use object::{Object, ObjectSection};
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    let found = elf.sections().any(|s| s.name() == Ok(".go.buildinfo"));
    found
}

/// The agent's files for one program about to be started.
pub struct AgentLaunch {
    ring: SharedRing,
    library: OwnedFd,
}

impl AgentLaunch {
    /// Creates the agent library file and the shared ring (both memfds, close-on-exec here;
    /// only the started program inherits them). No stack copies.
    pub fn new() -> Result<AgentLaunch, Errno> {
        AgentLaunch::with_stack(0)
    }

    /// [`AgentLaunch::new`], with `stack` bytes of the accessing thread's stack copied at each
    /// hit (from `rsp` up, the readable part) into [`Hit::stack`] (0: none; a multiple of 8,
    /// at most 64 KiB, else `EINVAL`). The ring then holds 512 records rather than 4096. It
    /// is fixed here, before the program starts: [`StopOptions::stack`] is not used by the
    /// agent.
    pub fn with_stack(stack: usize) -> Result<AgentLaunch, Errno> {
        if !available() {
            return Err(Errno::EOPNOTSUPP);
        }
        let library = sys::library_file(sys::LIBRARY)?;
        let ring = SharedRing::create(stack)?;
        let h = ring.header();
        h.consumer_pid.store(Pid::current().get() as u32, Relaxed);
        h.version.store(layout::VERSION, Relaxed);
        h.state.store(layout::STATE_NEW, Relaxed);
        h.magic.store(layout::MAGIC, Release);
        Ok(AgentLaunch { ring, library })
    }

    /// The environment and descriptors the program must get: the agent first in `LD_PRELOAD`
    /// (a user's `LD_PRELOAD` follows it, and the agent restores it for the program's
    /// children), and `HWBP_AGENT=RING_FD,LIBRARY_FD`.
    pub fn extra(&self) -> Extra {
        let (ring, library) = (self.ring.fd().as_raw_fd(), self.library.as_raw_fd());
        let mut preload = OsString::from(format!("/proc/self/fd/{library}"));
        let mut env = Vec::new();
        // Set but empty is the user's too (the program sees it set, as without hwbp).
        if let Some(user) = std::env::var_os("LD_PRELOAD") {
            if !user.is_empty() {
                preload.push(":");
                preload.push(&user);
            }
            env.push(("HWBP_AGENT_PRELOAD".into(), user));
        }
        env.push(("LD_PRELOAD".into(), preload));
        env.push(("HWBP_AGENT".into(), format!("{ring},{library}").into()));
        Extra {
            env,
            inherit: vec![ring, library],
        }
    }

    /// Whether the agent is active in `pid` (call it at the program's entry point, when the
    /// constructors of its libraries have run).
    pub fn loaded(&self, pid: i32) -> bool {
        let h = self.ring.header();
        h.state.load(Acquire) == layout::STATE_LOADED && h.agent_pid.load(Acquire) == pid as u32
    }

    /// Arms `watches` on `pid` (stopped at its entry point, agent loaded): every thread now,
    /// and by inheritance every thread it creates later. Transactional: on error nothing stays
    /// open and the ring is closed.
    pub fn arm(
        self,
        pid: i32,
        watches: Vec<WatchSpec>,
        opts: StopOptions,
    ) -> Result<AgentSession, TraceError> {
        if !self.loaded(pid) {
            return Err(TraceError::Spawn {
                errno: Errno::ENOENT,
            });
        }
        let plan = plan_all(&watches)?;
        if let Some(w) = watches
            .iter()
            .find(|w| w.region.len_bytes as usize > layout::MAX_BYTES)
        {
            return Err(TraceError::TooManyPieces {
                needed: w.region.len_bytes.div_ceil(8) as u32,
                capacity: 4,
            });
        }
        let mut session = AgentSession {
            pid,
            ring: self.ring,
            watches: Vec::new(),
            fds: Vec::new(),
            opts,
            hits: 0,
            released: false,
            stack: Vec::new(),
        };
        let h = session.ring.header();
        for (slot, w) in h.watches.iter().zip(&watches) {
            slot.addr.store(w.region.addr, Relaxed);
            slot.len.store(w.region.len_bytes as u32, Relaxed);
            let writes_only = w.access == hwbp_core::Access::Write;
            slot.flags.store(
                if writes_only {
                    layout::WATCH_WRITES_ONLY
                } else {
                    0
                },
                Relaxed,
            );
        }
        publish_code_ranges(h, pid);
        let regs = if opts.regs { layout::FLAG_REGS } else { 0 };
        h.flags.store(regs | layout::FLAG_RANGES, Relaxed);
        h.nwatch.store(watches.len() as u32, Release);
        for w in watches {
            let mut shadow = vec![0; w.region.len_bytes as usize];
            let _ = pt::read_memory(Tid(pid), w.region.addr, &mut shadow);
            let scratch = shadow.clone();
            session.watches.push(Armed {
                spec: w,
                shadow,
                scratch,
            });
        }
        for tid in task_ids(pid) {
            for (wi, chunks) in plan.iter().enumerate() {
                for (pi, c) in chunks.iter().enumerate() {
                    let tag = layout::TAG | ((wi as u64) << 8) | pi as u64;
                    match pt::open_sigtrap_breakpoint_on(
                        tid,
                        c.attr.addr,
                        c.attr.len_bytes,
                        c.attr.bp_type,
                        tag,
                        true,
                    ) {
                        Ok(fd) => session.fds.push(fd),
                        Err(Errno::ESRCH) => {} // the thread exited meanwhile
                        Err(errno) => {
                            return Err(TraceError::Arm {
                                tid,
                                addr: c.attr.addr,
                                errno,
                            })
                        }
                    }
                }
            }
        }
        drop(self.library);
        Ok(session)
    }
}

struct Armed {
    spec: WatchSpec,
    shadow: Vec<u8>,
    scratch: Vec<u8>,
}

/// A program in stop mode through the agent. Dropping it lets the program go (watches closed).
pub struct AgentSession {
    pid: i32,
    ring: SharedRing,
    watches: Vec<Armed>,
    fds: Vec<OwnedFd>,
    opts: StopOptions,
    hits: u64,
    released: bool,
    /// The stack copy of the record being handled.
    stack: Vec<u8>,
}

/// The poll interval right after records were found, and the longest one when idle (a
/// producer that finds the ring full ends the sleep with a SIGCHLD).
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);

impl AgentSession {
    /// The program.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Hits seen so far (reported or filtered).
    pub fn hits_seen(&self) -> u64 {
        self.hits
    }

    /// Hits the agent did not record because hwbp had let go (after a detach or shutdown).
    pub fn dropped(&self) -> u64 {
        self.ring.header().dropped.load(Relaxed)
    }

    /// SIGTRAPs that were not hwbp's and went to the program's own disposition.
    pub fn foreign_sigtraps(&self) -> u64 {
        self.ring.header().foreign.load(Relaxed)
    }

    /// Reads hits until the program exits, the handler detaches, or a shutdown signal
    /// (SIGINT, SIGTERM, SIGHUP, blocked by [`super::install_shutdown_signals`]) arrives. The
    /// program must be this process's child and no longer traced (the launcher detached).
    pub fn run(&mut self, handler: &mut dyn StopHandler) -> Result<RunEnd, TraceError> {
        let pid = Pid::new(self.pid).ok_or(TraceError::NoSuchProcess { pid: self.pid })?;
        let mut signals = pt::SHUTDOWN_SIGNALS.to_vec();
        signals.push(libc::SIGCHLD);
        let mut sleep = POLL_MIN;
        loop {
            // At most one ringful per round: a program that hits faster than the handler
            // keeps the ring from ever emptying, and the signals must still be looked at.
            let slots = self.ring.slots() as u64;
            let (n, verdict) = self.drain(handler, slots);
            if verdict != Verdict::Continue {
                self.release();
                return Ok(RunEnd::Detached);
            }
            match crate::sys::launch::wait(pid, false) {
                Ok(Some(end @ (WaitStatus::Exited(_) | WaitStatus::Signaled(_)))) => {
                    // Every hit of the program is in the ring by now (recorded synchronously).
                    let (_, verdict) = self.drain(handler, u64::MAX);
                    self.release();
                    return Ok(match (verdict, end) {
                        (Verdict::Continue, WaitStatus::Exited(c)) => RunEnd::Exited(c),
                        (Verdict::Continue, WaitStatus::Signaled(s)) => RunEnd::Killed(s),
                        _ => RunEnd::Detached,
                    });
                }
                Ok(_) => {}
                Err(errno) => return Err(TraceError::Wait { errno }),
            }
            sleep = if n > 0 {
                POLL_MIN
            } else {
                (sleep * 2).min(POLL_MAX)
            };
            // A full round: more records are likely waiting; only poll the signals.
            let timeout = if n >= slots { Duration::ZERO } else { sleep };
            match sys::wait_signal_for(&signals, timeout) {
                Ok(None | Some(libc::SIGCHLD)) => {}
                Ok(Some(signal)) => {
                    self.release();
                    // Bounded: no new hit is recorded once released.
                    let _ = self.drain(handler, u64::MAX);
                    return Ok(RunEnd::Shutdown { signal });
                }
                Err(errno) => return Err(TraceError::Wait { errno }),
            }
        }
    }

    /// Handles published records, at most `max`; returns how many, and the first verdict that
    /// is not `Continue` (records after it are left unread).
    fn drain(&mut self, handler: &mut dyn StopHandler, max: u64) -> (u64, Verdict) {
        let mut n = 0;
        while n < max {
            let h = self.ring.header();
            let tail = h.tail.load(Relaxed);
            if tail == h.head.load(Acquire) {
                return (n, Verdict::Continue);
            }
            let mut rec = self.ring.record(tail);
            // Copied out before the slot is released (asynchronous records: right below).
            self.ring
                .stack(tail, rec.stack_len as usize, &mut self.stack);
            let sync = rec.flags & layout::REC_SYNC != 0;
            let reads = rec.flags & layout::REC_HWBP_READS != 0;
            let verdict = if sync || reads {
                // The thread waits for this record: read the map while the code is there (or
                // the bytes its handler could not read), handle it, then release the thread.
                if sync {
                    publish_code_ranges(h, self.pid);
                }
                if reads {
                    self.read_bytes(&mut rec);
                }
                let verdict = self.on_record(&rec, sync, handler);
                self.consumed(tail);
                verdict
            } else {
                self.consumed(tail);
                self.on_record(&rec, false, handler)
            };
            n += 1;
            if verdict != Verdict::Continue {
                return (n, verdict);
            }
        }
        (n, Verdict::Continue)
    }

    /// Reads a record's watched bytes from outside the program (its handler was refused).
    fn read_bytes(&self, rec: &mut layout::Record) {
        let Some(w) = self.watches.get(usize::from(rec.watch)) else {
            return;
        };
        let len = (w.spec.region.len_bytes as usize).min(layout::MAX_BYTES);
        if pt::read_memory(Tid(self.pid), w.spec.region.addr, &mut rec.bytes[..len]) == Ok(len) {
            rec.len = len as u32;
            rec.flags &= !layout::REC_UNREADABLE;
        }
    }

    /// Frees slot `tail` and wakes a producer waiting for it.
    fn consumed(&self, tail: u64) {
        let h = self.ring.header();
        h.tail.store(tail.wrapping_add(1), SeqCst);
        if h.producer_waiting.load(SeqCst) != 0 {
            h.producer_waiting.store(0, SeqCst);
            h.space.fetch_add(1, SeqCst);
            sys::futex_wake_all(&h.space);
        }
    }

    fn on_record(
        &mut self,
        rec: &layout::Record,
        new_code: bool,
        handler: &mut dyn StopHandler,
    ) -> Verdict {
        self.hits += 1;
        let wi = usize::from(rec.watch);
        let Some(w) = self.watches.get_mut(wi) else {
            return Verdict::Continue;
        };
        // Unreadable (unmapped meanwhile): keep the shadow, as the tracer does.
        if rec.flags & layout::REC_UNREADABLE == 0 {
            let n = w.scratch.len().min(rec.len as usize);
            w.scratch[..n].copy_from_slice(&rec.bytes[..n]);
        }
        let mut verdict = Verdict::Continue;
        if let Some(Judged {
            old_value,
            new_value,
            condition_error,
        }) = judge(&w.spec, &w.shadow, &w.scratch)
        {
            let regs = self.opts.regs.then_some(Regs { values: rec.regs });
            let ip = (self.opts.ip || self.opts.regs).then_some(rec.regs[layout::RIP]);
            let stack = (self.ring.stack_bytes() > 0).then_some(StackCopy {
                ip: rec.regs[layout::RIP],
                sp: rec.regs[layout::RSP],
                bp: rec.regs[layout::RBP],
                bytes: &self.stack,
            });
            let hit = Hit {
                tid: Tid(rec.tid as i32),
                watch: wi,
                piece: usize::from(rec.piece),
                old: &w.shadow,
                new: &w.scratch,
                old_value,
                new_value,
                condition_error,
                regs,
                ip,
                seq: self.hits,
                new_code,
                time_ns: rec.time_ns,
                comm: Some(rec.comm),
                stack,
            };
            verdict = match handler.hit(&hit) {
                Verdict::Break => Verdict::Detach,
                v => v,
            };
        }
        w.shadow.copy_from_slice(&w.scratch);
        verdict
    }

    /// Closes every watch (no new SIGTRAP) and tells the agent to record nothing more; a
    /// producer waiting for space is woken and drops its hit.
    fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        self.fds.clear();
        let h = self.ring.header();
        h.state.store(layout::STATE_CLOSED, SeqCst);
        h.space.fetch_add(1, SeqCst);
        sys::futex_wake_all(&h.space);
    }
}

/// Publishes the program's executable mappings (every `x` mapping of `/proc/PID/maps`, named
/// or not) as the code hwbp knows; a hit from elsewhere is synchronous. Unreadable maps (the
/// program is gone): nothing changes.
fn publish_code_ranges(h: &layout::Header, pid: i32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    let ranges = text.lines().filter_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        if perms.as_bytes().get(2) != Some(&b'x') {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        Some((
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        ))
    });
    let ranges = fit_ranges(ranges.collect(), layout::MAX_RANGES);
    for (slot, (start, end)) in h.ranges.iter().zip(&ranges) {
        slot[0].store(*start, Relaxed);
        slot[1].store(*end, Relaxed);
    }
    h.nranges.store(ranges.len() as u32, Release);
}

/// At most `max` ranges covering `ranges` (sorted, disjoint): while there are too many, the
/// two neighbours with the smallest gap between them become one. Without this, code past the
/// last slot would be unknown at every hit (each one synchronous, `new_code`, forever); with
/// it, only code mapped later into a merged gap goes unnoticed (asynchronous).
fn fit_ranges(mut ranges: Vec<(u64, u64)>, max: usize) -> Vec<(u64, u64)> {
    while ranges.len() > max.max(1) {
        let Some(i) =
            (1..ranges.len()).min_by_key(|&i| ranges[i].0.saturating_sub(ranges[i - 1].1))
        else {
            break;
        };
        ranges[i - 1].1 = ranges[i].1;
        ranges.remove(i);
    }
    ranges
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether executing `file` would be a secure execution (`AT_SECURE`) for lack of the same
/// real ids: set-user-ID with another owner than our real uid, or set-group-ID (with group
/// execute permission) with another group than our real gid (the kernel's rule, commoncap.c).
fn secure_execution(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let real = |key: &str| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().next()?.parse().ok()
    };
    let setuid = meta.mode() & 0o4000 != 0 && real("Uid:") != Some(meta.uid());
    let setgid = meta.mode() & 0o2010 == 0o2010 && real("Gid:") != Some(meta.gid());
    setuid || setgid
}

#[cfg(test)]
mod tests {
    use super::{fit_ranges, unsuitable, Unsuitable};

    /// An ELF header (64 bytes) with class, machine and `phnum` program headers right after
    /// it, the first of type `p_type`.
    fn elf(class: u8, machine: u16, phnum: u16, p_type: u32) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56 * usize::from(phnum)];
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', class, 1]);
        f[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        if phnum > 0 {
            f[64..68].copy_from_slice(&p_type.to_le_bytes());
        }
        f
    }

    #[test]
    fn static_and_foreign_programs_are_known_before_they_start() {
        let dir = std::env::temp_dir().join(format!("hwbp-agent-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Vec<u8>, Option<Unsuitable>); 6] = [
            ("dynamic", elf(2, 62, 2, 3), None),
            (
                "static",
                elf(2, 62, 2, 1),
                Some(Unsuitable::StaticallyLinked),
            ),
            ("elf32", elf(1, 3, 2, 3), Some(Unsuitable::ForeignMachine)),
            (
                "aarch64",
                elf(2, 183, 2, 3),
                Some(Unsuitable::ForeignMachine),
            ),
            ("script", b"#!/bin/sh\nexit 0\n".to_vec(), None),
            ("truncated", elf(2, 62, 2, 1)[..64].to_vec(), None),
        ];
        for (name, bytes, want) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(unsuitable(&path), want, "{name}");
        }
        assert_eq!(unsuitable(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn too_many_code_ranges_merge_across_the_smallest_gaps() {
        let r = vec![(0, 10), (20, 30), (31, 40), (100, 110), (1000, 1010)];
        assert_eq!(fit_ranges(r.clone(), 5), r);
        assert_eq!(
            fit_ranges(r.clone(), 4),
            vec![(0, 10), (20, 40), (100, 110), (1000, 1010)]
        );
        assert_eq!(
            fit_ranges(r.clone(), 3),
            vec![(0, 40), (100, 110), (1000, 1010)]
        );
        assert_eq!(fit_ranges(r.clone(), 1), vec![(0, 1010)]);
        assert_eq!(fit_ranges(r, 0), vec![(0, 1010)]);
        assert_eq!(fit_ranges(Vec::new(), 2), Vec::new());
    }
}
