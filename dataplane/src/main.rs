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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = match dpdk_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = runtime::check_sizes(&config) {
        eprintln!("error: {}: {e}", args.config.display());
        return ExitCode::from(2);
    }
    if let Err(e) = swqos_shm::Segment::check_path(&config.shm.path) {
        eprintln!(
            "error: {}: [shm] path {}: {e}",
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
        eprintln!("error: cannot install the SIGBUS handler: {e}");
        return ExitCode::FAILURE;
    }
    // First SIGINT/SIGTERM: drain and exit; a second one: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            eprintln!("error: cannot install signal handler: {e}");
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
                eprintln!("error: {failure}");
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
