//! The breakpoint manager: creating, modifying, enabling, disabling and closing breakpoints
//! with Linux's order of checks, on top of slot accounting ([`crate::reserve`]) and the per-CPU
//! install tables ([`crate::percpu`]).
//!
//! Order of checks, as `kernel/events/hw_breakpoint.c`:
//! - create: `EMPTY`/`INVALID` type → `EINVAL`; reserve (→ `ENOSPC`); then
//!   [`crate::arch::parse`]; on a parse error the reservation is released (spec §2.5);
//!   validation runs whether or not the breakpoint starts disabled (review demand 3).
//! - modify: validate first; on the strict (perf ioctl) path only address, length, type and
//!   `disabled` may change; re-account only when the pool changes; commit last. On any failure
//!   nothing was touched: same slot, same settings, same register (review demand 4).
//! - enable/disable only install/uninstall: a disabled breakpoint keeps its reservation, so
//!   enable never fails (review demand 6; docs/DESIGN.md).
//!
//! Not for: deciding which register a breakpoint gets (that is [`crate::percpu`]) or how an
//! arch encodes it (that is [`crate::arch`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::arch::{self, Arch, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{ErrorClass, RuleError};
use crate::percpu::{CpuState, TaskState};
use crate::reserve::{NoSlot, Reservations, Target, TaskId};

/// A breakpoint's handle. Never reused within one [`Manager`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BpId(pub u64);

impl fmt::Display for BpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bp#{}", self.0)
    }
}

/// Why the manager refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BpError {
    /// The arch or generic rules refuse the settings.
    Rule(RuleError),
    /// No slot left.
    NoSlot(NoSlot),
    /// No live breakpoint has this id.
    UnknownBreakpoint {
        /// The id asked for.
        id: BpId,
    },
    /// The strict (perf `PERF_EVENT_IOC_MODIFY_ATTRIBUTES`) modify path changed a field other
    /// than address, length, type and `disabled`.
    ImmutableField,
    /// A CPU number outside the possible CPUs.
    NoSuchCpu {
        /// The CPU asked for.
        cpu: u32,
        /// Number of possible CPUs.
        possible: u32,
    },
    /// The CPU is offline (a task cannot run there).
    CpuOffline {
        /// The CPU.
        cpu: u32,
    },
}

impl BpError {
    /// The errno Linux returns for the same request.
    pub const fn class(&self) -> ErrorClass {
        match self {
            BpError::Rule(r) => r.class(),
            BpError::NoSlot(_) => ErrorClass::NoSpace,
            BpError::UnknownBreakpoint { .. } => ErrorClass::NotFound,
            BpError::ImmutableField | BpError::NoSuchCpu { .. } | BpError::CpuOffline { .. } => {
                ErrorClass::Invalid
            }
        }
    }
}

impl From<RuleError> for BpError {
    fn from(e: RuleError) -> Self {
        BpError::Rule(e)
    }
}

impl From<NoSlot> for BpError {
    fn from(e: NoSlot) -> Self {
        BpError::NoSlot(e)
    }
}

impl fmt::Display for BpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BpError::Rule(r) => r.fmt(f),
            BpError::NoSlot(n) => write!(
                f,
                "no {} slot left on CPU {} ({} of {} in use); close another breakpoint there",
                n.pool.as_str(),
                n.cpu,
                n.used,
                n.capacity
            ),
            BpError::UnknownBreakpoint { id } => {
                write!(f, "{id} does not exist (closed already?); use a live id")
            }
            BpError::ImmutableField => f.write_str(
                "modifying a breakpoint may change only its address, length, type and disabled \
                 flag; create a new breakpoint to change anything else",
            ),
            BpError::NoSuchCpu { cpu, possible } => write!(
                f,
                "CPU {cpu} does not exist: possible CPUs are 0..{possible}; pick one of them"
            ),
            BpError::CpuOffline { cpu } => {
                write!(f, "CPU {cpu} is offline; bring it online first")
            }
        }
    }
}

/// One live breakpoint.
#[derive(Clone, Debug)]
pub(crate) struct Bp<A: Arch> {
    pub(crate) attr: BpAttr,
    pub(crate) hw: A::Hw,
    pub(crate) target: Target,
    pub(crate) ctx: ParseCtx,
    pub(crate) hits: u64,
    /// Where it sits in a per-CPU install table: `(cpu, pool index, register)`.
    pub(crate) reg: Option<(u32, usize, u32)>,
}

impl<A: Arch> Bp<A> {
    pub(crate) fn pool(&self) -> PoolKind {
        self.attr.pool_kind()
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.attr.disabled
    }
}

