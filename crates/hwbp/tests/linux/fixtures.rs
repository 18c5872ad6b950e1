//! Building and running the fixture programs of `tests/fixtures/` (std only, so other crates'
//! tests can include this file with `#[path]`).
//!
//! Each fixture prints `addr NAME 0xADDR SIZE` lines, `ready`, then waits for one byte on
//! stdin before it starts writing (see the comment at the top of each fixture's source).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// The directory of the fixture sources.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The built fixtures.
#[derive(Debug)]
pub struct Built {
    /// Where they are.
    pub dir: PathBuf,
    /// `watch_target` built `-g -O1 -fPIE -pie`.
    pub pie: PathBuf,
    /// `watch_target` built `-g -O1 -no-pie`.
    pub no_pie: PathBuf,
    /// `watch_target` built `-O1 -no-pie` without `-g` (symbols, no DWARF).
    pub no_dwarf: PathBuf,
    /// A `strip`ped copy of `no_pie`, if `strip` exists.
    pub stripped: Option<PathBuf>,
    /// `libwatchlib.so`, which both `watch_target`s load.
    pub lib: PathBuf,
    /// `rust_static` built with `rustc -g -C opt-level=1`, if `rustc` exists.
    pub rust: Option<PathBuf>,
    /// The `hwbp demo` target built like a release `hwbp` (line tables only), if `rustc` exists.
    pub demo: Option<PathBuf>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn build() -> Result<Built, String> {
    let cc_ok = Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !cc_ok {
        return Err("no C compiler: `cc --version` failed (install gcc)".into());
    }
    let src = source_dir();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hwbp-fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let lib = dir.join("libwatchlib.so");
    run(Command::new("cc")
        .args(["-g", "-O1", "-fPIC", "-shared", "-o"])
        .arg(&lib)
        .arg(src.join("watchlib.c")))?;
    let target = |out: &str, flags: &[&str]| -> Result<PathBuf, String> {
        let path = dir.join(out);
        run(Command::new("cc")
            .args(flags)
            .arg("-o")
            .arg(&path)
            .arg(src.join("watch_target.c"))
            .arg("-L")
            .arg(&dir)
            .args(["-lwatchlib", "-Wl,-rpath,$ORIGIN", "-pthread"]))?;
        Ok(path)
    };
    let pie = target("watch_target_pie", &["-g", "-O1", "-fPIE", "-pie"])?;
    let no_pie = target("watch_target_nopie", &["-g", "-O1", "-no-pie"])?;
    let no_dwarf = target("watch_target_nodwarf", &["-O1", "-no-pie"])?;
    let stripped = dir.join("watch_target_stripped");
    let stripped = match Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&no_pie)
        .status()
    {
        Ok(s) if s.success() => Some(stripped),
        _ => {
            skip_note!("NOTE: `strip` is missing; the stripped-binary test will skip");
            None
        }
    };
    let rustc = |out: &str, args: &[&str], source: &str| -> Result<Option<PathBuf>, String> {
        let path = dir.join(out);
        match Command::new("rustc")
            .args(["--edition", "2021"])
            .args(args)
            .arg("-o")
            .arg(&path)
            .arg(src.join(source))
            .output()
        {
            Ok(o) if o.status.success() => Ok(Some(path)),
            Ok(o) => Err(format!(
                "rustc failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => {
                skip_note!("NOTE: rustc not runnable ({e}); the Rust fixture tests will skip");
                Ok(None)
            }
        }
    };
    let rust = rustc(
        "rust_static",
        &["-g", "-C", "opt-level=1"],
        "rust_static.rs",
    )?;
    let demo = rustc(
        "demo_target",
        &[
            "--crate-name",
            "hwbp",
            "-C",
            "opt-level=3",
            "-C",
            "debuginfo=line-tables-only",
        ],
        "demo_main.rs",
    )?;
    Ok(Built {
        dir,
        pie,
        no_pie,
        no_dwarf,
        stripped,
        lib,
        rust,
        demo,
    })
}

/// The fixtures, built once per test process; `None` (after printing why) when no C compiler.
pub fn built() -> Option<&'static Built> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(b) => Some(b),
        Err(why) => {
            skip_note!("SKIP: fixtures not built: {why}");
            None
        }
    }
}

/// Stores `watch_target WRITES BEFORE AFTER` makes to `counter` (see the fixture's header).
pub fn counter_stores(writes: u64, threads_before: u64, threads_after: u64) -> u64 {
    writes * (1 + threads_before + threads_after)
}

/// The 1-based line of the source line that ends with the comment `/* MARKER */` or
/// `// MARKER`.
pub fn marker_line(source: &str, marker: &str) -> u32 {
    let text = std::fs::read_to_string(source_dir().join(source)).unwrap();
    let (c, rust) = (format!("/* {marker} */"), format!("// {marker}"));
    let i = text
        .lines()
        .position(|l| l.trim_end().ends_with(&c) || l.trim_end().ends_with(&rust))
        .unwrap_or_else(|| panic!("{marker} not in {source}"));
    u32::try_from(i + 1).unwrap()
}

/// A fixture process stopped at its `ready` point.
pub struct Running {
    /// The child.
    pub child: Child,
    /// `NAME -> (address, size)` as the program printed them.
    pub addrs: HashMap<String, (u64, u64)>,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    /// Starts `program args...` and reads up to `ready`.
    pub fn start(program: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addrs = HashMap::new();
        loop {
            let mut line = String::new();
            assert_ne!(
                stdout.read_line(&mut line).unwrap(),
                0,
                "fixture exited early"
            );
            let line = line.trim_end();
            if line == "ready" {
                break;
            }
            let f: Vec<&str> = line.split(' ').collect();
            if f[0] == "addr" {
                let addr = u64::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap();
                addrs.insert(f[1].to_string(), (addr, f[3].parse().unwrap()));
            }
        }
        Running {
            child,
            addrs,
            stdout,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The printed `(address, size)` of `name`.
    pub fn addr(&self, name: &str) -> (u64, u64) {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("fixture printed no address for {name}"))
    }

    /// Lets it run to the end; returns the rest of its output.
    pub fn go(mut self) -> String {
        self.child.stdin.take().unwrap().write_all(b"g").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        assert!(self.child.wait().unwrap().success());
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
