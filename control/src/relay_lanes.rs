//! Relay lanes on the control plane's side: submissions the TX lcores hand over (one hand-off
//! ring per TX lcore) go out on the control plane's kernel TCP connections
//! ([`crate::relay::RelayPool`]); each relay's answer becomes one completion per (submission,
//! lane) in the client's relay completion ring, which only this process writes.
//!
//! One thread does it all: keep the control plane's heartbeat (the dataplane hands over only
//! while it is fresh), drain the hand-off rings, route outcomes back. It also takes Jito bundles
//! from the RPC endpoint ([`BundleJob`], over a channel): those are whole requests sent on the
//! lane's connections ([`RelayPool::send_raw`]) whose outcomes go back to the RPC thread, not to
//! a completion ring; they need no data plane attached. The connection pool lives
//! across data-plane restarts; the segment side is re-attached when the data plane comes back.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dpdk_config::{Config, LaneKind};
use swqos_shm::layout::{Completion, Status, RELAY_FAST};
use swqos_shm::ring::{CompletionProducer, HandoffConsumer};
use swqos_shm::time::tsc;
use swqos_shm::Segment;
use swqos_wire::relay::{Endpoint, RequestTemplate};

use crate::relay::{LaneTls, Outcome, RelayLaneSpec, RelayPool, Reply};
use crate::sessions::SessionBoard;
use crate::tls::TlsSettings;

/// How often the heartbeat is refreshed and the rings are polled when idle.
const IDLE_SLEEP: Duration = Duration::from_micros(200);
/// Idle connections send a keep-alive request this often.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// The relay lanes of a config, as the pool wants them, and the config lane id of each.
pub(crate) fn lane_specs(config: &Config) -> Result<(Vec<RelayLaneSpec>, Vec<u8>), String> {
    let mut specs = Vec::new();
    let mut ids = Vec::new();
    for (id, lane) in config.lanes.iter().enumerate() {
        let LaneKind::Http(h) = &lane.kind else {
            continue;
        };
        let template = RequestTemplate::new(
            h.provider,
            Endpoint {
                host: &h.host,
                path: h.path.as_deref(),
                token: h.token.as_ref().map(|t| t.expose()),
            },
        )
        .map_err(|e| format!("lane {}: {e}", lane.name))?;
        specs.push(RelayLaneSpec {
            name: lane.name.clone(),
            addr: SocketAddrV4::new(h.dst_ip, h.dst_port),
            template,
            connections: h.connections as usize,
            ping_interval: PING_INTERVAL,
            lane_id: id as u8,
            tls: match &h.tls {
                None => None,
                Some(t) => Some(LaneTls {
                    config: crate::tls::client_config(
                        &lane.name,
                        &TlsSettings {
                            server_name: t.server_name.clone(),
                            ca_files: t.ca_files.clone(),
                            insecure_skip_verify: t.insecure_skip_verify,
                        },
                    )?,
                    server_name: t.server_name.clone(),
                }),
            },
        });
        ids.push(id as u8);
    }
    Ok((specs, ids))
}

/// A Jito bundle from the RPC endpoint: the whole request, the config id of the (Jito) lane to
/// send it on, and where its outcome goes (the relay's reply, or why there is none).
pub(crate) struct BundleJob {
    pub(crate) lane: u8,
    pub(crate) request: Vec<u8>,
    pub(crate) reply: Sender<Result<Reply, String>>,
}

/// Where a request's completion goes.
struct Pending {
    ring: usize,
    lease_gen: u32,
    tag: u64,
    lane: u8,
    submit_tsc: u64,
    /// The data plane sent it first (a delegated send).
    fast: bool,
}

/// The segment side: hand-off consumers and relay completion producers.
struct Attached {
    seg: Arc<Segment>,
    handoffs: Vec<HandoffConsumer>,
    completions: Vec<CompletionProducer>,
}

impl Attached {
    fn attach(path: &Path) -> Result<Attached, String> {
        let seg = Arc::new(Segment::attach(path).map_err(|e| e.to_string())?);
        seg.claim_control()
            .map_err(|pid| format!("another swqos control (pid {pid}) serves this data plane"))?;
        let l = *seg.layout();
        Ok(Attached {
            handoffs: (0..l.n_lcores as usize)
                .map(|i| HandoffConsumer::new(seg.clone(), i))
                .collect(),
            completions: (0..l.n_rings as usize)
                .map(|r| CompletionProducer::relay(seg.clone(), r))
                .collect(),
            seg,
        })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.seg.release_control();
    }
}

/// The relay thread and the sender the RPC endpoint hands Jito bundles to.
pub(crate) type RelayThread = (JoinHandle<()>, Sender<BundleJob>);

/// Starts the relay thread for the config's relay lanes (none: no thread), and returns it with
/// the sender the RPC endpoint hands Jito bundles to.
pub(crate) fn spawn(config: &Config, stop: Arc<AtomicBool>) -> Result<Option<RelayThread>, String> {
    let (specs, lane_ids) = lane_specs(config)?;
    if specs.is_empty() {
        return Ok(None);
    }
    for s in &specs {
        log(&format!(
            "relay lane {}: {} -> {} with {} connection(s)",
            s.name,
            s.template.provider(),
            s.addr,
            s.connections
        ));
    }
    let path = config.shm.path.clone();
    let connections: Vec<usize> = specs.iter().map(|s| s.connections).collect();
    let (bundles_tx, bundles) = mpsc::channel::<BundleJob>();
    let handle = std::thread::Builder::new()
        .name("swqos-relay".into())
        .spawn(move || {
            let (tx, rx) = mpsc::channel();
            let board = SessionBoard::new(connections.iter().sum());
            let pool = RelayPool::start_with_board(specs, tx, board.clone());
            let routes = Routes {
                lane_ids,
                connections,
            };
            run(&path, &pool, &board, &rx, &bundles, &routes, &stop);
            board.attach(None);
            pool.stop();
        })
        .map_err(|e| e.to_string())?;
    Ok(Some((handle, bundles_tx)))
}

