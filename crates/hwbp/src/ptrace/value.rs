//! Typed values of watched bytes: how `old` and `new` are read for conditions and output.
//!
//! Not for: DWARF; the symbols layer decides the [`ValueType`] and passes it in.

use std::fmt;

/// How the watched bytes are interpreted (little-endian, as on x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Signed integer of 1, 2, 4 or 8 bytes.
    Int {
        /// Width in bytes.
        bytes: u8,
    },
    /// Unsigned integer of 1, 2, 4 or 8 bytes.
    Uint {
        /// Width in bytes.
        bytes: u8,
    },
    /// C/Rust `bool` (one byte, non-zero = true).
    Bool,
    /// IEEE-754 single.
    F32,
    /// IEEE-754 double.
    F64,
    /// A pointer (8 bytes, shown in hex, compared as an unsigned integer).
    Ptr,
    /// Raw bytes: only `==`/`!=` between `new` and `old` are meaningful.
    Bytes,
}

impl ValueType {
    /// The natural type of an untyped watch of `len` bytes: unsigned of that width, or bytes.
    pub fn for_len(len_bytes: u64) -> ValueType {
        match len_bytes {
            1 | 2 | 4 | 8 => ValueType::Uint {
                bytes: len_bytes as u8,
            },
            _ => ValueType::Bytes,
        }
    }

    /// Parses `i8`..`i64`, `u8`..`u64`, `bool`, `f32`, `f64`, `ptr`, `bytes`.
    pub fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "i8" => ValueType::Int { bytes: 1 },
            "i16" => ValueType::Int { bytes: 2 },
            "i32" => ValueType::Int { bytes: 4 },
            "i64" => ValueType::Int { bytes: 8 },
            "u8" => ValueType::Uint { bytes: 1 },
            "u16" => ValueType::Uint { bytes: 2 },
            "u32" => ValueType::Uint { bytes: 4 },
            "u64" => ValueType::Uint { bytes: 8 },
            "bool" => ValueType::Bool,
            "f32" => ValueType::F32,
            "f64" => ValueType::F64,
            "ptr" => ValueType::Ptr,
            "bytes" => ValueType::Bytes,
            _ => return None,
        })
    }

    /// Decodes the first bytes of `raw` (missing bytes read as zero).
    pub fn decode(self, raw: &[u8]) -> Value {
        let mut b = [0u8; 8];
        let n = raw.len().min(8);
        b[..n].copy_from_slice(&raw[..n]);
        let u = u64::from_le_bytes(b);
        match self {
            ValueType::Int { bytes } => {
                let shift = 64 - 8 * u32::from(bytes.clamp(1, 8));
                Value::Int(i128::from(((u << shift) as i64) >> shift))
            }
            ValueType::Uint { bytes } => {
                let shift = 64 - 8 * u32::from(bytes.clamp(1, 8));
                Value::Int(i128::from((u << shift) >> shift))
            }
            ValueType::Bool => Value::Bool(b[0] != 0),
            ValueType::F32 => Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            ValueType::F64 => Value::Float(f64::from_le_bytes(b)),
            ValueType::Ptr => Value::Ptr(u),
            ValueType::Bytes => Value::Int(i128::from(u)),
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
        assert_eq!(ValueType::Int { bytes: 1 }.decode(&raw), Value::Int(-2));
        assert_eq!(ValueType::Int { bytes: 8 }.decode(&raw), Value::Int(-2));
        assert_eq!(ValueType::Uint { bytes: 1 }.decode(&raw), Value::Int(0xfe));
        assert_eq!(
            ValueType::Uint { bytes: 2 }.decode(&raw),
            Value::Int(0xfffe)
        );
        assert_eq!(
            ValueType::Uint { bytes: 8 }.decode(&raw),
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
            ValueType::Ptr.decode(&raw),
            Value::Ptr(0xffff_ffff_ffff_fffe)
        );
        assert_eq!(ValueType::parse("i16"), Some(ValueType::Int { bytes: 2 }));
        assert_eq!(ValueType::parse("int"), None);
    }
}
