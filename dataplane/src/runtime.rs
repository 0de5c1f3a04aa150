//! The dataplane process from start to exit, in the order it happens:
//! config checks, EAL, mempools, ports, the shared segment, lcore launch, the main loop
//! (heartbeat, signals, progress), then drain, join, report and an orderly teardown.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::{Eal, LcoreHandle, LcoreId, Mempool, Port, PortConf};
use dpdk_config::{Config, LcoreRole, PortDevice};
use swqos_rt::Policy;
use swqos_shm::layout::{LaneInfo, LaneKind as ShmLaneKind, Layout, State, MAX_TX_SIZE};
use swqos_shm::ring::{CompletionProducer, HandoffProducer, SubmitConsumer};
use swqos_shm::stats::{
    self, role, Counter, PortCounter, PortStatsWriter, StatsWriter, N_PORT_COUNTERS,
};
use swqos_shm::{ControlSegment, Segment};
use tracing::{error, info, warn};

use crate::fast::FastPath;
use crate::hugepages::{self, Decision, HugepageState};
use crate::idle::Idle;
use crate::lanes::{LaneSend, LaneTable, PortChecksums};
use crate::quic::{QuicLaneSetup, QuicLanes};
use crate::report::Report;
use crate::rx::RxWorker;
use crate::tx::{Bridge, RingPair, TxPath, TxWorker, TxWorkerParts};

/// Headroom DPDK reserves at the front of every mbuf.
const MBUF_HEADROOM: u32 = 128;
/// Largest frame a UDP lane sends: Ethernet + IPv4 + UDP + the largest transaction.
const MAX_UDP_FRAME: u32 = 42 + MAX_TX_SIZE as u32;

/// Knobs of one run that are not in the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seconds between progress lines (0: none).
    pub stats_interval: Duration,
    /// How long a full NIC queue may hold packets before they are dropped.
    pub tx_timeout: Duration,
    /// How long shutdown waits for rings and queues to drain.
    pub drain_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stats_interval: Duration::from_secs(5),
            tx_timeout: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Why the dataplane could not run; the message is the whole story for the operator.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

