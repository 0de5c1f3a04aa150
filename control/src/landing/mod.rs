//! Landing feedback (`[landing]`): whether each watched submission landed on chain, in which
//! slot and with what error, and which relay lane is credited with it.
//!
//! - Which submissions: those a client marked [`SLOT_WATCH_LANDING`] that reach this process,
//!   i.e. that have a relay lane (the hand-off records). Submissions for UDP lanes only never
//!   reach the control plane and are not watched.
//! - How: the [`watcher`] thread asks the RPC (`signatureSubscribe`, `getSignatureStatuses`).
//! - Answer: once the watcher's verdict is in *and* every relay lane of the submission has
//!   its completion, one [`Status::Landed`] or [`Status::Expired`] completion goes to the
//!   client's relay completion ring (written by the relay thread, the ring's only producer).
//! - Attribution: a signature on chain does not say which relay carried it. The lane credited
//!   is the relay lane whose relay accepted the transaction first (the first 2xx answer this
//!   process received among the submission's relay lanes); none when no relay accepted it
//!   (it may still have landed through a UDP lane, or another path).
//!
//! Counters per credited lane ([`LANDING_METRICS`]): landed (and landed with an error),
//! expired, and the submit-to-verdict latency of landed ones.

pub(crate) mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dpdk_config::LandingConfig;
use swqos_shm::layout::{landing, Completion, Status, SLOT_WATCH_LANDING};
use swqos_shm::ring::Handoff;
use swqos_shm::time::tsc;
use swqos_wire::solana::Transaction;
use tracing::info;

pub(crate) use watcher::{Answer, Verdict, Watch};

/// Upper bounds of the landing latency histogram, in seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.1, 0.2, 0.4, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// The label of submissions no relay lane accepted.
pub(crate) const UNATTRIBUTED: &str = "none";

/// One credited lane's landing counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaneLanding {
    pub(crate) landed: u64,
    pub(crate) landed_with_error: u64,
    pub(crate) expired: u64,
    /// Landed submissions by [`LATENCY_BUCKETS`] (not cumulative; the last is +Inf).
    pub(crate) buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub(crate) latency_sum: f64,
}

/// Landing counters by credited lane name, for the metrics endpoint.
pub(crate) static LANDING_METRICS: Mutex<BTreeMap<String, LaneLanding>> =
    Mutex::new(BTreeMap::new());

/// The counters, `None` when landing feedback is off.
pub(crate) fn metrics_snapshot() -> Option<BTreeMap<String, LaneLanding>> {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed).then(|| {
        LANDING_METRICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    })
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Zero counters for each of `lanes` (the relay lanes) and for none, so every series a
/// dashboard or an alert names exists from the start (not only after a first verdict).
pub(crate) fn register_lanes<'a>(lanes: impl IntoIterator<Item = &'a str>) {
    let mut m = LANDING_METRICS.lock().unwrap_or_else(|e| e.into_inner());
    for lane in lanes.into_iter().chain([UNATTRIBUTED]) {
        m.entry(lane.to_owned()).or_default();
    }
}

/// Where a watched submission's landing completion goes, and what is known of it.
struct Entry {
    ring: usize,
    lease_gen: u32,
    tag: u64,
    submit_tsc: u64,
    /// Relay completions of this submission still to come.
    outstanding: u32,
    /// The relay lane whose relay accepted it first.
    first: Option<u8>,
    verdict: Option<Verdict>,
}

/// The relay thread's side: watched submissions and the watcher thread.
pub(crate) struct Book {
    watches: Sender<Watch>,
    answers: Receiver<Answer>,
    entries: HashMap<u64, Entry>,
    /// (ring, lease_gen, tag, submit_tsc) -> entry id: a submission's hand-off records share it.
    keys: HashMap<(usize, u32, u64, u64), u64>,
    next_id: u64,
    /// Landing window in milliseconds (published in the segment).
    pub(crate) window_ms: u32,
}

/// A landing completion ready for the client's ring.
pub(crate) struct Ready {
    /// The client's ring.
    pub(crate) ring: usize,
    /// The record.
    pub(crate) completion: Completion,
}

impl Book {
    /// Starts the watcher thread for `cfg`.
    pub(crate) fn start(
        cfg: LandingConfig,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Book, JoinHandle<()>)> {
        let (watches, watch_rx) = mpsc::channel();
        let (answer_tx, answers) = mpsc::channel();
        let window_ms = cfg.expire.as_millis().min(u32::MAX as u128) as u32;
        info!(
            "landing feedback: {} at commitment {}, WebSocket {}, expired after {} ms",
            cfg.rpc_url.authority,
            cfg.commitment,
            cfg.ws_url
                .as_ref()
                .map_or("none (polling only)", |u| u.authority.as_str()),
            window_ms
        );
        let handle = std::thread::Builder::new()
            .name("swqos-landing".into())
            .spawn(move || watcher::run(cfg, watch_rx, answer_tx, stop))?;
        ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok((
            Book {
                watches,
                answers,
                entries: HashMap::new(),
                keys: HashMap::new(),
                next_id: 0,
                window_ms,
            },
            handle,
        ))
    }

