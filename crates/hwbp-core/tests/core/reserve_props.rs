//! Slot reservation against the brute-force model: random reserve/release sequences over
//! several tasks, CPUs and pools must get identical answers, never over-commit a CPU, and
//! leave nothing behind once everything is released.

use hwbp_core::arch::x86_64::X86_64;
use hwbp_core::reserve::{BruteForce, Reservations, Target, TaskId};
use hwbp_core::PoolKind;
use proptest::prelude::*;

/// One step of a sequence. Indices are reduced modulo what exists when the step runs.
#[derive(Clone, Debug)]
enum Op {
    /// `cpu == None` with `task == None` is a CPU-bound breakpoint on CPU `alt_cpu`.
    Reserve {
        task: Option<u64>,
        cpu: Option<u32>,
        alt_cpu: u32,
        inst: bool,
    },
    Release(usize),
}

fn op(tasks: u64, cpus: u32) -> impl Strategy<Value = Op> {
    // One CPU past the last possible one, now and then, to exercise the refusal.
    let cpu = prop_oneof![8 => 0..cpus, 1 => Just(cpus)];
    let reserve = (
        prop::option::weighted(0.7, 0..tasks),
        prop::option::weighted(0.4, cpu.clone()),
        cpu,
        any::<bool>(),
    )
        .prop_map(|(task, cpu, alt_cpu, inst)| Op::Reserve {
            task,
            cpu,
            alt_cpu,
            inst,
        });
    prop_oneof![3 => reserve, 2 => any::<usize>().prop_map(Op::Release)]
}

/// Pools: `(mixed, inst, data)`.
fn pools() -> impl Strategy<Value = (bool, u32, u32)> {
    prop_oneof![
        (1u32..=4).prop_map(|n| (true, n, n)),
        (0u32..=4, 1u32..=4).prop_map(|(i, d)| (false, i, d)),
    ]
}

fn case() -> impl Strategy<Value = (u32, (bool, u32, u32), Vec<Op>)> {
    (1u32..=8, 1u64..=5, pools()).prop_flat_map(|(cpus, tasks, pools)| {
        (
            Just(cpus),
            Just(pools),
            prop::collection::vec(op(tasks, cpus), 0..300),
        )
    })
}

fn check_cpus(engine: &Reservations, model: &BruteForce, cpus: u32) {
    for pool in PoolKind::ALL {
        for c in 0..=cpus {
            let used = engine.committed(c, pool);
            assert_eq!(
                used,
                model.committed(c, pool),
                "committed on CPU {c} {pool:?}"
            );
            assert!(
                used <= engine.capacity(pool),
                "CPU {c} over-committed: {used}"
            );
        }
    }
    assert_eq!(engine.is_used(), model.is_used());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn engine_decides_as_the_brute_force_model((cpus, (mixed, inst, data), ops) in case()) {
        let mut engine = Reservations::with_capacities(cpus, mixed, inst, data);
        let mut model = BruteForce::with_capacities(cpus, mixed, inst, data);
        prop_assert_eq!(engine.possible_cpus(), cpus);
        let mut live: Vec<(Target, PoolKind)> = Vec::new();
        for op in ops {
            match op {
                Op::Reserve { task, cpu, alt_cpu, inst } => {
                    let target = match task {
                        Some(k) => Target::Task { task: TaskId(k), cpu },
                        None => Target::Cpu(cpu.unwrap_or(alt_cpu)),
                    };
                    let pool = if inst { PoolKind::Inst } else { PoolKind::Data };
                    let got = engine.reserve(target, pool);
                    prop_assert_eq!(got, model.reserve(target, pool), "{:?} {:?}", target, pool);
                    if got.is_ok() {
                        live.push((target, pool));
                    }
                }
                Op::Release(i) => {
                    if !live.is_empty() {
                        let (target, pool) = live.swap_remove(i % live.len());
                        engine.release(target, pool);
                        model.release(target, pool);
                    }
                }
            }
            check_cpus(&engine, &model, cpus);
        }
        // Release the rest, newest first, then nothing may be left anywhere.
        while let Some((target, pool)) = live.pop() {
            engine.release(target, pool);
            model.release(target, pool);
            check_cpus(&engine, &model, cpus);
        }
        prop_assert!(!engine.is_used());
        prop_assert!(!model.is_used());
    }
}

/// The x86-64 arch gives one shared pool of four slots.
#[test]
fn x86_64_pools_are_mixed() {
    let r = Reservations::for_arch(&X86_64::new(), 3);
    assert_eq!(r.capacity(PoolKind::Inst), 4);
    assert_eq!(r.capacity(PoolKind::Data), 4);
    assert_eq!(r.possible_cpus(), 3);
    assert!(!r.is_used());
}
