//! Bad input and refusals: one line on stderr, exit status 2, nothing left running.

use std::path::PathBuf;
use std::process::Command;

use super::hw::*;

#[test]
fn bad_input_is_one_line_exit_2_and_leaves_nothing_running() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let exe = fx.dir.join("watch_target_errors");
    std::fs::copy(&fx.target, &exe).unwrap();
    let e = exe.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["run", "--watch", "countr", "--", e],
            "hwbp: cannot watch 'countr': no global or static variable named `countr` in \
             watch_target_errors, libc.so.6, libwatchlib.so, ld-linux-x86-64.so.2; did you \
             mean counter?\n"
                .into(),
        ),
        (
            vec!["run", "--watch", "table", "--", e],
            "does not fit: this w watch needs 16 data slots but only 4 of 4 are free; watch a \
             smaller or better-aligned region, or remove another watch\n"
                .into(),
        ),
        (
            vec![
                "run",
                "--watch",
                "counter",
                "--watch",
                "cfg.pos.y",
                "--watch",
                "table[3]",
                "--watch",
                "ready_flag",
                "--watch",
                "lib_counter",
                "--",
                e,
            ],
            "this w watch needs 1 data slot but only 0 of 4 are free; watch a smaller or \
             better-aligned region, or remove another watch\n"
                .into(),
        ),
        (
            vec!["run", "--watch", "counter:r", "--", e],
            "x86 debug registers cannot trap reads alone (R/W=10 is I/O); use rw, which traps \
             reads and writes (gdb's rwatch does the same)\n"
                .into(),
        ),
        (
            vec!["stat", "--watch", "nosuch_symbol_here", "--", e],
            "hwbp: cannot watch 'nosuch_symbol_here': no global or static variable named".into(),
        ),
        (
            vec!["run", "--watch", "counter", "--", "./no-such-program-here"],
            "hwbp: cannot run './no-such-program-here': exec failed with ENOENT (No such file \
             or directory (os error 2))\n"
                .into(),
        ),
        (
            vec!["attach", "-p", "999999999", "--watch", "counter"],
            "hwbp: no process 999999999: it has exited or never existed (check with `ps -p \
             999999999`)\n"
                .into(),
        ),
    ];
    let nodwarf = fx.no_dwarf.to_str().unwrap();
    let mut cases = cases;
    cases.push((
        vec!["run", "--watch", "cfg.pos.y", "--", nodwarf],
        format!(
            "hwbp: cannot watch 'cfg.pos.y': `cfg` has a symbol but {nodwarf} has no DWARF \
             type information for a field or index path; rebuild with -g, or use NAME+OFF/LEN\n"
        ),
    ));
    match &fx.stripped {
        Some(p) => cases.push((
            vec!["run", "--watch", "counter", "--", p.to_str().unwrap()],
            format!(
                "hwbp: cannot watch 'counter': {} is stripped (no symbol table, no DWARF); \
                 rebuild without stripping (and with -g for fields), or watch by address with \
                 0xADDR/LEN\n",
                p.display()
            ),
        )),
        None => skip_note!("SKIP stripped-binary case: no `strip` on this machine"),
    }
    for (args, message) in &cases {
        let (status, stdout, stderr) = run(args);
        assert_eq!(status, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("hwbp: ") && stderr.contains(message.as_str()),
            "{args:?}:\n got {stderr}\nwant {message}"
        );
        assert!(
            !stdout.contains("done counter"),
            "the program must not run: {stdout}"
        );
    }
    // Nothing left behind: no stopped or running copy of the program.
    assert_eq!(running(&exe), 0);
    assert_eq!(running(&fx.no_dwarf), 0);
}

#[test]
fn permission_refused_names_the_setting_and_the_fix() {
    let _hw = hw_shared();
    let setpriv = Command::new("setpriv").arg("--version").output();
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    if !root || !setpriv.is_ok_and(|o| o.status.success()) {
        skip_note!("SKIP: needs root and setpriv to run hwbp as another user");
        return;
    }
    // hwbp as `nobody`, attaching to a process of root's.
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-as-nobody");
    std::fs::copy(env!("CARGO_BIN_EXE_hwbp"), &bin).unwrap();
    let mut target = Command::new("sleep").arg("100").spawn().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args([
            "attach",
            "-p",
            &target.id().to_string(),
            "--watch",
            "0x10000/8",
        ])
        .output()
        .unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied") && stderr.contains(&bin.display().to_string()) {
        eprintln!(
            "SKIP: {} is not executable by nobody: {stderr}",
            bin.display()
        );
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "hwbp: reading the memory map of pid {}: cannot read /proc/{}/maps: Permission \
             denied (os error 13) (run as the process's owner, or with CAP_SYS_PTRACE)\n",
            target.id(),
            target.id()
        )
    );
}
