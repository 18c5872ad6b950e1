//! `hwbp run --stop` through the in-process agent (crates/hwbp-agent, docs in
//! crates/hwbp/src/ptrace/agent.rs), end to end on this machine's debug registers: threads,
//! read/write watches, exec, the environment and descriptors the program sees, the fallback to
//! ptrace for a static program, refusals, `--regs`, and the same hit stream as the ptrace
//! tracer; the program's own SIGTRAPs and a killed hwbp in stop_agent_signals.rs. Every run
//! that should use the agent checks the start record's `"stop": "agent"`.
//!
//! The fixture is stop_target.c (see its header for the modes used here: threads, rw, exec,
//! env, exec_env, and signals, sigmask, sysv, trap, ignored).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::*;

/// One `hwbp run --stop --json -o FILE ...`: exit status, stdout (the program's alone, the
/// records go to the file), stderr and the records (schema-checked).
struct Outcome {
    status: i32,
    stdout: String,
    stderr: String,
    recs: Vec<Value>,
}

impl Outcome {
    /// The start record's backend ("agent" or "ptrace").
    fn via(&self) -> &str {
        assert_eq!(self.recs[0]["schema"], "hwbp.start/1", "{:?}", self.recs[0]);
        self.recs[0]["stop"].as_str().unwrap()
    }

    fn hits(&self) -> Vec<&Value> {
        stop_hits(&self.recs)
    }

    /// (seen, reported, exit status) of the summary.
    fn totals(&self) -> (Option<u64>, Option<u64>, Option<i64>) {
        let s = summary(&self.recs);
        (
            s["seen"].as_u64(),
            s["reported"].as_u64(),
            s["exit_status"].as_i64(),
        )
    }
}

/// Runs `hwbp run --stop [--stop-via VIA] --json -o FILE FLAGS --watch WATCH -- PROGRAM...`
/// with the environment changes `env` (see [`run_env`]).
fn stop_json(
    name: &str,
    via: Option<&str>,
    flags: &[&str],
    watch: &str,
    program: &[&str],
    env: &[(&str, Option<&str>)],
) -> Outcome {
    let out = tmp(name);
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["run", "--stop"];
    if let Some(v) = via {
        args.extend(["--stop-via", v]);
    }
    args.extend(["--json", "-o", out.to_str().unwrap()]);
    args.extend(flags);
    args.extend(["--watch", watch, "--"]);
    args.extend(program);
    let (status, stdout, stderr) = run_env(&args, env);
    let recs = if out.exists() {
        records(&out)
    } else {
        Vec::new()
    };
    Outcome {
        status,
        stdout,
        stderr,
        recs,
    }
}

/// The expected (old, new) of `seq N`'s writes.
fn seq_pairs(n: i64) -> Vec<(i64, i64)> {
    (0..n)
        .map(|i| (if i == 0 { 0 } else { f(i - 1) }, f(i)))
        .collect()
}

fn seq_sum(n: i64) -> i64 {
    (0..n).map(f).sum()
}

#[test]
fn agent_threads_report_every_write_per_thread_with_chained_values() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let o = stop_json(
        "agent-threads",
        None,
        &[],
        "target",
        &[exe_str(exe), "threads", "4", "250", "nowait"],
        &[],
    );
    assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{}", o.stdout);
    assert_eq!(o.via(), "agent");
    assert_eq!(o.stdout, "sum 0 writes 1000\n");
    let hits = o.hits();
    assert_eq!(hits.len(), 1000);
    let main_pid = o.recs[0]["pid"].as_u64().unwrap();
    let mut by_tid: std::collections::BTreeMap<u64, u64> = Default::default();
    // The shadow copy: each hit's old value is the new value of the hit reported before it
    // (the first over the initial 0), whichever thread made either; seq counts 1, 2, ...
    let mut previous = 0;
    for (k, h) in hits.iter().enumerate() {
        *by_tid.entry(h["tid"].as_u64().unwrap()).or_default() += 1;
        assert_eq!(h["seq"], k as u64 + 1);
        let (old, new) = (
            h["old_int"].as_i64().unwrap(),
            h["new_int"].as_i64().unwrap(),
        );
        assert_eq!(old, previous, "hit {}", k + 1);
        previous = new;
        // A value some thread stored (another thread's store may show, as in gdb).
        assert!(
            (1_000_000..5_000_000).contains(&new) && new % 1_000_000 < 250,
            "{new}"
        );
        assert_eq!(h["function"], "worker");
    }
    assert_eq!(by_tid.values().copied().collect::<Vec<_>>(), [250; 4]);
    assert!(
        !by_tid.contains_key(&main_pid),
        "the main thread does not write"
    );
    assert_eq!(o.totals(), (Some(1000), Some(1000), Some(0)));
}

