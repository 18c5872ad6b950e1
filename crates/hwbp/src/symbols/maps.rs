//! A process's address space: `/proc/PID/maps` parsed into mappings and modules.
//!
//! A *module* is one mapped ELF file (the main binary, `ld.so`, each shared library) with the
//! load bias the dynamic loader (or the kernel, for PIE executables) chose for it:
//!
//! `runtime address = link-time address (ELF p_vaddr / st_value / DW_AT_location) + bias`
//!
//! The bias of a mapping with file offset `off` at runtime address `start`, inside the `PT_LOAD`
//! segment `(p_offset, p_vaddr)` that holds `off`, is `start - (p_vaddr - p_offset + off)`
//! (ELF gABI "Program Loading": `p_vaddr ≡ p_offset (mod p_align)`). A non-PIE executable has
//! bias 0.
//!
//! Not for: reading ELF contents (see `elf`), nor tracking mappings that change after the scan
//! (`dlopen`); take a new [`AddressSpace`] (or feed `PERF_RECORD_MMAP2`) for that.

use std::fmt;
use std::path::{Path, PathBuf};

use super::elf::load_segments_of;
use super::error::LoadError;

/// One line of `/proc/PID/maps`.
///
/// Format (`fs/proc/task_mmu.c`, `show_map_vma()`):
/// `start-end perms offset dev inode pathname`, numbers in hex except the inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// `rwxp`/`rwxs` flags.
    pub perms: Perms,
    /// Offset in the file of `start`.
    pub file_offset: u64,
    /// Inode number (0 for anonymous mappings).
    pub inode: u64,
    /// The path, or a pseudo name such as `[heap]`, `[stack]`, `[vdso]`; empty if anonymous.
    pub path: String,
}

/// The permission flags of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// `r`
    pub read: bool,
    /// `w`
    pub write: bool,
    /// `x`
    pub execute: bool,
    /// `s` (shared) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.execute, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

impl Mapping {
    /// Parses one line; `None` if it is not in the kernel's format.
    pub fn parse(line: &str) -> Option<Mapping> {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let perms = fields.next()?.as_bytes();
        let offset = fields.next()?;
        let _dev = fields.next()?;
        let inode = fields.next()?;
        let path = fields.next().unwrap_or("").trim_start().to_string();
        let (start, end) = range.split_once('-')?;
        if perms.len() != 4 {
            return None;
        }
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            perms: Perms {
                read: perms[0] == b'r',
                write: perms[1] == b'w',
                execute: perms[2] == b'x',
                shared: perms[3] == b's',
            },
            file_offset: u64::from_str_radix(offset, 16).ok()?,
            inode: inode.parse().ok()?,
            path,
        })
    }

    /// Whether the mapping is backed by a file (a path starting with `/`).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// Whether `addr` is inside.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// One mapped ELF file with its load bias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The file's path as the kernel shows it.
    pub path: PathBuf,
    /// Runtime bias: runtime address = link-time address + `bias` (wrapping; 0 for non-PIE).
    pub bias: u64,
    /// The module's mappings (runtime ranges), in address order.
    pub mappings: Vec<Mapping>,
}

impl Module {
    /// The file name (`libc.so.6`), for matching `lib.so:NAME`.
    pub fn file_name(&self) -> &str {
        self.path.file_name().and_then(|n| n.to_str()).unwrap_or("")
    }

    /// Runtime address of a link-time address in this module.
    pub fn to_runtime(&self, link_addr: u64) -> u64 {
        link_addr.wrapping_add(self.bias)
    }

    /// Link-time address of a runtime address in this module.
    pub fn to_link(&self, runtime_addr: u64) -> u64 {
        runtime_addr.wrapping_sub(self.bias)
    }

    /// Whether a runtime address is in one of the module's mappings.
    pub fn contains(&self, runtime_addr: u64) -> bool {
        self.mappings.iter().any(|m| m.contains(runtime_addr))
    }
}

/// The modules of one process (or a synthetic one for tests and offline resolution).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressSpace {
    /// The process, if taken from `/proc`.
    pub pid: Option<u32>,
    /// All mappings, in address order.
    pub mappings: Vec<Mapping>,
    /// The ELF modules, in order of first mapping; the main executable is the one that
    /// `/proc/PID/exe` names (see [`AddressSpace::main_module`]).
    pub modules: Vec<Module>,
    /// The path of `/proc/PID/exe`, if known.
    pub exe: Option<PathBuf>,
}

