//! Decoding of single perf ring-buffer records from byte slices (safe code only).
//!
//! Not for: finding records in the ring (framing and wrap-around live in `ring.rs`) or for
//! talking to the kernel. Every function here takes untrusted bytes and returns a typed
//! record or a [`RecordError`]; no input panics.
//!
//! Layouts are from `include/uapi/linux/perf_event.h` (comment above `enum perf_event_type`):
//!
//! ```text
//! struct perf_event_header { u32 type; u16 misc; u16 size; }            // 8 bytes
//! PERF_RECORD_LOST (2):       { header; u64 id; u64 lost; sample_id }
//! PERF_RECORD_THROTTLE (5) / UNTHROTTLE (6): { header; u64 time; u64 id; u64 stream_id; sample_id }
//! PERF_RECORD_SAMPLE (9): header, then in this order, each only if its bit is in sample_type:
//!   { u64 id;             } && PERF_SAMPLE_IDENTIFIER   (bit 16)
//!   { u64 ip;             } && PERF_SAMPLE_IP           (bit 0)
//!   { u32 pid, tid;       } && PERF_SAMPLE_TID          (bit 1)
//!   { u64 time;           } && PERF_SAMPLE_TIME         (bit 2)
//!   { u64 addr;           } && PERF_SAMPLE_ADDR         (bit 3)
//!   { u64 id;             } && PERF_SAMPLE_ID           (bit 6)
//!   { u64 stream_id;      } && PERF_SAMPLE_STREAM_ID    (bit 9)
//!   { u32 cpu, res;       } && PERF_SAMPLE_CPU          (bit 7)
//!   { u64 period;         } && PERF_SAMPLE_PERIOD       (bit 8)
//!   { u64 nr; u64 ips[nr];} && PERF_SAMPLE_CALLCHAIN    (bit 5)
//!   { u64 abi; u64 regs[popcount(sample_regs_user)]; } && PERF_SAMPLE_REGS_USER (bit 12)
//!        (regs[] is absent when abi == PERF_SAMPLE_REGS_ABI_NONE, e.g. a kernel thread)
//!   { u64 size; u8 data[size]; u64 dyn_size; } && PERF_SAMPLE_STACK_USER (bit 13)
//!        (data[] and dyn_size are absent when size == 0: perf_output_sample_ustack())
//! ```
//!
//! All values are native-endian; this module decodes little-endian because every target hwbp
//! supports on Linux (x86-64, arm64, ppc64le) is little-endian.

use core::fmt;

