//! `latency` (alias `e2e`): relay lanes end to end, one submission to 1, 4, 8... lanes at
//! once, on the data-plane path beside the clients bots use today, sending the same
//! transactions to the same relays, alternating one submission at a time: for HTTP lanes a
//! reqwest client and a kernel-socket HTTP client, for QUIC lanes a quinn client
//! ([`quic_client`]). Each request is matched to the relay's log line (its `CLOCK_MONOTONIC`
//! receipt time) and, with `--capture`, to its TCP segments or UDP datagrams in an independent
//! capture on the relay's side of each path's link ([`wire`]): submit to the first and the last
//! byte (datagram) on the relay's NIC. Prints tables and writes `latency.csv`, `wire.csv` and
//! SVG plots.

mod clients;
mod quic_client;
mod receipts;
mod wire;

pub(crate) use wire::CaptureSpec;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swqos_shm::{Client, SubmitError};

use crate::common::*;
use crate::plot::svg;
use clients::{join_all, KernelClient, ReqwestLane};
use quic_client::QuinnLane;
use receipts::{match_receipts, read_relay_log, signature_of, Receipt};

/// What the data-plane path is, printed with every report and drawn on the plot.
const E2E_NOTE: &str = "the data-plane path writes each relay request as TCP segments of an \
     idle kernel connection of swqos control (a delegated send) when one is armed, and hands \
     it to swqos control's socket otherwise (the fallback); the dataplane's report says which \
     ran: `lane X: ... (fast N, fallback M)`. reqwest and the kernel socket use their own \
     keep-alive connections to the same relay, across the same data-plane bridge";

/// What the data-plane path is for QUIC lanes.
const E2E_NOTE_QUIC: &str = "the data-plane path opens a stream on the TX lcore's own QUIC \
     connection of the lane (quinn-proto, no kernel) and sends its datagrams with tx_burst; a \
     lane's completion comes when the relay acknowledged the stream. The quinn client uses its \
     own connections (kernel UDP sockets) to the same relay";

/// How long one request may take on any path before the run fails.
const E2E_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the quinn connections run after connecting, before the measured run (path MTU
/// discovery).
const QUINN_SETTLE: Duration = Duration::from_secs(1);

/// How long the data-plane path sleeps between completion polls. On a 2-core host a polling
/// client takes the CPU the relay (and `swqos control`) need while the request is under way, so
/// it sleeps (with a 1 us timer slack); the round trip includes up to about this much, the
/// submit->receipt time nothing. Measured with TLS lanes behind nginx: polling every 10 us made
/// the relay side answer slower, and the data-plane path's median submit->receipt 658 us
/// instead of 407 us at 200 us; reqwest and the kernel socket block in the kernel instead.
const E2E_POLL_SLEEP: Duration = Duration::from_micros(200);

/// `swqos bench latency` arguments.
pub(crate) struct E2eOptions {
    /// Relay lanes to measure, in order (empty: every relay lane of the config).
    pub(crate) lanes: Vec<String>,
    /// Fan-out widths: each submission goes to the first N of `lanes`.
    pub(crate) lane_counts: Vec<u32>,
    pub(crate) count: u32,
    pub(crate) warmup: u32,
    pub(crate) relay_log: PathBuf,
    pub(crate) out: PathBuf,
    /// `--baseline-ip`.
    pub(crate) baseline_ip: Option<std::net::Ipv4Addr>,
    /// `--capture-netns` and its interfaces: the wire-truth report.
    pub(crate) capture: Option<CaptureSpec>,
}

/// The three paths measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `Client::submit` to the relay lanes: TX lcore, delegated send (or hand-off) on
    /// `swqos control`'s connections.
    Dataplane,
    /// reqwest (hyper), HTTP/1.1 keep-alive, `TCP_NODELAY`, on a tokio current-thread runtime.
    Reqwest,
    /// This process's own keep-alive `TcpStream`s to the relay, writing the template's bytes.
    Kernel,
    /// quinn 0.11 on tokio, one connection per QUIC lane, configured as sol-trade-sdk does.
    Quinn,
}

