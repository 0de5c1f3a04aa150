//! `swqos-bench`: benchmarks against a running data plane, through the same client library a
//! trading app links (`swqos bench ...` runs this program). They print numbers; they are not
//! tests (docs/benchmarks.md). A program of its own so that its HTTP client stack (reqwest,
//! tokio) ships in no production binary.

mod bench;
// The relay lanes' rustls client configuration (roots, `ca_files`, `insecure_skip_verify`),
// shared with `swqos control` so the baselines verify relays exactly as the control plane does.
#[path = "../../control/src/tls_config.rs"]
mod tls_config;

use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "swqos-bench",
    version,
    about = "Benchmarks against a running swqos data plane (docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    what: bench::BenchCommand,
}

fn main() -> ExitCode {
    bench::run(Cli::parse().what)
}
