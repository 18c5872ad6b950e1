//! One ELF file read into memory: its symbols, load segments, code bytes and DWARF sections.
//!
//! The file is read whole into a `Vec<u8>` (no `mmap`, so no `unsafe`); symbols are copied out
//! into owned tables once, sorted for lookups by address and by name.
//!
//! Not for: runtime addresses (everything here is link-time, see `maps`), nor DWARF types
//! (see `dwarf`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind as ObjKind};

use super::error::LoadError;

/// What a symbol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymKind {
    /// A data object (`STT_OBJECT`).
    Object,
    /// Code (`STT_FUNC`, `STT_GNU_IFUNC`).
    Function,
    /// Thread-local storage (`STT_TLS`).
    Tls,
    /// A section, file or other name that is not a variable.
    Other,
}

impl SymKind {
    /// The word for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SymKind::Object => "variable",
            SymKind::Function => "function",
            SymKind::Tls => "thread-local variable",
            SymKind::Other => "label",
        }
    }
}

/// A defined symbol from `.symtab` or `.dynsym`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sym {
    /// The raw (possibly mangled) name.
    pub name: String,
    /// The demangled name without the Rust hash (`demo::BALANCE`), if it was mangled.
    pub demangled: Option<String>,
    /// Link-time address (`st_value`).
    pub addr: u64,
    /// `st_size` (0 if unknown).
    pub size: u64,
    /// What it names.
    pub kind: SymKind,
    /// Whether the symbol is global (visible outside its file).
    pub global: bool,
}

/// A loaded ELF file.
#[derive(Debug)]
pub struct ElfFile {
    /// The path it was read from.
    pub path: PathBuf,
    data: Arc<Vec<u8>>,
    /// Defined symbols, sorted by address.
    symbols: Vec<Sym>,
    /// Name (raw and demangled) -> indices into `symbols`.
    by_name: HashMap<String, Vec<usize>>,
    /// `(p_offset, p_vaddr, p_filesz)` of each `PT_LOAD`.
    segments: Vec<(u64, u64, u64)>,
    /// Whether `.symtab` exists (`.dynsym` alone means stripped).
    pub has_symtab: bool,
    /// Whether `.debug_info` exists.
    pub has_dwarf: bool,
    /// Whether the file is 64-bit.
    pub is_64: bool,
    /// GNU build-id, if any.
    pub build_id: Option<Vec<u8>>,
}

fn obj_err(path: &Path, e: object::Error) -> LoadError {
    LoadError::NotElf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The Rust demangled name without the hash, or `None` for names that are not mangled.
pub fn demangle(name: &str) -> Option<String> {
    let d = rustc_demangle::try_demangle(name).ok()?;
    Some(format!("{d:#}"))
}

impl ElfFile {
    /// Reads and indexes a file.
    pub fn load(path: &Path) -> Result<ElfFile, LoadError> {
        let data = std::fs::read(path).map_err(|e| LoadError::io(path, &e))?;
        ElfFile::from_bytes(path, data)
    }

    /// Indexes file bytes.
    pub fn from_bytes(path: &Path, data: Vec<u8>) -> Result<ElfFile, LoadError> {
        let file = object::File::parse(&*data).map_err(|e| obj_err(path, e))?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(LoadError::NotElf {
                path: path.to_path_buf(),
                reason: format!("{:?} format", file.format()),
            });
        }
        let has_symtab = file.section_by_name(".symtab").is_some();
        let has_dwarf = file
            .section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0);
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, s.address(), size)
            })
            .collect();
        let mut symbols = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            if sym.is_undefined() || !sym.is_definition() && sym.kind() != ObjKind::Tls {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() || !seen.insert((name.to_string(), sym.address())) {
                continue;
            }
            let kind = match sym.kind() {
                ObjKind::Data => SymKind::Object,
                ObjKind::Text => SymKind::Function,
                ObjKind::Tls => SymKind::Tls,
                _ => SymKind::Other,
            };
            symbols.push(Sym {
                name: name.to_string(),
                demangled: demangle(name),
                addr: sym.address(),
                size: sym.size(),
                kind,
                global: sym.is_global(),
            });
        }
        symbols.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            by_name.entry(s.name.clone()).or_default().push(i);
            if let Some(d) = &s.demangled {
                if d != &s.name {
                    by_name.entry(d.clone()).or_default().push(i);
                }
            }
        }
        let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        let is_64 = file.is_64();
        Ok(ElfFile {
            path: path.to_path_buf(),
            data: Arc::new(data),
            symbols,
            by_name,
            segments,
            has_symtab,
            has_dwarf,
            is_64,
            build_id,
        })
    }

    /// The file bytes.
    pub fn data(&self) -> &Arc<Vec<u8>> {
        &self.data
    }

    /// `(p_offset, p_vaddr, p_filesz)` of each `PT_LOAD` segment.
    pub fn load_segments(&self) -> Vec<(u64, u64, u64)> {
        self.segments.clone()
    }

    /// All defined symbols, sorted by address.
    pub fn symbols(&self) -> &[Sym] {
        &self.symbols
    }

    /// Symbols whose raw or demangled name is exactly `name`; failing that, those whose
    /// demangled Rust path ends with `::name` (so `demo_target::BALANCE` and `BALANCE` find
    /// `hwbp::demo_target::BALANCE`).
    pub fn symbols_named(&self, name: &str) -> Vec<&Sym> {
        if let Some(ix) = self.by_name.get(name) {
            return ix.iter().map(|&i| &self.symbols[i]).collect();
        }
        let suffix = format!("::{name}");
        self.symbols
            .iter()
            .filter(|s| s.demangled.as_deref().is_some_and(|d| d.ends_with(&suffix)))
            .collect()
    }

    /// Whether an object symbol has exactly this raw name (`touch_calls.0`).
    pub fn has_object_exactly(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|ix| ix.iter().any(|&i| self.symbols[i].kind == SymKind::Object))
    }

    /// The function symbol containing a link-time address (`addr` in `[st_value, st_value +
    /// st_size)`), preferring global names over local aliases.
    pub fn function_containing(&self, addr: u64) -> Option<&Sym> {
        let end = self.symbols.partition_point(|s| s.addr <= addr);
        // Look back a bounded number of symbols (data and local labels may sit between).
        self.symbols[..end]
            .iter()
            .rev()
            .take(256)
            .filter(|s| s.kind == SymKind::Function && addr < s.addr.saturating_add(s.size))
            .max_by_key(|s| (s.addr, s.global))
    }

    /// The file bytes of a link-time address range, if it lies in a `PT_LOAD`'s file part.
    pub fn bytes_at(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let &(off, vaddr, filesz) = self
            .segments
            .iter()
            .find(|&&(_, v, sz)| v <= addr && addr < v.saturating_add(sz))?;
        let rel = addr - vaddr;
        let len = len.min(filesz - rel);
        let start = usize::try_from(off.checked_add(rel)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    /// A separate debug file for this one (`/usr/lib/debug/.build-id/xx/rest.debug`), if one
    /// is installed.
    pub fn separate_debug_file(&self) -> Option<PathBuf> {
        let id = self.build_id.as_ref()?;
        let (first, rest) = id.split_first()?;
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        let p = PathBuf::from(format!("/usr/lib/debug/.build-id/{first:02x}/{hex}.debug"));
        p.is_file().then_some(p)
    }

    /// The DWARF sections as gimli wants them (empty sections where absent).
    pub fn dwarf(&self) -> Result<gimli::Dwarf<DwarfReader>, LoadError> {
        let file = object::File::parse(&**self.data).map_err(|e| obj_err(&self.path, e))?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
            let bytes: Cow<'_, [u8]> = file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[]));
            Ok(gimli::EndianArcSlice::new(Arc::from(&*bytes), endian))
        };
        gimli::Dwarf::load(load).map_err(|e| LoadError::NotElf {
            path: self.path.clone(),
            reason: format!("bad DWARF: {e}"),
        })
    }
}

