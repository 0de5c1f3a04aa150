//! The typed TOML configuration of the DPDK data plane.
//!
//! One file describes the EAL, the shared-memory channel, mempools, ports, the lcore map, the
//! lanes, the control plane (`[control]`) and host tuning (`[tuning]`). The dataplane, the
//! control plane and the clients all read it, so this crate does not depend on DPDK.
//!
//! [`Config::load`] and [`Config::parse`] return the validated, resolved form: defaults filled in,
//! names resolved to indices, addresses parsed. Every error names `file:line:column` of the
//! offending key or value and says what was expected:
//!
//! ```text
//! profiles/x.toml:12:1: unknown field `tx_queus`, expected one of `name`, `device`, ...
//! profiles/x.toml:30:6: lcore 0 is the main lcore (eal.main_lcore); it runs the control loop and must not be listed in [[lcore]]
//! ```
//!
//! The shipped profiles are in `profiles/` next to this crate's `Cargo.toml`.

mod error;
mod landing;
mod raw;
mod resolve;
mod syntax;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use error::ConfigError;
pub use landing::{Commitment, LandingConfig};
pub use swqos_wire::quic_relay::QuicProvider;
pub use swqos_wire::relay::Provider;
use swqos_wire::relay::{Endpoint, RelayError, RequestTemplate};

/// Most relay connections across all http lanes: the data plane's session table has one entry
/// per connection (`swqos_shm::layout::MAX_SESSIONS`, checked equal at compile time in the data
/// plane).
pub const MAX_RELAY_CONNECTIONS: usize = 64;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[eal]`: the DPDK Environment Abstraction Layer.
    pub eal: EalConfig,
    /// `[shm]`: the shared-memory channel to clients and the control plane.
    pub shm: ShmConfig,
    /// `[[mempool]]`, in file order; a single `default` pool when the file defines none.
    pub mempools: Vec<MempoolConfig>,
    /// `[[port]]`, in file order; at least one.
    pub ports: Vec<PortConfig>,
    /// `[[lcore]]`, the lcore map in file order; never contains the main lcore.
    pub lcores: Vec<LcoreConfig>,
    /// `[[lane]]`, in file order; lane indices are the ones clients submit on.
    pub lanes: Vec<LaneConfig>,
    /// `[control]`: the control-plane process (`swqos control`); defaults when absent.
    pub control: ControlConfig,
    /// `[tuning]`: memory locking and scheduling of the processes; defaults when absent.
    pub tuning: TuningConfig,
    /// `[landing]`: landing feedback by the control plane; `None` (absent): off.
    pub landing: Option<LandingConfig>,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Where `swqos control` serves Prometheus metrics (`GET /metrics`); default
    /// `127.0.0.1:9464`. A non-loopback address is allowed; `swqos control` warns about it.
    pub metrics_listen: SocketAddr,
    /// Where the control plane will accept RPC submissions; `None` (absent): off.
    pub rpc_listen: Option<SocketAddr>,
    /// Indices into [`Config::lanes`] that RPC submissions may use; `None` (absent): not set.
    pub rpc_lanes: Option<Vec<usize>>,
    /// Where the JSON-RPC endpoint forwards the methods it does not answer itself
    /// (`getLatestBlockhash`, `getSlot`, ...); `None` (absent): such methods are answered with
    /// an error.
    pub rpc_upstream: Option<RpcUpstream>,
    /// How long one forwarded request may take, connect to last byte
    /// (`rpc_upstream_timeout_ms`, 1..=[`MAX_RPC_UPSTREAM_TIMEOUT_MS`]; default
    /// [`DEFAULT_RPC_UPSTREAM_TIMEOUT_MS`]).
    pub rpc_upstream_timeout: Duration,
}

/// Default of `[control] rpc_upstream_timeout_ms`.
pub const DEFAULT_RPC_UPSTREAM_TIMEOUT_MS: u64 = 2_000;
/// Largest `[control] rpc_upstream_timeout_ms`: a forwarded call is answered well within the
/// endpoint's own deadline for any request.
pub const MAX_RPC_UPSTREAM_TIMEOUT_MS: u64 = 10_000;

/// `[control] rpc_upstream`: an `http://` JSON-RPC server (a Solana RPC node or provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcUpstream {
    /// The URL as written.
    pub url: String,
    /// Host name or IP address to connect to (an IPv6 address without brackets).
    pub host: String,
    /// TCP port (80 when the URL names none).
    pub port: u16,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request target: the URL's path and query, `/` when it has none.
    pub path: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            rpc_listen: None,
            rpc_lanes: None,
            rpc_upstream: None,
            rpc_upstream_timeout: Duration::from_millis(DEFAULT_RPC_UPSTREAM_TIMEOUT_MS),
        }
    }
}

