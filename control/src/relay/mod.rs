//! The relay connection pool: HTTP/1.1 over ordinary kernel TCP sockets to SWQOS relays.
//!
//! Each lane (one relay endpoint) has `connections` kernel TCP connections, each owned by one
//! thread. A lane has one bounded queue ([`QUEUE_LIMIT`]) that its idle connections take
//! requests from, so [`RelayPool::send`] puts a request on an idle connection at once or leaves
//! it for the next connection to finish. Per connection:
//!
//! - One request in flight (HTTP/1.1, no pipelining). The request is built by the lane's
//!   [`RequestTemplate`] into a reused buffer and written with `write_all`; the response is read
//!   by status line, headers and body (`Content-Length`, `Transfer-Encoding: chunked`, or up to
//!   the close), with interim `1xx` responses skipped and [`READ_TIMEOUT`] as the deadline.
//! - Every request gets exactly one [`Outcome`]. A request written on a connection that then
//!   fails (reset, close, timeout) is an `Err` outcome and is *not* sent again: the relay may
//!   already have it, so the caller decides.
//! - Before a request is written the socket is checked (a non-blocking `MSG_PEEK`): a connection
//!   the relay closed while idle is replaced first, and the request (nothing of it written yet)
//!   goes back to the front of the queue instead of failing.
//! - Reconnects: after a connect failure, reset, timeout or protocol error, with exponential
//!   backoff (100 ms doubling to 5 s, ±20 % jitter; the streak restarts once a connection has
//!   answered a request). An orderly close of a healthy connection (a response with
//!   `Connection: close`, or the relay closing an idle connection) reconnects at once.
//! - Keep-alive: a connection idle for the lane's `ping_interval` sends
//!   `GET / HTTP/1.1` (Host: the lane's address) and discards the response, whatever its status.
//!
//! A lane whose every connection is down answers [`RelayPool::send`] at once with an `Err`
//! outcome naming the last error; the queue is emptied the same way when the last connection of
//! a lane goes down, so nothing waits silently. Logs (`tracing`, [`crate::logging`]) name the lane,
//! connection and address, never request bytes or tokens.

// Some of the API (`status`, `NO_CONN`, `Reply` fields) is for metrics and callers that the
// crate does not have yet; the tests use all of it.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use swqos_shm::layout::relay_failure;
use swqos_shm::sessions::DelegatedSend;
use swqos_wire::relay::{request_digest, RequestTemplate};
use tracing::{info, warn};

use crate::sessions::{SessionBoard, SessionId};
use crate::tls::{TlsConn, TxState};

/// Requests a lane holds while all its connections are busy; more are refused (`Err` outcome).
pub(crate) const QUEUE_LIMIT: usize = 4096;
/// How long a TCP connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a relay may take to answer a request (or a keep-alive ping) completely.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request write may block (the relay not reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; doubles per consecutive failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest reconnect delay (before jitter).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lived this long counts as healthy even if it answered nothing.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Longest error text taken from a response body.
const MAX_ERROR_TEXT: usize = 512;
/// `Outcome::conn` of a request refused before reaching any connection.
pub(crate) const NO_CONN: usize = usize::MAX;

/// One relay lane: where to connect, how to write requests, how many connections.
#[derive(Debug, Clone)]
pub(crate) struct RelayLaneSpec {
    /// The lane's name (for logs).
    pub(crate) name: String,
    /// The relay's address.
    pub(crate) addr: SocketAddrV4,
    /// The provider's request, with host and token prebuilt.
    pub(crate) template: RequestTemplate,
    /// Kernel TCP connections kept open to the relay.
    pub(crate) connections: usize,
    /// Send a keep-alive request when a connection has been idle this long; zero: never.
    pub(crate) ping_interval: Duration,
    /// The lane's id in the config (what the data plane's session table calls it).
    pub(crate) lane_id: u8,
    /// HTTPS: how to make the TLS connection.
    pub(crate) tls: Option<LaneTls>,
}

/// The TLS side of an HTTPS lane, built once at start.
#[derive(Debug, Clone)]
pub(crate) struct LaneTls {
    /// rustls's client config (roots, ALPN, key log).
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// SNI and the name verified.
    pub(crate) server_name: String,
}

/// What became of one request.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The caller's id from [`RelayPool::send`].
    pub(crate) id: u64,
    /// The lane index.
    pub(crate) lane: usize,
    /// The connection index within the lane, or [`NO_CONN`] when refused before reaching one.
    pub(crate) conn: usize,
    /// The relay's answer, or why there is none (the request may or may not have reached the
    /// relay when it was written before the failure: the code says).
    pub(crate) result: Result<Reply, Failure>,
    /// When the request was written to the socket (when it was refused, for refusals).
    pub(crate) sent_at: Instant,
    /// When the response was read or the failure seen.
    pub(crate) done_at: Instant,
}

