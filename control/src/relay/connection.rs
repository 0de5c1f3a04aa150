//! One connection thread: connect (and the TLS handshake), serve requests, pings and the
//! completions of the data plane's delegated sends, reconnect with backoff.

use super::*;

pub(super) enum Next {
    Job(Job),
    /// The completion of the data plane's send on this connection.
    Delegated(Job),
    Ping,
    Stop,
    /// Claimed by the data plane but no completion came: the connection's byte stream is in
    /// an unknown state, so it is closed and replaced.
    Abandon,
}

/// The completion code ([`relay_failure`]) of a request that got no response, from the
/// outcome's reason. A lane with no connection up answers with the last connect failure, which
/// tells a relay that cannot be reached from one whose certificate is not trusted.
pub(crate) fn failure_code(reason: &str) -> u16 {
    let Some((_, last)) = reason.split_once(" are down: ") else {
        return relay_failure::NO_RESPONSE;
    };
    if last.starts_with("TLS handshake") {
        if last.contains("invalid peer certificate") {
            relay_failure::TLS_UNTRUSTED
        } else {
            relay_failure::TLS_HANDSHAKE
        }
    } else if last.starts_with("connect") {
        relay_failure::CONNECT
    } else {
        relay_failure::NO_RESPONSE
    }
}

/// Checks a delegated send against connection `session` and the request this process would
/// write (`request`, the plaintext). `Ok` gives the TLS record size to write it with (0 on
/// plain TCP); `Err` a [`relay_failure`] code and why: `STALE` when the send was made on another
/// connection or by a data plane that is gone (nothing to do on this one), `MISMATCH` when it
/// was made on this connection but differs from what this process would write (which must then
/// close the connection: writing would put a second, different copy in the byte stream, and on
/// TLS seal a different plaintext under sequence numbers already used).
pub(super) fn check_delegated(
    lane: &Lane,
    session: usize,
    d: &Delegated,
    request: &[u8],
    tls: Option<&TlsConn>,
) -> Result<usize, (u16, String)> {
    let stale = |why: String| Err((relay_failure::STALE, why));
    let Some(SessionId { epoch, generation }) = lane.board.current(session) else {
        return stale("the data plane's send names a connection that is gone".into());
    };
    if epoch != d.epoch {
        return stale("the data plane's send was made by a data plane that is gone".into());
    }
    if generation != d.send.generation {
        return stale(format!(
            "the data plane's send was made on an earlier connection (generation {}, now {generation})",
            d.send.generation
        ));
    }
    let record = d.send.record_plaintext as usize;
    let (wire_len, seq) = match tls {
        Some(t) if record > 0 => (t.wire_len(request.len(), record), Some(t.next_seq())),
        Some(_) => (request.len(), Some(0)),
        None => (request.len(), None),
    };
    d.send
        .verify(generation, request_digest(&[request]), wire_len, seq)
        .map(|()| record)
        .map_err(|why| (relay_failure::MISMATCH, why))
}

/// The [`relay_failure`] code of a response that did not come (the reader's error).
pub(super) fn response_failure(reason: &str) -> u16 {
    if reason == timeout_message() {
        relay_failure::TIMEOUT
    } else if reason == "connection closed by the relay" || reason.starts_with("read: ") {
        relay_failure::NO_RESPONSE
    } else {
        relay_failure::BAD_RESPONSE
    }
}

/// How long a TLS handshake may take.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a claimed connection waits for the data plane's hand-off before giving up on it.
pub(super) const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection ended.
pub(super) enum End {
    Stop,
    /// Orderly close (the relay's `Connection: close`, or closed while idle).
    Closed(String),
    /// Reset, timeout, protocol error; `in_flight` is the request written before it, if any,
    /// and `code` the [`relay_failure`] its outcome gets.
    Failed {
        reason: String,
        code: u16,
        in_flight: Option<(u64, Instant)>,
    },
}