/// `[tuning]`: how the processes should lock memory and be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuningConfig {
    /// Lock every page of the dataplane in memory (`mlockall`); default true.
    pub mlockall: bool,
    /// Whether a tuning step that fails stops the start (true) or only warns (false, default).
    pub required: bool,
    /// Scheduling policy of the dataplane's worker lcores; default [`SchedPolicy::Other`].
    pub lcore_policy: SchedPolicy,
    /// Real-time priority of the worker lcores: 1..=99 with `fifo`/`rr`, 0 with `other`.
    pub lcore_priority: u8,
    /// CPUs the control-plane process runs on (never a dataplane worker lcore); `None`: any.
    pub control_cpus: Option<Vec<u32>>,
    /// Scheduling policy of the control plane; default [`SchedPolicy::Other`].
    pub control_policy: SchedPolicy,
    /// Real-time priority of the control plane: 1..=99 with `fifo`/`rr`, 0 with `other`.
    pub control_priority: u8,
    /// Watch scheduling latency of the worker lcores; default true.
    pub latency_monitor: bool,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            mlockall: true,
            required: false,
            lcore_policy: SchedPolicy::Other,
            lcore_priority: 0,
            control_cpus: None,
            control_policy: SchedPolicy::Other,
            control_priority: 0,
            latency_monitor: true,
        }
    }
}

/// `tuning.lcore_policy` / `tuning.control_policy`: a Linux scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedPolicy {
    /// `SCHED_OTHER`, the default time-sharing policy (priority 0).
    #[default]
    Other,
    /// `SCHED_FIFO`, real-time first-in first-out (priority 1..=99).
    Fifo,
    /// `SCHED_RR`, real-time round-robin (priority 1..=99).
    Rr,
}

impl SchedPolicy {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedPolicy::Other => "other",
            SchedPolicy::Fifo => "fifo",
            SchedPolicy::Rr => "rr",
        }
    }

    /// Whether the policy is real-time (takes a priority 1..=99).
    pub fn is_realtime(self) -> bool {
        self != SchedPolicy::Other
    }
}

impl fmt::Display for SchedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[eal]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// Every lcore the EAL starts, sorted and distinct (includes the main lcore).
    pub lcores: Vec<u32>,
    /// The lcore that runs the control/stats loop; default: the lowest of `lcores`.
    pub main_lcore: u32,
    /// Memory to preallocate in MiB (`-m`); default 256.
    pub memory_mb: u32,
    /// Whether to use hugepages; default [`Hugepages::Auto`].
    pub hugepages: Hugepages,
    /// hugetlbfs mount to use (`--huge-dir`).
    pub huge_dir: Option<PathBuf>,
    /// `--file-prefix`; default `swqos`.
    pub file_prefix: String,
    /// `--log-level`.
    pub log_level: Option<LogLevel>,
    /// Arguments passed verbatim to the EAL after the generated ones.
    pub extra_args: Vec<String>,
}

/// `eal.hugepages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages if any are free; otherwise the dataplane runs with `--no-huge` and warns.
    #[default]
    Auto,
    /// Use hugepages; fail to start without them.
    Required,
    /// Never use hugepages (`--no-huge`).
    Off,
}

impl fmt::Display for Hugepages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hugepages::Auto => "auto",
            Hugepages::Required => "required",
            Hugepages::Off => "off",
        })
    }
}

/// `eal.log_level`: DPDK's log levels, most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// System is unusable.
    Emerg,
    /// Action must be taken immediately.
    Alert,
    /// Critical conditions.
    Crit,
    /// Error conditions.
    Err,
    /// Warning conditions.
    Warning,
    /// Normal but significant condition.
    Notice,
    /// Informational.
    Info,
    /// Debug-level messages.
    Debug,
}

