//! Starting a program so that watches are armed before it runs any of its own code.
//!
//! [`spawn_at_entry`] forks, the child asks to be traced (`PTRACE_TRACEME`) and execs; at the
//! exec stop the kernel has mapped the program and the dynamic loader, but the loader has not
//! yet mapped the program's libraries. So the launcher plants a temporary `int3` at the
//! program's entry point (`AT_ENTRY` from `/proc/PID/auxv`), lets the loader run, and stops
//! there: every library is mapped, no code of the program (constructors included — they run
//! from `_start`'s `__libc_start_main`) has run, and the process has exactly one thread. The
//! caller arms its watches (with `inherit`, so threads created later are covered), then
//! [`Stopped::resume`] restores the instruction byte and the IP, detaches and lets it run.
//!
//! Nothing is left behind on failure: a [`Stopped`] that is dropped kills and reaps its child,
//! and the tracee is set up with `PTRACE_O_EXITKILL`, so it dies if hwbp dies while it is
//! stopped. After `resume` the program is an ordinary child, not traced.
//!
//! On other architectures than x86-64 the launcher stops at the exec instead (the libraries
//! are not mapped yet there).
//!
//! Not for: debugging (stop mode lives in the `ptrace` module) or attaching to a running
//! process.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::sys::launch::{self as sys, WaitStatus};
use crate::sys::ptrace as pt;
use crate::sys::{Errno, Pid};

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Why a program could not be started and stopped at its entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaunchError {
    /// The program is not a path and is not found in `PATH`.
    NotFound {
        /// What was asked for.
        program: String,
    },
    /// `execv` failed in the child.
    Exec {
        /// The program.
        program: PathBuf,
        /// Its errno.
        errno: Errno,
    },
    /// A system call of the launcher failed.
    Sys {
        /// Which step.
        what: &'static str,
        /// Its errno.
        errno: Errno,
    },
    /// The program ended before it reached its entry point.
    ExitedEarly {
        /// How.
        status: ExitStatus,
    },
    /// `/proc/PID/auxv` has no `AT_ENTRY`.
    NoEntry,
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::NotFound { program } => {
                write!(f, "cannot run '{program}': not found in PATH")
            }
            LaunchError::Exec { program, errno } => write!(
                f,
                "cannot run '{}': exec failed with {errno} ({})",
                program.display(),
                std::io::Error::from_raw_os_error(errno.0)
            ),
            LaunchError::Sys { what, errno } => write!(
                f,
                "starting the program: {what} failed with {errno}; \
                 is ptrace allowed here (Yama ptrace_scope, seccomp in a container)?"
            ),
            LaunchError::ExitedEarly { status } => {
                write!(f, "the program ended before its entry point ({status})")
            }
            LaunchError::NoEntry => f.write_str("the program's auxv has no AT_ENTRY"),
        }
    }
}

impl std::error::Error for LaunchError {}

fn sys_err(what: &'static str) -> impl Fn(Errno) -> LaunchError {
    move |errno| LaunchError::Sys { what, errno }
}

/// Finds `program` like `execvp` does: as given if it contains a `/`, else in `PATH`.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `AT_ENTRY` of a process (`/proc/PID/auxv`: pairs of native words, type 9 = AT_ENTRY).
pub fn entry_point(pid: Pid) -> Option<u64> {
    const AT_ENTRY: u64 = 9;
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).ok()?;
    auxv.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let val = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_ENTRY).then_some(val)
    })
}

/// A program stopped at its entry point, traced by us. Dropping it kills and reaps it.
#[derive(Debug)]
pub struct Stopped {
    pid: Pid,
    entry: u64,
    /// The original word at `entry` (before the `int3`), if one was planted.
    saved: Option<u64>,
    live: bool,
}

/// Starts `program` with `args` (not including argv\[0\]) and stops it at its entry point.
pub fn spawn_at_entry(program: &OsStr, args: &[OsString]) -> Result<Stopped, LaunchError> {
    spawn_at_entry_with(program, args, &Extra::default())
}

/// What a program gets besides its arguments: environment variables set (or replaced) on top
/// of this process's environment, and descriptors it inherits (their `FD_CLOEXEC` is cleared
/// in the child only).
#[derive(Debug, Default)]
pub struct Extra {
    /// `(NAME, VALUE)` pairs.
    pub env: Vec<(OsString, OsString)>,
    /// Raw descriptors, open in this process for the duration of the call.
    pub inherit: Vec<i32>,
}