impl From<dpdk::DpdkError> for RunError {
    fn from(e: dpdk::DpdkError) -> Self {
        RunError(e.to_string())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, RunError> {
    Err(RunError(msg.into()))
}

// The config allows as many relay connections as the session table has entries.
const _: () = assert!(dpdk_config::MAX_RELAY_CONNECTIONS == swqos_shm::layout::MAX_SESSIONS);

/// Longest mempool name DPDK accepts (`RTE_MEMPOOL_NAMESIZE` less its "MP_" prefix).
const MAX_MEMPOOL_NAME: usize = 24;

/// Checks what the config parser cannot know: frame sizes against MTUs and mbuf sizes, and
/// DPDK's name limits.
pub fn check_sizes(config: &Config) -> Result<(), RunError> {
    for pool in &config.mempools {
        if pool.name.len() > MAX_MEMPOOL_NAME {
            return err(format!(
                "mempool name `{}` is longer than DPDK's {MAX_MEMPOOL_NAME}-byte limit",
                pool.name
            ));
        }
    }
    for lane in &config.lanes {
        let port = &config.ports[lane.port];
        let mtu = port.mtu.unwrap_or(1500) as u32;
        let pool = &config.mempools[port.mempool];
        if let dpdk_config::LaneKind::Http(_) = lane.kind {
            // Delegated sends fill segments up to the connection's MSS, at most a full frame.
            if (pool.data_room as u32) < MBUF_HEADROOM + mtu + 14 {
                return err(format!(
                    "lane {}: mempool {} has data_room {}, but the relay lane's TCP segments on \
                     port {} (MTU {mtu}) need {} ({MBUF_HEADROOM} bytes of headroom and a full frame)",
                    lane.name,
                    pool.name,
                    pool.data_room,
                    port.name,
                    MBUF_HEADROOM + mtu + 14
                ));
            }
            continue;
        }
        if mtu + 14 < MAX_UDP_FRAME {
            return err(format!(
                "lane {}: port {} has MTU {mtu}, but a {MAX_TX_SIZE}-byte transaction needs an MTU of at least {}",
                lane.name,
                port.name,
                MAX_UDP_FRAME - 14
            ));
        }
        if (pool.data_room as u32) < MBUF_HEADROOM + MAX_UDP_FRAME {
            return err(format!(
                "mempool {}: data_room {} cannot hold a {MAX_UDP_FRAME}-byte frame after {MBUF_HEADROOM} bytes of headroom (use at least {})",
                pool.name,
                pool.data_room,
                MBUF_HEADROOM + MAX_UDP_FRAME
            ));
        }
    }
    Ok(())
}

/// Creates the folders of `tx_pcap=` / `rx_pcap=` files named in pcap vdev strings.
fn prepare_pcap_dirs(config: &Config) -> Result<(), RunError> {
    for port in &config.ports {
        let PortDevice::Vdev { name, args } = &port.device else {
            continue;
        };
        if !name.starts_with("net_pcap") {
            continue;
        }
        for kv in args.split(',') {
            if let Some(("tx_pcap" | "rx_pcap", file)) = kv.split_once('=') {
                if let Some(dir) = Path::new(file)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        RunError(format!(
                            "port {}: cannot create {}: {e}",
                            port.name,
                            dir.display()
                        ))
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// One lcore's work, built and ready to launch.
pub enum Worker {
    /// A submit/TX lcore.
    Tx(Box<TxWorker>),
    /// A NIC RX lcore.
    Rx(Box<RxWorker>),
}

/// A launched worker: its lcore and the handle its loop's result comes back on.
type Launched = (u32, LcoreHandle<Result<(), String>>);

/// A dataplane that is set up (EAL, pools, ports started, segment created, workers built) but
/// not yet running. Fields drop in order: workers and segment first, EAL last.
pub struct Dataplane {
    workers: Vec<(u32, Worker)>,
    /// The session table and hand-off rings, in the file clients never map (dropped before the
    /// segment: its directory goes with the segment, once empty).
    ctl: Arc<ControlSegment>,
    seg: Arc<Segment>,
    ports: Vec<Port>,
    /// Kept alive until the ports that draw from them are closed.
    _pools: Vec<Arc<Mempool>>,
    config: Config,
    opts: RunOptions,
    tsc_hz: u64,
    lane_count: usize,
    _eal: Eal,
}

impl Dataplane {
    /// Initialises EAL, mempools and ports, creates the shared segment and builds every worker.
    pub fn setup(config: &Config, opts: &RunOptions) -> Result<Dataplane, RunError> {
        check_sizes(config)?;
        prepare_pcap_dirs(config)?;
        let eal = init_eal(config)?;
        let tsc_hz = dpdk::tsc_hz();
        // Mempools, then ports (each port's RX queues draw from its configured pool).
        let mut pools = Vec::new();
        for p in &config.mempools {
            let pool = Mempool::create(&p.name, p.mbufs, p.cache_size, p.data_room, -1)?;
            pools.push(Arc::new(pool));
        }
        let mut ports = Vec::new();
        let mut macs = Vec::new();
        let mut checksums = Vec::new();
        for p in &config.ports {
            let carries_lanes = config
                .lanes
                .iter()
                .any(|l| config.ports[l.port].name == p.name);
            let (port, mac, cs) = start_port(p, carries_lanes, &pools[p.mempool])?;
            ports.push(port);
            macs.push(mac);
            checksums.push(cs);
        }
        let lanes = Arc::new(LaneTable::new(config, &macs, &checksums));
        for line in LaneTable::describe(config) {
            info!("{line}");
        }
        let (seg, ctl) = create_segments(config, tsc_hz)?;
        let mut built = Vec::new();
        let mut setup = WorkerSetup {
            config,
            opts,
            tsc_hz,
            seg: &seg,
            ctl: &ctl,
            lanes: &lanes,
            pools: &pools,
            ports: &mut ports,
        };
        for (index, lc) in config.lcores.iter().enumerate() {
            built.push((lc.id, setup.worker(index, lc)?));
        }
        Ok(Dataplane {
            workers: built,
            seg,
            ctl,
            ports,
            _pools: pools,
            config: config.clone(),
            opts: opts.clone(),
            tsc_hz,
            lane_count: lanes.len(),
            _eal: eal,
        })
    }

    /// The shared segment.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The control file (session table, hand-off rings).
    pub fn control_segment(&self) -> &Arc<ControlSegment> {
        &self.ctl
    }

    /// Takes the built workers, for driving them directly (tests); `run` then has none to launch.
    pub fn take_workers(&mut self) -> Vec<(u32, Worker)> {
        std::mem::take(&mut self.workers)
    }

    /// Launches the workers on their lcores, opens the segment to clients, and runs the main
    /// loop until `stop` is set or a worker dies; then drains, joins and reports.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> Result<Report, RunError> {
        let seg = self.seg.clone();
        let running = Arc::new(AtomicUsize::new(0));
        let handles = self.launch(&stop, &running)?;
        info!(
            "running: {} lcore(s), {} lane(s), shared memory {} ({} rings x {} slots)",
            handles.len(),
            self.lane_count,
            self.config.shm.path.display(),
            self.config.shm.rings,
            self.config.shm.ring_slots
        );
        seg.set_state(State::Running);
        let mut port_writers: Vec<PortStatsWriter> = (0..self.ports.len())
            .filter_map(|i| PortStatsWriter::new(seg.clone(), i))
            .collect();
        // The main lcore sleeps 1 ms per turn: how late it wakes is the scheduling latency of
        // its CPU, reported with the progress lines and at exit.
        let wakeups = swqos_rt::LatencyStats::default();
        let failed = self.main_loop(&stop, &running, handles.len(), &mut port_writers, &wakeups);

        // Shutdown: refuse new submissions, let the workers drain, then join them.
        seg.set_state(State::Draining);
        stop.store(true, Ordering::SeqCst);
        info!("stopping: draining submit rings and NIC queues");
        let mut panics = Vec::new();
        for (lcore, h) in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(why)) => panics.push(format!("lcore {lcore}: {why}")),
                Err(p) => panics.push(format!("lcore {lcore} panicked: {p}")),
            }
        }
        publish_port_stats(&self.ports, &mut port_writers);
        let mut report = Report::collect(&self.config, &seg, &self.ports, self.tsc_hz);
        for port in &mut self.ports {
            if let Err(e) = port.stop() {
                warn!("{e}");
            }
        }
        seg.set_state(State::Stopped);
        report.main_wakeup_max_us = wakeups.max_ns() / 1000;
        report.failures.extend(failed);
        report.failures.extend(panics);
        Ok(report)
    }

    /// Launches every worker on its lcore (with `[tuning] lcore_policy` set on the lcore
    /// itself); `running` counts the ones still in their loop.
    fn launch(
        &mut self,
        stop: &Arc<AtomicBool>,
        running: &Arc<AtomicUsize>,
    ) -> Result<Vec<Launched>, RunError> {
        let drain = ticks(self.opts.drain_timeout, self.tsc_hz);
        let quiet = ticks(Duration::from_millis(20), self.tsc_hz);
        let tuning = &self.config.tuning;
        let policy = match tuning.lcore_policy {
            dpdk_config::SchedPolicy::Other => None,
            dpdk_config::SchedPolicy::Fifo => Some(Policy::Fifo(tuning.lcore_priority)),
            dpdk_config::SchedPolicy::Rr => Some(Policy::Rr(tuning.lcore_priority)),
        };
        let required = tuning.required;
        let mut handles = Vec::new();
        for (lcore, worker) in self.take_workers() {
            let poll = self
                .config
                .lcores
                .iter()
                .find(|l| l.id == lcore)
                .map_or(dpdk_config::PollMode::Busy, |l| l.poll);
            info!("lcore {lcore}: poll {poll}");
            let stop = stop.clone();
            running.fetch_add(1, Ordering::SeqCst);
            let guard = RunningGuard(running.clone());
            let handle = dpdk::lcore::launch(LcoreId(lcore), move || -> Result<(), String> {
                let _guard = guard;
                // The policy is per thread: set it on the lcore itself, before the loop.
                if let Some(policy) = policy {
                    let step = swqos_rt::set_thread_policy(&format!("lcore {lcore}"), policy);
                    tuning_step(step, required).map_err(|e| e.0)?;
                }
                // Short sleeps end when asked, not up to 50 us later (the default slack).
                if poll != dpdk_config::PollMode::Busy {
                    let step = swqos_rt::set_timer_slack(&format!("lcore {lcore}"), 1);
                    tuning_step(step, false).map_err(|e| e.0)?;
                }
                let idle = Idle::new(poll);
                match worker {
                    Worker::Tx(w) => tx_loop(*w, &stop, idle, drain, quiet),
                    Worker::Rx(w) => rx_loop(*w, &stop, idle),
                }
                Ok(())
            })?;
            handles.push((lcore, handle));
        }
        Ok(handles)
    }

    /// The main loop: heartbeat every millisecond, port counters into the segment every 100 ms,
    /// progress now and then, until told to stop or a worker dies (then gives why).
    fn main_loop(
        &self,
        stop: &AtomicBool,
        running: &AtomicUsize,
        lcores: usize,
        port_writers: &mut [PortStatsWriter],
        wakeups: &swqos_rt::LatencyStats,
    ) -> Option<String> {
        let seg = &self.seg;
        let mut last_ports = Instant::now();
        publish_port_stats(&self.ports, port_writers);
        let mut last_print = Instant::now();
        let mut last = Totals::read(seg);
        while !stop.load(Ordering::Relaxed) {
            seg.heartbeat();
            if seg.is_damaged() || self.ctl.is_damaged() {
                let why = truncated_message(&self.config);
                error!("{why}");
                return Some(why);
            }
            if running.load(Ordering::SeqCst) < lcores {
                return Some("an lcore stopped unexpectedly".to_string());
            }
            if last_ports.elapsed() >= PORT_STATS_INTERVAL {
                publish_port_stats(&self.ports, port_writers);
                last_ports = Instant::now();
            }
            let interval = self.opts.stats_interval;
            if !interval.is_zero() && last_print.elapsed() >= interval {
                let now = Totals::read(seg);
                let secs = last_print.elapsed().as_secs_f64();
                info!(
                    "tx {:.0} pkt/s, {:.0} submissions/s, totals: {} sent, {} rejected, {} dropped; main-lcore wake-up latency max {} us",
                    (now.tx_packets - last.tx_packets) as f64 / secs,
                    (now.submissions - last.submissions) as f64 / secs,
                    now.tx_packets,
                    now.rejected,
                    now.dropped,
                    wakeups.max_ns() / 1000
                );
                last = now;
                last_print = Instant::now();
            }
            let slept = Instant::now();
            std::thread::sleep(MAIN_LOOP_PERIOD);
            wakeups.record(slept.elapsed().saturating_sub(MAIN_LOOP_PERIOD).as_nanos() as u64);
        }
        None
    }
}

/// Runs the dataplane until `stop` is set, then drains and tears down. Returns the final report.
pub fn run(config: &Config, opts: &RunOptions, stop: Arc<AtomicBool>) -> Result<Report, RunError> {
    Dataplane::setup(config, opts)?.run(stop)
}

/// EAL with or without hugepages (as `[eal]` and the host allow), then `mlockall`; checks that
/// every configured lcore is an EAL worker.
fn init_eal(config: &Config) -> Result<Eal, RunError> {
    let no_huge = match hugepages::decide(&config.eal, HugepageState::read()).map_err(RunError)? {
        Decision::Huge => false,
        Decision::NoHuge(None) => true,
        Decision::NoHuge(Some(why)) => {
            warn!("WARNING: {why}");
            true
        }
    };
    let args = config.eal_args_with(no_huge);
    info!("EAL arguments: {}", args.join(" "));
    let eal = Eal::init(&args)?;
    // After EAL: its memory is mapped; MCL_FUTURE covers everything allocated from now on.
    if config.tuning.mlockall {
        tuning_step(swqos_rt::lock_memory(), config.tuning.required)?;
    }
    let workers: Vec<LcoreId> = dpdk::lcore::worker_lcores();
    for l in &config.lcores {
        if !workers.contains(&LcoreId(l.id)) {
            return err(format!("lcore {} is not an EAL worker lcore", l.id));
        }
    }
    Ok(eal)
}

/// Configures and starts port `p`: its queues, checksum offloads where the NIC has them (for a
/// port that carries lanes), MAC and promiscuous mode. Gives the port, the MAC lane frames
/// are sent from and which checksums the NIC computes.
fn start_port(
    p: &dpdk_config::PortConfig,
    carries_lanes: bool,
    pool: &Mempool,
) -> Result<(Port, [u8; 6], PortChecksums), RunError> {
    let named = |e: dpdk::DpdkError| RunError(format!("port {} ({}): {e}", p.name, p.device));
    let mut port = Port::by_name(p.device.eal_name()).map_err(named)?;
    let info = port.info()?;
    let cs = PortChecksums {
        ipv4: carries_lanes && info.supports_tx(dpdk::offload::TX_IPV4_CKSUM),
        udp: carries_lanes && info.supports_tx(dpdk::offload::TX_UDP_CKSUM),
    };
    let mut tx_offloads = 0;
    if cs.ipv4 {
        tx_offloads |= dpdk::offload::TX_IPV4_CKSUM;
    }
    if cs.udp {
        tx_offloads |= dpdk::offload::TX_UDP_CKSUM;
    }
    let conf = PortConf {
        rx_queues: p.rx_queues,
        tx_queues: p.tx_queues,
        rx_descriptors: p.rx_descriptors,
        tx_descriptors: p.tx_descriptors,
        mtu: p.mtu,
        tx_offloads,
    };
    port.configure(&conf, pool).map_err(named)?;
    // A configured MAC is the source of every lane frame; a port that cannot take it as its
    // own (net_pcap, say) still sends with it.
    let mut mac = port.mac()?;
    if let Some(want) = p.mac {
        if let Err(e) = port.set_mac(want) {
            warn!(
                "port {}: cannot set MAC ({e}); lane frames use it as source anyway",
                p.name
            );
        }
        mac = want;
    }
    if p.promiscuous {
        port.set_promiscuous(true)?;
    }
    port.start()?;
    let how = |offloaded: bool| if offloaded { "offloaded" } else { "software" };
    info!(
        "port {} ({}): driver {}, mac {}, checksums ipv4 {} udp {}",
        p.name,
        p.device,
        info.driver_name,
        dpdk_config::format_mac(&mac),
        how(cs.ipv4),
        how(cs.udp),
    );
    Ok((port, mac, cs))
}

/// The shared segment (one stats block per configured lcore and per port, rings per `[shm]`)
/// and the control file beside it, with the relay lanes' template fingerprints published.
fn create_segments(
    config: &Config,
    tsc_hz: u64,
) -> Result<(Arc<Segment>, Arc<ControlSegment>), RunError> {
    let layout = Layout::new(
        config.shm.rings,
        config.shm.ring_slots,
        config.lcores.len() as u32,
        config.ports.len() as u32,
    )
    .map_err(RunError)?;
    let port_names: Vec<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
    let lane_info: Vec<LaneInfo> = config
        .lanes
        .iter()
        .map(|l| {
            let kind = match l.kind {
                dpdk_config::LaneKind::Udp(_) => ShmLaneKind::Udp,
                dpdk_config::LaneKind::Http(_) => ShmLaneKind::Http,
                dpdk_config::LaneKind::Quic(_) => ShmLaneKind::Quic,
            };
            LaneInfo::new(&l.name, kind)
        })
        .collect();
    let seg = Arc::new(
        Segment::create(&config.shm.path, layout, &lane_info, &port_names, tsc_hz)
            .map_err(|e| RunError(e.to_string()))?,
    );
    let ctl = Arc::new(ControlSegment::create(&seg).map_err(|e| RunError(e.to_string()))?);
    publish_fingerprints(config, &ctl)?;
    Ok((seg, ctl))
}

/// What building the lcores' workers draws on: rings are dealt to TX lcores round-robin; each
/// lcore takes its configured queues from `ports`.
struct WorkerSetup<'a> {
    config: &'a Config,
    opts: &'a RunOptions,
    tsc_hz: u64,
    seg: &'a Arc<Segment>,
    ctl: &'a Arc<ControlSegment>,
    lanes: &'a Arc<LaneTable>,
    pools: &'a [Arc<Mempool>],
    ports: &'a mut Vec<Port>,
}

impl WorkerSetup<'_> {
    /// The worker of configured lcore number `index`.
    fn worker(&mut self, index: usize, lc: &dpdk_config::LcoreConfig) -> Result<Worker, RunError> {
        let stats_role = match lc.role {
            LcoreRole::Tx => role::TX,
            LcoreRole::Rx => role::RX,
        };
        let writer = StatsWriter::new(self.seg.clone(), index, lc.id, stats_role)
            .ok_or_else(|| RunError(format!("stats block {index} unavailable")))?;
        match lc.role {
            LcoreRole::Tx => Ok(Worker::Tx(Box::new(self.tx_worker(index, lc, writer)?))),
            LcoreRole::Rx => {
                let mut queues = Vec::new();
                for q in &lc.queues {
                    queues.push(self.take_rx_queue(q.port, q.queue)?);
                }
                Ok(Worker::Rx(Box::new(RxWorker::new(queues, writer))))
            }
        }
    }