impl LogLevel {
    /// The name DPDK's `--log-level` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Emerg => "emerg",
            LogLevel::Alert => "alert",
            LogLevel::Crit => "crit",
            LogLevel::Err => "err",
            LogLevel::Warning => "warning",
            LogLevel::Notice => "notice",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default `[shm] path`: a file in a directory of its own, which the data plane creates with
/// mode 0700 (never a file directly in the world-writable `/dev/shm`).
pub const DEFAULT_SHM_PATH: &str = "/dev/shm/swqos/segment";

/// `[shm]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmConfig {
    /// The segment's file; default [`DEFAULT_SHM_PATH`]. Its directory is private to the
    /// service user (mode 0700; the data plane creates it when missing).
    pub path: PathBuf,
    /// Number of submit rings, i.e. client processes attached at once; 1..=64, default 8.
    pub rings: u32,
    /// Slots per submit ring; a power of two in 16..=65536, default 256.
    pub ring_slots: u32,
}

/// One `[[mempool]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Unique name.
    pub name: String,
    /// Number of mbufs; at least 64, default 8191.
    pub mbufs: u32,
    /// Per-lcore cache; at most 512 and at most `mbufs / 1.5`, default 256.
    pub cache_size: u32,
    /// Data room per mbuf including headroom; 256..=65535, default 2176 (2048 + 128).
    pub data_room: u16,
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Unique name, used by `lcore.queues` and `lane.port`.
    pub name: String,
    /// The NIC or virtual device.
    pub device: PortDevice,
    /// RX queues; 0..=64, default 1.
    pub rx_queues: u16,
    /// TX queues; 1..=64, default 1.
    pub tx_queues: u16,
    /// RX ring size; a power of two in 64..=32768, default 1024.
    pub rx_descriptors: u16,
    /// TX ring size; a power of two in 64..=32768, default 1024.
    pub tx_descriptors: u16,
    /// MTU to set; 68..=9600. `None` keeps the device's.
    pub mtu: Option<u16>,
    /// MAC address to set. `None` keeps the device's.
    pub mac: Option<[u8; 6]>,
    /// Index into [`Config::mempools`] of the pool RX queues allocate from.
    pub mempool: usize,
    /// Whether to enable promiscuous mode; default false.
    pub promiscuous: bool,
}

/// `port.device`: what the EAL is told to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDevice {
    /// A PCI address, `DDDD:BB:DD.F` or `BB:DD.F` (passed with `-a`).
    Pci(String),
    /// A virtual device such as `net_pcap0,tx_pcap=/tmp/out.pcap` (passed with `--vdev`).
    Vdev {
        /// The driver and instance, before the first comma: `net_pcap0`.
        name: String,
        /// The driver arguments after the first comma; empty if none.
        args: String,
    },
}

impl PortDevice {
    /// The name `rte_eth_dev_get_port_by_name` expects: the PCI address or the vdev name.
    pub fn eal_name(&self) -> &str {
        match self {
            PortDevice::Pci(address) => address,
            PortDevice::Vdev { name, .. } => name,
        }
    }
}

/// The device string as written in the file (`-a` / `--vdev` argument).
impl fmt::Display for PortDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortDevice::Pci(address) => f.write_str(address),
            PortDevice::Vdev { name, args } if args.is_empty() => f.write_str(name),
            PortDevice::Vdev { name, args } => write!(f, "{name},{args}"),
        }
    }
}

/// One `[[lcore]]` of the lcore map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreConfig {
    /// The lcore id; in `eal.lcores`, not the main lcore.
    pub id: u32,
    /// What the lcore's loop does.
    pub role: LcoreRole,
    /// TX queues it owns ([`LcoreRole::Tx`]) or RX queues it polls ([`LcoreRole::Rx`]).
    pub queues: Vec<QueueRef>,
    /// The kernel exception path this (tx) lcore bridges, if any.
    pub bridge: Option<BridgeConfig>,
    /// How the lcore's loop spends the polls that find no work (`poll`; default busy).
    pub poll: PollMode,
}

