//! Every `unsafe` system call of hwbp (except the ring-buffer `mmap` in `sys/mmap.rs`, the
//! signal handler in `sys/signal.rs` and `clock_gettime` in `sys/clock.rs`). The perf event
//! calls (perf_event_open, the perf ioctls, read) are behind the [`Sys`] trait; helpers that
//! tests and process freezing need (gettid, sched_setaffinity/getcpu, flock, kill) are plain
//! functions.
//!
//! Above this module everything is safe: file descriptors are [`OwnedFd`]/[`BorrowedFd`],
//! processes, threads and CPUs are [`Pid`], [`Tid`] and [`Cpu`], failures are [`Errno`].
//! [`RealSys`] talks to the kernel; tests substitute a fake (see [`crate::fake`]) or wrap
//! [`RealSys`] to inject failures (ENOSPC on the Nth open) without needing the hardware to
//! misbehave.
//!
//! Not for: deciding what to open. Policy (targets, pieces, rollback) lives in [`crate::watch`].

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::attr::PerfEventAttr;

pub mod agent;
/// The memory shared with the in-process agent (crates/hwbp-agent/src/layout.rs).
#[path = "../../../hwbp-agent/src/layout.rs"]
pub mod agent_layout;
pub mod clock;
pub mod launch;
pub mod mmap;
pub mod ptrace;
pub mod signal;

/// A process id (thread-group id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(i32);

/// A thread id (as in `/proc/PID/task/TID`; for the leader, equal to the process id).
///
/// The field is public because stop mode builds ids straight from kernel answers
/// (`waitpid`, `PTRACE_GETEVENTMSG`); [`Tid::new`] is the checked constructor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(pub i32);

/// A logical CPU number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpu(u32);

macro_rules! id_impls {
    ($t:ident, $raw:ty) => {
        impl $t {
            /// The id, if it is a valid (positive or zero for CPUs) value.
            pub const fn new(raw: $raw) -> Option<$t> {
                #[allow(unused_comparisons)]
                if raw < 0 {
                    return None;
                }
                Some($t(raw))
            }
            /// The raw number (for printing and `/proc` paths).
            pub const fn get(self) -> $raw {
                self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
id_impls!(Pid, i32);
id_impls!(Tid, i32);
id_impls!(Cpu, u32);

impl Pid {
    /// This process.
    pub fn current() -> Pid {
        // Linux pids fit in i32 (PID_MAX_LIMIT is 2^22).
        Pid(std::process::id() as i32)
    }
    /// The thread-group leader's thread id (equal to the pid).
    pub const fn leader(self) -> Tid {
        Tid(self.0)
    }
}

impl Tid {
    /// The calling thread.
    pub fn current() -> Tid {
        // SAFETY: gettid(2) has no arguments, cannot fail and touches no memory.
        Tid(unsafe { libc::gettid() })
    }
}

/// An errno value from a failed system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// `ENOSPC`.
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    /// `EINVAL`.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// `EACCES`.
    pub const EACCES: Errno = Errno(libc::EACCES);
    /// `EPERM`.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// `ENOENT`.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// `ENODEV`.
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    /// `EOPNOTSUPP`.
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// `ESRCH`.
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    /// `EBADF`.
    pub const EBADF: Errno = Errno(libc::EBADF);
    /// `EINTR`.
    pub const EINTR: Errno = Errno(libc::EINTR);

    fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The symbolic name (`"ENOSPC"`), or `"errno N"` for one hwbp does not name.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::ENOSPC => "ENOSPC",
            libc::EINVAL => "EINVAL",
            libc::EACCES => "EACCES",
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ENODEV => "ENODEV",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ESRCH => "ESRCH",
            libc::EBADF => "EBADF",
            libc::EINTR => "EINTR",
            libc::EBUSY => "EBUSY",
            libc::EMFILE => "EMFILE",
            libc::ENOMEM => "ENOMEM",
            libc::E2BIG => "E2BIG",
            libc::EFAULT => "EFAULT",
            libc::EIO => "EIO",
            libc::ECHILD => "ECHILD",
            libc::EAGAIN => "EAGAIN",
            _ => "errno",
        }
    }

    /// Displays as `"ESRCH (3)"` (`"errno (N)"` for one hwbp does not name): the form stop
    /// mode's messages use.
    pub fn coded(self) -> Coded {
        Coded(self)
    }
}

/// [`Errno`] shown with its number: see [`Errno::coded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coded(Errno);

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.name(), self.0 .0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "errno" => write!(f, "errno {}", self.0),
            name => f.write_str(name),
        }
    }
}