/// `PERF_RECORD_LOST`.
pub const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_THROTTLE`.
pub const PERF_RECORD_THROTTLE: u32 = 5;
/// `PERF_RECORD_UNTHROTTLE`.
pub const PERF_RECORD_UNTHROTTLE: u32 = 6;
/// `PERF_RECORD_SAMPLE`.
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// `PERF_SAMPLE_*` bits of `perf_event_attr::sample_type`, under the name sample readers use
/// (defined once, in [`crate::attr::sample`]).
pub use crate::attr::sample as sample_bits;

/// The `PERF_SAMPLE_*` bits this decoder understands; a `sample_type` with any other bit
/// cannot be decoded.
pub const SUPPORTED_SAMPLE_BITS: u64 = {
    use sample_bits as b;
    b::IP
        | b::TID
        | b::TIME
        | b::ADDR
        | b::CALLCHAIN
        | b::ID
        | b::CPU
        | b::PERIOD
        | b::STREAM_ID
        | b::REGS_USER
        | b::STACK_USER
        | b::IDENTIFIER
};

/// How samples in one ring are laid out: the `sample_type` and `sample_regs_user` every event
/// writing into that ring was opened with (events sharing a ring must agree on both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SampleFormat {
    /// `perf_event_attr::sample_type`; only bits in [`SUPPORTED_SAMPLE_BITS`] may be set.
    pub sample_type: u64,
    /// `perf_event_attr::sample_regs_user`; `regs[]` holds `popcount` of it registers.
    pub regs_user_mask: u64,
}

impl SampleFormat {
    /// Whether `bit` (one of [`sample_bits`]) is requested.
    pub fn has(&self, bit: u64) -> bool {
        self.sample_type & bit != 0
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is shorter than its fields say (`need` bytes at offset `at`, `size` in all).
    Truncated {
        /// Record type.
        kind: u32,
        /// Offset of the field that did not fit.
        at: usize,
        /// Bytes that field needs.
        need: usize,
        /// Size of the whole record.
        size: usize,
    },
    /// `sample_type` asks for a field this decoder does not know, so later offsets are unknown.
    UnsupportedSampleType {
        /// The bits outside [`SUPPORTED_SAMPLE_BITS`].
        unsupported_bits: u64,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecordError::Truncated {
                kind,
                at,
                need,
                size,
            } => write!(
                f,
                "perf record type {kind} is truncated: needs {need} bytes at offset {at} but is \
                 {size} bytes long (the ring is corrupt or the sample_type does not match the \
                 events writing into it)"
            ),
            RecordError::UnsupportedSampleType { unsupported_bits } => write!(
                f,
                "sample_type bits {unsupported_bits:#x} are not decoded by hwbp; open the events \
                 with a sample_type within PERF_SAMPLE_IDENTIFIER|IP|TID|TIME|ADDR|ID|CPU|PERIOD|\
                 STREAM_ID|CALLCHAIN|REGS_USER|STACK_USER"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// A run of little-endian `u64`s inside a record (callchain entries, user registers).
///
/// Records are only 8-byte aligned within the ring, and a straddling record is copied to a
/// scratch buffer, so the values are read byte-wise rather than reinterpreted as `&[u64]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct U64s<'a> {
    bytes: &'a [u8],
}

impl<'a> U64s<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() < 8
    }

    /// The `index`th value, if any.
    pub fn get(&self, index: usize) -> Option<u64> {
        let start = index.checked_mul(8)?;
        let end = start.checked_add(8)?;
        self.bytes.get(start..end).map(le_u64)
    }

    /// All values in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.bytes.chunks_exact(8).map(le_u64)
    }
}

impl fmt::Debug for U64s<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// User registers captured with a sample (`PERF_SAMPLE_REGS_USER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRegs<'a> {
    /// `enum perf_sample_regs_abi`: 0 none (no registers follow), 1 = 32-bit, 2 = 64-bit.
    pub abi: u64,
    /// One value per set bit of `sample_regs_user`, lowest bit first.
    pub regs: U64s<'a>,
}

/// Bytes copied from the user stack at the sample (`PERF_SAMPLE_STACK_USER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserStack<'a> {
    /// The valid prefix (`dyn_size` bytes) of the copied stack, starting at the user SP.
    pub data: &'a [u8],
}

/// One `PERF_RECORD_SAMPLE`; a field is `None` when its `PERF_SAMPLE_*` bit was not requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sample<'a> {
    /// The event's id (`PERF_SAMPLE_IDENTIFIER`, else `PERF_SAMPLE_ID`): tells apart events
    /// that share a ring (`PERF_EVENT_IOC_ID` returns the same number).
    pub id: Option<u64>,
    /// Instruction pointer; on x86 a data breakpoint traps after the access, so this is the
    /// instruction *after* the one that touched the memory.
    pub ip: Option<u64>,
    /// Process id (`PERF_SAMPLE_TID`).
    pub pid: Option<u32>,
    /// Thread id (`PERF_SAMPLE_TID`).
    pub tid: Option<u32>,
    /// Time stamp in ns of the event's clock (`PERF_SAMPLE_TIME`).
    pub time: Option<u64>,
    /// For breakpoints: the event's `bp_addr` (`PERF_SAMPLE_ADDR`).
    pub addr: Option<u64>,
    /// `PERF_SAMPLE_STREAM_ID`: the id of the event inherited from (parent), else own id.
    pub stream_id: Option<u64>,
    /// CPU the hit happened on (`PERF_SAMPLE_CPU`).
    pub cpu: Option<u32>,
    /// `PERF_SAMPLE_PERIOD`.
    pub period: Option<u64>,
    /// Return addresses, with `PERF_CONTEXT_*` markers as the kernel writes them.
    pub callchain: Option<U64s<'a>>,
    /// `PERF_SAMPLE_REGS_USER`.
    pub regs_user: Option<UserRegs<'a>>,
    /// `PERF_SAMPLE_STACK_USER`.
    pub stack_user: Option<UserStack<'a>>,
}

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A hit.
    Sample(Sample<'a>),
    /// `lost` samples of event `id` did not fit in the ring (the ring was full).
    Lost {
        /// Id of the event whose samples were dropped.
        id: u64,
        /// How many samples were dropped.
        lost: u64,
    },
    /// The kernel throttled event `id` (not expected for breakpoints with period 1).
    Throttle {
        /// When.
        time: u64,
        /// Event id.
        id: u64,
        /// Event stream id.
        stream_id: u64,
    },
    /// The kernel unthrottled event `id`.
    Unthrottle {
        /// When.
        time: u64,
        /// Event id.
        id: u64,
        /// Event stream id.
        stream_id: u64,
    },
    /// Any other record type, skipped (`misc` and payload kept for the curious).
    Other {
        /// `perf_event_header::type`.
        kind: u32,
        /// `perf_event_header::misc`.
        misc: u16,
        /// The bytes after the header.
        payload: &'a [u8],
    },
}