/// Per-connection buffers, reused across requests and reconnects.
pub(super) struct Buffers {
    request: Vec<u8>,
    reader: ResponseReader,
    body: Vec<u8>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            request: Vec::new(),
            reader: ResponseReader::new(),
            body: Vec::new(),
        }
    }
}

/// A connection thread's reconnect state: the backoff streak and what it last logged.
struct Reconnect {
    /// `relay lane NAME conn N to ADDR`, for logs.
    who: String,
    rng: Rng,
    /// Consecutive failures (the backoff streak).
    failures: u32,
    /// Consecutive failed connects (for logs).
    connect_failures: u32,
    /// The last connect failure logged: a new kind of failure is logged at once.
    logged_failure: String,
    ever_connected: bool,
}

impl Reconnect {
    fn new(lane: &Lane, conn: usize) -> Reconnect {
        Reconnect {
            who: format!("relay lane {} conn {conn} to {}", lane.name, lane.addr),
            rng: Rng::new(conn as u64),
            failures: 0,
            connect_failures: 0,
            logged_failure: String::new(),
            ever_connected: false,
        }
    }

    /// A failed connect: the connection is down with `reason`; gives the delay before the
    /// next attempt. (A failed TLS handshake counts as a failed connect: the lane's error names
    /// it, so submissions to a lane whose relay is not trusted fail with the reason.)
    fn connect_failed(&mut self, lane: &Lane, conn: usize, reason: String) -> Duration {
        self.failures += 1;
        self.connect_failures += 1;
        lane.set_state(conn, ConnState::Down, Some(&reason));
        let delay = backoff(self.failures, &mut self.rng);
        let n = self.connect_failures;
        if n == 1 || n.is_multiple_of(10) || reason != self.logged_failure {
            warn!(
                "{}: {reason} (failed attempt {n}; retrying in {} ms)",
                self.who,
                delay.as_millis()
            );
            self.logged_failure = reason;
        }
        delay
    }

    /// Logs a connection that came up (after how many failed attempts, over which TLS).
    fn connected(&mut self, tls: Option<&TlsConn>) {
        let who = &self.who;
        let verb = if self.ever_connected {
            "reconnected"
        } else {
            "connected"
        };
        let over = tls
            .map(|t| format!(" ({})", t.describe()))
            .unwrap_or_default();
        match self.connect_failures {
            0 => info!("{who}: {verb}{over}"),
            n => info!("{who}: {verb}{over} after {n} failed attempts"),
        }
        self.ever_connected = true;
        self.connect_failures = 0;
        self.logged_failure.clear();
    }

    /// After a connection ended: `None` to stop the thread, else the delay before the next
    /// connect. A request in flight gets its outcome here. `healthy`: the connection answered
    /// something or lived [`HEALTHY_AFTER`], which restarts the backoff streak.
    fn ended(&mut self, lane: &Lane, conn: usize, end: End, healthy: bool) -> Option<Duration> {
        let who = &self.who;
        match end {
            End::Stop => {
                lane.set_state(conn, ConnState::Down, None);
                None
            }
            End::Closed(why) if healthy => {
                self.failures = 0;
                lane.set_state(conn, ConnState::Connecting, None);
                info!("{who}: {why}; reconnecting");
                Some(Duration::ZERO)
            }
            End::Closed(why) => {
                self.failures += 1;
                lane.set_state(conn, ConnState::Down, Some(&why));
                let delay = backoff(self.failures, &mut self.rng);
                info!(
                    "{who}: {why} before answering anything; reconnecting in {} ms",
                    delay.as_millis()
                );
                Some(delay)
            }
            End::Failed {
                reason,
                code,
                in_flight,
            } => {
                if healthy {
                    self.failures = 0;
                }
                self.failures += 1;
                // Down before the outcome: whoever reads it and sends again sees the new state.
                lane.set_state(conn, ConnState::Down, Some(&reason));
                let stopping = lane.stopping();
                if let Some((id, sent_at)) = in_flight {
                    let failure = if stopping {
                        Failure::new(
                            relay_failure::CONTROL_STOPPED,
                            format!("the relay pool stopped with the request in flight ({reason})"),
                        )
                    } else {
                        Failure::new(code, reason.clone())
                    };
                    lane.emit(id, conn, Err(failure), Some(sent_at));
                }
                if stopping {
                    return None;
                }
                let delay = backoff(self.failures, &mut self.rng);
                warn!(
                    "{who}: disconnected: {reason}; reconnecting in {} ms",
                    delay.as_millis()
                );
                Some(delay)
            }
        }
    }
}

