//! `swqos control`: the control-plane process. It attaches to the dataplane's segment, serves
//! Prometheus metrics, runs the relay lanes' connections ([`crate::relay_lanes`]) and, with
//! `[control] rpc_listen`, the JSON-RPC endpoint ([`crate::rpc`]).
//!
//! - Metrics: `GET /metrics` on `[control] metrics_listen` (default `127.0.0.1:9464`), HTTP/1.1,
//!   one connection at a time (concurrent scrapes queue in the listen backlog), `Connection:
//!   close`. Other paths: 404; other methods: 405. Each scrape reads the segment without locks,
//!   so a scrape never blocks the data path.
//! - Attachment: while no dataplane is running the exporter serves `swqos_dataplane_up 0` and
//!   tries to attach every second; when the dataplane stops, or a new one replaces the segment,
//!   it lets go and attaches to the new one.
//! - SIGINT/SIGTERM: exit 0. Logs go to stderr ([`crate::logging`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swqos_shm::stats::Snapshot;
use swqos_shm::{Segment, SegmentError};

use crate::logging::LogFormat;
use crate::{metrics, relay_lanes, rpc};
use swqos_rt::{LatencyMonitor, Policy};
use tracing::{error, info, warn};

/// `swqos control` arguments.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// The dataplane's TOML configuration (`[shm] path`, `[control]`).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Log lines as `plain` text or `json` objects (filter with RUST_LOG; default info).
    #[arg(long, value_enum, env = "SWQOS_LOG_FORMAT", default_value = "plain")]
    log_format: LogFormat,
}

/// How often a detached control plane tries to attach.
const ATTACH_EVERY: Duration = Duration::from_secs(1);
/// How long a scraper may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_REQUEST: usize = 8192;