/// `lcore.poll`: what an lcore does when its polls find no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// `"busy"` (default, production): poll without pause, always; the lcore's CPU is 100%
    /// busy and a submission waits at most one poll.
    #[default]
    Busy,
    /// `"adaptive"` (shared hosts, laptops, containers): after `idle_polls` consecutive empty
    /// polls, pause (`rte_pause`) between polls, then sleep between polls, 1 us at first and
    /// doubling up to `max_sleep_us`; any work goes back to busy polling. The first
    /// submission after an idle spell waits at most about `max_sleep_us` (plus the kernel's
    /// wake-up latency).
    Adaptive(AdaptivePoll),
}

/// The tunables of [`PollMode::Adaptive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptivePoll {
    /// Consecutive empty polls before the lcore backs off (`idle_polls`, 1..=
    /// [`MAX_IDLE_POLLS`]; default [`DEFAULT_IDLE_POLLS`]). As many again are spent pausing
    /// before the first sleep.
    pub idle_polls: u32,
    /// The longest sleep between two polls, in microseconds (`max_sleep_us`, 1..=
    /// [`MAX_SLEEP_US`]; default [`DEFAULT_MAX_SLEEP_US`]): what the first submission after
    /// an idle spell may wait.
    pub max_sleep_us: u32,
}

impl Default for AdaptivePoll {
    fn default() -> Self {
        AdaptivePoll {
            idle_polls: DEFAULT_IDLE_POLLS,
            max_sleep_us: DEFAULT_MAX_SLEEP_US,
        }
    }
}

impl PollMode {
    /// The name used in the file (`busy`, `adaptive`).
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Busy => "busy",
            PollMode::Adaptive(_) => "adaptive",
        }
    }
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollMode::Busy => f.write_str("busy"),
            PollMode::Adaptive(a) => write!(
                f,
                "adaptive (idle_polls {}, max_sleep_us {})",
                a.idle_polls, a.max_sleep_us
            ),
        }
    }
}

/// Default `lcore.idle_polls`: a few hundred microseconds of empty polls on a typical host.
pub const DEFAULT_IDLE_POLLS: u32 = 2000;
/// Largest `lcore.idle_polls`.
pub const MAX_IDLE_POLLS: u32 = 100_000_000;
/// Default `lcore.max_sleep_us`.
pub const DEFAULT_MAX_SLEEP_US: u32 = 100;
/// Largest `lcore.max_sleep_us` (10 ms).
pub const MAX_SLEEP_US: u32 = 10_000;

/// `lcore.bridge`: the lcore forwards every frame between a NIC port and a kernel interface
/// (a `net_tap` or `virtio_user` port) both ways, so the host's IP stack (ARP, ICMP, the relays'
/// TCP connections) reaches the wire through the DPDK-owned NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Index into [`Config::ports`] of the NIC.
    pub nic: usize,
    /// Index into [`Config::ports`] of the kernel interface.
    pub kernel: usize,
    /// The RX queue polled on both ports (the lcore's own TX queues carry the frames out).
    pub queue: u16,
}

/// `lcore.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LcoreRole {
    /// Pops the shared-memory submit rings and sends lane packets on its TX queues.
    Tx,
    /// Polls NIC RX queues.
    Rx,
}

impl fmt::Display for LcoreRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LcoreRole::Tx => "tx",
            LcoreRole::Rx => "rx",
        })
    }
}

/// A queue of a port, as listed in `lcore.queues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueRef {
    /// Index into [`Config::ports`].
    pub port: usize,
    /// Queue index on that port (TX or RX by the lcore's role).
    pub queue: u16,
}

/// One `[[lane]]`: a destination a submission can be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneConfig {
    /// Unique name, at most 31 bytes of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// Index into [`Config::ports`] of the port the lane sends on.
    pub port: usize,
    /// The kind and its settings.
    pub kind: LaneKind,
}

/// `lane.kind` with the kind's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneKind {
    /// The transaction as the payload of one UDP datagram.
    Udp(UdpLane),
    /// An HTTP relay reached over kernel TCP connections (the control plane's).
    Http(HttpLane),
    /// A relay reached over QUIC, whose connection the data plane owns.
    Quic(QuicLane),
}

impl fmt::Display for LaneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LaneKind::Udp(_) => "udp",
            LaneKind::Http(_) => "http",
            LaneKind::Quic(_) => "quic",
        })
    }
}

