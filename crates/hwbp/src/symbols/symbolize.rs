//! Symbolizing hits: a sampled IP to the accessing instruction and `function (file:line)`.
//!
//! x86 data breakpoints are traps: the sampled IP is the instruction *after* the access
//! (Intel SDM Vol. 3B §18.2.4, "data breakpoints ... are reported after the instruction
//! executes"). The accessing instruction is found by decoding forward from the start of the
//! containing function (symbol table) until an instruction ends exactly at the IP; when no
//! function is known (or decoding does not land on the IP) `ip - 1` is used for the lookup,
//! which falls inside the previous instruction, and [`AccessIpMethod`] says which was used.
//!
//! Each module's symbols and addr2line context are loaded once; each IP is symbolized once and
//! then served from a hash map (`Arc<Site>` clones).
//!
//! Not for: unwinding (frame pointers, DWARF CFI) — that is the caller's with framehop or the
//! kernel callchain; return addresses of a callchain are symbolized with [`Symbolizer::frames`].

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::elf::{demangle, DwarfReader, ElfFile};
use super::maps::AddressSpace;

/// Where a data breakpoint's sampled IP points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapIp {
    /// After the accessing instruction (x86 trap semantics).
    AfterAccess,
    /// At the accessing instruction (arm64, powerpc report the faulting instruction).
    AtAccess,
}

impl TrapIp {
    /// The behaviour of the machine we run on.
    pub fn native() -> TrapIp {
        if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            TrapIp::AfterAccess
        } else {
            TrapIp::AtAccess
        }
    }
}

/// How the accessing instruction's address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessIpMethod {
    /// Decoded forward from the containing function's start: exact.
    Decoded,
    /// No function or no exact decode: `ip - 1`, inside the previous instruction.
    PreviousByte,
    /// The IP is the accessing instruction already ([`TrapIp::AtAccess`]).
    Exact,
}

impl fmt::Display for AccessIpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessIpMethod::Decoded => "decoded",
            AccessIpMethod::PreviousByte => "ip-1",
            AccessIpMethod::Exact => "exact",
        })
    }
}

/// The instruction that made an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccessingInstruction {
    /// Its runtime address (for [`AccessIpMethod::PreviousByte`], an address inside it).
    pub ip: u64,
    /// Its length in bytes, when decoded.
    pub len_bytes: Option<u8>,
    /// How it was found.
    pub method: AccessIpMethod,
}

/// One source-level frame; inlined frames come first, the outer function last.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Demangled function name, from DWARF or else the symbol table.
    pub function: Option<String>,
    /// Source file (as DWARF names it, usually absolute).
    pub file: Option<String>,
    /// Line, 1-based.
    pub line: Option<u32>,
    /// Column, if DWARF has it.
    pub column: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.function.as_deref().unwrap_or("??"))?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({file}:{line})"),
            (Some(file), None) => write!(f, " ({file})"),
            _ => Ok(()),
        }
    }
}

/// A symbolized hit site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The sampled IP.
    pub trap_ip: u64,
    /// The accessing instruction.
    pub access: AccessingInstruction,
    /// The module containing it, if any.
    pub module: Option<PathBuf>,
    /// Its link-time address in that module.
    pub link_addr: Option<u64>,
    /// Innermost first; empty when nothing is known.
    pub frames: Vec<Frame>,
}

impl Site {
    /// The innermost frame that is not inside the Rust toolchain's own library sources
    /// (`/rustc/<hash>/library/...`, inlined `core::sync::atomic` and the like): the line a
    /// person wants to see for an access. Falls back to the innermost frame.
    pub fn primary_frame(&self) -> Option<&Frame> {
        self.frames
            .iter()
            .find(|f| !is_toolchain_frame(f))
            .or(self.frames.first())
    }
}

impl Site {
    /// Whether every frame is inside the Rust toolchain's library sources: the access happened
    /// in a non-inlined `core`/`std` function (a debug build's `AtomicI64::fetch_add`), and the
    /// interesting caller is found only in the call stack (symbolize its return addresses).
    pub fn in_toolchain_only(&self) -> bool {
        !self.frames.is_empty() && self.frames.iter().all(is_toolchain_frame)
    }
}

fn is_toolchain_frame(f: &Frame) -> bool {
    f.file
        .as_deref()
        .is_some_and(|p| p.starts_with("/rustc/") || p.contains("/lib/rustlib/src/"))
}