    /// A TX lcore's worker: its share of the submit rings, its TX queues, its exception-path
    /// bridge and fast path if it has them.
    fn tx_worker(
        &mut self,
        index: usize,
        lc: &dpdk_config::LcoreConfig,
        stats: StatsWriter,
    ) -> Result<TxWorker, RunError> {
        let config = self.config;
        let tx_lcores: Vec<usize> = (0..config.lcores.len())
            .filter(|&i| config.lcores[i].role == LcoreRole::Tx)
            .collect();
        let nth = tx_lcores.iter().position(|&i| i == index).unwrap_or(0);
        let mut rings = Vec::new();
        for r in (nth..config.shm.rings as usize).step_by(tx_lcores.len()) {
            let submit = SubmitConsumer::new(self.seg.clone(), r)
                .ok_or_else(|| RunError(format!("ring {r} taken twice")))?;
            let complete = CompletionProducer::new(&submit);
            rings.push(RingPair { submit, complete });
        }
        let mut paths = Vec::new();
        let mut path_ports = Vec::new();
        for q in &lc.queues {
            let queue = self.ports[q.port].take_tx_queue(q.queue).ok_or_else(|| {
                RunError(format!(
                    "tx queue {} of port {} taken twice",
                    q.queue, config.ports[q.port].name
                ))
            })?;
            paths.push(TxPath::new(queue));
            path_ports.push(q.port);
        }
        let pool = lc
            .queues
            .first()
            .map(|q| self.pools[config.ports[q.port].mempool].clone())
            .unwrap_or_else(|| self.pools[0].clone());
        let bridge = match lc.bridge {
            None => None,
            Some(b) => Some(self.bridge(lc.id, b, &path_ports)?),
        };
        let relays = self.lanes.relay_mask() != 0;
        let fast = match lc.bridge {
            Some(b) if relays => Some(fast_path(config, self.ctl.clone(), self.tsc_hz, b.nic)?),
            _ => None,
        };
        let quic = match lc.bridge {
            Some(b) if self.lanes.quic_mask() != 0 => Some(quic_lanes(config, self.lanes, b.nic)?),
            _ => None,
        };
        TxWorker::new(TxWorkerParts {
            rings,
            paths,
            path_ports,
            lanes: self.lanes.clone(),
            pool,
            stats,
            tx_timeout_ticks: ticks(self.opts.tx_timeout, self.tsc_hz),
            bridge,
            handoff: relays.then(|| HandoffProducer::new(self.ctl.clone(), index)),
            fast,
            quic,
            ctl: self.ctl.clone(),
        })
        .map_err(|e| RunError(format!("lcore {}: {e}", lc.id)))
    }

