//! The drop-in endpoint: a Solana JSON-RPC compatible `sendTransaction` (and `getHealth`,
//! `getVersion`) on loopback, so a bot can point its RPC URL at the control plane and have its
//! transactions fanned out by the data plane; `swqos_sendTransaction` (the same, answered with
//! every lane's outcome); and `sendBundle` for Jito relay lanes. Every other method goes to
//! `[control] rpc_upstream` ([`upstream`]), so the bot needs no second RPC URL.
//!
//! Threads, all bounded: one server thread multiplexes every connection ([`server`]: `mio`,
//! `httparse`, limits enforced while reading); [`WORKERS`] workers parse JSON-RPC, decode and
//! validate; one submitter owns the shared-memory client (a ring is single-producer) and answers
//! each transaction when every lane has reported or [`RPC_WAIT`] has passed ([`answer`] turns
//! the lanes' reports into the answer); at most [`MAX_BUNDLES`] threads wait for a relay's bundle
//! answer. Nothing blocks the server thread, and a caller that goes away stops the work not yet
//! done for it.
//!
//! `sendBundle` does not go through the data plane: a worker builds the Jito bundle request
//! ([`swqos_wire::relay::jito_bundle_request`]) for the *first* Jito lane among
//! `[control] rpc_lanes` (config order; all lanes when unset) and hands it to the relay thread
//! ([`crate::relay_lanes::BundleJob`]), which sends it on one of that lane's kernel TCP
//! connections; the answer is the relay's bundle id. A bundle is not fanned out to several
//! relays: each bundle id names one submission to one block engine.

mod answer;
mod params;
mod server;
mod submitter;
pub(crate) mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use swqos_wire::relay::{jito_bundle_request, Endpoint, Provider, MAX_BUNDLE_TXS};
use swqos_wire::solana::Transaction;

use crate::relay::{CONNECT_TIMEOUT, READ_TIMEOUT};
use crate::relay_lanes::BundleJob;
use answer::{code, RpcError};
use params::{decode_tx, encoding};
use server::{Limits, Request, Responder};
use submitter::Job;
use upstream::{Forward, Upstream};

/// Largest request body accepted (a batch of a few hundred transactions).
const MAX_BODY: usize = 1 << 20;
/// Most calls in one batch.
const MAX_BATCH: usize = 256;
/// Threads parsing and validating requests.
const WORKERS: usize = 2;
/// Requests waiting for a worker; more are answered 503.
const QUEUE: usize = 256;
/// Bundles waiting for their relay's answer at once; more are refused.
const MAX_BUNDLES: usize = 16;

/// How long `sendTransaction` waits for every lane's report: above the longest a relay lane
/// takes to report on its own (a connect, then the relay's answer, each with the relay pool's
/// timeout), so the answer is not decided by a race with the relay's timeout. A lane still
/// silent then is reported as "may have been sent" ([`code::MAYBE_SENT`]).
pub(crate) const RPC_WAIT: Duration =
    Duration::from_millis((CONNECT_TIMEOUT.as_millis() + READ_TIMEOUT.as_millis()) as u64 + 1_000);
const _: () =
    assert!(RPC_WAIT.as_millis() > CONNECT_TIMEOUT.as_millis() + READ_TIMEOUT.as_millis());

/// How long a bundle waits for its relay's answer (the pool's own read timeout bounds the
/// exchange; this covers the wait for a free connection on top).
const BUNDLE_TIMEOUT: Duration = Duration::from_secs(READ_TIMEOUT.as_secs() + 1);

/// The HTTP server's limits.
const LIMITS: Limits = Limits {
    max_connections: 1024,
    max_head: 16 * 1024,
    max_body: MAX_BODY,
    body_budget: 32 * MAX_BODY,
    request_deadline: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    write_deadline: Duration::from_secs(10),
    work_deadline: Duration::from_secs(RPC_WAIT.as_secs() + 5),
};

/// What the workers need.
struct Ctx {
    jobs: Sender<Job>,
    shm: PathBuf,
    bundles: Arc<Bundles>,
    upstream: Upstream,
}