impl AddressSpace {
    /// Reads `/proc/PID/maps` and `/proc/PID/exe`, and computes each ELF module's bias by
    /// reading its program headers.
    pub fn from_pid(pid: u32) -> Result<AddressSpace, LoadError> {
        let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
        let text =
            std::fs::read_to_string(&maps_path).map_err(|e| LoadError::io(&maps_path, &e))?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let mut space =
            AddressSpace::from_maps_text(&text, exe, |path| load_segments_of(path).ok());
        space.pid = Some(pid);
        Ok(space)
    }

    /// Builds the address space from maps text; `segments` returns a file's `PT_LOAD`
    /// `(p_offset, p_vaddr)` pairs, or `None` if it is not a readable ELF file (then the
    /// file is not a module).
    pub fn from_maps_text(
        text: &str,
        exe: Option<PathBuf>,
        mut segments: impl FnMut(&Path) -> Option<Vec<(u64, u64, u64)>>,
    ) -> AddressSpace {
        let mappings: Vec<Mapping> = text.lines().filter_map(Mapping::parse).collect();
        let mut modules: Vec<Module> = Vec::new();
        let mut not_elf: Vec<&str> = Vec::new();
        for m in mappings.iter().filter(|m| m.is_file()) {
            if let Some(module) = modules
                .iter_mut()
                .find(|md| md.path.as_os_str() == m.path.as_str())
            {
                module.mappings.push(m.clone());
                continue;
            }
            if not_elf.contains(&m.path.as_str()) {
                continue;
            }
            let path = Path::new(&m.path);
            let Some(bias) = segments(path).and_then(|segs| bias_of(m, &segs)) else {
                not_elf.push(&m.path);
                continue;
            };
            modules.push(Module {
                path: path.to_path_buf(),
                bias,
                mappings: vec![m.clone()],
            });
        }
        AddressSpace {
            pid: None,
            mappings,
            modules,
            exe,
        }
    }

    /// A one-module space for offline use: the file's link-time addresses are its runtime
    /// addresses (bias 0), and its one synthetic mapping covers every address.
    pub fn single_file(path: &Path) -> AddressSpace {
        let everything = Mapping {
            start: 0,
            end: u64::MAX,
            perms: Perms {
                read: true,
                write: false,
                execute: true,
                shared: false,
            },
            file_offset: 0,
            inode: 0,
            path: path.display().to_string(),
        };
        AddressSpace {
            pid: None,
            mappings: vec![everything.clone()],
            modules: vec![Module {
                path: path.to_path_buf(),
                bias: 0,
                mappings: vec![everything],
            }],
            exe: Some(path.to_path_buf()),
        }
    }

    /// The main executable's module: the one `/proc/PID/exe` names, else the first.
    pub fn main_module(&self) -> Option<&Module> {
        if let Some(exe) = &self.exe {
            if let Some(m) = self.modules.iter().find(|m| &m.path == exe) {
                return Some(m);
            }
        }
        self.modules.first()
    }

    /// The module whose mappings contain a runtime address.
    pub fn module_of(&self, runtime_addr: u64) -> Option<&Module> {
        self.modules.iter().find(|m| m.contains(runtime_addr))
    }

