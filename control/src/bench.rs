//! `swqos bench`: benchmarks against a running dataplane, through the same client library a
//! trading app links. They print numbers; they are not tests (see docs/benchmarks.md).
//!
//! - `throughput` floods the ring with real signed transactions, each to the first N lanes,
//!   draining completions continuously, and reads the dataplane's per-lcore stats blocks before
//!   and after to report lane packets per second per TX lcore.
//! - `latency` submits one transaction at a time and busy-polls for its completions, recording
//!   `done_tsc - submit_tsc` (client `rdtsc` just before publishing the slot to the dataplane's
//!   `rdtsc` right after `tx_burst` accepted the frame).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Subcommand;
use swqos_shm::layout::Status;
use swqos_shm::stats::{self, role, Counter, StatsSnapshot};
use swqos_shm::{Client, Segment, SubmitError};
use swqos_wire::solana::Transaction;

/// The wire crate's sample transactions, embedded so the benchmark needs no input file.
const SAMPLES: &str = include_str!("../../wire/tests/data/solana-txs.jsonl");

/// How long to wait for a completion before deciding the dataplane is stuck.
const STALL: Duration = Duration::from_secs(2);

/// Which benchmark to run.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Flood the submit ring and report submissions/s and lane packets/s per TX lcore.
    Throughput {
        /// The dataplane's TOML configuration (for the shared-memory path).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Length of the measured window.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Send every transaction to the first N lanes (default: all).
        #[arg(long)]
        lanes: Option<u32>,
    },
    /// Submit one transaction at a time and report submit-to-tx_burst latency percentiles.
    Latency {
        /// The dataplane's TOML configuration (for the shared-memory path).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Measured submissions per lane count (after a warm-up of the same length / 4).
        #[arg(long, default_value_t = 20_000)]
        count: u32,
        /// Lane counts to measure: each submission goes to the first k lanes.
        #[arg(long, value_delimiter = ',', default_values_t = [1u32, 4, 8])]
        lanes: Vec<u32>,
    },
}

