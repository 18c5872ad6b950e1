//! `hwbp caps`: what this machine allows, probed for real, with a self-test that a watched
//! write fires exactly once; text or `--json` (schema hwbp.caps/1).
//!
//! Not for: probing (that is `hwbp::caps`); this module only presents the report.

use std::fmt::Write as _;
use std::process::ExitCode;

use hwbp::caps::{Caps, LockLimits, Probe, SelfTest};
use serde_json::{json, Value};

use crate::messages::{self, Failure};

/// `hwbp caps [--json]`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 if the self-test passed (a watched write fired exactly \
    once), 1 if it did not."
)]
pub struct Args {
    /// One JSON object instead of text
    #[arg(long)]
    json: bool,
}

fn probe_text(p: Probe) -> String {
    match p {
        Probe::Yes => "yes".to_owned(),
        Probe::No(e) => format!("no ({e})"),
    }
}

fn probe_json(p: Probe) -> Value {
    match p {
        Probe::Yes => json!(true),
        Probe::No(e) => json!(e.to_string()),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// The lengths accepted for each type, as `w: 1 2 4 8`.
fn accepted(c: &Caps, bp_type: u32) -> Vec<u64> {
    c.accepted
        .iter()
        .filter(|a| a.bp_type == bp_type && a.probe.ok())
        .map(|a| a.len_bytes)
        .collect()
}

const TYPES: [(&str, u32); 4] = [("r", 1), ("w", 2), ("rw", 3), ("x", 4)];

/// The report as text.
pub fn text(c: &Caps) -> String {
    let mut s = String::new();
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        s,
        "breakpoint PMU:        {}",
        c.breakpoint_pmu_type.map_or_else(
            || "absent (no hardware breakpoints: a VM or kernel without them)".to_owned(),
            |t| format!("present (perf type {t})")
        )
    );
    let _ = writeln!(
        s,
        "kernel:                {}",
        opt(c.kernel_release.as_deref())
    );
    let _ = writeln!(s, "perf_event_paranoid:   {}", opt(c.perf_event_paranoid));
    let _ = writeln!(
        s,
        "yama ptrace_scope:     {}",
        c.yama_ptrace_scope.map_or_else(
            || "no Yama (ptrace limited only by uid and capabilities)".to_owned(),
            |scope| scope.to_string()
        )
    );
    let _ = writeln!(
        s,
        "capabilities:          CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_SYS_PTRACE {}, CAP_KILL {}",
        yn(c.cap_perfmon),
        yn(c.cap_sys_admin),
        yn(c.cap_sys_ptrace),
        yn(c.cap_kill)
    );
    let cpus: Vec<String> = c.online_cpus.iter().map(u32::to_string).collect();
    let _ = writeln!(s, "online CPUs:           {}", cpus.join(","));
    let _ = writeln!(
        s,
        "slots per thread:      {}",
        match c.slots {
            Ok(n) => n.to_string(),
            Err(e) => format!("none ({e})"),
        }
    );
    for (name, t) in TYPES {
        let lens: Vec<String> = accepted(c, t).iter().map(u64::to_string).collect();
        let lens = if lens.is_empty() {
            "refused".to_owned()
        } else {
            format!("{} bytes", lens.join(", "))
        };
        let _ = writeln!(s, "  {name:<2} lengths:          {lens}");
    }
    let _ = writeln!(
        s,
        "kernel accesses:       {}",
        probe_text(c.kernel_accesses)
    );
    let _ = writeln!(s, "CPU-wide events:       {}", probe_text(c.cpu_wide));
    let _ = writeln!(
        s,
        "modify attributes:     {}",
        probe_text(c.modify_attributes)
    );
    let _ = writeln!(s, "sigtrap delivery:      {}", probe_text(c.sigtrap));
    let _ = writeln!(s, "inherit_thread:        {}", probe_text(c.inherit_thread));
    let limits = LockLimits::read();
    let _ = writeln!(
        s,
        "perf ring memory:      {}",
        if limits.exempt {
            "unlimited (CAP_IPC_LOCK)".to_owned()
        } else {
            format!("{limits}: `hwbp run` shrinks its rings to fit")
        }
    );
    let _ = writeln!(
        s,
        "stop-mode agent:       {}",
        if hwbp::ptrace::agent::available() {
            "yes (preloaded into programs `hwbp run --stop` starts)"
        } else {
            "no (not built for this target: stop mode uses ptrace)"
        }
    );
    let _ = writeln!(
        s,
        "self-test:             {}",
        match c.self_test {
            SelfTest::Hits(1) => "passed (1 watched write, 1 hit)".to_owned(),
            SelfTest::Hits(n) => format!(
                "FAILED: 1 watched write counted {n} hits (debug exceptions are dropped, \
                 e.g. by a hypervisor)"
            ),
            SelfTest::NotArmed(e) => format!("FAILED: could not arm a watch ({e})"),
        }
    );
    s
}

/// The report as JSON (`hwbp.caps/1`).
pub fn to_json(c: &Caps) -> Value {
    let mut lengths = serde_json::Map::new();
    for (name, t) in TYPES {
        lengths.insert(name.to_owned(), json!(accepted(c, t)));
    }
    let limits = LockLimits::read();
    json!({
        "schema": "hwbp.caps/1",
        "breakpoint_pmu_type": c.breakpoint_pmu_type,
        "kernel_release": c.kernel_release,
        "perf_event_paranoid": c.perf_event_paranoid,
        "yama_ptrace_scope": c.yama_ptrace_scope,
        "cap_perfmon": c.cap_perfmon,
        "cap_sys_admin": c.cap_sys_admin,
        "cap_sys_ptrace": c.cap_sys_ptrace,
        "cap_kill": c.cap_kill,
        "online_cpus": c.online_cpus,
        "slots": match c.slots { Ok(n) => json!(n), Err(e) => json!(e.to_string()) },
        "lengths": lengths,
        "kernel_accesses": probe_json(c.kernel_accesses),
        "cpu_wide": probe_json(c.cpu_wide),
        "modify_attributes": probe_json(c.modify_attributes),
        "sigtrap": probe_json(c.sigtrap),
        "inherit_thread": probe_json(c.inherit_thread),
        "ring_memory": {
            "unlimited": limits.exempt,
            "perf_event_mlock_kb": limits.mlock_kb,
            "rlimit_memlock_kb": limits.memlock_kb,
        },
        "stop_agent": hwbp::ptrace::agent::available(),
        "self_test": match c.self_test {
            SelfTest::Hits(n) => json!({"passed": n == 1, "hits": n}),
            SelfTest::NotArmed(e) => json!({"passed": false, "error": e.to_string()}),
        },
    })
}

/// Runs `hwbp caps`.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let c = hwbp::caps();
    let out = if args.json {
        format!("{}\n", to_json(&c))
    } else {
        text(&c)
    };
    messages::output(&out)?;
    Ok(if c.self_test.passed() {
        messages::Status::Success.into()
    } else {
        messages::Status::Failed.into()
    })
}
