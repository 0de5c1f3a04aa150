//! Shared by the counting-allocator tests: the allocator, the sample transactions and a
//! `net_null` config. Each test file is its own process (EAL initialises once per process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts this thread's allocations inside [`counted`]; forwards everything to `System`.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static DEALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread is in a counted region (other threads, such as the test harness's,
    /// are not watched).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            DEALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the allocator saw in a counted region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allocations: u64,
    pub(crate) bytes: u64,
    pub(crate) deallocations: u64,
}

/// Runs `f` with this thread's allocations counted.
pub(crate) fn counted<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    let before = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
        DEALLOCATIONS.load(Ordering::Relaxed),
    );
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    let counts = Counts {
        allocations: ALLOCATIONS.load(Ordering::Relaxed) - before.0,
        bytes: ALLOCATED_BYTES.load(Ordering::Relaxed) - before.1,
        deallocations: DEALLOCATIONS.load(Ordering::Relaxed) - before.2,
    };
    (r, counts)
}

/// The valid sample transactions.
pub(crate) fn sample_transactions() -> Vec<Vec<u8>> {
    use base64::Engine;
    include_str!("../../../wire/tests/data/solana-txs.jsonl")
        .lines()
        .filter(|l| !l.contains("\"invalid\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(v["base64"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// Whether the test can run (EAL needs root). Without root it skips, loudly, outside CI; with
/// `CI` set (CI runs as root) it fails instead: a test that passes without running is a defect.
pub(crate) fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs root for DPDK's EAL, and CI is set: CI must run every test as root"
        );
        // Straight to fd 2: the test harness captures `eprintln!`, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n**********************************************************************\n\
             SKIPPED: {test} needs root for DPDK's EAL\n\
             (this test did NOT run; with CI set it fails instead)\n\
             **********************************************************************\n"
        );
    }
    root
}

/// A config with one TX lcore on a `net_null0` port, its own file prefix and segment, and
/// `lanes` (TOML `[[lane]]` tables on port `p0`).
pub(crate) fn net_null_config(name: &str, lanes: &str) -> dpdk_config::Config {
    let pid = std::process::id();
    let text = format!(
        r#"
[eal]
lcores = "0-1"
hugepages = "off"
memory_mb = 256
file_prefix = "swqos-{name}-{pid}"
[shm]
path = "/dev/shm/swqos-test-{name}-{pid}/segment"
rings = 2
[[port]]
name = "p0"
device = "net_null0"
rx_queues = 0
[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "p0", queue = 0 }}]
{lanes}"#
    );
    dpdk_config::Config::parse(&text, Path::new(&format!("{name}.toml"))).unwrap()
}
