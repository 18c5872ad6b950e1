//! Per-CPU lifecycle: which breakpoint owns which register on each CPU, context switches,
//! CPU hotplug, suspend/resume and hit dispatch.
//!
//! Accounting ([`crate::reserve`]) decides *whether* a breakpoint may exist; this module decides
//! *which register* it occupies while its context is active: the lowest free register of its
//! pool, as Linux's `arch_install_hw_breakpoint()`. Admission guarantees a free register always
//! exists (spec §1(6)); a full table is a broken invariant and is checked in debug builds.
//!
//! Each CPU keeps a shadow of what it programmed (Linux x86 `cpu_debugreg[]`/`cpu_dr7`, arm64
//! `bp_on_reg[]`). Offline and suspend lose the hardware registers; online and resume write
//! the shadow back, so CPU-bound breakpoints return with identical register values (review
//! demand 1, as arm64's `hw_breakpoint_reset()`). Context switches, installs and hit dispatch
//! never allocate.
//!
//! Not for: admission decisions or validation (see [`crate::manager`]).

use alloc::vec::Vec;

use crate::arch::Arch;
use crate::hit::{Dispatched, HitStatus};
use crate::manager::{BpError, BpId, Manager};
use crate::reserve::{Target, TaskId};

/// One CPU's registers and install tables.
#[derive(Clone, Debug)]
pub(crate) struct CpuState<A: Arch> {
    pub(crate) online: bool,
    /// What this CPU should hold (kept while offline or suspended).
    pub(crate) shadow: A::Regs,
    /// What the CPU holds right now (empty while offline or suspended).
    pub(crate) hw: A::Regs,
    /// Owner of each register, per pool index.
    pub(crate) owners: [Vec<Option<BpId>>; 2],
    /// The task running here.
    pub(crate) running: Option<TaskId>,
}

impl<A: Arch> CpuState<A> {
    pub(crate) fn new(arch: &A) -> CpuState<A> {
        let mut owners: [Vec<Option<BpId>>; 2] = [Vec::new(), Vec::new()];
        for pool in crate::attr::PoolKind::ALL {
            let i = arch.pool_index(pool);
            let n = arch.slots(pool) as usize;
            if owners[i].len() < n {
                owners[i].resize(n, None);
            }
        }
        CpuState {
            online: true,
            shadow: arch.empty_regs(),
            hw: arch.empty_regs(),
            owners,
            running: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.owners.iter().all(|o| o.iter().all(Option::is_none))
    }
}

/// One task's breakpoints and where it runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskState {
    pub(crate) bps: Vec<BpId>,
    pub(crate) running_on: Option<u32>,
}

impl<A: Arch> Manager<A> {
    /// The registers CPU `cpu` holds right now (empty while offline or suspended).
    pub fn regs(&self, cpu: u32) -> Result<&A::Regs, BpError> {
        self.check_cpu(cpu)?;
        Ok(&self.cpus[cpu as usize].hw)
    }

    /// The registers CPU `cpu` is programmed with in software (kept across offline/suspend).
    pub fn shadow_regs(&self, cpu: u32) -> Result<&A::Regs, BpError> {
        self.check_cpu(cpu)?;
        Ok(&self.cpus[cpu as usize].shadow)
    }

    /// The breakpoint in register `reg` of pool index `pool_index` on `cpu`, if any.
    pub fn owner(&self, cpu: u32, pool_index: usize, reg: u32) -> Option<BpId> {
        self.cpus
            .get(cpu as usize)?
            .owners
            .get(pool_index)?
            .get(reg as usize)
            .copied()
            .flatten()
    }

    /// Whether `cpu` is online.
    pub fn is_online(&self, cpu: u32) -> bool {
        self.cpus.get(cpu as usize).is_some_and(|c| c.online)
    }

    /// Whether the machine is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// The task running on `cpu`.
    pub fn running(&self, cpu: u32) -> Option<TaskId> {
        self.cpus.get(cpu as usize)?.running
    }

    /// Where a breakpoint's context is active right now: the CPU it belongs in.
    fn active_cpu(&self, id: BpId) -> Option<u32> {
        let bp = self.bps.get(&id)?;
        match bp.target {
            Target::Cpu(c) => Some(c),
            Target::Task { task, cpu } => {
                let on = self.tasks.get(&task)?.running_on?;
                cpu.is_none_or(|c| c == on).then_some(on)
            }
        }
    }

    /// Installs an enabled breakpoint whose context is active, into the lowest free register.
    pub(crate) fn install_if_active(&mut self, id: BpId) {
        let Some(bp) = self.bps.get(&id) else { return };
        if !bp.enabled() || bp.reg.is_some() {
            return;
        }
        let Some(cpu) = self.active_cpu(id) else {
            return;
        };
        let pool_index = self.arch.pool_index(bp.pool());
        let free = self.cpus[cpu as usize].owners[pool_index]
            .iter()
            .position(Option::is_none);
        match free {
            Some(reg) => self.install_at(id, cpu, pool_index, reg as u32),
            None => debug_assert!(false, "admitted breakpoint {id} found no free register"),
        }
    }

    /// Writes a breakpoint into a given (free) register.
    pub(crate) fn install_at(&mut self, id: BpId, cpu: u32, pool_index: usize, reg: u32) {
        let bp = self.bps.get_mut(&id).expect("live breakpoint");
        let state = &mut self.cpus[cpu as usize];
        debug_assert!(state.owners[pool_index][reg as usize].is_none());
        state.owners[pool_index][reg as usize] = Some(id);
        bp.reg = Some((cpu, pool_index, reg));
        let pool = bp.pool();
        self.arch.install(&mut state.shadow, pool, reg, &bp.hw);
        if state.online && !self.suspended {
            self.arch.install(&mut state.hw, pool, reg, &bp.hw);
        }
    }

