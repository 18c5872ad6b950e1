//! The symbol layer against real fixture programs: every SPEC form resolves to the address the
//! program itself printed, PIE biases come from /proc/PID/maps, and the counter's store
//! symbolizes to its exact source line.

#[path = "fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::sync::Arc;

use fixtures::{built, marker_line, Running};
use hwbp::symbols::dwarf::ValueType;
use hwbp::symbols::elf::ElfFile;
use hwbp::symbols::error::ResolveError;
use hwbp::symbols::maps::AddressSpace;
use hwbp::symbols::resolve::{Resolved, Resolver};
use hwbp::symbols::symbolize::{AccessIpMethod, Symbolizer, TrapIp};
use hwbp_core::access::Access;

/// Every object the fixture prints, as a watch expression.
const PRINTED: &[&str] = &[
    "counter",
    "cfg",
    "cfg.pos",
    "cfg.pos.y",
    "cfg.arr[5]",
    "cfg.flag",
    "cfg.ratio",
    "cfg.pts[2].y",
    "cfg.name",
    "table",
    "table[3]",
    "matrix[2][1]",
    "matrix[1]",
    "file_static",
    "ready_flag",
    "lib_counter",
    "libwatchlib.so:lib_state.totals[2]",
    "touch_calls",
];

fn resolve(r: &mut Resolver, text: &str) -> Resolved {
    r.resolve_text(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(r: &mut Resolver, text: &str) -> ResolveError {
    match r.resolve_text(text) {
        Ok(ok) => panic!("{text} resolved to {ok:?}"),
        Err(e) => e,
    }
}

fn check_all_forms(program: &Path, pie: bool) {
    let run = Running::start(program, &["1"]);
    let space = AddressSpace::from_pid(run.pid()).unwrap();
    let main = space.main_module().unwrap().clone();
    assert_eq!(main.path, program.canonicalize().unwrap());
    // The bias: printed runtime address minus the link-time address in the file.
    let elf = ElfFile::load(program).unwrap();
    let counter_link = elf.symbols_named("counter")[0].addr;
    assert_eq!(main.bias, run.addr("counter").0.wrapping_sub(counter_link));
    assert_eq!(main.bias != 0, pie, "PIE iff a non-zero bias");
    assert_eq!(main.to_link(run.addr("counter").0), counter_link);
    assert_eq!(space.modules_named("libwatchlib.so").len(), 1);

    let mut r = Resolver::new(space);
    for &name in PRINTED {
        let got = resolve(&mut r, name);
        let (addr, size) = run.addr(name);
        assert_eq!(
            (got.spec.region.addr, got.spec.region.len_bytes),
            (addr, size),
            "{name}"
        );
        assert_eq!(got.spec.access, Access::Write, "{name}");
    }
    let vt = |r: &mut Resolver, t: &str| resolve(r, t).value_type;
    assert_eq!(
        vt(&mut r, "counter"),
        Some(ValueType::Signed { len_bytes: 8 })
    );
    assert_eq!(
        vt(&mut r, "cfg.pos.y"),
        Some(ValueType::Signed { len_bytes: 4 })
    );
    assert_eq!(
        vt(&mut r, "cfg.flag"),
        Some(ValueType::Unsigned { len_bytes: 1 })
    );
    assert_eq!(vt(&mut r, "cfg.ratio"), Some(ValueType::F64));
    assert_eq!(
        vt(&mut r, "cfg.name"),
        Some(ValueType::Pointer { len_bytes: 8 })
    );
    assert_eq!(vt(&mut r, "ready_flag"), Some(ValueType::Bool));
    assert_eq!(
        vt(&mut r, "file_static"),
        Some(ValueType::Signed { len_bytes: 2 })
    );
    assert_eq!(
        vt(&mut r, "cfg.pos"),
        None,
        "a struct has no scalar value type"
    );
    assert_eq!(
        resolve(&mut r, "cfg.pos").type_name.as_deref(),
        Some("struct point")
    );

    // The same function-local static by its symbol name, as `nm` shows it.
    let nm_name = elf
        .symbols()
        .iter()
        .find(|s| s.name.starts_with("touch_calls."))
        .map(|s| s.name.clone())
        .expect("gcc names a function-local static NAME.N");
    let dotted = resolve(&mut r, &nm_name);
    assert_eq!(dotted.spec.region.addr, run.addr("touch_calls").0);
    assert_eq!(dotted.value_type, Some(ValueType::Signed { len_bytes: 4 }));

    // NAME+OFF/LEN, /LEN, access suffixes, address forms.
    let cfg = run.addr("cfg").0;
    let off = resolve(&mut r, "cfg+4/8");
    assert_eq!(
        (off.spec.region.addr, off.spec.region.len_bytes),
        (cfg + 4, 8)
    );
    assert_eq!(off.value_type, None);
    let counter = run.addr("counter").0;
    let rw = resolve(&mut r, "counter/4:rw");
    assert_eq!(
        (rw.spec.region.addr, rw.spec.region.len_bytes),
        (counter, 4)
    );
    assert_eq!(rw.spec.access, Access::ReadWrite);
    assert_eq!(resolve(&mut r, "counter:r").spec.access, Access::Read);
    let x = resolve(&mut r, "bump_counter:x");
    assert_eq!(x.spec.access, Access::Execute);
    assert_eq!(x.spec.region.len_bytes, 8);
    let raw = resolve(&mut r, &format!("{counter:#x}/8"));
    assert_eq!(raw.spec.region.addr, counter);
    let perf = resolve(&mut r, &format!("mem:{counter:#x}:w"));
    assert_eq!(
        (perf.spec.region.len_bytes, perf.spec.access),
        (4, Access::Write)
    );

    // `lib.so:NAME` of a variable the executable copy-relocated: the copy, with a note.
    let lib = resolve(&mut r, "libwatchlib.so:lib_counter");
    assert_eq!(lib.spec.region.addr, run.addr("lib_counter").0);
    assert_eq!(lib.module.as_deref(), Some(main.path.as_path()));
    assert!(lib.note.unwrap().contains("copy relocation"));
    let own = resolve(&mut r, "libwatchlib:lib_state");
    assert_eq!(own.spec.region.len_bytes, 40);
    assert!(own.module.unwrap().ends_with("libwatchlib.so"));

    let out = run.go();
    assert!(out.contains("done counter=1 "), "{out}");
}

#[test]
fn every_form_resolves_to_the_printed_address_pie() {
    let Some(b) = built() else { return };
    check_all_forms(&b.pie, true);
}

#[test]
fn every_form_resolves_to_the_printed_address_no_pie() {
    let Some(b) = built() else { return };
    check_all_forms(&b.no_pie, false);
}

#[test]
fn fixture_threads_run_to_completion() {
    let Some(b) = built() else { return };
    let run = Running::start(&b.pie, &["100", "2", "3"]);
    let out = run.go();
    // Racing increments: the value is at most the store count, and at least one writer's share.
    let value: u64 = out
        .split("done counter=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        (100..=fixtures::counter_stores(100, 2, 3)).contains(&value),
        "{out}"
    );
}

#[test]
fn bad_names_are_explained() {
    let Some(b) = built() else { return };
    let mut r = Resolver::new(AddressSpace::single_file(&b.no_pie));
    match err(&mut r, "countr") {
        ResolveError::UnknownSymbol { suggestions, .. } => {
            assert_eq!(suggestions.first().map(String::as_str), Some("counter"))
        }
        e => panic!("{e}"),
    }
    match err(&mut r, "cfg.nope") {
        ResolveError::FieldNotFound {
            fields, type_name, ..
        } => {
            assert_eq!(type_name, "struct config");
            assert_eq!(
                fields,
                ["id", "pos", "arr", "flag", "ratio", "pts", "bits", "name"]
            );
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        err(&mut r, "table[16]"),
        ResolveError::IndexOutOfRange {
            index: 16,
            count: 16
        }
    );
    assert_eq!(
        err(&mut r, "matrix[1][4]"),
        ResolveError::IndexOutOfRange { index: 4, count: 4 }
    );
    assert_eq!(
        err(&mut r, "bump_counter"),
        ResolveError::NotAnObject {
            name: "bump_counter".into(),
            kind: "function"
        }
    );
    assert!(matches!(
        err(&mut r, "cfg.bits"),
        ResolveError::BitField { .. }
    ));
    assert!(matches!(
        err(&mut r, "counter.x"),
        ResolveError::NotAStruct { .. }
    ));
    assert!(matches!(
        err(&mut r, "counter[1]"),
        ResolveError::NotAnArray { .. }
    ));
    assert!(matches!(
        err(&mut r, "counter+4/8"),
        ResolveError::OutsideObject { size: 8, .. }
    ));
    assert!(matches!(
        err(&mut r, "nosuch.so:counter"),
        ResolveError::ModuleNotLoaded { .. }
    ));
    match err(&mut r, "runs") {
        ResolveError::Ambiguous { candidates, .. } => assert_eq!(candidates.len(), 2),
        e => panic!("{e}"),
    }
    let msg = err(&mut r, "countr").to_string();
    assert!(msg.contains("did you mean counter"), "{msg}");
}

#[test]
fn stripped_binary_is_reported() {
    let Some(b) = built() else { return };
    let Some(stripped) = &b.stripped else {
        skip_note!("SKIP: no `strip`");
        return;
    };
    let mut r = Resolver::new(AddressSpace::single_file(stripped));
    match err(&mut r, "counter") {
        ResolveError::Stripped { module } => assert!(module.ends_with("watch_target_stripped")),
        e => panic!("{e}"),
    }
    // Raw addresses still work.
    assert_eq!(resolve(&mut r, "0x1000/8").spec.region.addr, 0x1000);
}

#[test]
fn field_path_without_dwarf_is_reported() {
    let Some(b) = built() else { return };
    let mut r = Resolver::new(AddressSpace::single_file(&b.no_dwarf));
    let elf = ElfFile::load(&b.no_dwarf).unwrap();
    let counter = resolve(&mut r, "counter");
    assert_eq!(
        counter.spec.region.addr,
        elf.symbols_named("counter")[0].addr
    );
    assert_eq!(
        (counter.spec.region.len_bytes, counter.value_type),
        (8, None)
    );
    assert_eq!(
        err(&mut r, "cfg.pos.y"),
        ResolveError::NoDwarf {
            module: b.no_dwarf.display().to_string(),
            name: "cfg".into()
        }
    );
    // NAME+OFF/LEN needs no DWARF.
    assert_eq!(
        resolve(&mut r, "cfg+8/4").spec.region.addr,
        elf.symbols_named("cfg")[0].addr + 8
    );
}

/// The link-time addresses of instructions in `function` that store to `target` (found with
/// our own decoder loop, independent of the code under test): `(ip, next_ip)`.
fn stores_to(elf: &ElfFile, function: &str, target: u64) -> Vec<(u64, u64)> {
    let f = elf
        .symbols()
        .iter()
        .find(|s| s.name == function || s.demangled.as_deref() == Some(function))
        .unwrap_or_else(|| panic!("no function {function}"));
    let code = elf.bytes_at(f.addr, f.size).unwrap();
    let mut d = iced_x86::Decoder::with_ip(64, code, f.addr, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    for ins in &mut d {
        if ins.op0_kind() == iced_x86::OpKind::Memory
            && ins.is_ip_rel_memory_operand()
            && ins.ip_rel_memory_address() == target
        {
            out.push((ins.ip(), ins.next_ip()));
        }
    }
    out
}

fn check_store_site(program: &Path, function: &str, var: &str, source: &str, marker: &str) {
    let line = marker_line(source, marker);
    let run = Running::start(program, &["1"]);
    let space = AddressSpace::from_pid(run.pid()).unwrap();
    let main = space.main_module().unwrap().clone();
    let elf = ElfFile::load(program).unwrap();
    let var_link = main.to_link(run.addr(var).0);
    let stores = stores_to(&elf, function, var_link);
    assert_eq!(
        stores.len(),
        1,
        "one store to {var} in {function}: {stores:x?}"
    );
    let (ip, next_ip) = stores[0];
    let mut s = Symbolizer::with_trap(space, TrapIp::AfterAccess);
    let trap = main.to_runtime(next_ip);
    let acc = s.accessing_instruction(trap);
    assert_eq!(acc.method, AccessIpMethod::Decoded);
    assert_eq!(acc.ip, main.to_runtime(ip));
    assert_eq!(u64::from(acc.len_bytes.unwrap()), next_ip - ip);
    let site = s.site(trap);
    let outer = site.frames.last().unwrap();
    assert_eq!(outer.function.as_deref(), Some(function));
    let inner = &site.frames[0];
    assert_eq!(inner.line, Some(line), "{site}");
    assert!(inner.file.as_deref().unwrap().ends_with(source), "{site}");
    // The second lookup is the cached site.
    assert!(Arc::ptr_eq(&site, &s.site(trap)));
    assert_eq!(s.cached_sites(), 1);
    // An IP in no module: fall back to ip - 1 and say so.
    let stack = s.accessing_instruction(0x10);
    assert_eq!(
        (stack.ip, stack.method),
        (0xf, AccessIpMethod::PreviousByte)
    );
    run.go();
}

#[test]
fn counter_store_symbolizes_to_its_line_pie() {
    let Some(b) = built() else { return };
    check_store_site(
        &b.pie,
        "bump_counter",
        "counter",
        "watch_target.c",
        "COUNTER_WRITE",
    );
}

#[test]
fn counter_store_symbolizes_to_its_line_no_pie() {
    let Some(b) = built() else { return };
    check_store_site(
        &b.no_pie,
        "bump_counter",
        "counter",
        "watch_target.c",
        "COUNTER_WRITE",
    );
    check_store_site(
        &b.no_pie,
        "touch_fields",
        "table[3]",
        "watch_target.c",
        "TABLE3_WRITE",
    );
}

#[test]
fn library_store_symbolizes_in_the_library() {
    let Some(b) = built() else { return };
    let run = Running::start(&b.pie, &["1"]);
    let space = AddressSpace::from_pid(run.pid()).unwrap();
    let lib = space.modules_named("libwatchlib.so")[0].clone();
    assert_ne!(lib.bias, 0);
    let elf = ElfFile::load(&lib.path).unwrap();
    let f = elf.symbols_named("lib_bump")[0].clone();
    // Every instruction boundary of lib_bump (decoded here independently): a trap there
    // must give back the instruction that ends at it, at the library's runtime address.
    let code = elf.bytes_at(f.addr, f.size).unwrap();
    let decoder = iced_x86::Decoder::with_ip(64, code, f.addr, iced_x86::DecoderOptions::NONE);
    let instrs: Vec<(u64, u64)> = decoder.into_iter().map(|i| (i.ip(), i.next_ip())).collect();
    assert!(instrs.len() > 3);
    let mut s = Symbolizer::with_trap(space, TrapIp::AfterAccess);
    for &(ip, next_ip) in &instrs {
        let acc = s.accessing_instruction(lib.to_runtime(next_ip));
        assert_eq!(
            (acc.ip, acc.method),
            (lib.to_runtime(ip), AccessIpMethod::Decoded)
        );
    }
    let frames = s.frames(lib.to_runtime(f.addr));
    assert_eq!(frames.last().unwrap().function.as_deref(), Some("lib_bump"));
    assert!(frames[0].file.as_deref().unwrap().ends_with("watchlib.c"));
    run.go();
}

#[test]
fn rust_statics_by_path() {
    let Some(b) = built() else { return };
    let Some(rust) = &b.rust else {
        skip_note!("SKIP: no rustc");
        return;
    };
    let run = Running::start(rust, &["3"]);
    let mut r = Resolver::new(AddressSpace::from_pid(run.pid()).unwrap());
    for name in ["demo::BALANCE", "demo::LEDGER", "demo::LEDGER.totals[2]"] {
        let got = resolve(&mut r, name);
        assert_eq!(
            (got.spec.region.addr, got.spec.region.len_bytes),
            run.addr(name),
            "{name}"
        );
    }
    let full = resolve(&mut r, "rust_static::demo::BALANCE");
    assert_eq!(full.spec.region.addr, run.addr("demo::BALANCE").0);
    // AtomicI64 { v: UnsafeCell<i64> } reads as an i64.
    assert_eq!(full.value_type, Some(ValueType::Signed { len_bytes: 8 }));
    match err(&mut r, "demo::BALANC") {
        ResolveError::UnknownSymbol { suggestions, .. } => {
            assert!(
                suggestions.iter().any(|s| s.ends_with("demo::BALANCE")),
                "{suggestions:?}"
            )
        }
        e => panic!("{e}"),
    }
    assert!(run.go().contains("done 103"));
}

/// Offline (bias 0): the one store to `var` in `function` symbolizes to `marker`'s line.
fn check_offline_store(program: &Path, var: &str, function: &str, source: &str, marker: &str) {
    let mut r = Resolver::new(AddressSpace::single_file(program));
    let target = resolve(&mut r, var).spec.region.addr;
    let elf = ElfFile::load(program).unwrap();
    let stores = stores_to(&elf, function, target);
    // rustc unrolls the deposit loop: every copy of the store must map to the line.
    assert!(!stores.is_empty(), "no store to {var} in {function}");
    let mut s = Symbolizer::with_trap(AddressSpace::single_file(program), TrapIp::AfterAccess);
    for &(ip, next_ip) in &stores {
        let site = s.site(next_ip);
        assert_eq!(site.access.ip, ip);
        assert_eq!(site.access.method, AccessIpMethod::Decoded);
        assert_eq!(
            site.frames.last().unwrap().function.as_deref(),
            Some(function),
            "{site}"
        );
        assert!(!site.in_toolchain_only(), "{site}");
        let primary = site.primary_frame().unwrap();
        assert_eq!(primary.line, Some(marker_line(source, marker)), "{site}");
        assert!(primary.file.as_deref().unwrap().ends_with(source), "{site}");
    }
    assert_eq!(s.cached_sites(), stores.len());
}

#[test]
fn rust_store_symbolizes_to_its_line() {
    let Some(b) = built() else { return };
    let Some(rust) = &b.rust else {
        skip_note!("SKIP: no rustc");
        return;
    };
    check_offline_store(
        rust,
        "demo::BALANCE",
        "rust_static::demo::deposit",
        "rust_static.rs",
        "BALANCE_WRITE",
    );
}

#[test]
fn demo_target_balance_and_rogue_line_without_dwarf_variables() {
    let Some(b) = built() else { return };
    let Some(demo) = &b.demo else {
        skip_note!("SKIP: no rustc");
        return;
    };
    // Line tables only: the variable is found by its demangled symbol path, size 8.
    let mut r = Resolver::new(AddressSpace::single_file(demo));
    let bal = resolve(&mut r, "demo_target::BALANCE");
    assert_eq!(bal.spec.region.len_bytes, 8);
    assert_eq!(resolve(&mut r, "hwbp::demo_target::BALANCE").spec, bal.spec);
    assert_eq!(resolve(&mut r, "BALANCE").spec, bal.spec);
    check_offline_store(
        demo,
        "demo_target::BALANCE",
        "hwbp::demo_target::rogue_audit_adjustment",
        "../../../hwbp-cli/src/demo_target.rs",
        "ROGUE_WRITE",
    );
}
