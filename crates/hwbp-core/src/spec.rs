//! Breakpoint specs: a region, an access kind and a privilege, and their text forms.
//!
//! Two text forms are accepted:
//! - hwbp's own `ADDR[/LEN][:ACCESS][:MOD]`, defaults `LEN = 8` (one machine word) and
//!   `ACCESS = w` (gdb's `watch`);
//! - perf's `mem:ADDR[/LEN][:ACCESS][:MOD]`, with exactly perf's defaults
//!   (`tools/perf/util/parse-events.c`, `parse_events_add_breakpoint()`): `ACCESS = rw`,
//!   `LEN = 4` for data and `sizeof(long) = 8` for `x`.
//!
//! `ADDR` is hex (`0x...`) or decimal, `LEN` decimal bytes, `ACCESS` one of `r`, `w`, `rw`, `x`
//! (perf's form also takes the letters in any order), and `MOD` is `u` (user-mode accesses only,
//! the default, like perf's `:u`) or `k` (kernel-mode accesses too, needed for kernel addresses).
//!
//! Not for: symbolic names (`NAME`, `NAME.field`); those are resolved to addresses by the
//! Linux front end and then become specs.

use core::fmt;

use crate::access::Access;
use crate::attr::BpAttr;
use crate::error::RuleError;

/// A contiguous range of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region {
    /// First byte.
    pub addr: u64,
    /// Number of bytes (at least 1 in a valid region).
    pub len_bytes: u64,
}

impl Region {
    /// A region, without checks.
    pub const fn new(addr: u64, len_bytes: u64) -> Region {
        Region { addr, len_bytes }
    }

    /// The last byte, or `None` for an empty or wrapping region.
    pub const fn last(&self) -> Option<u64> {
        if self.len_bytes == 0 {
            return None;
        }
        self.addr.checked_add(self.len_bytes - 1)
    }

    /// One past the last byte, or `None` if that does not fit in `u64`.
    pub const fn end(&self) -> Option<u64> {
        self.addr.checked_add(self.len_bytes)
    }

    /// Checks that the region is non-empty and does not wrap.
    pub const fn check(&self) -> Result<(), RuleError> {
        if self.len_bytes == 0 {
            return Err(RuleError::ZeroLength);
        }
        if self.last().is_none() {
            return Err(RuleError::AddressWrap {
                addr: self.addr,
                len_bytes: self.len_bytes,
            });
        }
        Ok(())
    }

    /// Whether the two regions share at least one byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => self.addr <= b_last && other.addr <= a_last,
            _ => false,
        }
    }

    /// Whether every byte of `other` is inside `self`.
    pub const fn contains(&self, other: &Region) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => self.addr <= other.addr && b_last <= a_last,
            _ => false,
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}/{}", self.addr, self.len_bytes)
    }
}

/// Whose accesses count, which also decides which addresses may be watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    /// User-mode accesses only (`exclude_kernel = 1`); user addresses only.
    User,
    /// Kernel-mode accesses too (`exclude_kernel = 0`); needed for kernel addresses and to see
    /// the kernel writing into watched user memory (`read(2)` into a buffer).
    Kernel,
}

/// A breakpoint request: what to watch, for which accesses, at which privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    /// The bytes to watch (for execute: the instruction's address; see the arch planners).
    pub region: Region,
    /// Which accesses trap.
    pub access: Access,
    /// Whose accesses count.
    pub privilege: Privilege,
}

impl Spec {
    /// A user-mode spec.
    pub const fn user(addr: u64, len_bytes: u64, access: Access) -> Spec {
        Spec {
            region: Region::new(addr, len_bytes),
            access,
            privilege: Privilege::User,
        }
    }

    /// The raw perf attribute for watching exactly this region with one slot.
    pub const fn attr(&self) -> BpAttr {
        BpAttr {
            addr: self.region.addr,
            len_bytes: self.region.len_bytes,
            bp_type: self.access.bp_type(),
            exclude_kernel: matches!(self.privilege, Privilege::User),
            disabled: false,
        }
    }

