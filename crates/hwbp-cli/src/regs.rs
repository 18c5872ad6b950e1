//! How each architecture's registers are shown: text lines and JSON.
//!
//! The one place in the CLI that speaks hardware words (DR7, WCR, DAWR); everything else is
//! generic over [`hwbp_core::arch::Arch`]. Not for: encoding (hwbp-core does that).

use std::fmt::Write as _;

use hwbp_core::arch::arm64::{decode_ctrl_reg, Arm64, Arm64Privilege, Arm64Type, DBG_HMC_HYP};
use hwbp_core::arch::power::{Dawrx, Power, HW_BREAKPOINT_SIZE};
use hwbp_core::arch::x86_64::{DR7_GE, DR7_LE, X86_64};
use hwbp_core::arch::Arch;
use hwbp_core::regfile::Slot;
use hwbp_core::{PoolKind, RegFile};
use serde_json::{json, Value};

/// An [`Arch`] whose register file the CLI can print.
pub trait ShowRegs: Arch + Sized {
    /// Appends the register section's lines (each indented by two spaces).
    fn regs_text(file: &RegFile<Self>, out: &mut String);

    /// The `registers` member of `--json` output.
    fn regs_json(file: &RegFile<Self>) -> Value;
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// x86-64: DR0–DR3 then DR7, decoded slot by slot (Intel SDM Vol. 3B §18.2.4:
/// Gn = bit 2n+1, R/Wn = bits 16+4n..17+4n, LENn = bits 18+4n..19+4n, LE bit 8, GE bit 9).
impl ShowRegs for X86_64 {
    fn regs_text(file: &RegFile<Self>, out: &mut String) {
        let regs = file.regs();
        let dr7 = regs.dr7;
        for (n, addr) in regs.dr.iter().enumerate() {
            let unused = if dr7.enabled(n as u32) {
                ""
            } else {
                "  (unused)"
            };
            let _ = writeln!(out, "  DR{n}  {addr:#018x}{unused}");
        }
        let _ = writeln!(out, "  DR7  {:#018x}", dr7.0);
        for n in 0..4u32 {
            if !dr7.enabled(n) {
                continue;
            }
            let nibble = (dr7.0 >> (16 + 4 * n)) & 0xf;
            let (rw, len) = (nibble & 3, nibble >> 2);
            let what = match rw {
                0 => "execute".to_owned(),
                1 => format!("write, {}", bytes(len_bytes(len))),
                2 => "i/o".to_owned(),
                _ => format!("read/write, {}", bytes(len_bytes(len))),
            };
            let enable = if dr7.0 & (2 << (2 * n)) != 0 {
                'G'
            } else {
                'L'
            };
            let _ = writeln!(
                out,
                "       slot {n}: {enable}{n}, R/W{n}={rw:02b} LEN{n}={len:02b} ({what})"
            );
        }
        for (bit, name) in [(DR7_LE, "LE (bit 8)"), (DR7_GE, "GE (bit 9)")] {
            if dr7.0 & bit != 0 {
                let _ = writeln!(out, "       {name}");
            }
        }
    }

    fn regs_json(file: &RegFile<Self>) -> Value {
        let regs = file.regs();
        json!({
            "dr0": hex(regs.dr[0]),
            "dr1": hex(regs.dr[1]),
            "dr2": hex(regs.dr[2]),
            "dr3": hex(regs.dr[3]),
            "dr7": hex(regs.dr7.0),
        })
    }
}

/// DR7 LEN field: `00` = 1 byte, `01` = 2, `11` = 4, `10` = 8.
fn len_bytes(len: u64) -> u64 {
    match len {
        0 => 1,
        1 => 2,
        3 => 4,
        _ => 8,
    }
}

/// arm64: every implemented breakpoint (`DBGBVR/DBGBCR<n>_EL1`) and watchpoint
/// (`DBGWVR/DBGWCR<n>_EL1`) register pair, the control word decoded (Arm ARM D13.3:
/// E = bit 0, PMC = bits 2:1, LSC = bits 4:3, BAS = bits 12:5, HMC = bit 13).
impl ShowRegs for Arm64 {
    fn regs_text(file: &RegFile<Self>, out: &mut String) {
        let regs = file.regs();
        let banks = [
            ("DBGBVR", "DBGBCR", PoolKind::Inst, &regs.bvr, &regs.bcr),
            ("DBGWVR", "DBGWCR", PoolKind::Data, &regs.wvr, &regs.wcr),
        ];
        for (value_name, ctrl_name, kind, values, ctrls) in banks {
            for n in 0..file.capacity(kind) as usize {
                let (value, ctrl) = (values[n], ctrls[n]);
                let _ = write!(
                    out,
                    "  {value_name}{n:<2} {value:#018x}  {ctrl_name}{n:<2} {ctrl:#010x}"
                );
                if ctrl & 1 == 0 {
                    let _ = writeln!(out, "  (unused)");
                    continue;
                }
                let c = decode_ctrl_reg(ctrl);
                let lsc = match c.ty {
                    Arm64Type::Execute => "execute",
                    Arm64Type::Load => "load",
                    Arm64Type::Store => "store",
                    Arm64Type::LoadStore => "load/store",
                };
                let pmc = match c.privilege {
                    Arm64Privilege::El1 => "EL1",
                    Arm64Privilege::El0 => "EL0",
                    Arm64Privilege::El0AndEl1 => "EL0+EL1",
                    Arm64Privilege::Reserved => "none",
                };
                let hmc = if ctrl & DBG_HMC_HYP != 0 { " HMC" } else { "" };
                let _ = writeln!(
                    out,
                    "  E PMC={:02b} ({pmc}) LSC={:02b} ({lsc}) BAS={:08b}{hmc}",
                    c.privilege.code(),
                    c.ty.code(),
                    c.bas
                );
            }
        }
    }