#[test]
fn agent_read_write_watch_counts_reads_and_writes_and_not_its_own_read() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let n = 300;
    // Write f(i), then read it back: the write's old -> new, then the read sees no change.
    let want: Vec<(i64, i64)> = seq_pairs(n)
        .into_iter()
        .flat_map(|(old, new)| [(old, new), (new, new)])
        .collect();
    for via in [None, Some("ptrace")] {
        let o = stop_json(
            "agent-rw",
            via,
            &[],
            "target:rw",
            &[exe_str(exe), "rw", "300", "nowait"],
            &[],
        );
        assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{via:?}");
        assert_eq!(o.via(), via.unwrap_or("agent"));
        assert_eq!(
            o.stdout,
            format!("reads 300\nsum {} writes 300\n", seq_sum(n))
        );
        // Exactly 300 writes + 300 reads: the handler's own read of the watched bytes
        // (process_vm_readv, a kernel access) does not trap.
        let hits = o.hits();
        assert_eq!(pairs(&hits), want, "{via:?}");
        let line = line_of_stop("sum += target; reads++;");
        for h in &hits {
            assert_eq!(h["access"], "rw");
            assert_eq!(
                (h["function"].as_str(), h["line"].as_u64()),
                (Some("main"), Some(line))
            );
        }
        assert_eq!(o.totals(), (Some(600), Some(600), Some(0)), "{via:?}");
    }
}

#[test]
fn agent_reads_exact_values_in_a_program_that_denies_process_vm_readv() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    // A sandboxed program: its seccomp filter fails the agent's read (process_vm_readv, in
    // the program) with EPERM; a write-only watch's bytes are read with plain loads instead, a
    // read/write watch's (plain loads would trap) by hwbp while the thread waits.
    for (via, watch) in [
        (None, "target"),
        (None, "target:rw"),
        (Some("ptrace"), "target"),
    ] {
        let o = stop_json(
            "agent-seccomp",
            via,
            &[],
            watch,
            &[exe_str(exe), "seccomp", "100", "nowait"],
            &[],
        );
        assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{via:?}");
        assert_eq!(o.via(), via.unwrap_or("agent"));
        assert_eq!(
            o.stdout,
            format!("seccomp on\nsum {} writes 100\n", seq_sum(100))
        );
        assert_eq!(pairs(&o.hits()), seq_pairs(100), "{via:?}");
    }
}

/// crates/hwbp-cli/tests/fixtures/preload_mark.c as a shared library, built once.
fn preload_mark() -> Option<&'static Path> {
    static F: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-cli-fixtures");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lib = dir.join("libpreload_mark.so");
        sh(Command::new("cc")
            .args(["-O1", "-fPIC", "-shared", "-o"])
            .arg(&lib)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preload_mark.c")))?;
        Ok(lib)
    });
    match r {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build the LD_PRELOAD fixture: {why}");
            None
        }
    }
}

