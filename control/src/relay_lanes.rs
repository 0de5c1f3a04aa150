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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::landing::{Book, Ready};
use crate::relay::{Delegated, LaneTls, Outcome, RelayLaneSpec, RelayPool, Reply};
use crate::sessions::SessionBoard;
use crate::tls::TlsSettings;
use dpdk_config::{Config, LaneKind};
use swqos_shm::layout::{lanes_of, relay_failure, Completion, Status, RELAY_FAST};
use swqos_shm::ring::{CompletionProducer, Handoff, HandoffConsumer};
use swqos_shm::time::tsc;
use swqos_shm::{ControlSegment, Segment};
use tracing::{info, warn};

/// The relay thread's counters for the metrics endpoint (one relay thread per process).
pub(crate) static METRICS: RelayMetrics = RelayMetrics {
    lanes: Mutex::new(Vec::new()),
    stale: AtomicU64::new(0),
    mismatch: AtomicU64::new(0),
};

/// See [`METRICS`].
pub(crate) struct RelayMetrics {
    /// (lane name, fast sends allowed) per relay lane, as of the last attach.
    lanes: Mutex<Vec<(String, bool)>>,
    stale: AtomicU64,
    mismatch: AtomicU64,
}

impl RelayMetrics {
    /// (lane name, fast sends allowed) per relay lane.
    pub(crate) fn lanes(&self) -> Vec<(String, bool)> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Delegated sends refused: (stale, mismatch).
    pub(crate) fn refused(&self) -> (u64, u64) {
        (
            self.stale.load(Ordering::Relaxed),
            self.mismatch.load(Ordering::Relaxed),
        )
    }

    fn set_lanes(&self, lanes: Vec<(String, bool)>) {
        *self.lanes.lock().unwrap_or_else(|e| e.into_inner()) = lanes;
    }
}

/// The longest the relay thread waits between polls of the hand-off rings when idle (the
/// heartbeat is refreshed at least this often). A relay's answer wakes it at once (it waits on
/// the outcome channel); a hand-off record cannot (the data plane makes no syscall), so after
/// work it polls again after [`BUSY_WAIT`], doubling while nothing happens.
const IDLE_WAIT: Duration = Duration::from_micros(200);
/// The first wait after work: a request's hand-off record, then its mirror write, are this
/// close behind the previous one while traffic flows.
const BUSY_WAIT: Duration = Duration::from_micros(10);
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
        let template = h
            .request_template()
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
    /// The lane id the completion carries: `lane`, or the QUIC lane that fell back to it.
    report_as: u8,
    submit_tsc: u64,
    /// The data plane sent it first (a delegated send).
    fast: bool,
    /// The landing watch of its submission ([`Book::watch`]).
    watch: Option<u64>,
}

impl Pending {
    /// Where the completion of hand-off record `job`'s lane `lane` goes.
    fn of(job: &Handoff, lane: u8, watch: Option<u64>) -> Pending {
        Pending {
            ring: job.ring as usize,
            lease_gen: job.lease_gen,
            tag: job.tag,
            lane,
            report_as: job.report_as.unwrap_or(lane),
            submit_tsc: job.submit_tsc,
            fast: job.delegated.is_some(),
            watch,
        }
    }
}

/// The completion (status, reason) of a pool outcome: a 2xx answer is `Relayed`, any other
/// answer `RelayError` with its HTTP status, no answer `RelayError` with its failure code.
fn completion_of(result: &Result<Reply, crate::relay::Failure>) -> (Status, u16) {
    match result {
        Ok(r) if (200..300).contains(&r.status) => (Status::Relayed, r.status),
        Ok(r) => (Status::RelayError, r.status),
        Err(f) => (Status::RelayError, f.code),
    }
}

/// The segment side: hand-off consumers (in the control file) and relay completion producers
/// (in the segment).
struct Attached {
    seg: Arc<Segment>,
    ctl: Arc<ControlSegment>,
    handoffs: Vec<HandoffConsumer>,
    completions: Vec<CompletionProducer>,
}

