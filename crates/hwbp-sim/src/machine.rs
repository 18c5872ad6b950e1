//! The simulated machine: possible CPUs that go offline and online, a suspend/resume cycle,
//! tasks scheduled explicitly or by a seeded generator, and memory accesses matched against
//! each CPU's registers with the architecture's hardware rules.
//!
//! Accesses are user-mode accesses by whatever runs on the CPU. Data hits are reported after
//! the access on x86 (traps) and before it on arm64 (faults); [`AccessReport::before_access`]
//! says which. Not for: timing, caches or instruction decoding.

use std::collections::BTreeMap;
use std::fmt;

use hwbp_core::access::Access;
use hwbp_core::attr::PoolKind;
use hwbp_core::hit::{hw_traps, HitStatus};
use hwbp_core::manager::{BpError, BpId, Manager};
use hwbp_core::reserve::TaskId;
use hwbp_core::spec::Region;
use hwbp_core::ErrorClass;

use crate::arch_glue::SimArch;

/// Why the machine refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// The breakpoint layer refused it.
    Bp(BpError),
    /// The CPU is offline.
    CpuOffline {
        /// The CPU.
        cpu: u32,
    },
    /// The machine is suspended: nothing runs until `resume`.
    Suspended,
}

impl SimError {
    /// The errno-level class.
    pub fn class(&self) -> ErrorClass {
        match self {
            SimError::Bp(e) => e.class(),
            SimError::CpuOffline { .. } | SimError::Suspended => ErrorClass::Invalid,
        }
    }
}

impl From<BpError> for SimError {
    fn from(e: BpError) -> Self {
        SimError::Bp(e)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Bp(e) => e.fmt(f),
            SimError::CpuOffline { cpu } => {
                write!(f, "CPU {cpu} is offline; bring it online first")
            }
            SimError::Suspended => f.write_str("the machine is suspended; resume it first"),
        }
    }
}

/// What one access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessReport {
    /// Breakpoints counted (their ids were pushed into the caller's buffer).
    pub delivered: u32,
    /// The exception came before the access was performed (arm64 watchpoints).
    pub before_access: bool,
    /// The handler asked for the resume flag (an instruction breakpoint fired).
    pub resume_flag: bool,
}

/// A deterministic multi-CPU machine running hwbp-core.
#[derive(Clone, Debug)]
pub struct Machine<A: SimArch> {
    manager: Manager<A>,
    tasks: Vec<TaskId>,
    debuggers: BTreeMap<TaskId, A::Debugger>,
    rng: u64,
}