    /// The exception-path bridge of lcore `lcore`: RX queues of the NIC port and its kernel
    /// interface.
    fn bridge(
        &mut self,
        lcore: u32,
        b: dpdk_config::BridgeConfig,
        path_ports: &[usize],
    ) -> Result<Bridge, RunError> {
        let nic_rx = self.take_rx_queue(b.nic, b.queue)?;
        let kernel_rx = self.take_rx_queue(b.kernel, b.queue)?;
        let names = &self.config.ports;
        info!(
            "lcore {lcore} bridges port {} <-> kernel interface {}",
            names[b.nic].name, names[b.kernel].name
        );
        Bridge::new(nic_rx, kernel_rx, b.nic, b.kernel, path_ports)
            .map_err(|e| RunError(format!("lcore {lcore}: {e}")))
    }

    fn take_rx_queue(&mut self, port: usize, queue: u16) -> Result<dpdk::RxQueue, RunError> {
        self.ports[port].take_rx_queue(queue).ok_or_else(|| {
            RunError(format!(
                "rx queue {queue} of port {} taken twice",
                self.config.ports[port].name
            ))
        })
    }
}

/// The delegated-send state of a bridging TX lcore sending on port `nic`: the relay lanes'
/// addresses and templates.
fn fast_path(
    config: &Config,
    ctl: Arc<ControlSegment>,
    tsc_hz: u64,
    nic: usize,
) -> Result<FastPath, RunError> {
    let mut relays = Vec::new();
    let mut templates = Vec::new();
    for lane in &config.lanes {
        let dpdk_config::LaneKind::Http(h) = &lane.kind else {
            templates.push(None);
            continue;
        };
        relays.push((h.dst_ip, h.dst_port));
        templates.push(Some(
            h.request_template()
                .map_err(|e| RunError(format!("lane {}: {e}", lane.name)))?,
        ));
    }
    let max_frame = config.ports[nic].mtu.unwrap_or(1500) as usize + 14;
    Ok(FastPath::new(ctl, relays, templates, tsc_hz, max_frame))
}

