//! `hwbp run --stop` for programs the agent cannot serve: statically linked, set-user-ID, Go
//! (their runtime replaces SIGTRAP's handler with raw system calls). `auto` falls back to the
//! ptrace tracer with a note naming the reason; `--stop-via agent` refuses, one line, exit 2,
//! nothing left behind.

use std::path::Path;
use std::sync::OnceLock;

use super::*;

/// The stop-mode fixture linked statically (the agent cannot load into it), or `None` (reason
/// printed) without a static libc.
fn stop_target_static() -> Option<&'static Path> {
    static F: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = F.get_or_init(|| {
        let out = Command::new("cc")
            .arg("-print-file-name=libc.a")
            .output()
            .map_err(|e| format!("cc: {e}"))?;
        let libc_a = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !Path::new(&libc_a).is_absolute() {
            return Err(format!(
                "no static libc (`cc -print-file-name=libc.a` says {libc_a:?}; install the \
                 libc's static package, e.g. libc6-dev or glibc-static)"
            ));
        }
        build_stop_target("stop_target_static", &["-static"])
    });
    match r {
        Ok(p) => Some(p),
        Err(why) => {
            skip_note!("SKIP: cannot build the static stop-mode fixture: {why}");
            None
        }
    }
}

#[test]
fn a_static_program_falls_back_to_ptrace_and_stop_via_agent_refuses_it() {
    let Some(exe) = stop_target_static() else {
        return;
    };
    let exe = &private_copy(exe, "stop_target_static_fallback");
    let _hw = hw_shared();
    let o = stop_json(
        "agent-static",
        None,
        &[],
        "target",
        &[exe_str(exe), "seq", "50", "nowait"],
        &[],
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert_eq!(o.via(), "ptrace");
    assert_eq!(
        o.stderr,
        format!(
            "hwbp: the in-process agent cannot be used for '{}' (it is statically linked); \
             stopping through ptrace, which costs more per hit\n",
            exe.display()
        )
    );
    assert_eq!(o.stdout, format!("sum {} writes 50\n", seq_sum(50)));
    assert_eq!(pairs(&o.hits()), seq_pairs(50));
    assert_eq!(o.totals(), (Some(50), Some(50), Some(0)));
    // It is not handed the agent's descriptors and variables it cannot use: it sees what it
    // sees without hwbp.
    let env: &[(&str, Option<&str>)] = &[("LD_PRELOAD", None), ("HWBP_FIXTURE_MARK", None)];
    let (code, want) = plain(exe, &["env", "5", "nowait"], env);
    assert_eq!(code, Some(0));
    let o = stop_json(
        "agent-static-env",
        None,
        &[],
        "target",
        &[exe_str(exe), "env", "5", "nowait"],
        env,
    );
    assert_eq!((o.status, o.via()), (0, "ptrace"), "{}", o.stderr);
    assert_eq!(o.stdout, want);
    assert_eq!(pairs(&o.hits()), seq_pairs(5));
    // Asking for the agent: refused, one line, and no program left behind (not stopped at its
    // entry point, nor running).
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--stop-via",
        "agent",
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "50",
        "nowait",
    ]);
    assert_eq!(
        (status, stdout.as_str(), stderr.as_str()),
        (
            2,
            "",
            format!(
                "hwbp: --stop-via agent: the agent cannot be used for '{}' (it is statically \
                 linked); use --stop-via ptrace\n",
                exe.display()
            )
            .as_str()
        )
    );
    assert_eq!(running(exe), 0, "no program left running or stopped");
}

