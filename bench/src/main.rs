//! `swqos-bench`: benchmarks against a running data plane, through the same client library a
//! trading app links (`swqos bench ...` runs this program). They print numbers; they are not
//! tests (docs/benchmarks.md). A program of its own so that its baselines' client stacks
//! (reqwest, quinn, tokio) ship in no production binary.
//!
//! - `throughput` ([`throughput`]): lane packets per second per TX lcore;
//! - `tx-latency` ([`tx_latency`]): submit to `tx_burst`, the data plane alone, and the latency
//!   budget per stage of a delegated send;
//! - `wakeup` ([`wakeup`]): submit to `tx_burst` of submissions that find the TX lcore idle,
//!   and the CPU the idle lcore uses (busy against adaptive polling);
//! - `latency` / `e2e` ([`e2e`]): relay lanes end to end beside reqwest and a kernel-socket
//!   client (HTTP lanes) or a quinn client (QUIC lanes), timed on the relay's side of the wire
//!   by an independent capture.

mod common;
mod e2e;
mod plot;
mod throughput;
mod tx_latency;
mod wakeup;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use common::{setup, Failure};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "swqos-bench",
    version,
    about = "Benchmarks against a running swqos data plane (docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    what: BenchCommand,
}

fn main() -> ExitCode {
    run(Cli::parse().what)
}

/// Which benchmark to run.
#[derive(Debug, Subcommand)]
enum BenchCommand {
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
    /// Submit one transaction every --gap-ms (the TX lcore idles in between) and report
    /// submit-to-tx_burst latency, then the CPU the idle lcore uses over --idle-secs (its
    /// thread's utime+stime, and its busy share from the stats block).
    Wakeup {
        /// The dataplane's TOML configuration (for the shared-memory path).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Measured submissions.
        #[arg(long, default_value_t = 200)]
        count: u32,
        /// Milliseconds between submissions.
        #[arg(long, default_value_t = 50)]
        gap_ms: u64,
        /// Seconds of idleness over which the lcore's CPU use is measured.
        #[arg(long, default_value_t = 5.0)]
        idle_secs: f64,
    },
    /// End to end through relay lanes: the data-plane path beside a reqwest client and a
    /// kernel-socket HTTP client (HTTP lanes) or a quinn client configured as sol-trade-sdk's
    /// (QUIC lanes) to the same relays, one submission (to N lanes at once) in flight; prints a
    /// table and writes latency.csv and one SVG plot per lane count. Needs the relay's request
    /// log (the mock relay's or the QUIC peer's `--log`) on this host.
    #[command(name = "latency", alias = "e2e")]
    Latency {
        /// The dataplane's TOML configuration (shared-memory path and the lanes' relays).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// A relay lane (`kind = "http"` or `"quic"`, all of one kind) to measure (repeatable,
        /// in order); default: every relay lane of the config. Their providers must differ
        /// (QUIC lanes: or their relay ports).
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
        /// The baselines (reqwest, kernel socket; quinn) reach the relays at this address
        /// instead of the lanes' `dst_ip` (on the lanes' ports): a kernel-owned interface of
        /// their own, as users without the data plane run them.
        #[arg(long)]
        baseline_ip: Option<std::net::Ipv4Addr>,
        /// Wire truth: capture the relay's side of both links in this network namespace
        /// (tcpdump, nanosecond stamps) and report submit to the first and last byte of each
        /// request (QUIC: the first and last datagram of each transaction) at the relay's NIC.
        #[arg(long, requires_all = ["capture_dataplane_iface", "capture_baseline_iface"])]
        capture_netns: Option<String>,
        /// With --capture-netns: the relay's end of the data plane's link.
        #[arg(long, requires = "capture_netns")]
        capture_dataplane_iface: Option<String>,
        /// With --capture-netns: the relay's end of the baselines' link.
        #[arg(long, requires = "capture_netns")]
        capture_baseline_iface: Option<String>,
    },
}

/// Runs one benchmark; exit status 2 for setup errors, 1 when the run failed midway.
fn run(cmd: BenchCommand) -> ExitCode {
    let (config, result) = match cmd {
        BenchCommand::Throughput {
            config,
            seconds,
            lanes,
        } => {
            let window = Duration::from_secs_f64(seconds.max(0.1));
            let result =
                setup(&config).and_then(|(c, txs)| throughput::throughput(c, &txs, window, lanes));
            (config, result)
        }
        BenchCommand::TxLatency {
            config,
            count,
            lanes,
        } => {
            let result = setup(&config)
                .and_then(|(c, txs)| tx_latency::latency(c, &txs, count.max(1), &lanes));
            (config, result)
        }
        BenchCommand::Wakeup {
            config,
            count,
            gap_ms,
            idle_secs,
        } => {
            let gap = Duration::from_millis(gap_ms);
            let idle = Duration::from_secs_f64(idle_secs.clamp(0.1, 3600.0));
            let result = setup(&config)
                .and_then(|(c, txs)| wakeup::wakeup(c, &txs, count.max(1), gap, idle));
            (config, result)
        }
        BenchCommand::Latency { ref config, .. } => {
            let config = config.clone();
            let result = e2e_options(cmd).and_then(|opts| e2e::e2e(&config, &opts));
            (config, result)
        }
    };
    exit_code(&config, result)
}

/// `latency`'s arguments as the end-to-end benchmark takes them.
fn e2e_options(cmd: BenchCommand) -> Result<e2e::E2eOptions, Failure> {
    let BenchCommand::Latency {
        lane,
        lanes,
        count,
        warmup,
        relay_log,
        out,
        baseline_ip,
        capture_netns,
        capture_dataplane_iface,
        capture_baseline_iface,
        ..
    } = cmd
    else {
        return Err(Failure::Setup("not the latency benchmark".into()));
    };
    let capture = capture_netns.map(|netns| e2e::CaptureSpec {
        netns,
        dataplane_iface: capture_dataplane_iface.unwrap_or_default(),
        baseline_iface: capture_baseline_iface.unwrap_or_default(),
    });
    Ok(e2e::E2eOptions {
        lanes: lane,
        lane_counts: lanes,
        count: count.max(1),
        warmup,
        relay_log,
        out,
        baseline_ip,
        capture,
    })
}

/// Exit status 2 for setup errors (said with the config's path), 1 when the run failed.
fn exit_code(config: &std::path::Path, result: Result<(), Failure>) -> ExitCode {
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