/// Why a request got no answer: a [`relay_failure`] code (which also says whether the request
/// may have reached the relay) and the details, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// A [`relay_failure`] code.
    pub(crate) code: u16,
    /// What happened, in words.
    pub(crate) reason: String,
}

impl Failure {
    pub(crate) fn new(code: u16, reason: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: reason.into(),
        }
    }

    /// A request refused before it was written: the lane is down (with the connect or TLS
    /// failure that keeps it down), stopping, or full.
    fn not_sent(reason: String) -> Failure {
        let code = match failure_code(&reason) {
            c @ (relay_failure::CONNECT
            | relay_failure::TLS_UNTRUSTED
            | relay_failure::TLS_HANDSHAKE) => c,
            _ => relay_failure::NOT_SENT,
        };
        Failure::new(code, reason)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A relay's HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The transaction signature the relay returned: JSON `result` (a string), `signature`,
    /// `data.signatures[0]`, or a bare text body.
    pub(crate) signature: Option<String>,
    /// JSON-RPC `error.message`, or for a non-2xx status the body (or the status line when the
    /// body is empty).
    pub(crate) error: Option<String>,
}

/// A request waiting for a connection.
struct Job {
    id: u64,
    /// The transaction (written with the lane's template), or with `raw` the whole request.
    tx: Vec<u8>,
    /// `tx` is ready request bytes ([`RelayPool::send_raw`]), written as they are.
    raw: bool,
    /// The data plane already sent it: complete that send (after checking it).
    delegated: Option<Delegated>,
}

/// A send the data plane made on one of the pool's connections, as its hand-off record says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delegated {
    /// The attach epoch the record was read under.
    pub(crate) epoch: u64,
    /// What the data plane sent, where.
    pub(crate) send: DelegatedSend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Connecting without having failed since it was last up (or at start): requests wait.
    Connecting,
    Up,
    /// Failed; waiting to reconnect or reconnecting.
    Down,
}

struct LaneState {
    queue: VecDeque<Job>,
    /// Per connection: the completion of a send the data plane made on it (at most one).
    inbox: Vec<VecDeque<Job>>,
    conns: Vec<ConnState>,
    /// Clones of the connections' sockets, so `stop` can shut them down under a blocked read.
    sockets: Vec<Option<TcpStream>>,
    last_error: String,
    stopping: bool,
}

/// A lane as its connection threads share it.
struct Lane {
    index: usize,
    name: String,
    addr: SocketAddrV4,
    template: RequestTemplate,
    ping_interval: Duration,
    /// `GET / HTTP/1.1` with the lane's address as Host.
    ping: Vec<u8>,
    /// The session table, where idle connections are armed for the data plane.
    board: Arc<SessionBoard>,
    /// Session index of connection 0 of this lane.
    first_session: usize,
    lane_id: u8,
    tls: Option<LaneTls>,
    state: Mutex<LaneState>,
    /// Idle connections wait here for requests.
    work: Condvar,
    /// Connections waiting to reconnect wait here (woken by `stop`).
    wake: Condvar,
    outcomes: Sender<Outcome>,
}

/// The relay connections of every lane. See the module documentation.
pub(crate) struct RelayPool {
    lanes: Vec<Arc<Lane>>,
    threads: Vec<JoinHandle<()>>,
    outcomes: Sender<Outcome>,
}

impl RelayPool {
    /// Starts `connections` kernel TCP connections per lane (TCP_NODELAY, connect timeout), each
    /// owned by one thread; they reconnect with exponential backoff after a failure, reset or
    /// remote close. Every request's outcome goes to `outcomes`.
    pub(crate) fn start(lanes: Vec<RelayLaneSpec>, outcomes: Sender<Outcome>) -> RelayPool {
        let n = lanes.iter().map(|l| l.connections).sum();
        RelayPool::start_with_board(lanes, outcomes, SessionBoard::new(n))
    }

