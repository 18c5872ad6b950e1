//! The watch-expression grammar (what `--watch SPEC` accepts), parsed into plain data.
//!
//! ```text
//! SPEC     := ADDRSPEC | SYMSPEC
//! ADDRSPEC := ADDR[/LEN][:ACCESS][:MOD] | mem:ADDR[/LEN][:ACCESS][:MOD]   (hwbp_core::spec)
//! SYMSPEC  := [MODULE ':'] NAME STEP* ['+' OFF] ['/' LEN] [':' ACCESS]
//! NAME     := IDENT ('::' IDENT)*          C name, or a Rust path such as demo::BALANCE
//! STEP     := '.' FIELD | '[' INDEX ']'     struct member, array element (through DWARF)
//! ACCESS   := w (default) | rw | wr | r | x
//! ```
//! `ADDR`, `OFF`, `LEN`, `INDEX` are decimal or `0x` hex. `MODULE` is a file name (`libc.so.6`,
//! or a prefix ending before a `.`, like `libc.so`). A single `:` separates module and access;
//! `::` belongs to a Rust path. A spec that starts with a digit or `mem:` is an address form.
//!
//! Not for: resolving names (see `resolve`).

use std::fmt;

use hwbp_core::access::Access;
use hwbp_core::spec::{parse_u64, Spec};

use super::error::ResolveError;

/// A parsed `--watch` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchExpr {
    /// An address form; nothing to resolve.
    Address(Spec),
    /// A name to resolve through the symbol table and DWARF.
    Symbol(SymbolExpr),
}

/// A symbolic watch: `[MODULE:]NAME{.field|[i]}[+OFF][/LEN][:ACCESS]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolExpr {
    /// The module's file name, if given (`libfoo.so:NAME`).
    pub module: Option<String>,
    /// The variable: a C name or a `::`-separated Rust path.
    pub name: String,
    /// Fields and indices, in order.
    pub steps: Vec<Step>,
    /// `+OFF`: bytes past the start of what `name` and `steps` select.
    pub offset: Option<u64>,
    /// `/LEN`: bytes to watch.
    pub len_bytes: Option<u64>,
    /// Which accesses to watch (default write).
    pub access: Access,
}

/// One step of a field/index path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `.name` (also `.0` for Rust tuple fields).
    Field(String),
    /// `[index]`.
    Index(u64),
}

impl fmt::Display for SymbolExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.module {
            write!(f, "{m}:")?;
        }
        f.write_str(&self.name)?;
        for s in &self.steps {
            match s {
                Step::Field(n) => write!(f, ".{n}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        if let Some(o) = self.offset {
            write!(f, "+{o}")?;
        }
        if let Some(l) = self.len_bytes {
            write!(f, "/{l}")?;
        }
        Ok(())
    }
}

/// What is wrong with a watch expression's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExprErrorKind {
    /// Nothing given.
    Empty,
    /// `:NAME` with nothing before the colon.
    EmptyModule,
    /// No identifier where a name was expected.
    ExpectedName,
    /// No identifier after `.`.
    ExpectedField,
    /// `[` not followed by a number and `]`.
    BadIndex,
    /// `+` not followed by a number.
    BadOffset,
    /// `/` not followed by a non-zero number.
    BadLength,
    /// Text left over after a complete expression.
    Trailing,
}

/// A watch expression that does not parse, with the byte position of the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExprError {
    /// What is wrong.
    pub kind: ExprErrorKind,
    /// Byte offset in the (trimmed) text.
    pub at: usize,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ExprErrorKind::Empty => "empty watch expression",
            ExprErrorKind::EmptyModule => {
                "nothing before `:`; write MODULE:NAME, e.g. libc.so.6:errno"
            }
            ExprErrorKind::ExpectedName => "expected a variable name",
            ExprErrorKind::ExpectedField => "expected a field name after `.`",
            ExprErrorKind::BadIndex => "expected [INDEX] with a decimal or 0x number",
            ExprErrorKind::BadOffset => "expected a decimal or 0x number after `+`",
            ExprErrorKind::BadLength => "expected a non-zero decimal or 0x length after `/`",
            ExprErrorKind::Trailing => "unexpected text",
        };
        write!(
            f,
            "{what} at byte {}; expected [MODULE:]NAME[.field][[i]][+OFF][/LEN][:w|rw|r|x], \
             0xADDR[/LEN][:ACCESS] or mem:ADDR[/LEN][:ACCESS]",
            self.at
        )
    }
}