impl<A: SimArch> Machine<A> {
    /// `possible_cpus` CPUs, all online, no tasks.
    pub fn new(arch: A, possible_cpus: u32) -> Machine<A> {
        Machine {
            manager: Manager::new(arch, possible_cpus),
            tasks: Vec::new(),
            debuggers: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The breakpoint layer.
    pub fn manager(&self) -> &Manager<A> {
        &self.manager
    }

    /// The breakpoint layer, for creating and changing breakpoints.
    pub fn manager_mut(&mut self) -> &mut Manager<A> {
        &mut self.manager
    }

    /// Adds a task (not running anywhere yet).
    pub fn add_task(&mut self, task: TaskId) {
        if !self.tasks.contains(&task) {
            self.tasks.push(task);
        }
    }

    /// Known tasks.
    pub fn tasks(&self) -> &[TaskId] {
        &self.tasks
    }

    fn check_runnable(&self, cpu: u32) -> Result<(), SimError> {
        if cpu >= self.manager.possible_cpus() {
            return Err(SimError::Bp(BpError::NoSuchCpu {
                cpu,
                possible: self.manager.possible_cpus(),
            }));
        }
        if self.manager.is_suspended() {
            return Err(SimError::Suspended);
        }
        if !self.manager.is_online(cpu) {
            return Err(SimError::CpuOffline { cpu });
        }
        Ok(())
    }

    /// Runs `task` on `cpu` (moving it from wherever it ran).
    pub fn run(&mut self, task: TaskId, cpu: u32) -> Result<(), SimError> {
        self.check_runnable(cpu)?;
        self.add_task(task);
        if self.manager.running(cpu) == Some(task) {
            return Ok(());
        }
        for other in 0..self.manager.possible_cpus() {
            if other != cpu && self.manager.running(other) == Some(task) {
                self.manager.switch_to(other, None)?;
            }
        }
        Ok(self.manager.switch_to(cpu, Some(task))?)
    }

    /// Leaves `cpu` idle.
    pub fn idle(&mut self, cpu: u32) -> Result<(), SimError> {
        self.check_runnable(cpu)?;
        Ok(self.manager.switch_to(cpu, None)?)
    }

    /// Takes `cpu` offline.
    pub fn offline(&mut self, cpu: u32) -> Result<(), SimError> {
        Ok(self.manager.offline(cpu)?)
    }

    /// Brings `cpu` online.
    pub fn online(&mut self, cpu: u32) -> Result<(), SimError> {
        Ok(self.manager.online(cpu)?)
    }

    /// Suspends the whole machine.
    pub fn suspend(&mut self) {
        self.manager.suspend();
    }

    /// Resumes the whole machine.
    pub fn resume(&mut self) {
        self.manager.resume();
    }

    /// Reseeds the scheduler's generator.
    pub fn seed(&mut self, seed: u64) {
        // splitmix64 of the seed: distinct seeds give distinct, never-zero xorshift states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        self.rng = if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z };
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// One scheduler tick driven by the seed: every online CPU gets a random known task (or
    /// goes idle); a task picked for two CPUs ends on the later one.
    pub fn schedule_random(&mut self) -> Result<(), SimError> {
        if self.manager.is_suspended() {
            return Err(SimError::Suspended);
        }
        for cpu in 0..self.manager.possible_cpus() {
            if !self.manager.is_online(cpu) {
                continue;
            }
            let pick = (self.next_random() % (self.tasks.len() as u64 + 1)) as usize;
            match self.tasks.get(pick).copied() {
                Some(task) => self.run(task, cpu)?,
                None => self.manager.switch_to(cpu, None)?,
            }
        }
        Ok(())
    }

    /// Registers of `pool_index` on `cpu` that trap this access, by the hardware's rules.
    fn trapping(&self, cpu: u32, pool_index: usize, access: Access, region: Region) -> u32 {
        let arch = self.manager.arch();
        let pool = match (arch.mixed_pools(), pool_index) {
            (true, _) | (false, 1) => PoolKind::Data,
            (false, _) => PoolKind::Inst,
        };
        let Ok(regs) = self.manager.regs(cpu) else {
            return 0;
        };
        if let Some(mask) = arch.trapping_registers(regs, pool, access, region) {
            return mask;
        }
        let mut mask = 0;
        for reg in 0..arch.slots(pool) {
            let Some(id) = self.manager.owner(cpu, pool_index, reg) else {
                continue;
            };
            if let Ok(info) = self.manager.info(id) {
                if !info.attr.disabled && hw_traps(arch, &info.hw, access, region) {
                    mask |= 1 << reg;
                }
            }
        }
        mask
    }

    /// Whatever runs on `cpu` performs `access` on `region`. Breakpoints that fire are counted
    /// and their ids pushed into `hits` (lowest register first).
    pub fn access(
        &mut self,
        cpu: u32,
        access: Access,
        region: Region,
        hits: &mut Vec<BpId>,
    ) -> Result<AccessReport, SimError> {
        self.check_runnable(cpu)?;
        let pools = if self.manager.arch().mixed_pools() {
            1
        } else {
            2
        };
        let mut status = HitStatus::default();
        for pool_index in 0..pools {
            status.fired[pool_index] = self.trapping(cpu, pool_index, access, region);
        }
        let before_access =
            access != Access::Execute && self.manager.arch().data_traps_before_access();
        if status.is_empty() {
            return Ok(AccessReport {
                delivered: 0,
                before_access,
                resume_flag: false,
            });
        }
        let running = self.manager.running(cpu);
        let debugger = running.and_then(|t| self.debuggers.get_mut(&t));
        let d = A::deliver(&mut self.manager, cpu, &status, debugger, &mut |id| {
            hits.push(id)
        });
        Ok(AccessReport {
            delivered: d.delivered,
            before_access,
            resume_flag: d.resume_flag,
        })
    }

    /// Writes debugger register `n` of `task` (x86: `PTRACE_POKEUSER` of `u_debugreg[n]`).
    pub fn debugger_poke(&mut self, task: TaskId, n: u32, value: u64) -> Result<(), ErrorClass> {
        self.add_task(task);
        let file = self.debuggers.entry(task).or_default();
        A::debugger_poke(&mut self.manager, file, task, n, value)
    }

    /// Reads debugger register `n` of `task`.
    pub fn debugger_peek(&mut self, task: TaskId, n: u32) -> Result<u64, ErrorClass> {
        self.add_task(task);
        let file = self.debuggers.entry(task).or_default();
        A::debugger_peek(&self.manager, file, n)
    }

    /// The breakpoints behind `task`'s debugger registers, as `(register number, id)`.
    pub fn debugger_bps(&self, task: TaskId) -> Vec<(u32, BpId)> {
        self.debuggers
            .get(&task)
            .map(A::debugger_bps)
            .unwrap_or_default()
    }
}
