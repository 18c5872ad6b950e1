//! Reading perf ring buffers: framing, wrap-around and loss accounting over a [`RingMemory`].
//!
//! Not for: mapping the ring or talking to the kernel (that is `sys::mmap`, the only unsafe
//! part), nor for deciding which watch a sample belongs to (the delivery layer maps sample ids
//! to watches). Everything here is safe code over byte slices, so the same reader runs on a
//! real mmap'd ring and on [`MemRing`] in tests.
//!
//! The protocol (`include/uapi/linux/perf_event.h`, `struct perf_event_mmap_page`, and
//! `perf_output_put_handle()` in `kernel/events/ring_buffer.c`):
//!
//! ```text
//! page 0: control page. data_head @1024 (kernel writes, release), data_tail @1032 (we write),
//!         data_offset @1040, data_size @1048 (a power of two).
//! data:   records at byte (pos mod data_size); head and tail are free-running u64 counters.
//! reader: head = load_acquire(data_head)       // pairs with the kernel's smp_store_release
//!         read bytes [tail, head)               // stable: the kernel never writes there
//!         store_release(data_tail, head)        // hands the bytes back to the kernel
//! ```
//!
//! Because the ring is mapped writable, the kernel does not overwrite unread data: when the
//! ring is full it drops samples and, at its next successful write, emits `PERF_RECORD_LOST`
//! with how many it dropped. Every such count is added to [`RingStats::lost`]; a lost hit is
//! never silent. Records are 8-byte aligned; one may straddle the end of the data area, in which
//! case it is copied into a scratch buffer (allocated once, 64 KiB: `header.size` is a u16).

pub mod record;

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

pub use crate::sys::mmap::PerfMmap;
use record::{Record, SampleFormat};

/// A reader over a real perf ring mapped from an event fd.
pub type PerfRing = RingReader<PerfMmap>;

impl RingReader<PerfMmap> {
    /// Maps the ring of perf event `fd` (1 control page + `2^data_pages_log2` data pages) and
    /// reads it with `format` (the `sample_type`/`sample_regs_user` the events were opened
    /// with). Other events may then send their records here with `PERF_EVENT_IOC_SET_OUTPUT`.
    pub fn map(
        fd: BorrowedFd<'_>,
        data_pages_log2: u32,
        format: SampleFormat,
    ) -> io::Result<PerfRing> {
        Ok(RingReader::new(PerfMmap::map(fd, data_pages_log2)?, format))
    }
}

/// Waits until one of `fds` (events owning rings) has reached its `wakeup_events`/watermark
/// or hung up, or `timeout` passed (`None`: no limit); returns whether there is something to
/// [`RingReader::drain`].
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<bool> {
    crate::sys::mmap::poll_readable(fds, timeout)
}

/// The ring memory the reader needs: the data area and the two counters.
///
/// Implemented by the real perf mmap (`sys::mmap::PerfMmap`) and by [`MemRing`].
pub trait RingMemory {
    /// Size of the data area in bytes (a power of two).
    fn data_size(&self) -> usize;
    /// `data_head`, loaded with Acquire ordering.
    fn head(&self) -> u64;
    /// `data_tail` as last stored (the kernel never writes it).
    fn tail(&self) -> u64;
    /// Stores `data_tail` with Release ordering: all reads of the consumed bytes happen before.
    fn set_tail(&mut self, tail: u64);
    /// The bytes between `tail` and `head` (`head - tail <= data_size`), in order: the part up
    /// to the end of the data area, then the part wrapped to its start (possibly empty).
    fn readable(&self, tail: u64, head: u64) -> (&[u8], &[u8]);
}

/// Counts of everything the reader saw, summed over all drains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// `PERF_RECORD_SAMPLE`s decoded and delivered.
    pub samples: u64,
    /// Samples the kernel dropped because the ring was full (sum of `PERF_RECORD_LOST.lost`).
    pub lost: u64,
    /// Number of `PERF_RECORD_LOST` records.
    pub lost_records: u64,
    /// `PERF_RECORD_THROTTLE` records.
    pub throttles: u64,
    /// `PERF_RECORD_UNTHROTTLE` records.
    pub unthrottles: u64,
    /// Other record types, skipped.
    pub other: u64,
    /// Records whose frame was sound but whose fields did not decode (skipped).
    pub malformed: u64,
    /// Bytes skipped because framing was broken (a size below 8 or past `head`).
    pub corrupt_bytes: u64,
}

/// Largest possible record: `perf_event_header::size` is a u16.
const MAX_RECORD: usize = u16::MAX as usize;

/// A ring reader: framing, wrap-around, decoding and stats over some [`RingMemory`].
pub struct RingReader<M: RingMemory> {
    mem: M,
    format: SampleFormat,
    tail: u64,
    scratch: Vec<u8>,
    stats: RingStats,
}