impl Route {
    /// The paths of a run of HTTP lanes.
    const HTTP: [Route; 3] = [Route::Dataplane, Route::Reqwest, Route::Kernel];
    /// The paths of a run of QUIC lanes.
    const QUIC: [Route; 2] = [Route::Dataplane, Route::Quinn];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Dataplane => "dataplane",
            Route::Reqwest => "reqwest",
            Route::Kernel => "kernel-socket",
            Route::Quinn => "quinn",
        }
    }

    /// Its name in the summary's columns, and in ratios (`dp/rq`).
    pub(crate) fn short(self) -> (&'static str, &'static str) {
        match self {
            Route::Dataplane => ("dataplane", "dp"),
            Route::Reqwest => ("reqwest", "rq"),
            Route::Kernel => ("kernel", "ks"),
            Route::Quinn => ("quinn", "qn"),
        }
    }

    pub(crate) fn describe(self, quic: bool) -> &'static str {
        match self {
            Route::Dataplane if quic => {
                "Client::submit (one submission, N lanes) -> TX lcore -> a stream on the lane's \
                 own QUIC connection (quinn-proto), datagrams in mbufs -> tx_burst"
            }
            Route::Dataplane => {
                "Client::submit (one submission, N lanes) -> TX lcore -> delegated send on swqos \
                 control's connections (fallback: hand-off to its socket)"
            }
            Route::Quinn => {
                "quinn 0.11 (tokio current-thread runtime), one endpoint and connection per \
                 lane, sol-trade-sdk's ALPN/SNI/client certificate/keep-alive per provider, the \
                 data plane's certificate verification; N sends joined: open_uni, write_all, \
                 finish, until acknowledged (Node1: bi-stream and its reply)"
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

    pub(crate) fn colour(self) -> &'static str {
        match self {
            Route::Dataplane => "#d95f02",
            Route::Reqwest => "#33a02c",
            Route::Kernel => "#1f78b4",
            Route::Quinn => "#7570b3",
        }
    }
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

/// A measured relay lane: its dataplane id, relay address and protocol.
struct RelayLane {
    name: String,
    id: u8,
    addr: std::net::SocketAddrV4,
    /// Where the baselines reach the same relay: `--baseline-ip` (their own interface), or
    /// `addr`.
    baseline_addr: std::net::SocketAddrV4,
    proto: Proto,
}

/// What a measured lane speaks.
enum Proto {
    /// An HTTP relay: its request template and, for HTTPS, the lane's TLS settings (which the
    /// reqwest and kernel-socket clients use too).
    Http {
        template: swqos_wire::relay::RequestTemplate,
        tls: Option<swqos_tls::client_config::TlsSettings>,
    },
    /// A QUIC relay: the lane's settings, which the quinn client uses too.
    Quic(Box<dpdk_config::QuicLane>),
}

impl RelayLane {
    /// The provider's name (what the relay logs).
    fn provider(&self) -> &'static str {
        match &self.proto {
            Proto::Http { template, .. } => template.provider().name(),
            Proto::Quic(q) => q.provider.name(),
        }
    }

    /// What tells this lane's requests apart in the relay's log: the provider, and for QUIC
    /// lanes (several of one provider on different ports) the relay's port too.
    fn log_key(&self) -> String {
        match &self.proto {
            Proto::Http { .. } => self.provider().to_string(),
            Proto::Quic(_) => format!("{}:{}", self.provider(), self.addr.port()),
        }
    }

    fn is_quic(&self) -> bool {
        matches!(self.proto, Proto::Quic(_))
    }
}

/// The config's lanes named `names`, or every relay lane (`kind = "http"` or `"quic"`).
fn wanted_lanes<'a>(
    config: &'a dpdk_config::Config,
    names: &[String],
) -> Result<Vec<&'a dpdk_config::LaneConfig>, Failure> {
    if names.is_empty() {
        return Ok(config
            .lanes
            .iter()
            .filter(|l| {
                matches!(
                    l.kind,
                    dpdk_config::LaneKind::Http(_) | dpdk_config::LaneKind::Quic(_)
                )
            })
            .collect());
    }
    names
        .iter()
        .map(|name| {
            config
                .lanes
                .iter()
                .find(|l| &l.name == name)
                .ok_or_else(|| {
                    let have: Vec<&str> = config.lanes.iter().map(|l| l.name.as_str()).collect();
                    Failure::Setup(format!(
                        "no lane `{name}`; the config has: {}",
                        have.join(", ")
                    ))
                })
        })
        .collect()
}