    fn regs_json(file: &RegFile<Self>) -> Value {
        let regs = file.regs();
        let mut slots = Vec::new();
        for (kind, values, ctrls) in [
            (PoolKind::Inst, &regs.bvr, &regs.bcr),
            (PoolKind::Data, &regs.wvr, &regs.wcr),
        ] {
            for n in 0..file.capacity(kind) as usize {
                slots.push(json!({
                    "pool": kind.as_str(),
                    "slot": n,
                    "value": hex(values[n]),
                    "ctrl": hex(u64::from(ctrls[n])),
                }));
            }
        }
        Value::Array(slots)
    }
}

/// powerpc: each DAWR/DAWRX pair (Linux `set_dawr()`; DAWRX: USER bit 0, KERNEL bit 1, HYP
/// bit 2, WT bit 4, DR bit 5, DW bit 6, MRD bits 10..=15) and the window it watches:
/// `(MRD + 1) * 8` bytes from the DAWR's doubleword. A cleared DAWRX reads `0xfc00`.
impl ShowRegs for Power {
    fn regs_text(file: &RegFile<Self>, out: &mut String) {
        let regs = file.regs();
        for n in 0..file.capacity(PoolKind::Data) as usize {
            let (dawr, dawrx) = (regs.dawr[n], regs.dawrx[n]);
            let _ = write!(out, "  DAWR{n}  {dawr:#018x}  DAWRX{n}  {dawrx:#06x}");
            let used = file
                .slot(Slot {
                    pool: PoolKind::Data,
                    index: n as u32,
                })
                .is_some();
            if !used {
                let _ = writeln!(out, "  (cleared)");
                continue;
            }
            let x = Dawrx::decode(dawrx);
            let mut flags = Vec::new();
            for (on, name) in [
                (x.dr, "DR"),
                (x.dw, "DW"),
                (x.wt, "WT"),
                (x.user, "USER"),
                (x.kernel, "KERNEL"),
                (x.hyp, "HYP"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            let _ = writeln!(
                out,
                "  MRD={} {}; window {:#x}/{}",
                x.mrd,
                flags.join(" "),
                dawr & !(HW_BREAKPOINT_SIZE - 1),
                x.window_len_bytes()
            );
        }
    }

    fn regs_json(file: &RegFile<Self>) -> Value {
        let regs = file.regs();
        let slots: Vec<Value> = (0..file.capacity(PoolKind::Data) as usize)
            .map(|n| {
                let used = file
                    .slot(Slot {
                        pool: PoolKind::Data,
                        index: n as u32,
                    })
                    .is_some();
                // A cleared DAWR watches nothing, whatever its MRD field says.
                let window = if used {
                    json!({
                        "addr": hex(regs.dawr[n] & !(HW_BREAKPOINT_SIZE - 1)),
                        "len": Dawrx::decode(regs.dawrx[n]).window_len_bytes(),
                    })
                } else {
                    Value::Null
                };
                json!({
                    "slot": n,
                    "dawr": hex(regs.dawr[n]),
                    "dawrx": hex(regs.dawrx[n]),
                    "window": window,
                })
            })
            .collect();
        Value::Array(slots)
    }
}
