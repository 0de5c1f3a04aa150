//! The drop-in endpoint: a Solana JSON-RPC compatible `sendTransaction` (and `getHealth`) on
//! loopback, so a bot can point its RPC URL at the control plane and have its transactions fanned
//! out by the data plane; and `sendBundle` for Jito relay lanes.
//!
//! Threads: one accepts connections; one per connection parses HTTP/1.1 (keep-alive) and
//! JSON-RPC; one submitter owns the shared-memory client (a ring is single-producer) and answers
//! each request when every lane has reported. A request is answered with the transaction's
//! signature only after the data plane has sent it on every lane; anything else is a JSON-RPC
//! error saying why, never silence.
//!
//! `sendBundle` does not go through the data plane: the connection's thread builds the Jito
//! bundle request ([`swqos_wire::relay::jito_bundle_request`]) for the *first* Jito lane among
//! `[control] rpc_lanes` (config order; all lanes when unset) and hands it to the relay thread
//! ([`crate::relay_lanes::BundleJob`]), which sends it on one of that lane's kernel TCP
//! connections; the answer is the relay's bundle id. A bundle is not fanned out to several
//! relays: each bundle id names one submission to one block engine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use swqos_shm::{Client, SubmitError};
use swqos_wire::relay::{jito_bundle_request, Endpoint, Provider, MAX_BUNDLE_TXS};
use swqos_wire::solana::Transaction;

use crate::relay::READ_TIMEOUT;
use crate::relay_lanes::BundleJob;

/// JSON-RPC 2.0 error codes (the Solana RPC's where one fits).
mod code {
    pub(super) const PARSE_ERROR: i64 = -32700;
    pub(super) const INVALID_REQUEST: i64 = -32600;
    pub(super) const METHOD_NOT_FOUND: i64 = -32601;
    pub(super) const INVALID_PARAMS: i64 = -32602;
    /// Solana's "transaction signature verification failure": used for a rejection by the
    /// data plane's checks.
    pub(super) const REJECTED: i64 = -32003;
    /// Solana's "node is unhealthy": no data plane to send with.
    pub(super) const UNHEALTHY: i64 = -32005;
}

/// Largest request body accepted (a batch of a few hundred transactions).
const MAX_BODY: usize = 1 << 20;
/// How long a request waits for its completions.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a bundle waits for its relay's answer (the pool's own read timeout bounds the
/// exchange; this covers the wait for a free connection on top).
const BUNDLE_TIMEOUT: Duration = Duration::from_secs(READ_TIMEOUT.as_secs() + 1);

/// What a connection's handler needs.
struct Ctx {
    jobs: Sender<Job>,
    shm: PathBuf,
    bundles: Arc<Bundles>,
}

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
        Bundles { lanes, jobs }
    }
}

/// One transaction for the submitter, and where to send the outcome.
struct Job {
    tx: Vec<u8>,
    reply: Sender<Result<(), (i64, String)>>,
}