/// A lane's protocol and relay address from its configuration.
fn lane_proto(lane: &dpdk_config::LaneConfig) -> Result<(Proto, std::net::SocketAddrV4), Failure> {
    let name = &lane.name;
    match &lane.kind {
        dpdk_config::LaneKind::Http(h) => {
            let template = swqos_wire::relay::RequestTemplate::new(
                h.provider,
                swqos_wire::relay::Endpoint {
                    host: &h.host,
                    path: h.path.as_deref(),
                    token: h.token.as_ref().map(|t| t.expose()),
                },
            )
            .map_err(|e| Failure::Setup(format!("lane `{name}`: {e}")))?;
            let tls = h
                .tls
                .as_ref()
                .map(|t| swqos_tls::client_config::TlsSettings {
                    server_name: t.server_name.clone(),
                    ca_files: t.ca_files.clone(),
                    insecure_skip_verify: t.insecure_skip_verify,
                });
            let addr = std::net::SocketAddrV4::new(h.dst_ip, h.dst_port);
            Ok((Proto::Http { template, tls }, addr))
        }
        dpdk_config::LaneKind::Quic(q) => {
            let addr = std::net::SocketAddrV4::new(q.dst_ip, q.dst_port);
            Ok((Proto::Quic(Box::new(q.clone())), addr))
        }
        dpdk_config::LaneKind::Udp(_) => Err(Failure::Setup(format!(
            "lane `{name}` is not a relay lane (kind = \"http\" or \"quic\")"
        ))),
    }
}

