//! DWARF variables and types: where a global/static lives, and the layout of its type.
//!
//! - Variables: `DW_TAG_variable` with a `DW_AT_location` of `DW_OP_addr A` (or
//!   `DW_OP_addrx`), at any depth; the name is `DW_AT_name` (or that of the
//!   `DW_AT_specification` declaration) and, for Rust, the `DW_TAG_namespace` chain around it
//!   joined with `::` (`hwbp_cli::demo_target::BALANCE`).
//! - Fields: `DW_TAG_member` with a constant `DW_AT_data_member_location` (DWARF 5 §5.7.6).
//! - Arrays: `DW_TAG_array_type` with one `DW_TAG_subrange_type` per dimension, its length
//!   `DW_AT_count` or `DW_AT_upper_bound - DW_AT_lower_bound + 1` (lower bound 0 for C/Rust).
//! - Value types: `DW_TAG_base_type` by `DW_AT_encoding` and `DW_AT_byte_size`; pointers;
//!   enums as their underlying integer; a struct whose single member covers it entirely
//!   (Rust's `AtomicI64 { v: UnsafeCell<i64> }`) as that member's value type.
//!
//! Not for: locals, TLS, register or computed locations (rejected as unsupported), nor line
//! tables (addr2line does those, see `symbolize`).

use std::collections::HashMap;

use gimli::{AttributeValue, DebugInfoOffset, Reader, Unit, UnitOffset};

use super::elf::DwarfReader;
use super::error::ResolveError;

/// How to interpret the watched bytes, when DWARF knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A two's-complement integer of `len_bytes` (1, 2, 4, 8, 16).
    Signed {
        /// Width.
        len_bytes: u8,
    },
    /// An unsigned integer (also C `char` types when unsigned, Rust `char`).
    Unsigned {
        /// Width.
        len_bytes: u8,
    },
    /// C `_Bool`, Rust `bool` (one byte).
    Bool,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// A pointer (its target is not followed).
    Pointer {
        /// Width.
        len_bytes: u8,
    },
}

impl ValueType {
    /// The width in bytes.
    pub fn len_bytes(self) -> u64 {
        match self {
            ValueType::Signed { len_bytes }
            | ValueType::Unsigned { len_bytes }
            | ValueType::Pointer { len_bytes } => u64::from(len_bytes),
            ValueType::Bool => 1,
            ValueType::F32 => 4,
            ValueType::F64 => 8,
        }
    }
}

impl ValueType {
    /// Formats a value read from the target (native byte order, as the target runs here):
    /// integers in decimal, `true`/`false`, floats with Rust's shortest round-trip form,
    /// pointers in hex. `None` if `bytes` has the wrong length or a bool byte is not 0/1.
    pub fn render(self, bytes: &[u8]) -> Option<String> {
        if u64::try_from(bytes.len()).ok()? != self.len_bytes() || bytes.len() > 16 {
            return None;
        }
        let mut buf = [0u8; 16];
        let unsigned = |buf: &mut [u8; 16]| {
            if cfg!(target_endian = "little") {
                buf[..bytes.len()].copy_from_slice(bytes);
                u128::from_le_bytes(*buf)
            } else {
                buf[16 - bytes.len()..].copy_from_slice(bytes);
                u128::from_be_bytes(*buf)
            }
        };
        Some(match self {
            ValueType::Unsigned { .. } => unsigned(&mut buf).to_string(),
            ValueType::Signed { len_bytes } => {
                let raw = unsigned(&mut buf);
                let shift = 128 - 8 * u32::from(len_bytes);
                (((raw << shift) as i128) >> shift).to_string()
            }
            ValueType::Pointer { .. } => format!("{:#x}", unsigned(&mut buf)),
            ValueType::Bool => match bytes[0] {
                0 => "false".into(),
                1 => "true".into(),
                _ => return None,
            },
            ValueType::F32 => f32::from_ne_bytes(bytes.try_into().ok()?).to_string(),
            ValueType::F64 => f64::from_ne_bytes(bytes.try_into().ok()?).to_string(),
        })
    }
}

/// A DWARF type, by its `.debug_info` offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeId(pub u64);

/// A global or static variable found in DWARF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The full name (`ns::name` for Rust; plain for C).
    pub path: String,
    /// Link-time address.
    pub addr: u64,
    /// Its type.
    pub ty: Option<TypeId>,
}

