//! hwbp-sim's integration tests: every scenario file, the scenario runner's own behaviour, and
//! property tests against a brute-force reference.

use std::path::PathBuf;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios")
}

#[test]
fn every_scenario_file_holds() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("tests/scenarios exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hwbp"))
        .collect();
    paths.sort();
    let mut failed = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let report = hwbp_sim::scenario::run(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.checked > 0, "{name} checks nothing");
        for f in report.failures {
            failed.push(f.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "failed expectations:\n{}",
        failed.join("\n")
    );
}

#[test]
fn failed_expectation_names_file_line_expected_and_actual() {
    let text = "cpus 1\nopen a cpu=0 w 0x1000/4 => ok\n\n# note\nopen b cpu=0 w 0x1001/4 => ok\n";
    let report = hwbp_sim::scenario::run(text, "demo.hwbp").unwrap();
    assert_eq!(
        report.output,
        [
            "cpus 1 => ok",
            "open a cpu=0 w 0x1000/4 => ok",
            "open b cpu=0 w 0x1001/4 => EINVAL"
        ]
    );
    assert_eq!(report.checked, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(
        report.failures[0].to_string(),
        "demo.hwbp:5: `open b cpu=0 w 0x1001/4`: expected ok, got EINVAL"
    );
}

#[test]
fn malformed_scenarios_are_a_distinct_error() {
    let cases = [
        ("open a w 0x1000/4\n", 1, "task=NAME or cpu=N"),
        ("cpus 1\nfly away\n", 2, "unknown command `fly`"),
        ("task t\ncpus 2\n", 2, "must come before"),
        ("open a cpu=0 q 0x1000\n", 1, "ACCESS must be"),
        ("run ghost on 0\n", 1, "unknown task `ghost`"),
        ("arch vax\n", 1, "unknown arch `vax`"),
        ("slots data=5\n", 1, "cannot have"),
        ("cpus 1 => \n", 1, "without an expected value"),
    ];
    for (text, line, needle) in cases {
        let e = hwbp_sim::scenario::run(text, "bad.hwbp").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line),
            ("bad.hwbp", line),
            "{text:?}: {e}"
        );
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn run_files_reports_pass_fail_and_malformed() {
    let dir = std::env::temp_dir().join(format!("hwbp-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.hwbp");
    let bad = dir.join("bad.hwbp");
    let broken = dir.join("broken.hwbp");
    std::fs::write(&good, "cpus 1\nopen a cpu=0 w 0x1000/4 => ok\n").unwrap();
    std::fs::write(&bad, "cpus 1\nopen a cpu=0 w 0x1000/4 => ENOSPC\n").unwrap();
    std::fs::write(&broken, "cpus\n").unwrap();
    let mut out = Vec::new();
    assert!(hwbp_sim::scenario::run_files(&[&good], &mut out).unwrap());
    let mut out = Vec::new();
    assert!(!hwbp_sim::scenario::run_files(&[&good, &bad], &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!(
            "FAILED {}:2: `open a cpu=0 w 0x1000/4`: expected ENOSPC, got ok",
            bad.display()
        )),
        "{text}"
    );
    let mut out = Vec::new();
    let e = hwbp_sim::scenario::run_files(&[&good, &broken], &mut out).unwrap_err();
    assert_eq!(e.line, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

mod reference {
    //! A brute-force reference: recomputes every CPU's usage from the list of live breakpoints
    //! for each decision, and derives which breakpoints must be installed where.

    use std::collections::BTreeMap;

    use hwbp_core::arch::{parse, Arch, ParseCtx};
    use hwbp_core::attr::{BpAttr, PoolKind};
    use hwbp_core::hit::hw_traps;
    use hwbp_core::manager::BpId;
    use hwbp_core::reserve::{Target, TaskId};
    use hwbp_core::{Access, ErrorClass, Region, RuleError};

    #[derive(Clone, Debug)]
    pub struct RefBp<A: Arch> {
        pub target: Target,
        pub attr: BpAttr,
        pub hw: A::Hw,
        pub hits: u64,
    }

    #[derive(Clone, Debug)]
    pub struct Reference<A: Arch> {
        pub arch: A,
        pub cpus: u32,
        pub bps: BTreeMap<BpId, RefBp<A>>,
        pub online: Vec<bool>,
        pub running: Vec<Option<TaskId>>,
    }

    impl<A: Arch> Reference<A> {
        pub fn new(arch: A, cpus: u32) -> Self {
            Reference {
                arch,
                cpus,
                bps: BTreeMap::new(),
                online: vec![true; cpus as usize],
                running: vec![None; cpus as usize],
            }
        }

        fn applies(target: Target, cpu: u32) -> bool {
            match target {
                Target::Cpu(c) => c == cpu,
                Target::Task { cpu: c, .. } => c.is_none_or(|c| c == cpu),
            }
        }

        /// `C[c] + TP(c)` for the new breakpoint's target, recomputed from the list.
        fn used(&self, target: Target, pool: usize, cpu: u32, skip: Option<BpId>) -> u32 {
            let live = || {
                self.bps
                    .iter()
                    .filter(move |(id, b)| {
                        Some(**id) != skip && self.arch.pool_index(b.attr.pool_kind()) == pool
                    })
                    .map(|(_, b)| b.target)
            };
            let cpu_pinned = live().filter(|t| *t == Target::Cpu(cpu)).count() as u32;
            let tp = |k: TaskId| {
                live()
                    .filter(|t| matches!(t, Target::Task { task, .. } if *task == k))
                    .filter(|t| Self::applies(*t, cpu))
                    .count() as u32
            };
            let task_part = match target {
                Target::Task { task, .. } => tp(task),
                Target::Cpu(_) => live()
                    .filter_map(|t| match t {
                        Target::Task { task, .. } => Some(tp(task)),
                        Target::Cpu(_) => None,
                    })
                    .max()
                    .unwrap_or(0),
            };
            cpu_pinned + task_part
        }

        pub fn admits(&self, target: Target, pool: PoolKind, skip: Option<BpId>) -> bool {
            let cap = self.arch.slots(pool);
            let idx = self.arch.pool_index(pool);
            (0..self.cpus)
                .filter(|c| {
                    Self::applies(target, *c) || matches!(target, Target::Task { cpu: None, .. })
                })
                .all(|c| self.used(target, idx, c, skip) < cap)
        }

        /// The outcome Linux gives a create: type, reserve, validate.
        pub fn create(&self, attr: &BpAttr, target: Target) -> Result<A::Hw, ErrorClass> {
            if let Target::Cpu(c) | Target::Task { cpu: Some(c), .. } = target {
                if c >= self.cpus {
                    return Err(ErrorClass::Invalid);
                }
            }
            if attr.type_is_empty_or_invalid() {
                return Err(RuleError::InvalidType {
                    bp_type: attr.bp_type,
                }
                .class());
            }
            if !self.admits(target, attr.pool_kind(), None) {
                return Err(ErrorClass::NoSpace);
            }
            let ctx = ParseCtx {
                task_bound: matches!(target, Target::Task { .. }),
                cap_sys_admin: false,
            };
            parse(&self.arch, attr, ctx).map_err(|e| e.class())
        }

        /// The outcome of a strict modify: validate, then re-account on a pool change.
        pub fn modify(&self, id: BpId, attr: &BpAttr) -> Result<A::Hw, ErrorClass> {
            let old = &self.bps[&id];
            let ctx = ParseCtx {
                task_bound: matches!(old.target, Target::Task { .. }),
                cap_sys_admin: false,
            };
            let hw = parse(&self.arch, attr, ctx).map_err(|e| e.class())?;
            let (oi, ni) = (
                self.arch.pool_index(old.attr.pool_kind()),
                self.arch.pool_index(attr.pool_kind()),
            );
            if oi != ni && !self.admits(old.target, attr.pool_kind(), Some(id)) {
                return Err(ErrorClass::NoSpace);
            }
            Ok(hw)
        }

        /// Where each enabled breakpoint must be installed right now: its CPU.
        pub fn expected_cpu(&self, b: &RefBp<A>) -> Option<u32> {
            if b.attr.disabled {
                return None;
            }
            match b.target {
                Target::Cpu(c) => Some(c),
                Target::Task { task, cpu } => {
                    let on = self.running.iter().position(|r| *r == Some(task))? as u32;
                    cpu.is_none_or(|c| c == on).then_some(on)
                }
            }
        }

        /// The breakpoints an access on `cpu` must hit.
        pub fn hits(&self, cpu: u32, access: Access, region: Region) -> Vec<BpId> {
            self.bps
                .iter()
                .filter(|(_, b)| self.expected_cpu(b) == Some(cpu))
                .filter(|(_, b)| hw_traps(&self.arch, &b.hw, access, region))
                .map(|(id, _)| *id)
                .collect()
        }

        /// No CPU over-committed: `C[c] + max_k TP_k(c) <= N` everywhere.
        pub fn within_capacity(&self) -> bool {
            PoolKind::ALL.iter().all(|pool| {
                let idx = self.arch.pool_index(*pool);
                (0..self.cpus)
                    .all(|c| self.used(Target::Cpu(c), idx, c, None) <= self.arch.slots(*pool))
            })
        }
    }
}

mod props {
    use hwbp_core::arch::arm64::Arm64;
    use hwbp_core::arch::power::Power;
    use hwbp_core::arch::x86_64::X86_64;
    use hwbp_core::arch::ParseCtx;
    use hwbp_core::attr::BpAttr;
    use hwbp_core::manager::BpId;
    use hwbp_core::reserve::{Target, TaskId};
    use hwbp_core::{Access, Region};
    use hwbp_sim::arch_glue::SimArch;
    use hwbp_sim::machine::Machine;
    use proptest::prelude::*;

    use super::reference::{RefBp, Reference};

    const CPUS: u32 = 3;
    const TASKS: u64 = 3;
    const ADDRS: [u64; 6] = [0x1000, 0x1001, 0x1002, 0x1004, 0x1008, 0x2000];
    const LENS: [u64; 6] = [1, 2, 4, 8, 3, 16];

    #[derive(Clone, Debug)]
    pub enum Op {
        Open {
            task: Option<u64>,
            cpu: Option<u32>,
            bp_type: u32,
            addr: u64,
            len: u64,
            disabled: bool,
        },
        Close(usize),
        Modify {
            pick: usize,
            bp_type: u32,
            addr: u64,
            len: u64,
            disabled: bool,
        },
        Enable(usize),
        Disable(usize),
        Run(u64, u32),
        Idle(u32),
        Offline(u32),
        Online(u32),
        Access(u32, Access, u64, u64),
        Schedule(u64),
    }

    fn bp_type() -> impl Strategy<Value = u32> {
        // Mostly valid kinds, sometimes EMPTY, R|X or INVALID.
        prop_oneof![8 => prop::sample::select(vec![1u32, 2, 3, 4]), 1 => prop::sample::select(vec![0u32, 5, 7])]
    }

    fn op() -> impl Strategy<Value = Op> {
        let addr = prop::sample::select(ADDRS.to_vec());
        let len = prop::sample::select(LENS.to_vec());
        prop_oneof![
            6 => (prop::option::of(0..TASKS), prop::option::of(0..CPUS + 1), bp_type(), addr.clone(), len.clone(), any::<bool>())
                .prop_map(|(task, cpu, bp_type, addr, len, disabled)| Op::Open { task, cpu, bp_type, addr, len, disabled }),
            2 => any::<usize>().prop_map(Op::Close),
            2 => (any::<usize>(), bp_type(), addr.clone(), len.clone(), any::<bool>())
                .prop_map(|(pick, bp_type, addr, len, disabled)| Op::Modify { pick, bp_type, addr, len, disabled }),
            1 => any::<usize>().prop_map(Op::Enable),
            1 => any::<usize>().prop_map(Op::Disable),
            3 => (0..TASKS, 0..CPUS).prop_map(|(t, c)| Op::Run(t, c)),
            1 => (0..CPUS).prop_map(Op::Idle),
            1 => (0..CPUS).prop_map(Op::Offline),
            1 => (0..CPUS).prop_map(Op::Online),
            5 => (0..CPUS, prop::sample::select(Access::ALL.to_vec()), addr, prop::sample::select(vec![1u64, 2, 4, 8]))
                .prop_map(|(c, a, addr, len)| Op::Access(c, a, addr, len)),
            1 => any::<u64>().prop_map(Op::Schedule),
        ]
    }

    fn attr(bp_type: u32, addr: u64, len: u64, disabled: bool) -> BpAttr {
        BpAttr {
            addr,
            len_bytes: len,
            bp_type,
            exclude_kernel: true,
            disabled,
        }
    }

    const USER: ParseCtx = ParseCtx {
        task_bound: false,
        cap_sys_admin: false,
    };

    fn pick(reference: &Reference<impl SimArch>, k: usize) -> Option<BpId> {
        let n = reference.bps.len();
        (n > 0).then(|| *reference.bps.keys().nth(k % n).unwrap())
    }

    /// Runs `ops` on the machine and on the reference; checks every decision, every install
    /// table and every hit; closes everything and checks the machine is empty again.
    pub fn check<A: SimArch>(arch: A, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut m = Machine::new(arch.clone(), CPUS);
        let mut r = Reference::new(arch, CPUS);
        let mut hits = Vec::new();
        for op in ops {
            match *op {
                Op::Open {
                    task,
                    cpu,
                    bp_type,
                    addr,
                    len,
                    disabled,
                } => {
                    let target = match task {
                        Some(t) => Target::Task {
                            task: TaskId(t),
                            cpu,
                        },
                        None => Target::Cpu(cpu.unwrap_or(0)),
                    };
                    let a = attr(bp_type, addr, len, disabled);
                    let want = r.create(&a, target);
                    let got = m.manager_mut().create(a, target, USER);
                    prop_assert_eq!(
                        got.map(|_| ()).map_err(|e| e.class()),
                        want.map(|_| ()),
                        "{:?}",
                        op
                    );
                    if let (Ok(id), Ok(hw)) = (got, want) {
                        r.bps.insert(
                            id,
                            RefBp {
                                target,
                                attr: a,
                                hw,
                                hits: 0,
                            },
                        );
                    }
                }
                Op::Close(k) => {
                    if let Some(id) = pick(&r, k) {
                        prop_assert_eq!(m.manager_mut().close(id), Ok(()));
                        r.bps.remove(&id);
                        prop_assert!(m.manager().info(id).is_err());
                    }
                }
                Op::Modify {
                    pick: k,
                    bp_type,
                    addr,
                    len,
                    disabled,
                } => {
                    if let Some(id) = pick(&r, k) {
                        let before = m.manager().info(id).unwrap();
                        let a = attr(bp_type, addr, len, disabled);
                        let want = r.modify(id, &a);
                        let got = m.manager_mut().modify(id, a, true);
                        prop_assert_eq!(got.map_err(|e| e.class()), want.map(|_| ()), "{:?}", op);
                        match want {
                            Ok(hw) => {
                                let b = r.bps.get_mut(&id).unwrap();
                                b.attr = a;
                                b.hw = hw;
                            }
                            // Review demand 4: exactly as before, same register.
                            Err(_) => prop_assert_eq!(m.manager().info(id).unwrap(), before),
                        }
                    }
                }
                Op::Enable(k) => {
                    if let Some(id) = pick(&r, k) {
                        prop_assert_eq!(m.manager_mut().enable(id), Ok(()));
                        r.bps.get_mut(&id).unwrap().attr.disabled = false;
                    }
                }
                Op::Disable(k) => {
                    if let Some(id) = pick(&r, k) {
                        prop_assert_eq!(m.manager_mut().disable(id), Ok(()));
                        r.bps.get_mut(&id).unwrap().attr.disabled = true;
                    }
                }
                Op::Run(t, c) => {
                    let got = m.run(TaskId(t), c);
                    prop_assert_eq!(got.is_ok(), r.online[c as usize]);
                    if got.is_ok() {
                        for slot in r.running.iter_mut() {
                            if *slot == Some(TaskId(t)) {
                                *slot = None;
                            }
                        }
                        r.running[c as usize] = Some(TaskId(t));
                    }
                }
                Op::Idle(c) => {
                    let got = m.idle(c);
                    prop_assert_eq!(got.is_ok(), r.online[c as usize]);
                    if got.is_ok() {
                        r.running[c as usize] = None;
                    }
                }
                Op::Offline(c) => {
                    prop_assert!(m.offline(c).is_ok());
                    r.online[c as usize] = false;
                    r.running[c as usize] = None;
                }
                Op::Online(c) => {
                    let before = m.manager().shadow_regs(c).unwrap().clone();
                    prop_assert!(m.online(c).is_ok());
                    r.online[c as usize] = true;
                    // Review demand 1: back with identical register values.
                    prop_assert_eq!(m.manager().regs(c).unwrap(), &before);
                }
                Op::Access(c, access, addr, len) => {
                    hits.clear();
                    let got = m.access(c, access, Region::new(addr, len), &mut hits);
                    prop_assert_eq!(got.is_ok(), r.online[c as usize]);
                    if got.is_ok() {
                        let mut want = r.hits(c, access, Region::new(addr, len));
                        hits.sort();
                        want.sort();
                        prop_assert_eq!(&hits, &want, "{:?}", op);
                        for id in want {
                            r.bps.get_mut(&id).unwrap().hits += 1;
                        }
                    }
                }
                Op::Schedule(seed) => {
                    for t in 0..TASKS {
                        m.add_task(TaskId(t));
                    }
                    m.seed(seed);
                    prop_assert!(m.schedule_random().is_ok());
                    // The reference follows the scheduler's (seeded) choices.
                    for c in 0..CPUS {
                        let running = m.manager().running(c);
                        prop_assert!(running.is_none() || r.online[c as usize]);
                        r.running[c as usize] = running;
                    }
                    let mut seen: Vec<TaskId> = r.running.iter().flatten().copied().collect();
                    let n = seen.len();
                    seen.sort();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), n, "a task runs on two CPUs");
                }
            }
            prop_assert!(r.within_capacity());
            for (id, b) in &r.bps {
                let info = m.manager().info(*id).unwrap();
                prop_assert_eq!(
                    info.register.map(|(c, _, _)| c),
                    r.expected_cpu(b),
                    "{:?} after {:?}",
                    id,
                    op
                );
                prop_assert_eq!(info.hits, b.hits);
                prop_assert_eq!(info.attr, b.attr);
            }
        }
        let ids: Vec<BpId> = r.bps.keys().copied().collect();
        for id in ids {
            prop_assert_eq!(m.manager_mut().close(id), Ok(()));
        }
        for c in 0..CPUS {
            m.online(c).unwrap();
            m.idle(c).unwrap();
        }
        prop_assert!(m.manager().is_empty());
        prop_assert!(!m.manager().reservations().is_used());
        for c in 0..CPUS {
            for pool in hwbp_core::attr::PoolKind::ALL {
                prop_assert_eq!(m.manager().reservations().committed(c, pool), 0);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn x86_matches_the_brute_force_reference(slots in 1u32..=4, ops in prop::collection::vec(op(), 1..80)) {
            check(X86_64::with_slots(slots).unwrap(), &ops)?;
        }

        #[test]
        fn arm64_matches_the_brute_force_reference(ops in prop::collection::vec(op(), 1..80)) {
            check(Arm64::with_slots(2, 2).unwrap(), &ops)?;
        }

        #[test]
        fn power_matches_the_brute_force_reference(p10 in any::<bool>(), ops in prop::collection::vec(op(), 1..80)) {
            check(if p10 { Power::power10() } else { Power::power9() }, &ops)?;
        }
    }
}

mod core_rules {
    use hwbp_core::access::{BP_EMPTY, BP_INVALID, BP_W, BP_X};
    use hwbp_core::arch::x86_64::{handle_dr6, DebugRegFile, Dr6, X86_64};
    use hwbp_core::arch::ParseCtx;
    use hwbp_core::attr::BpAttr;
    use hwbp_core::manager::{BpError, Manager};
    use hwbp_core::reserve::{Target, TaskId};
    use hwbp_core::{ErrorClass, RuleError};

    const USER: ParseCtx = ParseCtx {
        task_bound: false,
        cap_sys_admin: false,
    };

    fn full_cpu0() -> Manager<X86_64> {
        let mut m = Manager::new(X86_64::with_slots(1).unwrap(), 1);
        m.create(BpAttr::user(0x1000, 4, BP_W), Target::Cpu(0), USER)
            .unwrap();
        m
    }

    #[test]
    fn empty_and_invalid_types_are_einval_before_enospc() {
        let mut m = full_cpu0();
        for bp_type in [BP_EMPTY, BP_INVALID] {
            assert_eq!(
                m.create(BpAttr::user(0x2000, 4, bp_type), Target::Cpu(0), USER),
                Err(BpError::Rule(RuleError::InvalidType { bp_type }))
            );
        }
        // Any other invalid request on a full CPU is ENOSPC: reserve comes first.
        let e = m
            .create(BpAttr::user(0x2001, 4, BP_W), Target::Cpu(0), USER)
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::NoSpace);
    }

    #[test]
    fn strict_modify_refuses_other_fields_and_changes_nothing() {
        let mut m = full_cpu0();
        let id = m.ids().next().unwrap();
        let before = m.info(id).unwrap();
        let mut attr = before.attr;
        attr.exclude_kernel = false;
        assert_eq!(m.modify(id, attr, true), Err(BpError::ImmutableField));
        assert_eq!(m.info(id).unwrap(), before);
        // The in-kernel (ptrace) path does not compare the other fields.
        assert_eq!(m.modify(id, attr, false), Ok(()));
    }

    #[test]
    fn execute_breakpoints_yield_to_single_step_and_set_the_resume_flag() {
        let mut m = Manager::new(X86_64::new(), 1);
        let x = m
            .create(BpAttr::user(0x401000, 8, BP_X), Target::Cpu(0), USER)
            .unwrap();
        let w = m
            .create(BpAttr::user(0x1000, 4, BP_W), Target::Cpu(0), USER)
            .unwrap();
        // x in DR0, w in DR1. B0|B1|BS: the data hit is delivered, the execute one waits.
        let mut fired = Vec::new();
        let out = handle_dr6(&mut m, 0, Dr6(0b11 | Dr6::BS), &mut |id| fired.push(id));
        assert_eq!(fired, [w]);
        assert_eq!(out.dr6, Dr6(0b01 | Dr6::BS));
        assert!(!out.resume_flag);
        assert_eq!((m.hits(x), m.hits(w)), (Ok(0), Ok(1)));
        // The re-trap without BS delivers it and asks for RF.
        fired.clear();
        let out = handle_dr6(&mut m, 0, Dr6(0b01), &mut |id| fired.push(id));
        assert_eq!(fired, [x]);
        assert_eq!(out.dr6, Dr6(0));
        assert!(out.resume_flag);
        // A B bit for an empty register is left for others.
        let out = handle_dr6(&mut m, 0, Dr6(0b100), &mut |_| {});
        assert_eq!(out.dr6, Dr6(0b100));
        assert_eq!(out.dispatched.delivered, 0);
    }

    #[test]
    fn ptrace_hits_raise_sigtrap_and_perf_hits_do_not() {
        let mut m = Manager::new(X86_64::new(), 1);
        let t = TaskId(7);
        let mut file = DebugRegFile::new();
        file.poke(&mut m, t, 0, 0x1000).unwrap();
        // L0, write, 4 bytes.
        file.poke(&mut m, t, 7, 0xd0001).unwrap();
        m.create(BpAttr::user(0x2000, 4, BP_W), Target::Cpu(0), USER)
            .unwrap();
        m.switch_to(0, Some(t)).unwrap();
        // CPU-bound perf bp was first: DR0; the ptrace bp got DR1.
        let (out, sigtrap) = file.debug_exception(&mut m, 0, Dr6(0b10), &mut |_| {});
        assert_eq!((out.dr6, sigtrap, file.virtual_dr6()), (Dr6(0), true, 1));
        assert_eq!(file.peek(&m, 6), Ok(0xffff_0ff1));
        let (out, sigtrap) = file.debug_exception(&mut m, 0, Dr6(0b01), &mut |_| {});
        assert_eq!((out.dr6, sigtrap, file.virtual_dr6()), (Dr6(0), false, 0));
        // A single step alone is a SIGTRAP and shows in DR6.
        let (_, sigtrap) = file.debug_exception(&mut m, 0, Dr6(Dr6::BS), &mut |_| {});
        assert!(sigtrap);
        assert_eq!(file.peek(&m, 6), Ok(0xffff_0ff0 ^ Dr6::BS));
        file.flush(&mut m);
        assert_eq!(file.peek(&m, 7), Ok(0));
        assert_eq!(m.ids().count(), 1);
    }
}

mod register_matching {
    use hwbp_core::arch::arm64::Arm64;
    use hwbp_core::arch::x86_64::X86_64;
    use hwbp_core::arch::{Arch, ParseCtx};
    use hwbp_core::attr::{BpAttr, PoolKind};
    use hwbp_core::hit::hw_traps;
    use hwbp_core::{Access, Region};
    use proptest::prelude::*;

    proptest! {
        /// Matching read from DR0-DR3/DR7 agrees with matching the validated setting.
        #[test]
        fn register_matching_agrees_with_the_settings(
            addr in 0u64..64, len in prop::sample::select(vec![1u64, 2, 4, 8]),
            ty in prop::sample::select(vec![2u32, 3, 4]), slot in 0u32..4,
            access in prop::sample::select(Access::ALL.to_vec()), at in 0u64..80, alen in 1u64..9,
        ) {
            let arch = X86_64::new();
            let len = if ty == 4 { 8 } else { len };
            let ctx = ParseCtx { task_bound: true, cap_sys_admin: false };
            let Ok(hw) = hwbp_core::arch::parse(&arch, &BpAttr::user(addr, len, ty), ctx) else {
                return Ok(());
            };
            let mut regs = arch.empty_regs();
            arch.install(&mut regs, PoolKind::Data, slot, &hw);
            let region = Region::new(at, alen);
            let from_regs = arch.trapping_registers(&regs, PoolKind::Data, access, region).unwrap();
            let want = if hw_traps(&arch, &hw, access, region) { 1 << slot } else { 0 };
            prop_assert_eq!(from_regs, want);
        }

        /// The same for arm64 breakpoints and watchpoints (BAS byte selection).
        #[test]
        fn arm64_register_matching_agrees_with_the_settings(
            addr in 0u64..64, len in 1u64..9,
            ty in prop::sample::select(vec![1u32, 2, 3, 4]), slot in 0u32..4,
            access in prop::sample::select(Access::ALL.to_vec()), at in 0u64..80, alen in 1u64..9,
        ) {
            let arch = Arm64::new();
            let ctx = ParseCtx { task_bound: true, cap_sys_admin: false };
            let attr = BpAttr::user(addr, len, ty);
            let Ok(hw) = hwbp_core::arch::parse(&arch, &attr, ctx) else {
                return Ok(());
            };
            let pool = attr.pool_kind();
            let mut regs = arch.empty_regs();
            arch.install(&mut regs, pool, slot, &hw);
            let region = Region::new(at, alen);
            let from_regs = arch.trapping_registers(&regs, pool, access, region).unwrap();
            let want = if hw_traps(&arch, &hw, access, region) { 1 << slot } else { 0 };
            prop_assert_eq!(from_regs, want, "{:?}", hw);
        }
    }
}

#[test]
fn the_seeded_scheduler_is_deterministic() {
    use hwbp_core::arch::x86_64::X86_64;
    use hwbp_core::reserve::TaskId;
    use hwbp_sim::machine::Machine;
    let trace = |seed: u64| {
        let mut m = Machine::new(X86_64::new(), 4);
        for t in 0..5 {
            m.add_task(TaskId(t));
        }
        m.seed(seed);
        let mut out = Vec::new();
        for _ in 0..50 {
            m.schedule_random().unwrap();
            out.push((0..4).map(|c| m.manager().running(c)).collect::<Vec<_>>());
        }
        out
    };
    assert_eq!(trace(42), trace(42));
    assert_ne!(trace(42), trace(43));
    // Every task shows up somewhere over 50 ticks.
    let seen: std::collections::BTreeSet<_> = trace(42).into_iter().flatten().flatten().collect();
    assert_eq!(seen.len(), 5);
}
