//! Turning hits into text: one line per hit, JSON Lines (schema in docs/JSON.md), and the
//! summary of accessing sites printed at exit.
//!
//! Not for: writing anywhere (the session hands the strings to [`crate::messages`]) or
//! deciding which hits to report ([`crate::hit::Filter`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use hwbp_core::{Access, Spec};
use serde_json::{json, Value};

use hwbp::symbols::symbolize::{Frame, Site};

use crate::hit::{value_int, Hit};

/// The JSON schema id of hit records; bump the number on an incompatible change.
pub const HIT_SCHEMA: &str = "hwbp.hit/1";
/// The JSON schema id of the start record.
pub const START_SCHEMA: &str = "hwbp.start/1";
/// The JSON schema id of the summary record.
pub const SUMMARY_SCHEMA: &str = "hwbp.summary/1";

/// What the report needs to know about one watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchInfo {
    /// The name the user gave (`BALANCE`, `cfg.pos.y`, `0x4010/8`).
    pub label: String,
    /// The resolved spec.
    pub spec: Spec,
    /// Whether the value is a signed integer (from DWARF; unsigned when unknown).
    pub signed: bool,
}

/// The frame a site is reported as: the innermost frame outside the Rust toolchain's own
/// sources ([`Site::primary_frame`]), so the function and the file:line always come from the
/// same frame — an inlined `corrupt()` is reported as `corrupt` at its own line, not as its
/// caller at `corrupt`'s line; an inlined `AtomicI64::fetch_add` as the code that called it.
fn reported_frame(site: &Site) -> Option<&Frame> {
    site.primary_frame()
}

fn access_str(a: Access) -> &'static str {
    a.as_str()
}

fn frame_text(f: &Frame, out: &mut String) {
    out.push_str(f.function.as_deref().unwrap_or("??"));
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let _ = write!(out, " ({file}:{line})");
        }
        (Some(file), None) => {
            let _ = write!(out, " ({file})");
        }
        _ => {}
    }
}

/// `function (file:line)`, inlined frames as `f (a.c:3) inlined into g (a.c:10)`, or
/// `0x... (module)` when nothing is known.
pub fn site_text(site: &Site) -> String {
    let mut out = String::new();
    if site.frames.is_empty() {
        let _ = write!(out, "{:#x}", site.access.ip);
        if let Some(name) = site.module.as_deref().and_then(|m| m.file_name()) {
            let _ = write!(out, " ({})", name.to_string_lossy());
        }
        return out;
    }
    for (i, f) in site.frames.iter().enumerate() {
        if i > 0 {
            out.push_str(" inlined into ");
        }
        frame_text(f, &mut out);
    }
    out
}