/// `getVersion`'s answer: swqos's own, not a validator's. `solana-core` is a version every Solana
/// client treats as current (Rust's `solana-rpc-client` 1.x chooses base64 transactions from
/// 1.3.16 on and maps commitments for nodes older than 1.5.5; 2.x and later send base64
/// without asking); `feature-set` 0 says no validator feature set is behind it; `swqos` names
/// what answered.
fn version() -> Value {
    json!({
        "solana-core": SOLANA_CORE_VERSION,
        "feature-set": 0,
        "swqos": env!("CARGO_PKG_VERSION"),
    })
}

/// The `solana-core` version `getVersion` reports.
const SOLANA_CORE_VERSION: &str = "2.3.0";

/// A Jito relay lane `sendBundle` may use: where its requests go (the token is never logged).
pub(crate) struct BundleLane {
    /// Config lane id.
    pub(crate) lane_id: u8,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) path: Option<String>,
    pub(crate) token: Option<String>,
}

/// Where `sendBundle` goes: the Jito lanes among `rpc_lanes` (the first is used) and the relay
/// thread's bundle channel (`None` without relay lanes).
pub(crate) struct Bundles {
    pub(crate) lanes: Vec<BundleLane>,
    pub(crate) jobs: Option<Sender<BundleJob>>,
    /// Bundles waiting for an answer.
    in_flight: AtomicUsize,
}

impl Bundles {
    /// The Jito lanes of `config` among `[control] rpc_lanes` (every lane when unset), in
    /// config order.
    pub(crate) fn new(config: &dpdk_config::Config, jobs: Option<Sender<BundleJob>>) -> Bundles {
        let allowed = config.control.rpc_lanes.as_deref();
        let lanes = config
            .lanes
            .iter()
            .enumerate()
            .filter(|(id, _)| allowed.is_none_or(|ids| ids.contains(id)))
            .filter_map(|(id, lane)| match &lane.kind {
                dpdk_config::LaneKind::Http(h) if h.provider == Provider::Jito => {
                    Some(BundleLane {
                        lane_id: id as u8,
                        name: lane.name.clone(),
                        host: h.host.clone(),
                        path: h.path.clone(),
                        token: h.token.as_ref().map(|t| t.expose().to_string()),
                    })
                }
                _ => None,
            })
            .collect();
        Bundles::with_lanes(lanes, jobs)
    }