/// What a type is, as far as field/index paths and value types need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A scalar with a known value type.
    Scalar(ValueType),
    /// A struct, union or class.
    Struct {
        /// Members in declaration order.
        members: Vec<Member>,
    },
    /// An array: element type and the count of each dimension.
    Array {
        /// Element type.
        elem: Option<TypeId>,
        /// Element stride (bytes).
        stride: u64,
        /// Element counts, outermost first.
        dims: Vec<u64>,
    },
    /// Anything else (functions, void, unknown encodings).
    Other,
}

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name (`0`, `1`... for Rust tuple fields).
    pub name: String,
    /// Byte offset from the start of the struct.
    pub offset: u64,
    /// Its type.
    pub ty: Option<TypeId>,
    /// Whether it is a bit-field (`DW_AT_bit_size`).
    pub bit_field: bool,
}

/// A type's name, byte size and shape (qualifiers and typedefs peeled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// A readable name (`struct point`, `long int`, `[i64; 4]`).
    pub name: String,
    /// `DW_AT_byte_size`, if known.
    pub size: Option<u64>,
    /// The layout.
    pub shape: Shape,
}

/// Every global/static variable of one file's DWARF, indexed by name.
pub struct DwarfIndex {
    dwarf: gimli::Dwarf<DwarfReader>,
    /// Units with their `.debug_info` start offsets, in offset order.
    units: Vec<(u64, Unit<DwarfReader>)>,
    vars: Vec<Variable>,
    by_name: HashMap<String, Vec<usize>>,
    by_addr: HashMap<u64, Vec<usize>>,
}

fn gerr(name: &str) -> impl Fn(gimli::Error) -> ResolveError + '_ {
    move |_| ResolveError::Unsupported {
        name: name.to_string(),
        what: "described by DWARF that could not be parsed",
    }
}

impl DwarfIndex {
    /// Scans all units for variables with static addresses.
    pub fn build(dwarf: gimli::Dwarf<DwarfReader>) -> Result<DwarfIndex, gimli::Error> {
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let start = header.offset().0 as u64;
            units.push((start, dwarf.unit(header)?));
        }
        let mut idx = DwarfIndex {
            dwarf,
            units,
            vars: Vec::new(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
        };
        for u in 0..idx.units.len() {
            idx.scan_unit(u)?;
        }
        Ok(idx)
    }

    fn scan_unit(&mut self, u: usize) -> Result<(), gimli::Error> {
        let unit = &self.units[u].1;
        let mut found = Vec::new();
        // (depth, namespace name) of the enclosing namespaces.
        let mut scopes: Vec<(isize, String)> = Vec::new();
        let mut cursor = unit.entries();
        while let Some(e) = cursor.next_dfs()? {
            let depth = e.depth();
            while scopes.last().is_some_and(|(d, _)| *d >= depth) {
                scopes.pop();
            }
            match e.tag() {
                gimli::DW_TAG_namespace => {
                    let name = self.name_of(unit, e).unwrap_or_default();
                    scopes.push((depth, name));
                }
                gimli::DW_TAG_variable => {
                    let Some(addr) = self.static_address(unit, e) else {
                        continue;
                    };
                    let spec = match e.attr_value(gimli::DW_AT_specification) {
                        Some(AttributeValue::UnitRef(o)) => unit.entry(o).ok(),
                        _ => None,
                    };
                    let name = self
                        .name_of(unit, e)
                        .or_else(|| spec.as_ref().and_then(|s| self.name_of(unit, s)));
                    let Some(name) = name else { continue };
                    let ty = self
                        .type_ref(unit, e)
                        .or_else(|| spec.as_ref().and_then(|s| self.type_ref(unit, s)));
                    let mut path = String::new();
                    for (_, ns) in &scopes {
                        path.push_str(ns);
                        path.push_str("::");
                    }
                    path.push_str(&name);
                    found.push(Variable { path, addr, ty });
                }
                _ => {}
            }
        }
        for v in found {
            let i = self.vars.len();
            let short = v.path.rsplit("::").next().unwrap_or(&v.path).to_string();
            if short != v.path {
                self.by_name.entry(short).or_default().push(i);
            }
            self.by_name.entry(v.path.clone()).or_default().push(i);
            self.by_addr.entry(v.addr).or_default().push(i);
            self.vars.push(v);
        }
        Ok(())
    }

