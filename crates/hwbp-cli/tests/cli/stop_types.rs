//! Stop mode, continued: conditions and values typed from DWARF (the stop_types fixture:
//! f64, bool, pointer, i16, u8), a writer in a library loaded after start-up, `--limit`,
//! `--tid`, and Ctrl-C on `attach --stop`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::*;

/// crates/hwbp-cli/tests/fixtures/stop_types.c, built once.
pub(super) fn stop_types() -> Option<&'static Path> {
    static F: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-fixtures");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let exe = dir.join("stop_types");
        sh(Command::new("cc")
            .args(["-g", "-O1", "-o"])
            .arg(&exe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stop_types.c")))?;
        Ok(exe)
    });
    match r {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build the stop_types fixture: {why}");
            None
        }
    }
}

/// (watch, --if, type, [(old, new, seq)]).
type TypeCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, u64)],
);

#[test]
fn conditions_and_values_follow_the_dwarf_type() {
    let Some(exe) = stop_types() else { return };
    let _hw = hw_shared();
    // (watch, --if, type, [(old, new, seq)]) from the fixture's documented writes.
    let cases: [TypeCase; 4] = [
        (
            "ratio",
            "new < 0",
            "f64",
            &[
                ("0", "-2", 1),
                ("-2", "-1.5", 2),
                ("-1.5", "-1", 3),
                ("-1", "-0.5", 4),
            ],
        ),
        (
            "flag",
            "new == true",
            "bool",
            &[("false", "true", 3), ("false", "true", 6)],
        ),
        (
            "level",
            "new < 0",
            "i16",
            &[
                ("30000", "-25536", 5),
                ("-25536", "-15536", 6),
                ("-15536", "-5536", 7),
            ],
        ),
        ("byte", "new < 10", "u8", &[("254", "0", 4), ("0", "2", 5)]),
    ];
    for (watch, cond, ty, want) in cases {
        let out = tmp(&format!("stop-types-{watch}"));
        let (status, stdout, stderr) = run(&[
            "run",
            "--stop",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--if",
            cond,
            "--watch",
            watch,
            "--",
            exe_str(exe),
        ]);
        assert_eq!(
            (status, stdout.as_str(), stderr.as_str()),
            (0, "done\n", ""),
            "{watch}"
        );
        let recs = records(&out);
        let got: Vec<(&str, &str, u64)> = stop_hits(&recs)
            .iter()
            .map(|h| {
                assert_eq!(h["type"], ty, "{watch}");
                (
                    h["old_text"].as_str().unwrap(),
                    h["new_text"].as_str().unwrap(),
                    h["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{watch} --if '{cond}'");
    }
    // A pointer compares as an address: consecutive int elements are 4 bytes apart (the
    // first write is over a null pointer).
    let out = tmp("stop-types-cursor");
    let (status, _, stderr) = run(&[
        "run",
        "--stop",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--if",
        "new - old == 4",
        "--watch",
        "cursor",
        "--",
        exe_str(exe),
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let recs = records(&out);
    let hits = stop_hits(&recs);
    assert_eq!(
        hits.iter()
            .map(|h| h["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
    for h in &hits {
        assert_eq!(h["type"], "ptr");
        let old = u64::from_str_radix(h["old_text"].as_str().unwrap().trim_start_matches("0x"), 16);
        let new = u64::from_str_radix(h["new_text"].as_str().unwrap().trim_start_matches("0x"), 16);
        assert_eq!(new.unwrap() - old.unwrap(), 4);
    }
    // --changed on the bool: 0 0 1 0 0 1 over an initial 0 changes it 3 times.
    let (status, stdout, _) = run(&[
        "run",
        "--stop",
        "--changed",
        "--watch",
        "flag",
        "--",
        exe_str(exe),
    ]);
    assert_eq!(status, 0);
    let changes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split("  flag = ").nth(1))
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(changes, ["false -> true", "true -> false", "false -> true"]);
}

#[test]
fn a_writer_in_a_library_loaded_later_is_symbolized_in_stop_mode() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (exe, lib) = (
        fx.dir.join("dlopen_main_stop"),
        fx.dir.join("libpoke_stop.so"),
    );
    sh(Command::new("cc")
        .args(["-g", "-O1", "-o"])
        .arg(&exe)
        .arg(dir.join("dlopen_main.c"))
        .arg("-ldl"))
    .unwrap();
    sh(Command::new("cc")
        .args(["-g", "-O1", "-fPIC", "-shared", "-o"])
        .arg(&lib)
        .arg(dir.join("poke.c")))
    .unwrap();
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--watch",
        "shared",
        "--",
        exe.to_str().unwrap(),
        lib.to_str().unwrap(),
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let text = std::fs::read_to_string(dir.join("poke.c")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("POKE_WRITE */"))
        .unwrap()
        + 1;
    let hit = format!(
        " w  shared = 0 -> 7  poke ({}:{line})\n",
        dir.join("poke.c").display()
    );
    assert_eq!(stdout.matches(&hit).count(), 1, "{stdout}");
    assert!(
        stdout.contains("\n1 hits seen, 1 reported, 0 lost in "),
        "{stdout}"
    );
    // Through the agent (its fast path; the hit from code it did not know is synchronous).
    let out = tmp("stop-dlopen");
    let (status, _, stderr) = run(&[
        "run",
        "--stop",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "shared",
        "--",
        exe.to_str().unwrap(),
        lib.to_str().unwrap(),
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let recs = records(&out);
    assert_eq!(recs[0]["stop"], "agent");
    let hits = stop_hits(&recs);
    assert_eq!(pairs(&hits), [(0, 7)]);
    assert_eq!(
        (hits[0]["function"].as_str(), hits[0]["line"].as_u64()),
        (Some("poke"), Some(line as u64))
    );
}

#[test]
fn limit_detaches_and_the_program_runs_on() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let out = tmp("stop-limit");
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--limit",
        "5",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "100",
        "nowait",
    ]);
    assert_eq!((status, stderr.as_str()), (0, ""));
    let sum: i64 = (0..100).map(f).sum();
    assert_eq!(stdout, format!("sum {sum} writes 100\n"));
    let recs = records(&out);
    let want: Vec<(i64, i64)> = (0..5)
        .map(|i| (if i == 0 { 0 } else { f(i - 1) }, f(i)))
        .collect();
    assert_eq!(pairs(&stop_hits(&recs)), want);
    let s = summary(&recs);
    assert_eq!(
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["exit_status"].as_i64()
        ),
        (Some(5), Some(5), Some(0))
    );
}

#[test]
fn tid_filter_and_ctrl_c_on_attach_leave_the_process_running_untraced() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    // `cmd` mode: "w N" makes N more writes and answers "ok TOTAL"; "q" ends it.
    let mut target = Command::new(exe)
        .arg("cmd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(target.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("addr 0x"));
    let pid = target.id();
    let out = tmp("stop-tid");
    // Only hits by a thread id that never writes: every hit stops, none is reported.
    let (hwbp, _err) = attach(
        pid,
        &[
            "--tid",
            "1",
            "--json",
            "-o",
            out.to_str().unwrap(),
            "--watch",
            "target",
        ],
    );
    let mut stdin = target.stdin.take().unwrap();
    stdin.write_all(b"w 50\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ok 50");
    signal(hwbp.id(), libc::SIGINT);
    let status = hwbp.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0));
    let recs = records(&out);
    let s = summary(&recs);
    assert_eq!(
        (s["seen"].as_u64(), s["reported"].as_u64()),
        (Some(50), Some(0))
    );
    // Untraced and running: more writes, then a normal exit.
    assert_eq!(proc_field(pid, "TracerPid:"), "0");
    stdin.write_all(b"w 1000\nq\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ok 1050");
    let sum: i64 = (0..1050).map(f).sum();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("sum {sum} writes 1050")
    );
    assert!(target.wait().unwrap().success());
}