/// The QUIC lanes of the bridging TX lcore of port `nic` (config checks put every QUIC lane
/// there): TLS configurations, client certificates, each connecting at once.
fn quic_lanes(config: &Config, lanes: &LaneTable, nic: usize) -> Result<QuicLanes, RunError> {
    let mtu = config.ports[nic].mtu.unwrap_or(1500);
    let mut setups = Vec::new();
    for (id, (lane, cfg)) in lanes.iter().zip(&config.lanes).enumerate() {
        let (LaneSend::Quic(frame), dpdk_config::LaneKind::Quic(q)) = (&lane.send, &cfg.kind)
        else {
            continue;
        };
        setups.push(
            QuicLaneSetup::new(id as u8, &lane.name, q, frame.clone(), mtu).map_err(RunError)?,
        );
    }
    QuicLanes::new(setups).map_err(RunError)
}

/// Publishes the fingerprint of every relay lane's request template in the session table, for
/// the control plane to compare with its own before it arms a connection of the lane.
fn publish_fingerprints(config: &Config, ctl: &ControlSegment) -> Result<(), RunError> {
    for (id, lane) in config.lanes.iter().enumerate() {
        if let dpdk_config::LaneKind::Http(h) = &lane.kind {
            let t = h
                .request_template()
                .map_err(|e| RunError(format!("lane {}: {e}", lane.name)))?;
            ctl.session_table().fingerprints.set(id, t.fingerprint());
        }
    }
    Ok(())
}