/// The relay lanes to measure: the named ones, or every relay lane of the config; all HTTP or
/// all QUIC.
fn relay_lanes(
    config: &dpdk_config::Config,
    client: &Client,
    names: &[String],
    baseline_ip: Option<std::net::Ipv4Addr>,
) -> Result<Vec<RelayLane>, Failure> {
    let mut lanes: Vec<RelayLane> = Vec::new();
    for lane in wanted_lanes(config, names)? {
        let name = &lane.name;
        let (proto, addr) = lane_proto(lane)?;
        let id = client.lane_id(name).ok_or_else(|| {
            Failure::Setup(format!(
                "the running dataplane has no lane `{name}` (it has: {})",
                client.lane_names().join(", ")
            ))
        })?;
        let new = RelayLane {
            name: name.clone(),
            id,
            addr,
            baseline_addr: std::net::SocketAddrV4::new(
                baseline_ip.unwrap_or(*addr.ip()),
                addr.port(),
            ),
            proto,
        };
        if let Some(other) = lanes.iter().find(|l| l.is_quic() != new.is_quic()) {
            return Err(Failure::Setup(format!(
                "lanes `{}` and `{name}`: measure HTTP lanes or QUIC lanes in one run, not both \
                 (their baselines differ)",
                other.name
            )));
        }
        if let Some(other) = lanes.iter().find(|l| l.log_key() == new.log_key()) {
            return Err(Failure::Setup(format!(
                "lanes `{}` and `{name}` are both {} (at the same relay port): the relay's log \
                 could not tell their requests apart (measure lanes of distinct providers, or \
                 QUIC lanes on distinct ports)",
                other.name,
                new.provider()
            )));
        }
        lanes.push(new);
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

/// One submission on the quinn path: N sends joined on the runtime, the submit time taken just
/// before them (before the first `open_uni`); returns send_ns and each lane's done_ns.
fn quinn_request(
    rt: &tokio::runtime::Runtime,
    lanes: &[QuinnLane],
    tx: &[u8],
) -> Result<(u64, Vec<u64>), Failure> {
    let send_ns = swqos_shm::time::monotonic_ns();
    let results = rt.block_on(join_all(lanes.iter().map(|l| l.send(tx)).collect()));
    results
        .into_iter()
        .map(|r| r.map_err(Failure::Run))
        .collect::<Result<Vec<u64>, _>>()
        .map(|done| (send_ns, done))
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

/// What a run measures: the lanes (the first `max(lane_counts)` of them), the widths and the
/// sample transactions.
struct Plan {
    client: Client,
    lanes: Vec<RelayLane>,
    lane_counts: Vec<u32>,
    txs: Vec<Vec<u8>>,
    /// The paths measured: [`Route::HTTP`] or [`Route::QUIC`].
    routes: &'static [Route],
}

/// `swqos bench latency`: the run, then the relay-log match, the tables, the files and, with
/// `--capture-netns`, the wire truth.
pub(crate) fn e2e(config_path: &Path, opts: &E2eOptions) -> Result<(), Failure> {
    let Plan {
        mut client,
        lanes,
        lane_counts,
        txs,
        routes,
    } = plan(config_path, opts)?;
    let providers: Vec<&str> = lanes.iter().map(RelayLane::provider).collect();
    print_plan(opts, &lanes, &lane_counts, routes, txs.len());
    // Start from an empty completion ring.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        client.poll();
    }
    // The wire truth: captures on the relay's side of both links, and the clocks' offset.
    let captures = match &opts.capture {
        Some(spec) => Some(wire::Captures::start(spec, &lanes, &opts.out).map_err(Failure::Setup)?),
        None => None,
    };
    let clock_before = wire::ClockMap::sample();
    let budget_before = snapshot(client.segment());

    let (mut requests, reconnects) =
        measure(&mut client, &lanes, &lane_counts, routes, &txs, opts)?;

    let clock = wire::ClockMap::new(clock_before, wire::ClockMap::sample());
    let budget = crate::common::budget(&budget_before, &snapshot(client.segment()));
    let pcaps = match captures {
        Some(c) => Some(c.stop().map_err(Failure::Run)?),
        None => None,
    };
    let others = match_relay_log(&mut requests, opts, &lanes)?;
    let quic = routes == Route::QUIC;
    println!(
        "relay log: all {} requests received exactly once (matched by provider{} and signature \
         inside each request's send..done window); {others} other accepted request(s) of these \
         providers during the run (warm-ups of the later lane counts){}",
        requests.len(),
        if quic { ", relay port" } else { "" },
        if quic {
            String::new()
        } else {
            format!("; kernel socket: {reconnects} reconnect(s)")
        }
    );
    print_tables(&requests, &lane_counts, routes);
    let mut written = write_files(&requests, &lanes, &providers, &lane_counts, routes, opts)?;
    if let Some(pcaps) = &pcaps {
        let files = wire::report(pcaps, &requests, &clock, &lane_counts, routes, &opts.out)
            .map_err(Failure::Run)?;
        written.extend(files);
    }
    println!();
    budget.print(client.tsc_hz());
    println!("wrote {}", written.join(", "));
    Ok(())
}

/// Attaches, picks the lanes and checks the options.
fn plan(config_path: &Path, opts: &E2eOptions) -> Result<Plan, Failure> {
    let config =
        dpdk_config::Config::load(config_path).map_err(|e| Failure::Setup(e.to_string()))?;
    let client = Client::attach(&config.shm.path).map_err(|e| Failure::Setup(e.to_string()))?;
    let mut lanes = relay_lanes(&config, &client, &opts.lanes, opts.baseline_ip)?;
    let mut lane_counts = opts.lane_counts.clone();
    lane_counts.dedup();
    if let Some(&n) = lane_counts
        .iter()
        .find(|&&n| n == 0 || n as usize > lanes.len())
    {
        let names: Vec<&str> = lanes.iter().map(|l| l.name.as_str()).collect();
        return Err(Failure::Setup(format!(
            "--lanes {n}: {} relay lane(s) to measure ({})",
            lanes.len(),
            names.join(", ")
        )));
    }
    lanes.truncate(*lane_counts.iter().max().unwrap_or(&1) as usize);
    let txs = samples().map_err(Failure::Setup)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Failure::Setup(format!("{}: {e}", opts.out.display())))?;
    if !opts.relay_log.exists() {
        return Err(Failure::Setup(format!(
            "relay log {} does not exist (start the relay with --log)",
            opts.relay_log.display()
        )));
    }
    let routes: &'static [Route] = if lanes[0].is_quic() {
        &Route::QUIC
    } else {
        &Route::HTTP
    };
    Ok(Plan {
        client,
        lanes,
        lane_counts,
        txs,
        routes,
    })
}