    /// As [`RelayPool::start`], arming idle connections in `board` for delegated sends:
    /// connection `c` of lane `l` is session `sum(connections of lanes before l) + c`.
    pub(crate) fn start_with_board(
        lanes: Vec<RelayLaneSpec>,
        outcomes: Sender<Outcome>,
        board: Arc<SessionBoard>,
    ) -> RelayPool {
        let mut next_session = 0;
        let mut pool = RelayPool {
            lanes: Vec::with_capacity(lanes.len()),
            threads: Vec::new(),
            outcomes: outcomes.clone(),
        };
        for (index, spec) in lanes.into_iter().enumerate() {
            let ping = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", spec.addr).into_bytes();
            let lane = Arc::new(Lane {
                index,
                name: spec.name,
                addr: spec.addr,
                template: spec.template,
                ping_interval: spec.ping_interval,
                ping,
                board: board.clone(),
                first_session: next_session,
                lane_id: spec.lane_id,
                tls: spec.tls,
                state: Mutex::new(LaneState {
                    queue: VecDeque::new(),
                    inbox: (0..spec.connections).map(|_| VecDeque::new()).collect(),
                    conns: vec![ConnState::Connecting; spec.connections],
                    sockets: (0..spec.connections).map(|_| None).collect(),
                    last_error: if spec.connections == 0 {
                        "the lane has no connections configured".to_string()
                    } else {
                        "not connected yet".to_string()
                    },
                    stopping: false,
                }),
                work: Condvar::new(),
                wake: Condvar::new(),
                outcomes: outcomes.clone(),
            });
            for conn in 0..spec.connections {
                let owned = lane.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("relay-{index}-{conn}"))
                    .spawn(move || run_connection(&owned, conn));
                match spawned {
                    Ok(t) => pool.threads.push(t),
                    Err(e) => {
                        // Counted as down for good, so requests never wait on it.
                        let reason = format!("cannot start the connection thread: {e}");
                        warn!("relay lane {} conn {conn}: {reason}", lane.name);
                        lane.set_state(conn, ConnState::Down, Some(&reason));
                    }
                }
            }
            next_session += spec.connections;
            pool.lanes.push(lane);
        }
        pool
    }

    /// Completes a send the data plane made on connection `conn` of `lane` (it claimed that
    /// connection's session): the connection writes the identical request to its socket, whose
    /// copy the relay discards as a duplicate, and reads the response as usual.
    pub(crate) fn send_delegated(
        &self,
        lane: usize,
        conn: usize,
        id: u64,
        tx: Vec<u8>,
        delegated: Delegated,
    ) {
        let stale = |why: &str| {
            let now = Instant::now();
            let _ = self.outcomes.send(Outcome {
                id,
                lane,
                conn: NO_CONN,
                result: Err(Failure::new(relay_failure::STALE, why)),
                sent_at: now,
                done_at: now,
            });
        };
        let Some(l) = self.lanes.get(lane) else {
            return stale("the data plane sent on a lane this control plane does not have");
        };
        let mut st = l.lock();
        if conn >= st.inbox.len() {
            drop(st);
            return stale("the data plane sent on a connection this control plane does not have");
        }
        st.inbox[conn].push_back(Job {
            id,
            tx,
            raw: false,
            delegated: Some(delegated),
        });
        drop(st);
        l.work.notify_all();
    }

    /// Sends a request for `tx` on `lane` over an idle connection, or queues it for the lane's
    /// next free connection. When every connection of the lane is down, when the queue holds
    /// [`QUEUE_LIMIT`] requests, or when `lane` does not exist, the outcome is an `Err` at once.
    pub(crate) fn send(&self, lane: usize, id: u64, tx: Vec<u8>) {
        self.enqueue(
            lane,
            Job {
                id,
                tx,
                raw: false,
                delegated: None,
            },
        );
    }

    /// As [`RelayPool::send`], for a whole request built by the caller (a Jito bundle): the
    /// bytes are written as they are on the lane's next free connection, and the response is
    /// read and reported like any other.
    pub(crate) fn send_raw(&self, lane: usize, id: u64, request: Vec<u8>) {
        self.enqueue(
            lane,
            Job {
                id,
                tx: request,
                raw: true,
                delegated: None,
            },
        );
    }

    fn enqueue(&self, lane: usize, job: Job) {
        let id = job.id;
        let refuse = |reason: String| {
            let now = Instant::now();
            let _ = self.outcomes.send(Outcome {
                id,
                lane,
                conn: NO_CONN,
                result: Err(Failure::not_sent(reason)),
                sent_at: now,
                done_at: now,
            });
        };
        let Some(l) = self.lanes.get(lane) else {
            refuse(format!(
                "no relay lane {lane} (there are {})",
                self.lanes.len()
            ));
            return;
        };
        let mut st = l.lock();
        if st.stopping {
            drop(st);
            refuse("the relay pool is stopping".to_string());
        } else if all_down(&st.conns) {
            let reason = l.down_message(&st);
            drop(st);
            refuse(reason);
        } else if st.queue.len() >= QUEUE_LIMIT {
            drop(st);
            refuse(format!(
                "lane {}: {QUEUE_LIMIT} requests already wait for a connection to {}",
                l.name, l.addr
            ));
        } else {
            st.queue.push_back(job);
            drop(st);
            l.work.notify_one();
        }
    }

    /// Per lane: (connections up, connections total).
    pub(crate) fn status(&self) -> Vec<(usize, usize)> {
        self.lanes
            .iter()
            .map(|l| {
                let st = l.lock();
                let up = st.conns.iter().filter(|&&c| c == ConnState::Up).count();
                (up, st.conns.len())
            })
            .collect()
    }

    /// Stops every thread and closes the sockets. Queued requests and requests in flight get
    /// `Err` outcomes.
    pub(crate) fn stop(mut self) {
        self.signal_stop();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        for l in &self.lanes {
            let mut st = l.lock();
            if st.stopping {
                continue;
            }
            st.stopping = true;
            let queued: Vec<Job> = st.queue.drain(..).collect();
            for s in st.sockets.iter().flatten() {
                let _ = s.shutdown(Shutdown::Both);
            }
            drop(st);
            l.work.notify_all();
            l.wake.notify_all();
            for job in queued {
                l.emit(
                    job.id,
                    NO_CONN,
                    Err(Failure::new(
                        relay_failure::NOT_SENT,
                        "the relay pool stopped before sending it",
                    )),
                    None,
                );
            }
        }
    }
}

