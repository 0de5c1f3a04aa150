//! The landing watcher thread: asks a Solana RPC whether each watched signature landed.
//!
//! - WebSocket (`[landing] ws_url`): one `signatureSubscribe` per signature at the configured
//!   commitment; its `signatureNotification` carries the slot and the transaction's `err`.
//! - HTTP (`[landing] rpc_url`): batched `getSignatureStatuses` (up to `poll_batch` signatures
//!   per call, every `poll_interval`) for every signature the WebSocket does not cover: the
//!   WebSocket is down (or not configured), the subscription was not acknowledged, or it has
//!   been silent for `ws_timeout`.
//! - A signature not seen landed `expire` after its watch began is expired (its subscription
//!   is cancelled).
//!
//! The thread is blocking (`tungstenite` over a `TcpStream` with a short read timeout, and the
//! RPC endpoint's own HTTP/1.1 client): no async runtime in the control plane.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk_config::{Commitment, LandingConfig, RpcUpstream};
use serde_json::{json, Value};
use tracing::{info, warn};
use tungstenite::{Message, WebSocket};

/// A signature to watch, from the relay thread.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    /// The relay thread's id for it.
    pub(crate) id: u64,
    /// The transaction's first signature.
    pub(crate) signature: [u8; 64],
}

/// What became of a watched signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// On chain at the commitment, in `slot`; `err` is the status's `err` when not null.
    Landed { slot: u64, err: Option<String> },
    /// Not seen within the landing window.
    Expired,
}

/// A verdict for the relay thread.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The [`Watch::id`].
    pub(crate) id: u64,
    /// What became of it.
    pub(crate) verdict: Verdict,
}

/// How long the thread blocks in one read (or wait for work): the granularity of its timers.
const TICK: Duration = Duration::from_millis(20);
/// How often a lost WebSocket is reconnected.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Connect and handshake timeout of the WebSocket.
const WS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// Not asked (no WebSocket, or asked on a connection since lost).
    None,
    /// `signatureSubscribe` sent on connection `conn`, no answer yet.
    Requested { conn: u64 },
    /// Subscribed as `id` on connection `conn`.
    Active { conn: u64, id: u64 },
    /// The RPC refused the subscription: polled only.
    Refused,
}

struct Watched {
    id: u64,
    since: Instant,
    sub: Sub,
}

struct Ws {
    socket: WebSocket<TcpStream>,
    conn: u64,
}

/// The watcher's state.
struct Watcher {
    cfg: LandingConfig,
    answers: Sender<Answer>,
    /// By base58 signature.
    watched: HashMap<String, Watched>,
    /// `signatureSubscribe` request id -> signature.
    requests: HashMap<u64, String>,
    /// Subscription id -> signature.
    subs: HashMap<u64, String>,
    ws: Option<Ws>,
    conns: u64,
    next_request: u64,
    last_connect: Option<Instant>,
    last_poll: Instant,
    /// The last error logged per channel, so a down RPC is not logged every tick.
    last_ws_error: String,
    last_rpc_error: String,
}

