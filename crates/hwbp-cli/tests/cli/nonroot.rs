//! `hwbp run` as an unprivileged user (uid 65534, `nobody`): the perf rings shrink to the
//! locked memory the kernel allows it (`perf_mmap()`: `perf_event_mlock_kb` × online CPUs per
//! user plus `RLIMIT_MEMLOCK` per process, in pages of `2^n + 1` per ring), with one note
//! saying so, and every hit is still reported or counted as lost.
//!
//! The binary and the fixture are copied into a 0755 directory under /tmp, so `nobody` can
//! run them whatever the permissions of the build tree.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::hw::*;

/// A 0755 directory with hwbp and stop_target in it, removed when dropped.
struct Copies {
    dir: PathBuf,
}

impl Drop for Copies {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Copies {
    fn hwbp(&self) -> PathBuf {
        self.dir.join("hwbp")
    }
    fn fixture(&self) -> PathBuf {
        self.dir.join("stop_target")
    }
}

/// The copies, or `None` (with the reason printed) when not root, without setpriv or cc.
fn as_nobody_setup(name: &str) -> Option<Copies> {
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !root || !setpriv.is_ok_and(|o| o.status.success()) {
        skip_note!("SKIP {name}: needs root and setpriv (.ci/deps) to run hwbp as nobody");
        return None;
    }
    let dir = PathBuf::from(format!("/tmp/hwbp-nonroot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let copies = Copies { dir };
    std::fs::set_permissions(&copies.dir, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_hwbp"), copies.hwbp()).unwrap();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwbp/tests/linux/fixtures/stop_target.c");
    if let Err(why) = sh(Command::new("cc")
        .args(["-g", "-O1", "-pthread", "-o"])
        .arg(copies.fixture())
        .arg(&src))
    {
        skip_note!("SKIP {name}: cannot build stop_target.c: {why}");
        return None;
    }
    for f in [copies.hwbp(), copies.fixture()] {
        std::fs::set_permissions(&f, PermissionsExt::from_mode(0o755)).unwrap();
    }
    Some(copies)
}

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// CPUs in a list file such as /sys/devices/system/cpu/online ("0-1,3").
fn cpu_count(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// This machine's limits: (perf_event_mlock_kb, online CPUs, possible CPUs, RLIMIT_MEMLOCK
/// in bytes; `None` if unlimited). setpriv keeps the rlimits: nobody's are ours.
fn limits() -> (u64, u64, u64, Option<u64>) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let memlock = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse::<u64>()
        .ok();
    (
        read_u64("/proc/sys/kernel/perf_event_mlock_kb"),
        cpu_count("/sys/devices/system/cpu/online"),
        cpu_count("/sys/devices/system/cpu/possible"),
        memlock,
    )
}

/// The largest ring (`log2` data pages, 4..=want) of which one per possible CPU, `2^k + 1`
/// pages each, fits in `budget` pages (the kernel's rule); 4 if none does.
fn fit(budget: u64, want: u32) -> u32 {
    let (_, _, possible, _) = limits();
    (4..=want)
        .rev()
        .find(|k| possible * ((1u64 << k) + 1) <= budget)
        .unwrap_or(4)
}

/// The note for rings of `2^used` instead of `2^want` data pages per CPU.
fn note(used: u32, want: u32) -> String {
    let (mlock_kb, online, _, memlock) = limits();
    let size = |log2: u32| {
        let b = 4096u64 << log2;
        if b >= 1 << 20 {
            format!("{} MiB", b >> 20)
        } else {
            format!("{} KiB", b >> 10)
        }
    };
    format!(
        "hwbp: note: perf rings of {} per CPU instead of {}: the memory a user without \
         CAP_IPC_LOCK may lock for them is perf_event_mlock_kb ({mlock_kb} KiB) x {online} \
         online CPU{} per user plus RLIMIT_MEMLOCK ({} KiB) per process; hits beyond a full \
         ring are counted as lost. For bigger rings raise `ulimit -l` or \
         /proc/sys/kernel/perf_event_mlock_kb, or run with CAP_IPC_LOCK or as root\n",
        size(used),
        size(want),
        if online == 1 { "" } else { "s" },
        memlock.unwrap_or(0) / 1024
    )
}

/// The note hwbp must print for rings of `2^want` data pages per CPU, from this machine's
/// limits by the kernel's rule; `None` if they fit (no note).
fn expected_note(want: u32) -> Option<String> {
    let (mlock_kb, online, _, memlock) = limits();
    let used = fit(mlock_kb / 4 * online + memlock? / 4096, want);
    (used < want).then(|| note(used, want))
}

/// `hwbp run --json EXTRA --watch target -- stop_target seq N nowait` as nobody: (status,
/// hit records, summary, stderr).
fn run_as_nobody(c: &Copies, extra: &[&str], n: u64) -> (i32, Vec<Value>, Value, String) {
    run_as_nobody_with(c, &[], extra, n)
}

/// [`run_as_nobody`], hwbp started by `pre` (e.g. `prlimit --memlock=0:0`).
fn run_as_nobody_with(
    c: &Copies,
    pre: &[&str],
    extra: &[&str],
    n: u64,
) -> (i32, Vec<Value>, Value, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(pre)
        .arg(c.hwbp())
        .args(["run", "--json"])
        .args(extra)
        .args(["--watch", "target", "--"])
        .arg(c.fixture())
        .args(["seq", &n.to_string(), "nowait"])
        .current_dir(&c.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // The fixture's own line ("sum ... writes N") is not JSON.
    let recs: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect();
    let of = |schema: &str| -> Vec<Value> {
        recs.iter()
            .filter(|r| r["schema"] == schema)
            .cloned()
            .collect()
    };
    let summary = of("hwbp.summary/1").pop().unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        of("hwbp.hit/1"),
        summary,
        stderr,
    )
}

#[test]
fn run_as_nobody_shrinks_the_rings_and_reports_every_hit() {
    let Some(c) = as_nobody_setup("run") else {
        return;
    };
    // Runs as nobody share its per-user allowance (any hwbp test suite's): one at a time, or
    // a run's rings are smaller than the note expects.
    let _hw = hw_exclusive();
    let (status, hits, summary, stderr) = run_as_nobody(&c, &[], 1000);
    assert_eq!(status, 0, "{stderr}");
    // 4 MiB rings (here) hold ~87,000 plain samples: nothing can be lost.
    assert_eq!(hits.len(), 1000, "{stderr}");
    assert_eq!(
        (&summary["reported"], &summary["lost"]),
        (&Value::from(1000), &Value::from(0))
    );
    assert_eq!(stderr, expected_note(11).unwrap_or_default());
}

#[test]
fn run_backtrace_as_nobody_accounts_for_every_hit() {
    let Some(c) = as_nobody_setup("backtrace") else {
        return;
    };
    // Runs as nobody share its per-user allowance (any hwbp test suite's): one at a time, or
    // a run's rings are smaller than the note expects.
    let _hw = hw_exclusive();
    let (status, hits, summary, stderr) = run_as_nobody(&c, &["--backtrace"], 1000);
    assert_eq!(status, 0, "{stderr}");
    // Unpaced, 8 KiB stack copies into rings 1/16 of the default: whether the drainer keeps
    // up depends on the scheduler, so (as the unpaced storm test) the exact accounting.
    let reported = summary["reported"].as_u64().unwrap();
    let lost = summary["lost"].as_u64().unwrap();
    assert_eq!(reported + lost, 1000, "{summary}");
    assert_eq!(hits.len() as u64, reported);
    // Every reported hit with its stack: seq <- main.
    for h in &hits {
        assert_eq!(
            (&h["function"], &h["backtrace"][0]["frames"][0]["function"]),
            (&Value::from("seq"), &Value::from("main")),
            "{h}"
        );
    }
    assert_eq!(stderr, expected_note(14).unwrap_or_default());
}

/// `VmPin` of process `pid` in KiB.
fn pinned_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_second_run_as_nobody_halves_its_rings_or_names_the_locked_memory_rule() {
    let Some(c) = as_nobody_setup("second") else {
        return;
    };
    let (mlock_kb, online, _, memlock) = limits();
    let Some(memlock) = memlock else {
        skip_note!("SKIP: RLIMIT_MEMLOCK is unlimited: nobody's rings never shrink");
        return;
    };
    if expected_note(11).is_none() {
        skip_note!("SKIP: the default rings fit this machine's locked-memory limits");
        return;
    }
    // Runs as nobody share its per-user allowance (any hwbp test suite's): one at a time, or
    // a run's rings are smaller than the note expects.
    let _hw = hw_exclusive();
    // A first run holds rings beyond the per-user allowance (it waits for a line on stdin):
    // nobody's `perf_event_mlock_kb` x online CPUs is used up; the rest is in its VmPin.
    let mut first = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(c.hwbp())
        .args(["run", "--quiet", "--watch", "target", "--"])
        .arg(c.fixture())
        .args(["seq", "5"])
        .current_dir(&c.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dog = watchdog(first.id());
    while pinned_kb(first.id()) == 0 {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The second run's budget is computed as if the allowance were free, so the kernel
    // refuses the first size and hwbp halves until it maps: RLIMIT_MEMLOCK alone.
    let used = fit(memlock / 4096, 11);
    let (status, hits, summary, stderr) = run_as_nobody(&c, &[], 1000);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!((hits.len(), &summary["lost"]), (1000, &Value::from(0)));
    assert_eq!(stderr, note(used, 11));
    // With RLIMIT_MEMLOCK 0 not even the smallest ring maps: exit 2 naming the rule.
    let (status, hits, _, stderr) =
        run_as_nobody_with(&c, &["prlimit", "--memlock=0:0"], &[], 1000);
    assert_eq!((status, hits.len()), (2, 0), "{stderr}");
    let msg = stderr
        .strip_prefix("hwbp: cannot arm the watches in pid ")
        .and_then(|s| s.split_once(": "))
        .map(|(_, rest)| rest.to_owned());
    assert_eq!(
        msg.as_deref(),
        Some(
            format!(
                "mmap of the perf ring buffer (piece 0 on CPU 0) failed with EPERM: the perf \
                 rings exceed the memory this user may lock: perf_event_mlock_kb ({mlock_kb} \
                 KiB) x {online} online CPU{} per user plus RLIMIT_MEMLOCK (0 KiB) per process \
                 (other processes of this user with perf rings mapped count too), unless \
                 CAP_IPC_LOCK; raise `ulimit -l` or /proc/sys/kernel/perf_event_mlock_kb, or \
                 run with CAP_IPC_LOCK or as root\n",
                if online == 1 { "" } else { "s" }
            )
            .as_str()
        ),
        "{stderr}"
    );
    drop(first.stdin.take());
    let st = first.wait().unwrap();
    drop(dog);
    // No line: the fixture exits 3 without running seq.
    assert_eq!(st.code(), Some(3));
}

/// `hwbp caps` as nobody reports the locked-memory limits that make `run` shrink its rings
/// (root, with CAP_IPC_LOCK, reports them unlimited).
#[test]
fn caps_as_nobody_reports_the_ring_memory_limits() {
    let Some(c) = as_nobody_setup("caps") else {
        return;
    };
    let _hw = hw_shared();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(c.hwbp())
        .args(["caps", "--json"])
        .current_dir(&c.dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mlock_kb: Option<u64> = std::fs::read_to_string("/proc/sys/kernel/perf_event_mlock_kb")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let paranoid_off = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .is_ok_and(|s| s.trim() == "-1");
    assert_eq!(
        (
            &v["ring_memory"]["unlimited"],
            &v["ring_memory"]["perf_event_mlock_kb"]
        ),
        (&Value::from(paranoid_off), &serde_json::json!(mlock_kb))
    );
}
