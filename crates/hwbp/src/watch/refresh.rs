//! CPU hotplug for watches: finding the CPUs whose events are dead or missing, retiring dead
//! events (counts kept) and opening the watch on a CPU that came (back) online.
//!
//! Split in steps so that stream delivery ([`crate::Stream::refresh`]) can unmap a dead CPU's
//! ring between retiring its events and reopening them (the mapping holds the owner event, and
//! with it its slot). Not for: polling in the background ([`crate::HotplugMonitor`]).

use std::collections::BTreeSet;
use std::os::fd::AsFd;

use super::{Liveness, Refresh, Watch};
use crate::error::{Error, Op};
use crate::sys::{Cpu, Ioctl, Scope};
use crate::target::{self, Target};

impl Watch {
    /// Brings the watch up to date with CPU hotplug: a CPU that came (back) online gets its
    /// events (re)opened, with the old events' counts kept.
    ///
    /// CPU-bound targets: Linux removes a CPU's events from the CPU when it goes offline and
    /// does not bring them back when it returns (measured on 6.18; `perf_event_exit_cpu()`);
    /// the dead event still holds its slot until closed. A dead event is recognised by its CPU
    /// being offline, or (while the watch is enabled) by its `time_enabled` no longer
    /// advancing over ~11 ms. Counting task targets need nothing: their events follow the
    /// thread to whatever CPU it runs on. Sampling process watches (one event per thread per
    /// CPU, see [`crate::Stream`]) keep their events across hotplug (they live in the task's
    /// context), but a CPU that was offline when they were armed gets its events here.
    pub fn refresh(&mut self) -> Result<Refresh, Error> {
        self.refresh_by(Liveness::Wait)
    }

    /// [`Watch::refresh`] for periodic callers (the [`crate::HotplugMonitor`]): never sleeps.
    /// An event is dead if its `time_enabled` did not move since the previous call, so a CPU
    /// that went offline and came back between two calls is re-armed at the second call
    /// after it returned.
    pub fn refresh_polled(&mut self) -> Result<Refresh, Error> {
        self.refresh_by(Liveness::SinceLastPoll)
    }

    fn refresh_by(&mut self, how: Liveness) -> Result<Refresh, Error> {
        let mut report = self.plan_refresh(how)?;
        let mut first_err = None;
        for cpu in std::mem::take(&mut report.reopened) {
            self.retire_cpu(cpu);
            match self.open_cpu(cpu, false) {
                Ok(_) => report.reopened.push(cpu),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(report), Err)
    }

    /// Which CPUs need their events (re)opened (`reopened`: online, and dead or missing) and
    /// which targeted CPUs are offline. Changes nothing but the liveness bookkeeping.
    pub(crate) fn plan_refresh(&mut self, how: Liveness) -> Result<Refresh, Error> {
        let mut report = Refresh::default();
        let online = target::online_cpus()?;
        match self.target {
            Target::Cpu(_) | Target::AllCpus => {}
            Target::Process(_) if self.template.sample_type != 0 => {
                // Per-(thread, CPU) events survive hotplug; only CPUs never armed need work.
                let armed: BTreeSet<Cpu> = self
                    .events
                    .iter()
                    .filter_map(|e| match e.scope {
                        Scope::ThreadOnCpu(_, c) => Some(c),
                        _ => None,
                    })
                    .collect();
                report.reopened = online.difference(&armed).copied().collect();
                return Ok(report);
            }
            _ => return Ok(report),
        }
        let wanted: BTreeSet<Cpu> = match self.target {
            Target::Cpu(c) => [c].into_iter().collect(),
            _ => target::possible_cpus()?,
        };
        for cpu in wanted {
            let first = self.events.iter().position(|e| e.scope == Scope::Cpu(cpu));
            if !online.contains(&cpu) {
                if first.is_some() || matches!(self.target, Target::Cpu(_)) {
                    report.offline.push(cpu);
                }
                continue;
            }
            let alive = match first {
                Some(i) => self.cpu_events_alive(i, how)?,
                None => false,
            };
            if !alive {
                report.reopened.push(cpu);
            }
        }
        Ok(report)
    }

    /// Closes the CPU-bound events on `cpu`, keeping their counts (their slots are freed once
    /// nothing else, such as a ring mapping, holds them).
    pub(crate) fn retire_cpu(&mut self, cpu: Cpu) {
        let mut kept = Vec::with_capacity(self.events.len());
        for e in std::mem::take(&mut self.events) {
            if e.scope == Scope::Cpu(cpu) {
                self.retired = self
                    .retired
                    .saturating_add(self.read_event(&e).map_or(0, |r| r.0));
            } else {
                kept.push(e);
            }
        }
        self.events = kept;
    }

    /// Opens every piece on `cpu` (CPU targets) or on every thread for `cpu` (sampling
    /// process watches), appending the events; returns the index of the first new one.
    /// `start_disabled`: open them disabled whatever the watch's state (a stream maps their
    /// ring first, then [`Watch::enable_from`]).
    pub(crate) fn open_cpu(&mut self, cpu: Cpu, start_disabled: bool) -> Result<usize, Error> {
        let was = self.enabled;
        if start_disabled {
            self.enabled = false;
        }
        let all: Vec<u32> = (0..self.piece_count()).collect();
        let opened = match self.target {
            Target::Process(p) => {
                let how = self.process_arming();
                self.open_on_process(p, &all, how, Some(cpu))
                    .map(|(v, _)| v)
            }
            _ => {
                let mut fresh = Vec::new();
                self.open_on(Scope::Cpu(cpu), &all, &mut fresh)
                    .map(|()| fresh)
            }
        };
        self.enabled = was;
        let start = self.events.len();
        self.events.extend(opened?);
        Ok(start)
    }

    /// Enables the events from index `start` on if the watch is enabled (after
    /// [`Watch::open_cpu`] with `start_disabled`).
    pub(crate) fn enable_from(&mut self, start: usize) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        for i in start..self.events.len() {
            let e = &self.events[i];
            if let Err(errno) = self.sys.ioctl(e.fd.as_fd(), Ioctl::Enable) {
                return Err(self.err(Op::Enable, e.scope, e.piece, errno, None));
            }
            self.events[i]
                .attr
                .set_flag(crate::attr::Flag::Disabled, false);
        }
        Ok(())
    }

    /// Whether the events on one online CPU still count, judged by the first of them (the
    /// kernel drops all of a CPU's events together). Only checkable while enabled:
    /// `time_enabled` advances (in nanoseconds) for a live enabled event and is frozen for one
    /// the kernel removed at CPU offline — measured on 6.18, where even
    /// `PERF_EVENT_IOC_ENABLE` does not revive it.
    fn cpu_events_alive(&mut self, i: usize, how: Liveness) -> Result<bool, Error> {
        if !self.enabled {
            self.events[i].polled_enabled_ns = None;
            return Ok(true);
        }
        let first = self.read_event(&self.events[i])?.1;
        match how {
            Liveness::SinceLastPoll => {
                let last = self.events[i].polled_enabled_ns.replace(first);
                Ok(last != Some(first))
            }
            Liveness::Wait => {
                for wait_us in [100, 1_000, 10_000] {
                    std::thread::sleep(std::time::Duration::from_micros(wait_us));
                    if self.read_event(&self.events[i])?.1 != first {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}
