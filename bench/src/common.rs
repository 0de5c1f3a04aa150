//! What every benchmark shares: the embedded sample transactions, attaching to the data plane,
//! waiting for completions, quantiles.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use swqos_shm::layout::Status;
use swqos_shm::stats::{self, role, StatsSnapshot};
use swqos_shm::{Client, Segment, SubmitError};
use swqos_wire::solana::Transaction;

/// The wire crate's sample transactions, embedded so the benchmark needs no input file.
pub(crate) const SAMPLES: &str = include_str!("../../wire/tests/data/solana-txs.jsonl");

/// How long to wait for a completion before deciding the dataplane is stuck.
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// Why a benchmark stopped.
pub(crate) enum Failure {
    /// Bad configuration, no segment, bad arguments.
    Setup(String),
    /// The dataplane stopped or misbehaved during the run.
    Run(String),
}

pub(crate) fn setup(config: &Path) -> Result<(Client, Vec<Vec<u8>>), Failure> {
    let config = dpdk_config::Config::load(config).map_err(|e| Failure::Setup(e.to_string()))?;
    let client = Client::attach(&config.shm.path).map_err(|e| Failure::Setup(e.to_string()))?;
    let txs = samples().map_err(Failure::Setup)?;
    Ok((client, txs))
}

/// The valid sample transactions (entries without an `invalid` field), decoded and checked.
pub(crate) fn samples() -> Result<Vec<Vec<u8>>, String> {
    let mut txs = Vec::new();
    for line in SAMPLES.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("embedded samples: {e}"))?;
        if v.get("invalid").is_some() {
            continue;
        }
        let Some(b64) = v.get("base64").and_then(|s| s.as_str()) else {
            continue;
        };
        let tx = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("embedded samples: {e}"))?;
        Transaction::parse(&tx).map_err(|e| format!("embedded sample does not parse: {e}"))?;
        txs.push(tx);
    }
    if txs.is_empty() {
        return Err("no valid embedded sample transactions".into());
    }
    Ok(txs)
}

/// A mask of the first `n` lanes, checked against what the dataplane has.
pub(crate) fn first_lanes(client: &Client, n: u32) -> Result<u64, Failure> {
    let have = client.lane_names().len() as u32;
    if n == 0 || n > have {
        return Err(Failure::Setup(format!(
            "asked for {n} lane(s); the dataplane has {have}"
        )));
    }
    Ok(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
}

pub(crate) fn snapshot(seg: &Segment) -> Vec<StatsSnapshot> {
    (0..seg.layout().n_lcores as usize)
        .map(|i| stats::read(seg.stats(i)))
        .collect()
}

pub(crate) fn role_name(r: u32) -> &'static str {
    match r {
        role::TX => "tx",
        role::RX => "rx",
        _ => "unused",
    }
}

pub(crate) fn status_index(status: u8) -> usize {
    match Status::from_u8(status) {
        Some(Status::Sent) | Some(Status::Relayed) => 0,
        Some(Status::Rejected) => 1,
        Some(Status::UnknownLane) => 2,
        Some(Status::Dropped) | Some(Status::RelayError) => 3,
        // Landing answers: the bench never asks for them.
        Some(Status::Landed) | Some(Status::Expired) | None => 4,
    }
}

pub(crate) const STATUS_NAMES: [&str; 5] = ["sent", "rejected", "unknown-lane", "dropped", "other"];

pub(crate) fn submit_error(e: SubmitError) -> Failure {
    match e {
        SubmitError::NotRunning(_) => Failure::Run(e.to_string()),
        e => Failure::Setup(format!("submission refused: {e}")),
    }
}

/// Reads every completion available now, counting them by status; returns how many.
pub(crate) fn drain(client: &mut Client, by_status: &mut [u64; 5]) -> usize {
    let mut n = 0;
    while let Some(c) = client.poll() {
        by_status[status_index(c.status)] += 1;
        n += 1;
    }
    n
}