/// What one perf event is bound to (`pid`/`cpu` of `perf_event_open(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One thread, on whatever CPU it runs (`pid = tid, cpu = -1`).
    Thread(Tid),
    /// Everything on one CPU (`pid = -1, cpu = n`).
    Cpu(Cpu),
    /// One thread, only while it runs on one CPU (`pid = tid, cpu = n`).
    ThreadOnCpu(Tid, Cpu),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Thread(t) => write!(f, "thread {t}"),
            Scope::Cpu(c) => write!(f, "CPU {c}"),
            Scope::ThreadOnCpu(t, c) => write!(f, "thread {t} on CPU {c}"),
        }
    }
}

/// A perf ioctl (`include/uapi/linux/perf_event.h`).
#[derive(Clone, Copy, Debug)]
pub enum Ioctl<'a> {
    /// `PERF_EVENT_IOC_ENABLE` (applies to inherited children too).
    Enable,
    /// `PERF_EVENT_IOC_DISABLE` (the slot stays reserved).
    Disable,
    /// `PERF_EVENT_IOC_RESET`: count to zero.
    Reset,
    /// `PERF_EVENT_IOC_ID`: the event's id (as in `PERF_SAMPLE_ID`).
    Id,
    /// `PERF_EVENT_IOC_SET_OUTPUT`: send records to another event's ring buffer (`None`: stop).
    SetOutput(Option<BorrowedFd<'a>>),
    /// `PERF_EVENT_IOC_MODIFY_ATTRIBUTES` (4.17): new `bp_addr/bp_len/bp_type/disabled`;
    /// every other byte must equal the event's current attr.
    ModifyAttributes(&'a PerfEventAttr),
}

/// `_IO('$', n)`.
const fn io(n: u64) -> u64 {
    (b'$' as u64) << 8 | n
}
/// `_IOW('$', n, 8-byte type)` / `_IOR`: dir<<30 | size<<16 | '$'<<8 | n (dir W=1, R=2).
const fn io_sized(dir: u64, n: u64) -> u64 {
    dir << 30 | 8 << 16 | io(n)
}
const IOC_ENABLE: u64 = io(0);
const IOC_DISABLE: u64 = io(1);
const IOC_RESET: u64 = io(3);
const IOC_SET_OUTPUT: u64 = io(5);
const IOC_ID: u64 = io_sized(2, 7);
const IOC_MODIFY_ATTRIBUTES: u64 = io_sized(1, 11);

/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// The system calls hwbp makes on perf events: the seam tests replace.
pub trait Sys: fmt::Debug + Send + Sync {
    /// `perf_event_open(attr, pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC)`.
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        scope: Scope,
        group: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, Errno>;

    /// A perf ioctl; returns the id for [`Ioctl::Id`], else 0.
    fn ioctl(&self, fd: BorrowedFd<'_>, op: Ioctl<'_>) -> Result<u64, Errno>;

    /// `read(2)` of the event's counter into `buf` (layout per `read_format`); returns the
    /// number of `u64`s read.
    fn read(&self, fd: BorrowedFd<'_>, buf: &mut [u64]) -> Result<usize, Errno>;
}

/// The real kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealSys;

impl Sys for RealSys {
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        scope: Scope,
        group: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, Errno> {
        let (pid, cpu): (libc::pid_t, libc::c_int) = match scope {
            Scope::Thread(t) => (t.0, -1),
            // CPU numbers are below NR_CPUS (<= 8192), so they fit in c_int.
            Scope::Cpu(c) => (-1, c.0 as libc::c_int),
            Scope::ThreadOnCpu(t, c) => (t.0, c.0 as libc::c_int),
        };
        let group_fd = group.map_or(-1, |g| g.as_raw_fd());
        // The kernel may write `size` back (E2BIG, `perf_copy_attr()`): give it our own copy.
        let mut attr = *attr;
        // SAFETY: `attr` is a live, initialised, writable 128-byte perf_event_attr whose `size`
        // says 128; the kernel reads it and at most writes its `size` field. group_fd is -1 or
        // a borrowed live fd; the other arguments are integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &mut attr as *mut PerfEventAttr,
                pid,
                cpu,
                group_fd,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if ret < 0 {
            return Err(Errno::last());
        }
        // fds fit in c_int.
        let fd = ret as libc::c_int;
        // SAFETY: the syscall succeeded, so `fd` is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn ioctl(&self, fd: BorrowedFd<'_>, op: Ioctl<'_>) -> Result<u64, Errno> {
        let raw = fd.as_raw_fd();
        let mut id: u64 = 0;
        // MODIFY_ATTRIBUTES copies the attr like perf_event_open (it may write `size` back).
        let mut new_attr = match op {
            Ioctl::ModifyAttributes(a) => *a,
            _ => PerfEventAttr::default(),
        };
        // SAFETY (all arms): `raw` is a live descriptor borrowed for this call. ENABLE,
        // DISABLE and RESET take an integer flags argument (0 = this event and its inherited
        // children). SET_OUTPUT takes an fd (-1 = none). ID writes one u64 into `id`, which
        // lives until the call returns. MODIFY_ATTRIBUTES reads our writable 128-byte copy
        // `new_attr` (and at most writes its `size`).
        let ret = unsafe {
            match op {
                Ioctl::Enable => libc::ioctl(raw, IOC_ENABLE as _, 0),
                Ioctl::Disable => libc::ioctl(raw, IOC_DISABLE as _, 0),
                Ioctl::Reset => libc::ioctl(raw, IOC_RESET as _, 0),
                Ioctl::SetOutput(to) => {
                    libc::ioctl(raw, IOC_SET_OUTPUT as _, to.map_or(-1, |t| t.as_raw_fd()))
                }
                Ioctl::Id => libc::ioctl(raw, IOC_ID as _, &mut id as *mut u64),
                Ioctl::ModifyAttributes(_) => libc::ioctl(
                    raw,
                    IOC_MODIFY_ATTRIBUTES as _,
                    &mut new_attr as *mut PerfEventAttr,
                ),
            }
        };
        if ret < 0 {
            return Err(Errno::last());
        }
        Ok(id)
    }

    fn read(&self, fd: BorrowedFd<'_>, buf: &mut [u64]) -> Result<usize, Errno> {
        loop {
            // SAFETY: `buf` is a live, writable slice of `size_of_val(buf)` bytes and `fd` a
            // borrowed live descriptor.
            let ret = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(buf),
                )
            };
            if ret < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(e);
            }
            // ret >= 0 and at most the buffer size.
            return Ok(ret as usize / 8);
        }
    }
}