/// Runs the control plane until SIGINT/SIGTERM. Exit 0 then; 2 for bad configuration or an
/// address that cannot be bound.
pub fn run(args: ControlArgs) -> ExitCode {
    crate::logging::init(args.log_format);
    let config = match dpdk_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            error!("cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Tuning first: threads started below inherit the CPU set and policy.
    let monitor = match tune(&config) {
        Ok(m) => m,
        Err(()) => return ExitCode::FAILURE,
    };
    let listener = match bind_metrics(config.control.metrics_listen) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let relay = match relay_lanes::spawn(&config, stop.clone()) {
        Ok(t) => t,
        Err(e) => {
            error!("relay lanes: {e}");
            return ExitCode::from(2);
        }
    };
    let (relay_thread, bundle_jobs) = relay.unzip();
    if let Err(code) = start_rpc(&config, bundle_jobs, &stop) {
        // Stops the relay thread before the early exit (it holds the data plane's claim).
        stop.store(true, Ordering::Relaxed);
        if let Some(t) = relay_thread {
            let _ = t.join();
        }
        return code;
    }
    serve_metrics(&listener, &config.shm.path, monitor.as_ref(), &stop);
    info!("stopping");
    if let Some(t) = relay_thread {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

/// The metrics listener on `[control] metrics_listen`, non-blocking, or the exit code.
fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, ExitCode> {
    if !addr.ip().is_loopback() {
        warn!(
            "WARNING: metrics_listen = {addr} is not a loopback address: the metrics are reachable from other hosts"
        );
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        error!("cannot listen on {addr} (`[control] metrics_listen`): {e}");
        ExitCode::from(2)
    })?;
    if let Err(e) = listener.set_nonblocking(true) {
        error!("{addr}: {e}");
        return Err(ExitCode::FAILURE);
    }
    let bound = listener.local_addr().unwrap_or(addr);
    info!("serving metrics on http://{bound}/metrics");
    Ok(listener)
}

/// Starts the JSON-RPC endpoint when `[control] rpc_listen` is set, or gives the exit code.
fn start_rpc(
    config: &dpdk_config::Config,
    bundle_jobs: Option<std::sync::mpsc::Sender<relay_lanes::BundleJob>>,
    stop: &Arc<AtomicBool>,
) -> Result<(), ExitCode> {
    let Some(rpc_addr) = config.control.rpc_listen else {
        return Ok(());
    };
    let rpc_listener = TcpListener::bind(rpc_addr).map_err(|e| {
        error!("cannot listen on {rpc_addr} (`[control] rpc_listen`): {e}");
        ExitCode::from(2)
    })?;
    let bound = rpc_listener.local_addr().unwrap_or(rpc_addr);
    let lanes = rpc::lane_mask(config.control.rpc_lanes.as_deref());
    let bundles = rpc::Bundles::new(config, bundle_jobs);
    let path = config.shm.path.clone();
    let upstream = config
        .control
        .rpc_upstream
        .clone()
        .map(|u| (u, config.control.rpc_upstream_timeout));
    if let Err(e) = rpc::spawn(rpc_listener, path, lanes, bundles, upstream, stop.clone()) {
        error!("cannot start the RPC endpoint: {e}");
        return Err(ExitCode::FAILURE);
    }
    info!("{}", rpc::describe(bound));
    if let Some(u) = &config.control.rpc_upstream {
        // The authority only: providers put API keys in the path or query.
        info!(
            "JSON-RPC: other methods forwarded to http://{} (timeout {} ms)",
            u.authority,
            config.control.rpc_upstream_timeout.as_millis()
        );
    }
    Ok(())
}

/// Answers scrapes one at a time until `stop`, attached to the segment at `path` when there
/// is one.
fn serve_metrics(
    listener: &TcpListener,
    path: &Path,
    monitor: Option<&LatencyMonitor>,
    stop: &AtomicBool,
) {
    let mut attachment = Attachment::new(path.to_path_buf());
    attachment.refresh();
    while !stop.load(Ordering::Relaxed) {
        attachment.refresh_if_due();
        match listener.accept() {
            Ok((stream, peer)) => {
                attachment.refresh_if_gone();
                if let Err(e) = serve(stream, &attachment, monitor) {
                    warn!("scrape from {peer}: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The segment the exporter reads, if any, and when it last tried to attach.
struct Attachment {
    path: PathBuf,
    seg: Option<Segment>,
    last_try: Instant,
    /// The last attach error logged, so a dataplane that stays away is not logged every second.
    last_error: Option<String>,
}

impl Attachment {
    fn new(path: PathBuf) -> Attachment {
        Attachment {
            path,
            seg: None,
            last_try: Instant::now(),
            last_error: None,
        }
    }

    /// Lets go of a segment that was removed or replaced.
    fn refresh_if_gone(&mut self) {
        if let Some(seg) = &self.seg {
            if seg.is_damaged() {
                info!(
                    "the dataplane's segment {} was truncated by another process; detaching",
                    self.path.display()
                );
                self.seg = None;
                self.refresh();
            } else if !seg.is_current() {
                info!(
                    "the dataplane's segment {} was removed or replaced; detaching",
                    self.path.display()
                );
                self.seg = None;
                self.refresh();
            }
        }
    }

    /// Every [`ATTACH_EVERY`]: detaches from a stale segment, attaches when detached.
    fn refresh_if_due(&mut self) {
        if self.last_try.elapsed() >= ATTACH_EVERY {
            self.refresh_if_gone();
            if self.seg.is_none() {
                self.refresh();
            }
            self.last_try = Instant::now();
        }
    }

    fn refresh(&mut self) {
        self.last_try = Instant::now();
        if self.seg.is_some() {
            return;
        }
        match attach(&self.path) {
            Ok(seg) => {
                let pid = seg
                    .header()
                    .dataplane_pid
                    .load(std::sync::atomic::Ordering::Relaxed);
                info!(
                    "attached to {} (dataplane pid {pid}, state {})",
                    self.path.display(),
                    seg.state().map_or("unknown", swqos_shm::State::name)
                );
                self.seg = Some(seg);
                self.last_error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    info!("not attached ({msg}); retrying every second");
                    self.last_error = Some(msg);
                }
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.seg.as_ref().map(Snapshot::read)
    }
}

/// Attaches in any state: a segment whose dataplane is starting, draining or dead still says
/// something (`swqos_dataplane_up` tells which).
fn attach(path: &Path) -> Result<Segment, SegmentError> {
    Segment::attach_any_state(path)
}

/// Answers one HTTP request.
fn serve(
    mut stream: TcpStream,
    attachment: &Attachment,
    monitor: Option<&LatencyMonitor>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                b"request too large\n",
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let mut body = metrics::render(attachment.snapshot().as_ref());
            metrics::render_relay(&mut body, &relay_lanes::METRICS);
            metrics::render_landing(&mut body);
            if let Some(m) = monitor {
                metrics::render_wakeup_latency(&mut body, m.stats());
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            if method == "GET" {
                stream.write_all(body.as_bytes())?;
            }
            stream.flush()
        }
        (_, "/metrics") => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"only GET and HEAD\n",
        ),
        ("", _) => respond(
            &mut stream,
            "400 Bad Request",
            "text/plain; charset=utf-8",
            b"bad request\n",
        ),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"not found: metrics are at /metrics\n",
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str(&format!("Content-Type: {content_type}\r\n\r\n"));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Applies `[tuning]` to this process: CPU pinning away from the dataplane's worker lcores, the
/// scheduling policy, and the wake-up latency monitor. One line per step; a failed step stops
/// the start only when `[tuning] required = true`.
fn tune(config: &dpdk_config::Config) -> Result<Option<LatencyMonitor>, ()> {
    let t = &config.tuning;
    let workers: Vec<u32> = config
        .eal
        .lcores
        .iter()
        .copied()
        .filter(|&l| l != config.eal.main_lcore)
        .collect();
    let cpus = t
        .control_cpus
        .clone()
        .unwrap_or_else(|| swqos_rt::cpus_except(&workers));
    let policy = match t.control_policy {
        dpdk_config::SchedPolicy::Other => Policy::Other,
        dpdk_config::SchedPolicy::Fifo => Policy::Fifo(t.control_priority),
        dpdk_config::SchedPolicy::Rr => Policy::Rr(t.control_priority),
    };
    let mut steps = Vec::new();
    if !cpus.is_empty() {
        steps.push(swqos_rt::pin_thread("control plane", &cpus));
    }
    if policy != Policy::Other {
        steps.push(swqos_rt::set_thread_policy("control plane", policy));
    }
    for s in &steps {
        info!("{s}");
        if !s.ok && t.required {
            error!("[tuning] required = true and a step failed: {s}");
            return Err(());
        }
    }
    if !t.latency_monitor {
        return Ok(None);
    }
    match LatencyMonitor::start((!cpus.is_empty()).then_some(cpus)) {
        Ok(m) => {
            info!("tuning: wake-up latency monitor: ok (exported as swqos_control_wakeup_latency_seconds)");
            Ok(Some(m))
        }
        Err(e) => {
            warn!("tuning: wake-up latency monitor: FAILED ({e})");
            if t.required {
                return Err(());
            }
            Ok(None)
        }
    }
}