fn print_plan(
    opts: &E2eOptions,
    lanes: &[RelayLane],
    lane_counts: &[u32],
    routes: &[Route],
    samples: usize,
) {
    let counts_text: Vec<String> = lane_counts.iter().map(u32::to_string).collect();
    let paths: Vec<&str> = routes
        .iter()
        .map(|r| match r {
            Route::Dataplane => "data plane",
            Route::Kernel => "kernel socket",
            r => r.name(),
        })
        .collect();
    println!(
        "e2e: lane counts {}, {} measured submissions per path and lane count after {} warm-up \
         each, alternating {}, one submission in flight, {samples} sample transactions cycled",
        counts_text.join(","),
        opts.count,
        opts.warmup,
        paths.join(" / "),
    );
    let quic = routes == Route::QUIC;
    for (k, l) in lanes.iter().enumerate() {
        println!(
            "  lane {:<2} {:<14} {}{} at {} (baselines: {})",
            k + 1,
            l.name,
            l.provider(),
            if quic { " (quic)" } else { "" },
            l.addr,
            l.baseline_addr
        );
    }
    for &r in routes {
        println!("  {:<14} {}", r.name(), r.describe(quic));
    }
}

/// The baselines' clients: reqwest and the kernel socket for HTTP lanes, quinn for QUIC lanes.
struct Baselines {
    rt: tokio::runtime::Runtime,
    kernel: Vec<KernelClient>,
    reqwest: Vec<ReqwestLane>,
    quinn: Vec<QuinnLane>,
}

impl Baselines {
    /// The clients of `routes` for `lanes`, connected (quinn) or ready to connect.
    fn new(lanes: &[RelayLane], routes: &[Route], tx: &[u8]) -> Result<Baselines, Failure> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Setup(format!("tokio runtime: {e}")))?;
        let mut b = Baselines {
            rt,
            kernel: Vec::new(),
            reqwest: Vec::new(),
            quinn: Vec::new(),
        };
        for l in lanes {
            match (&l.proto, routes.contains(&Route::Quinn)) {
                (Proto::Quic(q), true) => b.quinn.push(
                    QuinnLane::connect(&b.rt, &l.name, q, l.baseline_addr)
                        .map_err(Failure::Setup)?,
                ),
                (Proto::Http { .. }, false) => {
                    b.kernel.push(KernelClient::new(l).map_err(Failure::Setup)?);
                    b.reqwest
                        .push(ReqwestLane::new(l, tx).map_err(Failure::Setup)?);
                }
                _ => return Err(Failure::Setup(format!("lane `{}`: no baseline", l.name))),
            }
        }
        if !b.quinn.is_empty() {
            // quinn's path MTU discovery probes (PING + padding, up to 1452 bytes) follow the
            // handshake; let them finish before the measured windows, where a probe would look
            // like a transaction's datagram.
            b.rt.block_on(async { tokio::time::sleep(QUINN_SETTLE).await });
        }
        Ok(b)
    }

    /// One submission to the first `n` lanes on `route` (not the data plane).
    fn request(&mut self, route: Route, n: usize, tx: &[u8]) -> Result<(u64, Vec<u64>), Failure> {
        match route {
            Route::Reqwest => reqwest_request(&self.rt, &mut self.reqwest[..n], tx),
            Route::Kernel => kernel_request(&mut self.kernel[..n], tx),
            Route::Quinn => quinn_request(&self.rt, &self.quinn[..n], tx),
            Route::Dataplane => Err(Failure::Run("the data plane is not a baseline".into())),
        }
    }

    /// Closes the quinn connections; returns the kernel-socket client's reconnects.
    fn finish(self) -> u32 {
        for q in self.quinn {
            q.close(&self.rt);
        }
        self.kernel.iter().map(|k| k.reconnects).sum()
    }
}