/// Runs one benchmark; exit status 2 for setup errors, 1 when the run failed midway.
pub(crate) fn run(cmd: BenchCommand) -> ExitCode {
    let (config, result) = match cmd {
        BenchCommand::Throughput {
            config,
            seconds,
            lanes,
        } => {
            let setup = setup(&config);
            (
                config,
                setup.and_then(|(c, txs)| {
                    throughput(c, &txs, Duration::from_secs_f64(seconds.max(0.1)), lanes)
                }),
            )
        }
        BenchCommand::Latency {
            config,
            count,
            lanes,
        } => {
            let setup = setup(&config);
            (
                config,
                setup.and_then(|(c, txs)| latency(c, &txs, count.max(1), &lanes)),
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(e)) => {
            eprintln!("error: {}: {e}", config.display());
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Bad configuration, no segment, bad arguments.
    Setup(String),
    /// The dataplane stopped or misbehaved during the run.
    Run(String),
}

fn setup(config: &Path) -> Result<(Client, Vec<Vec<u8>>), Failure> {
    let config = dpdk_config::Config::load(config).map_err(|e| Failure::Setup(e.to_string()))?;
    let client = Client::attach(&config.shm.path).map_err(|e| Failure::Setup(e.to_string()))?;
    let txs = samples().map_err(Failure::Setup)?;
    Ok((client, txs))
}

/// The valid sample transactions (entries without an `invalid` field), decoded and checked.
fn samples() -> Result<Vec<Vec<u8>>, String> {
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
fn first_lanes(client: &Client, n: u32) -> Result<u64, Failure> {
    let have = client.lane_names().len() as u32;
    if n == 0 || n > have {
        return Err(Failure::Setup(format!(
            "asked for {n} lane(s); the dataplane has {have}"
        )));
    }
    Ok(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
}

fn snapshot(seg: &Segment) -> Vec<StatsSnapshot> {
    (0..seg.layout().n_lcores as usize)
        .map(|i| stats::read(seg.stats(i)))
        .collect()
}

fn role_name(r: u32) -> &'static str {
    match r {
        role::TX => "tx",
        role::RX => "rx",
        _ => "unused",
    }
}

fn status_index(status: u8) -> usize {
    match Status::from_u8(status) {
        Some(Status::Sent) | Some(Status::Relayed) => 0,
        Some(Status::Rejected) => 1,
        Some(Status::UnknownLane) => 2,
        Some(Status::Dropped) | Some(Status::RelayError) => 3,
        None => 4,
    }
}

const STATUS_NAMES: [&str; 5] = ["sent", "rejected", "unknown-lane", "dropped", "other"];

fn submit_error(e: SubmitError) -> Failure {
    match e {
        SubmitError::NotRunning(_) => Failure::Run(e.to_string()),
        e => Failure::Setup(format!("submission refused: {e}")),
    }
}

/// Reads every completion available now, counting them by status; returns how many.
fn drain(client: &mut Client, by_status: &mut [u64; 5]) -> usize {
    let mut n = 0;
    while let Some(c) = client.poll() {
        by_status[status_index(c.status)] += 1;
        n += 1;
    }
    n
}

fn throughput(
    mut client: Client,
    txs: &[Vec<u8>],
    window: Duration,
    lanes: Option<u32>,
) -> Result<(), Failure> {
    let n_lanes = lanes.unwrap_or(client.lane_names().len() as u32);
    let mask = first_lanes(&client, n_lanes)?;
    let tsc_hz = client.tsc_hz();
    let avg_tx = txs.iter().map(Vec::len).sum::<usize>() as f64 / txs.len() as f64;
    println!(
        "throughput: {:.1} s window, {n_lanes} lane(s) per submission, {} sample transactions \
         (avg {avg_tx:.1} B), ring {}, tsc {:.3} GHz",
        window.as_secs_f64(),
        txs.len(),
        client.ring(),
        tsc_hz as f64 / 1e9
    );

    let mut by_status = [0u64; 5];
    let mut submitted = 0u64;
    let mut next = 0usize;
    let mut full_spins = 0u64;
    let before = snapshot(client.segment());
    let start = Instant::now();
    let mut iter = 0u64;
    let mut last_progress = Instant::now();
    // After `Full`, retry only once a completion has come back (the dataplane releases slots
    // before it publishes completions), so the client does not re-validate the same transaction
    // in a tight loop while the ring is full.
    let mut may_submit = true;
    loop {
        // Fill the ring until it (or the completion credit) is full, then read completions.
        while may_submit {
            match client.submit(&txs[next], mask, submitted) {
                Ok(()) => {
                    submitted += 1;
                    next += 1;
                    if next == txs.len() {
                        next = 0;
                    }
                }
                Err(SubmitError::Full) => {
                    full_spins += 1;
                    may_submit = false;
                }
                Err(e) => return Err(submit_error(e)),
            }
        }
        if drain(&mut client, &mut by_status) > 0 {
            last_progress = Instant::now();
            may_submit = true;
        }
        iter += 1;
        if iter % 64 == 0 {
            let now = Instant::now();
            if now.duration_since(start) >= window {
                break;
            }
            if now.duration_since(last_progress) > STALL {
                client
                    .segment()
                    .check_running()
                    .map_err(|e| Failure::Run(e.to_string()))?;
                return Err(Failure::Run(format!(
                    "no completion for {STALL:?} with {} outstanding",
                    client.outstanding()
                )));
            }
        }
    }
    let after = snapshot(client.segment());
    let secs = start.elapsed().as_secs_f64();
    let submitted_in_window = submitted;

    // Collect what is still owed so every submission is accounted for.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        drain(&mut client, &mut by_status);
    }

    println!(
        "client: {:.0} submissions/s ({submitted_in_window} in {secs:.3} s, ring full {full_spins} times), \
         {:.0} lane completions/s",
        submitted_in_window as f64 / secs,
        submitted_in_window as f64 * n_lanes as f64 / secs,
    );
    let statuses: Vec<String> = STATUS_NAMES
        .iter()
        .zip(by_status)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "completions: {}; still outstanding {}",
        statuses.join(", "),
        client.outstanding()
    );

    let mut total_pkts = 0u64;
    let mut total_bytes = 0u64;
    let mut total_drops = 0u64;
    for (b, a) in before.iter().zip(&after) {
        let d = |c: Counter| a.get(c).wrapping_sub(b.get(c));
        let polls = d(Counter::Polls);
        if a.role == role::TX {
            let pkts = d(Counter::TxPackets);
            let bytes = d(Counter::TxBytes);
            let drops = d(Counter::TxDropped);
            total_pkts += pkts;
            total_bytes += bytes;
            total_drops += drops;
            let hist: Vec<u64> = a
                .latency
                .iter()
                .zip(&b.latency)
                .map(|(x, y)| x.wrapping_sub(*y))
                .collect();
            let us = |q: f64| {
                stats::quantile(&hist, q)
                    .map(|t| format!("{:.1}", t as f64 * 1e6 / tsc_hz as f64))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "lcore {} (tx): {:.0} lane pkt/s, {:.2} Gbit/s, avg frame {:.1} B, \
                 {:.0} submissions/s, {polls} polls ({:.0}/s, {:.2} pkt/poll), dropped {drops}, \
                 tx_full {}, no_mbuf {}, completion_overflow {}, rejected {}, \
                 in-flight latency p50 {} us p99 {} us",
                a.lcore_id,
                pkts as f64 / secs,
                bytes as f64 * 8.0 / secs / 1e9,
                if pkts > 0 {
                    bytes as f64 / pkts as f64
                } else {
                    0.0
                },
                d(Counter::Submissions) as f64 / secs,
                polls as f64 / secs,
                if polls > 0 {
                    pkts as f64 / polls as f64
                } else {
                    0.0
                },
                d(Counter::TxFull),
                d(Counter::NoMbuf),
                d(Counter::CompletionOverflow),
                d(Counter::Rejected),
                us(0.5),
                us(0.99),
            );
        } else {
            println!(
                "lcore {} ({}): {polls} polls ({:.0}/s), rx {} pkts",
                a.lcore_id,
                role_name(a.role),
                polls as f64 / secs,
                d(Counter::RxPackets),
            );
        }
    }
    println!(
        "total: {:.0} lane pkt/s, {:.2} Gbit/s (Ethernet frames, no preamble/FCS), dropped {total_drops}",
        total_pkts as f64 / secs,
        total_bytes as f64 * 8.0 / secs / 1e9,
    );
    if by_status[0] == 0 {
        return Err(Failure::Run("no packet was sent".into()));
    }
    Ok(())
}

/// Busy-polls until `want` completions with `tag` have arrived, pushing their latencies.
fn wait_for(
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
                if Status::from_u8(c.status) != Some(Status::Sent) {
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
                if spins % 4096 == 0 {
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

/// Nearest-rank quantile of sorted samples.
fn pct(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latency(
    mut client: Client,
    txs: &[Vec<u8>],
    count: u32,
    lane_counts: &[u32],
) -> Result<(), Failure> {
    let tsc_hz = client.tsc_hz();
    let us = |t: u64| t as f64 * 1e6 / tsc_hz as f64;
    println!(
        "latency: submit-to-tx_burst (client rdtsc before publishing the slot -> dataplane rdtsc \
         after tx_burst accepted the frame), {count} submissions per lane count, one in flight, \
         tsc {:.3} GHz",
        tsc_hz as f64 / 1e9
    );
    // Start from an empty completion ring.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        client.poll();
    }
    let mut tag = 1u64 << 40;
    for &k in lane_counts {
        let mask = first_lanes(&client, k)?;
        let warmup = (count / 4).max(1000);
        let mut samples = Vec::with_capacity(count as usize * k as usize);
        for i in 0..warmup + count {
            tag += 1;
            let tx = &txs[i as usize % txs.len()];
            loop {
                match client.submit(tx, mask, tag) {
                    Ok(()) => break,
                    Err(SubmitError::Full) => {
                        client.poll();
                    }
                    Err(e) => return Err(submit_error(e)),
                }
            }
            let record = if i >= warmup {
                Some(&mut samples)
            } else {
                None
            };
            wait_for(&mut client, tag, k, record)?;
        }
        samples.sort_unstable();
        println!(
            "latency lanes={k}: {} completions, p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us, min {:.2} us",
            samples.len(),
            us(pct(&samples, 0.5)),
            us(pct(&samples, 0.99)),
            us(pct(&samples, 0.999)),
            us(samples[samples.len() - 1]),
            us(samples[0]),
        );
    }
    Ok(())
}
