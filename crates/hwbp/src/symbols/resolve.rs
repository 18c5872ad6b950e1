//! Turning a [`WatchExpr`] into a runtime address range, a length and (when DWARF knows) a
//! value type.
//!
//! Search order for a name without `MODULE:`: the main executable first, then every other
//! module in address order — the dynamic linker's global lookup scope order, so that with a
//! copy relocation (`extern long x;` from a library, copied into the executable's `.bss`) the
//! copy the program actually uses is the one watched. In one module, `.symtab`/`.dynsym`
//! object symbols give address and size; DWARF gives the type (and the variable itself when the
//! symbol table has no such name, e.g. a C function-local `static` whose symbol is `x.0`).
//! Several symbols of that name in one module: the only global one wins; otherwise it is an
//! error listing them (two file-local statics), never a silent pick.
//!
//! Not for: arming anything; the result is a `hwbp_core::spec::Spec` plus facts for printing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hwbp_core::access::Access;
use hwbp_core::spec::{Privilege, Region, Spec};

use super::dwarf::{DwarfIndex, Shape, TypeId, ValueType};
use super::elf::{suggest, ElfFile, SymKind};
use super::error::{LoadError, ResolveError};
use super::expr::{Step, SymbolExpr, WatchExpr};
use super::maps::{AddressSpace, Module};

/// What a watch expression resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The runtime region and access, ready for the planner (user privilege).
    pub spec: Spec,
    /// How to read the bytes, when DWARF knows and the region is exactly one value.
    pub value_type: Option<ValueType>,
    /// The DWARF type name of the selected bytes, if known (`struct point`, `long int`).
    pub type_name: Option<String>,
    /// The module the name was found in (`None` for address forms).
    pub module: Option<PathBuf>,
    /// The link-time address in that module (`None` for address forms).
    pub link_addr: Option<u64>,
    /// The expression in canonical form, for labels (`cfg.pos.y`, `0x4010/8`).
    pub label: String,
    /// A remark worth printing, e.g. that a library's variable is interposed by the
    /// executable's copy.
    pub note: Option<String>,
}

/// `e` with its leading `.field` steps folded into the name, if that names an object symbol.
fn dotted_symbol(elf: &ElfFile, e: &SymbolExpr) -> Option<SymbolExpr> {
    let fields = e
        .steps
        .iter()
        .take_while(|s| matches!(s, Step::Field(_)))
        .count();
    (1..=fields).rev().find_map(|k| {
        let mut name = e.name.clone();
        for s in &e.steps[..k] {
            if let Step::Field(f) = s {
                name.push('.');
                name.push_str(f);
            }
        }
        elf.has_object_exactly(&name).then(|| SymbolExpr {
            name,
            steps: e.steps[k..].to_vec(),
            ..e.clone()
        })
    })
}

/// One loaded module file with its lazily built DWARF index.
struct Loaded {
    elf: ElfFile,
    /// `None`: not tried yet; `Some(None)`: no usable DWARF.
    dwarf: Option<Option<DwarfIndex>>,
}

impl Loaded {
    fn dwarf(&mut self) -> Option<&DwarfIndex> {
        if self.dwarf.is_none() {
            let build = |elf: &ElfFile| elf.dwarf().ok().and_then(|d| DwarfIndex::build(d).ok());
            let index = if self.elf.has_dwarf {
                build(&self.elf)
            } else {
                self.elf
                    .separate_debug_file()
                    .and_then(|p| ElfFile::load(&p).ok())
                    .and_then(|d| build(&d))
            };
            self.dwarf = Some(index);
        }
        self.dwarf.as_ref().and_then(Option::as_ref)
    }
}

/// Resolves watch expressions against one address space, caching loaded files.
pub struct Resolver {
    space: AddressSpace,
    files: HashMap<PathBuf, Loaded>,
}

enum Lookup {
    Found(Resolved),
    NotObject(&'static str),
    Missing,
}

impl Resolver {
    /// A resolver for a process's address space.
    pub fn new(space: AddressSpace) -> Resolver {
        Resolver {
            space,
            files: HashMap::new(),
        }
    }

    /// The address space.
    pub fn space(&self) -> &AddressSpace {
        &self.space
    }

