//! DWARF CFI unwinding of a sampled user stack (`--backtrace` without frame pointers).
//!
//! A sample taken with `PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER` carries the user
//! registers at the hit and a copy of the top of the user stack (`sample_stack_user` bytes
//! from the user SP). [`Unwinder::unwind`] walks that copy with framehop, using each module's
//! `.eh_frame`/`.eh_frame_hdr` (and `.debug_frame` when the file has one), so functions built
//! without frame pointers (`-fomit-frame-pointer`, Rust release builds) still have callers.
//!
//! Addresses: framehop works on offsets from a module's base. For ELF the stated base is 0
//! (`base_svma`), so the runtime base (`base_avma`) is the module's load bias from
//! [`super::maps`]: `runtime = link-time + bias`.
//!
//! x86-64 only: the registers framehop needs are `ip`, `sp`, `bp`, which are perf's
//! `PERF_REG_X86_IP` (8), `PERF_REG_X86_SP` (7) and `PERF_REG_X86_BP` (6)
//! (`arch/x86/include/uapi/asm/perf_regs.h`). The unwind ends at the first frame whose
//! caller's stack slot is outside the copy, at a frame without unwind info that does not
//! look like a frame-pointer frame, or after `max_frames`.
//!
//! Not for: symbolizing the addresses (see [`super::symbolize::Symbolizer::site`], which takes
//! return addresses as it takes trap IPs: the instruction before them is the call).

use std::ops::Range;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _};
use object::{Object, ObjectSection};

use super::maps::AddressSpace;

/// `sample_regs_user` for [`Unwinder::unwind`]: bp (bit 6), sp (bit 7), ip (bit 8). The
/// sampled values come lowest bit first: `[bp, sp, ip]`.
pub const X86_64_REGS_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);

/// The unwind tables of one process's modules, and framehop's rule cache.
pub struct Unwinder {
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// How many modules have unwind tables.
    modules: usize,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("modules", &self.modules)
            .finish()
    }
}

impl Unwinder {
    /// Reads the unwind sections of every module of `space`; a file that cannot be read or
    /// has no unwind sections is left out (its frames end the unwind).
    pub fn new(space: &AddressSpace) -> Unwinder {
        let mut unwinder = UnwinderX86_64::new();
        let mut modules = 0;
        for m in &space.modules {
            let Some(range) = avma_range(m.mappings.iter().map(|m| m.start..m.end)) else {
                continue;
            };
            let Ok(data) = std::fs::read(&m.path) else {
                continue;
            };
            let Some(info) = section_info(&data) else {
                continue;
            };
            let name = m.path.to_string_lossy().into_owned();
            unwinder.add_module(Module::new(name, range, m.bias, info));
            modules += 1;
        }
        Unwinder {
            unwinder,
            cache: CacheX86_64::new(),
            modules,
        }
    }

    /// How many modules have unwind tables.
    pub fn modules(&self) -> usize {
        self.modules
    }

    /// The return addresses of the callers of the sampled frame, innermost first (the sampled
    /// IP itself is not included). `regs` are the sampled values of [`X86_64_REGS_MASK`]
    /// (`[bp, sp, ip]`); `stack` is the copy of the stack from `sp` up.
    pub fn unwind(&mut self, regs: [u64; 3], stack: &[u8], max_frames: usize) -> Vec<u64> {
        let [bp, sp, ip] = regs;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
            let end = off.checked_add(8).ok_or(())?;
            let bytes = stack.get(off..end).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut frames = Vec::new();
        let mut it = self.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut self.cache,
            &mut read_stack,
        );
        while frames.len() < max_frames {
            match it.next() {
                Ok(Some(FrameAddress::ReturnAddress(ra))) => frames.push(ra.get()),
                Ok(Some(FrameAddress::InstructionPointer(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        frames
    }
}

/// The span of a module's mappings.
fn avma_range(ranges: impl Iterator<Item = Range<u64>>) -> Option<Range<u64>> {
    ranges.fold(None, |acc: Option<Range<u64>>, r| match acc {
        None => Some(r),
        Some(a) => Some(a.start.min(r.start)..a.end.max(r.end)),
    })
}

/// The sections framehop reads, with their link-time ranges; `None` if the file is not an
/// object file or has no unwind table at all.
fn section_info(data: &[u8]) -> Option<ExplicitModuleSectionInfo<Vec<u8>>> {
    let file = object::File::parse(data).ok()?;
    let range = |name: &str| {
        file.section_by_name(name).and_then(|s| {
            let end = s.address().checked_add(s.size())?;
            Some(s.address()..end)
        })
    };
    let bytes = |name: &str| {
        file.section_by_name(name)
            .and_then(|s| s.uncompressed_data().ok())
            .map(|d| d.into_owned())
            .filter(|d| !d.is_empty())
    };
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: range(".text"),
        text: bytes(".text"),
        got_svma: range(".got"),
        eh_frame_svma: range(".eh_frame"),
        eh_frame: bytes(".eh_frame"),
        eh_frame_hdr_svma: range(".eh_frame_hdr"),
        eh_frame_hdr: bytes(".eh_frame_hdr"),
        debug_frame: bytes(".debug_frame"),
        ..Default::default()
    };
    (info.eh_frame.is_some() || info.debug_frame.is_some()).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avma_range_spans_all_mappings() {
        let r = avma_range([0x3000..0x4000, 0x1000..0x2000, 0x5000..0x6000].into_iter());
        assert_eq!(r, Some(0x1000..0x6000));
        assert_eq!(avma_range(std::iter::empty()), None);
    }

    #[test]
    fn unwind_stops_when_stack_is_outside_the_copy() {
        // No modules: framehop falls back to the frame-pointer rule, which reads [bp] and
        // [bp+8]; with bp outside the copy there is no caller.
        let mut u = Unwinder::new(&AddressSpace::default());
        assert_eq!(u.modules(), 0);
        assert_eq!(
            u.unwind([0x9000, 0x1000, 0x4000], &[0u8; 64], 16),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn section_info_of_this_test_binary_has_eh_frame() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(exe).unwrap();
        let info = section_info(&data).expect("unwind tables");
        assert!(info.eh_frame.is_some());
        assert!(info.eh_frame_svma.is_some());
    }
}
