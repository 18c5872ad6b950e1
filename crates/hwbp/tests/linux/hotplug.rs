//! Stream delivery across CPU hotplug: CPU 1 goes offline and comes back; after a refresh
//! every stream records the returning CPU's hits exactly, with nothing lost.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hwbp::stream::{Stream, StreamOptions};
use hwbp::watch::Refresh;
use hwbp::{Cpu, Errno, HotplugMonitor, Target};
use hwbp_core::Access;

use super::common::*;
use super::{on_cpu, two_cpus_or_skip, writes, OnlineGuard};

/// Drains `s`: samples per CPU; asserts nothing was lost or unattributed.
fn by_cpu(name: &str, s: &mut Stream) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    s.drain(|h| {
        assert!(h.piece.is_some(), "{name}: sample with an unknown id");
        *out.entry(h.sample.cpu.expect("cpu")).or_insert(0u64) += 1;
    });
    let st = s.stats();
    assert_eq!(st.ring.lost, 0, "{name}: lost samples");
    assert_eq!(st.unknown_ids, 0, "{name}");
    out
}

fn map(pairs: &[(Cpu, u64)]) -> BTreeMap<u32, u64> {
    pairs.iter().map(|&(c, n)| (c.get(), n)).collect()
}

#[test]
fn stream_refresh_records_exactly_on_a_cpu_that_came_back() {
    let _hw = hw_exclusive();
    let test = "stream_refresh_records_exactly_on_a_cpu_that_came_back";
    let Some((c0, c1)) = two_cpus_or_skip(test) else {
        return;
    };
    let word = Arc::new(AtomicU64::new(0));
    let spec = spec_of(&word, Access::Write);
    let opts = StreamOptions::default();
    // CPU-bound events take a slot from every thread on their CPU: with the two process
    // streams, CPU 1 uses all 4 slots of this thread.
    let one = match Stream::new(Target::Cpu(c1), spec, &opts) {
        Ok(s) => s,
        Err(e) if matches!(e.errno(), Some(Errno::EACCES | Errno::EPERM)) => {
            skip_note!("SKIP {test}: the host forbids CPU-bound events: {e}");
            return;
        }
        Err(e) => panic!("{test}: {e}"),
    };
    let mut all = Stream::new(Target::AllCpus, spec, &opts).unwrap();
    let one = Arc::new(Mutex::new(one));
    let monitor = HotplugMonitor::spawn_streams(vec![Arc::clone(&one)], Duration::from_millis(5));
    // A process stream (this process: per thread per CPU) armed with both CPUs online...
    let mut proc_before = Stream::new(Target::current_process(), spec, &opts).unwrap();
    on_cpu(c1, writes(&word, 100));
    let guard = OnlineGuard(c1);
    if let Err(e) = guard.set(false) {
        skip_note!("SKIP {test}: cannot offline CPU {c1}: {e}");
        std::mem::forget(guard);
        return;
    }
    // ... and one armed while CPU 1 is offline: no events or ring there yet.
    let mut proc_after = Stream::new(Target::current_process(), spec, &opts).unwrap();
    let rings_offline = proc_after.ring_count();
    on_cpu(c0, writes(&word, 50));
    guard.set(true).unwrap();
    drop(guard);
    assert_eq!(all.refresh().unwrap().reopened, vec![c1]);
    // Per-(thread, CPU) events live in the task's context: they survive hotplug.
    assert_eq!(proc_before.refresh().unwrap(), Refresh::default());
    assert_eq!(proc_after.refresh().unwrap().reopened, vec![c1]);
    assert_eq!(proc_after.ring_count(), rings_offline + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while monitor.reopen_rounds() == 0 {
        assert!(Instant::now() < deadline, "monitor never refreshed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(monitor.last_error(), None);
    drop(monitor);
    on_cpu(c1, writes(&word, 200));
    // The monitor reopened CPU 1 of its stream on its own; the others were refreshed above.
    // Samples recorded before the offline come from the old rings' copies.
    let mut one = one.lock().unwrap();
    assert_eq!(by_cpu("cpu (monitored)", &mut one), map(&[(c1, 300)]));
    let both = map(&[(c0, 50), (c1, 300)]);
    assert_eq!(by_cpu("all", &mut all), both);
    assert_eq!(by_cpu("process before", &mut proc_before), both);
    assert_eq!(
        by_cpu("process after", &mut proc_after),
        map(&[(c0, 50), (c1, 200)])
    );
    // Counts agree with the samples.
    assert_eq!(one.watch().count().unwrap(), 300);
    assert_eq!(all.watch().count().unwrap(), 350);
    assert_eq!(proc_after.watch().count().unwrap(), 250);
    // A second refresh finds everything alive.
    assert_eq!(all.refresh().unwrap(), Refresh::default());
    assert_eq!(proc_after.refresh().unwrap(), Refresh::default());
}
