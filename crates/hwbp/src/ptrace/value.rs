//! Typed values of watched bytes: how `old` and `new` are read for conditions and output.
//!
//! Not for: DWARF; the symbols layer decides the type and passes it in. The variants mirror
//! [`crate::symbols::dwarf::ValueType`] one to one (`From` below), plus [`ValueType::Bytes`]
//! for untyped watches.

use std::fmt;

/// How the watched bytes are interpreted (little-endian, as on x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Two's-complement integer of 1, 2, 4, 8 or 16 bytes.
    Signed {
        /// Width.
        len_bytes: u8,
    },
    /// Unsigned integer of 1, 2, 4, 8 or 16 bytes.
    Unsigned {
        /// Width.
        len_bytes: u8,
    },
    /// C/Rust `bool` (one byte, non-zero = true).
    Bool,
    /// IEEE-754 single.
    F32,
    /// IEEE-754 double.
    F64,
    /// A pointer (shown in hex, compared as an unsigned integer).
    Pointer {
        /// Width.
        len_bytes: u8,
    },
    /// Raw bytes: only `==`/`!=` between `new` and `old` are meaningful.
    Bytes,
}

impl ValueType {
    /// The natural type of an untyped watch of `len` bytes: unsigned of that width, or bytes.
    pub fn for_len(len_bytes: u64) -> ValueType {
        match len_bytes {
            1 | 2 | 4 | 8 | 16 => ValueType::Unsigned {
                len_bytes: len_bytes as u8,
            },
            _ => ValueType::Bytes,
        }
    }

    /// Parses `i8`..`i128`, `u8`..`u128`, `bool`, `f32`, `f64`, `ptr`, `bytes`.
    pub fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "i8" => ValueType::Signed { len_bytes: 1 },
            "i16" => ValueType::Signed { len_bytes: 2 },
            "i32" => ValueType::Signed { len_bytes: 4 },
            "i64" => ValueType::Signed { len_bytes: 8 },
            "i128" => ValueType::Signed { len_bytes: 16 },
            "u8" => ValueType::Unsigned { len_bytes: 1 },
            "u16" => ValueType::Unsigned { len_bytes: 2 },
            "u32" => ValueType::Unsigned { len_bytes: 4 },
            "u64" => ValueType::Unsigned { len_bytes: 8 },
            "u128" => ValueType::Unsigned { len_bytes: 16 },
            "bool" => ValueType::Bool,
            "f32" => ValueType::F32,
            "f64" => ValueType::F64,
            "ptr" => ValueType::Pointer { len_bytes: 8 },
            "bytes" => ValueType::Bytes,
            _ => return None,
        })
    }

    /// Decodes the first bytes of `raw`, little-endian (missing bytes read as zero).
    pub fn decode(self, raw: &[u8]) -> Value {
        let mut b = [0u8; 16];
        let n = raw.len().min(16);
        b[..n].copy_from_slice(&raw[..n]);
        let u = u128::from_le_bytes(b);
        // Sign or zero extension from `len` bytes (1..=16).
        let shift = |len: u8| 128 - 8 * u32::from(len.clamp(1, 16));
        match self {
            ValueType::Signed { len_bytes } => {
                let s = shift(len_bytes);
                Value::Int(((u << s) as i128) >> s)
            }
            ValueType::Unsigned { len_bytes } => {
                let s = shift(len_bytes);
                let v = (u << s) >> s;
                // A u128 above i128::MAX has no exact integer value here: keep it as a float.
                i128::try_from(v).map_or(Value::Float(v as f64), Value::Int)
            }
            ValueType::Bool => Value::Bool(b[0] != 0),
            ValueType::F32 => Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            ValueType::F64 => Value::Float(f64::from_le_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ])),
            ValueType::Pointer { len_bytes } => {
                let s = shift(len_bytes.min(8));
                Value::Ptr(((u << s) >> s) as u64)
            }
            ValueType::Bytes => Value::Int(i128::from(u as u64)),
        }
    }
}

impl From<crate::symbols::dwarf::ValueType> for ValueType {
    fn from(t: crate::symbols::dwarf::ValueType) -> ValueType {
        use crate::symbols::dwarf::ValueType as Dwarf;
        match t {
            Dwarf::Signed { len_bytes } => ValueType::Signed { len_bytes },
            Dwarf::Unsigned { len_bytes } => ValueType::Unsigned { len_bytes },
            Dwarf::Bool => ValueType::Bool,
            Dwarf::F32 => ValueType::F32,
            Dwarf::F64 => ValueType::F64,
            Dwarf::Pointer { len_bytes } => ValueType::Pointer { len_bytes },
        }
    }
}

/// A decoded value, as conditions compute with it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// Any integer (wide enough for every width and sign).
    Int(i128),
    /// Floating point.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Pointer.
    Ptr(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Ptr(v) => write!(f, "{v:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_width_and_sign() {
        let raw = (-2i64).to_le_bytes();
        assert_eq!(
            ValueType::Signed { len_bytes: 1 }.decode(&raw),
            Value::Int(-2)
        );
        assert_eq!(
            ValueType::Signed { len_bytes: 8 }.decode(&raw),
            Value::Int(-2)
        );
        assert_eq!(
            ValueType::Unsigned { len_bytes: 1 }.decode(&raw),
            Value::Int(0xfe)
        );
        assert_eq!(
            ValueType::Unsigned { len_bytes: 2 }.decode(&raw),
            Value::Int(0xfffe)
        );
        assert_eq!(
            ValueType::Unsigned { len_bytes: 8 }.decode(&raw),
            Value::Int(0xffff_ffff_ffff_fffe)
        );
        assert_eq!(
            ValueType::F32.decode(&1.5f32.to_le_bytes()),
            Value::Float(1.5)
        );
        assert_eq!(
            ValueType::F64.decode(&(-0.25f64).to_le_bytes()),
            Value::Float(-0.25)
        );
        assert_eq!(ValueType::Bool.decode(&[2]), Value::Bool(true));
        assert_eq!(
            ValueType::Pointer { len_bytes: 8 }.decode(&raw),
            Value::Ptr(0xffff_ffff_ffff_fffe)
        );
        assert_eq!(
            ValueType::parse("i16"),
            Some(ValueType::Signed { len_bytes: 2 })
        );
        let wide = (-3i128).to_le_bytes();
        assert_eq!(
            ValueType::Signed { len_bytes: 16 }.decode(&wide),
            Value::Int(-3)
        );
        assert_eq!(
            ValueType::Unsigned { len_bytes: 16 }.decode(&wide),
            Value::Float(u128::MAX as f64)
        );
        assert_eq!(ValueType::parse("int"), None);
        use crate::symbols::dwarf::ValueType as Dwarf;
        assert_eq!(
            ValueType::from(Dwarf::Signed { len_bytes: 4 }),
            ValueType::Signed { len_bytes: 4 }
        );
        assert_eq!(
            ValueType::from(Dwarf::Pointer { len_bytes: 8 }),
            ValueType::Pointer { len_bytes: 8 }
        );
    }
}