    /// Parses either text form (see the module docs).
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let text = text.trim();
        match text.strip_prefix("mem:") {
            Some(rest) => parse_form(rest, Form::Perf),
            None => parse_form(text, Form::Hwbp),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.region, self.access)?;
        if self.privilege == Privilege::Kernel {
            f.write_str(":k")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Hwbp,
    Perf,
}

/// A spec whose text cannot be parsed, or that names an impossible region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecError {
    /// Nothing before `/` or `:`.
    MissingAddress,
    /// The address is neither `0x`-hex nor decimal, or does not fit in 64 bits.
    BadAddress,
    /// The length is not a decimal number.
    BadLength,
    /// The access is not `r`, `w`, `rw` or `x` (perf form: letters from `rwx`).
    BadAccess,
    /// The access letters combine execute with read or write, which no arch supports.
    ExecuteWithData,
    /// A modifier other than `u` or `k`, or text after it.
    BadModifier,
    /// The region is empty or wraps.
    Rule(RuleError),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMS: &str = "expected ADDR[/LEN][:r|w|rw|x] or mem:ADDR[/LEN][:ACCESS], \
                             e.g. 0x404050/8:w";
        match self {
            SpecError::MissingAddress => write!(f, "no address given; {FORMS}"),
            SpecError::BadAddress => write!(
                f,
                "the address must be 0x-prefixed hex or decimal and fit in 64 bits; {FORMS}"
            ),
            SpecError::BadLength => write!(f, "LEN must be a decimal number of bytes; {FORMS}"),
            SpecError::BadAccess => write!(f, "ACCESS must be r, w, rw or x; {FORMS}"),
            SpecError::ExecuteWithData => f.write_str(
                "execute (x) cannot be combined with r or w in one breakpoint; \
                 use two specs",
            ),
            SpecError::BadModifier => {
                f.write_str("after ACCESS only :u (user accesses, default) or :k is allowed")
            }
            SpecError::Rule(r) => r.fmt(f),
        }
    }
}

impl From<RuleError> for SpecError {
    fn from(e: RuleError) -> Self {
        SpecError::Rule(e)
    }
}

/// Parses a number: `0x` hex or decimal.
pub fn parse_u64(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }
}

fn parse_access(text: &str, form: Form) -> Result<Access, SpecError> {
    if form == Form::Hwbp {
        return Access::parse(text).ok_or(SpecError::BadAccess);
    }
    // perf: PE_MODIFIER_BP is one to three letters of r, w, x in any order.
    let mut bits = 0u32;
    if text.is_empty() || text.len() > 3 {
        return Err(SpecError::BadAccess);
    }
    for c in text.chars() {
        let bit = match c {
            'r' => crate::access::BP_R,
            'w' => crate::access::BP_W,
            'x' => crate::access::BP_X,
            _ => return Err(SpecError::BadAccess),
        };
        if bits & bit != 0 {
            return Err(SpecError::BadAccess);
        }
        bits |= bit;
    }
    Access::from_bp_type(bits).ok_or(SpecError::ExecuteWithData)
}