impl Drop for RelayPool {
    /// Dropping without `stop` still stops the threads (without waiting for them).
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn all_down(conns: &[ConnState]) -> bool {
    conns.iter().all(|&c| c == ConnState::Down)
}

mod connection;
mod lane;
mod response;
mod socket;

use connection::*;
use response::*;
use socket::*;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::{BufRead, BufReader};
    use std::net::{Ipv4Addr, TcpListener};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{self, Receiver};
    use swqos_wire::relay::{Endpoint, Provider};

    /// Every wait in these tests is bounded by this.
    const WAIT: Duration = Duration::from_secs(20);
    const TOKEN: &str = "T-relaypool";

    struct Sample {
        tx: Vec<u8>,
        signature: String,
    }

    /// The valid sample transactions.
    fn samples() -> Vec<Sample> {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/data/solana-txs.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("invalid").is_none())
            .map(|v| Sample {
                tx: base64::engine::general_purpose::STANDARD
                    .decode(v["base64"].as_str().unwrap())
                    .unwrap(),
                signature: v["signature"].as_str().unwrap().to_string(),
            })
            .collect()
    }

    /// A running `tests/relay/mock_relay.py`, killed on drop.
    struct Mock {
        child: Child,
        addr: SocketAddrV4,
        log: PathBuf,
    }

    impl Mock {
        fn start(name: &str, args: &[&str]) -> Mock {
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/relay/mock_relay.py");
            let log = std::env::temp_dir().join(format!(
                "swqos-relaypool-{}-{name}.jsonl",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&log);
            let mut child = Command::new("python3")
                .arg(&script)
                .args(["--listen", "127.0.0.1:0", "--token-all", TOKEN])
                .arg("--log")
                .arg(&log)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn python3 tests/relay/mock_relay.py");
            let mut first = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut first)
                .unwrap();
            let addr = first
                .trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("mock relay said {first:?}"))
                .parse()
                .unwrap();
            Mock { child, addr, log }
        }

        /// The mock's log lines.
        fn log(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }

        fn template(&self, p: Provider, token: &str) -> RequestTemplate {
            let host = self.addr.to_string();
            let token = (p != Provider::Lightspeed).then_some(token);
            RequestTemplate::new(
                p,
                Endpoint {
                    host: &host,
                    path: None,
                    token,
                },
            )
            .unwrap()
        }
    }

    impl Drop for Mock {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.log);
        }
    }

    fn lane(name: &str, addr: SocketAddrV4, template: RequestTemplate, n: usize) -> RelayLaneSpec {
        RelayLaneSpec {
            name: name.to_string(),
            addr,
            template,
            connections: n,
            ping_interval: Duration::ZERO,
            lane_id: 0,
            tls: None,
        }
    }

    fn recv(rx: &Receiver<Outcome>) -> Outcome {
        rx.recv_timeout(WAIT).expect("an outcome in time")
    }

    fn wait_up(pool: &RelayPool, lane: usize, up: usize) {
        let deadline = Instant::now() + WAIT;
        while pool.status()[lane].0 != up {
            assert!(Instant::now() < deadline, "lane {lane} never had {up} up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A private directory for a test's segment, removed on drop.
    struct SegDir(PathBuf);

    impl SegDir {
        fn new(name: &str) -> SegDir {
            use std::os::unix::fs::DirBuilderExt;
            let dir =
                std::env::temp_dir().join(format!("swqos-relay-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            SegDir(dir)
        }
    }

    impl Drop for SegDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Findings 1 and 2 of the core-hardening issue: the control plane completes a delegated
    /// send (writes its mirror copy) only when the hand-off names the connection as it is now
    /// (attach epoch and generation) and the plaintext digest and length match what it would
    /// write. A send of another connection or data plane is answered as stale and this
    /// connection carries on; a send that differs closes the connection and writes nothing.
    /// (No data plane here: the mirror write is the only copy the relay gets, so the relay's
    /// log shows exactly which ones were written.)
    #[test]
    fn relay_delegated_sends_are_completed_only_when_they_match_their_connection() {
        use swqos_shm::layout::{LaneInfo, LaneKind, Layout};
        use swqos_shm::sessions::state;
        use swqos_shm::Segment;

        let mock = Mock::start("delegated", &["--strict"]);
        let samples = samples();
        let template = mock.template(Provider::Jito, TOKEN);
        let dir = SegDir::new("delegated");
        let seg = Arc::new(
            Segment::create(
                &dir.0.join("segment"),
                Layout::new(1, 16, 1, 0).unwrap(),
                &[LaneInfo::new("jito", LaneKind::Http)],
                &[],
                1_000_000_000,
            )
            .unwrap(),
        );
        let ctl = Arc::new(swqos_shm::ControlSegment::create(&seg).unwrap());
        let board = SessionBoard::new(1);
        board.attach(Some(ctl.clone()), 1);
        let (tx, rx) = mpsc::channel();
        let spec = lane("jito", mock.addr, template.clone(), 1);
        let pool = RelayPool::start_with_board(vec![spec], tx, board.clone());
        let e = ctl.session(0);
        // The data plane's claim, as `FastPath::try_send` makes it.
        let claim = || {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(a) = e.armed() {
                    if e.claim(&a) {
                        return a.generation;
                    }
                }
                assert!(Instant::now() < deadline, "the connection was never armed");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let request = |tx: &[u8]| {
            let mut buf = vec![0u8; template.len(tx.len())];
            template.write(tx, &mut [&mut buf[..]]).unwrap();
            buf
        };
        let report = |epoch: u64, generation: u32, of: &[u8]| Delegated {
            epoch,
            send: DelegatedSend::new(0, generation, 0, of.len(), None, request_digest(&[of])),
        };
        let (a, b, c) = (&samples[0], &samples[1], &samples[2]);
        let (ra, rb, rc) = (request(&a.tx), request(&b.tx), request(&c.tx));
        let epoch = board.epoch();

        // A record of the connection that used the entry before: stale, nothing written.
        let generation = claim();
        let late = report(epoch, generation.wrapping_sub(1), &ra);
        pool.send_delegated(0, 0, 1, a.tx.clone(), late);
        let o = recv(&rx);
        assert_eq!(o.id, 1);
        assert_eq!(o.result.unwrap_err().code, relay_failure::STALE);
        // A record of a data plane that is gone (an earlier attach): stale too.
        pool.send_delegated(0, 0, 2, a.tx.clone(), report(epoch - 1, generation, &ra));
        assert_eq!(recv(&rx).result.unwrap_err().code, relay_failure::STALE);
        // The claim's own record: the mirror write, answered by the relay.
        pool.send_delegated(0, 0, 3, a.tx.clone(), report(epoch, generation, &ra));
        let o = recv(&rx);
        assert_eq!(o.id, 3);
        let reply = o.result.unwrap();
        assert_eq!(reply.signature.as_deref(), Some(&a.signature[..]));

        // The data plane wrote `b`'s request, the hand-off carries `c` (a client rewrote its
        // slot, or the two processes' templates differ): nothing is written, the connection
        // closes (it must not carry a second, different copy of those bytes).
        let generation = claim();
        pool.send_delegated(0, 0, 4, c.tx.clone(), report(epoch, generation, &rb));
        let o = recv(&rx);
        assert_eq!(o.id, 4);
        let f = o.result.unwrap_err();
        assert_eq!(f.code, relay_failure::MISMATCH, "{f}");
        // The connection comes back under a new generation and works.
        let deadline = Instant::now() + WAIT;
        while board.current(0).map(|s| s.generation) == Some(generation)
            || e.state() != state::ARMED
        {
            assert!(
                Instant::now() < deadline,
                "the connection did not come back"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let generation2 = claim();
        assert_ne!(generation2, generation);
        pool.send_delegated(0, 0, 5, c.tx.clone(), report(epoch, generation2, &rc));
        assert_eq!(recv(&rx).result.unwrap().status, 200);
        pool.stop();
        let sigs: Vec<String> = mock
            .log()
            .iter()
            .map(|l| l["signature"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            sigs,
            vec![a.signature.clone(), c.signature.clone()],
            "exactly the verified mirror writes reached the relay"
        );
        drop(ctl);
        drop(seg);
    }

    #[test]
    fn relay_every_provider_answers_every_sample() {
        let mock = Mock::start("all", &["--strict"]);
        let samples = samples();
        assert!(samples.len() >= 40);
        let (tx, rx) = mpsc::channel();
        let specs: Vec<RelayLaneSpec> = Provider::ALL
            .iter()
            .map(|&p| lane(p.name(), mock.addr, mock.template(p, TOKEN), 2))
            .collect();
        let lanes = specs.len();
        let pool = RelayPool::start(specs, tx);
        let total = lanes * samples.len();
        for l in 0..lanes {
            for (i, s) in samples.iter().enumerate() {
                pool.send(l, (l * 1000 + i) as u64, s.tx.clone());
            }
        }
        let mut seen = vec![false; total];
        for _ in 0..total {
            let o = recv(&rx);
            let (l, i) = (o.id as usize / 1000, o.id as usize % 1000);
            assert_eq!(o.lane, l);
            assert!(o.conn < 2);
            assert!(o.done_at >= o.sent_at);
            let p = Provider::ALL[l];
            let reply = o.result.unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(
                reply,
                Reply {
                    status: 200,
                    signature: Some(samples[i].signature.clone()),
                    error: None
                },
                "{p} sample {i}"
            );
            assert!(!std::mem::replace(&mut seen[l * samples.len() + i], true));
        }
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(pool.status(), vec![(2, 2); lanes]);
        pool.stop();
        let log = mock.log();
        assert_eq!(log.len(), total);
        assert!(log.iter().all(|l| l["ok"] == true));
    }

    #[test]
    fn relay_raw_bundle_request_shares_the_lane_with_transactions() {
        let mock = Mock::start("bundle", &["--strict"]);
        let samples = samples();
        let (tx, rx) = mpsc::channel();
        let spec = lane("jito", mock.addr, mock.template(Provider::Jito, TOKEN), 1);
        let pool = RelayPool::start(vec![spec], tx);
        let host = mock.addr.to_string();
        let txs: Vec<&[u8]> = samples[..3].iter().map(|s| &s.tx[..]).collect();
        let request = swqos_wire::relay::jito_bundle_request(
            Endpoint {
                host: &host,
                path: None,
                token: Some(TOKEN),
            },
            &txs,
        )
        .unwrap();
        pool.send_raw(0, 1, request);
        pool.send(0, 2, samples[3].tx.clone());
        let mut got: Vec<Outcome> = (0..2).map(|_| recv(&rx)).collect();
        got.sort_by_key(|o| o.id);
        let bundle = got[0].result.clone().unwrap();
        assert_eq!(bundle.status, 200, "{bundle:?}");
        let id = bundle.signature.unwrap();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        let single = got[1].result.clone().unwrap();
        assert_eq!(single.signature.as_deref(), Some(&samples[3].signature[..]));
        let log = mock.log();
        assert_eq!(log.len(), 2, "{log:?}");
        let b = log.iter().find(|l| l["provider"] == "jito-bundle").unwrap();
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["bundle_id"], id.as_str());
        let sigs: Vec<&str> = samples[..3].iter().map(|s| &s.signature[..]).collect();
        assert_eq!(b["signatures"], serde_json::json!(sigs));
        pool.stop();
    }

    #[test]
    fn relay_wrong_token_is_a_reply_with_the_error() {
        let mock = Mock::start("token", &[]);
        let s = &samples()[0];
        let cases = [
            (Provider::Jito, 401),
            (Provider::ZeroSlot, 403),
            (Provider::Bloxroute, 401),
            (Provider::HeliusSender, 401),
        ];
        let (tx, rx) = mpsc::channel();
        let specs = cases
            .iter()
            .map(|&(p, _)| lane(p.name(), mock.addr, mock.template(p, "wrong"), 1))
            .collect();
        let pool = RelayPool::start(specs, tx);
        for l in 0..cases.len() {
            pool.send(l, l as u64, s.tx.clone());
        }
        for _ in 0..cases.len() {
            let o = recv(&rx);
            let (p, status) = cases[o.lane];
            let reply = o.result.unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(reply.status, status, "{p}");
            assert_eq!(reply.signature, None, "{p}");
            let error = reply.error.unwrap_or_else(|| panic!("{p}: no error"));
            assert!(error.contains("token"), "{p}: {error}");
        }
        // Refusals keep the connection.
        assert_eq!(pool.status(), vec![(1, 1); cases.len()]);
        pool.stop();
    }

    #[test]
    fn relay_reset_is_an_error_then_the_connection_comes_back() {
        let mock = Mock::start("reset", &["--reset-after", "2"]);
        let samples = samples();
        let (tx, rx) = mpsc::channel();
        let spec = lane("jito", mock.addr, mock.template(Provider::Jito, TOKEN), 1);
        let pool = RelayPool::start(vec![spec], tx);
        let mut ok = 0;
        for (i, s) in samples.iter().take(6).enumerate() {
            wait_up(&pool, 0, 1);
            pool.send(0, i as u64, s.tx.clone());
            let o = recv(&rx);
            assert_eq!(o.id, i as u64);
            if i % 3 == 2 {
                // The third request on each connection: read by the relay, then RST.
                let e = o.result.unwrap_err();
                assert!(e.reason.contains("no complete response"), "{e}");
                assert_eq!(
                    e.code,
                    relay_failure::NO_RESPONSE,
                    "written: maybe delivered"
                );
            } else {
                let reply = o.result.unwrap();
                assert_eq!(reply.status, 200);
                assert_eq!(reply.signature.as_deref(), Some(&s.signature[..]));
                ok += 1;
            }
        }
        assert_eq!(ok, 4);
        wait_up(&pool, 0, 1);
        pool.stop();
        let log = mock.log();
        assert_eq!(log.len(), 6, "nothing is sent again");
        let conns: std::collections::BTreeSet<u64> =
            log.iter().map(|l| l["conn"].as_u64().unwrap()).collect();
        assert_eq!(conns.len(), 2);
    }

    #[test]
    fn relay_nothing_listening_answers_at_once() {
        let port = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let (tx, rx) = mpsc::channel();
        let template = RequestTemplate::new(
            Provider::Jito,
            Endpoint {
                host: "127.0.0.1",
                path: None,
                token: Some(TOKEN),
            },
        )
        .unwrap();
        let pool = RelayPool::start(vec![lane("dead", addr, template, 2)], tx);
        // Sent while the first connects may still be under way: queued, then failed.
        pool.send(0, 1, vec![1, 2, 3]);
        let o = recv(&rx);
        let e = o.result.unwrap_err();
        let want = format!("all 2 connections to {addr} are down: connect: ");
        assert!(e.reason.starts_with(&want), "{e}");
        assert!(e.reason.to_lowercase().contains("refused"), "{e}");
        assert_eq!(e.code, relay_failure::CONNECT, "never written");
        assert_eq!(pool.status(), vec![(0, 2)]);
        // Now every connection is known down: refused at once, by `send` itself.
        let before = Instant::now();
        pool.send(0, 2, vec![1, 2, 3]);
        let o = rx.try_recv().expect("the outcome before send returns");
        assert_eq!((o.id, o.conn), (2, NO_CONN));
        assert!(o.result.unwrap_err().reason.starts_with(&want));
        assert!(before.elapsed() < Duration::from_millis(100));
        // A lane index that does not exist is an error too, never a panic.
        pool.send(7, 3, vec![]);
        assert!(rx.try_recv().unwrap().result.is_err());
        let t = Instant::now();
        pool.stop();
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn relay_twenty_at_once_on_two_connections_exactly_once() {
        let mock = Mock::start("burst", &["--delay-ms", "20"]);
        let samples = samples();
        let (tx, rx) = mpsc::channel();
        let spec = lane(
            "nextblock",
            mock.addr,
            mock.template(Provider::NextBlock, TOKEN),
            2,
        );
        let pool = RelayPool::start(vec![spec], tx);
        wait_up(&pool, 0, 2);
        for (i, s) in samples.iter().take(20).enumerate() {
            pool.send(0, i as u64, s.tx.clone());
        }
        let mut seen = [0u32; 20];
        let mut conns = [0u32; 2];
        for _ in 0..20 {
            let o = recv(&rx);
            let reply = o.result.unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.signature.as_deref(),
                Some(&samples[o.id as usize].signature[..])
            );
            seen[o.id as usize] += 1;
            conns[o.conn] += 1;
        }
        assert_eq!(seen, [1; 20]);
        assert!(
            conns[0] > 0 && conns[1] > 0,
            "both connections used: {conns:?}"
        );
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        pool.stop();
        let log = mock.log();
        assert_eq!(log.len(), 20);
        for s in samples.iter().take(20) {
            let n = log
                .iter()
                .filter(|l| l["ok"] == true && l["signature"] == s.signature.as_str())
                .count();
            assert_eq!(n, 1, "{}", s.signature);
        }
    }

    #[test]
    fn relay_keepalive_ping_then_requests_still_go() {
        // The mock answers GET with 400 and closes: the pool reconnects at once.
        let mock = Mock::start("ping", &[]);
        let samples = samples();
        let (tx, rx) = mpsc::channel();
        let mut spec = lane(
            "helius",
            mock.addr,
            mock.template(Provider::HeliusSender, TOKEN),
            1,
        );
        spec.ping_interval = Duration::from_millis(100);
        let pool = RelayPool::start(vec![spec], tx);
        pool.send(0, 0, samples[0].tx.clone());
        assert_eq!(recv(&rx).result.unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(450));
        wait_up(&pool, 0, 1);
        pool.send(0, 1, samples[1].tx.clone());
        let reply = recv(&rx).result.unwrap();
        assert_eq!(reply.signature.as_deref(), Some(&samples[1].signature[..]));
        pool.stop();
        let log = mock.log();
        let pings = log
            .iter()
            .filter(|l| l["error"].as_str().is_some_and(|e| e.contains("GET")))
            .count();
        assert!(pings >= 2, "{log:?}");
        assert_eq!(log.iter().filter(|l| l["ok"] == true).count(), 2);
    }

    #[test]
    fn relay_idle_close_by_the_relay_does_not_lose_a_request() {
        // A relay that answers one request and then closes the idle connection (FIN): the next
        // request goes on a fresh connection instead of failing.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                read_request(&mut s);
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsig1\r\n0\r\n\r\n",
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                drop(s); // FIN while idle
            }
        });
        let template = RequestTemplate::new(
            Provider::ZeroSlot,
            Endpoint {
                host: "x",
                path: None,
                token: Some("k"),
            },
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let pool = RelayPool::start(vec![lane("0slot", addr, template, 1)], tx);
        pool.send(0, 0, vec![1; 10]);
        assert_eq!(recv(&rx).result.unwrap().signature.as_deref(), Some("sig1"));
        std::thread::sleep(Duration::from_millis(200));
        pool.send(0, 1, vec![2; 10]);
        let o = recv(&rx);
        assert_eq!(o.result.unwrap().signature.as_deref(), Some("sig1"));
        server.join().unwrap();
        pool.stop();
    }

    /// Reads one request (head and Content-Length body) off a test server's socket.
    fn read_request(s: &mut TcpStream) {
        let mut r = BufReader::new(s);
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
    }

    fn parse(bytes: &[u8]) -> Result<(Head, Vec<u8>), String> {
        let mut r = ResponseReader::new();
        let mut body = Vec::new();
        let mut src = bytes;
        let head = r.read_response(&mut src, Instant::now() + WAIT, &mut body)?;
        Ok((head, body))
    }

    #[test]
    fn relay_response_parsing() {
        let (h, b) = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").unwrap();
        assert_eq!((h.status, h.close, &b[..]), (200, false, &b"hello"[..]));
        let (h, b) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.status, h.close), (200, true));
        assert_eq!(b, b"abc0123456789");
        let (h, b) = parse(b"HTTP/1.0 403 Forbidden\r\n\r\nbad key").unwrap();
        assert_eq!((h.status, h.close, &b[..]), (403, true, &b"bad key"[..]));
        let (h, b) = parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((h.status, h.close, b.len()), (204, false, 0));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
            .unwrap_err()
            .contains("closed"));
        assert!(parse(b"SSH-2.0-x\r\n").unwrap_err().contains("status line"));
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .unwrap_err()
                .contains("chunk")
        );
    }

    #[test]
    fn relay_reply_extraction() {
        let r = |status, body: &str| parse_reply(status, "X", body.as_bytes());
        let sig = |s: Option<&str>, e: Option<&str>| (s.map(str::to_string), e.map(str::to_string));
        let pair = |r: Reply| (r.signature, r.error);
        assert_eq!(
            pair(r(200, r#"{"jsonrpc":"2.0","result":"S1","id":1}"#)),
            sig(Some("S1"), None)
        );
        assert_eq!(pair(r(200, r#"{"signature":"S2"}"#)), sig(Some("S2"), None));
        assert_eq!(
            pair(r(200, r#"{"success":true,"data":{"signatures":["S3"]}}"#)),
            sig(Some("S3"), None)
        );
        assert_eq!(pair(r(200, "S4\n")), sig(Some("S4"), None));
        assert_eq!(
            pair(r(
                200,
                r#"{"jsonrpc":"2.0","error":{"code":-32002,"message":"blockhash not found"},"id":1}"#
            )),
            sig(None, Some("blockhash not found"))
        );
        assert_eq!(
            pair(r(
                401,
                r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"invalid token"},"id":1}"#
            )),
            sig(None, Some("invalid token"))
        );
        assert_eq!(
            pair(r(403, "invalid api key")),
            sig(None, Some("invalid api key"))
        );
        assert_eq!(pair(r(419, "")), sig(None, Some("HTTP 419 X")));
        assert_eq!(pair(r(200, "")), sig(None, None));
    }

    /// What a connection waits for before it is armed: the peer has every byte written.
    #[test]
    fn relay_unacked_counts_bytes_the_peer_has_not_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(unacked(&client), 0);
        // More than the peer's receive buffer takes while it reads nothing: the rest waits.
        client.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match (&client).write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(unacked(&client) > 0, "{written} bytes written");
        // The peer takes everything: nothing left unacknowledged.
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < written {
            read += server.read(&mut buf).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while unacked(&client) != 0 {
            assert!(
                Instant::now() < deadline,
                "{} still unacked",
                unacked(&client)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn relay_failures_are_told_apart() {
        let down = |last: &str| format!("all 2 connections to 10.0.0.1:443 are down: {last}");
        assert_eq!(
            failure_code(&down("connect: Connection refused (os error 111)")),
            relay_failure::CONNECT
        );
        assert_eq!(
            failure_code(&down(
                "TLS handshake with relay.test: invalid peer certificate: UnknownIssuer"
            )),
            relay_failure::TLS_UNTRUSTED
        );
        assert_eq!(
            failure_code(&down("TLS handshake with relay.test: timed out")),
            relay_failure::TLS_HANDSHAKE
        );
        assert_eq!(
            failure_code("request sent, no complete response: reset"),
            relay_failure::NO_RESPONSE
        );
    }

    #[test]
    fn relay_backoff_doubles_to_five_seconds() {
        let mut rng = Rng::new(1);
        for (failures, base_ms) in [
            (1, 100.0),
            (2, 200.0),
            (3, 400.0),
            (7, 5000.0),
            (40, 5000.0),
        ] {
            for _ in 0..50 {
                let d = backoff(failures, &mut rng).as_secs_f64() * 1000.0;
                assert!(
                    d >= base_ms * 0.8 - 1e-6 && d <= base_ms * 1.2 + 1e-6,
                    "{failures}: {d}"
                );
            }
        }
    }
}