/// The value as text: a decimal integer for 1/2/4/8 bytes, else hex bytes.
pub fn value_text(bytes: Option<&[u8]>, signed: bool) -> String {
    match bytes {
        None => "?".to_owned(),
        Some(b) => match value_int(b, signed) {
            Some(v) => v.to_string(),
            None => {
                let mut s = String::from("0x");
                for byte in b.iter().rev() {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
        },
    }
}

/// Seconds with microseconds: `1.234567`.
fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

/// Per-site text and JSON fragments, made once per sampled IP: after a site's first hit,
/// formatting a hit does no symbol work.
#[derive(Debug, Default)]
pub struct SiteCache {
    text: HashMap<u64, Arc<str>>,
    json: HashMap<u64, Arc<str>>,
    /// Backtrace frames (`{frames, ip, module}` objects), by return address.
    frame_json: HashMap<u64, Arc<str>>,
}

impl SiteCache {
    /// `function (file:line)` of `site` (see [`site_text`]).
    pub fn text(&mut self, site: &Site) -> Arc<str> {
        self.text
            .entry(site.trap_ip)
            .or_insert_with(|| Arc::from(site_text(site)))
            .clone()
    }

    /// One `backtrace` element of a hit record: the `{frames, ip, module}` object of a caller.
    pub fn frame_json(&mut self, site: &Site) -> Arc<str> {
        self.frame_json
            .entry(site.trap_ip)
            .or_insert_with(|| Arc::from(site_json(site).to_string()))
            .clone()
    }

    /// The `"ip":..,"function":..,"file":..,"line":..,"frames":[..]` part of a hit record.
    pub fn json(&mut self, site: &Site) -> Arc<str> {
        self.json
            .entry(site.trap_ip)
            .or_insert_with(|| {
                let outer = reported_frame(site);
                let inner = site.primary_frame();
                Arc::from(format!(
                    "\"ip\":\"{:#x}\",\"function\":{},\"file\":{},\"line\":{},\"frames\":{}",
                    site.access.ip,
                    js(outer.and_then(|f| f.function.as_deref())),
                    js(inner.and_then(|f| f.file.as_deref())),
                    js(inner.and_then(|f| f.line)),
                    frames_json(&site.frames)
                ))
            })
            .clone()
    }
}

/// A value as JSON text.
fn js(v: impl Into<Value>) -> String {
    v.into().to_string()
}

/// One hit as a text line (plus one line per backtrace frame), appended to `out`:
/// `   0.001234  1236 rogue      w BALANCE = -999000  rogue (src/demo_target.rs:55)`.
pub fn hit_text(out: &mut String, hit: &Hit, watches: &[WatchInfo], cache: &mut SiteCache) {
    let w = &watches[hit.watch];
    let _ = write!(
        out,
        "{:>11}  {:>7} {:<15} {:<2} {}",
        secs(hit.time_ns),
        hit.tid,
        hit.thread.as_deref().unwrap_or("?"),
        access_str(hit.access),
        w.label,
    );
    if hit.access.is_data() {
        let _ = write!(out, " = {}", value_text(hit.value.as_deref(), w.signed));
    }
    let _ = writeln!(out, "  {}", cache.text(&hit.site));
    backtrace_text(out, hit, cache);
}

/// A hit's backtrace frames as text, one indented line each (`#1 b (unwind.c:19)`), appended
/// to `out`; nothing without frames. Shared with stop mode's hit lines.
pub fn backtrace_text(out: &mut String, hit: &Hit, cache: &mut SiteCache) {
    for (i, s) in hit.backtrace.iter().enumerate() {
        let _ = writeln!(out, "{:>13}#{} {}", "", i + 1, cache.text(s));
    }
}

/// A hit's `,"backtrace":[..]` (when it has frames) and `,"unwind":".."` (with
/// `--backtrace`) JSON members, appended to `out`. Shared by `hwbp.hit/1` and `hwbp.hit/2`.
pub fn backtrace_json(out: &mut String, hit: &Hit, cache: &mut SiteCache) {
    if !hit.backtrace.is_empty() {
        out.push_str(",\"backtrace\":[");
        for (i, s) in hit.backtrace.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&cache.frame_json(s));
        }
        out.push(']');
    }
    if let Some(u) = hit.unwind {
        let _ = write!(out, ",\"unwind\":\"{}\"", u.as_str());
    }
}

fn frames_json(frames: &[Frame]) -> Value {
    Value::Array(
        frames
            .iter()
            .map(|f| {
                json!({
                    "function": f.function,
                    "file": f.file,
                    "line": f.line,
                    "column": f.column,
                    "inlined": f.inlined,
                })
            })
            .collect(),
    )
}

fn site_json(s: &Site) -> Value {
    json!({
        "ip": format!("{:#x}", s.access.ip),
        "module": s.module.as_deref().map(|m| m.to_string_lossy()),
        "frames": frames_json(&s.frames),
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes.iter().rev() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One hit as a JSON Lines record (`hwbp.hit/1`, see docs/JSON.md), newline included,
/// appended to `out`.
pub fn hit_json(out: &mut String, hit: &Hit, watches: &[WatchInfo], cache: &mut SiteCache) {
    let w = &watches[hit.watch];
    let value_int = hit
        .value
        .as_deref()
        .and_then(|b| value_int(b, w.signed))
        .map(|v| v as i64);
    let _ = write!(
        out,
        "{{\"schema\":\"{HIT_SCHEMA}\",\"time_ns\":{},\"tid\":{},\"thread\":{},\"cpu\":{},\
         \"watch\":{},\"label\":{},\"access\":\"{}\",{},\"value\":{},\"value_int\":{},\
         \"changed\":{}",
        hit.time_ns,
        hit.tid,
        js(hit.thread.as_deref()),
        js(hit.cpu),
        hit.watch + 1,
        js(w.label.as_str()),
        access_str(hit.access),
        cache.json(&hit.site),
        js(hit.value.as_deref().map(hex)),
        js(value_int),
        js(hit.changed),
    );
    backtrace_json(out, hit, cache);
    out.push_str("}\n");
}

/// The start record: what is watched, in which process.
/// `stop`: how stop mode stops the program (`"agent"` or `"ptrace"`); `None` in non-stop mode.
pub fn start_json(pid: i32, watches: &[WatchInfo], stop: Option<&str>) -> String {
    let ws: Vec<Value> = watches
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "watch": i + 1,
                "label": w.label,
                "addr": format!("{:#x}", w.spec.region.addr),
                "len": w.spec.region.len_bytes,
                "access": access_str(w.spec.access),
            })
        })
        .collect();
    let mut s =
        json!({"schema": START_SCHEMA, "pid": pid, "stop": stop, "watches": ws}).to_string();
    s.push('\n');
    s
}