    /// The mapping that contains a runtime address.
    pub fn mapping_of(&self, runtime_addr: u64) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.contains(runtime_addr))
    }

    /// Maps a runtime address to `(module, link-time address)`.
    pub fn to_link(&self, runtime_addr: u64) -> Option<(&Module, u64)> {
        self.module_of(runtime_addr)
            .map(|m| (m, m.to_link(runtime_addr)))
    }

    /// Maps a module's link-time address to its runtime address.
    pub fn to_runtime(&self, module: &Path, link_addr: u64) -> Option<u64> {
        self.modules
            .iter()
            .find(|m| m.path == module)
            .map(|m| m.to_runtime(link_addr))
    }

    /// The modules whose file name is `name` exactly, or starts with `name` followed by `.`
    /// (so `libc.so` matches `libc.so.6`, and `libfoo` matches `libfoo.so`).
    pub fn modules_named(&self, name: &str) -> Vec<&Module> {
        let exact: Vec<&Module> = self
            .modules
            .iter()
            .filter(|m| m.file_name() == name || m.path.as_os_str() == name)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        self.modules
            .iter()
            .filter(|m| {
                m.file_name()
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
            .collect()
    }
}

/// The bias of a module from one of its mappings and its `(p_offset, p_vaddr, p_filesz)`
/// `PT_LOAD` segments: `start - (p_vaddr - p_offset + file_offset)`, wrapping.
pub fn bias_of(mapping: &Mapping, segments: &[(u64, u64, u64)]) -> Option<u64> {
    // The segment holding the mapping's first file byte; the first segment may start
    // mid-page (p_offset not page-aligned only in its low bits), so compare pages.
    const PAGE: u64 = 4096;
    let seg = segments.iter().find(|&&(off, _, filesz)| {
        let page_start = off & !(PAGE - 1);
        page_start <= mapping.file_offset && mapping.file_offset < off.saturating_add(filesz.max(1))
    })?;
    let (p_offset, p_vaddr, _) = *seg;
    let link = p_vaddr
        .wrapping_sub(p_offset)
        .wrapping_add(mapping.file_offset);
    Some(mapping.start.wrapping_sub(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
555555554000-555555555000 r--p 00000000 08:01 1234                       /usr/bin/prog
555555555000-555555556000 r-xp 00001000 08:01 1234                       /usr/bin/prog
555555558000-555555559000 rw-p 00003000 08:01 1234                       /usr/bin/prog
555555559000-55555557a000 rw-p 00000000 00:00 0                          [heap]
7ffff7dd0000-7ffff7df6000 r--p 00000000 08:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff7df6000-7ffff7f4b000 r-xp 00026000 08:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn parses_lines_and_perms() {
        let m = Mapping::parse(MAPS.lines().nth(1).unwrap()).unwrap();
        assert_eq!(m.start, 0x5555_5555_5000);
        assert_eq!(m.end, 0x5555_5555_6000);
        assert_eq!(m.file_offset, 0x1000);
        assert_eq!(m.inode, 1234);
        assert_eq!(m.path, "/usr/bin/prog");
        assert_eq!(m.perms.to_string(), "r-xp");
        let anon = Mapping::parse("7f00-7f10 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(anon.path, "");
        assert!(!anon.is_file());
        assert_eq!(Mapping::parse("garbage"), None);
    }

    #[test]
    fn groups_modules_and_computes_bias() {
        // PIE linked at 0 (p_vaddr == p_offset), libc linked at 0 too.
        let space = AddressSpace::from_maps_text(MAPS, Some("/usr/bin/prog".into()), |p| {
            Some(if p.ends_with("prog") {
                vec![
                    (0, 0, 0x800),
                    (0x1000, 0x1000, 0x900),
                    (0x2db8, 0x3db8, 0x300),
                ]
            } else {
                vec![(0, 0, 0x26000), (0x26000, 0x26000, 0x155000)]
            })
        });
        assert_eq!(space.modules.len(), 2);
        let prog = space.main_module().unwrap();
        assert_eq!(prog.bias, 0x5555_5555_4000);
        assert_eq!(prog.mappings.len(), 3);
        let (m, link) = space.to_link(0x5555_5555_5123).unwrap();
        assert_eq!((m.file_name(), link), ("prog", 0x1123));
        assert_eq!(
            space.to_runtime(Path::new("/usr/bin/prog"), 0x1123),
            Some(0x5555_5555_5123)
        );
        assert_eq!(space.modules_named("libc.so").len(), 1);
        assert_eq!(space.modules_named("libc.so.6").len(), 1);
        assert_eq!(space.modules_named("libc.so.7").len(), 0);
        assert!(
            space.to_link(0x7fff_ffff_e000).is_none(),
            "stack is no module"
        );
    }

    #[test]
    fn non_pie_has_zero_bias() {
        let m = Mapping::parse("00400000-00401000 r--p 00000000 08:01 7 /bin/x").unwrap();
        assert_eq!(bias_of(&m, &[(0, 0x400000, 0x500)]), Some(0));
        let data = Mapping::parse("00403000-00404000 rw-p 00002000 08:01 7 /bin/x").unwrap();
        assert_eq!(
            bias_of(&data, &[(0, 0x400000, 0x500), (0x2e10, 0x403e10, 0x200)]),
            Some(0)
        );
    }
}