fn parse_form(text: &str, form: Form) -> Result<Spec, SpecError> {
    let mut parts = text.split(':');
    let head = parts.next().unwrap_or("");
    let access_text = parts.next();
    let modifier = parts.next();
    if parts.next().is_some() {
        return Err(SpecError::BadModifier);
    }
    let (addr_text, len_text) = match head.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (head, None),
    };
    if addr_text.is_empty() {
        return Err(SpecError::MissingAddress);
    }
    let addr = parse_u64(addr_text).ok_or(SpecError::BadAddress)?;
    let access = match access_text {
        Some(a) => parse_access(a, form)?,
        None if form == Form::Perf => Access::ReadWrite,
        None => Access::Write,
    };
    let len_bytes = match len_text {
        Some(l) => {
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SpecError::BadLength);
            }
            l.parse().map_err(|_| SpecError::BadLength)?
        }
        None => match (form, access) {
            (Form::Perf, Access::Execute) => 8,
            (Form::Perf, _) => 4,
            (Form::Hwbp, _) => 8,
        },
    };
    let privilege = match modifier {
        None | Some("u") => Privilege::User,
        Some("k") | Some("uk") | Some("ku") => Privilege::Kernel,
        Some(_) => return Err(SpecError::BadModifier),
    };
    let spec = Spec {
        region: Region::new(addr, len_bytes),
        access,
        privilege,
    };
    spec.region.check()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwbp_form_defaults_are_word_and_write() {
        assert_eq!(
            Spec::parse("0x1000"),
            Ok(Spec::user(0x1000, 8, Access::Write))
        );
        assert_eq!(
            Spec::parse("4096/3"),
            Ok(Spec::user(4096, 3, Access::Write))
        );
        assert_eq!(
            Spec::parse("0x10/2:rw"),
            Ok(Spec::user(0x10, 2, Access::ReadWrite))
        );
        assert_eq!(
            Spec::parse("0x10:x"),
            Ok(Spec::user(0x10, 8, Access::Execute))
        );
        assert_eq!(
            Spec::parse("0xffffffff81000000/8:w:k").map(|s| s.privilege),
            Ok(Privilege::Kernel)
        );
    }

    #[test]
    fn perf_form_takes_perfs_defaults() {
        // parse_events_add_breakpoint(): no type -> R|W; no len -> 4, or sizeof(long) for X.
        assert_eq!(
            Spec::parse("mem:0x1000"),
            Ok(Spec::user(0x1000, 4, Access::ReadWrite))
        );
        assert_eq!(
            Spec::parse("mem:0x1000:x"),
            Ok(Spec::user(0x1000, 8, Access::Execute))
        );
        assert_eq!(
            Spec::parse("mem:0x1000/8:wr"),
            Ok(Spec::user(0x1000, 8, Access::ReadWrite))
        );
        assert_eq!(
            Spec::parse("mem:0x1000/8:w:u"),
            Ok(Spec::user(0x1000, 8, Access::Write))
        );
        assert_eq!(
            Spec::parse("mem:0x1000:rx"),
            Err(SpecError::ExecuteWithData)
        );
        assert_eq!(Spec::parse("mem:0x1000:ww"), Err(SpecError::BadAccess));
    }

    #[test]
    fn bad_text_names_the_part() {
        assert_eq!(Spec::parse(""), Err(SpecError::MissingAddress));
        assert_eq!(Spec::parse("/8"), Err(SpecError::MissingAddress));
        assert_eq!(Spec::parse("0xzz"), Err(SpecError::BadAddress));
        assert_eq!(Spec::parse("0x"), Err(SpecError::BadAddress));
        assert_eq!(Spec::parse("0x10/0x8"), Err(SpecError::BadLength));
        assert_eq!(Spec::parse("0x10/"), Err(SpecError::BadLength));
        assert_eq!(Spec::parse("0x10:q"), Err(SpecError::BadAccess));
        assert_eq!(Spec::parse("0x10:w:z"), Err(SpecError::BadModifier));
        assert_eq!(Spec::parse("0x10:w:u:u"), Err(SpecError::BadModifier));
        assert_eq!(
            Spec::parse("0x10/0"),
            Err(SpecError::Rule(RuleError::ZeroLength))
        );
        assert_eq!(
            Spec::parse("0xffffffffffffffff/2"),
            Err(SpecError::Rule(RuleError::AddressWrap {
                addr: u64::MAX,
                len_bytes: 2
            }))
        );
    }

    #[test]
    fn regions_overlap_and_contain() {
        let a = Region::new(0x10, 8);
        assert!(a.overlaps(&Region::new(0x17, 1)));
        assert!(!a.overlaps(&Region::new(0x18, 1)));
        assert!(!a.overlaps(&Region::new(0x0f, 1)));
        assert!(a.contains(&Region::new(0x10, 8)));
        assert!(!a.contains(&Region::new(0x10, 9)));
    }
}
