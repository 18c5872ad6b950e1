//! The `hwbp` binary, run as a user runs it: exact stdout, stderr and exit status.
//!
//! Register values are derived by hand in the comments. x86 DR7: Gn = bit 2n+1, GE = bit 9
//! (0x200), slot n's nibble at bit 16+4n with R/W in its low two bits (00 execute, 01 write,
//! 11 read/write) and LEN in its high two bits (00 = 1 byte, 01 = 2, 11 = 4, 10 = 8).

/// Prints a skip notice past libtest's output capture (straight to stderr), so a check that
/// could not run on this machine is visible in a passing run, with its reason.
macro_rules! skip_note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::process::Command;

use serde_json::{json, Value};

/// Runs `hwbp ARGS...` from the repository root (as the README's examples do); returns
/// (exit status, stdout, stderr).
fn hwbp(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hwbp"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .expect("the hwbp binary runs");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Asserts a refusal: status 2, nothing on stdout, exactly `message` on stderr.
fn refused(args: &[&str], message: &str) {
    let (status, stdout, stderr) = hwbp(args);
    assert_eq!(
        (status, stdout.as_str(), stderr.as_str()),
        (2, "", message),
        "hwbp {args:?}"
    );
}

mod plan_x86_64 {
    use super::*;

    #[test]
    fn text_shows_pieces_sharing_and_registers() {
        let (status, stdout, stderr) =
            hwbp(&["plan", "--arch", "x86_64", "0x1003/8:w", "0x1004/4"]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        // 0x1003/8 -> gdb's pieces 0x1003/1, 0x1004/4, 0x1008/2, 0x100a/1 in slots 0..3;
        // 0x1004/4:w is slot 1's piece, shared.
        // slot 0 w 1: R/W0=01 LEN0=00 -> 0x0001_0000 | G0 0x002
        // slot 1 w 4: R/W1=01 LEN1=11 -> 0x00d0_0000 | G1 0x008
        // slot 2 w 2: R/W2=01 LEN2=01 -> 0x0500_0000 | G2 0x020
        // slot 3 w 1: R/W3=01 LEN3=00 -> 0x1000_0000 | G3 0x080
        // GE 0x200 -> DR7 = 0x15d1_02aa
        let expected = "\
x86_64: 4 slots shared by breakpoints and watchpoints, 4 used

watch 1: 0x1003/8:w, 4 pieces
  slot 0  0x1003/1  w
  slot 1  0x1004/4  w  (shared with watch 2)
  slot 2  0x1008/2  w
  slot 3  0x100a/1  w

watch 2: 0x1004/4:w, 1 piece
  slot 1  0x1004/4  w  (shared with watch 1)

registers
  DR0  0x0000000000001003
  DR1  0x0000000000001004
  DR2  0x0000000000001008
  DR3  0x000000000000100a
  DR7  0x0000000015d102aa
       slot 0: G0, R/W0=01 LEN0=00 (write, 1 byte)
       slot 1: G1, R/W1=01 LEN1=11 (write, 4 bytes)
       slot 2: G2, R/W2=01 LEN2=01 (write, 2 bytes)
       slot 3: G3, R/W3=01 LEN3=00 (write, 1 byte)
       GE (bit 9)
";
        assert_eq!(stdout, expected);
    }

    #[test]
    fn text_marks_unused_registers_and_execute() {
        let (status, stdout, _) =
            hwbp(&["plan", "--arch", "x86_64", "--slots", "2", "mem:0x401000:x"]);
        assert_eq!(status, 0);
        // perf's mem:ADDR:x defaults to sizeof(long); x86 encodes it LEN=00.
        // slot 0 execute: R/W0=00 LEN0=00 -> nibble 0 | G0 0x2 | GE 0x200 = 0x0000_0202
        let expected = "\
x86_64: 2 slots shared by breakpoints and watchpoints, 1 used

watch 1: 0x401000/8:x, 1 piece
  slot 0  0x401000/1  x

registers
  DR0  0x0000000000401000
  DR1  0x0000000000000000  (unused)
  DR2  0x0000000000000000  (unused)
  DR3  0x0000000000000000  (unused)
  DR7  0x0000000000000202
       slot 0: G0, R/W0=00 LEN0=00 (execute)
       GE (bit 9)
";
        assert_eq!(stdout, expected);
    }

    #[test]
    fn json_has_the_documented_members() {
        let (status, stdout, stderr) = hwbp(&[
            "plan",
            "--arch",
            "x86_64",
            "--slots",
            "3",
            "--json",
            "0x401000:x",
            "0x2000/3:rw",
        ]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        let got: Value = serde_json::from_str(&stdout).expect("one JSON object");
        // slot 0 x: R/W0=00 LEN0=00 -> 0 | G0 0x002
        // slot 1 rw 2 at 0x2000: R/W1=11 LEN1=01 -> 0x7 at bit 20 = 0x0070_0000 | G1 0x008
        // slot 2 rw 1 at 0x2002: R/W2=11 LEN2=00 -> 0x3 at bit 24 = 0x0300_0000 | G2 0x020
        // GE 0x200 -> DR7 = 0x0370_022a
        let chunk = |slot: u32, pool: &str, addr: &str, len: u64, access: &str| {
            json!({
                "slot": slot, "pool": pool, "addr": addr, "len": len, "access": access,
                "window": {"addr": addr, "len": len}, "filter": false, "refs": 1,
            })
        };
        let expected = json!({
            "arch": "x86_64",
            "capacity": 3,
            "used": 3,
            "watches": [
                {"id": 1, "spec": "0x401000/8:x",
                 "chunks": [chunk(0, "instruction", "0x401000", 1, "x")]},
                {"id": 2, "spec": "0x2000/3:rw",
                 "chunks": [chunk(1, "data", "0x2000", 2, "rw"),
                            chunk(2, "data", "0x2002", 1, "rw")]},
            ],
            "registers": {
                "dr0": "0x401000", "dr1": "0x2000", "dr2": "0x2002", "dr3": "0x0",
                "dr7": "0x370022a",
            },
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn default_arch_is_the_hosts() {
        if !cfg!(target_arch = "x86_64") {
            skip_note!("SKIP: this host is not x86_64");
            return;
        }
        let explicit = hwbp(&["plan", "--arch", "x86_64", "0x1000/8"]);
        assert_eq!(hwbp(&["plan", "0x1000/8"]), explicit);
        assert!(explicit.1.starts_with("x86_64: "));
    }

    #[test]
    fn bad_spec_syntax() {
        refused(
            &["plan", "--arch", "x86_64", "0x1000/8", "0xzz"],
            "hwbp: bad spec '0xzz': the address must be 0x-prefixed hex or decimal and fit in \
             64 bits; expected ADDR[/LEN][:r|w|rw|x] or mem:ADDR[/LEN][:ACCESS], e.g. \
             0x404050/8:w\n",
        );
        refused(
            &["plan", "--arch", "x86_64", "0x1000:q"],
            "hwbp: bad spec '0x1000:q': ACCESS must be r, w, rw or x; expected \
             ADDR[/LEN][:r|w|rw|x] or mem:ADDR[/LEN][:ACCESS], e.g. 0x404050/8:w\n",
        );
        refused(
            &["plan", "--arch", "x86_64", "mem:0x1000:rx"],
            "hwbp: bad spec 'mem:0x1000:rx': execute (x) cannot be combined with r or w in one \
             breakpoint; use two specs\n",
        );
    }

    #[test]
    fn region_rules() {
        refused(
            &["plan", "--arch", "x86_64", "0x1000/0"],
            "hwbp: bad spec '0x1000/0': a watched region must be at least 1 byte long; give a \
             LEN of 1 or more\n",
        );
        refused(
            &["plan", "--arch", "x86_64", "0xffffffffffffffff/2"],
            "hwbp: bad spec '0xffffffffffffffff/2': region 0xffffffffffffffff/2 wraps past the \
             end of the address space; shorten it or lower the address\n",
        );
    }

    #[test]
    fn x86_rules() {
        refused(
            &["plan", "--arch", "x86_64", "0x1000/8:r"],
            "hwbp: cannot plan 0x1000/8:r (spec 1 of 1) on x86_64: x86 debug registers cannot \
             trap reads alone (R/W=10 is I/O); use rw, which traps reads and writes (gdb's \
             rwatch does the same)\n",
        );
        refused(
            &["plan", "--arch", "x86_64", "0x401000/4:x"],
            "hwbp: cannot plan 0x401000/4:x (spec 1 of 1) on x86_64: an execute breakpoint names \
             one instruction, not a 4-byte region; omit the length\n",
        );
        refused(
            &["plan", "--arch", "x86_64", "0xffffffff81000000/8:w"],
            "hwbp: cannot plan 0xffffffff81000000/8:w (spec 1 of 1) on x86_64: \
             0xffffffff81000000 is a kernel address but kernel-mode accesses are excluded; ask \
             for kernel privilege (the :k modifier) or watch a user address\n",
        );
        // A region running from user space into TASK_SIZE_MAX (0x7fff_ffff_f000): its second
        // piece is a kernel address.
        refused(
            &["plan", "--arch", "x86_64", "0x7fffffffeff8/16:w"],
            "hwbp: cannot plan 0x7fffffffeff8/16:w (spec 1 of 1) on x86_64: 0x7ffffffff000 is a \
             kernel address but kernel-mode accesses are excluded; ask for kernel privilege \
             (the :k modifier) or watch a user address\n",
        );
    }

    #[test]
    fn kernel_privilege_admits_kernel_addresses() {
        let (status, stdout, _) = hwbp(&[
            "plan",
            "--arch",
            "x86_64",
            "--json",
            "0xffffffff81000000/8:w:k",
        ]);
        assert_eq!(status, 0);
        let got: Value = serde_json::from_str(&stdout).unwrap();
        // slot 0 w 8: R/W0=01 LEN0=10 -> 0x9 at bit 16 | G0 0x2 | GE 0x200 = 0x0009_0202
        assert_eq!(got["registers"]["dr7"], "0x90202");
        assert_eq!(got["watches"][0]["spec"], "0xffffffff81000000/8:w:k");
    }

    #[test]
    fn does_not_fit() {
        // 0x1003/8 takes all four slots; 0x2001/2 needs two more (0x2001/1, 0x2002/1).
        refused(
            &["plan", "--arch", "x86_64", "0x1003/8", "0x2001/2"],
            "hwbp: cannot plan 0x2001/2:w (spec 2 of 2) on x86_64: does not fit: this w watch \
             needs 2 data slots but only 0 of 4 are free; watch a smaller or better-aligned \
             region, or remove another watch\n",
        );
        // With --slots 2, 0x1001/7 (0x1001/1, 0x1002/2, 0x1004/4) needs three.
        refused(
            &["plan", "--arch", "x86_64", "--slots", "2", "0x1001/7"],
            "hwbp: cannot plan 0x1001/7:w (spec 1 of 1) on x86_64: does not fit: this w watch \
             needs 3 data slots but only 2 of 2 are free; watch a smaller or better-aligned \
             region, or remove another watch\n",
        );
        // 1024 aligned bytes are 128 eight-byte pieces: the planner refuses before any slot.
        refused(
            &["plan", "--arch", "x86_64", "0x1000/1024:rw"],
            "hwbp: cannot plan 0x1000/1024:rw (spec 1 of 1) on x86_64: does not fit: this rw \
             watch needs 128 data slots but only 4 of 4 are free; watch a smaller or \
             better-aligned region, or remove another watch\n",
        );
    }

    #[test]
    fn bad_slots() {
        for n in ["0", "5"] {
            refused(
                &["plan", "--arch", "x86_64", "--slots", n, "0x1000"],
                &format!(
                    "hwbp: --slots {n}: x86_64 has 1 to 4 slots; pick a number in that range\n"
                ),
            );
        }
        refused(
            &["plan", "--arch", "x86_64", "--slots", "x", "0x1000"],
            "hwbp: invalid value 'x' for '--slots <N>': invalid digit found in string\n\n\
             For more information, try '--help'.\n",
        );
    }
}

mod usage {
    use super::*;

    #[test]
    fn bad_arch() {
        refused(
            &["plan", "--arch", "mips", "0x1000"],
            "hwbp: invalid value 'mips' for '--arch <ARCH>'\n  [possible values: x86_64, arm64, \
             power9, power10]\n\nFor more information, try '--help'.\n",
        );
    }

    #[test]
    fn missing_spec_and_subcommand() {
        refused(
            &["plan"],
            "hwbp: the following required arguments were not provided:\n  <SPEC>...\n\nUsage: \
             hwbp plan <SPEC>...\n\nFor more information, try '--help'.\n",
        );
        let (status, stdout, stderr) = hwbp(&[]);
        assert_eq!((status, stdout.as_str()), (2, ""));
        assert!(stderr.contains("Usage: hwbp <COMMAND>"), "{stderr}");
    }

    #[test]
    fn help_is_not_an_error() {
        let (status, stdout, stderr) = hwbp(&["plan", "--help"]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        assert!(
            stdout.contains("Usage: hwbp plan [OPTIONS] <SPEC>..."),
            "{stdout}"
        );
    }
}

mod plan_arm64 {
    use super::*;

    #[test]
    fn text_shows_bas_pieces_and_both_register_banks() {
        let (status, stdout, stderr) = hwbp(&[
            "plan",
            "--arch",
            "arm64",
            "--slots",
            "2",
            "0x1003/8:w",
            "0x400000:x",
        ]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        // 0x1003/8 touches the doublewords at 0x1000 and 0x1008: bytes 3..7 of the first
        // (BAS 0b1111_1000) and 0..2 of the second (BAS 0b0000_0111).
        // DBGWCR0: BAS 0xf8 << 5 = 0x1f00 | LSC=10 store << 3 = 0x10 | PMC=10 EL0 << 1 = 0x4
        //          | E 0x1 -> 0x1f15
        // DBGWCR1: BAS 0x07 << 5 = 0xe0 | 0x10 | 0x4 | 0x1 -> 0xf5
        // DBGBCR0: BAS 0x0f << 5 = 0x1e0 | LSC=00 | PMC=10 0x4 | E 0x1 -> 0x1e5
        let expected = "\
arm64: 2 instruction slots (1 used), 2 data slots (2 used)

watch 1: 0x1003/8:w, 2 pieces
  data slot 0  0x1003/5  w
  data slot 1  0x1008/3  w

watch 2: 0x400000/8:x, 1 piece
  instruction slot 0  0x400000/1  x

registers
  DBGBVR0  0x0000000000400000  DBGBCR0  0x000001e5  E PMC=10 (EL0) LSC=00 (execute) BAS=00001111
  DBGBVR1  0x0000000000000000  DBGBCR1  0x00000000  (unused)
  DBGWVR0  0x0000000000001000  DBGWCR0  0x00001f15  E PMC=10 (EL0) LSC=10 (store) BAS=11111000
  DBGWVR1  0x0000000000001008  DBGWCR1  0x000000f5  E PMC=10 (EL0) LSC=10 (store) BAS=00000111
";
        assert_eq!(stdout, expected);
    }

    #[test]
    fn json_lists_value_and_ctrl_per_slot() {
        let (status, stdout, stderr) = hwbp(&[
            "plan",
            "--arch",
            "arm64",
            "--json",
            "0x1004/2:r",
            "0x1004/2:r",
        ]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        let got: Value = serde_json::from_str(&stdout).unwrap();
        // Identical pieces share data slot 0 (refs 2).
        // DBGWCR0: BAS 0b0011_0000 (bytes 4, 5) << 5 = 0x600 | LSC=01 load << 3 = 0x8
        //          | PMC=10 EL0 << 1 = 0x4 | E 0x1 -> 0x60d
        let chunk = json!({
            "slot": 0, "pool": "data", "addr": "0x1004", "len": 2, "access": "r",
            "window": {"addr": "0x1004", "len": 2}, "filter": false, "refs": 2,
        });
        let mut registers = Vec::new();
        for n in 0..6 {
            registers
                .push(json!({"pool": "instruction", "slot": n, "value": "0x0", "ctrl": "0x0"}));
        }
        registers.push(json!({"pool": "data", "slot": 0, "value": "0x1000", "ctrl": "0x60d"}));
        for n in 1..4 {
            registers.push(json!({"pool": "data", "slot": n, "value": "0x0", "ctrl": "0x0"}));
        }
        let expected = json!({
            "arch": "arm64",
            "capacity": {"instruction": 6, "data": 4},
            "used": {"instruction": 0, "data": 1},
            "watches": [
                {"id": 1, "spec": "0x1004/2:r", "chunks": [chunk.clone()]},
                {"id": 2, "spec": "0x1004/2:r", "chunks": [chunk]},
            ],
            "registers": registers,
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn arm64_rules() {
        refused(
            &["plan", "--arch", "arm64", "0x400002:x"],
            "hwbp: cannot plan 0x400002/8:x (spec 1 of 1) on arm64: instructions start at \
             multiples of 4, so a breakpoint at 0x400002 could never trigger; use the \
             instruction's address\n",
        );
        refused(
            &["plan", "--arch", "arm64", "0x400000/2:x"],
            "hwbp: cannot plan 0x400000/2:x (spec 1 of 1) on arm64: an execute breakpoint names \
             one instruction, not a 2-byte region; omit the length\n",
        );
        // A per-thread plan may not watch kernel addresses on arm64, even with :k.
        refused(
            &["plan", "--arch", "arm64", "0xffff000000001000/8:w:k"],
            "hwbp: cannot plan 0xffff000000001000/8:w:k (spec 1 of 1) on arm64: \
             0xffff000000001000 is a kernel address, and per-task breakpoints may only watch \
             user addresses on this arch; bind the breakpoint to a CPU instead\n",
        );
        // Without :k too: arm64's hw_breakpoint_arch_parse() refuses the per-task kernel
        // address before the generic exclude_kernel rule is reached.
        refused(
            &["plan", "--arch", "arm64", "0xffff000000001000/8:w"],
            "hwbp: cannot plan 0xffff000000001000/8:w (spec 1 of 1) on arm64: \
             0xffff000000001000 is a kernel address, and per-task breakpoints may only watch \
             user addresses on this arch; bind the breakpoint to a CPU instead\n",
        );
    }

    #[test]
    fn does_not_fit() {
        // 0x1003/100 runs from 0x1003 to 0x1066: doublewords 0x1000..=0x1060, 13 of them.
        refused(
            &["plan", "--arch", "arm64", "0x1003/100:w"],
            "hwbp: cannot plan 0x1003/100:w (spec 1 of 1) on arm64: does not fit: this w watch \
             needs 13 data slots but only 4 of 4 are free; watch a smaller or better-aligned \
             region, or remove another watch\n",
        );
        // Two execute breakpoints with --slots 2 fit; a third does not.
        refused(
            &[
                "plan",
                "--arch",
                "arm64",
                "--slots",
                "2",
                "0x400000:x",
                "0x400004:x",
                "0x400008:x",
            ],
            "hwbp: cannot plan 0x400008/8:x (spec 3 of 3) on arm64: does not fit: this x watch \
             needs 1 instruction slot but only 0 of 2 are free; watch a smaller or \
             better-aligned region, or remove another watch\n",
        );
    }

    #[test]
    fn bad_slots() {
        for n in ["1", "17"] {
            refused(
                &["plan", "--arch", "arm64", "--slots", n, "0x1000"],
                &format!(
                    "hwbp: --slots {n}: arm64 has 2 to 16 slots; pick a number in that range\n"
                ),
            );
        }
    }
}

mod plan_power {
    use super::*;

    #[test]
    fn power9_text_flags_the_wider_window() {
        let (status, stdout, stderr) = hwbp(&["plan", "--arch", "power9", "0x1003/8:w"]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        // window: ALIGN_DOWN(0x1003, 8) = 0x1000 .. ALIGN(0x100b, 8) = 0x1010 -> 16 bytes
        // DAWRX0: MRD = ((16 + 7) >> 3) - 1 = 1 -> 1 << 10 = 0x400 | DW (bit 6) 0x40
        //         | WT (bit 4, translation) 0x10 | USER (bit 0) 0x1 -> 0x0451
        let expected = "\
power9: 1 data slot (1 used), no instruction slots

watch 1: 0x1003/8:w, 1 piece
  data slot 0  0x1003/8  w
    hardware window 0x1000/16: hits outside 0x1003/8 must be filtered out

registers
  DAWR0  0x0000000000001003  DAWRX0  0x0451  MRD=1 DW WT USER; window 0x1000/16
";
        assert_eq!(stdout, expected);
    }

    #[test]
    fn power10_splits_a_long_region_over_both_dawrs() {
        let (status, stdout, stderr) = hwbp(&["plan", "--arch", "power10", "0x1003/600:w"]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        // DAWR0 0x1003/509 -> window 0x1000/512: MRD = 63 -> 0xfc00 | DW 0x40 | WT 0x10
        //                     | USER 0x1 -> 0xfc51
        // DAWR1 0x1200/91 -> window 0x1200 .. ALIGN(0x125b, 8) = 0x1260, 96 bytes: MRD = 11
        //                     -> 0x2c00 | 0x51 -> 0x2c51
        let expected = "\
power10: 2 data slots (2 used), no instruction slots

watch 1: 0x1003/600:w, 2 pieces
  data slot 0  0x1003/509  w
    hardware window 0x1000/512: hits outside 0x1003/509 must be filtered out
  data slot 1  0x1200/91  w
    hardware window 0x1200/96: hits outside 0x1200/91 must be filtered out

registers
  DAWR0  0x0000000000001003  DAWRX0  0xfc51  MRD=63 DW WT USER; window 0x1000/512
  DAWR1  0x0000000000001200  DAWRX1  0x2c51  MRD=11 DW WT USER; window 0x1200/96
";
        assert_eq!(stdout, expected);
    }

    #[test]
    fn power10_json() {
        let (status, stdout, stderr) =
            hwbp(&["plan", "--arch", "power10", "--json", "0x1003/2:rw"]);
        assert_eq!((status, stderr.as_str()), (0, ""));
        let got: Value = serde_json::from_str(&stdout).unwrap();
        // window 0x1000/8: MRD = 0 | DR (bit 5) 0x20 | DW 0x40 | WT 0x10 | USER 0x1 -> 0x71
        // DAWR1 cleared as Linux clears it (null_brk): MRD = -1 & 0x3f = 63 -> 0xfc00
        let expected = json!({
            "arch": "power10",
            "capacity": {"instruction": 0, "data": 2},
            "used": {"instruction": 0, "data": 1},
            "watches": [{"id": 1, "spec": "0x1003/2:rw", "chunks": [{
                "slot": 0, "pool": "data", "addr": "0x1003", "len": 2, "access": "rw",
                "window": {"addr": "0x1000", "len": 8}, "filter": true, "refs": 1,
            }]}],
            "registers": [
                {"slot": 0, "dawr": "0x1003", "dawrx": "0x71",
                 "window": {"addr": "0x1000", "len": 8}},
                {"slot": 1, "dawr": "0x0", "dawrx": "0xfc00", "window": null},
            ],
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn power_rules() {
        refused(
            &["plan", "--arch", "power9", "0x1000:x"],
            "hwbp: cannot plan 0x1000/8:x (spec 1 of 1) on power9: this arch has no instruction \
             breakpoint slots; watch data instead\n",
        );
        // 0x11fc..0x1203 crosses 0x1200.
        refused(
            &["plan", "--arch", "power9", "0x11fc/8:w"],
            "hwbp: cannot plan 0x11fc/8:w (spec 1 of 1) on power9: region 0x11fc/8 crosses a \
             512-byte boundary, which this CPU's watchpoint window may not cross; watch the \
             parts on each side separately\n",
        );
        refused(
            &["plan", "--arch", "power9", "0x1000/600:w"],
            "hwbp: cannot plan 0x1000/600:w (spec 1 of 1) on power9: region 0x1000/600 needs a \
             600-byte hardware window but one slot watches at most 512; watch a smaller region\n",
        );
        refused(
            &["plan", "--arch", "power10", "0xc000000000001000/8:w"],
            "hwbp: cannot plan 0xc000000000001000/8:w (spec 1 of 1) on power10: \
             0xc000000000001000 is a kernel address but kernel-mode accesses are excluded; ask \
             for kernel privilege (the :k modifier) or watch a user address\n",
        );
    }

    #[test]
    fn does_not_fit_and_bad_slots() {
        refused(
            &["plan", "--arch", "power9", "0x1000", "0x2000"],
            "hwbp: cannot plan 0x2000/8:w (spec 2 of 2) on power9: does not fit: this w watch \
             needs 1 data slot but only 0 of 1 are free; watch a smaller or better-aligned \
             region, or remove another watch\n",
        );
        refused(
            &["plan", "--arch", "power9", "--slots", "2", "0x1000"],
            "hwbp: --slots 2: power9 has exactly 1 DAWR; omit --slots\n",
        );
        refused(
            &["plan", "--arch", "power10", "--slots", "1", "0x1000"],
            "hwbp: --slots 1: power10 has exactly 2 DAWRs; omit --slots\n",
        );
    }
}

mod readme {
    use super::*;

    /// Every `$ hwbp ...` line in the README's `console` blocks, run, prints exactly the lines
    /// below it (stdout, then stderr).
    #[test]
    fn console_examples_are_real_output() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md at the repository root");
        let mut examples = Vec::new();
        let mut in_console = false;
        for line in readme.lines() {
            if line == "```console" {
                in_console = true;
            } else if line.starts_with("```") {
                in_console = false;
            } else if in_console {
                if let Some(cmd) = line.strip_prefix("$ hwbp ") {
                    examples.push((cmd.to_owned(), String::new()));
                } else if let Some((_, out)) = examples.last_mut() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        assert!(
            examples.len() >= 6,
            "found only {} examples",
            examples.len()
        );
        for (cmd, expected) in &examples {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            let (_, stdout, stderr) = hwbp(&args);
            assert_eq!(
                format!("{stdout}{stderr}"),
                *expected,
                "README example: hwbp {cmd}"
            );
        }
    }
}

mod sim {
    use super::*;

    /// Writes a scenario file into a fresh temporary directory and returns its path.
    fn scenario(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("hwbp-cli-sim-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.hwbp"));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn every_checked_in_scenario_passes_through_the_cli() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/scenarios");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "hwbp"))
            .map(|p| p.to_str().unwrap().to_owned())
            .collect();
        files.sort();
        assert!(files.len() >= 20, "scenario files found: {}", files.len());
        let mut args = vec!["sim"];
        args.extend(files.iter().map(String::as_str));
        let (status, stdout, stderr) = hwbp(&args);
        assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    }

    #[test]
    fn a_failed_expectation_exits_1_naming_file_line_and_both_values() {
        // One slot on CPU 0: the second open must fail with ENOSPC, not succeed.
        let path = scenario(
            "fails",
            "slots data=1\ncpus 1\nopen a cpu=0 w 0x1000/8 => ok\nopen b cpu=0 w 0x2000/8 => ok\n",
        );
        let (status, stdout, stderr) = hwbp(&["sim", &path]);
        assert_eq!(status, 1, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("{path}:4")) && stdout.contains("ENOSPC"),
            "{stdout}"
        );
        assert_eq!(
            stderr, "hwbp: some expectations failed (listed above)\n",
            "{stdout}"
        );
    }

    #[test]
    fn a_malformed_file_exits_2() {
        let path = scenario("malformed", "cpus 1\nfrobnicate 3\n");
        let (status, stdout, stderr) = hwbp(&["sim", &path]);
        assert_eq!(status, 2, "{stdout}{stderr}");
        assert!(stderr.starts_with(&format!("hwbp: {path}:2: ")), "{stderr}");
    }
}

#[path = "cli/attach_churn.rs"]
mod attach_churn;
#[path = "cli/backtrace_storm.rs"]
mod backtrace_storm;
#[path = "cli/errors.rs"]
mod errors;
#[path = "cli/hotplug.rs"]
mod hotplug;
#[path = "cli/hw.rs"]
mod hw;
#[path = "cli/nonroot.rs"]
mod nonroot;
#[path = "cli/stat_caps.rs"]
mod stat_caps;
#[path = "cli/stop.rs"]
mod stop;
#[path = "cli/unwind.rs"]
mod unwind;
#[path = "cli/watch.rs"]
mod watch;