/// A read-only view of one breakpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpInfo<H> {
    /// Its current settings as requested.
    pub attr: BpAttr,
    /// Its validated arch setting.
    pub hw: H,
    /// What it is bound to.
    pub target: Target,
    /// Hits counted so far.
    pub hits: u64,
    /// The register it is installed in right now: `(cpu, pool index, register)`.
    pub register: Option<(u32, usize, u32)>,
}

/// All breakpoints of a machine, their slot accounting and their per-CPU install tables.
#[derive(Clone, Debug)]
pub struct Manager<A: Arch> {
    pub(crate) arch: A,
    pub(crate) reservations: Reservations,
    pub(crate) bps: BTreeMap<BpId, Bp<A>>,
    pub(crate) next_id: u64,
    pub(crate) cpus: Vec<CpuState<A>>,
    pub(crate) tasks: BTreeMap<TaskId, TaskState>,
    pub(crate) suspended: bool,
}

impl<A: Arch> Manager<A> {
    /// A machine with CPUs `0..possible_cpus`, all online, nothing reserved.
    pub fn new(arch: A, possible_cpus: u32) -> Manager<A> {
        let reservations = Reservations::for_arch(&arch, possible_cpus);
        let cpus = (0..possible_cpus).map(|_| CpuState::new(&arch)).collect();
        Manager {
            arch,
            reservations,
            bps: BTreeMap::new(),
            next_id: 0,
            cpus,
            tasks: BTreeMap::new(),
            suspended: false,
        }
    }

    /// The architecture.
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The slot accounting.
    pub fn reservations(&self) -> &Reservations {
        &self.reservations
    }

    /// Number of possible CPUs.
    pub fn possible_cpus(&self) -> u32 {
        self.cpus.len() as u32
    }

