//! `--trace-out FILE`: the hits as a Chrome/Perfetto trace (JSON object format), one track per
//! thread, one instant event per hit, streamed to the file as hits arrive.
//!
//! Format: the Trace Event Format's `{"traceEvents":[...]}` with `ph:"M"` `thread_name`
//! metadata events and `ph:"i"` (`s:"t"`, thread-scoped) instant events, `ts` in microseconds.
//! Open the file in ui.perfetto.dev or chrome://tracing.
//!
//! Not for: anything but writing the file.

use std::collections::HashSet;
use std::io::{self, Write};

use serde_json::json;

use crate::hit::Hit;
use crate::report::{site_text, value_text, WatchInfo};

/// A trace being written.
pub struct TraceWriter<W: Write> {
    out: W,
    pid: i32,
    named: HashSet<u32>,
}

impl<W: Write> TraceWriter<W> {
    /// Starts the trace of process `pid`.
    pub fn new(mut out: W, pid: i32, process_name: &str) -> io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        let meta = json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid,
                          "args": {"name": process_name}});
        write!(out, "{meta}")?;
        Ok(TraceWriter {
            out,
            pid,
            named: HashSet::new(),
        })
    }

    fn event(&mut self, v: &serde_json::Value) -> io::Result<()> {
        // The process_name record is always first, so every event follows a comma.
        self.out.write_all(b",\n")?;
        write!(self.out, "{v}")
    }

    /// Adds one hit (and the thread's name the first time the thread is seen).
    pub fn hit(&mut self, hit: &Hit, watches: &[WatchInfo]) -> io::Result<()> {
        if self.named.insert(hit.tid) {
            let name = hit.thread.as_deref().unwrap_or("?");
            let meta = json!({"ph": "M", "name": "thread_name", "pid": self.pid, "tid": hit.tid,
                              "args": {"name": format!("{name} ({})", hit.tid)}});
            self.event(&meta)?;
        }
        let w = &watches[hit.watch];
        let ev = json!({
            "name": format!("{} {}", hit.access.as_str(), w.label),
            "cat": "hwbp",
            "ph": "i",
            "s": "t",
            "ts": hit.time_ns as f64 / 1000.0,
            "pid": self.pid,
            "tid": hit.tid,
            "args": {
                "site": site_text(&hit.site),
                "value": value_text(hit.value.as_deref(), w.signed),
            },
        });
        self.event(&ev)
    }

    /// Closes the JSON and flushes; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwbp_core::{Access, Spec};
    use std::sync::Arc;

    #[test]
    fn one_track_per_thread_and_valid_json() {
        let watches = vec![WatchInfo {
            label: "x".into(),
            spec: Spec::user(0x10, 4, Access::Write),
            signed: false,
        }];
        let mut t = TraceWriter::new(Vec::new(), 42, "prog").unwrap();
        for (tid, ns) in [(42, 1000), (43, 2500), (42, 4000)] {
            let hit = Hit {
                time_ns: ns,
                tid,
                thread: Some(Arc::from("w")),
                cpu: None,
                watch: 0,
                access: Access::Write,
                site: Arc::new(crate::hit::unknown_site(0x99)),
                value: Some(vec![7, 0, 0, 0]),
                changed: None,
                backtrace: Vec::new(),
                unwind: None,
            };
            t.hit(&hit, &watches).unwrap();
        }
        let bytes = t.finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let names: Vec<_> = evs.iter().filter(|e| e["name"] == "thread_name").collect();
        assert_eq!(names.len(), 2);
        let hits: Vec<_> = evs.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[1]["ts"], 2.5);
        assert_eq!(hits[1]["tid"], 43);
        assert_eq!(hits[1]["args"]["value"], "7");
    }
}