impl<M: RingMemory> RingReader<M> {
    /// A reader that starts at the ring's current tail.
    pub fn new(mem: M, format: SampleFormat) -> Self {
        let tail = mem.tail();
        RingReader {
            mem,
            format,
            tail,
            scratch: Vec::with_capacity(MAX_RECORD),
            stats: RingStats::default(),
        }
    }

    /// Totals so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// The sample layout records are decoded with.
    pub fn format(&self) -> SampleFormat {
        self.format
    }

    /// The underlying memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Mutable access to the underlying memory (tests write records into a [`MemRing`]).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Bytes written by the kernel and not yet consumed.
    pub fn pending_bytes(&self) -> u64 {
        self.mem.head().wrapping_sub(self.tail)
    }

    /// Decodes every complete record now in the ring, calls `f` on each (samples, lost,
    /// throttle and other records alike), then hands the space back to the kernel.
    /// Returns the number of records passed to `f`. Does not allocate.
    pub fn drain<F: FnMut(Record<'_>)>(&mut self, mut f: F) -> usize {
        let head = self.mem.head();
        let avail = head.wrapping_sub(self.tail);
        let mut delivered = 0;
        if avail > self.mem.data_size() as u64 {
            // Impossible for a writable (non-overwrite) ring; resynchronise rather than read
            // bytes the kernel may be writing.
            self.stats.corrupt_bytes = self.stats.corrupt_bytes.saturating_add(avail);
        } else if avail > 0 {
            let (a, b) = self.mem.readable(self.tail, head);
            delivered = walk(
                a,
                b,
                &self.format,
                &mut self.scratch,
                &mut self.stats,
                &mut f,
            );
        }
        self.tail = head;
        self.mem.set_tail(head);
        delivered
    }
}

impl<M: RingMemory> RingReader<M> {
    /// A copy of the unread records in ordinary memory, with the stats so far: the real ring
    /// can then be unmapped (and its event freed) while its records stay readable.
    pub fn to_mem_ring(&self) -> RingReader<MemRing> {
        let head = self.mem.head();
        let (a, b) = self.mem.readable(self.tail, head);
        let mut mem = MemRing::new(a.len() + b.len(), self.tail);
        // Both fit: the ring is at least as large as the bytes.
        mem.write(a);
        mem.write(b);
        RingReader {
            mem,
            format: self.format,
            tail: self.tail,
            scratch: Vec::with_capacity(MAX_RECORD),
            stats: self.stats,
        }
    }
}

impl RingStats {
    /// Adds every counter of `other`.
    pub fn add(&mut self, other: &RingStats) {
        self.samples += other.samples;
        self.lost += other.lost;
        self.lost_records += other.lost_records;
        self.throttles += other.throttles;
        self.unthrottles += other.unthrottles;
        self.other += other.other;
        self.malformed += other.malformed;
        self.corrupt_bytes += other.corrupt_bytes;
    }
}

/// Walks the records in `a ++ b` (the readable bytes in order).
fn walk<F: FnMut(Record<'_>)>(
    a: &[u8],
    b: &[u8],
    format: &SampleFormat,
    scratch: &mut Vec<u8>,
    stats: &mut RingStats,
    f: &mut F,
) -> usize {
    let total = a.len() + b.len();
    let mut at = 0usize;
    let mut delivered = 0usize;
    while at < total {
        let left = total - at;
        let size = if left < 8 {
            0
        } else {
            let mut h = [0u8; 8];
            copy_out(a, b, at, &mut h);
            usize::from(u16::from_le_bytes([h[6], h[7]]))
        };
        if size < 8 || size > left {
            stats.corrupt_bytes = stats.corrupt_bytes.saturating_add(left as u64);
            break;
        }
        let rec: &[u8] = if at + size <= a.len() {
            &a[at..at + size]
        } else if at >= a.len() {
            &b[at - a.len()..at - a.len() + size]
        } else {
            // Straddles the end of the data area: copy both halves into the scratch buffer.
            scratch.clear();
            scratch.extend_from_slice(&a[at..]);
            scratch.extend_from_slice(&b[..size - (a.len() - at)]);
            &scratch[..]
        };
        match record::parse(rec, format) {
            Ok(r) => {
                match r {
                    Record::Sample(_) => stats.samples += 1,
                    Record::Lost { lost, .. } => {
                        stats.lost = stats.lost.saturating_add(lost);
                        stats.lost_records += 1;
                    }
                    Record::Throttle { .. } => stats.throttles += 1,
                    Record::Unthrottle { .. } => stats.unthrottles += 1,
                    Record::Other { .. } => stats.other += 1,
                }
                delivered += 1;
                f(r);
            }
            Err(_) => stats.malformed += 1,
        }
        at += size;
    }
    delivered
}