    fn with_lanes(lanes: Vec<BundleLane>, jobs: Option<Sender<BundleJob>>) -> Bundles {
        Bundles {
            lanes,
            jobs,
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// Starts the endpoint on `listener`; it sends to the lanes in `lanes` (a lane mask; 0 = every
/// lane) of the data plane whose segment is at `shm`. Runs until `stop` is set.
/// `sendBundle` goes to the first lane of `bundles`; the methods it does not answer itself go
/// to `upstream` (with its timeout), when set.
pub(crate) fn spawn(
    listener: TcpListener,
    shm: PathBuf,
    lanes: u64,
    bundles: Bundles,
    upstream: Option<(dpdk_config::RpcUpstream, Duration)>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let upstream = match upstream {
        Some((to, timeout)) => Upstream::start(to, timeout)?,
        None => Upstream::none(),
    };
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let shm2 = shm.clone();
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("swqos-rpc-submit".into())
        .spawn(move || submitter::run(shm2, lanes, jobs_rx, stop2))?;
    let (requests_tx, requests_rx) = mpsc::sync_channel::<Request>(QUEUE);
    let requests_rx = Arc::new(Mutex::new(requests_rx));
    let ctx = Arc::new(Ctx {
        jobs: jobs_tx,
        shm,
        bundles: Arc::new(bundles),
        upstream,
    });
    for _ in 0..WORKERS {
        let (rx, ctx) = (requests_rx.clone(), ctx.clone());
        std::thread::Builder::new()
            .name("swqos-rpc-work".into())
            .spawn(move || worker(&rx, &ctx))?;
    }
    server::spawn(listener, LIMITS, requests_tx, stop)
}

/// Takes requests until the server goes.
fn worker(requests: &Mutex<Receiver<Request>>, ctx: &Ctx) {
    loop {
        let next = match requests.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(request) => handle_request(request, ctx),
            Err(_) => return,
        }
    }
}

/// The answers of one HTTP request's calls, sent when the last one is in.
struct Assembly {
    batch: bool,
    parts: Mutex<Parts>,
}

struct Parts {
    answers: Vec<Value>,
    /// The upstream's answer to a single forwarded call, passed on byte for byte.
    verbatim: Option<Vec<u8>>,
    owed: usize,
    /// `X-Swqos-Lanes` of a single `sendTransaction`.
    lanes_header: Option<String>,
    respond: Option<Responder>,
}

/// Answers one call of a request (exactly once: dropped unanswered, it answers an internal
/// error).
pub(crate) struct CallReply {
    assembly: Arc<Assembly>,
    index: usize,
    id: Value,
    gone: Arc<AtomicBool>,
    answered: bool,
}

impl CallReply {
    /// Whether the caller has gone (its answer will not be read).
    pub(crate) fn caller_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Answers with a whole JSON-RPC answer object (an upstream's answer within a batch); the
    /// caller's id replaces the one in it.
    pub(crate) fn answer_object(mut self, mut value: Value) {
        self.answered = true;
        if let Value::Object(o) = &mut value {
            o.insert("id".into(), self.id.clone());
        }
        self.finish(value, None, None);
    }

    /// Answers a single (not batched) call with an upstream's answer body as it came.
    pub(crate) fn answer_verbatim(mut self, body: Vec<u8>) {
        self.answered = true;
        self.finish(Value::Null, None, Some(body));
    }

    /// Answers the call; `lanes_header` goes out as `X-Swqos-Lanes` when the request is not a
    /// batch.
    pub(crate) fn answer(mut self, result: Result<Value, RpcError>, lanes_header: Option<String>) {
        self.answered = true;
        let value = match result {
            Ok(v) => json!({"jsonrpc": "2.0", "result": v, "id": self.id}),
            Err(e) => error_value(self.id.clone(), e),
        };
        self.finish(value, lanes_header, None);
    }

    fn finish(&self, value: Value, lanes_header: Option<String>, verbatim: Option<Vec<u8>>) {
        let Ok(mut parts) = self.assembly.parts.lock() else {
            return;
        };
        parts.answers[self.index] = value;
        if verbatim.is_some() && !self.assembly.batch {
            parts.verbatim = verbatim;
        }
        if lanes_header.is_some() {
            parts.lanes_header = lanes_header;
        }
        parts.owed -= 1;
        if parts.owed > 0 {
            return;
        }
        let Some(respond) = parts.respond.take() else {
            return;
        };
        let body = if self.assembly.batch {
            Value::Array(std::mem::take(&mut parts.answers)).to_string()
        } else if let Some(raw) = parts.verbatim.take() {
            // Checked to be JSON (so UTF-8) by the forwarder.
            String::from_utf8_lossy(&raw).into_owned()
        } else {
            parts.answers[0].to_string()
        };
        let headers = match (&parts.lanes_header, self.assembly.batch) {
            (Some(h), false) => vec![("X-Swqos-Lanes", h.clone())],
            _ => Vec::new(),
        };
        respond.send(200, headers, body);
    }
}

impl Drop for CallReply {
    fn drop(&mut self) {
        if !self.answered {
            let me = CallReply {
                assembly: self.assembly.clone(),
                index: self.index,
                id: self.id.clone(),
                gone: self.gone.clone(),
                answered: false,
            };
            me.answer(
                Err(RpcError::new(code::INTERNAL, "internal error: no answer")),
                None,
            );
        }
    }
}

fn error_value(id: Value, e: RpcError) -> Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(data) = e.data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "error": error, "id": id})
}

/// Answers a JSON-RPC body: one call or a batch.
fn handle_request(request: Request, ctx: &Ctx) {
    let Request {
        body,
        gone,
        respond,
    } = request;
    let whole_error = |respond: Responder, code: i64, message: String| {
        let v = error_value(Value::Null, RpcError::new(code, message));
        respond.send(200, Vec::new(), v.to_string());
    };
    let (calls, batch) = match serde_json::from_slice::<Value>(&body) {
        Err(e) => return whole_error(respond, code::PARSE_ERROR, format!("parse error: {e}")),
        Ok(Value::Array(c)) if c.is_empty() => {
            return whole_error(respond, code::INVALID_REQUEST, "empty batch".into())
        }
        Ok(Value::Array(c)) if c.len() > MAX_BATCH => {
            let why = format!("a batch holds at most {MAX_BATCH} calls, not {}", c.len());
            return whole_error(respond, code::INVALID_REQUEST, why);
        }
        Ok(Value::Array(c)) => (c, true),
        Ok(call) => (vec![call], false),
    };
    let assembly = Arc::new(Assembly {
        batch,
        parts: Mutex::new(Parts {
            answers: vec![Value::Null; calls.len()],
            verbatim: None,
            owed: calls.len(),
            lanes_header: None,
            respond: Some(respond),
        }),
    });
    let mut forwards = Vec::new();
    for (index, call) in calls.into_iter().enumerate() {
        let reply = CallReply {
            assembly: assembly.clone(),
            index,
            id: call.get("id").cloned().unwrap_or(Value::Null),
            gone: gone.clone(),
            answered: false,
        };
        if gone.load(Ordering::Relaxed) {
            reply.answer(Err(RpcError::new(code::CANCELLED, "caller gone")), None);
            continue;
        }
        if let Some(reply) = handle_call(&call, ctx, reply, &gone) {
            forwards.push((call, reply));
        }
    }
    if !forwards.is_empty() {
        ctx.upstream.forward(Forward {
            calls: forwards,
            batch,
            raw: (!batch).then_some(body),
        });
    }
}

