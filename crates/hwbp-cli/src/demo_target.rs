//! The program `hwbp demo` watches: a bank balance that tellers update legitimately many times
//! and a rogue "audit" thread corrupts exactly once.
//!
//! It runs as a hidden subcommand of the `hwbp` binary itself, so `cargo run --release -- demo`
//! needs no other build. The watched variable is the static [`BALANCE`]:
//!
//! - symbol: `hwbp::demo_target::BALANCE` (Rust-mangled, in `.symtab`; resolvable as
//!   `demo_target::BALANCE` without DWARF, since the resolver matches demangled path suffixes),
//!   8 bytes, an `AtomicI64` (DWARF value type `i64` in builds with full debug info);
//! - writers: [`deposit`] and [`withdraw`] (`fetch_add`/`fetch_sub`, `WORKERS * UPDATES`
//!   writes in total, threads `teller-N`) and [`rogue_audit_adjustment`] (one `fetch_sub`,
//!   thread `audit`, on the line marked `ROGUE_WRITE`): exactly `WORKERS * UPDATES + 1` writes.
//!   In a release build the atomics are inlined, so each write symbolizes to its function's
//!   line here; in a debug build the store is inside `core`'s non-inlined `fetch_add`/`fetch_sub`
//!   and only the call stack shows the caller.
//!
//! Not for: anything but the demo; it uses no hwbp API and knows nothing about being watched.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The watched account balance, in cents.
pub static BALANCE: AtomicI64 = AtomicI64::new(INITIAL_CENTS);

/// Updates done so far by all tellers (not watched; lets the rogue strike mid-run).
static PROGRESS: AtomicU64 = AtomicU64::new(0);

/// The opening balance.
pub const INITIAL_CENTS: i64 = 1_000_000;
/// Teller threads.
pub const WORKERS: u64 = 4;
/// Updates per teller: alternating deposits and withdrawals.
pub const UPDATES: u64 = 2_500;
/// What the rogue takes, once.
pub const ROGUE_CENTS: i64 = 999_999;

/// A legitimate deposit.
#[inline(never)]
pub fn deposit(cents: i64) {
    BALANCE.fetch_add(cents, Ordering::SeqCst);
}

/// A legitimate withdrawal.
#[inline(never)]
pub fn withdraw(cents: i64) {
    BALANCE.fetch_sub(cents, Ordering::SeqCst);
}

/// The bug: an "adjustment" that no transaction asked for. (Atomic, so that the damage is
/// exactly `ROGUE_CENTS` and the demo's numbers add up.)
#[inline(never)]
pub fn rogue_audit_adjustment() {
    BALANCE.fetch_sub(ROGUE_CENTS, Ordering::Relaxed); // ROGUE_WRITE
}

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The balance at the end.
    pub final_cents: i64,
    /// What it would be without the rogue.
    pub expected_cents: i64,
    /// Writes by the tellers.
    pub legitimate_writes: u64,
}

/// Runs `workers` tellers doing `updates` each, and the rogue once halfway through.
pub fn run(workers: u64, updates: u64) -> Outcome {
    // A second run in one process (tests) starts over; the demo's one run writes nothing
    // here, so every hit the demo shows is a teller's or the rogue's.
    if BALANCE.load(Ordering::SeqCst) != INITIAL_CENTS {
        BALANCE.store(INITIAL_CENTS, Ordering::SeqCst);
    }
    PROGRESS.store(0, Ordering::SeqCst);
    let total = workers * updates;
    let mut net = 0i64;
    let mut handles = Vec::new();
    for w in 0..workers {
        // Teller w deposits (w + 1) * 10 cents and withdraws (w + 1) * 7, alternately.
        let (dep, wd) = ((w as i64 + 1) * 10, (w as i64 + 1) * 7);
        let n = updates as i64;
        net += (n - n / 2) * dep - (n / 2) * wd;
        let h = std::thread::Builder::new()
            .name(format!("teller-{}", w + 1))
            .spawn(move || {
                for i in 0..updates {
                    if i % 2 == 0 {
                        deposit(dep);
                    } else {
                        withdraw(wd);
                    }
                    PROGRESS.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("spawn teller");
        handles.push(h);
    }
    let rogue = std::thread::Builder::new()
        .name("audit".into())
        .spawn(move || {
            while PROGRESS.load(Ordering::Relaxed) < total / 2 {
                std::thread::yield_now();
            }
            rogue_audit_adjustment();
        })
        .expect("spawn audit");
    for h in handles {
        h.join().expect("teller panicked");
    }
    rogue.join().expect("audit panicked");
    Outcome {
        final_cents: BALANCE.load(Ordering::SeqCst),
        expected_cents: INITIAL_CENTS + net,
        legitimate_writes: total,
    }
}

/// The hidden subcommand's entry: run the demo workload, report, exit 0.
pub fn main_demo_target() -> ! {
    let o = run(WORKERS, UPDATES);
    println!(
        "demo: {} legitimate updates by {WORKERS} tellers; balance {} cents, expected {} \
         ({} cents missing)",
        o.legitimate_writes,
        o.final_cents,
        o.expected_cents,
        o.expected_cents - o.final_cents
    );
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rogue_takes_exactly_its_amount_once() {
        let o = run(3, 100);
        assert_eq!(o.legitimate_writes, 300);
        // Tellers 1..=3: 50 deposits of 10/20/30 and 50 withdrawals of 7/14/21 -> 50*3*(1+2+3).
        assert_eq!(o.expected_cents, INITIAL_CENTS + 900);
        assert_eq!(o.final_cents, o.expected_cents - ROGUE_CENTS);
    }
}
