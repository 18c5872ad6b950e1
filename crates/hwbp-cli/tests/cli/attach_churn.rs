//! `hwbp attach` while the target creates threads without pause: every thread is armed
//! exactly once (the process is held still with ptrace seize while armed), so the hit count is
//! exact — live arming would arm a thread created during arming twice (it inherits the watch
//! and is armed again when re-listed) and count its writes twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::hw::*;

#[test]
fn attach_during_thread_churn_counts_every_write_exactly_once() {
    let Some(fx) = fixtures() else { return };
    let _hw = hw_shared();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/churn.c");
    let exe = fx.dir.join("churn");
    sh(Command::new("cc")
        .args(["-g", "-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src))
    .unwrap();
    const WRITES: u64 = 20;
    for round in 0..5 {
        let out = tmp(&format!("churn-{round}"));
        let mut target = Command::new(&exe)
            .arg(WRITES.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut to_target = target.stdin.take().unwrap();
        let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let pid = target.id().to_string();
        let mut hwbp = Command::new(env!("CARGO_BIN_EXE_hwbp"))
            .args(["attach", "-q", "--json", "-o", out.to_str().unwrap()])
            .args(["--watch", "counter", "-p", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(hwbp.stderr.take().unwrap());
        let mut armed = String::new();
        err.read_line(&mut armed).unwrap();
        assert_eq!(
            armed,
            format!("hwbp: watching 1 watch in pid {pid}; Ctrl-C to stop\n"),
            "round {round}: no note about live arming expected"
        );
        // Threads were being created while hwbp armed; now stop creating and let them write.
        to_target.write_all(b"stop\n").unwrap();
        let created: u64 = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("created ")
            .unwrap()
            .parse()
            .unwrap();
        to_target.write_all(b"go\n").unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "done");
        assert!(target.wait().unwrap().success());
        let status = hwbp.wait().unwrap();
        let mut rest = String::new();
        err.read_to_string(&mut rest).unwrap();
        assert_eq!(
            (status.code(), rest.as_str()),
            (Some(0), ""),
            "round {round}"
        );
        let recs = records(&out);
        let s = summary(&recs);
        assert!(created > 0, "round {round}: no thread was created");
        assert_eq!(
            (s["seen"].as_u64(), s["lost"].as_u64()),
            (Some(created * WRITES), Some(0)),
            "round {round}: {created} threads x {WRITES} writes"
        );
    }
}