/// Answers one call, or hands its reply back when the call goes upstream.
fn handle_call(
    call: &Value,
    ctx: &Ctx,
    reply: CallReply,
    gone: &Arc<AtomicBool>,
) -> Option<CallReply> {
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        let e = RpcError::new(code::INVALID_REQUEST, "not a JSON-RPC 2.0 request");
        reply.answer(Err(e), None);
        return None;
    }
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        let e = RpcError::new(code::INVALID_REQUEST, "missing method");
        reply.answer(Err(e), None);
        return None;
    };
    let params = call.get("params").unwrap_or(&Value::Null);
    let result = match method {
        "sendTransaction" | "swqos_sendTransaction" => {
            let detailed = method == "swqos_sendTransaction";
            match transaction_job(params, detailed, gone) {
                Ok(job) => {
                    submit(ctx, job(reply));
                    return None;
                }
                Err(e) => Err(e),
            }
        }
        "getVersion" => Ok(version()),
        "getHealth" => swqos_shm::Segment::attach(&ctx.shm)
            .map(|_| json!("ok"))
            .map_err(|e| RpcError::new(code::UNHEALTHY, format!("node is unhealthy: {e}"))),
        "sendBundle" => match bundle_job(params, &ctx.bundles) {
            Ok(job) => {
                send_bundle(&ctx.bundles, job, reply);
                return None;
            }
            Err(e) => Err(e),
        },
        // The project's own namespace is never forwarded.
        other if other.starts_with("swqos_") => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {other}"),
        )),
        _ => return Some(reply),
    };
    reply.answer(result, None);
    None
}

fn submit(ctx: &Ctx, job: Job) {
    if let Err(mpsc::SendError(job)) = ctx.jobs.send(job) {
        let e = RpcError::new(code::UNHEALTHY, "control plane is shutting down; not sent");
        job.reply.answer(Err(e), None);
    }
}

/// `sendTransaction [tx, {encoding}]` (Solana's default encoding is base58): the transaction
/// decoded and validated, ready for the submitter once given its reply.
fn transaction_job(
    params: &Value,
    detailed: bool,
    gone: &Arc<AtomicBool>,
) -> Result<impl FnOnce(CallReply) -> Job, RpcError> {
    let invalid = |m: String| RpcError::new(code::INVALID_PARAMS, m);
    let text = params
        .get(0)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("params[0] must be the encoded transaction".into()))?;
    let tx = decode_tx(text, encoding(params)?).map_err(invalid)?;
    let signature = Transaction::parse(&tx)
        .map(|t| bs58::encode(t.first_signature()).into_string())
        .map_err(|e| invalid(format!("invalid transaction: {e}")))?;
    let gone = gone.clone();
    Ok(move |reply| Job {
        tx,
        signature,
        detailed,
        gone,
        reply,
    })
}