/// Runs the watcher until `stop` (or the relay thread drops its sender).
pub(crate) fn run(
    cfg: LandingConfig,
    watches: Receiver<Watch>,
    answers: Sender<Answer>,
    stop: Arc<AtomicBool>,
) {
    let mut w = Watcher {
        cfg,
        answers,
        watched: HashMap::new(),
        requests: HashMap::new(),
        subs: HashMap::new(),
        ws: None,
        conns: 0,
        next_request: 0,
        last_connect: None,
        last_poll: Instant::now(),
        last_ws_error: String::new(),
        last_rpc_error: String::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        w.connect_if_due();
        // Waiting: in the WebSocket's read when connected, for a watch otherwise.
        if w.ws.is_none() {
            match watches.recv_timeout(TICK) {
                Ok(watch) => w.add(watch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        while let Ok(watch) = watches.try_recv() {
            w.add(watch);
        }
        w.subscribe_new();
        w.read_ws();
        if w.last_poll.elapsed() >= w.cfg.poll_interval {
            w.last_poll = Instant::now();
            w.poll();
        }
        w.expire();
    }
}

impl Watcher {
    fn add(&mut self, watch: Watch) {
        let sig = bs58::encode(watch.signature).into_string();
        self.watched.insert(
            sig,
            Watched {
                id: watch.id,
                since: Instant::now(),
                sub: Sub::None,
            },
        );
    }

    fn finish(&mut self, sig: &str, verdict: Verdict) {
        if let Some(w) = self.watched.remove(sig) {
            if let Sub::Active { id, .. } = w.sub {
                self.subs.remove(&id);
            }
            let _ = self.answers.send(Answer { id: w.id, verdict });
        }
    }

    fn connect_if_due(&mut self) {
        let Some(url) = &self.cfg.ws_url else {
            return;
        };
        if self.ws.is_some()
            || self
                .last_connect
                .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return;
        }
        self.last_connect = Some(Instant::now());
        match connect(url) {
            Ok(socket) => {
                self.conns += 1;
                info!("landing: WebSocket {} connected", url.url);
                self.last_ws_error.clear();
                self.ws = Some(Ws {
                    socket,
                    conn: self.conns,
                });
            }
            Err(e) => self.ws_error(format!("cannot connect to {}: {e}", url.url)),
        }
    }

    fn ws_error(&mut self, e: String) {
        if e != self.last_ws_error {
            warn!("landing: WebSocket: {e}; signatures are polled with getSignatureStatuses");
            self.last_ws_error = e;
        }
    }

    fn drop_ws(&mut self, why: String) {
        self.ws = None;
        self.requests.clear();
        self.subs.clear();
        for w in self.watched.values_mut() {
            if matches!(w.sub, Sub::Requested { .. } | Sub::Active { .. }) {
                w.sub = Sub::None;
            }
        }
        self.ws_error(why);
    }

    /// Sends `signatureSubscribe` for every watch not subscribed on the current connection.
    fn subscribe_new(&mut self) {
        let Some(ws) = &mut self.ws else {
            return;
        };
        let conn = ws.conn;
        let mut failed = None;
        for (sig, w) in &mut self.watched {
            if w.sub != Sub::None {
                continue;
            }
            self.next_request += 1;
            let call = json!({
                "jsonrpc": "2.0", "id": self.next_request, "method": "signatureSubscribe",
                "params": [sig, {"commitment": self.cfg.commitment.as_str()}],
            });
            if let Err(e) = ws.socket.write(Message::text(call.to_string())) {
                failed = Some(e.to_string());
                break;
            }
            self.requests.insert(self.next_request, sig.clone());
            w.sub = Sub::Requested { conn };
        }
        if failed.is_none() {
            if let Err(e) = ws.socket.flush() {
                failed = Some(e.to_string());
            }
        }
        if let Some(e) = failed {
            self.drop_ws(format!("write failed: {e}"));
        }
    }

    /// Reads what the WebSocket has (blocks up to [`TICK`] when it has nothing).
    fn read_ws(&mut self) {
        loop {
            let Some(ws) = &mut self.ws else {
                return;
            };
            match ws.socket.read() {
                Ok(Message::Text(text)) => self.on_message(text.as_str()),
                Ok(Message::Close(_)) => return self.drop_ws("the server closed it".into()),
                Ok(_) => {} // pings are answered by tungstenite on the next write or flush
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    let _ = ws.socket.flush();
                    return;
                }
                Err(e) => return self.drop_ws(format!("read failed: {e}")),
            }
        }
    }

    fn on_message(&mut self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if msg["method"] == "signatureNotification" {
            let sub = msg["params"]["subscription"].as_u64();
            let Some(sig) = sub.and_then(|s| self.subs.get(&s)).cloned() else {
                return;
            };
            let result = &msg["params"]["result"];
            // `value` is the status object; a string ("receivedSignature") is not a landing.
            if let Some(value) = result["value"].as_object() {
                let slot = result["context"]["slot"].as_u64().unwrap_or(0);
                let err = value
                    .get("err")
                    .filter(|e| !e.is_null())
                    .map(Value::to_string);
                self.finish(&sig, Verdict::Landed { slot, err });
            }
            return;
        }
        let Some(sig) = msg["id"].as_u64().and_then(|id| self.requests.remove(&id)) else {
            return;
        };
        let conn = self.ws.as_ref().map_or(0, |ws| ws.conn);
        let Some(w) = self.watched.get_mut(&sig) else {
            return;
        };
        match msg["result"].as_u64() {
            Some(id) => {
                w.sub = Sub::Active { conn, id };
                self.subs.insert(id, sig);
            }
            None => {
                w.sub = Sub::Refused;
                let e = msg["error"].to_string();
                self.ws_error(format!("signatureSubscribe refused: {e}"));
            }
        }
    }

    /// Whether the WebSocket covers `w` now: subscribed (or asked) on the live connection and
    /// younger than `ws_timeout`.
    fn covered(&self, w: &Watched) -> bool {
        let Some(ws) = &self.ws else {
            return false;
        };
        let on_conn =
            matches!(w.sub, Sub::Requested { conn } | Sub::Active { conn, .. } if conn == ws.conn);
        on_conn && w.since.elapsed() < self.cfg.ws_timeout
    }

    /// `getSignatureStatuses` for every signature the WebSocket does not cover.
    fn poll(&mut self) {
        let due: Vec<String> = self
            .watched
            .iter()
            .filter(|(_, w)| !self.covered(w))
            .map(|(s, _)| s.clone())
            .collect();
        for batch in due.chunks(self.cfg.poll_batch) {
            match statuses(&self.cfg.rpc_url, batch, self.cfg.rpc_timeout) {
                Ok(values) => {
                    self.last_rpc_error.clear();
                    for (sig, status) in batch.iter().zip(values) {
                        if let Some(verdict) = landed(&status, self.cfg.commitment) {
                            self.finish(sig, verdict);
                        }
                    }
                }
                Err(e) => {
                    if e != self.last_rpc_error {
                        warn!(
                            "landing: getSignatureStatuses on {}: {e}",
                            self.cfg.rpc_url.url
                        );
                        self.last_rpc_error = e;
                    }
                    return;
                }
            }
        }
    }

    /// Expires the watches older than the landing window (cancelling their subscriptions).
    fn expire(&mut self) {
        let old: Vec<String> = self
            .watched
            .iter()
            .filter(|(_, w)| w.since.elapsed() >= self.cfg.expire)
            .map(|(s, _)| s.clone())
            .collect();
        for sig in old {
            if let (Some(Sub::Active { id, .. }), Some(ws)) =
                (self.watched.get(&sig).map(|w| w.sub), &mut self.ws)
            {
                self.next_request += 1;
                let call = json!({"jsonrpc": "2.0", "id": self.next_request,
                    "method": "signatureUnsubscribe", "params": [id]});
                let _ = ws.socket.send(Message::text(call.to_string()));
            }
            self.finish(&sig, Verdict::Expired);
        }
    }
}

/// Opens the WebSocket (plain `ws://`), with a read timeout of [`TICK`].
fn connect(url: &RpcUpstream) -> Result<WebSocket<TcpStream>, String> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let stream =
        TcpStream::connect_timeout(&addr, WS_CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(WS_CONNECT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let target = format!("ws://{}{}", url.authority, url.path);
    let (socket, _) = tungstenite::client(target.as_str(), stream).map_err(|e| e.to_string())?;
    socket
        .get_ref()
        .set_read_timeout(Some(TICK))
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// One `getSignatureStatuses` call: the `value` array, one entry per signature.
fn statuses(to: &RpcUpstream, sigs: &[String], timeout: Duration) -> Result<Vec<Value>, String> {
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "getSignatureStatuses",
        "params": [sigs, {"searchTransactionHistory": false}],
    });
    let answer = crate::rpc::upstream::exchange(to, call.to_string().as_bytes(), timeout)
        .map_err(|e| e.message)?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    let body: Value = serde_json::from_slice(&answer.body).map_err(|e| format!("bad JSON: {e}"))?;
    if !body["error"].is_null() {
        return Err(format!("error {}", body["error"]));
    }
    match body["result"]["value"].as_array() {
        Some(v) if v.len() == sigs.len() => Ok(v.clone()),
        _ => Err(format!(
            "expected result.value with {} entries, got {}",
            sigs.len(),
            body["result"]
        )),
    }
}

/// The verdict a `getSignatureStatuses` entry gives at `commitment`: `None` while it is null
/// or below the commitment.
pub(crate) fn landed(status: &Value, commitment: Commitment) -> Option<Verdict> {
    let s = status.as_object()?;
    let reached = match s.get("confirmationStatus").and_then(Value::as_str) {
        Some("finalized") => Commitment::Finalized,
        Some("confirmed") => Commitment::Confirmed,
        Some(_) => Commitment::Processed,
        // Older nodes: `confirmations` null means rooted.
        None if s.get("confirmations").is_some_and(Value::is_null) => Commitment::Finalized,
        None => Commitment::Processed,
    };
    if rank(reached) < rank(commitment) {
        return None;
    }
    Some(Verdict::Landed {
        slot: s.get("slot").and_then(Value::as_u64).unwrap_or(0),
        err: s.get("err").filter(|e| !e.is_null()).map(Value::to_string),
    })
}

fn rank(c: Commitment) -> u8 {
    match c {
        Commitment::Processed => 0,
        Commitment::Confirmed => 1,
        Commitment::Finalized => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_count_from_the_commitment_up() {
        let confirmed =
            json!({"slot": 7, "confirmations": 3, "err": null, "confirmationStatus": "confirmed"});
        let ok = Some(Verdict::Landed { slot: 7, err: None });
        assert_eq!(landed(&confirmed, Commitment::Processed), ok);
        assert_eq!(landed(&confirmed, Commitment::Confirmed), ok);
        assert_eq!(landed(&confirmed, Commitment::Finalized), None);
        assert_eq!(landed(&Value::Null, Commitment::Processed), None);
        let failed = json!({"slot": 9, "confirmations": null, "err": {"InstructionError": [0, {"Custom": 1}]}});
        assert_eq!(
            landed(&failed, Commitment::Finalized),
            Some(Verdict::Landed {
                slot: 9,
                err: Some(r#"{"InstructionError":[0,{"Custom":1}]}"#.into())
            })
        );
    }
}
