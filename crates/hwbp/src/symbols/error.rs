//! Why a file could not be loaded or a watch expression not resolved.
//!
//! These carry names and paths (and near-name suggestions), so unlike the core's errors they
//! are `Clone + Eq` but not `Copy`. Each `Display` is one line that names the problem and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

use hwbp_core::spec::SpecError;

use super::expr::ExprError;

/// A module file that could not be read or parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file (or `/proc` entry) could not be read.
    Io {
        /// What we tried to read.
        path: PathBuf,
        /// The OS error kind.
        kind: std::io::ErrorKind,
        /// The OS error text.
        message: String,
    },
    /// The file is not an ELF file we can read.
    NotElf {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
}

impl LoadError {
    pub(crate) fn io(path: &Path, e: &std::io::Error) -> LoadError {
        LoadError::Io {
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io {
                path,
                kind,
                message,
            } => {
                write!(f, "cannot read {}: {message}", path.display())?;
                match kind {
                    std::io::ErrorKind::PermissionDenied => {
                        f.write_str(" (run as the process's owner, or with CAP_SYS_PTRACE)")
                    }
                    std::io::ErrorKind::NotFound => {
                        f.write_str(" (is the process still running? was the file deleted?)")
                    }
                    _ => Ok(()),
                }
            }
            LoadError::NotElf { path, reason } => write!(
                f,
                "{} is not a readable ELF file ({reason}); watch it by address with 0xADDR/LEN",
                path.display()
            ),
        }
    }
}

/// A watch expression that cannot be turned into an address range.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// The text is not a watch expression.
    Parse(ExprError),
    /// An address form (`0xADDR/LEN`, `mem:...`) that hwbp-core refused.
    Spec(SpecError),
    /// A module file could not be loaded.
    Load(LoadError),
    /// No object symbol or DWARF variable has this name.
    UnknownSymbol {
        /// The name as written.
        name: String,
        /// Where we looked (file names).
        searched: Vec<String>,
        /// Near names from the symbol tables, best first (at most 5).
        suggestions: Vec<String>,
    },
    /// The module has neither `.symtab`/`.dynsym` names for data nor DWARF.
    Stripped {
        /// The module.
        module: String,
    },
    /// A field or index path was given, but the module has no DWARF type information.
    NoDwarf {
        /// The module.
        module: String,
        /// The variable whose type is needed.
        name: String,
    },
    /// Several different objects of this name in one module (file-local statics).
    Ambiguous {
        /// The name.
        name: String,
        /// `name at 0xaddr` for each.
        candidates: Vec<String>,
    },
    /// A name that the symbol table knows as a function, section, TLS or other non-object.
    NotAnObject {
        /// The name.
        name: String,
        /// What it is instead, e.g. `function`.
        kind: &'static str,
    },
    /// `.field` on a type with no such member.
    FieldNotFound {
        /// The field asked for.
        field: String,
        /// The type it was looked up in.
        type_name: String,
        /// The fields that exist.
        fields: Vec<String>,
    },
    /// `.field` on something that is not a struct or union.
    NotAStruct {
        /// The field asked for.
        field: String,
        /// The type it was looked up in.
        type_name: String,
    },
    /// `[i]` on something that is not an array.
    NotAnArray {
        /// The index.
        index: u64,
        /// The type it was applied to.
        type_name: String,
    },
    /// `[i]` past the end of an array.
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The number of elements.
        count: u64,
    },
    /// `+OFF/LEN` outside the object.
    OutsideObject {
        /// The name.
        name: String,
        /// The offset asked for.
        offset: u64,
        /// The length asked for.
        len_bytes: u64,
        /// The object's size.
        size: u64,
    },
    /// The object's size is unknown (symbol size 0 and no DWARF type); give `/LEN`.
    UnknownSize {
        /// The name.
        name: String,
    },
    /// A member with a bit size, which has no byte address of its own.
    BitField {
        /// The member.
        field: String,
    },
    /// `lib.so:NAME` where no loaded module has that file name.
    ModuleNotLoaded {
        /// The name as written.
        name: String,
        /// The file names of the loaded modules.
        loaded: Vec<String>,
    },
    /// A DWARF construct we do not evaluate (e.g. a TLS or register location).
    Unsupported {
        /// The name.
        name: String,
        /// What it was.
        what: &'static str,
    },
    /// Address arithmetic overflowed.
    Overflow,
}

