//! The per-packet path allocates nothing: a counting global allocator watches every
//! `TxWorker::poll` while real submissions become real frames on a `net_null` port.
//!
//! Needs root (EAL); runs in its own process because EAL initialises once per process.

mod common;

use std::time::{Duration, Instant};

use common::{counted, have_root, net_null_config, sample_transactions};
use swqos_dataplane::runtime::{Dataplane, RunOptions, Worker};
use swqos_shm::layout::{State, Status};
use swqos_shm::stats::{self, Counter};
use swqos_shm::Client;

/// How long the last completions may take once submitting has stopped (they need a few polls).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn tx_poll_allocates_nothing_per_packet() {
    if !have_root("tx_poll_allocates_nothing_per_packet") {
        return;
    }
    let config = net_null_config(
        "noalloc",
        r#"
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
"#,
    );
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
        let (_, counts) = counted(|| worker.poll());
        // The first rounds may warm lazily initialised state; after that, nothing.
        if round >= 10 && counts.allocations != 0 {
            polls_with_allocations += 1;
        }
        while let Some(c) = client.poll() {
            assert_eq!(c.status, Status::Sent as u8, "{c:?}");
            completed += 1;
        }
    }
    // Every submission still owed a completion gets it within the deadline: a lost completion
    // is a failure with the count, never a hang.
    let deadline = Instant::now() + DRAIN_DEADLINE;
    while client.outstanding() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} completions never came within {DRAIN_DEADLINE:?} ({completed} of {} arrived)",
            client.outstanding(),
            submitted * 2
        );
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
