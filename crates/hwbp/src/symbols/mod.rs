//! The symbol layer: what to watch (names to addresses) and who touched it (IPs to source).
//!
//! - [`maps`]: `/proc/PID/maps` -> modules and load biases (PIE/ASLR, shared libraries).
//! - [`expr`]: the `--watch SPEC` grammar, parsed into plain data ([`expr::WatchExpr`]).
//! - [`resolve`]: SPEC -> runtime region, length and value type, through `.symtab`/`.dynsym`
//!   and DWARF ([`resolve::Resolver`]).
//! - [`symbolize`]: sampled IP -> accessing instruction -> `function (file:line)` with inlined
//!   frames ([`symbolize::Symbolizer`]).
//! - [`unwind`]: sampled user registers + stack -> return addresses (DWARF CFI, framehop).
//! - [`elf`], [`dwarf`]: the file readers underneath.
//!
//! Grammar and resolution rules: docs/SYMBOLS.md. Not for: arming breakpoints or reading the
//! target's memory; everything here reads files and `/proc` text only, and has no `unsafe`.

pub mod dwarf;
pub mod elf;
pub mod error;
pub mod expr;
pub mod maps;
pub mod resolve;
pub mod symbolize;
pub mod unwind;