/// Starts the endpoint on `listener`; it sends to the lanes in `lanes` (a lane mask; 0 = every
/// lane) of the data plane whose segment is at `shm`. Runs until `stop` is set.
/// `sendBundle` goes to the first lane of `bundles`.
pub(crate) fn spawn(
    listener: TcpListener,
    shm: PathBuf,
    lanes: u64,
    bundles: Bundles,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let bundles = Arc::new(bundles);
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let stop2 = stop.clone();
    let shm2 = shm.clone();
    std::thread::Builder::new()
        .name("swqos-rpc-submit".into())
        .spawn(move || submitter(shm2, lanes, jobs_rx, stop2))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("swqos-rpc-accept".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let ctx = Ctx {
                            jobs: jobs_tx.clone(),
                            shm: shm.clone(),
                            bundles: bundles.clone(),
                        };
                        let stop = stop.clone();
                        let _ = std::thread::Builder::new()
                            .name("swqos-rpc-conn".into())
                            .spawn(move || serve_connection(stream, ctx, stop));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
}

/// Owns the client: submits jobs, routes completions back by tag.
fn submitter(shm: PathBuf, lanes: u64, jobs: Receiver<Job>, stop: Arc<AtomicBool>) {
    struct Waiting {
        reply: Sender<Result<(), (i64, String)>>,
        owed: u32,
        failure: Option<String>,
        deadline: Instant,
    }
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
        if let Some(job) = job {
            // (Re-)attach lazily: the data plane may have started after us or restarted.
            let usable = client
                .as_ref()
                .is_some_and(|c| c.segment().check_running().is_ok());
            if !usable {
                client = None;
                waiting.clear();
                match Client::attach(&shm) {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        let _ = job.reply.send(Err((code::UNHEALTHY, e.to_string())));
                        continue;
                    }
                }
            }
            let Some(c) = client.as_mut() else { continue };
            let mask = if lanes == 0 { c.all_lanes() } else { lanes };
            let tag = next_tag;
            next_tag += 1;
            let deadline = Instant::now() + COMPLETION_TIMEOUT;
            let r = loop {
                match c.submit(&job.tx, mask, tag) {
                    Err(SubmitError::Full) if Instant::now() < deadline => {
                        drain(c, &mut waiting);
                        std::thread::yield_now();
                    }
                    other => break other,
                }
            };
            match r {
                Ok(()) => {
                    waiting.insert(
                        tag,
                        Waiting {
                            reply: job.reply,
                            owed: mask.count_ones(),
                            failure: None,
                            deadline,
                        },
                    );
                }
                Err(SubmitError::Invalid(e)) => {
                    let _ = job.reply.send(Err((
                        code::INVALID_PARAMS,
                        format!("invalid transaction: {e}"),
                    )));
                }
                Err(e @ SubmitError::NotRunning(_)) => {
                    let _ = job.reply.send(Err((code::UNHEALTHY, e.to_string())));
                }
                Err(e) => {
                    let _ = job.reply.send(Err((code::REJECTED, e.to_string())));
                }
            }
        }
        if let Some(c) = client.as_mut() {
            drain(c, &mut waiting);
        }
        // Answer what is complete; time out what is not.
        let now = Instant::now();
        waiting.retain(|_, w| {
            if w.owed == 0 {
                let _ = w.reply.send(match w.failure.take() {
                    None => Ok(()),
                    Some(why) => Err((code::REJECTED, why)),
                });
                return false;
            }
            if now > w.deadline {
                let _ = w.reply.send(Err((
                    code::UNHEALTHY,
                    "no completion from the data plane in time".into(),
                )));
                return false;
            }
            true
        });
    }

    fn drain(c: &mut Client, waiting: &mut HashMap<u64, Waiting>) {
        let names = c.lane_names().to_vec();
        while let Some(done) = c.poll() {
            let Some(w) = waiting.get_mut(&done.tag) else {
                continue;
            };
            w.owed = w.owed.saturating_sub(1);
            let lane = names
                .get(done.lane as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{}", done.lane));
            let why = done.outcome().err();
            if let (Some(why), None) = (why, &w.failure) {
                w.failure = Some(format!("lane {lane}: {why}"));
            }
        }
    }
}

/// Serves one keep-alive connection.
fn serve_connection(stream: TcpStream, ctx: Ctx, stop: Arc<AtomicBool>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let (status, body, close) = match read_request(&mut reader) {
            Ok(None) => return,
            Ok(Some(Request { body, close })) => (200, handle_body(&body, &ctx), close),
            Err(HttpError(status, why)) => (
                status,
                error_response(Value::Null, code::INVALID_REQUEST, why),
                true,
            ),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Payload Too Large",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(body.as_bytes()))
            .is_err()
            || close
        {
            return;
        }
    }
}

struct Request {
    body: Vec<u8>,
    close: bool,
}

/// An HTTP-level refusal: status and reason.
struct HttpError(u16, String);

