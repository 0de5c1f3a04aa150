//! The benchmarks of `swqos-bench` (also run as `swqos bench ...`), against a running data plane,
//! through the same client library a trading app links. They print numbers; they are not tests
//! (see docs/benchmarks.md).
//!
//! - `throughput` floods the ring with real signed transactions, each to the first N lanes,
//!   draining completions continuously, and reads the dataplane's per-lcore stats blocks before
//!   and after to report lane packets per second per TX lcore.
//! - `tx-latency` submits one transaction at a time and busy-polls for its completions,
//!   recording `done_tsc - submit_tsc` (client `rdtsc` just before publishing the slot to the
//!   dataplane's `rdtsc` right after `tx_burst` accepted the frame): the data plane alone.
//! - `latency` (alias `e2e`) measures relay lanes end to end (one submission to 1, 4, 8...
//!   lanes at once) beside a reqwest client and a kernel-socket HTTP client sending the same
//!   requests to the same relays, alternating one submission at a time, and matches each
//!   request to the relay's log line (its `CLOCK_MONOTONIC` receipt time) to report
//!   submit-to-relay-receipt and round trip per path: a table, `latency.csv` and SVG plots
//!   (`latency.svg`, `latency-<N>lanes.svg`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Subcommand;
use swqos_shm::layout::{LaneKind, Status};
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
    /// Submit one transaction at a time and report submit-to-tx_burst latency percentiles (the
    /// data plane alone; `latency` is the end-to-end comparison).
    #[command(name = "tx-latency")]
    TxLatency {
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
    /// End to end through relay lanes: the data-plane path beside a reqwest client and a
    /// kernel-socket HTTP client to the same relays, one submission (to N lanes at once) in
    /// flight; prints a table and writes latency.csv and one SVG plot per lane count. Needs the
    /// relay's request log (the mock relay's `--log`) on this host.
    #[command(name = "latency", alias = "e2e")]
    Latency {
        /// The dataplane's TOML configuration (shared-memory path and the lanes' relays).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// A relay lane (`kind = "http"`) to measure (repeatable, in order); default: every
        /// relay lane of the config. Their providers must differ.
        #[arg(long)]
        lane: Vec<String>,
        /// Lane counts to measure: each submission goes to the first N of those lanes at once.
        #[arg(long, value_delimiter = ',', default_values_t = [1u32])]
        lanes: Vec<u32>,
        /// Measured submissions per path and lane count.
        #[arg(long, default_value_t = 500)]
        count: u32,
        /// Unrecorded submissions per path and lane count before the measured ones.
        #[arg(long, default_value_t = 20)]
        warmup: u32,
        /// The relay's JSON-lines request log (`mock_relay.py --log FILE`); its `t_ns` is
        /// `CLOCK_MONOTONIC`, comparable because the relay runs on this host.
        #[arg(long)]
        relay_log: PathBuf,
        /// Folder for latency.csv and latency.svg (created if missing).
        #[arg(long, default_value = "target/bench/e2e")]
        out: PathBuf,
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
        BenchCommand::TxLatency {
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
        BenchCommand::Latency {
            config,
            lane,
            lanes,
            count,
            warmup,
            relay_log,
            out,
        } => {
            let opts = E2eOptions {
                lanes: lane,
                lane_counts: lanes,
                count: count.max(1),
                warmup,
                relay_log,
                out,
            };
            let result = e2e(&config, &opts);
            (config, result)
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
        if iter.is_multiple_of(64) {
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
fn submit_waiting(client: &mut Client, tx: &[u8], mask: u64, tag: u64) -> Result<(), Failure> {
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
        let kinds: Vec<u8> = client.segment().lanes().iter().map(|l| l.kind).collect();
        let relay = (0..k as usize).filter(|&i| kinds.get(i) == Some(&(LaneKind::Http as u8)));
        match relay.count() {
            0 => {}
            n if n == k as usize => {
                relay_tx_latency(&mut client, txs, count, k, mask, &mut tag)?;
                continue;
            }
            _ => {
                return Err(Failure::Setup(
                    "the first lanes mix udp and http lanes; measure one kind at a time".into(),
                ))
            }
        }
        let warmup = (count / 4).max(1000);
        let mut samples = Vec::with_capacity(count as usize * k as usize);
        for i in 0..warmup + count {
            tag += 1;
            let tx = &txs[i as usize % txs.len()];
            submit_waiting(&mut client, tx, mask, tag)?;
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

/// `tx-latency` on relay lanes: the data plane's delegated sends (plain or TLS), submit to the
/// `tx_burst` that took a request's last segment, from the data plane's histogram (about 3%
/// resolution; samples count only requests that went the fast way, the rest fell back to the
/// control plane's socket). One submission in flight, each waited for until the relays answer.
fn relay_tx_latency(
    client: &mut Client,
    txs: &[Vec<u8>],
    count: u32,
    k: u32,
    mask: u64,
    tag: &mut u64,
) -> Result<(), Failure> {
    let fast_hist = |client: &Client| {
        stats::merge_histograms(snapshot(client.segment()).iter(), |s| &s.fast_latency)
    };
    let warmup = (count / 10).max(20);
    let mut before = fast_hist(client);
    for i in 0..warmup + count {
        if i == warmup {
            before = fast_hist(client);
        }
        *tag += 1;
        let tx = &txs[i as usize % txs.len()];
        submit_waiting(client, tx, mask, *tag)?;
        wait_for(client, *tag, k, None)?;
    }
    let after = fast_hist(client);
    let hist: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let fast: u64 = hist.iter().sum();
    let us = |q: f64| {
        stats::quantile(&hist, q)
            .map(|t| format!("{:.2} us", t as f64 * 1e6 / client.tsc_hz() as f64))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "latency lanes={k} (relay, delegated sends): {fast} of {} requests went the fast way, \
         p50 {}, p99 {}, p99.9 {}",
        u64::from(count) * u64::from(k),
        us(0.5),
        us(0.99),
        us(0.999),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `swqos bench latency` (alias `e2e`): the data-plane path beside a reqwest client and a kernel-socket client.

/// What the data-plane path is, printed with every report and drawn on the plot.
const E2E_NOTE: &str = "the data-plane path writes each relay request as TCP segments of an \
     idle kernel connection of swqos control (a delegated send) when one is armed, and hands \
     it to swqos control's socket otherwise (the fallback); the dataplane's report says which \
     ran: `lane X: ... (fast N, fallback M)`. reqwest and the kernel socket use their own \
     keep-alive connections to the same relay, across the same data-plane bridge";

/// How long one request may take on any path before the run fails.
const E2E_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the data-plane path sleeps between completion polls. On a 2-core host a polling
/// client takes the CPU the relay (and `swqos control`) need while the request is under way, so
/// it sleeps (with a 1 us timer slack); the round trip includes up to about this much, the
/// submit->receipt time nothing. Measured with TLS lanes behind nginx: polling every 10 us made
/// the relay side answer slower, and the data-plane path's median submit->receipt 658 us
/// instead of 407 us at 200 us; reqwest and the kernel socket block in the kernel instead.
const E2E_POLL_SLEEP: Duration = Duration::from_micros(200);

/// `swqos bench latency` arguments.
struct E2eOptions {
    /// Relay lanes to measure, in order (empty: every relay lane of the config).
    lanes: Vec<String>,
    /// Fan-out widths: each submission goes to the first N of `lanes`.
    lane_counts: Vec<u32>,
    count: u32,
    warmup: u32,
    relay_log: PathBuf,
    out: PathBuf,
}

/// The three paths measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `Client::submit` to the relay lanes: TX lcore, delegated send (or hand-off) on
    /// `swqos control`'s connections.
    Dataplane,
    /// reqwest (hyper), HTTP/1.1 keep-alive, `TCP_NODELAY`, on a tokio current-thread runtime.
    Reqwest,
    /// This process's own keep-alive `TcpStream`s to the relay, writing the template's bytes.
    Kernel,
}

impl Route {
    const ALL: [Route; 3] = [Route::Dataplane, Route::Reqwest, Route::Kernel];

    fn name(self) -> &'static str {
        match self {
            Route::Dataplane => "dataplane",
            Route::Reqwest => "reqwest",
            Route::Kernel => "kernel-socket",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Route::Dataplane => {
                "Client::submit (one submission, N lanes) -> TX lcore -> delegated send on swqos \
                 control's connections (fallback: hand-off to its socket)"
            }
            Route::Reqwest => {
                "reqwest 0.12 (hyper; rustls for https lanes), http1_only, tcp_nodelay, \
                 keep-alive pool, one client per lane, N requests joined on a tokio \
                 current-thread runtime"
            }
            Route::Kernel => {
                "own std::net::TcpStream per lane (keep-alive, TCP_NODELAY; rustls's \
                 StreamOwned for https lanes), RequestTemplate bytes, N writes back to back then \
                 N reads: a lower bound"
            }
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Route::Dataplane => "#d95f02",
            Route::Reqwest => "#33a02c",
            Route::Kernel => "#1f78b4",
        }
    }
}

/// The relay's log line a request was matched to.
#[derive(Debug, Clone, Copy)]
struct Receipt {
    /// `CLOCK_MONOTONIC` when the whole body was received.
    t_ns: u64,
    /// `CLOCK_MONOTONIC` when the request line was read.
    t_first_ns: u64,
    conn: u64,
    seq: u64,
}

/// One measured request (one lane of one submission).
struct Request {
    route: Route,
    /// Fan-out width of its submission.
    lanes: u32,
    /// Index of its submission in the measured run (all widths and paths).
    submission: u32,
    /// Index into the measured lanes.
    lane: usize,
    /// Order of the request in the measured run.
    index: u32,
    /// Index into the sample transactions.
    tx: usize,
    signature: String,
    /// `monotonic_ns()` just before the submission started (`Client::submit`, the first
    /// socket write, the reqwest futures being created): the same for all its lanes.
    send_ns: u64,
    /// `monotonic_ns()` when this lane's completion / whole response was seen.
    done_ns: u64,
    receipt: Option<Receipt>,
}

impl Request {
    fn to_receipt(&self) -> u64 {
        self.receipt
            .map(|r| r.t_ns.saturating_sub(self.send_ns))
            .unwrap_or(0)
    }

    fn round_trip(&self) -> u64 {
        self.done_ns - self.send_ns
    }
}

/// A measured relay lane: its dataplane id, relay address and request template.
struct RelayLane {
    name: String,
    id: u8,
    addr: std::net::SocketAddrV4,
    template: swqos_wire::relay::RequestTemplate,
    /// HTTPS: the lane's TLS settings, which the reqwest and kernel-socket clients use too.
    tls: Option<crate::tls_config::TlsSettings>,
}

/// A minimal HTTP/1.1 client on one kernel TCP connection (HTTP/1.1, keep-alive,
/// `TCP_NODELAY`), writing exactly the bytes the lane's [`RequestTemplate`] produces. It has
/// none of reqwest's/hyper's own user-space work (headers, futures, a connection task), so it
/// is a lower bound for such a client.
struct KernelClient {
    addr: std::net::SocketAddrV4,
    template: swqos_wire::relay::RequestTemplate,
    /// HTTPS: rustls (the same roots and suites as the lane) over the socket.
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
    stream: Option<KernelStream>,
    request: Vec<u8>,
    response: Vec<u8>,
    reconnects: u32,
}

/// The kernel-socket client's connection: plain, or rustls's blocking stream over it.
enum KernelStream {
    Plain(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl std::io::Read for KernelStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            KernelStream::Plain(s) => s.read(buf),
            KernelStream::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for KernelStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            KernelStream::Plain(s) => s.write(buf),
            KernelStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            KernelStream::Plain(s) => s.flush(),
            KernelStream::Tls(s) => s.flush(),
        }
    }
}

impl KernelClient {
    fn new(lane: &RelayLane) -> Result<Self, String> {
        let tls = match &lane.tls {
            Some(t) => Some((
                crate::tls_config::client_config(&lane.name, t)?,
                t.server_name.clone(),
            )),
            None => None,
        };
        Ok(KernelClient {
            addr: lane.addr,
            template: lane.template.clone(),
            tls,
            stream: None,
            request: Vec::with_capacity(4096),
            response: Vec::with_capacity(4096),
            reconnects: 0,
        })
    }

    fn connect(&mut self) -> Result<(), String> {
        let s = std::net::TcpStream::connect_timeout(&self.addr.into(), Duration::from_secs(2))
            .map_err(|e| format!("kernel client: connect {}: {e}", self.addr))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(E2E_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(E2E_TIMEOUT))
            .map_err(|e| e.to_string())?;
        if self.stream.is_some() {
            self.reconnects += 1;
        }
        self.stream = Some(match &self.tls {
            None => KernelStream::Plain(s),
            Some((config, name)) => {
                let server = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("kernel client: server name {name:?}: {e}"))?;
                let conn = rustls::ClientConnection::new(config.clone(), server)
                    .map_err(|e| format!("kernel client: TLS: {e}"))?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                // The handshake now, not inside the first timed request.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| format!("kernel client: TLS handshake with {name}: {e}"))?;
                }
                KernelStream::Tls(Box::new(tls))
            }
        });
        Ok(())
    }

    /// Builds the request for `tx` (before the clock starts) and connects if needed.
    fn prepare(&mut self, tx: &[u8]) -> Result<(), String> {
        self.request.resize(self.template.len(tx.len()), 0);
        let n = self.template.write(tx, &mut [&mut self.request[..]]);
        debug_assert_eq!(n, Some(self.request.len()));
        if self.stream.is_none() {
            self.connect()?;
        }
        Ok(())
    }

    /// Writes the prepared request.
    fn send(&mut self) -> Result<(), String> {
        use std::io::Write;
        let stream = self.stream.as_mut().ok_or("kernel client: not connected")?;
        stream
            .write_all(&self.request)
            .map_err(|e| format!("kernel client: write: {e}"))
    }

    /// Reads the whole response (by `Content-Length`); returns its status.
    fn receive(&mut self) -> Result<u16, String> {
        use std::io::Read;
        let stream = self.stream.as_mut().ok_or("kernel client: not connected")?;
        self.response.clear();
        let mut buf = [0u8; 4096];
        let mut head_end = None;
        let mut want = usize::MAX;
        let mut status = 0u16;
        let mut close = false;
        while self.response.len() < want {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("kernel client: read: {e}"))?;
            if n == 0 {
                return Err("kernel client: the relay closed the connection mid-response".into());
            }
            self.response.extend_from_slice(&buf[..n]);
            if head_end.is_none() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut headers);
                let end = match resp.parse(&self.response) {
                    Ok(httparse::Status::Complete(end)) => end,
                    Ok(httparse::Status::Partial) => continue,
                    Err(e) => return Err(format!("kernel client: bad response head: {e}")),
                };
                head_end = Some(end);
                status = resp.code.unwrap_or(0);
                let mut length = None;
                for h in resp.headers.iter() {
                    let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = v.parse::<usize>().ok();
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = v.eq_ignore_ascii_case("close");
                    }
                }
                let length = length.ok_or("kernel client: response without Content-Length")?;
                want = end + length;
            }
        }
        if close {
            self.stream = None; // the next request reconnects
        }
        Ok(status)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A reqwest client for one relay lane, configured as sol-trade-sdk configures its SWQOS
/// clients (HTTP/1.1 only, `TCP_NODELAY`, keep-alive connection pool), with the request target
/// and headers the lane's [`RequestTemplate`] produces (Host, Content-Type, the auth header).
struct ReqwestLane {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    template: swqos_wire::relay::RequestTemplate,
    /// The prepared body (the template's body bytes for the transaction).
    body: Vec<u8>,
    scratch: Vec<u8>,
}

impl ReqwestLane {
    fn new(lane: &RelayLane, tx: &[u8]) -> Result<ReqwestLane, String> {
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(2))
            .timeout(E2E_TIMEOUT);
        // HTTPS: rustls (ring) with its bundled roots plus the lane's CA files, the relay's
        // name resolved to the lane's address (as DNS would).
        let origin = match &lane.tls {
            None => format!("http://{}", lane.addr),
            Some(t) => {
                builder = builder
                    .use_rustls_tls()
                    .resolve(&t.server_name, lane.addr.into());
                for f in &t.ca_files {
                    let pem = std::fs::read(f)
                        .map_err(|e| format!("lane {}: {}: {e}", lane.name, f.display()))?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| format!("lane {}: {}: {e}", lane.name, f.display()))?;
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                if t.insecure_skip_verify {
                    builder = builder.danger_accept_invalid_certs(true);
                }
                format!("https://{}:{}", t.server_name, lane.addr.port())
            }
        };
        let client = builder
            .build()
            .map_err(|e| format!("reqwest client: {e}"))?;
        // The request line and headers of the template, from one request written by it.
        let mut raw = vec![0u8; lane.template.len(tx.len())];
        lane.template.write(tx, &mut [&mut raw[..]]);
        let mut parsed = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut parsed);
        match req.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err("template: not a complete HTTP/1.1 request head".to_string()),
        }
        let target = match (req.method, req.path, req.version) {
            (Some("POST"), Some(path), Some(1)) => path,
            _ => return Err("template: not a POST HTTP/1.1 request line".to_string()),
        };
        let url = reqwest::Url::parse(&format!("{origin}{target}"))
            .map_err(|e| format!("lane {}: url: {e}", lane.name))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for h in req.headers.iter() {
            let k = h.name;
            // Content-Length comes from the body; the connection is hyper's to manage.
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("template header {k:?}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_bytes(h.value)
                .map_err(|e| format!("template header {k:?}: {e}"))?;
            headers.append(name, value);
        }
        Ok(ReqwestLane {
            client,
            url,
            headers,
            template: lane.template.clone(),
            body: Vec::new(),
            scratch: Vec::with_capacity(4096),
        })
    }

    /// Builds the body for `tx` (before the clock starts).
    fn prepare(&mut self, tx: &[u8]) {
        self.scratch.resize(self.template.len(tx.len()), 0);
        self.template.write(tx, &mut [&mut self.scratch[..]]);
        let start = find(&self.scratch, b"\r\n\r\n").map_or(0, |e| e + 4);
        self.body.clear();
        self.body.extend_from_slice(&self.scratch[start..]);
    }

    /// Sends the prepared body and reads the whole response; returns its status and
    /// `monotonic_ns()` when the response body was complete.
    async fn exchange(&self, body: Vec<u8>) -> Result<(u16, u64), String> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("reqwest: {e}"))?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map_err(|e| format!("reqwest: body: {e}"))?;
        Ok((status, swqos_shm::time::monotonic_ns()))
    }
}