/// Reads a little-endian u64 from the first 8 bytes (callers pass exactly 8).
fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A bounds-checked cursor over one record.
struct Cursor<'a> {
    rec: &'a [u8],
    at: usize,
    kind: u32,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let err = RecordError::Truncated {
            kind: self.kind,
            at: self.at,
            need: n,
            size: self.rec.len(),
        };
        let end = self.at.checked_add(n).ok_or(err)?;
        let out = self.rec.get(self.at..end).ok_or(err)?;
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        self.take(8).map(le_u64)
    }

    /// Two u32s packed in one u64 slot (`pid, tid` and `cpu, res`).
    fn u32_pair(&mut self) -> Result<(u32, u32), RecordError> {
        let b = self.take(8)?;
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        Ok((lo, hi))
    }

    /// `n` u64s, where `n` came from the record (checked against the remaining length first).
    fn u64s(&mut self, n: u64) -> Result<U64s<'a>, RecordError> {
        let bytes = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .unwrap_or(usize::MAX);
        self.take(bytes).map(|bytes| U64s { bytes })
    }
}

/// The `(type, misc, size)` of a record header, from its first 8 bytes.
pub fn header(bytes: &[u8]) -> Option<(u32, u16, u16)> {
    let b = bytes.get(..8)?;
    Some((
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
    ))
}

/// Decodes one whole record (header included; `rec.len()` is the header's `size`).
pub fn parse<'a>(rec: &'a [u8], fmt: &SampleFormat) -> Result<Record<'a>, RecordError> {
    let Some((kind, misc, _)) = header(rec) else {
        return Err(RecordError::Truncated {
            kind: 0,
            at: 0,
            need: 8,
            size: rec.len(),
        });
    };
    let mut c = Cursor { rec, at: 8, kind };
    match kind {
        PERF_RECORD_SAMPLE => parse_sample(&mut c, fmt).map(Record::Sample),
        PERF_RECORD_LOST => Ok(Record::Lost {
            id: c.u64()?,
            lost: c.u64()?,
        }),
        PERF_RECORD_THROTTLE | PERF_RECORD_UNTHROTTLE => {
            let (time, id, stream_id) = (c.u64()?, c.u64()?, c.u64()?);
            Ok(if kind == PERF_RECORD_THROTTLE {
                Record::Throttle {
                    time,
                    id,
                    stream_id,
                }
            } else {
                Record::Unthrottle {
                    time,
                    id,
                    stream_id,
                }
            })
        }
        _ => Ok(Record::Other {
            kind,
            misc,
            payload: &rec[8..],
        }),
    }
}