/// Copies `out.len()` bytes starting at logical offset `at` of `a ++ b`.
fn copy_out(a: &[u8], b: &[u8], at: usize, out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate() {
        let p = at + i;
        *o = if p < a.len() { a[p] } else { b[p - a.len()] };
    }
}

/// A ring in ordinary memory with the kernel's writer rules, for tests and replay.
#[derive(Clone, Debug)]
pub struct MemRing {
    data: Vec<u8>,
    head: u64,
    tail: u64,
    dropped: u64,
}

impl MemRing {
    /// An empty ring of `data_size` bytes (rounded up to a power of two, at least 8) whose
    /// counters start at `start` (to put the first record anywhere, as after a long run).
    pub fn new(data_size: usize, start: u64) -> Self {
        let size = data_size.max(8).next_power_of_two();
        MemRing {
            data: vec![0; size],
            head: start,
            tail: start,
            dropped: 0,
        }
    }

    /// Writes `rec` like the kernel: at `head` modulo the size, wrapping, only if it fits
    /// before `tail + size`. Returns whether it was written.
    pub fn write(&mut self, rec: &[u8]) -> bool {
        let size = self.data.len() as u64;
        let used = self.head.wrapping_sub(self.tail);
        if used + rec.len() as u64 > size {
            self.dropped += 1;
            return false;
        }
        for (i, byte) in rec.iter().enumerate() {
            let pos = (self.head.wrapping_add(i as u64) % size) as usize;
            self.data[pos] = *byte;
        }
        self.head = self.head.wrapping_add(rec.len() as u64);
        true
    }

    /// Records refused by [`MemRing::write`] because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl RingMemory for MemRing {
    fn data_size(&self) -> usize {
        self.data.len()
    }
    fn head(&self) -> u64 {
        self.head
    }
    fn tail(&self) -> u64 {
        self.tail
    }
    fn set_tail(&mut self, tail: u64) {
        self.tail = tail;
    }
    fn readable(&self, tail: u64, head: u64) -> (&[u8], &[u8]) {
        split_readable(&self.data, tail, head)
    }
}

/// Splits `[tail, head)` of a power-of-two `data` area into its unwrapped and wrapped parts.
/// Also used by the real mmap. `head - tail` must not exceed `data.len()`.
pub fn split_readable(data: &[u8], tail: u64, head: u64) -> (&[u8], &[u8]) {
    let size = data.len();
    if size == 0 {
        return (&[], &[]);
    }
    let len = (head.wrapping_sub(tail) as usize).min(size);
    let start = (tail % size as u64) as usize;
    let first = len.min(size - start);
    (&data[start..start + first], &data[..len - first])
}

#[cfg(test)]
mod tests {
    use super::record::{sample_bits as b, Sample, PERF_RECORD_LOST, PERF_RECORD_SAMPLE};
    use super::*;
    use proptest::prelude::*;

    fn rec(kind: u32, words: &[u64]) -> Vec<u8> {
        let size = 8 + 8 * words.len();
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(size as u16).to_le_bytes());
        for w in words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    const FMT: SampleFormat = SampleFormat {
        sample_type: b::IDENTIFIER | b::IP | b::TID | b::CALLCHAIN,
        regs_user_mask: 0,
    };

    /// A sample whose callchain length varies so records have different sizes.
    fn sample(i: u64) -> Vec<u8> {
        let nr = i % 5;
        let mut w = vec![i, 0x1000 + i, (i << 32) | 7, nr];
        w.extend((0..nr).map(|k| 0xc0de_0000 + k));
        rec(PERF_RECORD_SAMPLE, &w)
    }

    /// (id, ip, callchain) of every sample, plus the stats.
    type Seen = (Vec<(u64, u64, Vec<u64>)>, RingStats);

    fn drain_all(r: &mut RingReader<MemRing>) -> Seen {
        let mut seen = Vec::new();
        r.drain(|rec| {
            if let Record::Sample(Sample {
                id: Some(id),
                ip: Some(ip),
                callchain,
                ..
            }) = rec
            {
                seen.push((
                    id,
                    ip,
                    callchain.map(|c| c.iter().collect()).unwrap_or_default(),
                ));
            }
        });
        (seen, r.stats())
    }