/// Pins the calling thread to one CPU (`sched_setaffinity(0, {cpu})`).
pub fn pin_current_thread(cpu: Cpu) -> Result<(), Errno> {
    // SAFETY: cpu_set_t is plain data for which all-zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu.0 as usize >= libc::CPU_SETSIZE as usize {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the index was checked against CPU_SETSIZE just above.
    unsafe { libc::CPU_SET(cpu.0 as usize, &mut set) };
    // SAFETY: `set` is a live cpu_set_t and the size passed is its size; pid 0 = this thread.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Allows the calling thread to run on every CPU again.
pub fn unpin_current_thread() -> Result<(), Errno> {
    // SAFETY: as in `pin_current_thread`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: c < CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: as in `pin_current_thread`.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The CPU the calling thread runs on right now.
pub fn current_cpu() -> Option<Cpu> {
    // SAFETY: sched_getcpu(3) takes no arguments and touches no memory of ours.
    let ret = unsafe { libc::sched_getcpu() };
    Cpu::new(u32::try_from(ret).ok()?)
}

/// A job-control signal hwbp sends to freeze a process while arming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobSignal {
    /// `SIGSTOP`: every thread stops (group stop); new threads join the stop.
    Stop,
    /// `SIGCONT`: resume.
    Cont,
}

/// `kill(pid, SIGSTOP | SIGCONT)`.
pub fn send_job_signal(pid: Pid, sig: JobSignal) -> Result<(), Errno> {
    let signo = match sig {
        JobSignal::Stop => libc::SIGSTOP,
        JobSignal::Cont => libc::SIGCONT,
    };
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `pid` is a positive
    // process id (never 0 or -1, which would signal groups).
    let ret = unsafe { libc::kill(pid.0, signo) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// How [`lock_file`] locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// `LOCK_SH`: many holders.
    Shared,
    /// `LOCK_EX`: one holder.
    Exclusive,
}

/// `flock(2)`, blocking: used to serialise use of machine-wide resources (CPU-bound
/// breakpoints, CPU hotplug) between processes. Released when the file is closed.
pub fn lock_file(fd: BorrowedFd<'_>, mode: LockMode) -> Result<(), Errno> {
    let op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    loop {
        // SAFETY: flock takes a borrowed live fd and an integer operation; no memory.
        let ret = unsafe { libc::flock(fd.as_raw_fd(), op) };
        if ret == 0 {
            return Ok(());
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_uapi_header() {
        // _IO('$', 0) = 0x2400; _IOR('$', 7, __u64 *) = 0x80082407;
        // _IOW('$', 11, struct perf_event_attr *) = 0x4008240b (a pointer: 8 bytes).
        assert_eq!(IOC_ENABLE, 0x2400);
        assert_eq!(IOC_DISABLE, 0x2401);
        assert_eq!(IOC_RESET, 0x2403);
        assert_eq!(IOC_SET_OUTPUT, 0x2405);
        assert_eq!(IOC_ID, 0x8008_2407);
        assert_eq!(IOC_MODIFY_ATTRIBUTES, 0x4008_240b);
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno::ENOSPC.to_string(), "ENOSPC");
        assert_eq!(Errno(4095).to_string(), "errno 4095");
    }
}
