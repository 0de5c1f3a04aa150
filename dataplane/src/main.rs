//! `swqos-dataplane --config PATH`: runs the data plane in the foreground until SIGINT/SIGTERM.
//!
//! Exit status: 0 after a clean shutdown, 1 when the run failed (an lcore panicked, EAL or a port
//! failed), 2 when the configuration is invalid.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use swqos_dataplane::runtime::{self, RunOptions};
use tracing::error;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "swqos-dataplane",
    version,
    about = "DPDK data plane for Solana transaction submission"
)]
struct Args {
    /// The TOML configuration (see dpdk-config/profiles/).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Seconds between progress lines on stderr (0 for none).
    #[arg(long, default_value_t = 5.0)]
    stats_interval: f64,
    /// Milliseconds a full NIC queue may hold packets before they are dropped and reported.
    #[arg(long, default_value_t = 500)]
    tx_timeout_ms: u64,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log lines as `plain` text (time, level, module, message) or `json` objects (filter with
    /// RUST_LOG; default info).
    #[arg(long, value_enum, env = "SWQOS_LOG_FORMAT", default_value = "plain")]
    log_format: LogFormat,
}

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the `tracing` subscriber: events on stderr, filtered by RUST_LOG (default info).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Plain => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let config = match dpdk_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = runtime::check_sizes(&config) {
        error!("{}: {e}", args.config.display());
        return ExitCode::from(2);
    }
    if let Err(e) = swqos_shm::Segment::check_path(&config.shm.path) {
        error!(
            "{}: [shm] path {}: {e}",
            args.config.display(),
            config.shm.path.display()
        );
        return ExitCode::from(2);
    }
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }

    // A segment file truncated by another process must not kill us with SIGBUS: the guard
    // replaces the lost pages with zeros and the main loop stops in order.
    if let Err(e) = swqos_shm::guard::install() {
        error!("cannot install the SIGBUS handler: {e}");
        return ExitCode::FAILURE;
    }
    // First SIGINT/SIGTERM: drain and exit; a second one: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            error!("cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let opts = RunOptions {
        stats_interval: Duration::from_secs_f64(args.stats_interval.max(0.0)),
        tx_timeout: Duration::from_millis(args.tx_timeout_ms),
        ..RunOptions::default()
    };
    match runtime::run(&config, &opts, stop) {
        Ok(report) => {
            print!("{report}");
            for failure in &report.failures {
                error!("{failure}");
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