    /// Live breakpoint ids, in creation order.
    pub fn ids(&self) -> impl Iterator<Item = BpId> + '_ {
        self.bps.keys().copied()
    }

    /// Whether nothing is live: no breakpoint, no reservation, no installed register.
    pub fn is_empty(&self) -> bool {
        self.bps.is_empty()
            && !self.reservations.is_used()
            && self.cpus.iter().all(|c| c.is_empty())
            && self.tasks.is_empty()
    }

    /// A breakpoint's current state.
    pub fn info(&self, id: BpId) -> Result<BpInfo<A::Hw>, BpError> {
        let bp = self.bp(id)?;
        Ok(BpInfo {
            attr: bp.attr,
            hw: bp.hw,
            target: bp.target,
            hits: bp.hits,
            register: bp.reg,
        })
    }

    /// Hits counted for a breakpoint.
    pub fn hits(&self, id: BpId) -> Result<u64, BpError> {
        Ok(self.bp(id)?.hits)
    }

    pub(crate) fn bp(&self, id: BpId) -> Result<&Bp<A>, BpError> {
        self.bps.get(&id).ok_or(BpError::UnknownBreakpoint { id })
    }

    pub(crate) fn check_cpu(&self, cpu: u32) -> Result<(), BpError> {
        if cpu >= self.possible_cpus() {
            return Err(BpError::NoSuchCpu {
                cpu,
                possible: self.possible_cpus(),
            });
        }
        Ok(())
    }

    /// Creates a breakpoint (Linux `register_perf_hw_breakpoint()`): type check, reserve, then
    /// validate, releasing the reservation if validation fails. `ctx.task_bound` is taken from
    /// `target`.
    pub fn create(&mut self, attr: BpAttr, target: Target, ctx: ParseCtx) -> Result<BpId, BpError> {
        match target {
            Target::Cpu(c) | Target::Task { cpu: Some(c), .. } => self.check_cpu(c)?,
            Target::Task { cpu: None, .. } => {}
        }
        // __reserve_bp_slot(): EMPTY and INVALID are refused before any accounting.
        if attr.type_is_empty_or_invalid() {
            return Err(RuleError::InvalidType {
                bp_type: attr.bp_type,
            }
            .into());
        }
        let pool = attr.pool_kind();
        self.reservations.reserve(target, pool)?;
        let ctx = ParseCtx {
            task_bound: matches!(target, Target::Task { .. }),
            ..ctx
        };
        let hw = match arch::parse(&self.arch, &attr, ctx) {
            Ok(hw) => hw,
            Err(e) => {
                self.reservations.release(target, pool);
                return Err(e.into());
            }
        };
        let id = BpId(self.next_id);
        self.next_id += 1;
        self.bps.insert(
            id,
            Bp {
                attr,
                hw,
                target,
                ctx,
                hits: 0,
                reg: None,
            },
        );
        if let Target::Task { task, .. } = target {
            let cpus = &self.cpus;
            let state = self.tasks.entry(task).or_insert_with(|| TaskState {
                bps: Vec::new(),
                running_on: cpus
                    .iter()
                    .position(|c| c.running == Some(task))
                    .map(|c| c as u32),
            });
            state.bps.push(id);
        }
        self.install_if_active(id);
        Ok(id)
    }

    /// Creates one CPU-bound breakpoint per online CPU (Linux
    /// `register_wide_hw_breakpoint()`), all or nothing: on the first failure every one
    /// already created is closed again.
    pub fn create_wide(&mut self, attr: BpAttr, ctx: ParseCtx) -> Result<Vec<BpId>, BpError> {
        let mut ids = Vec::new();
        for cpu in 0..self.possible_cpus() {
            if !self.cpus[cpu as usize].online {
                continue;
            }
            match self.create(attr, Target::Cpu(cpu), ctx) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        let _ = self.close(id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(ids)
    }

    /// Changes a breakpoint's settings. `strict` is perf's ioctl path
    /// (`modify_user_hw_breakpoint_check(.., check = true)`): only address, length, type and
    /// `disabled` may differ. On any error the breakpoint is exactly as before.
    pub fn modify(&mut self, id: BpId, attr: BpAttr, strict: bool) -> Result<(), BpError> {
        let bp = self.bp(id)?;
        let (target, old_pool, ctx) = (bp.target, bp.pool(), bp.ctx);
        // 1. Validate (hw_breakpoint_parse) into a scratch setting; nothing is touched yet.
        let hw = arch::parse(&self.arch, &attr, ctx)?;
        // 2. perf's ioctl path: every other attribute field must be unchanged.
        if strict && attr.exclude_kernel != bp.attr.exclude_kernel {
            return Err(BpError::ImmutableField);
        }
        // 3. Re-account only when the type class changes (modify_bp_slot()).
        let new_pool = attr.pool_kind();
        if self.arch.pool_index(new_pool) != self.arch.pool_index(old_pool) {
            self.reservations.release(target, old_pool);
            if let Err(e) = self.reservations.reserve(target, new_pool) {
                let restored = self.reservations.reserve(target, old_pool);
                debug_assert!(restored.is_ok(), "re-reserving a just-released slot");
                return Err(e.into());
            }
        } else if new_pool != old_pool {
            // Same shared pool under a different kind name: move the bookkeeping along.
            self.reservations.release(target, old_pool);
            let moved = self.reservations.reserve(target, new_pool);
            debug_assert!(moved.is_ok(), "same pool index");
        }
        // 4. Commit: settings first, then the register (kept at the same index if possible).
        let old_reg = self.uninstall(id);
        let bp = self.bps.get_mut(&id).expect("checked above");
        bp.attr = attr;
        bp.hw = hw;
        if bp.enabled() {
            let same_pool = old_reg.is_some_and(|(_, p, _)| p == self.arch.pool_index(new_pool));
            match old_reg {
                Some((cpu, pool_index, reg)) if same_pool => {
                    self.install_at(id, cpu, pool_index, reg)
                }
                _ => self.install_if_active(id),
            }
        }
        Ok(())
    }

    /// Turns a breakpoint on. Never fails for a live breakpoint: its slot is still reserved.
    pub fn enable(&mut self, id: BpId) -> Result<(), BpError> {
        let bp = self
            .bps
            .get_mut(&id)
            .ok_or(BpError::UnknownBreakpoint { id })?;
        if bp.attr.disabled {
            bp.attr.disabled = false;
            self.install_if_active(id);
        }
        Ok(())
    }

    /// Turns a breakpoint off: out of the registers, slot kept.
    pub fn disable(&mut self, id: BpId) -> Result<(), BpError> {
        let bp = self
            .bps
            .get_mut(&id)
            .ok_or(BpError::UnknownBreakpoint { id })?;
        bp.attr.disabled = true;
        self.uninstall(id);
        Ok(())
    }

    /// Destroys a breakpoint and releases its slot.
    pub fn close(&mut self, id: BpId) -> Result<(), BpError> {
        self.bp(id)?;
        self.uninstall(id);
        let bp = self.bps.remove(&id).expect("checked above");
        self.reservations.release(bp.target, bp.pool());
        if let Target::Task { task, .. } = bp.target {
            if let Some(t) = self.tasks.get_mut(&task) {
                t.bps.retain(|b| *b != id);
                if t.bps.is_empty() {
                    self.tasks.remove(&task);
                }
            }
        }
        Ok(())
    }
}
