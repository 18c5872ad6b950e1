//! Shared helpers of the integration binary.
#![allow(dead_code)]

pub mod roles;

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicU64;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hwbp::sys::{lock_file, LockMode};
use hwbp_core::{Access, Spec};

static HW: RwLock<()> = RwLock::new(());

/// Machine-wide lock file shared by every hwbp test binary.
const LOCK_PATH: &str = "/tmp/hwbp-hardware-tests.lock";

/// Held by a test using the debug registers in a way others may disturb or be disturbed by.
pub struct HwGuard {
    _file: File,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

fn lock_file_open() -> File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .expect("open the hardware-test lock file")
}

/// For tests that only use task-bound breakpoints on their own threads or children.
pub fn hw_shared() -> HwGuard {
    let g = HW.read().unwrap_or_else(|p| p.into_inner());
    let file = lock_file_open();
    lock_file(file.as_fd(), LockMode::Shared).expect("flock shared");
    HwGuard {
        _file: file,
        _shared: Some(g),
        _exclusive: None,
    }
}

/// Written (with the CPU number) before the hotplug test offlines a CPU, removed when it is
/// back online.
pub const OFFLINED_MARKER: &str = "/tmp/hwbp-hardware-tests.offlined-cpu";

/// For tests that open CPU-bound events, probe slots, or hotplug CPUs.
pub fn hw_exclusive() -> HwGuard {
    let g = HW.write().unwrap_or_else(|p| p.into_inner());
    let file = lock_file_open();
    lock_file(file.as_fd(), LockMode::Exclusive).expect("flock exclusive");
    // A hotplug test killed while its CPU was offline left the marker: repair.
    if let Ok(cpu) = std::fs::read_to_string(OFFLINED_MARKER) {
        let path = format!("/sys/devices/system/cpu/cpu{}/online", cpu.trim());
        match std::fs::write(&path, "1") {
            Ok(()) => {
                eprintln!(
                    "brought CPU {} back online (left offline by a killed run)",
                    cpu.trim()
                );
                let _ = std::fs::remove_file(OFFLINED_MARKER);
            }
            Err(e) => eprintln!("could not bring CPU {} back online: {e}", cpu.trim()),
        }
    }
    HwGuard {
        _file: file,
        _shared: None,
        _exclusive: Some(g),
    }
}

/// A user-mode spec over one 8-byte word.
pub fn spec_of(word: &AtomicU64, access: Access) -> Spec {
    Spec::user(word.as_ptr() as u64, 8, access)
}

/// Environment variable selecting a child role when this binary is re-executed.
pub const ROLE_ENV: &str = "HWBP_CHILD_ROLE";

/// A re-executed copy of this test binary playing a role, driven line by line.
pub struct ChildProc {
    pub child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl ChildProc {
    /// Starts this binary with `HWBP_CHILD_ROLE=role` running only the role entry test.
    pub fn spawn(role: &str) -> ChildProc {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "child_role_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child role");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        ChildProc {
            child,
            stdin,
            stdout,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> hwbp::Pid {
        hwbp::Pid::new(self.child.id() as i32).expect("pid")
    }

    /// Waits for a line `KEY rest` from the child (skipping libtest's chatter); returns rest.
    pub fn expect(&mut self, key: &str) -> String {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "child exited before saying {key}");
            // libtest prints "test name ... " without a newline before the role's output.
            let tag = format!("@{key}");
            if let Some(at) = line.find(&tag) {
                return line[at + tag.len()..].trim().to_string();
            }
        }
    }

    /// Sends one line.
    pub fn say(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").expect("write child stdin");
        self.stdin.flush().expect("flush");
    }

    /// Tells the child to exit and waits for it.
    pub fn finish(mut self) {
        self.say("exit");
        let status = self.child.wait().expect("wait child");
        assert!(status.success(), "child role failed: {status}");
    }
}

/// Child side: prints `@key rest`.
pub fn tell(key: &str, rest: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "@{key} {rest}").expect("stdout");
    out.flush().expect("flush");
}

/// Child side: waits for one line from the parent.
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    line.trim().to_string()
}

/// Parses `0x...`.
pub fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}