fn parse_sample<'a>(c: &mut Cursor<'a>, fmt: &SampleFormat) -> Result<Sample<'a>, RecordError> {
    use sample_bits as b;
    let unsupported_bits = fmt.sample_type & !SUPPORTED_SAMPLE_BITS;
    if unsupported_bits != 0 {
        return Err(RecordError::UnsupportedSampleType { unsupported_bits });
    }
    let mut s = Sample::default();
    if fmt.has(b::IDENTIFIER) {
        s.id = Some(c.u64()?);
    }
    if fmt.has(b::IP) {
        s.ip = Some(c.u64()?);
    }
    if fmt.has(b::TID) {
        let (pid, tid) = c.u32_pair()?;
        s.pid = Some(pid);
        s.tid = Some(tid);
    }
    if fmt.has(b::TIME) {
        s.time = Some(c.u64()?);
    }
    if fmt.has(b::ADDR) {
        s.addr = Some(c.u64()?);
    }
    if fmt.has(b::ID) {
        // Same value as IDENTIFIER when both are present.
        s.id = Some(c.u64()?);
    }
    if fmt.has(b::STREAM_ID) {
        s.stream_id = Some(c.u64()?);
    }
    if fmt.has(b::CPU) {
        s.cpu = Some(c.u32_pair()?.0);
    }
    if fmt.has(b::PERIOD) {
        s.period = Some(c.u64()?);
    }
    if fmt.has(b::CALLCHAIN) {
        let nr = c.u64()?;
        s.callchain = Some(c.u64s(nr)?);
    }
    if fmt.has(b::REGS_USER) {
        let abi = c.u64()?;
        let regs = if abi == 0 {
            U64s { bytes: &[] }
        } else {
            c.u64s(u64::from(fmt.regs_user_mask.count_ones()))?
        };
        s.regs_user = Some(UserRegs { abi, regs });
    }
    if fmt.has(b::STACK_USER) {
        let size = c.u64()?;
        let data = if size == 0 {
            &[][..]
        } else {
            let len = usize::try_from(size).unwrap_or(usize::MAX);
            let data = c.take(len)?;
            let dyn_size = c.u64()?;
            let valid = usize::try_from(dyn_size)
                .unwrap_or(usize::MAX)
                .min(data.len());
            &data[..valid]
        };
        s.stack_user = Some(UserStack { data });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::sample_bits as b;
    use super::*;

    /// Builds a record: header with `kind` and computed size, then the u64 words.
    pub(crate) fn rec(kind: u32, words: &[u64]) -> Vec<u8> {
        let size = 8 + 8 * words.len();
        let mut v = Vec::with_capacity(size);
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(size as u16).to_le_bytes());
        for w in words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    fn pair(lo: u32, hi: u32) -> u64 {
        u64::from(lo) | (u64::from(hi) << 32)
    }

    #[test]
    fn full_sample_in_uapi_order() {
        let fmt = SampleFormat {
            sample_type: b::IDENTIFIER
                | b::IP
                | b::TID
                | b::TIME
                | b::ADDR
                | b::ID
                | b::STREAM_ID
                | b::CPU
                | b::CALLCHAIN
                | b::REGS_USER
                | b::STACK_USER,
            regs_user_mask: 0b1011, // three registers
        };
        let stack = u64::from_le_bytes(*b"ABCDEFGH");
        let words = [
            77,                    // identifier
            0x40_1000,             // ip
            pair(100, 101),        // pid, tid
            123_456,               // time
            0x7000,                // addr
            77,                    // id
            76,                    // stream_id
            pair(1, 0),            // cpu, res
            2,                     // callchain nr
            0xffff_ffff_ffff_fe00, // PERF_CONTEXT_USER
            0x40_2000,
            2,     // abi 64
            10,    // reg 0
            11,    // reg 1
            13,    // reg 3
            16,    // stack size
            stack, // stack data 0..8
            0,     // stack data 8..16
            8,     // dyn_size: only 8 valid
        ];
        let r = rec(PERF_RECORD_SAMPLE, &words);
        let Record::Sample(s) = parse(&r, &fmt).unwrap() else {
            panic!("not a sample")
        };
        assert_eq!(s.id, Some(77));
        assert_eq!(s.ip, Some(0x40_1000));
        assert_eq!((s.pid, s.tid), (Some(100), Some(101)));
        assert_eq!(s.time, Some(123_456));
        assert_eq!(s.addr, Some(0x7000));
        assert_eq!(s.stream_id, Some(76));
        assert_eq!(s.cpu, Some(1));
        assert_eq!(s.period, None);
        let cc: Vec<u64> = s.callchain.unwrap().iter().collect();
        assert_eq!(cc, vec![0xffff_ffff_ffff_fe00, 0x40_2000]);
        let regs = s.regs_user.unwrap();
        assert_eq!(regs.abi, 2);
        assert_eq!(regs.regs.iter().collect::<Vec<_>>(), vec![10, 11, 13]);
        assert_eq!(s.stack_user.unwrap().data, b"ABCDEFGH");
    }

    #[test]
    fn kernel_thread_sample_has_no_regs_and_no_stack() {
        let fmt = SampleFormat {
            sample_type: b::REGS_USER | b::STACK_USER,
            regs_user_mask: 0xff,
        };
        // abi NONE: no regs follow; stack size 0: no data and no dyn_size follow.
        let r = rec(PERF_RECORD_SAMPLE, &[0, 0]);
        let Record::Sample(s) = parse(&r, &fmt).unwrap() else {
            panic!("not a sample")
        };
        assert_eq!(s.regs_user.unwrap().regs.len(), 0);
        assert_eq!(s.stack_user.unwrap().data, b"");
    }

    #[test]
    fn lost_throttle_and_other() {
        let fmt = SampleFormat::default();
        assert_eq!(
            parse(&rec(PERF_RECORD_LOST, &[5, 42, 0]), &fmt),
            Ok(Record::Lost { id: 5, lost: 42 })
        );
        assert_eq!(
            parse(&rec(PERF_RECORD_THROTTLE, &[1, 2, 3]), &fmt),
            Ok(Record::Throttle {
                time: 1,
                id: 2,
                stream_id: 3
            })
        );
        assert_eq!(
            parse(&rec(PERF_RECORD_UNTHROTTLE, &[1, 2, 3]), &fmt),
            Ok(Record::Unthrottle {
                time: 1,
                id: 2,
                stream_id: 3
            })
        );
        let comm = rec(3, &[9]);
        let Record::Other {
            kind: 3, payload, ..
        } = parse(&comm, &fmt).unwrap()
        else {
            panic!("PERF_RECORD_COMM should be Other")
        };
        assert_eq!(payload.len(), 8);
    }

    #[test]
    fn truncated_and_huge_counts_are_errors() {
        let fmt = SampleFormat {
            sample_type: b::IP | b::CALLCHAIN,
            regs_user_mask: 0,
        };
        // callchain nr claims u64::MAX entries.
        let r = rec(PERF_RECORD_SAMPLE, &[1, u64::MAX]);
        assert!(matches!(
            parse(&r, &fmt),
            Err(RecordError::Truncated {
                kind: 9,
                at: 24,
                ..
            })
        ));
        let r = rec(PERF_RECORD_LOST, &[1]);
        assert_eq!(
            parse(&r, &fmt),
            Err(RecordError::Truncated {
                kind: 2,
                at: 16,
                need: 8,
                size: 16
            })
        );
        let fmt = SampleFormat {
            sample_type: 1 << 10,
            regs_user_mask: 0,
        }; // RAW
        assert_eq!(
            parse(&rec(PERF_RECORD_SAMPLE, &[]), &fmt),
            Err(RecordError::UnsupportedSampleType {
                unsupported_bits: 1 << 10
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                                sample_type in proptest::num::u64::ANY,
                                regs_user_mask in proptest::num::u64::ANY) {
            let fmt = SampleFormat { sample_type, regs_user_mask };
            let _ = parse(&bytes, &fmt);
            let fmt = SampleFormat { sample_type: sample_type & SUPPORTED_SAMPLE_BITS, regs_user_mask };
            let _ = parse(&bytes, &fmt);
            // Force the sample path.
            let mut b2 = bytes.clone();
            if b2.len() >= 4 { b2[..4].copy_from_slice(&PERF_RECORD_SAMPLE.to_le_bytes()); }
            let _ = parse(&b2, &fmt);
        }
    }
}
