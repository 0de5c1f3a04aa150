//! The per-packet path allocates nothing: a counting global allocator watches every
//! `TxWorker::poll` while real submissions become real frames on a `net_null` port.
//!
//! Needs root (EAL); runs in its own process because EAL initialises once per process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use swqos_dataplane::runtime::{Dataplane, RunOptions, Worker};
use swqos_shm::layout::{State, Status};
use swqos_shm::stats::{self, Counter};
use swqos_shm::Client;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn sample_transactions() -> Vec<Vec<u8>> {
    use base64::Engine;
    include_str!("../../wire/tests/data/solana-txs.jsonl")
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

#[test]
fn tx_poll_allocates_nothing_per_packet() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: tx_poll_allocates_nothing_per_packet needs root for DPDK's EAL");
        return;
    }
    let pid = std::process::id();
    let text = format!(
        r#"
[eal]
lcores = "0-1"
hugepages = "off"
memory_mb = 256
file_prefix = "swqos-noalloc-{pid}"
[shm]
path = "/dev/shm/swqos-noalloc-{pid}"
rings = 2
[[port]]
name = "p0"
device = "net_null0"
rx_queues = 0
[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "p0", queue = 0 }}]
[[lane]]
name = "a"
kind = "udp"
port = "p0"
src_ip = "198.18.0.1"
src_port = 9001
dst_ip = "198.18.0.2"
dst_port = 8001
dst_mac = "02:00:00:00:00:02"
[[lane]]
name = "b"
kind = "udp"
port = "p0"
src_ip = "198.18.0.1"
src_port = 9002
dst_ip = "198.19.0.2"
dst_port = 8002
dst_mac = "02:00:00:00:00:03"
"#
    );
    let config = dpdk_config::Config::parse(&text, Path::new("no_alloc.toml")).unwrap();
    let mut dp = Dataplane::setup(&config, &RunOptions::default()).unwrap();
    let seg = dp.segment().clone();
    let mut workers = dp.take_workers();
    let Some((_, Worker::Tx(mut worker))) = workers.pop() else {
        panic!("expected one tx worker");
    };
    seg.heartbeat();
    seg.set_state(State::Running);
    let mut client = Client::attach(&config.shm.path).unwrap();
    let txs = sample_transactions();

    let mut submitted = 0u64;
    let mut completed = 0u64;
    let mut polls_with_allocations = 0;
    for round in 0..5_000u64 {
        // Keep the ring busy: up to 8 submissions per round, to both lanes.
        for k in 0..8 {
            let tx = &txs[((round * 8 + k) % txs.len() as u64) as usize];
            if client.submit(tx, 0b11, submitted).is_ok() {
                submitted += 1;
            }
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        worker.poll();
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        // The first rounds may warm lazily initialised state; after that, nothing.
        if round >= 10 && after != before {
            polls_with_allocations += 1;
        }
        while let Some(c) = client.poll() {
            assert_eq!(c.status, Status::Sent as u8, "{c:?}");
            completed += 1;
        }
    }
    while client.outstanding() > 0 {
        worker.poll();
        while client.poll().is_some() {
            completed += 1;
        }
    }
    assert_eq!(polls_with_allocations, 0, "TxWorker::poll allocated");
    assert!(
        submitted > 10_000,
        "only {submitted} submissions went through"
    );
    assert_eq!(completed, submitted * 2, "one completion per lane");
    let s = stats::read(seg.stats(0));
    assert_eq!(s.get(Counter::TxPackets), submitted * 2);
    assert_eq!(s.get(Counter::TxDropped), 0);
    eprintln!(
        "{submitted} submissions, {} packets, 0 allocations in {} polls",
        s.get(Counter::TxPackets),
        s.get(Counter::Polls)
    );
    drop(worker);
    drop(client);
}