/// Busy-polls until `want` completions with `tag` have arrived, pushing their latencies.
pub(crate) fn wait_for(
    client: &mut Client,
    tag: u64,
    want: u32,
    samples: Option<&mut Vec<u64>>,
) -> Result<(), Failure> {
    let mut got = 0;
    let mut spins = 0u64;
    let mut started: Option<Instant> = None;
    let mut samples = samples;
    while got < want {
        match client.poll() {
            Some(c) if c.tag == tag => {
                if !matches!(
                    Status::from_u8(c.status),
                    Some(Status::Sent | Status::Relayed)
                ) {
                    return Err(Failure::Run(format!(
                        "lane {} answered {} (reason {})",
                        c.lane,
                        STATUS_NAMES[status_index(c.status)],
                        c.reason
                    )));
                }
                if let Some(s) = samples.as_deref_mut() {
                    s.push(c.done_tsc.wrapping_sub(c.submit_tsc));
                }
                got += 1;
            }
            Some(_) => {} // a late completion of an earlier submission: ignore
            None => {
                spins += 1;
                if spins.is_multiple_of(4096) {
                    let t = *started.get_or_insert_with(Instant::now);
                    if t.elapsed() > STALL {
                        client
                            .segment()
                            .check_running()
                            .map_err(|e| Failure::Run(e.to_string()))?;
                        return Err(Failure::Run(format!(
                            "no completion for {STALL:?} (tag {tag}, {got}/{want})"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Submits one transaction, polling completions while the ring is full (one in flight: it
/// empties as the data plane sends).
pub(crate) fn submit_waiting(
    client: &mut Client,
    tx: &[u8],
    mask: u64,
    tag: u64,
) -> Result<(), Failure> {
    loop {
        match client.submit(tx, mask, tag) {
            Ok(()) => return Ok(()),
            Err(SubmitError::Full) => {
                client.poll();
            }
            Err(e) => return Err(submit_error(e)),
        }
    }
}

/// Nearest-rank quantile of sorted samples.
pub(crate) fn pct(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The data plane's latency budget over a run: TSC ticks and timings per stage of its send
/// path, and its delegated (fast) and handed-off relay sends, from the stats blocks.
pub(crate) struct Budget {
    ticks: [u64; stats::N_STAGES],
    hist: Vec<[u64; stats::STAGE_BUCKETS]>,
    /// Relay requests the data plane sent itself.
    pub(crate) fast_sends: u64,
    /// Relay requests handed to the control plane (fast ones included).
    pub(crate) handed_off: u64,
}

/// The budget between two snapshots of every lcore's stats block.
pub(crate) fn budget(before: &[StatsSnapshot], after: &[StatsSnapshot]) -> Budget {
    let mut b = Budget {
        ticks: [0; stats::N_STAGES],
        hist: vec![[0; stats::STAGE_BUCKETS]; stats::N_STAGES],
        fast_sends: 0,
        handed_off: 0,
    };
    let zero = StatsSnapshot::zero();
    for (i, a) in after.iter().enumerate() {
        let z = before.get(i).unwrap_or(&zero);
        for s in 0..stats::N_STAGES {
            b.ticks[s] += a.stage_ticks[s].wrapping_sub(z.stage_ticks[s]);
            let h0 = z.stage_hist.get(s);
            for (k, v) in a.stage_hist[s].iter().enumerate() {
                b.hist[s][k] += v.wrapping_sub(h0.map_or(0, |h| h[k]));
            }
        }
        let counter = |c: stats::Counter| a.get(c).wrapping_sub(z.get(c));
        b.fast_sends += counter(stats::Counter::FastSends);
        b.handed_off += counter(stats::Counter::HandedOff);
    }
    b
}

impl Budget {
    /// Prints the table: median, p99 and mean time per stage, in path order.
    pub(crate) fn print(&self, tsc_hz: u64) {
        let ns = |ticks: f64| ticks * 1e9 / tsc_hz as f64;
        println!(
            "latency budget of the data plane (TSC per stage on the TX lcore; {} delegated \
             sends, {} relay requests handed to the control plane):",
            self.fast_sends, self.handed_off
        );
        println!(
            "  {:<18} {:>9} {:>9} {:>9} {:>9}  what",
            "stage", "p50 ns", "p99 ns", "mean ns", "timings"
        );
        let mut per_send = 0.0;
        for stage in stats::Stage::ALL {
            let hist = &self.hist[stage as usize];
            let (t, n) = (self.ticks[stage as usize], hist.iter().sum::<u64>());
            if n == 0 {
                continue;
            }
            let q = |q| stats::stage_quantile(hist, q).map_or(f64::NAN, |t| ns(t as f64));
            if stage != stats::Stage::Poll {
                per_send += q(0.5);
            }
            println!(
                "  {:<18} {:>9.0} {:>9.0} {:>9.0} {:>9}  {}",
                stage.name(),
                q(0.5),
                q(0.99),
                ns(t as f64 / n as f64),
                n,
                match stage {
                    stats::Stage::Poll | stats::Stage::CopyOut | stats::Stage::Validate =>
                        "per submission",
                    stats::Stage::Queue | stats::Stage::TxBurst => "per poll with fast sends",
                    _ => "per delegated send",
                }
            );
        }
        println!(
            "  sum of the medians after the ring poll: {:.2} us (the data plane's typical own \
             work for a single-lane send; the ring poll is how long a slot waited to be read; \
             quantiles are bucket low edges, about 19% wide; means include preemptions)",
            per_send / 1e3
        );
    }
}