/// The measured run: for each width, `warmup + count` submissions per path, the paths
/// alternating, one in flight. Returns the measured requests and the kernel-socket client's
/// reconnects.
fn measure(
    client: &mut Client,
    lanes: &[RelayLane],
    lane_counts: &[u32],
    routes: &[Route],
    txs: &[Vec<u8>],
    opts: &E2eOptions,
) -> Result<(Vec<Request>, u32), Failure> {
    // Sleeps in the data-plane path's poll loop should be as short as asked.
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let mut baselines = Baselines::new(lanes, routes, &txs[0])?;
    let per_n: usize = lane_counts.iter().map(|&n| n as usize).sum();
    let mut requests = Vec::with_capacity(opts.count as usize * routes.len() * per_n);
    let (mut tag, mut next_tx, mut submission) = (1u64 << 41, 0usize, 0u32);
    for &n in lane_counts {
        let n_us = n as usize;
        let ids: Vec<u8> = lanes[..n_us].iter().map(|l| l.id).collect();
        for i in 0..opts.warmup + opts.count {
            for &route in routes {
                let t = next_tx % txs.len();
                next_tx += 1;
                let tx = &txs[t];
                let (send_ns, done) = match route {
                    Route::Dataplane => {
                        tag += 1;
                        dataplane_request(client, tx, &ids, tag)?
                    }
                    _ => baselines.request(route, n_us, tx)?,
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
    Ok((requests, baselines.finish()))
}

/// Matches every request to the relay's log (waiting up to 3 s for the last lines); fails
/// unless each was received exactly once. Returns the other accepted requests of the run.
fn match_relay_log(
    requests: &mut [Request],
    opts: &E2eOptions,
    lanes: &[RelayLane],
) -> Result<usize, Failure> {
    let keys: Vec<String> = lanes.iter().map(RelayLane::log_key).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let by_port = lanes.iter().any(RelayLane::is_quic);
    // The relay writes its log line around its answer: give the last ones a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let others = loop {
        let log = read_relay_log(&opts.relay_log, by_port).map_err(Failure::Run)?;
        let others = match_receipts(requests, &log, &keys).map_err(Failure::Run)?;
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
    Ok(others)
}

/// The relay-receipt tables: every metric, then the summary with ratios.
fn print_tables(requests: &[Request], lane_counts: &[u32], routes: &[Route]) {
    println!();
    println!(
        "{:>5} {:<14} {:<16} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "lanes", "path", "metric (us)", "n", "p50", "p90", "p99", "max"
    );
    // (p50, p99) per lane count, metric and path, for the summary.
    let mut quant = vec![vec![vec![[0f64; 2]; routes.len()]; METRICS.len()]; lane_counts.len()];
    for (c, &n) in lane_counts.iter().enumerate() {
        for (m, metric) in METRICS.into_iter().enumerate() {
            for (p, &route) in routes.iter().enumerate() {
                let s = metric_samples(requests, n, route, metric);
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
    print_summary(&quant, lane_counts, routes);
}

/// The summary: p50/p99 of submit->receipt per request and per submission (last lane), per
/// path, and the data plane's median over each baseline's.
fn print_summary(quant: &[Vec<Vec<[f64; 2]>>], lane_counts: &[u32], routes: &[Route]) {
    println!();
    println!("summary, submit->receipt (us): per request, and per submission (last lane received)");
    let (mut top, mut head) = (
        format!("{:>5} {:<12}", "", ""),
        format!("{:>5} {:<12}", "lanes", "per"),
    );
    for r in routes {
        top.push_str(&format!(" {:>9} {:>9}", r.short().0, ""));
        head.push_str(&format!(" {:>9} {:>9}", "p50", "p99"));
    }
    let mut ratios = Vec::new();
    for r in &routes[1..] {
        top.push_str(&format!(" {:>8}", "ratio"));
        head.push_str(&format!(" {:>8}", format!("dp/{}", r.short().1)));
        ratios.push(r.short());
    }
    println!("{top}");
    println!("{head}");
    for (c, &n) in lane_counts.iter().enumerate() {
        for (m, per) in [(0, "request"), (1, "submission")] {
            let q = &quant[c][m];
            let mut line = format!("{n:>5} {per:<12}");
            for v in q {
                line.push_str(&format!(" {:>9.1} {:>9.1}", v[0], v[1]));
            }
            for v in &q[1..] {
                line.push_str(&format!(" {:>7.2}x", q[0][0] / v[0]));
            }
            println!("{line}");
        }
    }
    let names: Vec<String> = ratios
        .iter()
        .map(|(long, short)| format!("dataplane / {long} (dp/{short})"))
        .collect();
    println!("(ratio: of medians, {})", names.join(", "));
    if routes == Route::QUIC {
        println!(
            "(submit->receipt: monotonic_ns() just before the submission (Client::submit, the"
        );
        println!(" quinn sends' open_uni) to the relay's CLOCK_MONOTONIC when that lane's stream");
        println!(
            " FIN arrived; last-receipt: the last lane of each submission; round-trip: to that"
        );
        println!(" lane's completion (the relay acknowledged the stream; Node1: its reply). The");
        println!(
            " data-plane client polls for completions every ~{} us)",
            E2E_POLL_SLEEP.as_micros()
        );
        println!("note: {E2E_NOTE_QUIC}");
        return;
    }
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
}

/// What each path of `routes` sends on, for the plots.
fn paths_note(routes: &[Route]) -> &'static str {
    if routes == Route::QUIC {
        "data plane: a stream on its own QUIC connection per lane (quinn-proto on the TX lcore); \
         quinn: its own connections over kernel UDP sockets"
    } else {
        "data plane: delegated sends on swqos control's idle kernel connections; reqwest and the \
         kernel socket: their own keep-alive connections"
    }
}

/// Writes `latency.csv` (every request) and the relay-receipt plots; returns the files.
fn write_files(
    requests: &[Request],
    lanes: &[RelayLane],
    providers: &[&str],
    lane_counts: &[u32],
    routes: &[Route],
    opts: &E2eOptions,
) -> Result<Vec<String>, Failure> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| Failure::Run(format!("{}: {e}", path.display())))
    };
    let csv = opts.out.join("latency.csv");
    let mut text = String::from(
        "path,lanes,submission,lane,provider,index,signature,tx_sample,send_ns,relay_first_ns,\
         relay_ns,done_ns,submit_to_receipt_us,round_trip_us,relay_conn,relay_seq\n",
    );
    for r in requests {
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
    write(&csv, &text)?;
    let mut written = vec![csv.display().to_string()];
    for (c, &n) in lane_counts.iter().enumerate() {
        let data: Vec<(Route, Vec<f64>)> = routes
            .iter()
            .map(|&route| {
                let v = metric_samples(requests, n, route, METRICS[0]);
                (route, v.into_iter().map(|ns| ns as f64 / 1e3).collect())
            })
            .collect();
        let title = format!(
            "swqos end to end: submit \u{2192} relay receipt, {n} lane(s) ({}), {} submissions per path",
            providers[..n as usize].join(", "),
            opts.count
        );
        let svg_text = svg(
            &crate::plot::Labels {
                title: &title,
                what: [
                    "submit/send (client CLOCK_MONOTONIC) to the relay having received the whole \
                     request (relay CLOCK_MONOTONIC, same host)",
                    paths_note(routes),
                ],
                axis: "submit/send &#8594; relay receipt",
            },
            &data,
        );
        let mut names = vec![format!("latency-{n}lanes.svg")];
        if c == 0 {
            names.push("latency.svg".to_string());
        }
        for name in names {
            let path = opts.out.join(name);
            write(&path, &svg_text)?;
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}