/// What the data plane says when another process truncated or shrank its segment file (the
/// SIGBUS guard replaced the lost part with zero pages, see `swqos_shm::guard`).
fn truncated_message(config: &Config) -> String {
    format!(
        "shared-memory segment {} was truncated by another process; stopping",
        config.shm.path.display()
    )
}

/// One turn of the main loop (heartbeat resolution).
const MAIN_LOOP_PERIOD: Duration = Duration::from_millis(1);

/// Logs a tuning step; a failure is an error when `[tuning] required` says so.
fn tuning_step(step: swqos_rt::Step, required: bool) -> Result<(), RunError> {
    if step.ok {
        info!("{step}");
        Ok(())
    } else if required {
        err(format!("{step}; [tuning] required = true"))
    } else {
        warn!("{step}; continuing ([tuning] required = false)");
        Ok(())
    }
}

/// How often the main loop copies the ports' counters into the segment.
const PORT_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Copies each port's driver counters into its block of the segment (a port whose counters
/// cannot be read keeps its last values).
fn publish_port_stats(ports: &[Port], writers: &mut [PortStatsWriter]) {
    for (port, writer) in ports.iter().zip(writers) {
        if let Ok(s) = port.stats() {
            let mut c = [0u64; N_PORT_COUNTERS];
            c[PortCounter::Opackets as usize] = s.opackets;
            c[PortCounter::Obytes as usize] = s.obytes;
            c[PortCounter::Oerrors as usize] = s.oerrors;
            c[PortCounter::Ipackets as usize] = s.ipackets;
            c[PortCounter::Ibytes as usize] = s.ibytes;
            c[PortCounter::Imissed as usize] = s.imissed;
            c[PortCounter::Ierrors as usize] = s.ierrors;
            c[PortCounter::RxNombuf as usize] = s.rx_nombuf;
            writer.publish(&c);
        }
    }
}

