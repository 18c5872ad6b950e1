//! `hwbp plan`: plans SPECs into one thread's register file and prints the pieces and the
//! register values to program.
//!
//! Not for: arming anything; no system call is made.

use std::fmt::Write as _;

use anyhow::anyhow;
use hwbp_core::arch::{Arch, ParseCtx};
use hwbp_core::regfile::{Piece, Slot};
use hwbp_core::{PoolKind, RegFile, Spec, WatchId};
use serde_json::{json, Value};

use crate::arches::{self, ArchName};
use crate::messages::Failure;
use crate::regs::ShowRegs;

/// `hwbp plan [--arch ARCH] [--slots N] [--json] SPEC...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture whose rules and registers to use [default: this host's]
    #[arg(long, value_enum)]
    arch: Option<ArchName>,
    /// Usable slots per pool (x86_64: 1-4; arm64: 2-16, breakpoints and watchpoints each;
    /// power9: 1; power10: 2)
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// What to watch: ADDR[/LEN][:r|w|rw|x][:u|k] (LEN 8, w by default) or perf's
    /// mem:ADDR[/LEN][:ACCESS]
    #[arg(value_name = "SPEC", required = true)]
    specs: Vec<String>,
}

/// The request as plain data, every SPEC parsed.
#[derive(Debug)]
struct Request {
    arch: ArchName,
    slots: Option<u32>,
    json: bool,
    specs: Vec<Spec>,
}

