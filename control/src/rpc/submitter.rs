//! The thread that owns the endpoint's shared-memory client: submits each transaction to the
//! data plane, collects one completion per lane, and answers when every lane has reported or
//! [`RPC_WAIT`] has passed (a lane still silent is "unknown": it may have sent it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swqos_shm::{Client, SubmitError};

use super::answer::{code, Lane, Report, RpcError};
use super::{CallReply, RPC_WAIT};

/// A validated transaction for the submitter, and where its answer goes.
pub(crate) struct Job {
    pub(crate) tx: Vec<u8>,
    /// Its first signature, base58.
    pub(crate) signature: String,
    /// Answer with every lane's outcome (`swqos_sendTransaction`) rather than the signature.
    pub(crate) detailed: bool,
    /// Set when the caller has gone: not submitted then.
    pub(crate) gone: Arc<AtomicBool>,
    pub(crate) reply: CallReply,
}

/// A submitted transaction waiting for its lanes' reports.
struct Waiting {
    job: Job,
    /// (lane id, report so far), one per lane of the submission.
    lanes: Vec<(u8, Option<Lane>)>,
    deadline: Instant,
}

/// Runs until `stop` is set or every sender is gone.
pub(crate) fn run(shm: PathBuf, lanes: u64, jobs: Receiver<Job>, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut waiting: HashMap<u64, Waiting> = HashMap::new();
    let mut next_tag = 1u64;
    while !stop.load(Ordering::Relaxed) {
        // Take a job, or just poll when some are in flight.
        let job = if waiting.is_empty() {
            match jobs.recv_timeout(Duration::from_millis(50)) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            jobs.try_recv().ok()
        };
        if let Some(job) = job.filter(|j| !j.gone.load(Ordering::Relaxed)) {
            match attached(&mut client, &shm, &mut waiting) {
                Ok(c) => {
                    let tag = next_tag;
                    next_tag += 1;
                    submit(c, lanes, tag, job, &mut waiting);
                }
                Err(e) => {
                    let e = RpcError::new(code::UNHEALTHY, format!("not sent: {e}"));
                    job.reply.answer(Err(e), None);
                }
            }
        }
        if let Some(c) = client.as_mut() {
            drain(c, &mut waiting);
        }
        let now = Instant::now();
        let done: Vec<u64> = waiting
            .iter()
            .filter(|(_, w)| now >= w.deadline || w.lanes.iter().all(|(_, l)| l.is_some()))
            .map(|(t, _)| *t)
            .collect();
        for tag in done {
            if let Some(w) = waiting.remove(&tag) {
                let names = client.as_ref().map(|c| c.lane_names().to_vec());
                let silent = format!(
                    "no report within {} s; it may have been sent",
                    RPC_WAIT.as_secs_f64()
                );
                answer(w, &names.unwrap_or_default(), &silent);
            }
        }
    }
}

/// The client, (re-)attached when the data plane started after us or restarted. Transactions
/// waiting on a data plane that went away are answered "unknown" (they may have left).
fn attached<'a>(
    client: &'a mut Option<Client>,
    shm: &Path,
    waiting: &mut HashMap<u64, Waiting>,
) -> Result<&'a mut Client, String> {
    let usable = client
        .as_ref()
        .is_some_and(|c| c.segment().check_running().is_ok());
    if !usable {
        let names = client.as_ref().map(|c| c.lane_names().to_vec());
        let silent = "the data plane stopped before reporting; it may have been sent";
        for (_, w) in waiting.drain() {
            answer(w, names.as_deref().unwrap_or_default(), silent);
        }
        *client = None;
        *client = Some(Client::attach(shm).map_err(|e| e.to_string())?);
    }
    client
        .as_mut()
        .ok_or_else(|| "no data plane attached".to_string())
}

/// Submits one job (retrying a full ring until its deadline) and records it as waiting.
fn submit(c: &mut Client, lanes: u64, tag: u64, job: Job, waiting: &mut HashMap<u64, Waiting>) {
    let mask = if lanes == 0 { c.all_lanes() } else { lanes };
    let deadline = Instant::now() + RPC_WAIT;
    let r = loop {
        match c.submit(&job.tx, mask, tag) {
            Err(SubmitError::Full) if Instant::now() < deadline => {
                drain(c, waiting);
                std::thread::yield_now();
            }
            other => break other,
        }
    };
    let not_sent = |why: String| Err(RpcError::new(code::NOT_SENT, format!("not sent: {why}")));
    let result = match r {
        Ok(()) => {
            let lanes = (0..64u8)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| (i, None))
                .collect();
            let w = Waiting {
                job,
                lanes,
                deadline,
            };
            waiting.insert(tag, w);
            return;
        }
        Err(SubmitError::Invalid(e)) => Err(RpcError::new(
            code::INVALID_PARAMS,
            format!("invalid transaction: {e}"),
        )),
        Err(e @ SubmitError::NotRunning(_)) => {
            Err(RpcError::new(code::UNHEALTHY, format!("not sent: {e}")))
        }
        Err(e) => not_sent(e.to_string()),
    };
    job.reply.answer(result, None);
}

/// Files every completion the ring holds under its submission.
fn drain(c: &mut Client, waiting: &mut HashMap<u64, Waiting>) {
    while let Some(done) = c.poll() {
        let Some(w) = waiting.get_mut(&done.tag) else {
            continue;
        };
        if let Some((_, slot)) = w.lanes.iter_mut().find(|(id, _)| *id == done.lane) {
            *slot = Some(Lane::from_completion(&done));
        }
    }
}

/// Answers a waiting submission with what its lanes reported (silent lanes: unknown, for
/// reason `silent`).
fn answer(w: Waiting, names: &[String], silent: &str) {
    let report = Report {
        signature: w.job.signature,
        lanes: w
            .lanes
            .into_iter()
            .map(|(id, l)| {
                let name = names
                    .get(id as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}"));
                (name, l.unwrap_or_else(|| Lane::Unknown(silent.to_string())))
            })
            .collect(),
    };
    let header = Some(report.header());
    let result = if w.job.detailed {
        Ok(report.details())
    } else {
        report.result()
    };
    w.job.reply.answer(result, header);
}