fn log(msg: &str) {
    eprintln!("swqos control: {msg}");
}

/// How config lane ids and session indices map onto the pool's lanes and connections.
struct Routes {
    /// Config lane id of each pool lane.
    lane_ids: Vec<u8>,
    /// Connections of each pool lane (session indices are assigned in this order).
    connections: Vec<usize>,
}

impl Routes {
    /// (pool lane, connection) of session `i`.
    fn conn_of(&self, mut i: usize) -> Option<(usize, usize)> {
        for (lane, &n) in self.connections.iter().enumerate() {
            if i < n {
                return Some((lane, i));
            }
            i -= n;
        }
        None
    }
}

fn run(
    path: &Path,
    pool: &RelayPool,
    board: &SessionBoard,
    outcomes: &Receiver<Outcome>,
    bundles: &Receiver<BundleJob>,
    routes: &Routes,
    stop: &AtomicBool,
) {
    // Config lane id -> pool lane index.
    let pool_lane: HashMap<u8, usize> = routes
        .lane_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let conn_of = |session| routes.conn_of(session);
    let mut attached: Option<Attached> = None;
    let mut last_try = Instant::now() - Duration::from_secs(10);
    let mut last_error = String::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    // Bundles in flight: pool request id -> the RPC thread waiting for it (ids from `next_id`
    // too, so they never collide with `pending`).
    let mut bundles_pending: HashMap<u64, Sender<Result<Reply, String>>> = HashMap::new();
    let mut next_id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // (Re-)attach: the data plane may start after us, stop, or be replaced.
        let gone = attached
            .as_ref()
            .is_some_and(|a| !a.seg.is_current() || a.seg.check_running().is_err());
        if gone {
            log("data plane gone; relay lanes wait for the next one");
            board.attach(None);
            attached = None;
        }
        if attached.is_none() && last_try.elapsed() >= Duration::from_secs(1) {
            last_try = Instant::now();
            match Attached::attach(path) {
                Ok(a) => {
                    log("relay lanes attached to the data plane");
                    last_error.clear();
                    board.attach(Some(a.seg.clone()));
                    attached = Some(a);
                }
                Err(e) if e != last_error => {
                    log(&format!("relay lanes not attached: {e}"));
                    last_error = e;
                }
                Err(_) => {}
            }
        }

        let mut work = 0;
        if let Some(a) = attached.as_mut() {
            a.seg.control_heartbeat();
            for h in &mut a.handoffs {
                while let Some(job) = h.pop() {
                    work += 1;
                    for lane in (0..64u8).filter(|l| job.lanes & (1 << l) != 0) {
                        let Some(&pl) = pool_lane.get(&lane) else {
                            continue;
                        };
                        next_id += 1;
                        pending.insert(
                            next_id,
                            Pending {
                                ring: job.ring as usize,
                                lease_gen: job.lease_gen,
                                tag: job.tag,
                                lane,
                                submit_tsc: job.submit_tsc,
                                fast: job.delegated.is_some(),
                            },
                        );
                        match job.delegated {
                            // The data plane sent on that connection: complete it there.
                            Some((session, _)) => match conn_of(session) {
                                Some((lane_index, conn)) if lane_index == pl => {
                                    pool.send_delegated(pl, conn, next_id, job.tx.clone())
                                }
                                _ => pool.send(pl, next_id, job.tx.clone()),
                            },
                            None => pool.send(pl, next_id, job.tx.clone()),
                        }
                    }
                }
            }
        }
        while let Ok(b) = bundles.try_recv() {
            work += 1;
            let Some(&pl) = pool_lane.get(&b.lane) else {
                let _ = b
                    .reply
                    .send(Err(format!("lane #{} is not a relay lane", b.lane)));
                continue;
            };
            next_id += 1;
            bundles_pending.insert(next_id, b.reply);
            pool.send_raw(pl, next_id, b.request);
        }
        while let Ok(o) = outcomes.try_recv() {
            work += 1;
            if let Some(reply) = bundles_pending.remove(&o.id) {
                if let Err(e) = &o.result {
                    let lane = routes.lane_ids.get(o.lane).copied().unwrap_or_default();
                    log(&format!("relay lane #{lane}: bundle failed: {e}"));
                }
                let _ = reply.send(o.result);
                continue;
            }
            let Some(p) = pending.remove(&o.id) else {
                continue;
            };
            let (status, http) = match &o.result {
                Ok(reply) if (200..300).contains(&reply.status) => (Status::Relayed, reply.status),
                Ok(reply) => (Status::RelayError, reply.status),
                Err(e) => (Status::RelayError, crate::relay::failure_code(e)),
            };
            let reason = http | if p.fast { RELAY_FAST } else { 0 };
            if let Err(e) = &o.result {
                log(&format!("relay lane #{}: request failed: {e}", p.lane));
            }
            let Some(a) = attached.as_mut() else {
                continue; // the client's data plane is gone: nobody to tell
            };
            let c = Completion {
                tag: p.tag,
                lease_gen: p.lease_gen,
                lane: p.lane,
                status: status as u8,
                reason,
                submit_tsc: p.submit_tsc,
                done_tsc: tsc(),
            };
            if let Some(ring) = a.completions.get_mut(p.ring) {
                if !ring.push(c) {
                    log("a client's relay completion ring is full (it does not read completions)");
                }
            }
        }
        if let Some(a) = attached.as_mut() {
            for c in &mut a.completions {
                c.publish();
            }
        }
        if work == 0 {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
}