    #[test]
    fn lost_records_are_counted() {
        let mut r = RingReader::new(MemRing::new(256, 0), FMT);
        r.memory_mut().write(&sample(1));
        r.memory_mut().write(&rec(PERF_RECORD_LOST, &[9, 17]));
        r.memory_mut().write(&rec(PERF_RECORD_LOST, &[9, 3]));
        r.memory_mut().write(&rec(3, &[0, 0])); // PERF_RECORD_COMM: skipped
        let (seen, stats) = drain_all(&mut r);
        assert_eq!(seen.len(), 1);
        assert_eq!(stats.lost, 20);
        assert_eq!(stats.lost_records, 2);
        assert_eq!(stats.other, 1);
        assert_eq!(r.memory().tail(), r.memory().head());
    }

    #[test]
    fn zero_size_header_does_not_loop() {
        let mut r = RingReader::new(MemRing::new(64, 0), FMT);
        r.memory_mut().write(&[0u8; 16]);
        let (seen, stats) = drain_all(&mut r);
        assert!(seen.is_empty());
        assert_eq!(stats.corrupt_bytes, 16);
    }

    #[test]
    fn full_ring_refuses_like_the_kernel() {
        let mut ring = MemRing::new(64, 0);
        let r40 = rec(PERF_RECORD_SAMPLE, &[0; 4]); // 40 bytes
        assert!(ring.write(&r40));
        assert!(!ring.write(&r40));
        assert_eq!(ring.dropped(), 1);
    }

    proptest! {
        /// The same records come out whatever offset the ring starts at, i.e. whichever record
        /// straddles the end and wherever the split falls (header included).
        #[test]
        fn wraparound_at_every_offset_is_transparent(start in 0u64..512, n in 1u64..12,
                                                     high in proptest::bool::ANY) {
            let start = if high { (u64::MAX - 300).wrapping_add(start) } else { start };
            let mut reference = RingReader::new(MemRing::new(4096, 0), FMT);
            let mut ring = RingReader::new(MemRing::new(256, start), FMT);
            let mut got = Vec::new();
            for i in 0..n {
                prop_assert!(reference.memory_mut().write(&sample(i)));
                prop_assert!(ring.memory_mut().write(&sample(i)));
                // Drain every other record so the tail moves through the ring too.
                if i % 2 == 1 {
                    got.extend(drain_all(&mut ring).0);
                }
            }
            got.extend(drain_all(&mut ring).0);
            let (want, _) = drain_all(&mut reference);
            prop_assert_eq!(want.len() as u64, n);
            prop_assert_eq!(got, want);
            prop_assert_eq!(ring.stats().corrupt_bytes, 0);
        }

        /// Arbitrary bytes in the ring, at any offset, with any sample layout: no panic, and
        /// the reader always consumes everything.
        #[test]
        fn garbage_in_the_ring_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                            start in any::<u64>(),
                                            sample_type in any::<u64>()) {
            let fmt = SampleFormat { sample_type, regs_user_mask: sample_type.rotate_left(7) };
            let mut r = RingReader::new(MemRing::new(256, start), fmt);
            for chunk in bytes.chunks(40) {
                r.memory_mut().write(chunk);
            }
            let delivered = r.drain(|_| {});
            let s = r.stats();
            prop_assert!(delivered as u64 <= s.samples + s.lost_records + s.throttles
                         + s.unthrottles + s.other);
            prop_assert_eq!(r.pending_bytes(), 0);
        }
    }

    #[test]
    fn every_offset_exhaustive() {
        let records: Vec<Vec<u8>> = (0..6).map(sample).collect();
        let want: Vec<u64> = (0..6).collect();
        // 320 bytes of records in a 512-byte ring: every start offset, so every record
        // (and every header byte) straddles the end in some iteration.
        for start in 0..512u64 {
            let mut r = RingReader::new(MemRing::new(512, start), FMT);
            for x in &records {
                assert!(r.memory_mut().write(x));
            }
            let ids: Vec<u64> = drain_all(&mut r).0.into_iter().map(|s| s.0).collect();
            assert_eq!(ids, want, "start offset {start}");
        }
    }

    #[test]
    fn a_copied_ring_delivers_exactly_the_unread_records() {
        // Counters start near the end so the unread records wrap around the data area.
        let mut r = RingReader::new(MemRing::new(256, 200), FMT);
        for i in 0..3 {
            assert!(r.memory_mut().write(&sample(i)));
        }
        let (first, _) = drain_all(&mut r);
        assert_eq!(first.len(), 3);
        for i in 3..7 {
            assert!(r.memory_mut().write(&sample(i)));
        }
        let mut copy = r.to_mem_ring();
        let (from_copy, stats) = drain_all(&mut copy);
        let (from_ring, _) = drain_all(&mut r);
        assert_eq!(from_copy, from_ring);
        assert_eq!(
            from_copy.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        // The copy carries the stats of what the original had read before it.
        assert_eq!(stats.samples, 7);
    }
}
