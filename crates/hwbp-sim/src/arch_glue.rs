//! What the simulator needs from each architecture beyond [`Arch`]: how to build one from a
//! scenario's `slots` line, how a debug exception is delivered, and the arch's debugger
//! register interface (x86's ptrace DR file), if it has one that is emulated.
//!
//! Not for: hardware rules — those live in `hwbp_core::arch`.

use core::fmt::Debug;

use hwbp_core::arch::arm64::{Arm64, DEFAULT_BRPS};
use hwbp_core::arch::power::Power;
use hwbp_core::arch::x86_64::{DebugRegFile, Dr6, X86_64};
use hwbp_core::arch::Arch;
use hwbp_core::hit::{Dispatched, HitStatus};
use hwbp_core::manager::{BpId, Manager};
use hwbp_core::reserve::TaskId;
use hwbp_core::ErrorClass;

/// An architecture the simulator can run.
pub trait SimArch: Arch + Sized {
    /// Per-task debugger register state (x86: [`DebugRegFile`]); `()` where none is emulated.
    type Debugger: Default + Clone + Debug;

    /// This arch with `data` data slots and `inst` instruction slots (required equal where
    /// the pools are shared); `None` if the hardware cannot have that many.
    fn with_pool_sizes(self, data: u32, inst: Option<u32>) -> Option<Self>;

    /// Delivers a debug exception reporting `status` on `cpu`, through the arch's own status
    /// register and handler; `debugger` is the running task's debugger state, if any.
    fn deliver(
        manager: &mut Manager<Self>,
        cpu: u32,
        status: &HitStatus,
        debugger: Option<&mut Self::Debugger>,
        on_hit: &mut dyn FnMut(BpId),
    ) -> Dispatched {
        let _ = debugger;
        manager.dispatch(cpu, status, on_hit)
    }

    /// Writes debugger register `n` of `task` (`EOPNOTSUPP` where not emulated).
    fn debugger_poke(
        manager: &mut Manager<Self>,
        debugger: &mut Self::Debugger,
        task: TaskId,
        n: u32,
        value: u64,
    ) -> Result<(), ErrorClass> {
        let _ = (manager, debugger, task, n, value);
        Err(ErrorClass::NotSupported)
    }

    /// Reads debugger register `n` (`EOPNOTSUPP` where not emulated).
    fn debugger_peek(
        manager: &Manager<Self>,
        debugger: &Self::Debugger,
        n: u32,
    ) -> Result<u64, ErrorClass> {
        let _ = (manager, debugger, n);
        Err(ErrorClass::NotSupported)
    }

    /// The breakpoints behind the debugger registers, as `(register number, id)`.
    fn debugger_bps(debugger: &Self::Debugger) -> Vec<(u32, BpId)> {
        let _ = debugger;
        Vec::new()
    }
}

impl SimArch for X86_64 {
    type Debugger = DebugRegFile;

    fn with_pool_sizes(self, data: u32, inst: Option<u32>) -> Option<Self> {
        if inst.is_some_and(|i| i != data) {
            return None;
        }
        X86_64::with_slots(data)
    }

    /// DR6 with B0–B3 and BS as the hardware sets them, then Linux's #DB path: the user-mode
    /// path with the task's ptrace state when a task runs, else the breakpoint handler alone.
    fn deliver(
        manager: &mut Manager<Self>,
        cpu: u32,
        status: &HitStatus,
        debugger: Option<&mut DebugRegFile>,
        on_hit: &mut dyn FnMut(BpId),
    ) -> Dispatched {
        let mut dr6 = u64::from(status.fired[0]) & Dr6::TRAP_BITS;
        if status.single_step {
            dr6 |= Dr6::BS;
        }
        match debugger {
            Some(file) => {
                file.debug_exception(manager, cpu, Dr6(dr6), on_hit)
                    .0
                    .dispatched
            }
            None => hwbp_core::arch::x86_64::handle_dr6(manager, cpu, Dr6(dr6), on_hit).dispatched,
        }
    }

    fn debugger_poke(
        manager: &mut Manager<Self>,
        debugger: &mut DebugRegFile,
        task: TaskId,
        n: u32,
        value: u64,
    ) -> Result<(), ErrorClass> {
        debugger
            .poke(manager, task, n, value)
            .map_err(|e| e.class())
    }

    fn debugger_peek(
        manager: &Manager<Self>,
        debugger: &DebugRegFile,
        n: u32,
    ) -> Result<u64, ErrorClass> {
        debugger.peek(manager, n).map_err(|e| e.class())
    }

    fn debugger_bps(debugger: &DebugRegFile) -> Vec<(u32, BpId)> {
        debugger
            .breakpoints()
            .iter()
            .enumerate()
            .filter_map(|(n, b)| b.map(|id| (n as u32, id)))
            .collect()
    }
}

impl SimArch for Arm64 {
    type Debugger = ();

    fn with_pool_sizes(self, data: u32, inst: Option<u32>) -> Option<Self> {
        Arm64::with_slots(inst.unwrap_or(DEFAULT_BRPS), data)
    }
}

impl SimArch for Power {
    type Debugger = ();

    /// The DAWR count is the model's (POWER9: 1, POWER10: 2); there are no instruction slots.
    fn with_pool_sizes(self, data: u32, inst: Option<u32>) -> Option<Self> {
        (data == self.dawrs() && inst.unwrap_or(0) == 0).then_some(self)
    }
}