/// [`spawn_at_entry`] with an [`Extra`] environment and inherited descriptors.
pub fn spawn_at_entry_with(
    program: &OsStr,
    args: &[OsString],
    extra: &Extra,
) -> Result<Stopped, LaunchError> {
    let path = find_program(program).ok_or_else(|| LaunchError::NotFound {
        program: program.to_string_lossy().into_owned(),
    })?;
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).ok();
    let c_path = cstr(path.as_os_str()).ok_or(LaunchError::Exec {
        program: path.clone(),
        errno: Errno::EINVAL,
    })?;
    let mut argv = vec![cstr(program).ok_or(LaunchError::Exec {
        program: path.clone(),
        errno: Errno::EINVAL,
    })?];
    for a in args {
        argv.push(cstr(a).ok_or(LaunchError::Exec {
            program: path.clone(),
            errno: Errno::EINVAL,
        })?);
    }
    let env = if extra.env.is_empty() {
        None
    } else {
        let replaced = |name: &OsStr| extra.env.iter().any(|(n, _)| n == name);
        let mut env: Vec<CString> = Vec::new();
        let vars = std::env::vars_os().filter(|(n, _)| !replaced(n));
        for (n, v) in vars.chain(extra.env.iter().cloned()) {
            let mut kv = n.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(CString::new(kv).map_err(|_| LaunchError::Exec {
                program: path.clone(),
                errno: Errno::EINVAL,
            })?);
        }
        Some(env)
    };
    let pid =
        sys::spawn_traced(&c_path, &argv, env.as_deref(), &extra.inherit).map_err(|errno| {
            LaunchError::Exec {
                program: path.clone(),
                errno,
            }
        })?;
    let mut stopped = Stopped {
        pid,
        entry: 0,
        saved: None,
        live: true,
    };
    // The exec stop.
    stopped.wait_trap()?;
    pt::set_options(pid.leader(), pt::OPT_EXITKILL).map_err(sys_err("PTRACE_SETOPTIONS"))?;
    stopped.entry = entry_point(pid).ok_or(LaunchError::NoEntry)?;
    stopped.run_to_entry()?;
    Ok(stopped)
}

/// The tracee's instruction pointer (`PTRACE_GETREGS`, x86-64 `rip`).
fn ip(pid: Pid) -> Result<u64, Errno> {
    pt::regs(pid.leader()).map(|r| r.rip)
}