/// One row of the summary: every hit from one source line with one access kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRow {
    /// The site of the first hit (its frames name the row).
    pub site: Arc<Site>,
    /// The access condition.
    pub access: Access,
    /// Which watch.
    pub watch: usize,
    /// Hits.
    pub hits: u64,
    /// Distinct threads.
    pub threads: BTreeSet<u32>,
    /// First and last hit time (ns since arming).
    pub first_ns: u64,
    /// Last hit time.
    pub last_ns: u64,
}

/// (function, file, line) of a site.
type LineKey = (Option<String>, Option<String>, Option<u32>);

/// Hits grouped by (watch, function, file:line, access); fed every reported hit.
#[derive(Debug, Default)]
pub struct Summary {
    rows: Vec<SiteRow>,
    index: HashMap<(usize, Option<LineKey>, Access, u64), usize>,
    /// (watch, sampled IP, access) -> row: the hot path, no string work.
    by_ip: HashMap<(usize, u64, Access), usize>,
    /// Hits fed.
    pub hits: u64,
    /// Thread names seen, by tid.
    pub names: HashMap<u32, Arc<str>>,
}

impl Summary {
    /// Adds one hit.
    pub fn add(&mut self, hit: &Hit) {
        self.hits += 1;
        if let Some(&i) = self.by_ip.get(&(hit.watch, hit.site.trap_ip, hit.access)) {
            self.bump(i, hit);
            return;
        }
        if let Some(name) = &hit.thread {
            self.names.entry(hit.tid).or_insert_with(|| name.clone());
        }
        // Group by the reported frame's function and line; unknown sites by address.
        let line = hit.site.primary_frame().map(|f| {
            (
                reported_frame(&hit.site).and_then(|o| o.function.clone()),
                f.file.clone(),
                f.line,
            )
        });
        let ip_key = if line.is_some() {
            0
        } else {
            hit.site.access.ip
        };
        let key = (hit.watch, line, hit.access, ip_key);
        let i = *self.index.entry(key).or_insert_with(|| {
            self.rows.push(SiteRow {
                site: hit.site.clone(),
                access: hit.access,
                watch: hit.watch,
                hits: 0,
                threads: BTreeSet::new(),
                first_ns: hit.time_ns,
                last_ns: hit.time_ns,
            });
            self.rows.len() - 1
        });
        self.by_ip
            .insert((hit.watch, hit.site.trap_ip, hit.access), i);
        self.bump(i, hit);
    }

    fn bump(&mut self, i: usize, hit: &Hit) {
        let row = &mut self.rows[i];
        row.hits += 1;
        row.threads.insert(hit.tid);
        row.first_ns = row.first_ns.min(hit.time_ns);
        row.last_ns = row.last_ns.max(hit.time_ns);
    }

    /// The rows, most hits first (ties: earliest first).
    pub fn rows(&self) -> Vec<&SiteRow> {
        let mut v: Vec<&SiteRow> = self.rows.iter().collect();
        v.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.first_ns.cmp(&b.first_ns)));
        v
    }
}

/// Totals shown with the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Hits the kernel delivered.
    pub seen: u64,
    /// Hits reported (after `--tid`, `--changed`, `--limit`).
    pub reported: u64,
    /// Hits lost because the ring was full.
    pub lost: u64,
    /// Wall time watched, ns.
    pub duration_ns: u64,
}

/// A source path shortened to the crate-relative part (`x/src/a.rs`).
pub fn short_file(file: &str) -> &str {
    // Keep the path readable: the part from the last `src/`, `tests/` or the file name.
    for marker in ["/src/", "/tests/"] {
        if let Some(i) = file.rfind(marker) {
            if let Some(j) = file[..i].rfind('/') {
                return &file[j + 1..];
            }
            return &file[i + 1..];
        }
    }
    file
}

