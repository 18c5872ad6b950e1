//! A background thread that keeps CPU-bound watches armed across CPU hotplug.
//!
//! Linux drops a CPU's perf events when the CPU goes offline and does not restore them when
//! it comes back (`perf_event_exit_cpu()`; measured on 6.18). Every poll interval the monitor
//! calls [`Watch::refresh_polled`]: a returning CPU gets its events again and counts keep
//! summing. A CPU that went offline and came back between two polls is caught by its events'
//! frozen `time_enabled` one poll later. Hits on a returning CPU before the monitor re-arms it
//! are not counted (at most two poll intervals).
//!
//! Streams ([`HotplugMonitor::spawn_streams`]) are refreshed the same way
//! ([`Stream::refresh_polled`]): a returning CPU gets new events and a new ring.
//!
//! Not for: task-bound counting watches (their events follow the thread; nothing to do).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::stream::Stream;
use crate::watch::{Refresh, Watch};

/// What a [`HotplugMonitor`] keeps armed across CPU hotplug: [`Watch`] and [`Stream`].
pub trait Refreshable: Send {
    /// One non-sleeping hotplug refresh ([`Watch::refresh_polled`]).
    fn refresh_polled(&mut self) -> Result<Refresh, Error>;
}

impl Refreshable for Watch {
    fn refresh_polled(&mut self) -> Result<Refresh, Error> {
        Watch::refresh_polled(self)
    }
}

impl Refreshable for Stream {
    fn refresh_polled(&mut self) -> Result<Refresh, Error> {
        Stream::refresh_polled(self)
    }
}

/// Polls CPU hotplug and refreshes the watches it was given. Stops when dropped.
#[derive(Debug)]
pub struct HotplugMonitor {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Number of refreshes that reopened at least one CPU.
    reopen_rounds: AtomicU64,
    last_error: Mutex<Option<Error>>,
}

impl HotplugMonitor {
    /// Starts polling every `poll` for the given watches.
    pub fn spawn(watches: Vec<Arc<Mutex<Watch>>>, poll: Duration) -> HotplugMonitor {
        HotplugMonitor::spawn_any(watches, poll)
    }

    /// Starts polling every `poll` for the given streams (drain them through the mutex).
    pub fn spawn_streams(streams: Vec<Arc<Mutex<Stream>>>, poll: Duration) -> HotplugMonitor {
        HotplugMonitor::spawn_any(streams, poll)
    }

    /// Starts polling every `poll` for anything [`Refreshable`].
    pub fn spawn_any<T: Refreshable + 'static>(
        watches: Vec<Arc<Mutex<T>>>,
        poll: Duration,
    ) -> HotplugMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (stop2, shared2) = (Arc::clone(&stop), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("hwbp-hotplug".into())
            .spawn(move || run(&watches, poll, &stop2, &shared2))
            .ok();
        HotplugMonitor {
            stop,
            shared,
            thread,
        }
    }

    /// How many polls reopened events on at least one CPU so far.
    pub fn reopen_rounds(&self) -> u64 {
        self.shared.reopen_rounds.load(Ordering::Acquire)
    }

    /// The last error a refresh returned (e.g. no free slot on the returning CPU).
    pub fn last_error(&self) -> Option<Error> {
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for HotplugMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<T: Refreshable>(
    watches: &[Arc<Mutex<T>>],
    poll: Duration,
    stop: &AtomicBool,
    shared: &Shared,
) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(poll);
        let mut reopened = false;
        for w in watches {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            match w.refresh_polled() {
                Ok(r) => reopened |= !r.reopened.is_empty(),
                Err(e) => {
                    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        }
        if reopened {
            shared.reopen_rounds.fetch_add(1, Ordering::AcqRel);
        }
    }
}
