//! The per-thread debug-register file: which watch holds which slot, and the register values.
//!
//! Modelled on gdb's `gdb/nat/x86-dregs.c` (`x86_dr_insert_watchpoint()`,
//! `x86_insert_aligned_watchpoint()`), generic over [`Arch`]:
//! - a watch ([`Spec`]) is planned into pieces with [`Arch::plan`] and every piece is validated
//!   with Linux's rules ([`crate::arch::parse`]) before anything changes;
//! - identical pieces (same address, length, type and privilege) share one slot by reference
//!   count, within one watch and across watches;
//! - a new piece takes the lowest free register of its pool ([`Arch::pool_index`]), as Linux's
//!   `arch_install_hw_breakpoint()` does;
//! - an insert is transactional: accounting first (does the watch fit?), then assignment on a
//!   copy that is committed only when every piece is placed, so a failed multi-slot insert
//!   changes nothing;
//! - registers change only through [`Arch::install`] / [`Arch::uninstall`] (Linux semantics: x86
//!   uninstall leaves GE set, review demand 5), and when the last slot is freed the file returns
//!   to exactly its baseline (the value it was constructed with).
//!
//! Not for: admission across tasks and CPUs (Linux's `reserve_bp_slot()`), which decides whether
//! a breakpoint may exist at all; this models one thread's registers once that is decided. Not
//! for touching hardware: the ptrace backend and the simulator copy [`RegFile::regs`] out.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::access::Access;
use crate::arch::{parse, Arch, Chunk, ParseCtx};
use crate::attr::{BpAttr, PoolKind};
use crate::error::{ErrorClass, PlanError};
use crate::spec::Spec;

/// Names one inserted watch; never reused within a [`RegFile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(u64);

impl WatchId {
    /// The number (1 for the first watch inserted into a file, then 2, 3, ...).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watch {}", self.0)
    }
}

/// One hardware register: a pool and an index in it.
///
/// `pool` is the kind the piece is accounted as. On arches whose kinds share one pool (x86),
/// `index` counts in that shared pool: an execute breakpoint in slot 2 is DR2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Instruction or data.
    pub pool: PoolKind,
    /// Register number inside the pool (`slot_index`).
    pub index: u32,
}

/// One piece of a watch and the slot it is programmed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Piece {
    /// Where it lives (shared with other pieces if they are identical).
    pub slot: Slot,
    /// What it watches.
    pub chunk: Chunk,
}

/// A watch in the file: its spec and its pieces, in address order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    id: WatchId,
    spec: Spec,
    pieces: Vec<Piece>,
}

impl Watch {
    /// Its id.
    pub fn id(&self) -> WatchId {
        self.id
    }

    /// What was asked for.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The pieces covering it, in address order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }
}

/// An occupied slot, as [`RegFile::occupied`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Occupied<H> {
    /// The register.
    pub slot: Slot,
    /// The setting programmed into it.
    pub hw: H,
    /// How many pieces (of all watches) share it; at least 1.
    pub refs: u32,
}

/// What makes two pieces identical: gdb compares `dr_mirror[i] == addr` and the DR7 RW/LEN
/// bits; we compare the request that produced the setting (`disabled` plays no part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PieceKey {
    addr: u64,
    len_bytes: u64,
    bp_type: u32,
    exclude_kernel: bool,
}

impl PieceKey {
    const fn of(attr: &BpAttr) -> PieceKey {
        PieceKey {
            addr: attr.addr,
            len_bytes: attr.len_bytes,
            bp_type: attr.bp_type,
            exclude_kernel: attr.exclude_kernel,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Occupant<H> {
    key: PieceKey,
    kind: PoolKind,
    hw: H,
    refs: u32,
}

/// A [`RegFile`] operation that could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegFileError {
    /// No watch with this id is in the file (never inserted, or already removed).
    UnknownWatch {
        /// The id asked for.
        id: WatchId,
    },
}

impl RegFileError {
    /// The errno Linux would return for the same mistake (`ENOENT`).
    pub const fn class(&self) -> ErrorClass {
        match self {
            RegFileError::UnknownWatch { .. } => ErrorClass::NotFound,
        }
    }
}

impl fmt::Display for RegFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegFileError::UnknownWatch { id } => write!(
                f,
                "{id} is not in this register file (never inserted, or already removed); \
                 use an id returned by insert"
            ),
        }
    }
}

/// One thread's debug-register file: the watches, the slots they hold, and the register values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegFile<A: Arch> {
    arch: A,
    ctx: ParseCtx,
    baseline: A::Regs,
    regs: A::Regs,
    /// Indexed by [`Arch::pool_index`], then by register number; `None` = vacant.
    pools: Vec<Vec<Option<Occupant<A::Hw>>>>,
    /// In insertion order.
    watches: Vec<Watch>,
    next_id: u64,
}