/// The fixture run directly (no hwbp): exit status and stdout.
fn plain(exe: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(exe);
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn agent_exec_ends_watching_and_the_new_image_runs_clean() {
    let Some(exe) = stop_target() else { return };
    let Some(mark) = preload_mark() else { return };
    let _hw = hw_shared();
    let no_preload: &[(&str, Option<&str>)] = &[("LD_PRELOAD", None), ("HWBP_FIXTURE_MARK", None)];
    // exec N M: the N writes before exec are hits; the exec'd image (`seq M`) runs unwatched.
    let o = stop_json(
        "agent-exec",
        None,
        &[],
        "target",
        &[exe_str(exe), "exec", "7", "40", "nowait"],
        no_preload,
    );
    assert_eq!((o.status, o.stderr.as_str()), (0, ""));
    assert_eq!(o.via(), "agent");
    assert_eq!(
        o.stdout,
        format!("exec after 7\nsum {} writes 40\n", seq_sum(40))
    );
    assert_eq!(pairs(&o.hits()), seq_pairs(7));
    assert_eq!(o.totals(), (Some(7), Some(7), Some(0)));
    // The exec'd image's environment and descriptors are those it has without hwbp: no
    // HWBP_AGENT, no LD_PRELOAD (nor the agent's saved copy of a user's), no extra fd.
    let args = [exe_str(exe), "exec_env", "5", "20", "nowait"];
    let (code, want) = plain(exe, &args[1..], no_preload);
    assert_eq!(code, Some(0));
    assert!(
        want.contains("\nenv HWBP_AGENT=- LD_PRELOAD=- HWBP_AGENT_PRELOAD=- HWBP_FIXTURE_MARK=-\n"),
        "{want}"
    );
    let o = stop_json("agent-exec-env", None, &[], "target", &args, no_preload);
    assert_eq!((o.status, o.stderr.as_str()), (0, ""));
    assert_eq!(o.via(), "agent");
    assert_eq!(o.stdout, want);
    assert_eq!(pairs(&o.hits()), seq_pairs(5));
    // A user's LD_PRELOAD is the program's and its exec'd image's, as without hwbp: the
    // library's constructor ran in both images ("++"; not in hwbp, see preload_mark.c).
    let user: &[(&str, Option<&str>)] = &[
        ("LD_PRELOAD", Some(mark.to_str().unwrap())),
        ("HWBP_FIXTURE_MARK", None),
    ];
    let (code, want) = plain(exe, &args[1..], user);
    assert_eq!(code, Some(0));
    assert!(
        want.contains(&format!(
            "\nenv HWBP_AGENT=- LD_PRELOAD={} HWBP_AGENT_PRELOAD=- HWBP_FIXTURE_MARK=++\n",
            mark.display()
        )),
        "{want}"
    );
    let o = stop_json("agent-exec-preload", None, &[], "target", &args, user);
    assert_eq!((o.status, o.stderr.as_str()), (0, ""));
    assert_eq!(o.via(), "agent");
    assert_eq!(o.stdout, want);
    assert_eq!(pairs(&o.hits()), seq_pairs(5));
    // Set but empty: still set, and empty, in both images.
    let empty: &[(&str, Option<&str>)] = &[("LD_PRELOAD", Some("")), ("HWBP_FIXTURE_MARK", None)];
    let (code, want) = plain(exe, &args[1..], empty);
    assert_eq!(code, Some(0));
    assert!(
        want.contains("\nenv HWBP_AGENT=- LD_PRELOAD= HWBP_AGENT_PRELOAD=- HWBP_FIXTURE_MARK=-\n"),
        "{want}"
    );
    let o = stop_json("agent-exec-empty", None, &[], "target", &args, empty);
    assert_eq!((o.status, o.stderr.as_str(), o.via()), (0, "", "agent"));
    assert_eq!(o.stdout, want);
    // And the watched image itself sees the user's LD_PRELOAD alone (the agent removed itself).
    let args = [exe_str(exe), "env", "3", "nowait"];
    let (_, want) = plain(exe, &args[1..], user);
    assert!(
        want.starts_with(&format!(
            "env HWBP_AGENT=- LD_PRELOAD={} HWBP_AGENT_PRELOAD=- HWBP_FIXTURE_MARK=+\n",
            mark.display()
        )),
        "{want}"
    );
    let o = stop_json("agent-env-preload", None, &[], "target", &args, user);
    assert_eq!((o.status, o.stderr.as_str()), (0, ""));
    assert_eq!(o.via(), "agent");
    assert_eq!(o.stdout, want);
    assert_eq!(pairs(&o.hits()), seq_pairs(3));
}

#[test]
fn agent_leaves_no_descriptor_or_variable_in_the_program() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let env: &[(&str, Option<&str>)] = &[("LD_PRELOAD", None), ("HWBP_FIXTURE_MARK", None)];
    let args = [exe_str(exe), "env", "10", "nowait"];
    // Run directly: the descriptors this test process lets children inherit, and no variable.
    let (code, want) = plain(exe, &args[1..], env);
    assert_eq!(code, Some(0));
    let fds = want.lines().nth(1).unwrap();
    assert!(fds.starts_with("fds 0 1 2"), "{want}");
    assert_eq!(
        want,
        format!(
            "env HWBP_AGENT=- LD_PRELOAD=- HWBP_AGENT_PRELOAD=- HWBP_FIXTURE_MARK=-\n{fds}\n\
             sum {} writes 10\n",
            seq_sum(10)
        )
    );
    for via in [None, Some("ptrace")] {
        let o = stop_json("agent-fds", via, &[], "target", &args, env);
        assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{via:?}");
        assert_eq!(o.via(), via.unwrap_or("agent"));
        // The agent closed the ring's and the library's descriptors in its constructor.
        assert_eq!(o.stdout, want, "{via:?}");
        assert_eq!(pairs(&o.hits()), seq_pairs(10), "{via:?}");
    }
}