    fn name_of(
        &self,
        unit: &Unit<DwarfReader>,
        e: &gimli::DebuggingInformationEntry<DwarfReader>,
    ) -> Option<String> {
        let v = e.attr_value(gimli::DW_AT_name)?;
        let s = self.dwarf.attr_string(unit, v).ok()?;
        Some(s.to_string_lossy().ok()?.into_owned())
    }

    fn type_ref(
        &self,
        unit: &Unit<DwarfReader>,
        e: &gimli::DebuggingInformationEntry<DwarfReader>,
    ) -> Option<TypeId> {
        match e.attr_value(gimli::DW_AT_type)? {
            AttributeValue::UnitRef(o) => o
                .to_debug_info_offset(&unit.header)
                .map(|d| TypeId(d.0 as u64)),
            AttributeValue::DebugInfoRef(d) => Some(TypeId(d.0 as u64)),
            _ => None,
        }
    }

    /// `DW_OP_addr A` or `DW_OP_addrx i` as the whole location expression.
    fn static_address(
        &self,
        unit: &Unit<DwarfReader>,
        e: &gimli::DebuggingInformationEntry<DwarfReader>,
    ) -> Option<u64> {
        let expr = e.attr_value(gimli::DW_AT_location)?.exprloc_value()?;
        let mut ops = expr.operations(unit.encoding());
        let addr = match ops.next().ok()?? {
            gimli::Operation::Address { address } => address,
            gimli::Operation::AddressIndex { index } => self.dwarf.address(unit, index).ok()?,
            _ => return None,
        };
        ops.next().ok()?.is_none().then_some(addr)
    }

    /// Variables whose full path is `name`, whose last segment is `name` (C names), or whose
    /// path ends with `::name` (Rust paths given without the crate).
    pub fn variables_named(&self, name: &str) -> Vec<&Variable> {
        if let Some(ix) = self.by_name.get(name) {
            return ix.iter().map(|&i| &self.vars[i]).collect();
        }
        if !name.contains("::") {
            return Vec::new();
        }
        let suffix = format!("::{name}");
        self.vars
            .iter()
            .filter(|v| v.path.ends_with(&suffix))
            .collect()
    }