fn err(kind: ExprErrorKind, at: usize) -> ExprError {
    ExprError { kind, at }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl WatchExpr {
    /// Parses a `--watch` argument (see the module docs for the grammar).
    pub fn parse(text: &str) -> Result<WatchExpr, ResolveError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(err(ExprErrorKind::Empty, 0).into());
        }
        if text.starts_with("mem:") || text.as_bytes()[0].is_ascii_digit() {
            return Ok(WatchExpr::Address(Spec::parse(text)?));
        }
        Ok(WatchExpr::Symbol(parse_symbol(text)?))
    }
}

/// Splits a trailing `:ACCESS` (not part of a `::`).
fn split_access(text: &str) -> (&str, Option<Access>) {
    if let Some((head, tail)) = text.rsplit_once(':') {
        if !head.ends_with(':') {
            if let Some(a) = Access::parse(tail) {
                return (head, Some(a));
            }
        }
    }
    (text, None)
}

/// The index of the first `:` that is not half of a `::`.
fn single_colon(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            if b.get(i + 1) == Some(&b':') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

fn parse_symbol(text: &str) -> Result<SymbolExpr, ExprError> {
    let (body, access) = split_access(text);
    let (module, rest, base) = match single_colon(body) {
        Some(0) => return Err(err(ExprErrorKind::EmptyModule, 0)),
        Some(i) => (Some(body[..i].to_string()), &body[i + 1..], i + 1),
        None => (None, body, 0),
    };
    let b = rest.as_bytes();
    let mut i = 0;
    let ident = |i: &mut usize| -> usize {
        let start = *i;
        while *i < b.len() && is_ident_byte(b[*i]) {
            *i += 1;
        }
        *i - start
    };
    // NAME := IDENT ('::' IDENT)*
    if ident(&mut i) == 0 || b[0].is_ascii_digit() {
        return Err(err(ExprErrorKind::ExpectedName, base));
    }
    while rest[i..].starts_with("::") {
        i += 2;
        if ident(&mut i) == 0 {
            return Err(err(ExprErrorKind::ExpectedName, base + i));
        }
    }
    let name = rest[..i].to_string();
    let mut steps = Vec::new();
    loop {
        match b.get(i) {
            Some(b'.') => {
                i += 1;
                let start = i;
                if ident(&mut i) == 0 {
                    return Err(err(ExprErrorKind::ExpectedField, base + i));
                }
                steps.push(Step::Field(rest[start..i].to_string()));
            }
            Some(b'[') => {
                let close = rest[i..]
                    .find(']')
                    .ok_or(err(ExprErrorKind::BadIndex, base + i))?;
                let index = parse_u64(rest[i + 1..i + close].trim())
                    .ok_or(err(ExprErrorKind::BadIndex, base + i))?;
                steps.push(Step::Index(index));
                i += close + 1;
            }
            _ => break,
        }
    }
    let number = |i: &mut usize| -> Option<u64> {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric()) {
            *i += 1;
        }
        parse_u64(&rest[start..*i])
    };
    let mut offset = None;
    if b.get(i) == Some(&b'+') {
        i += 1;
        offset = Some(number(&mut i).ok_or(err(ExprErrorKind::BadOffset, base + i))?);
    }
    let mut len_bytes = None;
    if b.get(i) == Some(&b'/') {
        i += 1;
        let at = base + i;
        let len = number(&mut i).ok_or(err(ExprErrorKind::BadLength, at))?;
        if len == 0 {
            return Err(err(ExprErrorKind::BadLength, at));
        }
        len_bytes = Some(len);
    }
    if i != b.len() {
        return Err(err(ExprErrorKind::Trailing, base + i));
    }
    Ok(SymbolExpr {
        module,
        name,
        steps,
        offset,
        len_bytes,
        access: access.unwrap_or(Access::Write),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(text: &str) -> SymbolExpr {
        match WatchExpr::parse(text) {
            Ok(WatchExpr::Symbol(s)) => s,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn plain_names_default_to_write() {
        let s = sym("counter");
        assert_eq!(s.name, "counter");
        assert_eq!(s.access, Access::Write);
        assert_eq!((s.module, s.offset, s.len_bytes), (None, None, None));
        assert_eq!(sym("counter:rw").access, Access::ReadWrite);
        assert_eq!(sym("counter:r").access, Access::Read);
        assert_eq!(sym("main:x").access, Access::Execute);
    }

    #[test]
    fn paths_steps_offsets_and_modules() {
        let s = sym("libfix.so:cfg.pos.y");
        assert_eq!(s.module.as_deref(), Some("libfix.so"));
        assert_eq!(s.name, "cfg");
        assert_eq!(
            s.steps,
            vec![Step::Field("pos".into()), Step::Field("y".into())]
        );
        let s = sym("cfg.arr[3].x+2/0x2:rw");
        assert_eq!(
            s.steps,
            vec![
                Step::Field("arr".into()),
                Step::Index(3),
                Step::Field("x".into())
            ]
        );
        assert_eq!(
            (s.offset, s.len_bytes, s.access),
            (Some(2), Some(2), Access::ReadWrite)
        );
        let s = sym("demo::BALANCE");
        assert_eq!((s.name.as_str(), s.module), ("demo::BALANCE", None));
        // `::x` is a path segment, not the access suffix.
        let s = sym("a::x");
        assert_eq!((s.name.as_str(), s.access), ("a::x", Access::Write));
        let s = sym("libc.so.6:crate::m::V[2]:r");
        assert_eq!(s.module.as_deref(), Some("libc.so.6"));
        assert_eq!((s.name.as_str(), s.access), ("crate::m::V", Access::Read));
        assert_eq!(s.steps, vec![Step::Index(2)]);
        assert_eq!(sym("t.0").steps, vec![Step::Field("0".into())]);
        assert_eq!(sym("x/4").to_string(), "x/4");
    }

    #[test]
    fn address_forms_go_to_hwbp_core() {
        assert_eq!(
            WatchExpr::parse("0x1000/4:rw"),
            Ok(WatchExpr::Address(Spec::user(0x1000, 4, Access::ReadWrite)))
        );
        assert_eq!(
            WatchExpr::parse("mem:0x1000"),
            Ok(WatchExpr::Address(Spec::user(0x1000, 4, Access::ReadWrite)))
        );
        assert!(matches!(
            WatchExpr::parse("0xzz"),
            Err(ResolveError::Spec(_))
        ));
    }

    #[test]
    fn bad_text_names_the_position() {
        let e = |t: &str| match WatchExpr::parse(t) {
            Err(ResolveError::Parse(e)) => (e.kind, e.at),
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(e(""), (ExprErrorKind::Empty, 0));
        assert_eq!(e(":x1"), (ExprErrorKind::EmptyModule, 0));
        assert_eq!(e("a."), (ExprErrorKind::ExpectedField, 2));
        assert_eq!(e("a[1"), (ExprErrorKind::BadIndex, 1));
        assert_eq!(e("a[q]"), (ExprErrorKind::BadIndex, 1));
        assert_eq!(e("a+"), (ExprErrorKind::BadOffset, 2));
        assert_eq!(e("a/0"), (ExprErrorKind::BadLength, 2));
        assert_eq!(e("a b"), (ExprErrorKind::Trailing, 1));
        assert_eq!(e("lib.so:"), (ExprErrorKind::ExpectedName, 7));
        assert_eq!(e("a::"), (ExprErrorKind::ExpectedName, 3));
    }
}