#[test]
fn stop_via_refusals_are_one_line_exit_2() {
    let Some(exe) = stop_target() else { return };
    let exe = &private_copy(exe, "stop_target_via_refusals");
    let e = exe_str(exe);
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "run",
                "--stop",
                "--stop-via",
                "agent",
                "--break",
                "--watch",
                "target",
                "--",
                e,
                "seq",
                "1",
                "nowait",
            ],
            "hwbp: --break needs --stop-via ptrace: the agent holds the accessing thread inside \
             its signal handler, it cannot leave it stopped at the access for gdb; drop \
             --stop-via agent\n",
        ),
        (
            &[
                "attach",
                "--stop",
                "--stop-via",
                "agent",
                "--watch",
                "target",
                "-p",
                "1",
            ],
            "hwbp: --stop-via agent works for programs hwbp starts (`hwbp run`): the agent is \
             preloaded at start-up; attach stops through ptrace (drop --stop-via)\n",
        ),
        (
            &[
                "run",
                "--stop-via",
                "ptrace",
                "--watch",
                "target",
                "--",
                e,
                "seq",
                "1",
                "nowait",
            ],
            "hwbp: --stop-via needs --stop: it chooses how stop mode stops the program; add \
             --stop\n",
        ),
        (
            &[
                "attach",
                "--stop-via",
                "agent",
                "--watch",
                "target",
                "-p",
                "1",
            ],
            "hwbp: --stop-via needs --stop: it chooses how stop mode stops the program; add \
             --stop\n",
        ),
    ];
    for (args, message) in cases {
        let (status, stdout, stderr) = run(args);
        assert_eq!(
            (status, stdout.as_str(), stderr.as_str()),
            (2, "", message),
            "{args:?}"
        );
    }
    assert_eq!(running(exe), 0, "no program started");
}

/// What must not depend on the backend: everything but the thread id, the time and the
/// absolute addresses.
fn comparable(h: &Value) -> Value {
    let keys = [
        "seq",
        "watch",
        "label",
        "access",
        "type",
        "old",
        "new",
        "old_text",
        "new_text",
        "old_int",
        "new_int",
        "changed",
        "condition_error",
        "function",
        "file",
        "line",
        "frames",
        "regs",
    ];
    Value::Object(
        keys.iter()
            .map(|k| (k.to_string(), h[*k].clone()))
            .collect(),
    )
}