    /// Starts watching hand-off record `job` when its client asked for it: the id its relay
    /// completions are to be reported under ([`Book::relay_done`]), one per lane of `job`.
    pub(crate) fn watch(&mut self, job: &Handoff) -> Option<u64> {
        if job.flags & SLOT_WATCH_LANDING == 0 || job.lanes == 0 {
            return None;
        }
        let key = (job.ring as usize, job.lease_gen, job.tag, job.submit_tsc);
        let lanes = job.lanes.count_ones();
        if let Some(&id) = self.keys.get(&key) {
            // Another record of the same submission (the data plane splits fast sends).
            if let Some(e) = self.entries.get_mut(&id) {
                e.outstanding += lanes;
                return Some(id);
            }
        }
        let signature = *Transaction::parse(&job.tx).ok()?.first_signature();
        self.next_id += 1;
        let id = self.next_id;
        self.keys.insert(key, id);
        self.entries.insert(
            id,
            Entry {
                ring: job.ring as usize,
                lease_gen: job.lease_gen,
                tag: job.tag,
                submit_tsc: job.submit_tsc,
                outstanding: lanes,
                first: None,
                verdict: None,
            },
        );
        let _ = self.watches.send(Watch { id, signature });
        Some(id)
    }

    /// One relay completion of watched submission `id`: lane `lane`, `accepted` when the
    /// relay answered 2xx. The landing completion, when this was the last thing it waited for.
    pub(crate) fn relay_done(
        &mut self,
        id: u64,
        lane: u8,
        accepted: bool,
        tsc_hz: u64,
    ) -> Option<Ready> {
        let e = self.entries.get_mut(&id)?;
        e.outstanding = e.outstanding.saturating_sub(1);
        if accepted && e.first.is_none() {
            e.first = Some(lane);
        }
        self.finish_if_ready(id, tsc_hz)
    }

    /// The watcher's verdicts so far, as landing completions ready to go.
    pub(crate) fn take_answers(&mut self, tsc_hz: u64) -> Vec<Ready> {
        let mut ready = Vec::new();
        while let Ok(a) = self.answers.try_recv() {
            if let Some(e) = self.entries.get_mut(&a.id) {
                e.verdict = Some(a.verdict);
                ready.extend(self.finish_if_ready(a.id, tsc_hz));
            }
        }
        ready
    }

    fn finish_if_ready(&mut self, id: u64, tsc_hz: u64) -> Option<Ready> {
        let e = self.entries.get(&id)?;
        if e.outstanding > 0 || e.verdict.is_none() {
            return None;
        }
        let e = self.entries.remove(&id)?;
        self.keys
            .remove(&(e.ring, e.lease_gen, e.tag, e.submit_tsc));
        let verdict = e.verdict.clone()?;
        Some(complete(&e, &verdict, tsc_hz))
    }

    /// At stop: an [`Status::Expired`] (control stopped) completion for every watched
    /// submission still without one.
    pub(crate) fn stop_all(&mut self) -> Vec<Ready> {
        let entries: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        self.keys.clear();
        entries
            .iter()
            .map(|e| Ready {
                ring: e.ring,
                completion: record(e, Status::Expired, landing::CONTROL_STOPPED, 0),
            })
            .collect()
    }
}

fn record(e: &Entry, status: Status, reason: u16, slot: u64) -> Completion {
    Completion {
        tag: e.tag,
        lease_gen: e.lease_gen,
        lane: e.first.unwrap_or(landing::NO_LANE),
        status: status as u8,
        reason,
        submit_tsc: e.submit_tsc,
        done_tsc: slot,
    }
}

/// The landing completion of `e`, counted in [`LANDING_METRICS`] under its credited lane.
fn complete(e: &Entry, verdict: &Verdict, tsc_hz: u64) -> Ready {
    let lane = LANE_NAMES
        .lock()
        .unwrap_or_else(|x| x.into_inner())
        .get(e.first.map_or(usize::MAX, usize::from))
        .cloned()
        .unwrap_or_else(|| UNATTRIBUTED.to_owned());
    let mut m = LANDING_METRICS.lock().unwrap_or_else(|x| x.into_inner());
    let c = m.entry(lane.clone()).or_default();
    let completion = match verdict {
        Verdict::Landed { slot, err } => {
            c.landed += 1;
            let reason = if let Some(err) = err {
                c.landed_with_error += 1;
                info!(
                    "landing: tag {} landed in slot {slot} with error {err}",
                    e.tag
                );
                landing::WITH_ERROR
            } else {
                0
            };
            // Same machine, same TSC as the client's submit stamp (untrusted: bounded below).
            let secs = tsc().saturating_sub(e.submit_tsc) as f64 / tsc_hz.max(1) as f64;
            let secs = secs.min(3600.0);
            let b = LATENCY_BUCKETS
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(LATENCY_BUCKETS.len());
            c.buckets[b] += 1;
            c.latency_sum += secs;
            record(e, Status::Landed, reason, *slot)
        }
        Verdict::Expired => {
            c.expired += 1;
            record(e, Status::Expired, landing::NOT_SEEN, 0)
        }
    };
    Ready {
        ring: e.ring,
        completion,
    }
}

/// Lane names by config lane id (set by the relay thread).
pub(crate) static LANE_NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
