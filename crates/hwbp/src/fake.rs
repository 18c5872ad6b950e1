//! Test doubles for [`Sys`]: a kernel-less fake and a fault injector around any `Sys`.
//!
//! Not for: production use. Both are safe code: the fake hands out one end of a Unix socket
//! pair as the "event fd" and keeps the other end, which reads EOF once the watch has closed
//! its end — so tests can count live events exactly.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use crate::attr::PerfEventAttr;
use crate::sys::{Errno, Ioctl, Scope, Sys};

/// A failure to inject: the `nth` call (1-based) of a kind fails with `errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which call fails (1 = the first after arming the fault).
    pub nth: u32,
    /// The errno it fails with.
    pub errno: Errno,
}

#[derive(Debug, Default)]
struct State {
    opens: u32,
    modifies: u32,
    fail_open: Option<Fault>,
    fail_modify: Option<Fault>,
    /// Our ends, by the raw fd number of the end handed out.
    peers: Vec<(UnixStream, Scope, PerfEventAttr)>,
    by_fd: BTreeMap<i32, usize>,
    log: Vec<String>,
}

/// A kernel-less [`Sys`]: every open succeeds (unless a fault is armed), counters read 0.
#[derive(Debug, Default)]
pub struct FakeSys {
    state: Mutex<State>,
}

impl FakeSys {
    /// A fresh fake.
    pub fn new() -> FakeSys {
        FakeSys::default()
    }

    /// Makes the `nth` open from now on fail with `errno`.
    pub fn fail_open(&self, nth: u32, errno: Errno) {
        let mut s = self.lock();
        s.opens = 0;
        s.fail_open = Some(Fault { nth, errno });
    }

    /// Makes the `nth` modify from now on fail with `errno`.
    pub fn fail_modify(&self, nth: u32, errno: Errno) {
        let mut s = self.lock();
        s.modifies = 0;
        s.fail_modify = Some(Fault { nth, errno });
    }

    /// Events opened and not yet closed by their owner.
    pub fn live_events(&self) -> usize {
        let s = self.lock();
        s.peers.iter().filter(|(p, _, _)| peer_open(p)).count()
    }

    /// The attrs of the live events, with their scopes.
    pub fn live_attrs(&self) -> Vec<(Scope, PerfEventAttr)> {
        let s = self.lock();
        s.peers
            .iter()
            .filter(|(p, _, _)| peer_open(p))
            .map(|(_, sc, a)| (*sc, *a))
            .collect()
    }

    /// A log of every call, one line each.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn peer_open(p: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    // The other end never writes: WouldBlock = still open, Ok(0) = closed.
    p.set_nonblocking(true).is_ok()
        && matches!((&*p).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn due(count: &mut u32, fault: Option<Fault>) -> Option<Errno> {
    *count += 1;
    fault.filter(|f| f.nth == *count).map(|f| f.errno)
}

impl Sys for FakeSys {
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        scope: Scope,
        _group: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, Errno> {
        let mut s = self.lock();
        let fail = s.fail_open;
        if let Some(errno) = due(&mut s.opens, fail) {
            s.log
                .push(format!("open {scope} {:#x} -> {errno}", attr.bp_addr));
            return Err(errno);
        }
        let (ours, theirs) = UnixStream::pair().map_err(|_| Errno(libc::EMFILE))?;
        let fd = OwnedFd::from(theirs);
        s.log
            .push(format!("open {scope} {:#x} -> ok", attr.bp_addr));
        let idx = s.peers.len();
        s.peers.push((ours, scope, *attr));
        s.by_fd.insert(fd.as_raw_fd(), idx);
        Ok(fd)
    }

    fn ioctl(&self, fd: BorrowedFd<'_>, op: Ioctl<'_>) -> Result<u64, Errno> {
        let mut s = self.lock();
        if let Ioctl::ModifyAttributes(attr) = op {
            let fail = s.fail_modify;
            if let Some(errno) = due(&mut s.modifies, fail) {
                s.log.push(format!("modify {:#x} -> {errno}", attr.bp_addr));
                return Err(errno);
            }
            s.log.push(format!("modify {:#x} -> ok", attr.bp_addr));
            if let Some(&i) = s.by_fd.get(&fd.as_raw_fd()) {
                s.peers[i].2 = *attr;
            }
        }
        Ok(0)
    }

    fn read(&self, _fd: BorrowedFd<'_>, buf: &mut [u64]) -> Result<usize, Errno> {
        buf.iter_mut().for_each(|v| *v = 0);
        Ok(buf.len())
    }
}

/// Wraps a [`Sys`] (usually the real kernel) and injects failures.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    state: Mutex<State>,
}

impl<S: Sys> Faulty<S> {
    /// Wraps `inner` with no fault armed.
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            state: Mutex::default(),
        }
    }

    /// Makes the `nth` open from now on fail with `errno` (the kernel is not called).
    pub fn fail_open(&self, nth: u32, errno: Errno) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.opens = 0;
        s.fail_open = Some(Fault { nth, errno });
    }

    /// Makes the `nth` modify from now on fail with `errno` (the kernel is not called).
    pub fn fail_modify(&self, nth: u32, errno: Errno) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.modifies = 0;
        s.fail_modify = Some(Fault { nth, errno });
    }
}

impl<S: Sys> Sys for Faulty<S> {
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        scope: Scope,
        group: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, Errno> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let fail = s.fail_open;
            if let Some(errno) = due(&mut s.opens, fail) {
                return Err(errno);
            }
        }
        self.inner.perf_event_open(attr, scope, group)
    }

    fn ioctl(&self, fd: BorrowedFd<'_>, op: Ioctl<'_>) -> Result<u64, Errno> {
        if let Ioctl::ModifyAttributes(_) = op {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let fail = s.fail_modify;
            if let Some(errno) = due(&mut s.modifies, fail) {
                return Err(errno);
            }
        }
        self.inner.ioctl(fd, op)
    }

    fn read(&self, fd: BorrowedFd<'_>, buf: &mut [u64]) -> Result<usize, Errno> {
        self.inner.read(fd, buf)
    }
}