    /// The variables (with a type) at a link-time address: how a symbol whose name DWARF
    /// does not use (`touch_calls.0`) finds its type.
    pub fn variables_at(&self, addr: u64) -> Vec<&Variable> {
        self.by_addr
            .get(&addr)
            .map(|ix| {
                ix.iter()
                    .map(|&i| &self.vars[i])
                    .filter(|v| v.ty.is_some())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All variable paths, for suggestions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|v| v.path.as_str())
    }

    fn locate(&self, id: TypeId) -> Option<(&Unit<DwarfReader>, UnitOffset)> {
        let i = self.units.partition_point(|(start, _)| *start <= id.0);
        let (_, unit) = self.units.get(i.checked_sub(1)?)?;
        let off = DebugInfoOffset(usize::try_from(id.0).ok()?).to_unit_offset(&unit.header)?;
        Some((unit, off))
    }

    /// Describes a type, peeling typedefs and qualifiers.
    pub fn type_info(&self, id: TypeId, for_name: &str) -> Result<TypeInfo, ResolveError> {
        let mut id = id;
        let mut typedef_name = None;
        for _ in 0..64 {
            let (unit, off) = self.locate(id).ok_or(ResolveError::Unsupported {
                name: for_name.to_string(),
                what: "of a type outside .debug_info",
            })?;
            let e = unit.entry(off).map_err(gerr(for_name))?;
            let name = self.name_of(unit, &e);
            let size = e
                .attr_value(gimli::DW_AT_byte_size)
                .and_then(|v| v.udata_value());
            let tag = e.tag();
            match tag {
                gimli::DW_TAG_typedef
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_atomic_type
                | gimli::DW_TAG_restrict_type => {
                    if tag == gimli::DW_TAG_typedef && typedef_name.is_none() {
                        typedef_name = name;
                    }
                    match self.type_ref(unit, &e) {
                        Some(next) => {
                            id = next;
                            continue;
                        }
                        None => break,
                    }
                }
                gimli::DW_TAG_base_type => {
                    let enc = match e.attr_value(gimli::DW_AT_encoding) {
                        Some(AttributeValue::Encoding(enc)) => Some(enc),
                        _ => None,
                    };
                    let shape = base_value_type(enc, size).map_or(Shape::Other, Shape::Scalar);
                    return Ok(TypeInfo {
                        name: typedef_name.or(name).unwrap_or_else(|| "?".into()),
                        size,
                        shape,
                    });
                }
                gimli::DW_TAG_pointer_type
                | gimli::DW_TAG_reference_type
                | gimli::DW_TAG_rvalue_reference_type => {
                    let w = size.unwrap_or(u64::from(unit.encoding().address_size));
                    return Ok(TypeInfo {
                        name: typedef_name.or(name).unwrap_or_else(|| "pointer".into()),
                        size: Some(w),
                        shape: u8::try_from(w).map_or(Shape::Other, |w| {
                            Shape::Scalar(ValueType::Pointer { len_bytes: w })
                        }),
                    });
                }
                gimli::DW_TAG_enumeration_type => {
                    let shape = match self.type_ref(unit, &e) {
                        Some(under) => self.type_info(under, for_name)?.shape,
                        None => base_value_type(Some(gimli::DW_ATE_unsigned), size)
                            .map_or(Shape::Other, Shape::Scalar),
                    };
                    let name = name.map(|n| format!("enum {n}"));
                    return Ok(TypeInfo {
                        name: typedef_name.or(name).unwrap_or_else(|| "enum".into()),
                        size,
                        shape,
                    });
                }
                gimli::DW_TAG_structure_type
                | gimli::DW_TAG_union_type
                | gimli::DW_TAG_class_type => {
                    let members = self.members(unit, off, for_name)?;
                    let kw = if tag == gimli::DW_TAG_union_type {
                        "union"
                    } else {
                        "struct"
                    };
                    let label = name.map(|n| {
                        if is_rust(unit) {
                            n
                        } else {
                            format!("{kw} {n}")
                        }
                    });
                    return Ok(TypeInfo {
                        name: typedef_name.or(label).unwrap_or_else(|| kw.to_string()),
                        size,
                        shape: Shape::Struct { members },
                    });
                }
                gimli::DW_TAG_array_type => {
                    let elem = self.type_ref(unit, &e);
                    let dims = self.subranges(unit, off, for_name)?;
                    let elem_info = match elem {
                        Some(t) => Some(self.type_info(t, for_name)?),
                        None => None,
                    };
                    let stride = e
                        .attr_value(gimli::DW_AT_byte_stride)
                        .and_then(|v| v.udata_value())
                        .or(elem_info.as_ref().and_then(|i| i.size))
                        .unwrap_or(0);
                    let elem_name = elem_info.map_or_else(|| "?".to_string(), |i| i.name);
                    let mut label = elem_name;
                    for d in &dims {
                        label.push_str(&format!("[{d}]"));
                    }
                    let total = dims.iter().try_fold(stride, |acc, &d| acc.checked_mul(d));
                    return Ok(TypeInfo {
                        name: typedef_name.unwrap_or(label),
                        size: size.or(total),
                        shape: Shape::Array { elem, stride, dims },
                    });
                }
                _ => {
                    return Ok(TypeInfo {
                        name: typedef_name.or(name).unwrap_or_else(|| tag.to_string()),
                        size,
                        shape: Shape::Other,
                    })
                }
            }
        }
        Ok(TypeInfo {
            name: typedef_name.unwrap_or_else(|| "void".into()),
            size: None,
            shape: Shape::Other,
        })
    }

    fn members(
        &self,
        unit: &Unit<DwarfReader>,
        off: UnitOffset,
        for_name: &str,
    ) -> Result<Vec<Member>, ResolveError> {
        let mut out = Vec::new();
        let mut tree = unit.entries_tree(Some(off)).map_err(gerr(for_name))?;
        let root = tree.root().map_err(gerr(for_name))?;
        let mut children = root.children();
        while let Some(child) = children.next().map_err(gerr(for_name))? {
            let e = child.entry();
            if e.tag() != gimli::DW_TAG_member {
                continue;
            }
            let name = self.name_of(unit, e).unwrap_or_default();
            let offset = match e.attr_value(gimli::DW_AT_data_member_location) {
                None => 0,
                Some(v) => match v.udata_value() {
                    Some(o) => o,
                    None => continue, // location expressions (virtual bases): not addressable
                },
            };
            out.push(Member {
                name,
                offset,
                ty: self.type_ref(unit, e),
                bit_field: e.attr(gimli::DW_AT_bit_size).is_some(),
            });
        }
        Ok(out)
    }

    fn subranges(
        &self,
        unit: &Unit<DwarfReader>,
        off: UnitOffset,
        for_name: &str,
    ) -> Result<Vec<u64>, ResolveError> {
        let mut dims = Vec::new();
        let mut tree = unit.entries_tree(Some(off)).map_err(gerr(for_name))?;
        let root = tree.root().map_err(gerr(for_name))?;
        let mut children = root.children();
        while let Some(child) = children.next().map_err(gerr(for_name))? {
            let e = child.entry();
            if e.tag() != gimli::DW_TAG_subrange_type {
                continue;
            }
            let count = e
                .attr_value(gimli::DW_AT_count)
                .and_then(|v| v.udata_value());
            let lower = e
                .attr_value(gimli::DW_AT_lower_bound)
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let upper = e
                .attr_value(gimli::DW_AT_upper_bound)
                .and_then(|v| v.udata_value());
            // No count and no upper bound: a flexible array member `x[]`, 0 elements known.
            let n = count.or_else(|| upper.map(|u| u.saturating_sub(lower).saturating_add(1)));
            dims.push(n.unwrap_or(0));
        }
        Ok(dims)
    }

    /// The value type of a type, looking through single-member wrappers.
    pub fn value_type(&self, id: TypeId, for_name: &str) -> Option<ValueType> {
        let mut info = self.type_info(id, for_name).ok()?;
        for _ in 0..16 {
            match &info.shape {
                Shape::Scalar(v) => return Some(*v),
                Shape::Struct { members } if members.len() == 1 => {
                    let m = &members[0];
                    let inner = self.type_info(m.ty?, for_name).ok()?;
                    if m.offset != 0 || m.bit_field || inner.size != info.size {
                        return None;
                    }
                    info = inner;
                }
                _ => return None,
            }
        }
        None
    }
}

fn is_rust(unit: &Unit<DwarfReader>) -> bool {
    // The root DIE's DW_AT_language.
    let Ok(root) = unit.entry(unit.header.root_offset()) else {
        return false;
    };
    matches!(
        root.attr_value(gimli::DW_AT_language),
        Some(AttributeValue::Language(gimli::DW_LANG_Rust))
    )
}

fn base_value_type(enc: Option<gimli::DwAte>, size: Option<u64>) -> Option<ValueType> {
    let w = u8::try_from(size?).ok()?;
    Some(match enc? {
        gimli::DW_ATE_boolean => ValueType::Bool,
        gimli::DW_ATE_float if w == 4 => ValueType::F32,
        gimli::DW_ATE_float if w == 8 => ValueType::F64,
        gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => ValueType::Signed { len_bytes: w },
        gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char | gimli::DW_ATE_UTF => {
            ValueType::Unsigned { len_bytes: w }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_value_type() {
        let s = |t: ValueType, b: &[u8]| t.render(b);
        assert_eq!(
            s(ValueType::Signed { len_bytes: 8 }, &(-5i64).to_ne_bytes()).as_deref(),
            Some("-5")
        );
        assert_eq!(
            s(ValueType::Signed { len_bytes: 2 }, &(-300i16).to_ne_bytes()).as_deref(),
            Some("-300")
        );
        assert_eq!(
            s(
                ValueType::Unsigned { len_bytes: 4 },
                &u32::MAX.to_ne_bytes()
            )
            .as_deref(),
            Some("4294967295")
        );
        assert_eq!(
            s(
                ValueType::Pointer { len_bytes: 8 },
                &0x1000u64.to_ne_bytes()
            )
            .as_deref(),
            Some("0x1000")
        );
        assert_eq!(s(ValueType::Bool, &[1]).as_deref(), Some("true"));
        assert_eq!(s(ValueType::Bool, &[2]), None);
        assert_eq!(
            s(ValueType::F64, &1.5f64.to_ne_bytes()).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            s(ValueType::F32, &0.25f32.to_ne_bytes()).as_deref(),
            Some("0.25")
        );
        assert_eq!(s(ValueType::Signed { len_bytes: 8 }, &[0; 4]), None);
        assert_eq!(s(ValueType::Unsigned { len_bytes: 32 }, &[0; 32]), None);
    }
}