/// `sendBundle [[tx, ...], {encoding}]` (base58 by default): 1..=5 transactions, each
/// validated, as one Jito bundle request for the first Jito lane.
fn bundle_job(params: &Value, bundles: &Bundles) -> Result<BundleRequest, RpcError> {
    let Some(lane) = bundles.lanes.first() else {
        return Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            "sendBundle needs a Jito relay lane (none among the endpoint's lanes)",
        ));
    };
    let invalid = |m: String| RpcError::new(code::INVALID_PARAMS, m);
    let list = params
        .get(0)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("params[0] must be the list of encoded transactions".into()))?;
    if list.is_empty() || list.len() > MAX_BUNDLE_TXS {
        return Err(invalid(format!(
            "a bundle holds 1 to {MAX_BUNDLE_TXS} transactions, not {}",
            list.len()
        )));
    }
    let encoding = encoding(params)?;
    let mut txs = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let s = v
            .as_str()
            .ok_or_else(|| invalid(format!("transaction {i}: not a string")))?;
        let tx = decode_tx(s, encoding).map_err(|e| invalid(format!("transaction {i}: {e}")))?;
        Transaction::parse(&tx)
            .map_err(|e| invalid(format!("transaction {i}: invalid transaction: {e}")))?;
        txs.push(tx);
    }
    let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
    let endpoint = Endpoint {
        host: &lane.host,
        path: lane.path.as_deref(),
        token: lane.token.as_deref(),
    };
    let request = jito_bundle_request(endpoint, &refs)
        .map_err(|e| invalid(format!("lane {}: {e}", lane.name)))?;
    Ok(BundleRequest {
        lane: lane.lane_id,
        name: lane.name.clone(),
        request,
    })
}

/// A bundle request ready for the relay thread.
struct BundleRequest {
    lane: u8,
    name: String,
    request: Vec<u8>,
}