/// The settings of a [`LaneKind::Http`] lane.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpLane {
    /// The relay's request format.
    pub provider: Provider,
    /// The relay's IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// The relay's TCP port.
    pub dst_port: u16,
    /// `Host` header value; default `dst_ip` (with `:dst_port` unless 80).
    pub host: String,
    /// Path override (Lightspeed's URL path, or a non-standard relay path).
    pub path: Option<String>,
    /// The API token, from `token` or the environment variable `token_env` (never logged).
    pub token: Option<Secret>,
    /// Kernel TCP connections the control plane keeps open to the relay.
    pub connections: u16,
    /// `tls = true`: HTTPS (the control plane's rustls handshake; records sealed by both
    /// processes with `swqos-tls`).
    pub tls: Option<TlsLane>,
}

/// The TLS settings of an HTTPS lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLane {
    /// The name sent as SNI and verified against the relay's certificate: `server_name`, else
    /// `host` without its port, else `dst_ip`.
    pub server_name: String,
    /// Extra PEM trust anchors (absolute paths), added to the bundled and system roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any certificate (for tests; the control plane warns).
    pub insecure_skip_verify: bool,
}

impl HttpLane {
    /// The lane's request template: the one function both the data plane (its delegated sends)
    /// and the control plane (its mirror writes and fallback sends) build the lane's requests
    /// with, so both write the same bytes for the same transaction.
    pub fn request_template(&self) -> Result<RequestTemplate, RelayError> {
        RequestTemplate::new(
            self.provider,
            Endpoint {
                host: &self.host,
                path: self.path.as_deref(),
                token: self.token.as_ref().map(|t| t.expose()),
            },
        )
    }
}