    /// Removes a breakpoint from its register, if it is in one; returns where it was.
    pub(crate) fn uninstall(&mut self, id: BpId) -> Option<(u32, usize, u32)> {
        let bp = self.bps.get_mut(&id)?;
        let (cpu, pool_index, reg) = bp.reg.take()?;
        let state = &mut self.cpus[cpu as usize];
        state.owners[pool_index][reg as usize] = None;
        let pool = bp.pool();
        self.arch.uninstall(&mut state.shadow, pool, reg, &bp.hw);
        if state.online && !self.suspended {
            self.arch.uninstall(&mut state.hw, pool, reg, &bp.hw);
        }
        Some((cpu, pool_index, reg))
    }

    /// Context switch on `cpu` to `next` (`None`: idle). The previous task's breakpoints leave
    /// the registers, the next task's enabled ones (for all CPUs or for this CPU) enter them;
    /// CPU-bound breakpoints stay. Like Linux's scheduler, the caller switches a migrating
    /// task out of its old CPU first; a task with breakpoints that is still recorded on
    /// another CPU is switched out there. Does not allocate.
    pub fn switch_to(&mut self, cpu: u32, next: Option<TaskId>) -> Result<(), BpError> {
        self.check_cpu(cpu)?;
        if !self.cpus[cpu as usize].online {
            return Err(BpError::CpuOffline { cpu });
        }
        if self.cpus[cpu as usize].running == next {
            return Ok(());
        }
        self.sched_out(cpu);
        if let Some(task) = next {
            if let Some(other) = self.tasks.get(&task).and_then(|t| t.running_on) {
                self.sched_out(other);
            }
            self.cpus[cpu as usize].running = Some(task);
            // Tasks without breakpoints have no state: nothing to install.
            let Some(state) = self.tasks.get_mut(&task) else {
                return Ok(());
            };
            state.running_on = Some(cpu);
            let count = state.bps.len();
            for i in 0..count {
                let id = self.tasks[&task].bps[i];
                self.install_if_active(id);
            }
        }
        Ok(())
    }

    fn sched_out(&mut self, cpu: u32) {
        let Some(task) = self.cpus[cpu as usize].running.take() else {
            return;
        };
        let Some(state) = self.tasks.get_mut(&task) else {
            return;
        };
        state.running_on = None;
        let count = state.bps.len();
        for i in 0..count {
            let id = self.tasks[&task].bps[i];
            self.uninstall(id);
        }
    }

    /// Takes `cpu` offline: its task is switched out and its registers are lost; CPU-bound
    /// breakpoints stay in its shadow table.
    pub fn offline(&mut self, cpu: u32) -> Result<(), BpError> {
        self.check_cpu(cpu)?;
        self.sched_out(cpu);
        let state = &mut self.cpus[cpu as usize];
        state.online = false;
        state.hw = self.arch.empty_regs();
        Ok(())
    }

    /// Brings `cpu` online: registers cleared (x86 `cpu_init()`), then every CPU-bound
    /// breakpoint written back from the shadow into the same register (review demand 1).
    pub fn online(&mut self, cpu: u32) -> Result<(), BpError> {
        self.check_cpu(cpu)?;
        let state = &mut self.cpus[cpu as usize];
        state.online = true;
        state.hw = if self.suspended {
            self.arch.empty_regs()
        } else {
            state.shadow.clone()
        };
        Ok(())
    }

    /// Suspends the machine: every CPU loses its registers.
    pub fn suspend(&mut self) {
        self.suspended = true;
        for state in &mut self.cpus {
            state.hw = self.arch.empty_regs();
        }
    }

    /// Resumes: every online CPU gets its registers back, identical to before.
    pub fn resume(&mut self) {
        self.suspended = false;
        for state in &mut self.cpus {
            if state.online {
                state.hw = state.shadow.clone();
            }
        }
    }

    /// Delivers a debug exception on `cpu` (Linux x86 `hw_breakpoint_handler()`, generic):
    /// for each fired register with an owner, skip execute breakpoints when the exception is
    /// also a single step (the step has precedence; the instruction breakpoint re-traps later),
    /// else consume the status bit, count the hit, call `on_hit`, and for an execute
    /// breakpoint ask for the resume flag. Does not allocate.
    pub fn dispatch(
        &mut self,
        cpu: u32,
        status: &HitStatus,
        on_hit: &mut dyn FnMut(BpId),
    ) -> Dispatched {
        let mut out = Dispatched::default();
        let Some(state) = self.cpus.get(cpu as usize) else {
            return out;
        };
        for (pool_index, fired) in status.fired.iter().enumerate() {
            let mut bits = *fired;
            while bits != 0 {
                let reg = bits.trailing_zeros();
                bits &= bits - 1;
                let Some(id) = state.owners[pool_index]
                    .get(reg as usize)
                    .copied()
                    .flatten()
                else {
                    continue;
                };
                let Some(bp) = self.bps.get_mut(&id) else {
                    continue;
                };
                let execute = self.arch.hw_access(&bp.hw) == crate::access::Access::Execute;
                if execute && status.single_step {
                    continue;
                }
                out.consumed[pool_index] |= 1 << reg;
                // perf_bp_event(): counts only while the event runs (installed and enabled).
                if bp.enabled() {
                    bp.hits += 1;
                    out.delivered += 1;
                    on_hit(id);
                }
                out.resume_flag |= execute;
            }
        }
        out
    }
}