    fn file(&mut self, path: &Path) -> Result<&mut Loaded, LoadError> {
        if !self.files.contains_key(path) {
            let elf = ElfFile::load(path)?;
            self.files
                .insert(path.to_path_buf(), Loaded { elf, dwarf: None });
        }
        Ok(self.files.get_mut(path).expect("inserted above"))
    }

    /// Parses and resolves a `--watch` argument.
    pub fn resolve_text(&mut self, text: &str) -> Result<Resolved, ResolveError> {
        self.resolve(&WatchExpr::parse(text)?)
    }

    /// Resolves a parsed expression.
    pub fn resolve(&mut self, expr: &WatchExpr) -> Result<Resolved, ResolveError> {
        let sym = match expr {
            WatchExpr::Address(spec) => {
                return Ok(Resolved {
                    spec: *spec,
                    value_type: None,
                    type_name: None,
                    module: None,
                    link_addr: None,
                    label: spec.region.to_string(),
                    note: None,
                })
            }
            WatchExpr::Symbol(s) => s,
        };
        let modules: Vec<Module> = match &sym.module {
            Some(name) => {
                let found: Vec<Module> = self
                    .space
                    .modules_named(name)
                    .into_iter()
                    .cloned()
                    .collect();
                if found.is_empty() {
                    return Err(ResolveError::ModuleNotLoaded {
                        name: name.clone(),
                        loaded: self
                            .space
                            .modules
                            .iter()
                            .map(|m| m.file_name().to_string())
                            .collect(),
                    });
                }
                found
            }
            None => {
                let main = self.space.main_module().cloned();
                let mut v: Vec<Module> = main.iter().cloned().collect();
                v.extend(
                    self.space
                        .modules
                        .iter()
                        .filter(|m| Some(&m.path) != main.as_ref().map(|m| &m.path))
                        .cloned(),
                );
                v
            }
        };
        let mut not_object = None;
        for (i, module) in modules.iter().enumerate() {
            let found = match self.lookup_in(module, sym) {
                // An unreadable library does not hide the name in the others.
                Err(ResolveError::Load(_)) if i > 0 => continue,
                other => other?,
            };
            match found {
                Lookup::Found(r) => {
                    let Some(main) = self.space.main_module().cloned() else {
                        return Ok(r);
                    };
                    if sym.module.is_none() || !self.interposed(&main, module, &sym.name)? {
                        return Ok(r);
                    }
                    let mut in_main = sym.clone();
                    in_main.module = None;
                    return match self.lookup_in(&main, &in_main)? {
                        Lookup::Found(mut copy) => {
                            copy.note = Some(format!(
                                "`{}` of {} is interposed by the executable's copy (copy \
                                 relocation); watching the copy, which all code uses",
                                sym.name,
                                module.file_name()
                            ));
                            Ok(copy)
                        }
                        _ => Ok(r),
                    };
                }
                Lookup::NotObject(kind) => {
                    not_object.get_or_insert(kind);
                }
                Lookup::Missing => {}
            }
        }
        if let Some(kind) = not_object {
            return Err(ResolveError::NotAnObject {
                name: sym.name.clone(),
                kind,
            });
        }
        // Not found: a stripped primary module is the better explanation.
        if let Some(first) = modules.first() {
            let loaded = self.file(&first.path)?;
            if !loaded.elf.has_symtab && loaded.dwarf().is_none() {
                return Err(ResolveError::Stripped {
                    module: first.path.display().to_string(),
                });
            }
        }
        let mut names: Vec<String> = Vec::new();
        for module in &modules {
            let Ok(loaded) = self.file(&module.path) else {
                continue;
            };
            for s in loaded.elf.symbols() {
                if s.kind == SymKind::Object {
                    names.push(s.demangled.clone().unwrap_or_else(|| s.name.clone()));
                }
            }
            if let Some(d) = loaded.dwarf() {
                names.extend(d.names().map(str::to_string));
            }
        }
        Err(ResolveError::UnknownSymbol {
            name: sym.name.clone(),
            searched: modules.iter().map(|m| m.file_name().to_string()).collect(),
            suggestions: suggest(&sym.name, names.iter().map(String::as_str), 5),
        })
    }