/// The summary table, sorted by hit count.
pub fn summary_text(summary: &Summary, watches: &[WatchInfo], totals: &Totals) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} hits seen, {} reported, {} lost in {} s",
        totals.seen,
        totals.reported,
        totals.lost,
        secs(totals.duration_ns)
    );
    let rows = summary.rows();
    if rows.is_empty() {
        return out;
    }
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let inner = r.site.primary_frame();
            let place = match inner.and_then(|f| f.file.as_deref()) {
                Some(file) => match inner.and_then(|f| f.line) {
                    Some(l) => format!("{}:{l}", short_file(file)),
                    None => short_file(file).to_owned(),
                },
                None => format!("{:#x}", r.site.access.ip),
            };
            [
                r.hits.to_string(),
                watches[r.watch].label.clone(),
                access_str(r.access).to_owned(),
                reported_frame(&r.site)
                    .and_then(|f| f.function.clone())
                    .unwrap_or_else(|| "??".to_owned()),
                place,
                r.threads.len().to_string(),
                secs(r.first_ns),
                secs(r.last_ns),
            ]
        })
        .collect();
    let head = [
        "hits",
        "watch",
        "access",
        "function",
        "file:line",
        "threads",
        "first",
        "last",
    ];
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 8], out: &mut String| {
        let _ = writeln!(
            out,
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {:>w5$}  {:>w6$}  {:>w7$}",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            cols[4],
            cols[5],
            cols[6],
            cols[7],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5],
            w6 = width[6],
            w7 = width[7],
        );
    };
    line(head, &mut out);
    for c in &cells {
        line(
            [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7]],
            &mut out,
        );
    }
    out
}