/// A connection thread: connect, serve, reconnect, until stopped.
pub(super) fn run_connection(lane: &Lane, conn: usize) {
    let mut reconnect = Reconnect::new(lane, conn);
    let mut delay = Duration::ZERO;
    let mut bufs = Buffers::new();
    loop {
        if !delay.is_zero() && !lane.sleep(delay) {
            break;
        }
        if lane.stopping() {
            break;
        }
        let (stream, mut tls) = match open(lane) {
            Ok(c) => c,
            Err(reason) => {
                delay = reconnect.connect_failed(lane, conn, reason);
                continue;
            }
        };
        reconnect.connected(tls.as_ref());
        lane.set_up(conn, &stream);
        if let (Ok(SocketAddr::V4(local)), Ok(SocketAddr::V4(remote))) =
            (stream.local_addr(), stream.peer_addr())
        {
            lane.board
                .register(lane.first_session + conn, lane.lane_id, local, remote);
        }
        let connected_at = Instant::now();
        let mut answered = false;
        let end = serve(lane, conn, &stream, tls.as_mut(), &mut bufs, &mut answered);
        lane.board.unregister(lane.first_session + conn);
        drop(tls); // zeroizes the keys
        drop(stream);
        let healthy = answered || connected_at.elapsed() >= HEALTHY_AFTER;
        match reconnect.ended(lane, conn, end, healthy) {
            Some(d) => delay = d,
            None => break,
        }
    }
}

/// Connects to the lane's relay, with the TLS handshake on a TLS lane.
pub(super) fn open(lane: &Lane) -> Result<(TcpStream, Option<TlsConn>), String> {
    let stream = connect(lane.addr).map_err(|e| format!("connect: {e}"))?;
    let tls = match &lane.tls {
        None => None,
        Some(t) => {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            Some(TlsConn::handshake(
                &stream,
                t.config.clone(),
                &t.server_name,
                deadline,
            )?)
        }
    };
    Ok((stream, tls))
}

/// Serves requests and pings on one connection until it ends.
pub(super) fn serve(
    lane: &Lane,
    conn: usize,
    stream: &TcpStream,
    mut tls: Option<&mut TlsConn>,
    bufs: &mut Buffers,
    answered: &mut bool,
) -> End {
    let mut idle_since = Instant::now();
    let session = lane.first_session + conn;
    loop {
        let next =
            match lane.next(conn, idle_since, stream, tls.as_deref()) {
                Next::Stop => return End::Stop,
                Next::Abandon => return End::Failed {
                    reason:
                        "the data plane claimed the connection but never handed over the request"
                            .into(),
                    code: relay_failure::NO_RESPONSE,
                    in_flight: None,
                },
                next => next,
            };
        // Nothing written yet: a connection the relay closed while idle is replaced first.
        let next = match still_open(lane, conn, stream, tls.as_deref_mut(), next) {
            Ok(next) => next,
            Err(end) => return end,
        };
        let (bytes, in_flight) = request_bytes(lane, &next, &mut bufs.request);
        let sent_at = Instant::now();
        let in_flight = in_flight.map(|id| (id, sent_at));
        let record = match &next {
            Next::Delegated(job) => {
                match check_own(lane, conn, job, bytes, tls.as_deref(), sent_at) {
                    Checked::Write(record) => record,
                    Checked::Skip => continue,
                    Checked::Close(code, reason) => {
                        return End::Failed {
                            reason,
                            code,
                            in_flight,
                        }
                    }
                }
            }
            _ => 0,
        };
        if let Err(e) = write_request(stream, tls.as_deref_mut(), &next, bytes, record) {
            return End::Failed {
                reason: format!("write: {e}"),
                code: relay_failure::NO_RESPONSE,
                in_flight,
            };
        }
        let head = match read_response(stream, tls.as_deref_mut(), bufs, sent_at, in_flight) {
            Ok(head) => head,
            Err(end) => return end,
        };
        *answered = true;
        idle_since = Instant::now();
        if let Next::Delegated(_) = next {
            lane.board.finish_claim(session);
        }
        let reply = in_flight.map(|(id, sent_at)| {
            let reply = parse_reply(head.status, &head.reason, &bufs.body);
            (id, sent_at, reply)
        });
        let end = after_response(tls.as_deref_mut(), stream, &head);
        // Armed again before the outcome is published: a client that submits its next
        // transaction on this completion finds the connection armed. (Published first, the
        // completion raced this thread's way back to `Lane::next`: a client quicker than that
        // way -- any stall of this thread -- sent its next request the slow way.)
        if end.is_none() {
            lane.arm_if_settled(session, stream, tls.as_deref());
        }
        if let Some((id, sent_at, reply)) = reply {
            lane.emit(id, conn, Ok(reply), Some(sent_at));
        }
        if let Some(end) = end {
            return end;
        }
    }
}