impl<A: Arch> RegFile<A> {
    /// An empty file whose baseline is [`Arch::empty_regs`] (all zero).
    ///
    /// `ctx` is who asks, for validation (kernel addresses need `cap_sys_admin`; arm64 refuses
    /// them for task-bound requests).
    pub fn new(arch: A, ctx: ParseCtx) -> RegFile<A> {
        let baseline = arch.empty_regs();
        RegFile::with_baseline(arch, ctx, baseline)
    }

    /// An empty file starting from `baseline` (e.g. what the thread's registers held before we
    /// took over, such as x86 DR7 with LE set). Removing every watch restores it exactly.
    pub fn with_baseline(arch: A, ctx: ParseCtx, baseline: A::Regs) -> RegFile<A> {
        let pool_count = PoolKind::ALL
            .iter()
            .map(|&k| arch.pool_index(k) + 1)
            .max()
            .unwrap_or(1);
        let mut pools = vec![Vec::new(); pool_count];
        for kind in PoolKind::ALL {
            let pool = &mut pools[arch.pool_index(kind)];
            let capacity = arch.slots(kind) as usize;
            if pool.len() < capacity {
                pool.resize(capacity, None);
            }
        }
        RegFile {
            regs: baseline.clone(),
            baseline,
            arch,
            ctx,
            pools,
            watches: Vec::new(),
            next_id: 1,
        }
    }

    /// The architecture.
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The validation context.
    pub fn ctx(&self) -> ParseCtx {
        self.ctx
    }

    /// The register values to program now.
    pub fn regs(&self) -> &A::Regs {
        &self.regs
    }

    /// The register values the file returns to when it holds nothing.
    pub fn baseline(&self) -> &A::Regs {
        &self.baseline
    }

    /// Slots in the pool `kind` is accounted in (shared on x86: the same for both kinds).
    pub fn capacity(&self, kind: PoolKind) -> u32 {
        self.pool(kind).len() as u32
    }

    /// Occupied slots in the pool `kind` is accounted in.
    pub fn used(&self, kind: PoolKind) -> u32 {
        self.pool(kind).iter().filter(|s| s.is_some()).count() as u32
    }

    /// Vacant slots in the pool `kind` is accounted in.
    pub fn free(&self, kind: PoolKind) -> u32 {
        self.capacity(kind) - self.used(kind)
    }

    /// Whether no slot is occupied (then [`RegFile::regs`] equals [`RegFile::baseline`]).
    pub fn is_empty(&self) -> bool {
        self.pools.iter().flatten().all(Option::is_none)
    }

    /// The watches, in insertion order.
    pub fn watches(&self) -> &[Watch] {
        &self.watches
    }

    /// One watch.
    pub fn watch(&self, id: WatchId) -> Option<&Watch> {
        self.watches.iter().find(|w| w.id == id)
    }

    /// The register `slot` names, if it is occupied. On a shared pool (x86) either kind finds
    /// the register; the returned slot names the kind of the piece that occupies it.
    pub fn slot(&self, slot: Slot) -> Option<Occupied<A::Hw>> {
        let o = self.pool(slot.pool).get(slot.index as usize)?.as_ref()?;
        Some(Occupied {
            slot: Slot {
                pool: o.kind,
                index: slot.index,
            },
            hw: o.hw,
            refs: o.refs,
        })
    }