/// The `(p_offset, p_vaddr, p_filesz)` of each `PT_LOAD` of an ELF file, reading only its
/// first 64 KiB when the program headers are there (they follow the ELF header in practice);
/// else the whole file.
pub fn load_segments_of(path: &Path) -> Result<Vec<(u64, u64, u64)>, LoadError> {
    use object::read::elf::{FileHeader, ProgramHeader};
    use std::io::Read;

    fn parse<H: FileHeader<Endian = object::Endianness>>(
        data: &[u8],
    ) -> Option<Vec<(u64, u64, u64)>> {
        let header = H::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let phdrs = header.program_headers(endian, data).ok()?;
        Some(
            phdrs
                .iter()
                .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
                .map(|p| {
                    (
                        p.p_offset(endian).into(),
                        p.p_vaddr(endian).into(),
                        p.p_filesz(endian).into(),
                    )
                })
                .collect(),
        )
    }
    let file = std::fs::File::open(path).map_err(|e| LoadError::io(path, &e))?;
    let mut head = Vec::with_capacity(64 * 1024);
    file.take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| LoadError::io(path, &e))?;
    // e_ident[EI_CLASS], byte 4: 1 = 32-bit, 2 = 64-bit.
    let found = match head.get(4) {
        Some(&object::elf::ELFCLASS64) => {
            parse::<object::elf::FileHeader64<object::Endianness>>(&head)
        }
        Some(&object::elf::ELFCLASS32) => {
            parse::<object::elf::FileHeader32<object::Endianness>>(&head)
        }
        _ => None,
    };
    match found {
        Some(segments) => Ok(segments),
        None => Ok(ElfFile::load(path)?.load_segments()),
    }
}

/// The gimli reader we use: shared, owned section bytes.
pub type DwarfReader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// Levenshtein distance, for near-name suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to `max` names near `wanted`: case-insensitive substring matches and names within an
/// edit distance of a third of the name's length (at least 2), closest first.
pub fn suggest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>, max: usize) -> Vec<String> {
    let lw = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|n| {
            let ln = n.to_lowercase();
            let d = edit_distance(&lw, &ln);
            if d <= limit {
                Some((d, n))
            } else if lw.len() >= 3 && ln.contains(&lw) {
                Some((limit + 1 + ln.len() - lw.len(), n))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(max)
        .map(|(_, n)| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("counter", "counter"), 0);
        assert_eq!(edit_distance("countr", "counter"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestions_rank_close_names_first() {
        let names = ["counter", "counters_total", "country", "main", "cfg"];
        assert_eq!(
            suggest("counter", names.iter().copied(), 5),
            vec!["counter", "country", "counters_total"]
        );
        assert_eq!(
            suggest("zzzzzz", names.iter().copied(), 5),
            Vec::<String>::new()
        );
    }

    #[test]
    fn header_only_segments_match_the_full_parse() {
        let exe = std::env::current_exe().unwrap();
        let full = ElfFile::load(&exe).unwrap().load_segments();
        assert!(!full.is_empty());
        assert_eq!(load_segments_of(&exe).unwrap(), full);
    }

    #[test]
    fn demangles_rust_paths_without_hash() {
        assert_eq!(
            demangle("_ZN8hwbp_cli11demo_target7BALANCE17h0123456789abcdefE").as_deref(),
            Some("hwbp_cli::demo_target::BALANCE")
        );
        assert_eq!(demangle("counter"), None);
    }
}