impl ResolveError {
    /// The error for an unreadable module.
    pub fn load(e: LoadError) -> ResolveError {
        ResolveError::Load(e)
    }
}

impl From<LoadError> for ResolveError {
    fn from(e: LoadError) -> Self {
        ResolveError::Load(e)
    }
}

impl From<ExprError> for ResolveError {
    fn from(e: ExprError) -> Self {
        ResolveError::Parse(e)
    }
}

impl From<SpecError> for ResolveError {
    fn from(e: SpecError) -> Self {
        ResolveError::Spec(e)
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Parse(e) => e.fmt(f),
            ResolveError::Spec(e) => e.fmt(f),
            ResolveError::Load(e) => e.fmt(f),
            ResolveError::UnknownSymbol {
                name,
                searched,
                suggestions,
            } => {
                write!(f, "no global or static variable named `{name}` in ")?;
                list(f, searched)?;
                if suggestions.is_empty() {
                    f.write_str("; check the spelling, or watch by address with 0xADDR/LEN")
                } else {
                    f.write_str("; did you mean ")?;
                    list(f, suggestions)?;
                    f.write_str("?")
                }
            }
            ResolveError::Stripped { module } => write!(
                f,
                "{module} is stripped (no symbol table, no DWARF); rebuild without stripping \
                 (and with -g for fields), or watch by address with 0xADDR/LEN"
            ),
            ResolveError::NoDwarf { module, name } => write!(
                f,
                "`{name}` has a symbol but {module} has no DWARF type information for a field \
                 or index path; rebuild with -g, or use NAME+OFF/LEN"
            ),
            ResolveError::Ambiguous { name, candidates } => {
                write!(f, "`{name}` names several variables (")?;
                list(f, candidates)?;
                f.write_str("); pick one with 0xADDR/LEN, or by its DWARF path")
            }
            ResolveError::NotAnObject { name, kind } => write!(
                f,
                "`{name}` is a {kind}, not a variable; watch a variable, or use `{name}:x` \
                 for an execute breakpoint on a function"
            ),
            ResolveError::FieldNotFound {
                field,
                type_name,
                fields,
            } => {
                write!(f, "`{type_name}` has no field `{field}`; its fields are: ")?;
                list(f, fields)
            }
            ResolveError::NotAStruct { field, type_name } => write!(
                f,
                "cannot take field `{field}` of `{type_name}`, which is not a struct or union"
            ),
            ResolveError::NotAnArray { index, type_name } => write!(
                f,
                "cannot index `{type_name}` with [{index}]: it is not an array \
                 (pointers are not followed)"
            ),
            ResolveError::IndexOutOfRange { index, count } => write!(
                f,
                "index [{index}] is out of range: the array has {count} elements (0..={})",
                count.saturating_sub(1)
            ),
            ResolveError::OutsideObject {
                name,
                offset,
                len_bytes,
                size,
            } => write!(
                f,
                "+{offset}/{len_bytes} reaches past the end of `{name}` ({size} bytes); \
                 stay inside it, or watch a raw range with 0xADDR/LEN"
            ),
            ResolveError::UnknownSize { name } => write!(
                f,
                "the size of `{name}` is unknown (symbol size 0, no DWARF type); give it: {name}/LEN"
            ),
            ResolveError::BitField { field } => write!(
                f,
                "`{field}` is a bit-field and has no byte address; watch the containing \
                 struct with NAME+OFF/LEN"
            ),
            ResolveError::ModuleNotLoaded { name, loaded } => {
                write!(f, "no loaded module is named `{name}`; loaded: ")?;
                list(f, loaded)?;
                f.write_str(" (a library loaded later by dlopen must be loaded first)")
            }
            ResolveError::Unsupported { name, what } => write!(
                f,
                "`{name}` is {what}, which hwbp cannot watch by name; watch its address with \
                 0xADDR/LEN"
            ),
            ResolveError::Overflow => f.write_str("the address computation overflowed 64 bits"),
        }
    }
}

impl std::error::Error for ResolveError {}
impl std::error::Error for LoadError {}
