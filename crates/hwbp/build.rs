//! Builds hwbp's in-process agent (crates/hwbp-agent) as a shared library and leaves it in
//! `OUT_DIR/libhwbp_agent.so` for `include_bytes!` (src/agent.rs). It is compiled with rustc
//! directly (not as a Cargo dependency: an rlib would export its `sigaction` interposer into
//! every binary linking hwbp) with `panic=abort`, optimized and stripped, whatever the profile.
//! On other targets the file is empty and the agent is unavailable.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let agent = manifest.join("../hwbp-agent/src");
    for f in ["lib.rs", "agent.rs", "layout.rs"] {
        println!("cargo:rerun-if-changed={}", agent.join(f).display());
    }
    let so = out.join("libhwbp_agent.so");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        std::fs::write(&so, b"").expect("writing OUT_DIR");
        return;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition=2021",
        "--crate-type=cdylib",
        "--crate-name=hwbp_agent",
    ])
    .args([
        "-C",
        "opt-level=2",
        "-C",
        "panic=abort",
        "-C",
        "debuginfo=0",
    ])
    .args(["-C", "strip=symbols", "--cap-lints=warn"])
    .args(["--cfg", "hwbp_agent_nostd"])
    .arg("-o")
    .arg(&so)
    .arg(agent.join("lib.rs"));
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.is_empty() && std::env::var("HOST").ok().as_deref() != Some(target.as_str()) {
        cmd.arg(format!("--target={target}"));
    }
    let status = cmd.status().expect("running rustc for the agent");
    assert!(
        status.success(),
        "building crates/hwbp-agent failed: {status}"
    );
}
