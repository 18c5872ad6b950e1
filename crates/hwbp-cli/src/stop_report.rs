//! Stop-mode hit records: the text line with `old -> new` (and the registers with `--regs`),
//! the `hwbp.hit/2` JSON record, and the `hwbp.break/1` record (schemas in docs/JSON.md).
//!
//! Not for: the start and summary records, shared with non-stop mode ([`crate::report`]).

use std::fmt::Write as _;

use hwbp::ptrace::{Hit as StopHit, Regs, Value, ValueType};
use serde_json::{json, Value as Json};

use crate::hit::Hit;
use crate::report::{backtrace_json, backtrace_text, value_text, SiteCache, WatchInfo};

/// The JSON schema id of stop-mode hit records (exact `old`/`new`, `regs`).
pub const STOP_HIT_SCHEMA: &str = "hwbp.hit/2";
/// The JSON schema id of the `--break` record.
pub const BREAK_SCHEMA: &str = "hwbp.break/1";

/// The registers printed with `--regs`, in this order (the rest are in the JSON record).
const SHOWN: [&str; 18] = [
    "rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
    "r13", "r14", "r15", "eflags",
];

/// The type's name as `--if` and the JSON record show it: `i64`, `u8`, `bool`, `f64`, `ptr`,
/// `bytes`.
pub fn type_name(ty: ValueType) -> String {
    match ty {
        ValueType::Signed { len_bytes } => format!("i{}", 8 * u32::from(len_bytes)),
        ValueType::Unsigned { len_bytes } => format!("u{}", 8 * u32::from(len_bytes)),
        ValueType::Bool => "bool".into(),
        ValueType::F32 => "f32".into(),
        ValueType::F64 => "f64".into(),
        ValueType::Pointer { .. } => "ptr".into(),
        _ => "bytes".into(),
    }
}

/// A watched value as text, typed: decimal integers, floats, `true`/`false`, pointers and
/// untyped regions of other lengths in hex.
pub fn typed_text(ty: ValueType, bytes: &[u8]) -> String {
    match ty {
        ValueType::Bytes => value_text(Some(bytes), false),
        _ => ty.decode(bytes).to_string(),
    }
}

/// An integer value as a JSON number when it fits one exactly (i64 or u64), else `null`.
fn int_json(ty: ValueType, bytes: &[u8]) -> Json {
    match (ty, ty.decode(bytes)) {
        (ValueType::Signed { .. } | ValueType::Unsigned { .. }, Value::Int(v)) => i64::try_from(v)
            .map(Json::from)
            .or_else(|_| u64::try_from(v).map(Json::from))
            .unwrap_or(Json::Null),
        _ => Json::Null,
    }
}

fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    // Two table lookups per byte: `write!` per byte was a fifth of hwbp's time per hit
    // when every hit is written as JSON (docs/BENCHMARKS.md, stop mode).
    for b in bytes.iter().rev() {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// One hit as text, appended to `out`:
/// `   0.000012    4242 stop_target     w  target = -93 -> -86  seq (stop_target.c:44)`,
/// then `condition error: ...` if the condition could not be evaluated, then with
/// `--backtrace` one indented line per caller (as in non-stop mode), then with `regs` one
/// indented line of registers.
#[allow(clippy::too_many_arguments)]
pub fn hit_text(
    out: &mut String,
    hit: &Hit,
    stop: &StopHit<'_>,
    ty: ValueType,
    regs: Option<&Regs>,
    watches: &[WatchInfo],
    cache: &mut SiteCache,
) {
    let w = &watches[hit.watch];
    let _ = write!(
        out,
        "{:>11}  {:>7} {:<15} {:<2} {} = {} -> {}  {}",
        secs(hit.time_ns),
        hit.tid,
        hit.thread.as_deref().unwrap_or("?"),
        hit.access.as_str(),
        w.label,
        typed_text(ty, stop.old),
        typed_text(ty, stop.new),
        cache.text(&hit.site),
    );
    if let Some(e) = stop.condition_error {
        let _ = write!(out, "  [--if: {e}]");
    }
    out.push('\n');
    backtrace_text(out, hit, cache);
    if let Some(r) = regs {
        out.push_str("             ");
        for (i, name) in SHOWN.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{name}={:#x}", r.get(name).unwrap_or(0));
        }
        out.push('\n');
    }
}

/// One hit as a `hwbp.hit/2` JSON Lines record, newline included, appended to `out`; with
/// `--backtrace` it ends with `backtrace` and `unwind`, as `hwbp.hit/1` does.
#[allow(clippy::too_many_arguments)]
pub fn hit_json(
    out: &mut String,
    hit: &Hit,
    stop: &StopHit<'_>,
    ty: ValueType,
    regs: Option<&Regs>,
    watches: &[WatchInfo],
    cache: &mut SiteCache,
) {
    let w = &watches[hit.watch];
    let regs = regs.map_or(Json::Null, |r| {
        Json::Object(
            Regs::NAMES
                .iter()
                .zip(r.values)
                .map(|(n, v)| ((*n).to_owned(), Json::from(format!("{v:#x}"))))
                .collect(),
        )
    });
    let _ = write!(
        out,
        "{{\"schema\":\"{STOP_HIT_SCHEMA}\",\"time_ns\":{},\"tid\":{},\"thread\":{},\"cpu\":null,\
         \"watch\":{},\"label\":{},\"access\":\"{}\",{},\"type\":\"{}\",\"old\":\"{}\",\
         \"new\":\"{}\",\"old_text\":{},\"new_text\":{},\"old_int\":{},\"new_int\":{},\
         \"changed\":{},\"condition_error\":{},\"seq\":{},\"regs\":{}",
        hit.time_ns,
        hit.tid,
        Json::from(hit.thread.as_deref()),
        hit.watch + 1,
        Json::from(w.label.as_str()),
        hit.access.as_str(),
        cache.json(&hit.site),
        type_name(ty),
        hex(stop.old),
        hex(stop.new),
        Json::from(typed_text(ty, stop.old)),
        Json::from(typed_text(ty, stop.new)),
        int_json(ty, stop.old),
        int_json(ty, stop.new),
        stop.old != stop.new,
        Json::from(stop.condition_error.map(|e| e.to_string())),
        stop.seq,
        regs,
    );
    backtrace_json(out, hit, cache);
    out.push_str("}\n");
}

/// The `hwbp.break/1` record, newline included.
pub fn break_json(pid: i32, gdb_command: &str) -> String {
    let mut s = json!({"schema": BREAK_SCHEMA, "pid": pid, "gdb_command": gdb_command}).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_print_exactly() {
        let s8 = ValueType::Signed { len_bytes: 8 };
        assert_eq!(typed_text(s8, &(-93i64).to_le_bytes()), "-93");
        assert_eq!(
            typed_text(
                ValueType::Unsigned { len_bytes: 8 },
                &u64::MAX.to_le_bytes()
            ),
            "18446744073709551615"
        );
        assert_eq!(typed_text(ValueType::F64, &1.5f64.to_le_bytes()), "1.5");
        assert_eq!(typed_text(ValueType::Bool, &[1]), "true");
        assert_eq!(
            typed_text(
                ValueType::Pointer { len_bytes: 8 },
                &0x1000u64.to_le_bytes()
            ),
            "0x1000"
        );
        assert_eq!(typed_text(ValueType::Bytes, &[1, 2, 3]), "0x030201");
        assert_eq!(type_name(s8), "i64");
        assert_eq!(type_name(ValueType::Unsigned { len_bytes: 2 }), "u16");
        assert_eq!(int_json(s8, &(-2i64).to_le_bytes()), Json::from(-2));
        assert_eq!(
            int_json(
                ValueType::Unsigned { len_bytes: 8 },
                &u64::MAX.to_le_bytes()
            ),
            Json::from(u64::MAX)
        );
        assert_eq!(int_json(ValueType::F64, &1.0f64.to_le_bytes()), Json::Null);
    }
}