impl Attached {
    fn attach(path: &Path, landing_ms: u32) -> Result<Attached, String> {
        let seg = Arc::new(Segment::attach(path).map_err(|e| e.to_string())?);
        let ctl = Arc::new(ControlSegment::attach(&seg).map_err(|e| e.to_string())?);
        let taken = |pid| format!("another swqos control (pid {pid}) serves this data plane");
        ctl.claim_control().map_err(taken)?;
        // Published in the segment too, for clients and `swqos stats` (the data plane trusts
        // only the control file's copy).
        if let Err(pid) = seg.claim_control() {
            ctl.release_control();
            return Err(taken(pid));
        }
        // Clients read it when they submit: whether to ask for landing answers.
        seg.set_landing_ms(landing_ms);
        let l = *seg.layout();
        Ok(Attached {
            handoffs: (0..l.n_lcores as usize)
                .map(|i| HandoffConsumer::new(ctl.clone(), i))
                .collect(),
            completions: (0..l.n_rings as usize)
                .map(|r| CompletionProducer::relay(seg.clone(), r))
                .collect(),
            seg,
            ctl,
        })
    }

    /// Refreshes the control plane's heartbeat in both files.
    fn heartbeat(&self) {
        self.ctl.control_heartbeat();
        self.seg.control_heartbeat();
    }