#[test]
fn a_setuid_program_falls_back_to_ptrace_and_sees_nothing_of_the_agent() {
    let Some(exe) = stop_target() else { return };
    // Set-user-ID to another user (nobody): a secure execution, the loader ignores LD_PRELOAD.
    // Only root can trace (and run hwbp's events on) it.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if !status.lines().any(|l| l.starts_with("Uid:\t0\t")) {
        skip_note!("SKIP: a setuid program can only be traced by root");
        return;
    }
    let exe = &private_copy(exe, "stop_target_setuid");
    std::os::unix::fs::chown(exe, Some(65534), None).unwrap();
    std::fs::set_permissions(exe, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let _hw = hw_shared();
    let env: &[(&str, Option<&str>)] = &[("LD_PRELOAD", None), ("HWBP_FIXTURE_MARK", None)];
    let (code, want) = plain(exe, &["env", "5", "nowait"], env);
    assert_eq!(code, Some(0));
    let o = stop_json(
        "agent-setuid",
        None,
        &[],
        "target",
        &[exe_str(exe), "env", "5", "nowait"],
        env,
    );
    assert_eq!((o.status, o.via()), (0, "ptrace"));
    assert_eq!(
        o.stderr,
        format!(
            "hwbp: the in-process agent cannot be used for '{}' (it is set-user-ID or \
             set-group-ID); stopping through ptrace, which costs more per hit\n",
            exe.display()
        )
    );
    // No HWBP_AGENT, no extra descriptor: what it sees without hwbp.
    assert_eq!(o.stdout, want);
    assert_eq!(pairs(&o.hits()), seq_pairs(5));
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--stop-via",
        "agent",
        "--watch",
        "target",
        "--",
        exe_str(exe),
        "seq",
        "5",
        "nowait",
    ]);
    assert_eq!((status, stdout.as_str()), (2, ""));
    assert!(
        stderr
            == format!(
                "hwbp: --stop-via agent: the agent cannot be used for '{}' (it is set-user-ID \
                 or set-group-ID); use --stop-via ptrace\n",
                exe.display()
            ),
        "{stderr}"
    );
    assert_eq!(running(exe), 0, "no program left running or stopped");
}

/// A Go program's runtime sets SIGTRAP's handler with raw `rt_sigaction` calls, which the
/// agent cannot see: hwbp recognizes Go binaries (a `.go.buildinfo` section; this fixture
/// fakes one) and stops them through ptrace, saying why; `--stop-via agent` refuses.
#[test]
fn a_go_program_is_stopped_through_ptrace_and_the_note_says_why() {
    let exe = match build_stop_target("stop_target_fake_go", &["-DHWBP_FAKE_GO"]) {
        Ok(p) => p,
        Err(why) => {
            skip_note!("SKIP: cannot build the fake Go fixture: {why}");
            return;
        }
    };
    let _hw = hw_shared();
    let o = stop_json(
        "agent-fake-go",
        None,
        &[],
        "target",
        &[exe_str(&exe), "seq", "40", "nowait"],
        &[],
    );
    assert_eq!((o.status, o.via()), (0, "ptrace"), "{}", o.stderr);
    assert_eq!(
        o.stderr,
        format!(
            "hwbp: the in-process agent cannot be used for '{}' (it is a Go program, whose \
             runtime takes SIGTRAP over with raw system calls); stopping through ptrace, which \
             costs more per hit\n",
            exe.display()
        )
    );
    assert_eq!(o.stdout, format!("sum {} writes 40\n", seq_sum(40)));
    assert_eq!(pairs(&o.hits()), seq_pairs(40));
    assert_eq!(o.totals(), (Some(40), Some(40), Some(0)));
    let (status, stdout, stderr) = run(&[
        "run",
        "--stop",
        "--stop-via",
        "agent",
        "--watch",
        "target",
        "--",
        exe_str(&exe),
        "seq",
        "5",
        "nowait",
    ]);
    assert_eq!(
        (status, stdout.as_str(), stderr),
        (
            2,
            "",
            format!(
                "hwbp: --stop-via agent: the agent cannot be used for '{}' (it is a Go \
                 program, whose runtime takes SIGTRAP over with raw system calls); use \
                 --stop-via ptrace\n",
                exe.display()
            )
        )
    );
}