    fn lookup_in(&mut self, module: &Module, e: &SymbolExpr) -> Result<Lookup, ResolveError> {
        let loaded = self.file(&module.path)?;
        // Symbol names with dots (gcc's `touch_calls.0` for a function-local static, as `nm`
        // shows it): the longest `NAME.f1.f2` that is an object symbol wins over fields.
        let dotted;
        let e = match dotted_symbol(&loaded.elf, e) {
            Some(d) => {
                dotted = d;
                &dotted
            }
            None => e,
        };
        let syms: Vec<_> = loaded
            .elf
            .symbols_named(&e.name)
            .into_iter()
            .cloned()
            .collect();
        let objects: Vec<_> = syms.iter().filter(|s| s.kind == SymKind::Object).collect();
        let sym = match objects.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                let globals: Vec<_> = many.iter().filter(|s| s.global).collect();
                let mut addrs: Vec<u64> = many.iter().map(|s| s.addr).collect();
                addrs.dedup();
                match (globals.as_slice(), addrs.len()) {
                    ([g], _) => Some(**g),
                    (_, 1) => Some(many[0]),
                    _ => {
                        return Err(ResolveError::Ambiguous {
                            name: e.name.clone(),
                            candidates: many
                                .iter()
                                .map(|s| format!("{} at {:#x}", s.name, s.addr))
                                .collect(),
                        })
                    }
                }
            }
        };
        if sym.is_none() {
            if let Some(tls) = syms.iter().find(|s| s.kind == SymKind::Tls) {
                return Err(ResolveError::Unsupported {
                    name: tls.name.clone(),
                    what: "thread-local (one copy per thread)",
                });
            }
        }
        let module_name = module.path.display().to_string();
        let want_dwarf = !e.steps.is_empty() || sym.is_none() || loaded.elf.has_dwarf;
        let dwarf = if want_dwarf { loaded.dwarf() } else { None };
        let mut ambiguous: Vec<String> = Vec::new();
        let var = dwarf.and_then(|d| {
            let vars = d.variables_named(&e.name);
            match sym {
                Some(s) => vars
                    .into_iter()
                    .find(|v| v.addr == s.addr)
                    .or_else(|| match d.variables_at(s.addr).as_slice() {
                        [only] => Some(*only),
                        _ => None,
                    })
                    .cloned(),
                None => {
                    let first = vars.first()?;
                    if vars.iter().all(|v| v.addr == first.addr) {
                        Some((*first).clone())
                    } else {
                        ambiguous = vars
                            .iter()
                            .map(|v| format!("{} at {:#x}", v.path, v.addr))
                            .collect();
                        None
                    }
                }
            }
        });
        if !ambiguous.is_empty() {
            return Err(ResolveError::Ambiguous {
                name: e.name.clone(),
                candidates: ambiguous,
            });
        }
        let (link_addr, sym_size, ty) = match (sym, &var) {
            (Some(s), v) => (
                s.addr,
                Some(s.size).filter(|&n| n > 0),
                v.as_ref().and_then(|v| v.ty),
            ),
            (None, Some(v)) => (v.addr, None, v.ty),
            (None, None) => {
                return Ok(match syms.iter().find(|s| s.kind != SymKind::Object) {
                    Some(f) if e.access == Access::Execute && f.kind == SymKind::Function => {
                        let addr = module.to_runtime(f.addr);
                        Lookup::Found(Resolved {
                            spec: Spec::user(addr, 8, Access::Execute),
                            value_type: None,
                            type_name: None,
                            module: Some(module.path.clone()),
                            link_addr: Some(f.addr),
                            label: e.to_string(),
                            note: None,
                        })
                    }
                    Some(f) => Lookup::NotObject(f.kind.as_str()),
                    None => Lookup::Missing,
                })
            }
        };
        if !e.steps.is_empty() && ty.is_none() {
            return Err(ResolveError::NoDwarf {
                module: module_name,
                name: e.name.clone(),
            });
        }
        // Walk the field/index path.
        let mut offset = 0u64;
        let mut cur_ty: Option<TypeId> = ty;
        let mut info = match (dwarf, ty) {
            (Some(d), Some(t)) => Some(d.type_info(t, &e.name)?),
            _ => None,
        };
        let mut size = sym_size.or(info.as_ref().and_then(|i| i.size));
        for step in &e.steps {
            let d = dwarf.expect("steps need DWARF, checked above");
            let i = info.take().expect("a type for every step");
            let (step_off, next) = match (step, &i.shape) {
                (Step::Field(f), Shape::Struct { members }) => {
                    let Some(m) = members.iter().find(|m| &m.name == f) else {
                        return Err(ResolveError::FieldNotFound {
                            field: f.clone(),
                            type_name: i.name.clone(),
                            fields: members.iter().map(|m| m.name.clone()).collect(),
                        });
                    };
                    if m.bit_field {
                        return Err(ResolveError::BitField { field: f.clone() });
                    }
                    (m.offset, m.ty)
                }
                (Step::Field(f), _) => {
                    return Err(ResolveError::NotAStruct {
                        field: f.clone(),
                        type_name: i.name.clone(),
                    })
                }
                (Step::Index(ix), Shape::Array { elem, stride, dims }) => {
                    let count = dims.first().copied().unwrap_or(0);
                    if *ix >= count {
                        return Err(ResolveError::IndexOutOfRange { index: *ix, count });
                    }
                    // Inner dimensions make the element a sub-array.
                    let inner: u64 = dims[1..].iter().product();
                    let elem_size = stride.checked_mul(inner).ok_or(ResolveError::Overflow)?;
                    let off = ix.checked_mul(elem_size).ok_or(ResolveError::Overflow)?;
                    if dims.len() > 1 {
                        let mut sub = i.clone();
                        sub.shape = Shape::Array {
                            elem: *elem,
                            stride: *stride,
                            dims: dims[1..].to_vec(),
                        };
                        sub.size = Some(elem_size);
                        offset = offset.checked_add(off).ok_or(ResolveError::Overflow)?;
                        size = Some(elem_size);
                        info = Some(sub);
                        continue;
                    }
                    (off, *elem)
                }
                (Step::Index(ix), _) => {
                    return Err(ResolveError::NotAnArray {
                        index: *ix,
                        type_name: i.name.clone(),
                    })
                }
            };
            offset = offset.checked_add(step_off).ok_or(ResolveError::Overflow)?;
            cur_ty = next;
            info = match next {
                Some(t) => Some(d.type_info(t, &e.name)?),
                None => None,
            };
            size = info.as_ref().and_then(|i| i.size);
        }
        let whole = e.offset.is_none() && e.len_bytes.is_none();
        let extra = e.offset.unwrap_or(0);
        let len = match (e.len_bytes, size) {
            (Some(l), _) => l,
            (None, Some(s)) if extra < s => s - extra,
            (None, Some(s)) => {
                return Err(ResolveError::OutsideObject {
                    name: e.to_string(),
                    offset: extra,
                    len_bytes: 0,
                    size: s,
                })
            }
            (None, None) => {
                return Err(ResolveError::UnknownSize {
                    name: e.to_string(),
                })
            }
        };
        if let Some(s) = size {
            if extra.checked_add(len).is_none_or(|end| end > s) {
                return Err(ResolveError::OutsideObject {
                    name: e.to_string(),
                    offset: extra,
                    len_bytes: len,
                    size: s,
                });
            }
        }
        let link = link_addr
            .checked_add(offset)
            .and_then(|a| a.checked_add(extra))
            .ok_or(ResolveError::Overflow)?;
        let runtime = module.to_runtime(link);
        let region = Region::new(runtime, len);
        region.check().map_err(|r| ResolveError::Spec(r.into()))?;
        let value_type = match (whole, dwarf, cur_ty) {
            (true, Some(d), Some(t)) => d.value_type(t, &e.name).filter(|v| v.len_bytes() == len),
            _ => None,
        };
        Ok(Lookup::Found(Resolved {
            spec: Spec {
                region,
                access: e.access,
                privilege: Privilege::User,
            },
            value_type,
            type_name: info.map(|i| i.name),
            module: Some(module.path.clone()),
            link_addr: Some(link),
            label: e.to_string(),
            note: None,
        }))
    }

    /// Whether `name` is a global object in both `lib` and the executable `main`: then the
    /// dynamic linker binds every reference (the library's own included) to the executable's
    /// definition, which for a variable is a copy-relocated duplicate.
    fn interposed(
        &mut self,
        main: &Module,
        lib: &Module,
        name: &str,
    ) -> Result<bool, ResolveError> {
        let global_object = |elf: &ElfFile| {
            elf.symbols_named(name)
                .iter()
                .any(|s| s.kind == SymKind::Object && s.global)
        };
        if main.path == lib.path || !global_object(&self.file(&lib.path)?.elf) {
            return Ok(false);
        }
        Ok(global_object(&self.file(&main.path)?.elf))
    }
}