/// Reads one request; `Ok(None)` at a clean end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Result<Option<Request>, HttpError> {
    let bad = |s: u16, why: &str| HttpError(s, why.to_string());
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => return Ok(None),
        Ok(_) => {}
    }
    let mut parts = line.split_whitespace();
    let (method, _target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut length = None;
    let mut close = false;
    let mut head_bytes = line.len();
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => head_bytes += n,
        }
        if head_bytes > 16 * 1024 {
            return Err(bad(400, "request head too large"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(bad(400, "malformed header"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad(400, "bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                411,
                "chunked bodies are not supported; send Content-Length",
            ));
        }
    }
    if method != "POST" {
        return Err(bad(405, "JSON-RPC requests are POSTs"));
    }
    let length = length.ok_or_else(|| bad(411, "Content-Length required"))?;
    if length > MAX_BODY {
        return Err(bad(413, "body too large"));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)
        .map_err(|_| bad(400, "body shorter than Content-Length"))?;
    Ok(Some(Request { body, close }))
}

fn error_response(id: Value, code: i64, message: String) -> String {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}).to_string()
}

/// Answers a JSON-RPC body: one call or a batch.
fn handle_body(body: &[u8], ctx: &Ctx) -> String {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(Value::Null, code::PARSE_ERROR, format!("parse error: {e}"))
        }
    };
    match v {
        Value::Array(calls) if calls.is_empty() => {
            error_response(Value::Null, code::INVALID_REQUEST, "empty batch".into())
        }
        Value::Array(calls) => {
            let answers: Vec<Value> = calls.iter().map(|c| handle_call(c, ctx)).collect();
            Value::Array(answers).to_string()
        }
        call => handle_call(&call, ctx).to_string(),
    }
}

fn handle_call(call: &Value, ctx: &Ctx) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let err = |code: i64, msg: String| -> Value {
        json!({"jsonrpc": "2.0", "error": {"code": code, "message": msg}, "id": id.clone()})
    };
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return err(code::INVALID_REQUEST, "not a JSON-RPC 2.0 request".into());
    }
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return err(code::INVALID_REQUEST, "missing method".into());
    };
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "sendTransaction" => send_transaction(&params, &ctx.jobs),
        "getHealth" => swqos_shm::Segment::attach(&ctx.shm)
            .map(|_| json!("ok"))
            .map_err(|e| (code::UNHEALTHY, format!("node is unhealthy: {e}"))),
        "sendBundle" => send_bundle(&params, &ctx.bundles),
        other => Err((code::METHOD_NOT_FOUND, format!("method not found: {other}"))),
    };
    match result {
        Ok(v) => json!({"jsonrpc": "2.0", "result": v, "id": id}),
        Err((code, msg)) => err(code, msg),
    }
}

/// `sendTransaction [tx, {encoding}]`: Solana's default encoding is base58.
fn send_transaction(params: &Value, jobs: &Sender<Job>) -> Result<Value, (i64, String)> {
    let invalid = |m: String| (code::INVALID_PARAMS, m);
    let tx_str = params
        .get(0)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("params[0] must be the encoded transaction".into()))?;
    let encoding = params
        .get(1)
        .and_then(|c| c.get("encoding"))
        .and_then(Value::as_str)
        .unwrap_or("base58");
    let tx = match encoding {
        "base58" => bs58::decode(tx_str)
            .into_vec()
            .map_err(|e| invalid(format!("invalid base58: {e}")))?,
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(tx_str)
            .map_err(|e| invalid(format!("invalid base64: {e}")))?,
        other => return Err(invalid(format!("unsupported encoding: {other}"))),
    };
    let signature = Transaction::parse(&tx)
        .map(|t| bs58::encode(t.first_signature()).into_string())
        .map_err(|e| invalid(format!("invalid transaction: {e}")))?;
    let (reply, answer) = mpsc::channel();
    jobs.send(Job { tx, reply }).map_err(|_| {
        (
            code::UNHEALTHY,
            "control plane is shutting down".to_string(),
        )
    })?;
    match answer.recv_timeout(COMPLETION_TIMEOUT + Duration::from_secs(1)) {
        Ok(Ok(())) => Ok(json!(signature)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err((code::UNHEALTHY, "no answer from the submitter".into())),
    }
}