    /// Every occupied slot, pool by pool ([`Arch::pool_index`] order), lowest index first.
    pub fn occupied(&self) -> impl Iterator<Item = Occupied<A::Hw>> + '_ {
        self.pools.iter().flat_map(|pool| {
            pool.iter().enumerate().filter_map(|(i, s)| {
                s.as_ref().map(|o| Occupied {
                    slot: Slot {
                        pool: o.kind,
                        index: i as u32,
                    },
                    hw: o.hw,
                    refs: o.refs,
                })
            })
        })
    }

    fn pool(&self, kind: PoolKind) -> &[Option<Occupant<A::Hw>>] {
        &self.pools[self.arch.pool_index(kind)]
    }

    /// Plans `spec`, validates every piece, and programs the pieces that are not already
    /// programmed into the lowest free registers; all or nothing.
    ///
    /// Errors: [`PlanError::Rule`] when the spec or one piece breaks an arch rule;
    /// [`PlanError::DoesNotFit`] when the pieces that cannot share an occupied slot outnumber
    /// the free slots of their pool. On error the file is unchanged.
    pub fn insert(&mut self, spec: &Spec) -> Result<WatchId, PlanError> {
        let chunks = self.arch.plan(spec).map_err(|e| self.in_this_file(e))?;
        let mut settings = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            settings.push(parse(&self.arch, &chunk.attr, self.ctx)?);
        }
        self.account(spec.access, &chunks)?;

        // Assignment, on a copy (gdb's `local_state`), committed below.
        let mut pools = self.pools.clone();
        let mut regs = self.regs.clone();
        let mut pieces = Vec::with_capacity(chunks.len());
        for (chunk, hw) in chunks.iter().zip(&settings) {
            let kind = chunk.attr.pool_kind();
            let key = PieceKey::of(&chunk.attr);
            let pool = &mut pools[self.arch.pool_index(kind)];
            let shared = pool
                .iter_mut()
                .enumerate()
                .find(|(_, s)| matches!(s, Some(o) if o.key == key));
            let index = match shared {
                Some((i, Some(o))) => {
                    o.refs = o
                        .refs
                        .checked_add(1)
                        .ok_or_else(|| self.no_fit(spec.access, kind, 1))?;
                    i
                }
                _ => {
                    let i = pool
                        .iter()
                        .position(Option::is_none)
                        .ok_or_else(|| self.no_fit(spec.access, kind, 1))?;
                    pool[i] = Some(Occupant {
                        key,
                        kind,
                        hw: *hw,
                        refs: 1,
                    });
                    self.arch.install(&mut regs, kind, i as u32, hw);
                    i
                }
            };
            pieces.push(Piece {
                slot: Slot {
                    pool: kind,
                    index: index as u32,
                },
                chunk: *chunk,
            });
        }

        let id = WatchId(self.next_id);
        self.next_id += 1;
        self.pools = pools;
        self.regs = regs;
        self.watches.push(Watch {
            id,
            spec: *spec,
            pieces,
        });
        Ok(id)
    }

    /// Removes a watch: drops one reference from each of its slots and uninstalls the slots
    /// no piece uses any more. When the last slot goes the registers return to the baseline.
    /// Returns the removed watch's spec.
    pub fn remove(&mut self, id: WatchId) -> Result<Spec, RegFileError> {
        let at = self
            .watches
            .iter()
            .position(|w| w.id == id)
            .ok_or(RegFileError::UnknownWatch { id })?;
        let watch = self.watches.remove(at);
        for piece in &watch.pieces {
            let p = self.arch.pool_index(piece.slot.pool);
            let index = piece.slot.index;
            let slot = &mut self.pools[p][index as usize];
            if let Some(o) = slot {
                o.refs -= 1;
                if o.refs == 0 {
                    self.arch.uninstall(&mut self.regs, o.kind, index, &o.hw);
                    *slot = None;
                }
            } else {
                debug_assert!(false, "{id} held a vacant slot {index}");
            }
        }
        if self.is_empty() {
            self.regs = self.baseline.clone();
        }
        Ok(watch.spec)
    }

    /// Removes every watch; the registers return to the baseline.
    pub fn clear(&mut self) {
        for pool in &mut self.pools {
            pool.iter_mut().for_each(|s| *s = None);
        }
        self.watches.clear();
        self.regs = self.baseline.clone();
    }

    /// Accounting, before any assignment: per pool, the pieces that share no occupied slot
    /// (counted once however often they repeat) must fit into the free slots.
    ///
    /// `needed(pool) <= capacity(pool) - used(pool)`
    fn account(&self, access: Access, chunks: &[Chunk]) -> Result<(), PlanError> {
        for kind in PoolKind::ALL {
            let index = self.arch.pool_index(kind);
            let mut new_keys: Vec<PieceKey> = Vec::new();
            for chunk in chunks {
                if chunk.attr.pool_kind() != kind {
                    continue;
                }
                let key = PieceKey::of(&chunk.attr);
                let held = self.pools[index]
                    .iter()
                    .any(|s| matches!(s, Some(o) if o.key == key));
                if !held && !new_keys.contains(&key) {
                    new_keys.push(key);
                }
            }
            let needed = new_keys.len() as u32;
            if needed > self.free(kind) {
                return Err(self.no_fit(access, kind, needed));
            }
        }
        Ok(())
    }

    fn no_fit(&self, access: Access, pool: PoolKind, needed: u32) -> PlanError {
        PlanError::DoesNotFit {
            pool,
            access,
            needed,
            available: self.free(pool),
            capacity: self.capacity(pool),
        }
    }

    /// A planner's "does not fit" counts against an empty pool; say what is free here.
    fn in_this_file(&self, e: PlanError) -> PlanError {
        match e {
            PlanError::DoesNotFit {
                pool,
                access,
                needed,
                ..
            } => self.no_fit(access, pool, needed),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
