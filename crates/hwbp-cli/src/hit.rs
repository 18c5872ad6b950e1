//! The hit record as plain data, and the filters that decide which hits are reported
//! (`--tid`, `--changed`, `--limit`).
//!
//! A hit is built by the watch session from one perf sample and the bytes read from the target
//! right after it; this module neither reads memory nor prints.
//!
//! Not for: formatting (see [`crate::report`]) or talking to the kernel.

use std::collections::BTreeSet;
use std::sync::Arc;

use hwbp::symbols::symbolize::{AccessIpMethod, AccessingInstruction, Site};
use hwbp_core::Access;

/// A hit site known only by its sampled IP (no module or no symbols).
pub fn unknown_site(trap_ip: u64) -> Site {
    Site {
        trap_ip,
        access: AccessingInstruction {
            ip: trap_ip,
            len_bytes: None,
            method: AccessIpMethod::Exact,
        },
        module: None,
        link_addr: None,
        frames: Vec::new(),
    }
}

/// One hit, as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Time since the watches were armed, in nanoseconds.
    pub time_ns: u64,
    /// Thread id of the accessing thread.
    pub tid: u32,
    /// Its name (`/proc/PID/task/TID/comm`), if it could be read.
    pub thread: Option<Arc<str>>,
    /// CPU it ran on, if sampled.
    pub cpu: Option<u32>,
    /// Index of the watch (0-based, in `--watch` order).
    pub watch: usize,
    /// The watch's access condition (x86 cannot tell a read from a write of an `rw` watch).
    pub access: Access,
    /// The accessing instruction, symbolized.
    pub site: Arc<Site>,
    /// The watched bytes read right after the sample (non-stop mode: not at the access);
    /// `None` if they could not be read (the process exited).
    pub value: Option<Vec<u8>>,
    /// Whether `value` differs from the previous value seen for this watch (`None`: unknown).
    pub changed: Option<bool>,
    /// Call stack, caller frames after the site, outermost last (with `--backtrace`).
    pub backtrace: Vec<Arc<Site>>,
    /// How `backtrace` was found (`None` without `--backtrace`).
    pub unwind: Option<UnwindMethod>,
}

/// How a hit's call stack was unwound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMethod {
    /// DWARF CFI on the sampled user registers and stack copy.
    Dwarf,
    /// The kernel's frame-pointer callchain (`PERF_SAMPLE_CALLCHAIN`).
    FramePointer,
}

impl UnwindMethod {
    /// The JSON name: `dwarf` or `fp`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnwindMethod::Dwarf => "dwarf",
            UnwindMethod::FramePointer => "fp",
        }
    }
}

/// Which hits are reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Only these threads (empty: all).
    pub tids: BTreeSet<u32>,
    /// Only hits that changed the watched value (gdb's `watch`).
    pub changed_only: bool,
    /// Stop after this many reported hits.
    pub limit: Option<u64>,
}

/// What the filter decided about one hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Report it.
    Report,
    /// Skip it.
    Skip,
    /// Report it; it is the last one (`--limit` reached).
    ReportAndStop,
}

/// The filters with their state: one shadow copy of the value per watch for `--changed`,
/// and the number reported so far for `--limit`.
#[derive(Debug)]
pub struct Filter {
    spec: FilterSpec,
    shadows: Vec<Option<Vec<u8>>>,
    reported: u64,
}

impl Filter {
    /// A filter over `watches` watches whose values at arming time are `initial` (one per
    /// watch; `None` if unreadable).
    pub fn new(spec: FilterSpec, initial: Vec<Option<Vec<u8>>>) -> Filter {
        Filter {
            spec,
            shadows: initial,
            reported: 0,
        }
    }

    /// Hits reported so far.
    pub fn reported(&self) -> u64 {
        self.reported
    }

    /// Whether `--limit` has been reached.
    pub fn done(&self) -> bool {
        self.spec.limit.is_some_and(|n| self.reported >= n)
    }