/// Hands a bundle to the relay thread; a thread (at most [`MAX_BUNDLES`]) waits for the answer.
fn send_bundle(bundles: &Arc<Bundles>, b: BundleRequest, reply: CallReply) {
    let unhealthy = |m: String| RpcError::new(code::UNHEALTHY, m);
    let Some(jobs) = &bundles.jobs else {
        let e = unhealthy("no relay thread to send the bundle".into());
        return reply.answer(Err(e), None);
    };
    if bundles.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_BUNDLES {
        bundles.in_flight.fetch_sub(1, Ordering::AcqRel);
        let e = unhealthy(format!("{MAX_BUNDLES} bundles already waiting; not sent"));
        return reply.answer(Err(e), None);
    }
    let (tx, answer) = mpsc::channel();
    let job = BundleJob {
        lane: b.lane,
        request: b.request,
        reply: tx,
    };
    if jobs.send(job).is_err() {
        bundles.in_flight.fetch_sub(1, Ordering::AcqRel);
        let e = unhealthy("control plane is shutting down; not sent".into());
        return reply.answer(Err(e), None);
    }
    let bundles2 = bundles.clone();
    let name = b.name;
    let spawned = std::thread::Builder::new()
        .name("swqos-rpc-bundle".into())
        .spawn(move || {
            let result = bundle_answer(answer.recv_timeout(BUNDLE_TIMEOUT).ok(), &name);
            bundles2.in_flight.fetch_sub(1, Ordering::AcqRel);
            reply.answer(result, None);
        });
    if spawned.is_err() {
        // The reply went with the closure: dropped, it answers an internal error.
        bundles.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to a bundle from the relay thread's reply (`None`: none in time).
fn bundle_answer(
    r: Option<Result<crate::relay::Reply, String>>,
    lane: &str,
) -> Result<Value, RpcError> {
    match r {
        Some(Ok(r)) => match (r.status, r.signature, r.error) {
            (200..=299, Some(id), None) => Ok(json!(id)),
            (_, _, Some(e)) => Err(RpcError::new(
                code::REJECTED,
                format!("lane {lane}: the relay refused the bundle: {e}"),
            )),
            (status, _, None) => Err(RpcError::new(
                code::REJECTED,
                format!("lane {lane}: the relay answered HTTP {status} without a bundle id"),
            )),
        },
        Some(Err(e)) => Err(RpcError::new(
            code::UNHEALTHY,
            format!("lane {lane}: relay unreachable: {e}"),
        )),
        None => Err(RpcError::new(
            code::MAYBE_SENT,
            format!("lane {lane}: no answer from the relay in time; it may have the bundle"),
        )),
    }
}

/// Resolves `[control] rpc_lanes` to a lane mask (0 when unset: every lane).
pub(crate) fn lane_mask(lanes: Option<&[usize]>) -> u64 {
    lanes.map_or(0, |ids| {
        ids.iter().fold(0u64, |m, &i| m | (1u64 << (i % 64)))
    })
}

/// The address the endpoint listens on, for the start-up log.
pub(crate) fn describe(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("JSON-RPC sendTransaction on http://{addr}")
    } else {
        format!("JSON-RPC sendTransaction on http://{addr} (WARNING: not loopback: reachable from other hosts)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use params::{Encoding, MAX_BASE58, MAX_BASE64};
    use swqos_shm::layout::MAX_TX_SIZE;

    /// Answers `body` with `ctx` as the endpoint would: (HTTP status, headers, JSON).
    fn call_with(body: &str, ctx: &Ctx) -> (u16, Vec<(&'static str, String)>, Value) {
        let (respond, answers) = server::test_responder();
        let gone = Arc::new(AtomicBool::new(false));
        let request = Request {
            body: body.as_bytes().to_vec(),
            gone,
            respond,
        };
        handle_request(request, ctx);
        let a = answers.recv_timeout(Duration::from_secs(10)).unwrap();
        (a.status, a.headers, serde_json::from_str(&a.body).unwrap())
    }

    fn no_lanes_ctx() -> (Ctx, Receiver<Job>) {
        let (jobs, rx) = mpsc::channel();
        let ctx = Ctx {
            jobs,
            shm: "/nonexistent/swqos-rpc-test".into(),
            bundles: Arc::new(Bundles::with_lanes(Vec::new(), None)),
            upstream: Upstream::none(),
        };
        (ctx, rx)
    }

    fn call(body: &str) -> Value {
        call_with(body, &no_lanes_ctx().0).2
    }

    #[test]
    fn json_rpc_errors_follow_the_conventions() {
        assert_eq!(call("{nope")["error"]["code"], code::PARSE_ERROR);
        assert_eq!(call("[]")["error"]["code"], code::INVALID_REQUEST);
        assert_eq!(
            call(r#"{"id":1,"method":"x"}"#)["error"]["code"],
            code::INVALID_REQUEST
        );
        let v = call(r#"{"jsonrpc":"2.0","id":7,"method":"getBalance"}"#);
        assert_eq!(v["error"]["code"], code::UPSTREAM, "no upstream here: {v}");
        assert_eq!(v["error"]["data"]["reason"], "not_configured", "{v}");
        assert_eq!(v["id"], 7);
        let v = call(r#"{"jsonrpc":"2.0","id":7,"method":"swqos_nope"}"#);
        assert_eq!(v["error"]["code"], code::METHOD_NOT_FOUND);
        let v = call(r#"{"jsonrpc":"2.0","id":8,"method":"getVersion"}"#);
        assert_eq!(v["result"]["solana-core"], SOLANA_CORE_VERSION, "{v}");
        let v = call(r#"{"jsonrpc":"2.0","id":"a","method":"sendTransaction","params":[]}"#);
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS);
        let v = call(
            r#"{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AQ==",{"encoding":"base64"}]}"#,
        );
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid transaction"));
        let v = call(r#"{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["0OIl"]}"#);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid base58"));
        let v = call(
            r#"[{"jsonrpc":"2.0","id":1,"method":"getHealth"},{"jsonrpc":"2.0","id":2,"method":"sendBundle","params":[[]]}]"#,
        );
        assert_eq!(v[0]["error"]["code"], code::UNHEALTHY, "no data plane here");
        assert_eq!(v[1]["error"]["code"], code::METHOD_NOT_FOUND);
        assert!(v[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a Jito relay lane"));
        assert_eq!(lane_mask(Some(&[0, 2])), 0b101);
        assert_eq!(lane_mask(None), 0);
    }

    #[test]
    fn an_encoding_that_is_not_a_known_name_is_an_error_not_base58() {
        let tx = bs58::encode(&valid_samples()[0]).into_string();
        for config in [
            json!({"encoding": 64}),
            json!({"encoding": "hex"}),
            json!({"encoding": ["base58"]}),
            json!("base58"),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
                              "params": [tx, config]});
            let v = call(&body.to_string());
            assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{config}: {v}");
        }
        for config in [json!({}), json!(null), json!({"encoding": null})] {
            assert_eq!(encoding(&json!([tx, config])), Ok(Encoding::Base58));
        }
    }

    #[test]
    fn oversize_base58_and_base64_are_refused_before_decoding() {
        // The longest a 1232-byte transaction can be, in each encoding, passes the cap.
        let big = vec![0xffu8; MAX_TX_SIZE];
        assert!(bs58::encode(&big).into_string().len() <= MAX_BASE58);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        assert_eq!(b64.len(), MAX_BASE64);
        assert!(decode_tx(&b64, Encoding::Base64).is_ok());
        // 100k characters of valid base58 digits: refused at once, not decoded (seconds).
        let long = "2".repeat(100_000);
        let started = std::time::Instant::now();
        let e = decode_tx(&long, Encoding::Base58).unwrap_err();
        assert!(
            e.starts_with("transaction too large: 100000 characters"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        let e = decode_tx(&"A".repeat(MAX_BASE64 + 4), Encoding::Base64).unwrap_err();
        assert!(e.contains("at most 1644"), "{e}");
    }

    #[test]
    fn a_caller_gone_before_its_batch_is_handled_submits_nothing() {
        let (ctx, jobs) = no_lanes_ctx();
        let (respond, _answers) = server::test_responder();
        let tx = bs58::encode(&valid_samples()[0]).into_string();
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [tx]});
        let body = Value::Array(vec![call; 3]).to_string();
        let request = Request {
            body: body.into_bytes(),
            gone: Arc::new(AtomicBool::new(true)),
            respond,
        };
        handle_request(request, &ctx);
        assert!(jobs.try_recv().is_err(), "no job for a caller that went");
    }

    #[test]
    fn a_single_send_carries_the_lanes_header_and_a_batch_does_not() {
        let (ctx, jobs) = no_lanes_ctx();
        let fake_submitter = std::thread::spawn(move || {
            while let Ok(job) = jobs.recv() {
                let report = answer::Report {
                    signature: job.signature.clone(),
                    lanes: vec![
                        ("udp".into(), answer::Lane::Sent("fast")),
                        ("relay".into(), answer::Lane::Failed("HTTP 500".into())),
                    ],
                };
                let result = if job.detailed {
                    Ok(report.details())
                } else {
                    report.result()
                };
                job.reply.answer(result, Some(report.header()));
            }
        });
        let tx = bs58::encode(&valid_samples()[0]).into_string();
        let one =
            |method: &str| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": [tx]});
        let (status, headers, v) = call_with(&one("sendTransaction").to_string(), &ctx);
        assert_eq!(status, 200);
        assert!(v["result"].is_string(), "{v}");
        assert_eq!(
            headers,
            vec![(
                "X-Swqos-Lanes",
                "udp=sent (fast); relay=failed: HTTP 500".to_string()
            )]
        );
        let (_, _, v) = call_with(&one("swqos_sendTransaction").to_string(), &ctx);
        assert_eq!(v["result"]["failed"][0]["lane"], "relay", "{v}");
        let batch = json!([one("sendTransaction"), one("sendTransaction")]);
        let (_, headers, v) = call_with(&batch.to_string(), &ctx);
        assert!(headers.is_empty());
        assert_eq!(v.as_array().unwrap().len(), 2);
        drop(ctx);
        fake_submitter.join().unwrap();
    }

    /// A mock upstream RPC on loopback: answers each request (a call or a batch, answered in
    /// reverse order) with `{"result": "<method>@<id>"}`; returns its URL and the bodies seen.
    fn mock_upstream() -> (dpdk_config::RpcUpstream, Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = s.read(&mut chunk).unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            break body.to_string();
                        }
                    }
                };
                let answer = |c: &Value| {
                    json!({"jsonrpc": "2.0", "id": c["id"],
                           "result": format!("{}@{}", c["method"].as_str().unwrap(), c["id"])})
                };
                let out = match serde_json::from_str::<Value>(&body).unwrap() {
                    Value::Array(calls) => {
                        Value::Array(calls.iter().rev().map(answer).collect()).to_string()
                    }
                    call => format!(" {} ", answer(&call)),
                };
                seen_tx.send(body).unwrap();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: \
                     chunked\r\n\r\n{:x}\r\n{out}\r\n0\r\n\r\n",
                    out.len()
                );
            }
        });
        let upstream = dpdk_config::RpcUpstream {
            url: format!("http://127.0.0.1:{port}/"),
            host: "127.0.0.1".into(),
            port,
            authority: format!("127.0.0.1:{port}"),
            path: "/".into(),
        };
        (upstream, seen)
    }

    #[test]
    fn other_methods_go_upstream_verbatim_and_a_batch_mixes_local_and_forwarded_calls() {
        let (to, seen) = mock_upstream();
        let (jobs, _rx) = mpsc::channel();
        let ctx = Ctx {
            jobs,
            shm: "/nonexistent/swqos-rpc-test".into(),
            bundles: Arc::new(Bundles::with_lanes(Vec::new(), None)),
            upstream: Upstream::start(to, Duration::from_secs(2)).unwrap(),
        };
        // A single call: forwarded byte for byte, answered byte for byte.
        let single = r#"{"jsonrpc":"2.0","id":"x","method":"getSlot","params":[{"commitment":"processed"}]}"#;
        let (respond, answers) = server::test_responder();
        let request = Request {
            body: single.as_bytes().to_vec(),
            gone: Arc::new(AtomicBool::new(false)),
            respond,
        };
        handle_request(request, &ctx);
        let a = answers.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            a.body,
            r#" {"id":"x","jsonrpc":"2.0","result":"getSlot@\"x\""} "#
        );
        assert_eq!(seen.recv().unwrap(), single);
        // A batch: local answers stay local; the forwarded calls go as one batch (ids are
        // positions) and come back with the callers' ids, in the callers' order.
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"},
            {"jsonrpc": "2.0", "id": 2, "method": "getVersion"},
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 4, "method": "sendTransaction", "params": []},
        ]);
        let (_, _, v) = call_with(&batch.to_string(), &ctx);
        assert_eq!(
            v[0],
            json!({"jsonrpc": "2.0", "id": 1, "result": "getLatestBlockhash@0"})
        );
        assert_eq!(v[1]["result"]["solana-core"], SOLANA_CORE_VERSION);
        assert_eq!(
            v[2],
            json!({"jsonrpc": "2.0", "id": 1, "result": "getSlot@1"})
        );
        assert_eq!(v[3]["error"]["code"], code::INVALID_PARAMS);
        let sent: Value = serde_json::from_str(&seen.recv().unwrap()).unwrap();
        assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");
    }

    fn valid_samples() -> Vec<Vec<u8>> {
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/data/solana-txs.jsonl"),
        )
        .unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v.get("invalid").is_none())
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v["base64"].as_str().unwrap())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn send_bundle_validates_then_answers_with_the_relay_bundle_id() {
        use crate::relay::Reply;
        let valid: Vec<String> = valid_samples()
            .iter()
            .map(|t| base64::engine::general_purpose::STANDARD.encode(t))
            .collect();
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/data/solana-txs.jsonl"),
        )
        .unwrap();
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let invalid = rows
            .iter()
            .find(|v| v.get("invalid").is_some() && v["base64"] != "")
            .unwrap()["base64"]
            .as_str()
            .unwrap();
        let (bundle_tx, bundle_rx) = mpsc::channel::<BundleJob>();
        let relay = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while let Ok(job) = bundle_rx.recv() {
                let _ = job.reply.send(Ok(Reply {
                    status: 200,
                    signature: Some("bundle-1".into()),
                    error: None,
                }));
                seen.push((job.lane, String::from_utf8(job.request).unwrap()));
            }
            seen
        });
        let (jobs, _rx) = mpsc::channel();
        let ctx = Ctx {
            jobs,
            shm: "/nonexistent/swqos-rpc-test".into(),
            bundles: Arc::new(Bundles::with_lanes(
                vec![BundleLane {
                    lane_id: 3,
                    name: "jito".into(),
                    host: "relay:80".into(),
                    path: None,
                    token: Some("tok".into()),
                }],
                Some(bundle_tx),
            )),
            upstream: Upstream::none(),
        };
        let call = |params: Value| -> Value {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "sendBundle", "params": params});
            call_with(&body.to_string(), &ctx).2
        };
        let b64 = json!({"encoding": "base64"});
        let v = call(json!([vec![&valid[0]; 6], b64]));
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{v}");
        let v = call(json!([[], b64]));
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{v}");
        let v = call(json!([[valid[0], invalid], b64]));
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("transaction 1: invalid transaction"));
        let v = call(json!([[valid[0]]])); // base58 by default: not valid base58
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{v}");
        let v = call(json!([valid[..3], b64]));
        assert_eq!(v["result"], "bundle-1", "{v}");
        drop(ctx);
        let seen = relay.join().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, 3);
        assert!(seen[0]
            .1
            .starts_with("POST /api/v1/bundles?uuid=tok HTTP/1.1\r\n"));
        assert!(seen[0].1.contains(&format!("[[\"{}\",", valid[0])));
    }
}