/// Decodes one transaction in `encoding`.
fn decode_tx(s: &str, encoding: &str) -> Result<Vec<u8>, String> {
    match encoding {
        "base58" => bs58::decode(s)
            .into_vec()
            .map_err(|e| format!("invalid base58: {e}")),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("invalid base64: {e}")),
        other => Err(format!("unsupported encoding: {other}")),
    }
}

/// `sendBundle [[tx, ...], {encoding}]` (base58 by default): 1..=5 transactions, each validated,
/// sent as one Jito bundle to the first Jito lane; the answer is the relay's bundle id.
fn send_bundle(params: &Value, bundles: &Bundles) -> Result<Value, (i64, String)> {
    let Some(lane) = bundles.lanes.first() else {
        return Err((
            code::METHOD_NOT_FOUND,
            "sendBundle needs a Jito relay lane (none among the endpoint's lanes)".into(),
        ));
    };
    let invalid = |m: String| (code::INVALID_PARAMS, m);
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
    let encoding = params
        .get(1)
        .and_then(|c| c.get("encoding"))
        .and_then(Value::as_str)
        .unwrap_or("base58");
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
    let unhealthy = |m: String| (code::UNHEALTHY, m);
    let Some(jobs) = &bundles.jobs else {
        return Err(unhealthy("no relay thread to send the bundle".into()));
    };
    let (reply, answer) = mpsc::channel();
    jobs.send(BundleJob {
        lane: lane.lane_id,
        request,
        reply,
    })
    .map_err(|_| unhealthy("control plane is shutting down".into()))?;
    match answer.recv_timeout(BUNDLE_TIMEOUT) {
        Ok(Ok(r)) => match (r.status, r.signature, r.error) {
            (200..=299, Some(id), None) => Ok(json!(id)),
            (_, _, Some(e)) => Err((
                code::REJECTED,
                format!("lane {}: the relay refused the bundle: {e}", lane.name),
            )),
            (status, _, None) => Err((
                code::REJECTED,
                format!(
                    "lane {}: the relay answered HTTP {status} without a bundle id",
                    lane.name
                ),
            )),
        },
        Ok(Err(e)) => Err(unhealthy(format!(
            "lane {}: relay unreachable: {e}",
            lane.name
        ))),
        Err(_) => Err(unhealthy(format!(
            "lane {}: no answer from the relay in time",
            lane.name
        ))),
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

    fn call(body: &str) -> Value {
        let (jobs, _rx) = mpsc::channel();
        let ctx = Ctx {
            jobs,
            shm: "/nonexistent/swqos-rpc-test".into(),
            bundles: Arc::new(Bundles {
                lanes: Vec::new(),
                jobs: None,
            }),
        };
        serde_json::from_str(&handle_body(body.as_bytes(), &ctx)).unwrap()
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
        assert_eq!(v["error"]["code"], code::METHOD_NOT_FOUND);
        assert_eq!(v["id"], 7);
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
    fn send_bundle_validates_then_answers_with_the_relay_bundle_id() {
        use crate::relay::Reply;
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/data/solana-txs.jsonl"),
        )
        .unwrap();
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let valid: Vec<&str> = rows
            .iter()
            .filter(|v| v.get("invalid").is_none())
            .map(|v| v["base64"].as_str().unwrap())
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
            bundles: Arc::new(Bundles {
                lanes: vec![BundleLane {
                    lane_id: 3,
                    name: "jito".into(),
                    host: "relay:80".into(),
                    path: None,
                    token: Some("tok".into()),
                }],
                jobs: Some(bundle_tx),
            }),
        };
        let call = |params: Value| -> Value {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "sendBundle", "params": params});
            serde_json::from_str(&handle_body(body.to_string().as_bytes(), &ctx)).unwrap()
        };
        let b64 = json!({"encoding": "base64"});
        let v = call(json!([vec![valid[0]; 6], b64]));
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