impl fmt::Display for Site {
    /// `f (a.c:3) inlined into g (a.c:10)`, or `0x... (libfoo.so)` when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.frames.is_empty() {
            write!(f, "{:#x}", self.access.ip)?;
            if let Some(m) = &self.module {
                let name = m.file_name().map(|n| n.to_string_lossy());
                write!(f, " ({})", name.unwrap_or_default())?;
            }
            return Ok(());
        }
        for (i, frame) in self.frames.iter().enumerate() {
            if i > 0 {
                f.write_str(" inlined into ")?;
            }
            frame.fmt(f)?;
        }
        Ok(())
    }
}

struct ModuleDebug {
    elf: ElfFile,
    ctx: Option<addr2line::Context<DwarfReader>>,
}

impl ModuleDebug {
    fn load(path: &std::path::Path) -> Option<ModuleDebug> {
        let elf = ElfFile::load(path).ok()?;
        let dwarf_file = if elf.has_dwarf {
            None
        } else {
            elf.separate_debug_file()
                .and_then(|p| ElfFile::load(&p).ok())
        };
        let source = dwarf_file.as_ref().unwrap_or(&elf);
        let ctx = source
            .has_dwarf
            .then(|| source.dwarf().ok())
            .flatten()
            .and_then(|d| addr2line::Context::from_dwarf(d).ok());
        Some(ModuleDebug { elf, ctx })
    }
}

/// Symbolizes IPs of one process; caches per module and per IP.
pub struct Symbolizer {
    space: AddressSpace,
    trap: TrapIp,
    modules: HashMap<PathBuf, Option<ModuleDebug>>,
    sites: HashMap<u64, Arc<Site>>,
}

impl Symbolizer {
    /// A symbolizer for an address space, with the native trap semantics.
    pub fn new(space: AddressSpace) -> Symbolizer {
        Symbolizer::with_trap(space, TrapIp::native())
    }

    /// A symbolizer with explicit trap semantics.
    pub fn with_trap(space: AddressSpace, trap: TrapIp) -> Symbolizer {
        Symbolizer {
            space,
            trap,
            modules: HashMap::new(),
            sites: HashMap::new(),
        }
    }

    /// The address space symbolized.
    pub fn space(&self) -> &AddressSpace {
        &self.space
    }

    /// Replaces the address space (after `dlopen`); keeps per-file caches, drops per-IP ones.
    pub fn set_space(&mut self, space: AddressSpace) {
        self.space = space;
        self.sites.clear();
    }

    fn module_debug(&mut self, runtime: u64) -> Option<(u64, PathBuf, &ModuleDebug)> {
        let module = self.space.module_of(runtime)?;
        let (link, path) = (module.to_link(runtime), module.path.clone());
        let entry = self
            .modules
            .entry(path.clone())
            .or_insert_with(|| ModuleDebug::load(&path));
        entry.as_ref().map(|m| (link, path, m))
    }

    /// The instruction that made the access reported at `trap_ip`.
    pub fn accessing_instruction(&mut self, trap_ip: u64) -> AccessingInstruction {
        if self.trap == TrapIp::AtAccess {
            return AccessingInstruction {
                ip: trap_ip,
                len_bytes: None,
                method: AccessIpMethod::Exact,
            };
        }
        let fallback = AccessingInstruction {
            ip: trap_ip.wrapping_sub(1),
            len_bytes: None,
            method: AccessIpMethod::PreviousByte,
        };
        let Some((link_ip, _, m)) = self.module_debug(trap_ip) else {
            return fallback;
        };
        let bias = trap_ip.wrapping_sub(link_ip);
        match decode_previous(&m.elf, link_ip) {
            Some((ip, len)) => AccessingInstruction {
                ip: ip.wrapping_add(bias),
                len_bytes: Some(len),
                method: AccessIpMethod::Decoded,
            },
            None => fallback,
        }
    }