impl fmt::Debug for HttpLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLane")
            .field("provider", &self.provider)
            .field("dst_ip", &self.dst_ip)
            .field("dst_port", &self.dst_port)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("token", &self.token)
            .field("connections", &self.connections)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A secret string (an API token): `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for building requests only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The settings of a [`LaneKind::Quic`] lane.
#[derive(Clone, PartialEq, Eq)]
pub struct QuicLane {
    /// The relay's protocol (ALPN, server name, identity, streams).
    pub provider: QuicProvider,
    /// Source IPv4 address (the data plane's own, on the lane's port).
    pub src_ip: Ipv4Addr,
    /// Source UDP port of the lane's connection (default 20000 + the lane's index).
    pub src_port: u16,
    /// The relay's IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// The relay's UDP port (default: the provider's).
    pub dst_port: u16,
    /// Destination MAC: the relay's, or the next-hop gateway's when off-subnet.
    pub dst_mac: [u8; 6],
    /// The server name sent as SNI and verified against the relay's certificate: `server_name`,
    /// else the provider's, else `dst_ip`.
    pub server_name: String,
    /// The API key, from `token` or the environment variable `token_env` (never logged).
    pub token: Option<Secret>,
    /// The Solana keypair file (JSON array of 64 bytes) whose key signs the client certificate
    /// (providers that identify the client by its Solana key).
    pub keypair_file: Option<PathBuf>,
    /// MEV protection, for providers that offer it.
    pub mev: bool,
    /// Extra PEM trust anchors (absolute paths), added to the bundled roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any server certificate (for tests; the data plane warns).
    pub insecure_skip_verify: bool,
    /// The id of the http lane a transaction goes to when this lane cannot send it (no
    /// connection): Astralane's "QUIC with HTTP fallback". Its completion still carries this
    /// lane.
    pub fallback: Option<usize>,
}

impl fmt::Debug for QuicLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicLane")
            .field("provider", &self.provider)
            .field("src", &(self.src_ip, self.src_port))
            .field("dst", &(self.dst_ip, self.dst_port))
            .field("server_name", &self.server_name)
            .field("token", &self.token)
            .field("keypair_file", &self.keypair_file)
            .field("mev", &self.mev)
            .field("ca_files", &self.ca_files)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("fallback", &self.fallback)
            .finish()
    }
}

/// The settings of a [`LaneKind::Udp`] lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLane {
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Source UDP port, non-zero.
    pub src_port: u16,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// Destination UDP port, non-zero.
    pub dst_port: u16,
    /// Destination MAC: the receiver's, or the next-hop gateway's when off-subnet.
    pub dst_mac: [u8; 6],
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::io(path, err))?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = error::Source::new(text, path);
        let raw: raw::RawConfig = toml::from_str(text).map_err(|err| source.toml_error(&err))?;
        resolve::resolve(raw, &source)
    }

    /// EAL arguments for this configuration, without `argv[0]`.
    ///
    /// Adds `--no-huge` only when `eal.hugepages = "off"`; the dataplane decides
    /// `"auto"` at run time and calls [`Config::eal_args_with`].
    pub fn eal_args(&self) -> Vec<String> {
        self.eal_args_with(false)
    }

    /// EAL arguments, adding `--no-huge` if `no_huge` is true or `eal.hugepages = "off"`.
    ///
    /// In order: `-l`, `--main-lcore`, `-m`, `--file-prefix`, `--huge-dir` (unless running
    /// without hugepages), `--no-huge`, `--log-level`, `-a` per PCI port and `--vdev` per virtual
    /// port in port order, `--no-pci` when no port is a PCI device, then `eal.extra_args`.
    pub fn eal_args_with(&self, no_huge: bool) -> Vec<String> {
        let eal = &self.eal;
        let no_huge = no_huge || eal.hugepages == Hugepages::Off;
        let mut args = vec![
            "-l".to_owned(),
            syntax::format_lcore_list(&eal.lcores),
            "--main-lcore".to_owned(),
            eal.main_lcore.to_string(),
            "-m".to_owned(),
            eal.memory_mb.to_string(),
            "--file-prefix".to_owned(),
            eal.file_prefix.clone(),
        ];
        if let (Some(dir), false) = (&eal.huge_dir, no_huge) {
            args.push("--huge-dir".to_owned());
            args.push(dir.display().to_string());
        }
        if no_huge {
            args.push("--no-huge".to_owned());
        } else if !eal.extra_args.iter().any(|a| decides_hugepage_files(a)) {
            // Hugepage files are unlinked as soon as they are mapped, so none outlives the
            // process, however it ends (`extra_args` may say otherwise: `--huge-unlink=never`).
            args.push("--huge-unlink".to_owned());
        }
        if let Some(level) = eal.log_level {
            args.push("--log-level".to_owned());
            args.push(level.as_str().to_owned());
        }
        let mut any_pci = false;
        for port in &self.ports {
            match &port.device {
                PortDevice::Pci(address) => {
                    any_pci = true;
                    args.push("-a".to_owned());
                    args.push(address.clone());
                }
                PortDevice::Vdev { .. } => {
                    args.push("--vdev".to_owned());
                    args.push(port.device.to_string());
                }
            }
        }
        if !any_pci {
            args.push("--no-pci".to_owned());
        }
        args.extend(eal.extra_args.iter().cloned());
        args
    }

    /// Index into [`Config::lanes`] of the lane called `name`.
    pub fn lane_by_name(&self, name: &str) -> Option<usize> {
        self.lanes.iter().position(|lane| lane.name == name)
    }

    /// Index into [`Config::ports`] of the port called `name`.
    pub fn port_by_name(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|port| port.name == name)
    }

    /// Index into [`Config::mempools`] of the mempool called `name`.
    pub fn mempool_by_name(&self, name: &str) -> Option<usize> {
        self.mempools.iter().position(|pool| pool.name == name)
    }

    /// The lcores of the map with role `role`, in file order.
    pub fn lcores_with_role(&self, role: LcoreRole) -> impl Iterator<Item = &LcoreConfig> + '_ {
        self.lcores.iter().filter(move |lcore| lcore.role == role)
    }
}

/// Formats a MAC address as `xx:xx:xx:xx:xx:xx`, for logs.
pub fn format_mac(mac: &[u8; 6]) -> String {
    syntax::format_mac(mac)
}

/// Whether an extra EAL argument already decides what happens to hugepage files
/// (`--in-memory` implies `--huge-unlink`; `--huge-unlink[=...]` is the user's own choice).
fn decides_hugepage_files(arg: &str) -> bool {
    arg == "--in-memory" || arg.starts_with("--huge-unlink")
}