/// Checks that an idle connection is still open before `next` is written on it, and gives
/// `next` back. (A TLS relay may have sent a session ticket or a KeyUpdate meanwhile: handled
/// here.) On a closed connection a queued request goes back to the queue, and the data plane's
/// send, already on the wire and maybe delivered, gets its outcome.
fn still_open(
    lane: &Lane,
    conn: usize,
    stream: &TcpStream,
    tls: Option<&mut TlsConn>,
    next: Next,
) -> Result<Next, End> {
    let idle = match tls {
        Some(t) => match t.poll_idle(stream) {
            Ok(()) => Peek::Open,
            Err(why) => Peek::Closed(why),
        },
        None => peek(stream),
    };
    let (why, end) = match idle {
        Peek::Open => return Ok(next),
        Peek::Closed(why) => (why.clone(), End::Closed(why)),
        Peek::Error(e) => (
            format!("connection lost: {e}"),
            End::Failed {
                reason: format!("connection lost while idle: {e}"),
                code: relay_failure::NO_RESPONSE,
                in_flight: None,
            },
        ),
    };
    match next {
        Next::Job(job) => lane.requeue(job),
        Next::Delegated(job) => lane.emit(
            job.id,
            conn,
            Err(Failure::new(relay_failure::NO_RESPONSE, why)),
            None,
        ),
        _ => {}
    }
    Err(end)
}

/// The bytes `next` writes (built by the lane's template into `request`, unless raw) and the
/// id of the request they carry (`None` for a keep-alive ping).
fn request_bytes<'a>(
    lane: &'a Lane,
    next: &'a Next,
    request: &'a mut Vec<u8>,
) -> (&'a [u8], Option<u64>) {
    match next {
        Next::Job(job) | Next::Delegated(job) if job.raw => (&job.tx[..], Some(job.id)),
        Next::Job(job) | Next::Delegated(job) => {
            let n = lane.template.len(job.tx.len());
            request.clear();
            request.resize(n, 0);
            let written = lane.template.write(&job.tx, &mut [&mut request[..]]);
            debug_assert_eq!(written, Some(n));
            (&request[..], Some(job.id))
        }
        _ => (&lane.ping[..], None),
    }
}

/// What becomes of the data plane's send on this connection ([`check_delegated`]).
enum Checked {
    /// This connection's, byte for byte: complete it, with this TLS record size.
    Write(usize),
    /// Another connection's (or another data plane's): its outcome is out, nothing written.
    Skip,
    /// Not what this process would write: close the connection ([`relay_failure`] code, why).
    Close(u16, String),
}