    /// Source frames (inlined first) for an instruction address.
    pub fn frames(&mut self, runtime_ip: u64) -> Vec<Frame> {
        let Some((link, _, m)) = self.module_debug(runtime_ip) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(ctx) = &m.ctx {
            if let Ok(mut it) = ctx.find_frames(link).skip_all_loads() {
                while let Ok(Some(fr)) = it.next() {
                    let function = fr
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|s| s.into_owned()));
                    let (file, line, column) = match &fr.location {
                        Some(l) => (l.file.map(str::to_string), l.line, l.column),
                        None => (None, None, None),
                    };
                    out.push(Frame {
                        function,
                        file,
                        line,
                        column,
                        inlined: true,
                    });
                }
            }
        }
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        // The outer frame's name: the symbol table's (demangled, so a full Rust path) when
        // DWARF has none or only the last path segment (rustc's line-tables-only DWARF).
        if let Some(sym) = m.elf.function_containing(link) {
            let name = demangle(&sym.name).unwrap_or_else(|| sym.name.clone());
            match out.last_mut() {
                Some(f) => {
                    let better = match &f.function {
                        None => true,
                        Some(d) => name.len() > d.len() && name.ends_with(&format!("::{d}")),
                    };
                    if better {
                        f.function = Some(name);
                    }
                }
                None => out.push(Frame {
                    function: Some(name),
                    file: None,
                    line: None,
                    column: None,
                    inlined: false,
                }),
            }
        }
        out
    }

    /// The accessing instruction and its source frames for a sampled IP; after the first call
    /// for an IP this is one hash lookup.
    pub fn site(&mut self, trap_ip: u64) -> Arc<Site> {
        if let Some(s) = self.sites.get(&trap_ip) {
            return Arc::clone(s);
        }
        let access = self.accessing_instruction(trap_ip);
        let frames = self.frames(access.ip);
        let (module, link_addr) = match self.space.to_link(access.ip) {
            Some((m, l)) => (Some(m.path.clone()), Some(l)),
            None => (None, None),
        };
        let site = Arc::new(Site {
            trap_ip,
            access,
            module,
            link_addr,
            frames,
        });
        self.sites.insert(trap_ip, Arc::clone(&site));
        site
    }

    /// How many IPs are cached.
    pub fn cached_sites(&self) -> usize {
        self.sites.len()
    }
}

/// Decodes the function containing `link_ip - 1` from its start; returns the link-time address
/// and length of the instruction that ends exactly at `link_ip`.
pub fn decode_previous(elf: &ElfFile, link_ip: u64) -> Option<(u64, u8)> {
    let func = elf.function_containing(link_ip.checked_sub(1)?)?;
    let code = elf.bytes_at(func.addr, func.size)?;
    let bitness = if elf.is_64 { 64 } else { 32 };
    let mut decoder =
        iced_x86::Decoder::with_ip(bitness, code, func.addr, iced_x86::DecoderOptions::NONE);
    let mut instr = iced_x86::Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            return None;
        }
        if instr.next_ip() == link_ip {
            return u8::try_from(instr.len()).ok().map(|len| (instr.ip(), len));
        }
        if instr.next_ip() > link_ip {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32, inlined: bool) -> Frame {
        Frame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(line),
            column: None,
            inlined,
        }
    }

    fn site(frames: Vec<Frame>) -> Site {
        Site {
            trap_ip: 0x1008,
            access: AccessingInstruction {
                ip: 0x1000,
                len_bytes: Some(8),
                method: AccessIpMethod::Decoded,
            },
            module: None,
            link_addr: None,
            frames,
        }
    }

    const CORE: &str = "/rustc/0123/library/core/src/sync/atomic.rs";

    #[test]
    fn primary_frame_skips_inlined_toolchain_frames() {
        let s = site(vec![
            frame("atomic_sub", CORE, 3940, true),
            frame("fetch_sub", CORE, 3167, true),
            frame("demo::rogue", "/src/demo.rs", 49, false),
        ]);
        assert_eq!(s.primary_frame().unwrap().line, Some(49));
        assert!(!s.in_toolchain_only());
        assert_eq!(
            s.to_string(),
            format!(
                "atomic_sub ({CORE}:3940) inlined into fetch_sub ({CORE}:3167) inlined into \
                 demo::rogue (/src/demo.rs:49)"
            )
        );
    }

    #[test]
    fn toolchain_only_sites_say_so() {
        let s = site(vec![
            frame("atomic_add", CORE, 3927, true),
            frame(
                "core::sync::atomic::AtomicI64::fetch_add",
                CORE,
                3136,
                false,
            ),
        ]);
        assert!(s.in_toolchain_only());
        assert_eq!(s.primary_frame().unwrap().line, Some(3927));
        assert!(!site(Vec::new()).in_toolchain_only());
        assert_eq!(site(Vec::new()).to_string(), "0x1000");
    }
}
