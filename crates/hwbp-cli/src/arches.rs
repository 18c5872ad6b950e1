//! `--arch` and `--slots`: which architecture's rules and registers to use.
//!
//! Not for: the rules themselves (hwbp-core's `arch` modules).

use std::fmt;

use anyhow::anyhow;
use clap::ValueEnum;
use hwbp_core::arch::arm64::{Arm64, ARM_MAX_WRP};
use hwbp_core::arch::power::Power;
use hwbp_core::arch::x86_64::{HBP_NUM, X86_64};

use crate::messages::Failure;

/// An architecture the CLI can plan for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchName {
    /// x86-64: DR0–DR3 and DR7, one pool of 4 slots.
    #[value(name = "x86_64")]
    X86_64,
    /// arm64: breakpoint and watchpoint pools (6 and 4 by default).
    Arm64,
    /// POWER9: one DAWR.
    Power9,
    /// POWER10: two DAWRs.
    Power10,
}

impl ArchName {
    /// The machine this binary runs on, if the CLI knows it.
    pub fn host() -> Option<ArchName> {
        if cfg!(target_arch = "x86_64") {
            Some(ArchName::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(ArchName::Arm64)
        } else if cfg!(target_arch = "powerpc64") {
            Some(ArchName::Power9)
        } else {
            None
        }
    }

    /// The name as `--arch` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchName::X86_64 => "x86_64",
            ArchName::Arm64 => "arm64",
            ArchName::Power9 => "power9",
            ArchName::Power10 => "power10",
        }
    }

    /// `--arch`, or the host's.
    pub fn or_host(arch: Option<ArchName>) -> Result<ArchName, Failure> {
        arch.or_else(ArchName::host).ok_or_else(|| {
            Failure::refused(anyhow!(
                "this host's architecture has no breakpoint model; pass --arch \
                 x86_64, arm64, power9 or power10"
            ))
        })
    }
}

impl fmt::Display for ArchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--slots` value the arch cannot have.
fn bad_slots(arch: ArchName, slots: u32, range: &str) -> Failure {
    Failure::refused(anyhow!(
        "--slots {slots}: {arch} has {range} slots; pick a number in that range"
    ))
}

/// x86-64 with `--slots` address registers (1..=4; default 4).
pub fn x86_64(slots: Option<u32>) -> Result<X86_64, Failure> {
    match slots {
        None => Ok(X86_64::new()),
        Some(n) => X86_64::with_slots(n)
            .ok_or_else(|| bad_slots(ArchName::X86_64, n, &format!("1 to {HBP_NUM}"))),
    }
}

/// arm64 with `--slots` breakpoint and watchpoint registers each (2..=16; default 6 and 4).
pub fn arm64(slots: Option<u32>) -> Result<Arm64, Failure> {
    match slots {
        None => Ok(Arm64::new()),
        Some(n) => Arm64::with_slots(n, n)
            .ok_or_else(|| bad_slots(ArchName::Arm64, n, &format!("2 to {ARM_MAX_WRP}"))),
    }
}

/// POWER9 (one DAWR) or POWER10 (two); `--slots` may only name that number, since a DAWR
/// cannot be taken away from the model.
pub fn power(name: ArchName, slots: Option<u32>) -> Result<Power, Failure> {
    let arch = match name {
        ArchName::Power10 => Power::power10(),
        _ => Power::power9(),
    };
    match slots {
        Some(n) if n != arch.dawrs() => Err(Failure::refused(anyhow!(
            "--slots {n}: {name} has exactly {} DAWR{}; omit --slots",
            arch.dawrs(),
            if arch.dawrs() == 1 { "" } else { "s" }
        ))),
        _ => Ok(arch),
    }
}