    /// Sets `hit.changed` against the watch's shadow copy (and updates the shadow), then
    /// decides whether to report it. Every hit must pass through here, reported or not, so
    /// the shadow follows the memory.
    pub fn judge(&mut self, hit: &mut Hit) -> Verdict {
        if let Some(shadow) = self.shadows.get_mut(hit.watch) {
            hit.changed = match (&hit.value, shadow.as_ref()) {
                (Some(now), Some(before)) => Some(now != before),
                _ => None,
            };
            if hit.value.is_some() {
                shadow.clone_from(&hit.value);
            }
        }
        if self.done() {
            return Verdict::Skip;
        }
        if !self.spec.tids.is_empty() && !self.spec.tids.contains(&hit.tid) {
            return Verdict::Skip;
        }
        if self.spec.changed_only && hit.changed != Some(true) {
            return Verdict::Skip;
        }
        self.reported += 1;
        if self.done() {
            Verdict::ReportAndStop
        } else {
            Verdict::Report
        }
    }
}

/// A watched value as an integer, for 1-, 2-, 4- and 8-byte regions (little-endian).
pub fn value_int(bytes: &[u8], signed: bool) -> Option<i128> {
    let mut buf = [0u8; 8];
    let n = bytes.len();
    if !matches!(n, 1 | 2 | 4 | 8) {
        return None;
    }
    buf[..n].copy_from_slice(bytes);
    let u = u64::from_le_bytes(buf);
    if !signed {
        return Some(i128::from(u));
    }
    let shift = 64 - 8 * n as u32;
    Some(i128::from(((u << shift) as i64) >> shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(watch: usize, tid: u32, value: u64) -> Hit {
        Hit {
            time_ns: 0,
            tid,
            thread: None,
            cpu: None,
            watch,
            access: Access::Write,
            site: Arc::new(unknown_site(0x1000)),
            value: Some(value.to_le_bytes().to_vec()),
            changed: None,
            backtrace: Vec::new(),
            unwind: None,
        }
    }

    #[test]
    fn changed_compares_with_the_shadow_per_watch() {
        let spec = FilterSpec {
            changed_only: true,
            ..FilterSpec::default()
        };
        let zero = Some(0u64.to_le_bytes().to_vec());
        let mut f = Filter::new(spec, vec![zero.clone(), zero]);
        // Watch 0: 0 -> 0 (no change), 0 -> 5, 5 -> 5, 5 -> 6. Watch 1: 0 -> 5.
        let seq = [(0, 0), (0, 5), (1, 5), (0, 5), (0, 6)];
        let verdicts: Vec<Verdict> = seq
            .iter()
            .map(|&(w, v)| f.judge(&mut hit(w, 1, v)))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Skip, Report, Report, Skip, Report]);
        assert_eq!(f.reported(), 3);
    }

    #[test]
    fn limit_stops_after_n_and_tid_filters() {
        let spec = FilterSpec {
            tids: [7].into_iter().collect(),
            limit: Some(2),
            ..FilterSpec::default()
        };
        let mut f = Filter::new(spec, vec![None]);
        let mut h = |tid| f.judge(&mut hit(0, tid, 1));
        use Verdict::*;
        assert_eq!(
            [h(1), h(7), h(8), h(7), h(7)],
            [Skip, Report, Skip, ReportAndStop, Skip]
        );
    }

    #[test]
    fn unknown_initial_value_is_not_a_change() {
        let mut f = Filter::new(FilterSpec::default(), vec![None]);
        let mut a = hit(0, 1, 3);
        f.judge(&mut a);
        assert_eq!(a.changed, None);
        let mut b = hit(0, 1, 3);
        f.judge(&mut b);
        assert_eq!(b.changed, Some(false));
    }

    #[test]
    fn integers_of_every_width() {
        assert_eq!(value_int(&[0xff], true), Some(-1));
        assert_eq!(value_int(&[0xff], false), Some(255));
        assert_eq!(value_int(&[0xfe, 0xff], true), Some(-2));
        assert_eq!(value_int(&(-5i32).to_le_bytes(), true), Some(-5));
        assert_eq!(value_int(&(-7i64).to_le_bytes(), true), Some(-7));
        assert_eq!(
            value_int(&u64::MAX.to_le_bytes(), false),
            Some(u64::MAX as i128)
        );
        assert_eq!(value_int(&[1, 2, 3], false), None);
    }
}