/// Polls every future to completion (as `futures::future::join_all`, for a handful of them);
/// outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// The relay lanes to measure: the named ones, or every `kind = "http"` lane of the config.
fn relay_lanes(
    config: &dpdk_config::Config,
    client: &Client,
    names: &[String],
) -> Result<Vec<RelayLane>, Failure> {
    let wanted: Vec<&dpdk_config::LaneConfig> = if names.is_empty() {
        config
            .lanes
            .iter()
            .filter(|l| matches!(l.kind, dpdk_config::LaneKind::Http(_)))
            .collect()
    } else {
        names
            .iter()
            .map(|name| {
                config
                    .lanes
                    .iter()
                    .find(|l| &l.name == name)
                    .ok_or_else(|| {
                        let have: Vec<&str> =
                            config.lanes.iter().map(|l| l.name.as_str()).collect();
                        Failure::Setup(format!(
                            "no lane `{name}`; the config has: {}",
                            have.join(", ")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut lanes: Vec<RelayLane> = Vec::new();
    for lane in wanted {
        let name = &lane.name;
        let dpdk_config::LaneKind::Http(h) = &lane.kind else {
            return Err(Failure::Setup(format!(
                "lane `{name}` is not a relay lane (kind = \"http\")"
            )));
        };
        let template = swqos_wire::relay::RequestTemplate::new(
            h.provider,
            swqos_wire::relay::Endpoint {
                host: &h.host,
                path: h.path.as_deref(),
                token: h.token.as_ref().map(|t| t.expose()),
            },
        )
        .map_err(|e| Failure::Setup(format!("lane `{name}`: {e}")))?;
        if let Some(other) = lanes
            .iter()
            .find(|l| l.template.provider() == template.provider())
        {
            return Err(Failure::Setup(format!(
                "lanes `{}` and `{name}` are both {}: the relay's log could not tell their \
                 requests apart (measure lanes of distinct providers)",
                other.name,
                template.provider().name()
            )));
        }
        let id = client.lane_id(name).ok_or_else(|| {
            Failure::Setup(format!(
                "the running dataplane has no lane `{name}` (it has: {})",
                client.lane_names().join(", ")
            ))
        })?;
        lanes.push(RelayLane {
            name: name.clone(),
            id,
            addr: std::net::SocketAddrV4::new(h.dst_ip, h.dst_port),
            template,
            tls: h.tls.as_ref().map(|t| crate::tls_config::TlsSettings {
                server_name: t.server_name.clone(),
                ca_files: t.ca_files.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            }),
        });
    }
    if lanes.is_empty() {
        return Err(Failure::Setup("the config has no relay lane".into()));
    }
    Ok(lanes)
}

/// One submission on the data-plane path to the lanes of `mask` (`ids[k]` is lane k's id);
/// returns send_ns and each lane's done_ns.
fn dataplane_request(
    client: &mut Client,
    tx: &[u8],
    ids: &[u8],
    tag: u64,
) -> Result<(u64, Vec<u64>), Failure> {
    let mask = ids.iter().fold(0u64, |m, &id| m | 1u64 << id);
    let deadline = Instant::now() + E2E_TIMEOUT;
    let send_ns = loop {
        let t = swqos_shm::time::monotonic_ns();
        match client.submit(tx, mask, tag) {
            Ok(()) => break t,
            Err(SubmitError::Full) => {
                client.poll();
                if Instant::now() > deadline {
                    return Err(Failure::Run("submit ring stayed full".into()));
                }
            }
            Err(e) => return Err(submit_error(e)),
        }
    };
    let mut done = vec![0u64; ids.len()];
    let mut got = 0;
    while got < ids.len() {
        match client.poll() {
            Some(c) if c.tag == tag => {
                let done_ns = swqos_shm::time::monotonic_ns();
                c.outcome()
                    .map_err(|e| Failure::Run(format!("data-plane path, lane {}: {e}", c.lane)))?;
                let k = ids.iter().position(|&id| id == c.lane).ok_or_else(|| {
                    Failure::Run(format!("a completion for lane {} not submitted to", c.lane))
                })?;
                if done[k] != 0 {
                    return Err(Failure::Run(format!("two completions for lane {}", c.lane)));
                }
                done[k] = done_ns;
                got += 1;
            }
            Some(_) => {} // a late completion of an earlier submission
            None => {
                if Instant::now() > deadline {
                    client
                        .segment()
                        .check_running()
                        .map_err(|e| Failure::Run(e.to_string()))?;
                    return Err(Failure::Run(format!(
                        "data-plane path: {got} of {} completions within {E2E_TIMEOUT:?} (is \
                         swqos control running?)",
                        ids.len()
                    )));
                }
                std::thread::sleep(E2E_POLL_SLEEP);
            }
        }
    }
    Ok((send_ns, done))
}

/// One submission on the kernel-socket path: the N writes back to back, then the N responses
/// in lane order; returns send_ns and each lane's done_ns.
fn kernel_request(clients: &mut [KernelClient], tx: &[u8]) -> Result<(u64, Vec<u64>), Failure> {
    for c in clients.iter_mut() {
        c.prepare(tx).map_err(Failure::Run)?;
    }
    let send_ns = swqos_shm::time::monotonic_ns();
    for c in clients.iter_mut() {
        c.send().map_err(Failure::Run)?;
    }
    let mut done = Vec::with_capacity(clients.len());
    for c in clients.iter_mut() {
        let status = c.receive().map_err(Failure::Run)?;
        done.push(swqos_shm::time::monotonic_ns());
        if !(200..300).contains(&status) {
            return Err(Failure::Run(format!(
                "kernel-socket path: the relay answered {status}"
            )));
        }
    }
    Ok((send_ns, done))
}

/// One submission on the reqwest path: N futures joined on the runtime; returns send_ns and
/// each lane's done_ns.
fn reqwest_request(
    rt: &tokio::runtime::Runtime,
    lanes: &mut [ReqwestLane],
    tx: &[u8],
) -> Result<(u64, Vec<u64>), Failure> {
    let mut bodies = Vec::with_capacity(lanes.len());
    for l in lanes.iter_mut() {
        l.prepare(tx);
        bodies.push(l.body.clone());
    }
    let lanes = &*lanes;
    let send_ns = swqos_shm::time::monotonic_ns();
    let results = rt.block_on(join_all(
        lanes
            .iter()
            .zip(bodies)
            .map(|(l, body)| l.exchange(body))
            .collect(),
    ));
    let mut done = Vec::with_capacity(lanes.len());
    for r in results {
        let (status, done_ns) = r.map_err(|e| Failure::Run(format!("reqwest path: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(Failure::Run(format!(
                "reqwest path: the relay answered {status}"
            )));
        }
        done.push(done_ns);
    }
    Ok((send_ns, done))
}

/// base58 of the transaction's first signature (what the relay logs).
fn signature_of(tx: &[u8]) -> String {
    // Valid samples only: a short-vec count >= 1 (one byte below 128 here) then 64-byte
    // signatures.
    bs58::encode(&tx[1..65]).into_string()
}

/// One `ok` line of the relay's log.
struct LogLine {
    t_ns: u64,
    t_first_ns: u64,
    conn: u64,
    seq: u64,
    provider: String,
    signature: String,
}

fn read_relay_log(path: &Path) -> Result<Vec<LogLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for line in text.lines() {
        // A line being written right now may be incomplete: skip what does not parse.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["ok"] != true {
            continue;
        }
        let num = |k: &str| v[k].as_u64().unwrap_or(0);
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        lines.push(LogLine {
            t_ns: num("t_ns"),
            t_first_ns: num("t_first_ns"),
            conn: num("conn"),
            seq: num("seq"),
            provider: text("provider"),
            signature: text("signature"),
        });
    }
    Ok(lines)
}

/// Matches every request to the relay log line of its lane's provider with its signature
/// received inside its window (`send_ns ..= done_ns`; one submission in flight and distinct
/// providers per submission, so windows of the same (provider, signature) do not overlap).
/// Returns how many accepted requests of these providers the log has inside the run but
/// matched to no request.
fn match_receipts(
    requests: &mut [Request],
    log: &[LogLine],
    providers: &[&str],
) -> Result<usize, String> {
    let mut by_key: std::collections::HashMap<(&str, &str), Vec<&LogLine>> = Default::default();
    for l in log {
        by_key
            .entry((&l.provider, &l.signature))
            .or_default()
            .push(l);
    }
    let mut matched = 0;
    for r in requests.iter_mut() {
        let provider = providers[r.lane];
        let hits: Vec<&&LogLine> = by_key
            .get(&(provider, r.signature.as_str()))
            .map(|v| {
                v.iter()
                    .filter(|l| l.t_ns >= r.send_ns && l.t_ns <= r.done_ns)
                    .collect()
            })
            .unwrap_or_default();
        match hits.as_slice() {
            [] => r.receipt = None,
            [l] => {
                r.receipt = Some(Receipt {
                    t_ns: l.t_ns,
                    t_first_ns: l.t_first_ns,
                    conn: l.conn,
                    seq: l.seq,
                });
                matched += 1;
            }
            more => {
                return Err(format!(
                    "request {} ({}, {provider}, {}) was received {} times by the relay",
                    r.index,
                    r.route.name(),
                    r.signature,
                    more.len()
                ))
            }
        }
    }
    let (first, last) = (
        requests.iter().map(|r| r.send_ns).min().unwrap_or(0),
        requests.iter().map(|r| r.done_ns).max().unwrap_or(0),
    );
    let in_run = log
        .iter()
        .filter(|l| providers.contains(&l.provider.as_str()) && l.t_ns >= first && l.t_ns <= last)
        .count();
    Ok(in_run.saturating_sub(matched))
}

/// p50, p90, p99 and max of unsorted nanosecond samples, in microseconds.
fn summary(samples: &[u64]) -> [f64; 4] {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let us = |ns: u64| ns as f64 / 1e3;
    [
        us(pct(&s, 0.5)),
        us(pct(&s, 0.9)),
        us(pct(&s, 0.99)),
        us(s[s.len() - 1]),
    ]
}

/// The metrics of the table, per (lane count, path).
const METRICS: [&str; 3] = ["submit->receipt", "last-receipt", "round-trip"];

/// A metric's samples (ns) for one lane count and path: per request, or per submission (the
/// last of its lanes to reach the relay).
fn metric_samples(requests: &[Request], lanes: u32, route: Route, metric: &str) -> Vec<u64> {
    let rows = requests
        .iter()
        .filter(move |r| r.lanes == lanes && r.route == route);
    match metric {
        "submit->receipt" => rows.map(Request::to_receipt).collect(),
        "round-trip" => rows.map(Request::round_trip).collect(),
        _ => {
            let mut last: std::collections::BTreeMap<u32, u64> = Default::default();
            for r in rows {
                let e = last.entry(r.submission).or_default();
                *e = (*e).max(r.to_receipt());
            }
            last.into_values().collect()
        }
    }
}

fn e2e(config_path: &Path, opts: &E2eOptions) -> Result<(), Failure> {
    let config =
        dpdk_config::Config::load(config_path).map_err(|e| Failure::Setup(e.to_string()))?;
    let mut client = Client::attach(&config.shm.path).map_err(|e| Failure::Setup(e.to_string()))?;
    let lanes = relay_lanes(&config, &client, &opts.lanes)?;
    let mut lane_counts = opts.lane_counts.clone();
    lane_counts.dedup();
    if let Some(&n) = lane_counts
        .iter()
        .find(|&&n| n == 0 || n as usize > lanes.len())
    {
        return Err(Failure::Setup(format!(
            "--lanes {n}: {} relay lane(s) to measure ({})",
            lanes.len(),
            lanes
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let max_lanes = *lane_counts.iter().max().unwrap_or(&1) as usize;
    let lanes = &lanes[..max_lanes];
    let providers: Vec<&str> = lanes.iter().map(|l| l.template.provider().name()).collect();
    let txs = samples().map_err(Failure::Setup)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Failure::Setup(format!("{}: {e}", opts.out.display())))?;
    if !opts.relay_log.exists() {
        return Err(Failure::Setup(format!(
            "relay log {} does not exist (start mock_relay.py with --log)",
            opts.relay_log.display()
        )));
    }
    // Sleeps in the data-plane path's poll loop should be as short as asked.
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Setup(format!("tokio runtime: {e}")))?;

    let counts_text: Vec<String> = lane_counts.iter().map(u32::to_string).collect();
    println!(
        "e2e: lane counts {}, {} measured submissions per path and lane count after {} warm-up \
         each, alternating data plane / reqwest / kernel socket, one submission in flight, {} \
         sample transactions cycled",
        counts_text.join(","),
        opts.count,
        opts.warmup,
        txs.len()
    );
    for (k, l) in lanes.iter().enumerate() {
        println!(
            "  lane {:<2} {:<14} {} at {}",
            k + 1,
            l.name,
            providers[k],
            l.addr
        );
    }
    for r in Route::ALL {
        println!("  {:<14} {}", r.name(), r.describe());
    }

    // Start from an empty completion ring.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        client.poll();
    }
    let mut kernel: Vec<KernelClient> = lanes
        .iter()
        .map(KernelClient::new)
        .collect::<Result<_, _>>()
        .map_err(Failure::Setup)?;
    let mut reqwest_lanes: Vec<ReqwestLane> = lanes
        .iter()
        .map(|l| ReqwestLane::new(l, &txs[0]))
        .collect::<Result<_, _>>()
        .map_err(Failure::Setup)?;

    let per_n: usize = lane_counts.iter().map(|&n| n as usize).sum();
    let mut requests = Vec::with_capacity(opts.count as usize * 3 * per_n);
    let mut tag = 1u64 << 41;
    let mut next_tx = 0usize;
    let mut submission = 0u32;
    for &n in &lane_counts {
        let n_us = n as usize;
        let ids: Vec<u8> = lanes[..n_us].iter().map(|l| l.id).collect();
        for i in 0..opts.warmup + opts.count {
            for route in Route::ALL {
                let t = next_tx % txs.len();
                next_tx += 1;
                let tx = &txs[t];
                let (send_ns, done) = match route {
                    Route::Dataplane => {
                        tag += 1;
                        dataplane_request(&mut client, tx, &ids, tag)?
                    }
                    Route::Reqwest => reqwest_request(&rt, &mut reqwest_lanes[..n_us], tx)?,
                    Route::Kernel => kernel_request(&mut kernel[..n_us], tx)?,
                };
                if i < opts.warmup {
                    continue;
                }
                for (lane, done_ns) in done.into_iter().enumerate() {
                    requests.push(Request {
                        route,
                        lanes: n,
                        submission,
                        lane,
                        index: requests.len() as u32,
                        tx: t,
                        signature: signature_of(tx),
                        send_ns,
                        done_ns,
                        receipt: None,
                    });
                }
                submission += 1;
            }
        }
    }

    // The relay writes its log line around its answer: give the last ones a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let others = loop {
        let log = read_relay_log(&opts.relay_log).map_err(Failure::Run)?;
        let others = match_receipts(&mut requests, &log, &providers).map_err(Failure::Run)?;
        if requests.iter().all(|r| r.receipt.is_some()) || Instant::now() > deadline {
            break others;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let missing: Vec<&Request> = requests.iter().filter(|r| r.receipt.is_none()).collect();
    if let Some(r) = missing.first() {
        return Err(Failure::Run(format!(
            "{} of {} requests are not in the relay log {} (first: request {}, {}, lane {}, {})",
            missing.len(),
            requests.len(),
            opts.relay_log.display(),
            r.index,
            r.route.name(),
            lanes[r.lane].name,
            r.signature
        )));
    }
    println!(
        "relay log: all {} requests received exactly once (matched by provider and signature \
         inside each request's send..done window); {others} other accepted request(s) of these \
         providers during the run (warm-ups of the later lane counts); kernel socket: {} \
         reconnect(s)",
        requests.len(),
        kernel.iter().map(|k| k.reconnects).sum::<u32>()
    );

    // The detailed table.
    println!();
    println!(
        "{:>5} {:<14} {:<16} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "lanes", "path", "metric (us)", "n", "p50", "p90", "p99", "max"
    );
    // (p50, p99) per lane count, metric and path, for the summary.
    let mut quant = vec![[[[0f64; 2]; 3]; 3]; lane_counts.len()];
    for (c, &n) in lane_counts.iter().enumerate() {
        for (m, metric) in METRICS.into_iter().enumerate() {
            for (p, route) in Route::ALL.into_iter().enumerate() {
                let s = metric_samples(&requests, n, route, metric);
                let q = summary(&s);
                quant[c][m][p] = [q[0], q[2]];
                println!(
                    "{:>5} {:<14} {:<16} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                    n,
                    route.name(),
                    metric,
                    s.len(),
                    q[0],
                    q[1],
                    q[2],
                    q[3]
                );
            }
        }
    }

    // The summary: p50/p99 of submit->receipt per request and per submission (last lane).
    println!();
    println!("summary, submit->receipt (us): per request, and per submission (last lane received)");
    println!(
        "{:>5} {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "", "", "dataplane", "", "reqwest", "", "kernel", "", "ratio", "ratio"
    );
    println!(
        "{:>5} {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "lanes", "per", "p50", "p99", "p50", "p99", "p50", "p99", "dp/rq", "dp/ks"
    );
    for (c, &n) in lane_counts.iter().enumerate() {
        for (m, per) in [(0, "request"), (1, "submission")] {
            let q = &quant[c][m];
            println!(
                "{:>5} {:<12} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2}x {:>7.2}x",
                n,
                per,
                q[0][0],
                q[0][1],
                q[1][0],
                q[1][1],
                q[2][0],
                q[2][1],
                q[0][0] / q[1][0],
                q[0][0] / q[2][0]
            );
        }
    }
    println!("(ratio: of medians, dataplane / reqwest and dataplane / kernel socket)");
    println!("(submit->receipt: monotonic_ns() just before the submission (Client::submit, the");
    println!(" reqwest futures, the first socket write) to the relay's CLOCK_MONOTONIC when that");
    println!(" lane's request body was fully received; last-receipt: the last lane of each");
    println!(" submission; round-trip: to that lane's completion / the end of its response. The");
    println!(
        " data-plane client polls for completions every ~{} us so it leaves the CPU to swqos",
        E2E_POLL_SLEEP.as_micros()
    );
    println!(" control; the kernel socket reads its N responses in lane order)");
    println!("note: {E2E_NOTE}");

    // Raw samples and the plots.
    let csv = opts.out.join("latency.csv");
    let mut text = String::from(
        "path,lanes,submission,lane,provider,index,signature,tx_sample,send_ns,relay_first_ns,\
         relay_ns,done_ns,submit_to_receipt_us,round_trip_us,relay_conn,relay_seq\n",
    );
    for r in &requests {
        let rc = r.receipt.expect("matched");
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{},{}\n",
            r.route.name(),
            r.lanes,
            r.submission,
            lanes[r.lane].name,
            providers[r.lane],
            r.index,
            r.signature,
            r.tx,
            r.send_ns,
            rc.t_first_ns,
            rc.t_ns,
            r.done_ns,
            r.to_receipt() as f64 / 1e3,
            r.round_trip() as f64 / 1e3,
            rc.conn,
            rc.seq
        ));
    }
    std::fs::write(&csv, text).map_err(|e| Failure::Run(format!("{}: {e}", csv.display())))?;
    let mut written = vec![csv.display().to_string()];
    for (c, &n) in lane_counts.iter().enumerate() {
        let data: Vec<(Route, Vec<f64>)> = Route::ALL
            .into_iter()
            .map(|route| {
                let v = metric_samples(&requests, n, route, METRICS[0])
                    .into_iter()
                    .map(|ns| ns as f64 / 1e3)
                    .collect();
                (route, v)
            })
            .collect();
        let names: Vec<&str> = providers[..n as usize].to_vec();
        let title = format!(
            "swqos end to end: submit \u{2192} relay receipt, {n} lane(s) ({}), {} submissions per path",
            names.join(", "),
            opts.count
        );
        let svg_text = svg(&title, &data);
        let path = opts.out.join(format!("latency-{n}lanes.svg"));
        std::fs::write(&path, &svg_text)
            .map_err(|e| Failure::Run(format!("{}: {e}", path.display())))?;
        written.push(path.display().to_string());
        if c == 0 {
            let path = opts.out.join("latency.svg");
            std::fs::write(&path, &svg_text)
                .map_err(|e| Failure::Run(format!("{}: {e}", path.display())))?;
            written.push(path.display().to_string());
        }
    }
    println!("wrote {}", written.join(", "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The plot: plain SVG text, two panels sharing a log-scale x axis in microseconds.

/// Escapes text for SVG.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Ticks of a log axis from `lo` to `hi`: (value, labelled). Every 1..9 x 10^k is a grid line;
/// 1, 2 and 5 are labelled (only 1 beyond three decades).
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, bool)> {
    let labelled: &[u32] = if (hi / lo).log10() <= 3.0 {
        &[1, 2, 5]
    } else {
        &[1]
    };
    let mut ticks = Vec::new();
    let mut e = lo.log10().floor() as i32;
    while 10f64.powi(e) <= hi * 1.0001 {
        for m in 1..10u32 {
            let v = m as f64 * 10f64.powi(e);
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                ticks.push((v, labelled.contains(&m)));
            }
        }
        e += 1;
    }
    ticks
}

/// A tick label for a microsecond value on the log axis (1-2-5 values).
fn tick_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A measured value in microseconds, for labels.
fn us_text(v: f64) -> String {
    format!("{v:.1} &#181;s")
}

/// Nearest-rank median of samples (any order); 0 when empty.
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len().div_ceil(2)).max(1) - 1]
}

/// A "nice" step for a linear axis up to `max` with about `n` ticks.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The report's SVG: a CDF panel (one polyline per path) over a histogram panel, both with the
/// same log x axis in microseconds, medians marked, a legend and a note on the paths.
fn svg(title: &str, data: &[(Route, Vec<f64>)]) -> String {
    use std::fmt::Write;
    const W: f64 = 960.0;
    const H: f64 = 760.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 30.0;
    let (cdf_top, cdf_h) = (110.0, 300.0);
    let (hist_top, hist_h) = (480.0, 200.0);
    let plot_w = W - LEFT - RIGHT;

    let all = data.iter().flat_map(|(_, v)| v.iter().copied());
    let (min, max) = all.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min = min.max(0.1);
    let max = max.max(min * 1.5);
    // Axis range: a little room each side, snapped to 1-2-5 values.
    let snap_down = |v: f64| {
        let e = 10f64.powf(v.log10().floor());
        [5.0, 2.0, 1.0]
            .into_iter()
            .map(|m| m * e)
            .find(|&t| t <= v)
            .unwrap_or(e)
    };
    let snap_up = |v: f64| {
        let e = 10f64.powf(v.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * e)
            .find(|&t| t >= v)
            .unwrap_or(10.0 * e)
    };
    let lo = snap_down(min / 1.1);
    let hi = snap_up(max * 1.1);
    let x = |v: f64| LEFT + (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * plot_w;

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="13">
<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>
<text x="{cx}" y="30" text-anchor="middle" font-size="18" font-weight="bold">{t}</text>
<text x="{cx}" y="52" text-anchor="middle" font-size="12" fill="#444">submit/send (client CLOCK_MONOTONIC) to the relay having received the whole request (relay CLOCK_MONOTONIC, same host)</text>
<text x="{cx}" y="70" text-anchor="middle" font-size="12" fill="#444">data plane: delegated sends on swqos control's idle kernel connections; reqwest and the kernel socket: their own keep-alive connections</text>
"##,
        cx = W / 2.0,
        t = xml(title)
    );

    // Shared x grid and labels for both panels.
    let ticks = log_ticks(lo, hi);
    for (top, h) in [(cdf_top, cdf_h), (hist_top, hist_h)] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{h}" fill="#fafafa" stroke="#999"/>"##
        );
        for &(v, labelled) in &ticks {
            let px = x(v);
            let (colour, width) = if labelled {
                ("#cfcfcf", 1.0)
            } else {
                ("#ececec", 0.7)
            };
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{y2}" stroke="{colour}" stroke-width="{width}"/>"##,
                y2 = top + h
            );
            if labelled {
                let _ = writeln!(
                    s,
                    r##"<text x="{px:.1}" y="{ty}" text-anchor="middle" font-size="12">{}</text>"##,
                    tick_label(v),
                    ty = top + h + 17.0
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{cx}" y="{ty}" text-anchor="middle" font-size="13">latency, submit/send &#8594; relay receipt (&#181;s, log scale)</text>"##,
            cx = LEFT + plot_w / 2.0,
            ty = top + h + 36.0
        );
    }

    // CDF panel.
    let cy = |f: f64| cdf_top + cdf_h - f * cdf_h;
    for p in (0..=10).map(|i| i as f64 / 10.0) {
        let py = cy(p);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{pc:.0}%</text>"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            pc = p * 100.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">cumulative fraction of requests</text>"##,
        ty = cdf_top + cdf_h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">CDF</text>"##,
        ty = cdf_top - 8.0
    );
    for (route, v) in data {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mut pts = String::new();
        for (i, &val) in sorted.iter().enumerate() {
            let px = x(val);
            let _ = write!(
                pts,
                "{px:.1},{:.1} {px:.1},{:.1} ",
                cy(i as f64 / n),
                cy((i + 1) as f64 / n)
            );
        }
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2.2" stroke-linejoin="round" points="{p}"/>"##,
            c = route.colour(),
            p = pts.trim_end()
        );
    }
    // Medians: dashed lines down through both panels, labelled in the CDF.
    for (k, (route, v)) in data.iter().enumerate() {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            continue;
        }
        let med = median(&sorted);
        let px = x(med);
        for (top, h) in [(cdf_top, cdf_h), (hist_top, hist_h)] {
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{y2}" stroke="{c}" stroke-width="1.2" stroke-dasharray="5,4"/>"##,
                c = route.colour(),
                y2 = top + h
            );
        }
        // Left of a CDF's median and above 50 % is empty for every curve right of it, so the
        // leftmost median is labelled there; the others right of their line, below 50 %.
        let leftmost = data
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| median(v))
            .fold(f64::MAX, f64::min);
        let (anchor, dx, ty) = if med <= leftmost {
            ("end", -6.0, cy(0.5) - 8.0)
        } else {
            ("start", 6.0, cy(0.5) + 16.0 + 16.0 * k as f64)
        };
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="12" fill="{c}" font-weight="bold" stroke="#ffffff" stroke-width="3" paint-order="stroke">p50 {m}</text>"##,
            tx = px + dx,
            c = route.colour(),
            m = us_text(med)
        );
    }
    // Legend: bottom right of the CDF panel, which a CDF never reaches.
    let (lw, lh) = (600.0, 14.0 + 20.0 * data.len() as f64);
    let (lx, ly) = (LEFT + plot_w - lw - 10.0, cdf_top + cdf_h - lh - 10.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="#ffffff" fill-opacity="0.92" stroke="#bbb"/>"##
    );
    for (k, (route, v)) in data.iter().enumerate() {
        let yy = ly + 20.0 + 20.0 * k as f64;
        let label = match route {
            Route::Dataplane => "data plane: Client::submit \u{2192} delegated send",
            Route::Reqwest => "reqwest: HTTP/1.1 keep-alive, TCP_NODELAY, tokio",
            Route::Kernel => "kernel socket: own TcpStream, keep-alive, TCP_NODELAY",
        };
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = if sorted.is_empty() {
            String::from("-")
        } else {
            let rank = ((0.99 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            us_text(sorted[rank - 1])
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{y0:.1}" x2="{x2}" y2="{y0:.1}" stroke="{c}" stroke-width="3"/><text x="{tx}" y="{ty:.1}" font-size="12">{l} (n={n}, p99 {p99})</text>"##,
            x1 = lx + 10.0,
            x2 = lx + 40.0,
            y0 = yy - 4.0,
            c = route.colour(),
            tx = lx + 48.0,
            ty = yy,
            l = xml(label),
            n = v.len()
        );
    }

    // Histogram panel: log-spaced bins, the two paths side by side in each bin.
    const BINS: usize = 40;
    let bin_of = |v: f64| {
        let f = (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln());
        ((f * BINS as f64) as usize).min(BINS - 1)
    };
    let counts: Vec<Vec<u32>> = data
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u32; BINS];
            for &val in v {
                c[bin_of(val)] += 1;
            }
            c
        })
        .collect();
    let top_count = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let step = nice_step(top_count, 5.0).max(1.0);
    let y_max = (top_count / step).ceil() * step;
    let hy = |c: f64| hist_top + hist_h - c / y_max * hist_h;
    let mut t = 0.0;
    while t <= y_max + 1e-9 {
        let py = hy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{t}</text>"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = py + 4.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">requests per bin</text>"##,
        ty = hist_top + hist_h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">Histogram ({BINS} log-spaced bins)</text>"##,
        ty = hist_top - 8.0
    );
    let bin_w = plot_w / BINS as f64;
    let paths = counts.len().max(1) as f64;
    for (k, ((route, _), c)) in data.iter().zip(&counts).enumerate() {
        for (b, &n) in c.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let bx = LEFT + b as f64 * bin_w + 1.0 + k as f64 * (bin_w - 2.0) / paths;
            let _ = writeln!(
                s,
                r##"<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}" fill-opacity="0.85"/>"##,
                by = hy(n as f64),
                bw = (bin_w - 2.0) / paths,
                bh = hist_top + hist_h - hy(n as f64),
                c = route.colour()
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
