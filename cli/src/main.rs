//! `swqos`: the operator CLI. It talks to the dataplane through the shared-memory segment only
//! and links neither DPDK nor an HTTP client stack. `swqos control` runs the control plane (the
//! `swqos-control` library), `swqos bench` execs `swqos-bench` installed beside this binary.
//!
//! Exit status: 0 when everything was accepted, 1 when any transaction was not accepted everywhere or the run
//! failed midway, 2 for bad usage, configuration or a segment that cannot be used.

mod doctor;
mod input;
mod landing_stats;
mod stats;
mod submit;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use swqos_shm::Client;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "swqos",
    version,
    about = "Operator CLI for the swqos data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit signed transactions and print one line per input line, in input order:
    /// `accepted <signature>`, `rejected <reason>`, `partial <signature> sent: <lanes>; ...`,
    /// `unknown <signature> <reason>` (no answer) or `skipped` (blank or comment line).
    Submit {
        /// The dataplane's TOML configuration (for the shared-memory path).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Send to this lane (repeatable); default: every lane.
        #[arg(long = "lane", value_name = "NAME")]
        lanes: Vec<String>,
        /// Print JSON lines with per-lane outcomes and latencies.
        #[arg(long)]
        json: bool,
        /// Under each transaction, a line per lane with its outcome and latency (submit to
        /// tx_burst for UDP lanes, submit to the relay's answer for relay lanes).
        #[arg(long, short = 'v', visible_alias = "wait")]
        verbose: bool,
        /// Submit each transaction only after every lane has answered the one before (for
        /// latency figures without queueing).
        #[arg(long)]
        sequential: bool,
        /// Skip validation in the client and leave it to the dataplane (for testing it).
        #[arg(long)]
        no_client_check: bool,
        /// Also wait for each transaction's landing answer (`[landing]` in the control
        /// plane's config: landed in which slot, credited to which lane, or expired) and print
        /// it. Only submissions with a relay lane are watched.
        #[arg(long)]
        landing: bool,
        /// Seconds to wait for completions after the last submission.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// JSONL (objects with a `base64` or `base58` field) or lines of base64/base58;
        /// `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// Show the dataplane's live statistics per lcore, port and lane (rates, drops, completions
    /// by outcome, latency quantiles). Exit 2 when no dataplane is running.
    Stats(stats::StatsArgs),
    /// Run the control plane: the relay lanes' connections, the JSON-RPC endpoint
    /// (`[control] rpc_listen`) and Prometheus metrics (`[control] metrics_listen`).
    Control(swqos_control::ControlArgs),
    /// Benchmarks against a running dataplane: runs `swqos-bench` (installed beside `swqos`)
    /// with the arguments that follow (docs/benchmarks.md).
    #[command(disable_help_flag = true)]
    Bench {
        /// `throughput`, `tx-latency`, `wakeup` or `latency` and their options (`swqos bench --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Check the host against the config (hugepages, NIC binding, isolated cores, ...) and print
    /// pass/warn/fail with the command that fixes each; exit 1 if any check failed.
    Doctor(doctor::DoctorArgs),
    /// Print the shell completion script for SHELL (e.g. `swqos completions bash >
    /// /etc/bash_completion.d/swqos`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page swqos(1) in roff (e.g. `swqos man | man -l -`); with a directory,
    /// write swqos.1 and a page per subcommand (swqos-submit.1, ...) there.
    Man {
        /// Where to write the pages instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A segment truncated by another process must not kill us with SIGBUS (the control plane,
    // stats and submit map it): the lost pages read as zeros and the segment reports itself
    // damaged, so we detach.
    if let Err(e) = swqos_shm::guard::install() {
        eprintln!("warning: cannot install the SIGBUS handler: {e}");
    }
    match cli.command {
        Command::Submit {
            config,
            lanes,
            json,
            verbose,
            sequential,
            no_client_check,
            landing,
            timeout,
            file,
        } => submit_command(
            config,
            lanes,
            (json, verbose, sequential, landing),
            !no_client_check,
            timeout,
            file,
        ),
        Command::Bench { args } => bench(args),
        Command::Stats(args) => stats::run(args),
        Command::Control(args) => swqos_control::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "swqos", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { out_dir } => man(out_dir),
    }
}

/// `swqos man`: swqos(1) on stdout, or every page into `out_dir`.
fn man(out_dir: Option<PathBuf>) -> ExitCode {
    let cmd = Cli::command();
    let written = match &out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => clap_mangen::generate_to(cmd, dir),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let to = out_dir.map_or("stdout".into(), |d| d.display().to_string());
            eprintln!("error: writing the man page to {to}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `swqos bench ...`: the `swqos-bench` program beside this one, with the same arguments (the
/// benchmarks live in their own binary so their HTTP client stack is in no production one).
fn bench(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let program = std::env::current_exe()
        .map(|p| p.with_file_name("swqos-bench"))
        .unwrap_or_else(|_| PathBuf::from("swqos-bench"));
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "error: swqos bench runs {}: {err} (build it with `cargo build --release -p swqos-bench`)",
        program.display()
    );
    ExitCode::from(2)
}

fn submit_command(
    config: PathBuf,
    lane_names: Vec<String>,
    (json, verbose, sequential, landing): (bool, bool, bool, bool),
    client_check: bool,
    timeout: f64,
    file: Option<PathBuf>,
) -> ExitCode {
    let config = match dpdk_config::Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let input: Box<dyn BufRead> = match file.as_deref() {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
    };
    let client = match Client::attach(&config.shm.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut lanes = 0u64;
    for name in &lane_names {
        match client.lane_id(name) {
            Some(id) => lanes |= 1 << id,
            None => {
                eprintln!(
                    "error: unknown lane `{name}`; the dataplane has: {}",
                    client.lane_names().join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    if lane_names.is_empty() {
        lanes = client.all_lanes();
    }
    if lanes == 0 {
        eprintln!("error: the dataplane has no lanes configured");
        return ExitCode::from(2);
    }
    let opts = submit::SubmitOptions {
        lanes,
        client_check,
        json,
        verbose,
        sequential,
        landing,
        timeout: Duration::from_secs_f64(timeout.max(0.0)),
    };
    let stdout = std::io::stdout().lock();
    match submit::run(client, input, stdout, &opts) {
        Ok(t) => {
            eprintln!(
                "{} accepted, {} rejected, {} partial, {} unknown, {} skipped",
                t.accepted, t.rejected, t.partial, t.unknown, t.skipped
            );
            if t.all_accepted() {
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
