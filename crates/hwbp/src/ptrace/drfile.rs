//! Differential testing of the x86 ptrace debug-register file: random DR0–DR7
//! `PTRACE_POKEUSER`/`PTRACE_PEEKUSER` sequences applied to two [`DrFile`]s, compared step by
//! step (result and read-back value).
//!
//! The real side is [`PtraceDrFile`] (a stopped tracee); the model is [`CoreDrFile`],
//! hwbp-core's emulation of Linux's `arch/x86/kernel/ptrace.c` (the sim's `ptrace
//! poke/peek`). Any other [`DrFile`] plugs in the same way.
//!
//! Not for: arming watches (stop mode uses perf `sigtrap` events, see `docs/STOP_MODE.md`).

use std::fmt;

use hwbp_core::arch::x86_64::{DebugRegFile, X86_64};
use hwbp_core::manager::Manager;
use hwbp_core::reserve::TaskId;

use crate::sys::ptrace as sys;
use crate::sys::ptrace::Tid;

/// One debug-register request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrOp {
    /// `PTRACE_PEEKUSER` of `u_debugreg[reg]`.
    Peek {
        /// 0..=7.
        reg: u32,
    },
    /// `PTRACE_POKEUSER` of `u_debugreg[reg]`.
    Poke {
        /// 0..=7.
        reg: u32,
        /// The value written.
        value: u64,
    },
}

/// The answer to a [`DrOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrOutcome {
    /// A poke succeeded.
    Done,
    /// A peek returned this value.
    Value(u64),
    /// The request failed with this errno.
    Errno(i32),
}

/// A thread's ptrace debug-register file, real or modelled.
pub trait DrFile {
    /// Applies one request.
    fn apply(&mut self, op: DrOp) -> DrOutcome;
}

/// The real kernel: a thread in a ptrace stop.
#[derive(Debug)]
pub struct PtraceDrFile {
    tid: Tid,
}

impl PtraceDrFile {
    /// `tid` must be a tracee of the calling thread, currently in a ptrace stop.
    pub fn new(tid: Tid) -> PtraceDrFile {
        PtraceDrFile { tid }
    }
}

impl DrFile for PtraceDrFile {
    fn apply(&mut self, op: DrOp) -> DrOutcome {
        match op {
            DrOp::Peek { reg } => match sys::peek_debugreg(self.tid, reg) {
                Ok(v) => DrOutcome::Value(v),
                Err(e) => DrOutcome::Errno(e.0),
            },
            DrOp::Poke { reg, value } => match sys::poke_debugreg(self.tid, reg, value) {
                Ok(()) => DrOutcome::Done,
                Err(e) => DrOutcome::Errno(e.0),
            },
        }
    }
}

/// hwbp-core's model: one thread's [`DebugRegFile`] on a [`Manager`] with `cpus` CPUs and
/// nothing else installed.
#[derive(Clone, Debug)]
pub struct CoreDrFile {
    manager: Manager<X86_64>,
    file: DebugRegFile,
    task: TaskId,
}

impl CoreDrFile {
    /// A fresh model machine with `cpus` possible CPUs.
    pub fn new(cpus: u32) -> CoreDrFile {
        CoreDrFile {
            manager: Manager::new(X86_64::new(), cpus),
            file: DebugRegFile::new(),
            task: TaskId(1),
        }
    }
}

impl DrFile for CoreDrFile {
    fn apply(&mut self, op: DrOp) -> DrOutcome {
        let errno = |e: hwbp_core::arch::x86_64::DrError| DrOutcome::Errno(e.class().errno());
        match op {
            DrOp::Peek { reg } => match self.file.peek(&self.manager, reg) {
                Ok(v) => DrOutcome::Value(v),
                Err(e) => errno(e),
            },
            DrOp::Poke { reg, value } => {
                match self.file.poke(&mut self.manager, self.task, reg, value) {
                    Ok(()) => DrOutcome::Done,
                    Err(e) => errno(e),
                }
            }
        }
    }
}

/// A small deterministic generator (SplitMix64), so a printed seed replays a run.
#[derive(Clone, Debug)]
pub struct StepRng(u64);

impl StepRng {
    /// From a seed.
    pub fn new(seed: u64) -> StepRng {
        StepRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `steps` random requests. Addresses come from `user_addrs` (mapped, 8-aligned user
/// addresses of the tracee), shifted to every alignment, plus 0, kernel and non-canonical
/// addresses; DR7 values mix valid and invalid R/W and LEN codes, L/G/LE/GE and reserved bits.
pub fn random_steps(seed: u64, steps: usize, user_addrs: &[u64]) -> Vec<DrOp> {
    let mut rng = StepRng::new(seed);
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let reg = match rng.below(16) {
            0..=5 => rng.below(4) as u32,
            6..=10 => 7,
            11 | 12 => 6,
            _ => 4 + rng.below(2) as u32,
        };
        if rng.below(3) == 0 {
            out.push(DrOp::Peek { reg });
            continue;
        }
        let value = match reg {
            0..=3 => match rng.below(10) {
                0 => 0,
                1 => 0xffff_8000_0000_1000 + 8 * rng.below(16), // kernel
                2 => 0x0000_8000_0000_0000 - 4 + rng.below(8),  // around TASK_SIZE_MAX
                _ if user_addrs.is_empty() => 0x1000 + rng.below(0x1000),
                _ => user_addrs[rng.below(user_addrs.len() as u64) as usize] + rng.below(8),
            },
            7 => {
                let mut v = 0u64;
                for n in 0..4 {
                    if rng.below(3) == 0 {
                        continue;
                    }
                    v |= (rng.below(4)) << (2 * n); // L/G
                    v |= (rng.below(16)) << (16 + 4 * n); // R/W + LEN nibble
                }
                if rng.below(4) == 0 {
                    v |= rng.below(4) << 8; // LE/GE
                }
                if rng.below(8) == 0 {
                    v |= rng.next_u64() & 0xFFFF_FFFF_0000_FC00; // reserved bits
                }
                if rng.below(5) == 0 {
                    v = 0;
                }
                v
            }
            _ => rng.next_u64() & if rng.below(2) == 0 { 0xF } else { u64::MAX },
        };
        out.push(DrOp::Poke { reg, value });
    }
    out
}

/// The first step at which two register files disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the step.
    pub step: usize,
    /// The request.
    pub op: DrOp,
    /// What the first file answered.
    pub left: DrOutcome,
    /// What the second file answered.
    pub right: DrOutcome,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {}: {:?} -> left {:?}, right {:?}",
            self.step, self.op, self.left, self.right
        )
    }
}

/// Applies `steps` to both files; after every poke both files are also read back (DR0–DR3,
/// DR6, DR7) and compared.
pub fn run_differential(
    left: &mut dyn DrFile,
    right: &mut dyn DrFile,
    steps: &[DrOp],
) -> Result<usize, Mismatch> {
    let mut compared = 0;
    for (step, &op) in steps.iter().enumerate() {
        let mut check = |op: DrOp| {
            let (l, r) = (left.apply(op), right.apply(op));
            if l != r {
                return Err(Mismatch {
                    step,
                    op,
                    left: l,
                    right: r,
                });
            }
            Ok(())
        };
        check(op)?;
        compared += 1;
        if matches!(op, DrOp::Poke { .. }) {
            for reg in [0, 1, 2, 3, 6, 7] {
                check(DrOp::Peek { reg })?;
                compared += 1;
            }
        }
    }
    Ok(compared)
}