    /// Whether the data plane is gone, replaced, or its files damaged.
    fn gone(&self) -> bool {
        !self.seg.is_current()
            || !self.ctl.is_current()
            || self.seg.check_running().is_err()
            || self.seg.is_damaged()
            || self.ctl.is_damaged()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.ctl.release_control();
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
        if config.landing.is_some() {
            warn!(
                "[landing] is set but no relay lane is configured: landing feedback watches \
                 relay lanes' submissions only, so nothing is watched"
            );
        }
        return Ok(None);
    }
    *crate::landing::LANE_NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = config.lanes.iter().map(|l| l.name.clone()).collect();
    let landing = match config.landing.clone() {
        Some(cfg) => {
            crate::landing::register_lanes(specs.iter().map(|s| s.name.as_str()));
            Some(Book::start(cfg, stop.clone()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    for s in &specs {
        info!(
            "relay lane {}: {} -> {} with {} connection(s)",
            s.name,
            s.template.provider(),
            s.addr,
            s.connections
        );
    }
    let path = config.shm.path.clone();
    let connections: Vec<usize> = specs.iter().map(|s| s.connections).collect();
    let (bundles_tx, bundles) = mpsc::channel::<BundleJob>();
    let handle = std::thread::Builder::new()
        .name("swqos-relay".into())
        .spawn(move || {
            let (tx, rx) = mpsc::channel();
            let board = SessionBoard::new(connections.iter().sum());
            let routes = Routes {
                lane_ids,
                names: specs.iter().map(|s| s.name.clone()).collect(),
                fingerprints: specs.iter().map(|s| s.template.fingerprint()).collect(),
                connections,
            };
            let pool = RelayPool::start_with_board(specs, tx, board.clone());
            let (book, watcher) = landing.unzip();
            let mut relay = Relay {
                book,
                ..Relay::default()
            };
            relay.run(&path, &pool, &board, &rx, &bundles, &routes, &stop);
            board.attach(None, 0);
            pool.stop();
            // Every request still owed an answer gets one: the pool answered those it held
            // when it stopped (above); what is left has no answer coming.
            relay.fail_pending(&rx);
            if let Some(w) = watcher {
                let _ = w.join();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(Some((handle, bundles_tx)))
}

/// How config lane ids and session indices map onto the pool's lanes and connections.
struct Routes {
    /// Config lane id of each pool lane.
    lane_ids: Vec<u8>,
    /// Name of each pool lane (for logs).
    names: Vec<String>,
    /// Request template fingerprint of each pool lane (compared with the data plane's).
    fingerprints: Vec<u64>,
    /// Connections of each pool lane (session indices are assigned in this order).
    connections: Vec<usize>,
}

impl Routes {
    /// The config lane ids (bits) whose request templates the data plane builds exactly as this
    /// process does: delegated sends are allowed on those only. The others are logged.
    fn matching_templates(&self, ctl: &ControlSegment) -> u64 {
        let mut fast = 0u64;
        let mut status = Vec::new();
        for (i, &id) in self.lane_ids.iter().enumerate() {
            let theirs = ctl.session_table().fingerprints.get(id as usize);
            status.push((self.names[i].clone(), theirs == self.fingerprints[i]));
            if theirs == self.fingerprints[i] {
                fast |= 1u64 << id;
            } else {
                info!(
                    "relay lane {}: the data plane builds this lane's requests differently \
                     (its config or token environment differs from this process's); fast \
                     sends are off on this lane, every request goes through this process",
                    self.names[i]
                );
            }
        }
        METRICS.set_lanes(status);
        fast
    }

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

/// The relay thread's state: requests owed an answer.
#[derive(Default)]
struct Relay {
    attached: Option<Attached>,
    /// Requests sent or queued on the pool, by pool request id.
    pending: HashMap<u64, Pending>,
    /// Bundles in flight: pool request id -> the RPC thread waiting for it (ids from `next_id`
    /// too, so they never collide with `pending`).
    bundles: HashMap<u64, Sender<Result<Reply, String>>>,
    next_id: u64,
    /// Delegated sends naming a connection of another lane (answered as stale).
    misrouted: u64,
    /// Landing feedback (`[landing]`), when on.
    book: Option<Book>,
}

impl Relay {
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        path: &Path,
        pool: &RelayPool,
        board: &SessionBoard,
        outcomes: &Receiver<Outcome>,
        bundles: &Receiver<BundleJob>,
        routes: &Routes,
        stop: &AtomicBool,
    ) {
        let mut last_try = Instant::now() - Duration::from_secs(10);
        let mut last_error = String::new();
        let mut wait = BUSY_WAIT;
        // Short waits should be as short as asked (the default timer slack is 50 us).
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
        while !stop.load(Ordering::Relaxed) {
            // (Re-)attach: the data plane may start after us, stop, or be replaced.
            let gone = self.attached.as_ref().is_some_and(Attached::gone);
            if gone {
                info!("data plane gone; relay lanes wait for the next one");
                board.attach(None, 0);
                self.attached = None;
            }
            if self.attached.is_none() && last_try.elapsed() >= Duration::from_secs(1) {
                last_try = Instant::now();
                let landing_ms = self.book.as_ref().map_or(0, |b| b.window_ms);
                match Attached::attach(path, landing_ms) {
                    Ok(a) => {
                        info!("relay lanes attached to the data plane");
                        last_error.clear();
                        let fast = routes.matching_templates(&a.ctl);
                        board.attach(Some(a.ctl.clone()), fast);
                        self.attached = Some(a);
                    }
                    Err(e) if e != last_error => {
                        info!("relay lanes not attached: {e}");
                        last_error = e;
                    }
                    Err(_) => {}
                }
            }
            let mut work = self.take_handoffs(pool, board, routes);
            while let Ok(b) = bundles.try_recv() {
                work += 1;
                self.bundle(pool, routes, b);
            }
            while let Ok(o) = outcomes.try_recv() {
                work += 1;
                self.complete(o, routes);
            }
            work += self.take_landing();
            self.publish();
            if work > 0 {
                wait = BUSY_WAIT;
                continue;
            }
            // Idle: wait for a relay's answer, or until the rings are due for a poll.
            match outcomes.recv_timeout(wait) {
                Ok(o) => {
                    self.complete(o, routes);
                    self.publish();
                    wait = BUSY_WAIT;
                }
                Err(RecvTimeoutError::Timeout) => wait = (wait * 2).min(IDLE_WAIT),
                Err(RecvTimeoutError::Disconnected) => {
                    // No connection thread is left to answer: only the rings to poll.
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(IDLE_WAIT);
                }
            }
        }
    }

    /// Drains the hand-off rings: each record's delegated send goes to the connection it was
    /// made on, the other lanes to the pool's queues.
    fn take_handoffs(&mut self, pool: &RelayPool, board: &SessionBoard, routes: &Routes) -> usize {
        let Some(a) = self.attached.as_mut() else {
            return 0;
        };
        a.heartbeat();
        // Config lane id -> pool lane index.
        let pool_lane = |id: u8| routes.lane_ids.iter().position(|&l| l == id);
        let epoch = board.epoch();
        let mut work = 0;
        // Lanes this control plane does not serve (the data plane runs another config): each
        // still gets its completion.
        let mut unserved = Vec::new();
        for h in &mut a.handoffs {
            while let Some(job) = h.pop() {
                work += 1;
                let watch = self.book.as_mut().and_then(|b| b.watch(&job));
                for lane in (0..64u8).filter(|l| job.lanes & (1 << l) != 0) {
                    let pending = Pending::of(&job, lane, watch);
                    let Some(pl) = pool_lane(lane) else {
                        unserved.push(pending);
                        continue;
                    };
                    self.next_id += 1;
                    let id = self.next_id;
                    self.pending.insert(id, pending);
                    let Some(send) = job.delegated else {
                        pool.send(pl, id, job.tx.clone());
                        continue;
                    };
                    // The data plane sent it on that connection: complete it there, or say it
                    // cannot be; never send it again.
                    let delegated = Delegated { epoch, send };
                    match routes.conn_of(send.session as usize) {
                        Some((lane_index, conn)) if lane_index == pl => {
                            pool.send_delegated(pl, conn, id, job.tx.clone(), delegated)
                        }
                        _ => {
                            self.misrouted += 1;
                            pool.send_delegated(pl, usize::MAX, id, job.tx.clone(), delegated)
                        }
                    }
                }
            }
        }
        for p in unserved {
            info!(
                "relay lane #{}: not a relay lane of this control plane's config (the data plane \
                 runs another config); its request is answered as failed",
                p.lane
            );
            let code = if p.fast {
                relay_failure::STALE
            } else {
                relay_failure::NOT_SENT
            };
            self.push(&p, Status::RelayError, code);
        }
        work
    }

    fn bundle(&mut self, pool: &RelayPool, routes: &Routes, b: BundleJob) {
        let Some(pl) = routes.lane_ids.iter().position(|&l| l == b.lane) else {
            let _ = b
                .reply
                .send(Err(format!("lane #{} is not a relay lane", b.lane)));
            return;
        };
        self.next_id += 1;
        self.bundles.insert(self.next_id, b.reply);
        pool.send_raw(pl, self.next_id, b.request);
    }

    /// Turns a pool outcome into the client's completion (or the RPC thread's bundle answer).
    fn complete(&mut self, o: Outcome, routes: &Routes) {
        let lane_name = routes.names.get(o.lane).map_or("?", String::as_str);
        if let Some(reply) = self.bundles.remove(&o.id) {
            if let Err(e) = &o.result {
                warn!("relay lane {lane_name}: bundle failed: {e}");
            }
            let _ = reply.send(o.result.map_err(|f| f.reason));
            return;
        }
        let Some(p) = self.pending.remove(&o.id) else {
            return;
        };
        let (status, code) = completion_of(&o.result);
        match &o.result {
            Err(f) if f.code == relay_failure::STALE => {
                METRICS.stale.fetch_add(1, Ordering::Relaxed);
                info!("relay lane {lane_name}: delegated send not completed: {f}");
            }
            Err(f) if f.code == relay_failure::MISMATCH => {
                METRICS.mismatch.fetch_add(1, Ordering::Relaxed);
                info!("relay lane {lane_name}: delegated send refused: {f}");
            }
            Err(f) => warn!("relay lane {lane_name}: request failed: {f}"),
            Ok(reply) if status == Status::RelayError => info!(
                "relay lane {lane_name}: the relay answered HTTP {}: {}",
                reply.status,
                reply.error.as_deref().unwrap_or("")
            ),
            Ok(_) => {}
        }
        self.push(&p, status, code);
    }

    fn push(&mut self, p: &Pending, status: Status, code: u16) {
        let Some(a) = self.attached.as_mut() else {
            return; // the client's data plane is gone: nobody to tell
        };
        let tsc_hz = a.seg.header().tsc_hz;
        let landing = match (&mut self.book, p.watch) {
            (Some(book), Some(id)) => {
                book.relay_done(id, p.lane, status == Status::Relayed, tsc_hz)
            }
            _ => None,
        };
        let c = Completion {
            tag: p.tag,
            lease_gen: p.lease_gen,
            lane: p.report_as,
            status: status as u8,
            reason: code | if p.fast { RELAY_FAST } else { 0 },
            submit_tsc: p.submit_tsc,
            done_tsc: tsc(),
        };
        if let Some(ring) = a.completions.get_mut(p.ring) {
            if !ring.push(c) {
                warn!("a client's relay completion ring is full (it does not read completions)");
            }
        }
        if let Some(r) = landing {
            self.push_landing(r);
        }
    }

    /// Writes a landing completion to its client's relay completion ring.
    fn push_landing(&mut self, r: Ready) {
        let Some(a) = self.attached.as_mut() else {
            return;
        };
        if let Some(ring) = a.completions.get_mut(r.ring) {
            if !ring.push(r.completion) {
                warn!("a client's relay completion ring is full (it does not read completions)");
            }
        }
    }

    /// The landing watcher's verdicts whose submissions have all their relay completions:
    /// their landing completions go out. Returns how many.
    fn take_landing(&mut self) -> usize {
        let (Some(book), Some(a)) = (self.book.as_mut(), self.attached.as_ref()) else {
            return 0;
        };
        let ready = book.take_answers(a.seg.header().tsc_hz);
        let n = ready.len();
        for r in ready {
            self.push_landing(r);
        }
        n
    }

    fn publish(&mut self) {
        if let Some(a) = self.attached.as_mut() {
            for c in &mut a.completions {
                c.publish();
            }
        }
    }

    /// At stop: the outcomes the stopped pool produced, then a failure for every request still
    /// owed one, so every submission ends in exactly one completion per lane.
    fn fail_pending(&mut self, outcomes: &Receiver<Outcome>) {
        while let Ok(o) = outcomes.try_recv() {
            let Some(p) = self.pending.remove(&o.id) else {
                continue;
            };
            let (status, code) = completion_of(&o.result);
            self.push(&p, status, code);
        }
        let mut left: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        // Records the data plane handed over that this process never read: answered too.
        if let Some(a) = self.attached.as_mut() {
            for h in &mut a.handoffs {
                while let Some(job) = h.pop() {
                    // Watched too, so its client gets the landing answer (control stopped).
                    let watch = self.book.as_mut().and_then(|b| b.watch(&job));
                    left.extend(lanes_of(job.lanes).map(|lane| Pending::of(&job, lane, watch)));
                }
            }
        }
        for p in &left {
            let code = if p.fast {
                relay_failure::CONTROL_STOPPED
            } else {
                relay_failure::NOT_SENT
            };
            self.push(p, Status::RelayError, code);
        }
        if !left.is_empty() {
            info!(
                "stopped with {} relay request(s) unanswered; their clients were told",
                left.len()
            );
        }
        self.take_landing();
        let unanswered = self.book.as_mut().map(Book::stop_all).unwrap_or_default();
        for r in unanswered {
            self.push_landing(r);
        }
        self.publish();
    }
}