/// The summary record (`hwbp.summary/1`), newline included.
pub fn summary_json(
    summary: &Summary,
    watches: &[WatchInfo],
    totals: &Totals,
    exit_status: Option<i32>,
) -> String {
    let sites: Vec<Value> = summary
        .rows()
        .iter()
        .map(|r| {
            let inner = r.site.primary_frame();
            json!({
                "watch": r.watch + 1,
                "label": watches[r.watch].label,
                "access": access_str(r.access),
                "function": reported_frame(&r.site).and_then(|f| f.function.as_deref()),
                "file": inner.and_then(|f| f.file.as_deref()),
                "line": inner.and_then(|f| f.line),
                "ip": format!("{:#x}", r.site.access.ip),
                "hits": r.hits,
                "threads": r.threads.len(),
                "first_ns": r.first_ns,
                "last_ns": r.last_ns,
            })
        })
        .collect();
    let mut s = json!({
        "schema": SUMMARY_SCHEMA,
        "seen": totals.seen,
        "reported": totals.reported,
        "lost": totals.lost,
        "duration_ns": totals.duration_ns,
        "exit_status": exit_status,
        "sites": sites,
    })
    .to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32, inlined: bool) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: Some(file.to_owned()),
            line: Some(line),
            column: None,
            inlined,
        }
    }

    fn site(function: &str, line: u32) -> Arc<Site> {
        let mut s = crate::hit::unknown_site(0x1000 + u64::from(line));
        s.frames = vec![frame(function, "/w/crates/x/src/demo.rs", line, false)];
        Arc::new(s)
    }

    fn hit(site: &Arc<Site>, tid: u32, t: u64, v: i64) -> Hit {
        Hit {
            time_ns: t,
            tid,
            thread: Some(Arc::from("worker")),
            cpu: Some(1),
            watch: 0,
            access: Access::Write,
            site: site.clone(),
            value: Some(v.to_le_bytes().to_vec()),
            changed: Some(true),
            backtrace: Vec::new(),
            unwind: None,
        }
    }

    fn watches() -> Vec<WatchInfo> {
        vec![WatchInfo {
            label: "BALANCE".into(),
            spec: Spec::user(0x4000, 8, Access::Write),
            signed: true,
        }]
    }

    #[test]
    fn text_line_has_time_thread_access_value_and_site() {
        let s = site("demo::rogue", 55);
        let mut line = String::new();
        hit_text(
            &mut line,
            &hit(&s, 1236, 1_234_567, -999),
            &watches(),
            &mut SiteCache::default(),
        );
        assert_eq!(
            line,
            "   0.001234     1236 worker          w  BALANCE = -999  \
             demo::rogue (/w/crates/x/src/demo.rs:55)\n"
        );
    }

    #[test]
    fn inlined_frames_read_inner_to_outer() {
        let mut s = crate::hit::unknown_site(1);
        s.frames = vec![
            frame("add", "a.c", 3, true),
            frame("main", "a.c", 10, false),
        ];
        assert_eq!(site_text(&s), "add (a.c:3) inlined into main (a.c:10)");
        assert_eq!(site_text(&crate::hit::unknown_site(0x10)), "0x10");
    }

    #[test]
    fn json_line_is_versioned_and_complete() {
        let s = site("demo::rogue", 55);
        let mut line = String::new();
        let mut cache = SiteCache::default();
        hit_json(&mut line, &hit(&s, 9, 5, -2), &watches(), &mut cache);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["schema"], "hwbp.hit/1");
        assert_eq!(v["watch"], 1);
        assert_eq!(v["value"], "0xfffffffffffffffe");
        assert_eq!(v["value_int"], -2);
        assert_eq!(v["function"], "demo::rogue");
        assert_eq!(v["line"], 55);
        assert_eq!(v["changed"], true);
        assert!(v.get("backtrace").is_none());
    }

    #[test]
    fn json_backtrace_frames_and_unwind_method() {
        let s = site("c", 11);
        let (b, a) = (site("b", 18), site("a", 26));
        let mut h = hit(&s, 9, 5, 4);
        h.backtrace = vec![b.clone(), a.clone()];
        h.unwind = Some(crate::hit::UnwindMethod::Dwarf);
        let mut cache = SiteCache::default();
        let mut line = String::new();
        // Twice: the second line comes from the per-frame cache and must be the same.
        hit_json(&mut line, &h, &watches(), &mut cache);
        let mut again = String::new();
        hit_json(&mut again, &h, &watches(), &mut cache);
        assert_eq!(line, again);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["unwind"], "dwarf");
        assert_eq!(v["backtrace"], json!([site_json(&b), site_json(&a)]));
        h.unwind = Some(crate::hit::UnwindMethod::FramePointer);
        line.clear();
        hit_json(&mut line, &h, &watches(), &mut cache);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["unwind"], "fp");
    }

    #[test]
    fn summary_groups_by_line_and_sorts_by_count() {
        let (a, b) = (site("deposit", 30), site("rogue", 55));
        let mut sum = Summary::default();
        for (s, tid, t) in [(&a, 1, 10), (&b, 2, 20), (&a, 3, 30), (&a, 1, 40)] {
            sum.add(&hit(s, tid, t, 0));
        }
        let rows = sum.rows();
        assert_eq!(
            rows.iter()
                .map(|r| (r.hits, r.threads.len(), r.first_ns, r.last_ns))
                .collect::<Vec<_>>(),
            [(3, 2, 10, 40), (1, 1, 20, 20)]
        );
        let text = summary_text(&sum, &watches(), &Totals::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "   3  BALANCE  w       deposit   x/src/demo.rs:30        2  0.000000  0.000000"
        );
        assert_eq!(
            lines[4],
            "   1  BALANCE  w       rogue     x/src/demo.rs:55        1  0.000000  0.000000"
        );
    }

    #[test]
    fn summary_reports_an_inlined_function_at_its_own_line() {
        // corrupt() inlined into main(): the row is corrupt at a.c:6, never main at a.c:6.
        let mut inlined = crate::hit::unknown_site(0x2000);
        inlined.frames = vec![
            frame("corrupt", "/w/a.c", 6, true),
            frame("main", "/w/a.c", 11, false),
        ];
        // A toolchain frame (an inlined AtomicI64::fetch_add) is skipped for the caller.
        let mut atomic = crate::hit::unknown_site(0x3000);
        atomic.frames = vec![
            frame(
                "core::sync::atomic::atomic_add",
                "/rustc/abc/library/core/src/sync/atomic.rs",
                3,
                true,
            ),
            frame("demo::deposit", "/w/a.rs", 39, false),
        ];
        let mut sum = Summary::default();
        sum.add(&hit(&Arc::new(inlined), 1, 0, 0));
        sum.add(&hit(&Arc::new(atomic), 1, 1, 0));
        let json = summary_json(&sum, &watches(), &Totals::default(), None);
        let v: Value = serde_json::from_str(&json).unwrap();
        let sites: Vec<(String, u64)> = v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["function"].as_str().unwrap().to_owned(),
                    s["line"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sites,
            [("corrupt".to_owned(), 6), ("demo::deposit".to_owned(), 39)]
        );
    }

    #[test]
    fn value_text_forms() {
        assert_eq!(value_text(Some(&[1, 0, 0, 0]), false), "1");
        assert_eq!(value_text(Some(&[1, 2, 3]), false), "0x030201");
        assert_eq!(value_text(None, false), "?");
    }
}