/// A delegated send is completed only if it is this connection's, and byte for byte what this
/// process would write now (same plaintext, same record sequence numbers); otherwise nothing is
/// written.
fn check_own(
    lane: &Lane,
    conn: usize,
    job: &Job,
    bytes: &[u8],
    tls: Option<&TlsConn>,
    sent_at: Instant,
) -> Checked {
    let Some(d) = job.delegated else {
        return Checked::Skip; // cannot happen: inbox jobs carry their send
    };
    match check_delegated(lane, lane.first_session + conn, &d, bytes, tls) {
        Ok(record) => Checked::Write(record),
        Err((relay_failure::STALE, why)) => {
            // Another connection's (or another data plane's) send: this connection is fine,
            // and that request is already on the wire.
            warn!("relay lane {} conn {conn}: {why}", lane.name);
            let failure = Failure::new(relay_failure::STALE, why);
            lane.emit(job.id, conn, Err(failure), Some(sent_at));
            Checked::Skip
        }
        Err((code, why)) => Checked::Close(code, format!("{why}; closing the connection")),
    }
}

/// Writes `bytes`: plain, as TLS records (a KeyUpdate owed to the peer goes first), or for the
/// data plane's send the same plaintexts at the same sequence numbers (`record` bytes each).
fn write_request(
    stream: &TcpStream,
    tls: Option<&mut TlsConn>,
    next: &Next,
    bytes: &[u8],
    record: usize,
) -> io::Result<()> {
    match (tls, next) {
        (None, _) => {
            let mut w = stream;
            w.write_all(bytes)
        }
        (Some(t), Next::Delegated(_)) => t.write_records(stream, bytes, record).map(|_| ()),
        (Some(t), _) => t.write(stream, bytes),
    }
}

/// Reads the response to what was just written (body into `bufs.body`), or the end of the
/// connection when none comes complete by [`READ_TIMEOUT`].
fn read_response(
    stream: &TcpStream,
    tls: Option<&mut TlsConn>,
    bufs: &mut Buffers,
    sent_at: Instant,
    in_flight: Option<(u64, Instant)>,
) -> Result<Head, End> {
    let deadline = sent_at + READ_TIMEOUT;
    let response = match tls {
        Some(t) => bufs
            .reader
            .read_response(&mut t.reader(stream), deadline, &mut bufs.body),
        None => bufs
            .reader
            .read_response(&mut { stream }, deadline, &mut bufs.body),
    };
    response.map_err(|reason| {
        let what = if in_flight.is_some() {
            "request"
        } else {
            "keep-alive ping"
        };
        End::Failed {
            code: response_failure(&reason),
            reason: format!("{what} sent, no complete response: {reason}"),
            in_flight,
        }
    })
}

/// What a connection owes after a response, before it may be armed again: a TLS KeyUpdate the
/// peer asked for, new write keys when the old ones reached their record limit, or its end
/// (the relay's `Connection: close`). `None`: the connection stays.
pub(super) fn after_response(
    tls: Option<&mut TlsConn>,
    stream: &TcpStream,
    head: &Head,
) -> Option<End> {
    if let Some(t) = tls {
        // A KeyUpdate owed to the peer (it asked with this response, or before the data
        // plane's send): written while the connection is ours, before it is armed again
        // with the new keys.
        if let Err(e) = t.flush_key_update(stream) {
            return Some(End::Failed {
                reason: format!("write (TLS KeyUpdate): {e}"),
                code: relay_failure::NO_RESPONSE,
                in_flight: None,
            });
        }
        // Many records under one key: new keys (TLS 1.3) or a new connection (TLS 1.2).
        if t.rekey_due() {
            if let Err(e) = t.update_own_keys(stream) {
                return Some(End::Closed(format!(
                    "the write key reached its record limit ({e}); reconnecting"
                )));
            }
        }
    }
    head.close.then(|| {
        End::Closed(format!(
            "the relay closed the connection after a {} response",
            head.status
        ))
    })
}