/// Decrements the running-worker count when a worker returns or unwinds.
struct RunningGuard(Arc<AtomicUsize>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn ticks(d: Duration, tsc_hz: u64) -> u64 {
    (d.as_secs_f64() * tsc_hz as f64) as u64
}

/// The submit/TX lcore's loop: poll until stopped, backing off while idle if the lcore polls
/// adaptively (idle: no work, no packet waiting for the NIC, no slot left in a ring); then
/// drain what clients already published and what the NIC has not taken yet, for at most
/// `drain` ticks.
fn tx_loop(mut worker: TxWorker, stop: &AtomicBool, mut idle: Idle, drain: u64, quiet: u64) {
    idle.start(worker.stats());
    while !stop.load(Ordering::Relaxed) {
        let work = worker.poll();
        if idle.after_poll(work, worker.stats()) && !worker.has_pending() && !worker.has_ready() {
            idle.back_off(worker.stats());
        }
    }
    let start = dpdk::tsc();
    let mut quiet_since = start;
    loop {
        let now = dpdk::tsc();
        if worker.poll() > 0 || worker.has_pending() || worker.has_ready() {
            quiet_since = now;
        } else if now.wrapping_sub(quiet_since) > quiet {
            break; // nothing new for a while: a client racing the state change has landed
        }
        if now.wrapping_sub(start) > drain {
            break;
        }
    }
    // What is still queued is dropped, and the QUIC lanes' connections are closed (what they
    // still have in flight completed as maybe delivered).
    worker.abandon_pending();
}

/// The RX lcore's loop: poll until stopped, backing off while idle if the lcore polls
/// adaptively.
fn rx_loop(mut worker: RxWorker, stop: &AtomicBool, mut idle: Idle) {
    idle.start(worker.stats());
    while !stop.load(Ordering::Relaxed) {
        let work = worker.poll();
        if idle.after_poll(work, worker.stats()) {
            idle.back_off(worker.stats());
        }
    }
}

/// Sums over every TX block, for the progress line.
struct Totals {
    tx_packets: u64,
    submissions: u64,
    rejected: u64,
    dropped: u64,
}

impl Totals {
    fn read(seg: &Segment) -> Totals {
        let mut t = Totals {
            tx_packets: 0,
            submissions: 0,
            rejected: 0,
            dropped: 0,
        };
        for i in 0..seg.layout().n_lcores as usize {
            let s = stats::read(seg.stats(i));
            t.tx_packets += s.get(Counter::TxPackets);
            t.submissions += s.get(Counter::Submissions);
            t.rejected += s.get(Counter::Rejected);
            t.dropped += s.get(Counter::TxDropped);
        }
        t
    }
}
