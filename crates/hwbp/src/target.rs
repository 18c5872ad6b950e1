//! What a watch applies to: a thread, a whole process, a CPU or every CPU; and reading the
//! thread and CPU lists the kernel publishes.
//!
//! Not for: opening events (see [`crate::watch`]).

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::error::{Error, Op};
use crate::sys::{Cpu, Errno, Pid, Tid};

/// What a watch applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// One thread only (threads it creates are not followed).
    Thread(Tid),
    /// Every thread of a process: those that exist when the watch is armed (one event each)
    /// and every thread created later (`inherit` + `inherit_thread`; forked child processes are
    /// not followed).
    Process(Pid),
    /// Every access on one CPU, by any process (`pid = -1`; needs CAP_PERFMON or paranoid <= 0).
    Cpu(Cpu),
    /// Every access on every online CPU; CPUs that come online later get the watch when
    /// [`crate::Watch::refresh`] runs (or a [`crate::HotplugMonitor`] runs it).
    AllCpus,
}

impl Target {
    /// The calling thread.
    pub fn current_thread() -> Target {
        Target::Thread(Tid::current())
    }

    /// The calling process, all its threads and those it creates later.
    pub fn current_process() -> Target {
        Target::Process(Pid::current())
    }

    /// Whether the events are CPU-bound (no task).
    pub fn is_cpu_bound(&self) -> bool {
        matches!(self, Target::Cpu(_) | Target::AllCpus)
    }
}

/// The threads of `pid` right now (`/proc/PID/task`).
pub fn list_threads(pid: Pid) -> Result<BTreeSet<Tid>, Error> {
    let dir = format!("/proc/{pid}/task");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSuchTask { pid });
        }
        Err(e) => return Err(io_error(Op::ListThreads, &e)),
    };
    let mut tids = BTreeSet::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            // The process exited while we were listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_error(Op::ListThreads, &e)),
        };
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(Tid::new)
        {
            tids.insert(tid);
        }
    }
    if tids.is_empty() {
        return Err(Error::NoSuchTask { pid });
    }
    Ok(tids)
}

/// The CPUs online right now (`/sys/devices/system/cpu/online`).
pub fn online_cpus() -> Result<BTreeSet<Cpu>, Error> {
    cpu_list_file("/sys/devices/system/cpu/online")
}

/// The CPUs that could ever come online (`/sys/devices/system/cpu/possible`).
pub fn possible_cpus() -> Result<BTreeSet<Cpu>, Error> {
    cpu_list_file("/sys/devices/system/cpu/possible")
}

fn cpu_list_file(path: &str) -> Result<BTreeSet<Cpu>, Error> {
    let text = fs::read_to_string(path).map_err(|e| io_error(Op::ListCpus, &e))?;
    parse_cpu_list(&text).ok_or(Error::Sys {
        op: Op::ListCpus,
        at: None,
        errno: Errno::EINVAL,
        cause: crate::error::Cause::Other,
    })
}

/// Parses the kernel's cpulist format (`0-3,5,7-8`; empty for none).
pub fn parse_cpu_list(text: &str) -> Option<BTreeSet<Cpu>> {
    let mut set = BTreeSet::new();
    let text = text.trim();
    if text.is_empty() {
        return Some(set);
    }
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 65_536 {
            return None;
        }
        for c in lo..=hi {
            set.insert(Cpu::new(c)?);
        }
    }
    Some(set)
}

fn io_error(op: Op, e: &std::io::Error) -> Error {
    let errno = Errno(e.raw_os_error().unwrap_or(libc::EIO));
    Error::sys(op, None, errno, &Default::default())
}

/// `TracerPid` of a process (`/proc/PID/status`), if it is being traced.
pub fn tracer_of(pid: Pid) -> Option<Pid> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
    let n: i32 = line["TracerPid:".len()..].trim().parse().ok()?;
    if n == 0 {
        None
    } else {
        Pid::new(n)
    }
}

/// `TracerPid` of one thread (`/proc/PID/task/TID/status`): the tracer's thread id, if the
/// thread is being traced (ptrace attaches per thread).
pub fn tracer_of_thread(pid: Pid, tid: Tid) -> Option<Tid> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
    Tid::new(line["TracerPid:".len()..].trim().parse().ok()?).filter(|t| t.get() != 0)
}

/// The thread-group id of a thread (`Tgid` in `/proc/TID/status`).
pub fn process_of(tid: Tid) -> Option<Pid> {
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Tgid:"))?;
    Pid::new(line["Tgid:".len()..].trim().parse().ok()?)
}

/// How many perf-event fds a process holds (`/proc/PID/fd/* -> anon_inode:[perf_event]`),
/// leaving out the fds in `except` (our own, when the process is us).
pub fn perf_fds_of(pid: Pid, except: &[BorrowedFd<'_>]) -> Option<u32> {
    let except: Vec<i32> = except.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut n = 0;
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for e in dir.flatten() {
        let fd: Option<i32> = e.file_name().to_str().and_then(|s| s.parse().ok());
        if fd.is_some_and(|fd| except.contains(&fd)) {
            continue;
        }
        if fs::read_link(e.path())
            .ok()
            .is_some_and(|l| l.as_os_str() == "anon_inode:[perf_event]")
        {
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let cpus = |s: &str| {
            parse_cpu_list(s).map(|set| set.into_iter().map(Cpu::get).collect::<Vec<_>>())
        };
        assert_eq!(cpus("0-1\n"), Some(vec![0, 1]));
        assert_eq!(cpus("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(cpus(""), Some(vec![]));
        assert_eq!(cpus("3-1"), None);
        assert_eq!(cpus("x"), None);
    }
}

/// The scheduler state letter of a thread (`/proc/PID/task/TID/stat`, field 3): `R`, `S`,
/// `D`, `T` (stopped), `t` (traced), `Z`, ... `None` if it is gone.
pub fn thread_state(pid: Pid, tid: Tid) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": comm may contain spaces and parentheses; the state follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Stops a process (SIGSTOP) so that no thread can be created while it is armed, and resumes
/// it (SIGCONT) when dropped — unless it was already stopped, then it is left as it was.
#[derive(Debug)]
pub struct Freeze {
    pid: Pid,
    resume: bool,
}

impl Freeze {
    /// Stops `pid` and waits until every thread is stopped (or gone). Fails with the
    /// thread that did not stop within ~1 s (stuck in an uninterruptible sleep, or a tracer
    /// intercepted the SIGSTOP); the process is then resumed.
    pub fn stop(pid: Pid) -> Result<Freeze, Error> {
        use crate::sys::{send_job_signal, JobSignal};
        let stopped = |t: &Tid| matches!(thread_state(pid, *t), None | Some('T' | 't' | 'Z' | 'X'));
        if list_threads(pid)?.iter().all(stopped) {
            return Ok(Freeze { pid, resume: false });
        }
        send_job_signal(pid, JobSignal::Stop)
            .map_err(|errno| Error::sys(Op::Freeze, None, errno, &Default::default()))?;
        let freeze = Freeze { pid, resume: true };
        let mut running = None;
        for _ in 0..1000 {
            running = list_threads(pid)?.into_iter().find(|t| !stopped(t));
            if running.is_none() {
                return Ok(freeze);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tid = running.unwrap_or(pid.leader());
        Err(Error::FreezeFailed {
            pid,
            tid,
            state: thread_state(pid, tid).unwrap_or('?'),
        })
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        if self.resume {
            let _ = crate::sys::send_job_signal(self.pid, crate::sys::JobSignal::Cont);
        }
    }
}