impl Stopped {
    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Its entry point (`AT_ENTRY`).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Waits for the next SIGTRAP stop, passing other signals on.
    fn wait_trap(&mut self) -> Result<(), LaunchError> {
        loop {
            match sys::wait(self.pid, true).map_err(sys_err("waitpid"))? {
                Some(WaitStatus::Stopped(libc::SIGTRAP, _)) => return Ok(()),
                Some(WaitStatus::Stopped(sig, _)) => {
                    pt::cont(self.pid.leader(), sig).map_err(sys_err("PTRACE_CONT"))?
                }
                Some(WaitStatus::Exited(c)) => {
                    self.live = false;
                    return Err(LaunchError::ExitedEarly {
                        status: ExitStatus::Code(c),
                    });
                }
                Some(WaitStatus::Signaled(s)) => {
                    self.live = false;
                    return Err(LaunchError::ExitedEarly {
                        status: ExitStatus::Signal(s),
                    });
                }
                None => {}
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn run_to_entry(&mut self) -> Result<(), LaunchError> {
        let word =
            pt::peek_text(self.pid.leader(), self.entry).map_err(sys_err("PTRACE_PEEKTEXT"))?;
        // int3 = 0xcc in the lowest byte (little-endian: the byte at `entry`).
        pt::poke_text(self.pid.leader(), self.entry, (word & !0xff) | 0xcc)
            .map_err(sys_err("PTRACE_POKETEXT"))?;
        self.saved = Some(word);
        pt::cont(self.pid.leader(), 0).map_err(sys_err("PTRACE_CONT"))?;
        loop {
            self.wait_trap()?;
            // int3 traps with the IP after it.
            let ip = ip(self.pid).map_err(sys_err("PTRACE_GETREGS"))?;
            if ip == self.entry.wrapping_add(1) {
                break;
            }
            // Another SIGTRAP (the program raised one): deliver it.
            pt::cont(self.pid.leader(), libc::SIGTRAP).map_err(sys_err("PTRACE_CONT"))?;
        }
        pt::poke_text(self.pid.leader(), self.entry, word).map_err(sys_err("PTRACE_POKETEXT"))?;
        self.saved = None;
        pt::set_ip(self.pid.leader(), self.entry).map_err(sys_err("PTRACE_SETREGS"))?;
        Ok(())
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn run_to_entry(&mut self) -> Result<(), LaunchError> {
        Ok(())
    }

    /// Detaches: the program runs on, untraced. Returns the handle to wait for it.
    pub fn resume(mut self) -> Result<Child, LaunchError> {
        pt::detach(self.pid.leader(), 0).map_err(sys_err("PTRACE_DETACH"))?;
        self.live = false;
        Ok(Child {
            pid: self.pid,
            status: None,
            traced: false,
            exiting: false,
        })
    }

    /// Detaches and leaves the program stopped (a `SIGSTOP` group stop), untraced, for
    /// another tracer to seize (stop mode: `hwbp::ptrace::Tracer::attach`, then `SIGCONT`).
    /// Nothing of it has run since the entry point. The caller owns the stopped process from
    /// here: it must attach, or kill and reap it.
    pub fn detach_stopped(mut self) -> Result<Pid, LaunchError> {
        pt::detach(self.pid.leader(), libc::SIGSTOP).map_err(sys_err("PTRACE_DETACH"))?;
        self.live = false;
        Ok(self.pid)
    }

    /// Lets the program run, still traced but only to catch its exit: the main thread stops
    /// at `PTRACE_EVENT_EXIT`, before its memory is released, so the caller can read the
    /// watched bytes one last time ([`Child::poll`] reports [`ChildState::Exiting`]). Signals
    /// for the main thread are passed on by [`Child::poll`] (so they wait for its next call);
    /// a job-control stop of the main thread is not kept (it is resumed).
    pub fn resume_until_exit(mut self) -> Result<Child, LaunchError> {
        pt::set_options(
            self.pid.leader(),
            pt::OPT_EXITKILL | pt::OPT_TRACEEXIT | pt::OPT_TRACEEXEC,
        )
        .map_err(sys_err("PTRACE_SETOPTIONS"))?;
        pt::cont(self.pid.leader(), 0).map_err(sys_err("PTRACE_CONT"))?;
        self.live = false;
        Ok(Child {
            pid: self.pid,
            status: None,
            traced: true,
            exiting: false,
        })
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.live {
            let _ = pt::kill(self.pid.get(), libc::SIGKILL);
            let _ = sys::wait(self.pid, true);
        }
    }
}

/// Where a child program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    /// Still running.
    Running,
    /// Stopped at its exit (traced children only): its memory is still readable; the next
    /// [`Child::wait`] lets it finish.
    Exiting,
    /// Gone, with this status.
    Exited(ExitStatus),
}

/// A child program (untraced, or traced only for its exit).
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    status: Option<ExitStatus>,
    traced: bool,
    exiting: bool,
}

impl Child {
    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn record(&mut self, w: Option<WaitStatus>) -> Option<ExitStatus> {
        match w {
            Some(WaitStatus::Exited(c)) => self.status = Some(ExitStatus::Code(c)),
            Some(WaitStatus::Signaled(s)) => self.status = Some(ExitStatus::Signal(s)),
            _ => {}
        }
        self.status
    }

    /// Handles a ptrace stop of a traced child: the exit stop is kept, anything else is
    /// resumed (a signal-delivery-stop with its signal).
    fn on_stop(&mut self, sig: i32, event: i32) -> Result<(), Errno> {
        if event == pt::EVENT_EXIT {
            self.exiting = true;
            return Ok(());
        }
        let pass = if event == 0 && pt::siginfo(self.pid.leader()).is_ok() {
            sig
        } else {
            0
        };
        pt::cont(self.pid.leader(), pass)
    }

    /// Where it is, without blocking (reaps it if it ended).
    pub fn poll(&mut self) -> Result<ChildState, Errno> {
        loop {
            if let Some(s) = self.status {
                return Ok(ChildState::Exited(s));
            }
            if self.exiting {
                return Ok(ChildState::Exiting);
            }
            match sys::wait(self.pid, false)? {
                None => return Ok(ChildState::Running),
                Some(WaitStatus::Stopped(sig, event)) => self.on_stop(sig, event)?,
                w => {
                    self.record(w);
                }
            }
        }
    }

    /// Its exit status if it has ended (reaps it), without blocking; a traced child stopped
    /// at its exit counts as not ended yet.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Errno> {
        match self.poll()? {
            ChildState::Exited(s) => Ok(Some(s)),
            _ => Ok(None),
        }
    }

    /// Waits for it to end (letting a traced child finish its exit).
    pub fn wait(&mut self) -> Result<ExitStatus, Errno> {
        loop {
            if let Some(s) = self.status {
                return Ok(s);
            }
            if self.exiting {
                self.exiting = false;
                // Untraced from here: it finishes exiting on its own.
                if pt::detach(self.pid.leader(), 0).is_err() {
                    pt::cont(self.pid.leader(), 0)?;
                }
                self.traced = false;
            }
            match sys::wait(self.pid, true)? {
                Some(WaitStatus::Stopped(sig, event)) if self.traced => self.on_stop(sig, event)?,
                Some(WaitStatus::Stopped(..)) => {}
                w => {
                    self.record(w);
                }
            }
        }
    }

    /// Sends it `sig` unless it has been reaped already.
    pub fn signal(&self, sig: i32) -> Result<(), Errno> {
        if self.status.is_some() {
            return Ok(());
        }
        pt::kill(self.pid.get(), sig)
    }
}

impl Drop for Child {
    /// A traced child is never left stopped: it is detached (or continued) so it runs on.
    fn drop(&mut self) {
        if self.traced && self.status.is_none() {
            let _ = pt::detach(self.pid.leader(), 0);
        }
    }
}

/// Installs the SIGINT/SIGTERM handler that only records the signal (see
/// [`stop_signal`]); blocking `poll`s return early with `EINTR` when one arrives.
pub fn install_stop_handler() -> Result<(), Errno> {
    sys::install_stop_handler()
}

/// The SIGINT or SIGTERM received since [`install_stop_handler`], if any.
pub fn stop_signal() -> Option<i32> {
    sys::stop_signal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_entry_with_one_thread_then_runs_to_its_exit_code() {
        let args = [OsString::from("-c"), OsString::from("exit 7")];
        let stopped = spawn_at_entry(OsStr::new("sh"), &args).expect("sh starts");
        let pid = stopped.pid();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count();
        assert_eq!(threads, 1);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("State:\tt (tracing stop)"), "{status}");
        // At the entry point, not the exec stop: the loader has mapped libc already.
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(ip(pid), Ok(stopped.entry()));
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
            assert!(maps.contains("libc"), "{maps}");
        }
        let mut child = stopped.resume().unwrap();
        assert_eq!(child.wait(), Ok(ExitStatus::Code(7)));
    }

    #[test]
    fn a_traced_child_stops_at_exit_with_its_memory_readable() {
        let args = [
            OsString::from("-c"),
            OsString::from("kill -USR1 $$; exit 5"),
        ];
        let stopped = spawn_at_entry(OsStr::new("sh"), &args).unwrap();
        let pid = stopped.pid();
        let mut child = stopped.resume_until_exit().unwrap();
        // SIGUSR1 is passed on (and kills sh, whose default action it is), so the exit stop
        // comes after it; the memory is still there at the exit stop.
        let state = loop {
            match child.poll().unwrap() {
                ChildState::Running => std::thread::yield_now(),
                s => break s,
            }
        };
        assert_eq!(state, ChildState::Exiting);
        assert!(std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap()
            .contains("sh"));
        assert_eq!(child.wait(), Ok(ExitStatus::Signal(libc::SIGUSR1)));
    }

    #[test]
    fn missing_program_and_exec_failure_are_errors_with_no_child_left() {
        let e = spawn_at_entry(OsStr::new("no-such-program-hwbp"), &[]).unwrap_err();
        assert_eq!(
            e,
            LaunchError::NotFound {
                program: "no-such-program-hwbp".into()
            }
        );
        let e = spawn_at_entry(OsStr::new("/proc/self/status"), &[]).unwrap_err();
        assert!(
            matches!(e, LaunchError::Exec { errno, .. } if errno == Errno::EACCES),
            "{e:?}"
        );
    }

    #[test]
    fn dropping_a_stopped_program_kills_it() {
        let stopped = spawn_at_entry(OsStr::new("sleep"), &[OsString::from("100")]).unwrap();
        let pid = stopped.pid();
        drop(stopped);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