impl Request {
    fn from_args(args: Args) -> Result<Request, Failure> {
        let specs = args
            .specs
            .iter()
            .map(|text| {
                Spec::parse(text).map_err(|e| Failure::refused(anyhow!("bad spec '{text}': {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Request {
            arch: ArchName::or_host(args.arch)?,
            slots: args.slots,
            json: args.json,
            specs,
        })
    }
}

/// Runs `hwbp plan`; returns the text (or JSON) to print.
pub fn run(args: Args) -> Result<String, Failure> {
    let req = Request::from_args(args)?;
    match req.arch {
        ArchName::X86_64 => report(arches::x86_64(req.slots)?, &req),
        ArchName::Arm64 => report(arches::arm64(req.slots)?, &req),
        ArchName::Power9 | ArchName::Power10 => report(arches::power(req.arch, req.slots)?, &req),
    }
}

fn report<A: ShowRegs>(arch: A, req: &Request) -> Result<String, Failure> {
    let name = arch.name();
    let mut file = RegFile::new(arch, ParseCtx::ROOT_TASK);
    let total = req.specs.len();
    for (i, spec) in req.specs.iter().enumerate() {
        file.insert(spec).map_err(|e| {
            Failure::refused(anyhow!("{e}").context(format!(
                "cannot plan {spec} (spec {} of {total}) on {name}",
                i + 1
            )))
        })?;
    }
    Ok(if req.json {
        let mut s = serde_json::to_string_pretty(&to_json(&file)).unwrap_or_default();
        s.push('\n');
        s
    } else {
        to_text(&file)
    })
}

/// The pools as (kind named after, capacity, used); one entry on arches with a shared pool.
fn pools<A: Arch>(file: &RegFile<A>) -> Vec<(PoolKind, u32, u32)> {
    if file.arch().mixed_pools() {
        let k = PoolKind::Data;
        vec![(k, file.capacity(k), file.used(k))]
    } else {
        PoolKind::ALL
            .iter()
            .map(|&k| (k, file.capacity(k), file.used(k)))
            .collect()
    }
}

/// The other watches whose pieces are programmed into `slot`.
fn sharers<A: Arch>(file: &RegFile<A>, slot: Slot, me: WatchId) -> Vec<WatchId> {
    file.watches()
        .iter()
        .filter(|w| w.id() != me && w.pieces().iter().any(|p| p.slot == slot))
        .map(|w| w.id())
        .collect()
}

fn slot_label<A: Arch>(file: &RegFile<A>, slot: Slot) -> String {
    if file.arch().mixed_pools() {
        format!("slot {}", slot.index)
    } else {
        format!("{} slot {}", slot.pool.as_str(), slot.index)
    }
}

fn to_text<A: ShowRegs>(file: &RegFile<A>) -> String {
    let mut out = String::new();
    let arch = file.arch().name();
    let pools = pools(file);
    if file.arch().mixed_pools() {
        let (_, capacity, used) = pools[0];
        let _ = writeln!(
            out,
            "{arch}: {capacity} slots shared by breakpoints and watchpoints, {used} used"
        );
    } else {
        let mut list: Vec<String> = pools
            .iter()
            .filter(|(_, c, _)| *c > 0)
            .map(|(k, c, u)| {
                let s = if *c == 1 { "" } else { "s" };
                format!("{c} {} slot{s} ({u} used)", k.as_str())
            })
            .collect();
        for (k, _, _) in pools.iter().filter(|(_, c, _)| *c == 0) {
            list.push(format!("no {} slots", k.as_str()));
        }
        let _ = writeln!(out, "{arch}: {}", list.join(", "));
    }
    for w in file.watches() {
        let n = w.pieces().len();
        let _ = writeln!(
            out,
            "\n{}: {}, {n} piece{}",
            w.id(),
            w.spec(),
            if n == 1 { "" } else { "s" }
        );
        for p in w.pieces() {
            piece_text(file, w.id(), p, &mut out);
        }
    }
    let _ = writeln!(out, "\nregisters");
    A::regs_text(file, &mut out);
    out
}

fn piece_text<A: Arch>(file: &RegFile<A>, id: WatchId, p: &Piece, out: &mut String) {
    let c = &p.chunk;
    let _ = write!(
        out,
        "  {}  {:#x}/{}  {}",
        slot_label(file, p.slot),
        c.covers.addr,
        c.covers.len_bytes,
        c.access()
    );
    let shared: Vec<String> = sharers(file, p.slot, id)
        .iter()
        .map(|w| w.to_string())
        .collect();
    if !shared.is_empty() {
        let _ = write!(out, "  (shared with {})", shared.join(", "));
    }
    out.push('\n');
    if !c.is_exact() {
        let _ = writeln!(
            out,
            "    hardware window {}: hits outside {} must be filtered out",
            c.window, c.covers
        );
    }
}

fn to_json<A: ShowRegs>(file: &RegFile<A>) -> Value {
    let pools = pools(file);
    let (capacity, used) = if file.arch().mixed_pools() {
        (json!(pools[0].1), json!(pools[0].2))
    } else {
        let mut c = serde_json::Map::new();
        let mut u = serde_json::Map::new();
        for (k, cap, n) in &pools {
            c.insert(k.as_str().to_owned(), json!(cap));
            u.insert(k.as_str().to_owned(), json!(n));
        }
        (Value::Object(c), Value::Object(u))
    };
    let watches: Vec<Value> = file
        .watches()
        .iter()
        .map(|w| {
            let chunks: Vec<Value> = w
                .pieces()
                .iter()
                .map(|p| {
                    let c = &p.chunk;
                    let refs = file.slot(p.slot).map_or(0, |o| o.refs);
                    json!({
                        "slot": p.slot.index,
                        "pool": p.slot.pool.as_str(),
                        "addr": format!("{:#x}", c.covers.addr),
                        "len": c.covers.len_bytes,
                        "access": c.access().as_str(),
                        "window": {
                            "addr": format!("{:#x}", c.window.addr),
                            "len": c.window.len_bytes,
                        },
                        "filter": !c.is_exact(),
                        "refs": refs,
                    })
                })
                .collect();
            json!({
                "id": w.id().get(),
                "spec": w.spec().to_string(),
                "chunks": chunks,
            })
        })
        .collect();
    json!({
        "arch": file.arch().name(),
        "capacity": capacity,
        "used": used,
        "watches": watches,
        "registers": A::regs_json(file),
    })
}