/// (name, flags, watch, program, hits expected).
type DiffCase<'a> = (&'a str, &'a [&'a str], &'a str, &'a [&'a str], usize);

#[test]
fn agent_and_ptrace_report_the_same_hit_stream() {
    let Some(exe) = stop_target() else { return };
    let Some(types) = types::stop_types() else {
        return;
    };
    let _hw = hw_shared();
    let e = exe_str(exe);
    let cases: [DiffCase; 6] = [
        ("seq", &[], "target", &[e, "seq", "300", "nowait"], 300),
        // Two watches (the watch index travels in the events' tag).
        (
            "two",
            &["--watch", "other"],
            "target",
            &[e, "two", "200", "nowait"],
            400,
        ),
        // Two pieces (0x..a/2 and 0x..c/2) written by one 8-byte store: one hit per store.
        ("pieces", &[], "target+2/4", &[e, "seq", "50", "nowait"], 50),
        (
            "changed",
            &["--changed"],
            "target",
            &[e, "pairs", "400", "nowait"],
            199,
        ),
        (
            "if-i16",
            &["--if", "new < 0"],
            "level",
            &[exe_str(types)],
            3,
        ),
        (
            "if-f64",
            &["--if", "new < 0 && new != -1.5"],
            "ratio",
            &[exe_str(types)],
            3,
        ),
    ];
    for (name, flags, watch, program, n) in cases {
        let runs = ["agent", "ptrace"].map(|via| {
            let o = stop_json(
                &format!("agent-diff-{name}-{via}"),
                Some(via),
                flags,
                watch,
                program,
                &[],
            );
            assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{name} {via}");
            assert_eq!(o.via(), via);
            o
        });
        let [agent, ptrace] = &runs;
        let stream = |o: &Outcome| o.hits().into_iter().map(comparable).collect::<Vec<_>>();
        assert_eq!(stream(agent).len(), n, "{name}");
        assert_eq!(stream(agent), stream(ptrace), "{name}");
        assert_eq!(agent.totals(), ptrace.totals(), "{name}");
        assert_eq!(agent.stdout, ptrace.stdout, "{name}");
        // The summary's sites (but their instruction addresses and times).
        assert_eq!(
            sites(summary(&agent.recs)),
            sites(summary(&ptrace.recs)),
            "{name}"
        );
    }
}

/// The 27 registers of `struct user_regs_struct`, by their names in the hit record.
const REGISTERS: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn agent_regs_name_every_register_and_show_the_store() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let line = line_of_stop("i < from + n; i++) { target = f(i)");
    let runs = ["agent", "ptrace"].map(|via| {
        let o = stop_json(
            &format!("agent-regs-{via}"),
            Some(via),
            &["--regs"],
            "target",
            &[exe_str(exe), "seq", "20", "nowait"],
            &[],
        );
        assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{via}");
        assert_eq!(o.via(), via);
        assert_eq!(pairs(&o.hits()), seq_pairs(20));
        o
    });
    let [agent, ptrace] = &runs;
    let mut names = REGISTERS.to_vec();
    names.sort_unstable();
    for (h, p) in agent.hits().iter().zip(ptrace.hits()) {
        let regs = &h["regs"];
        assert_eq!(keys(regs), names, "{h}");
        // The trap is after the store: rip is the next instruction, which hwbp decodes back
        // to the store (the hit's ip, at most one x86 instruction, 15 bytes, before it) on the
        // line of `target = f(i)`.
        let (rip, ip) = (hex(&regs["rip"]), hex(&h["ip"]));
        assert!(ip < rip && rip - ip <= 15, "ip {ip:#x} rip {rip:#x}");
        assert_eq!(
            (h["function"].as_str(), h["line"].as_u64()),
            (Some("seq"), Some(line))
        );
        // gcc -O1 stores the new value from rax (see text_lines_show_old_to_new_and_registers).
        assert_eq!(hex(&regs["rax"]), h["new_int"].as_i64().unwrap() as u64);
        // A trap is not a system call.
        assert_eq!(regs["orig_rax"], "0xffffffffffffffff");
        // What is not an address is what PTRACE_GETREGS shows at the same hit (the ptrace
        // run), and the user code and stack segments of x86-64 Linux.
        for r in [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r13", "eflags", "orig_rax",
            "cs", "ss", "ds", "es", "fs", "gs",
        ] {
            assert_eq!(regs[r], p["regs"][r], "{r} at seq {}", h["seq"]);
        }
        assert_eq!((hex(&regs["cs"]), hex(&regs["ss"])), (0x33, 0x2b));
        // The thread pointer (glibc's TLS) is set: the base registers are the thread's.
        assert_ne!(hex(&regs["fs_base"]), 0);
    }
}

#[path = "stop_agent_signals.rs"]
mod signals;

#[path = "stop_agent_fallback.rs"]
mod fallback;

/// The agent records each hit's thread name at the hit: a thread that named itself and exited
/// before hwbp handled its hits, and a thread renamed between hits, are reported with the name
/// they had when they wrote.
#[test]
fn agent_names_each_hits_thread_as_it_was_at_the_hit() {
    let Some(exe) = stop_target() else { return };
    let _hw = hw_shared();
    let o = stop_json(
        "agent-names",
        None,
        &[],
        "target",
        &[exe_str(exe), "names", "50", "nowait"],
        &[],
    );
    assert_eq!((o.status, o.via()), (0, "agent"), "{}", o.stderr);
    let names: Vec<&str> = o
        .hits()
        .iter()
        .map(|h| h["thread"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ["early-writer", "main-before", "main-after"]
        .iter()
        .flat_map(|n| std::iter::repeat_n(*n, 50))
        .collect();
    assert_eq!(names, want);
}
