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

/// A connection thread: connect, serve, reconnect, until stopped.
pub(super) fn run_connection(lane: &Lane, conn: usize) {
    let who = format!("relay lane {} conn {conn} to {}", lane.name, lane.addr);
    let mut rng = Rng::new(conn as u64);
    // Consecutive failures (the backoff streak) and consecutive failed connects (for logs).
    let mut failures = 0u32;
    let mut connect_failures = 0u32;
    // The last connect failure logged: a new kind of failure is logged at once.
    let mut logged_failure = String::new();
    let mut ever_connected = false;
    let mut delay = Duration::ZERO;
    let mut bufs = Buffers {
        request: Vec::new(),
        reader: ResponseReader::new(),
        body: Vec::new(),
    };
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
                // A failed TLS handshake counts as a failed connect: the lane's error names it,
                // so submissions to a lane whose relay is not trusted fail with the reason.
                failures += 1;
                connect_failures += 1;
                lane.set_state(conn, ConnState::Down, Some(&reason));
                delay = backoff(failures, &mut rng);
                if connect_failures == 1
                    || connect_failures.is_multiple_of(10)
                    || reason != logged_failure
                {
                    logged_failure.clone_from(&reason);
                    log!(
                        "{who}: {reason} (failed attempt {connect_failures}; retrying in {} ms)",
                        delay.as_millis()
                    );
                }
                continue;
            }
        };
        let verb = if ever_connected {
            "reconnected"
        } else {
            "connected"
        };
        let over = tls
            .as_ref()
            .map(|t| format!(" ({})", t.describe()))
            .unwrap_or_default();
        if connect_failures > 0 {
            log!("{who}: {verb}{over} after {connect_failures} failed attempts");
        } else {
            log!("{who}: {verb}{over}");
        }
        ever_connected = true;
        connect_failures = 0;
        logged_failure.clear();
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
        match end {
            End::Stop => {
                lane.set_state(conn, ConnState::Down, None);
                break;
            }
            End::Closed(why) if healthy => {
                failures = 0;
                delay = Duration::ZERO;
                lane.set_state(conn, ConnState::Connecting, None);
                log!("{who}: {why}; reconnecting");
            }
            End::Closed(why) => {
                failures += 1;
                lane.set_state(conn, ConnState::Down, Some(&why));
                delay = backoff(failures, &mut rng);
                log!(
                    "{who}: {why} before answering anything; reconnecting in {} ms",
                    delay.as_millis()
                );
            }
            End::Failed {
                reason,
                code,
                in_flight,
            } => {
                if healthy {
                    failures = 0;
                }
                failures += 1;
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
                    break;
                }
                delay = backoff(failures, &mut rng);
                log!(
                    "{who}: disconnected: {reason}; reconnecting in {} ms",
                    delay.as_millis()
                );
            }
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
        let next = lane.next(conn, idle_since, stream, tls.as_deref());
        match next {
            Next::Stop => return End::Stop,
            Next::Abandon => {
                return End::Failed {
                    reason:
                        "the data plane claimed the connection but never handed over the request"
                            .into(),
                    code: relay_failure::NO_RESPONSE,
                    in_flight: None,
                }
            }
            _ => {}
        }
        // Nothing written yet: a connection the relay closed while idle is replaced first. (A
        // TLS relay may have sent a session ticket or a KeyUpdate meanwhile: handled here.)
        let idle = match tls.as_deref_mut() {
            Some(t) => match t.poll_idle(stream) {
                Ok(()) => Peek::Open,
                Err(why) => Peek::Closed(why),
            },
            None => peek(stream),
        };
        match idle {
            Peek::Open => {}
            Peek::Closed(why) => {
                match next {
                    Next::Job(job) => lane.requeue(job),
                    // The data plane's copy is on the wire: maybe delivered.
                    Next::Delegated(job) => lane.emit(
                        job.id,
                        conn,
                        Err(Failure::new(relay_failure::NO_RESPONSE, why.clone())),
                        None,
                    ),
                    _ => {}
                }
                return End::Closed(why);
            }
            Peek::Error(e) => {
                match next {
                    Next::Job(job) => lane.requeue(job),
                    Next::Delegated(job) => lane.emit(
                        job.id,
                        conn,
                        Err(Failure::new(
                            relay_failure::NO_RESPONSE,
                            format!("connection lost: {e}"),
                        )),
                        None,
                    ),
                    _ => {}
                }
                return End::Failed {
                    reason: format!("connection lost while idle: {e}"),
                    code: relay_failure::NO_RESPONSE,
                    in_flight: None,
                };
            }
        }
        let (bytes, in_flight) = match &next {
            Next::Job(job) | Next::Delegated(job) if job.raw => (&job.tx[..], Some(job.id)),
            Next::Job(job) | Next::Delegated(job) => {
                let n = lane.template.len(job.tx.len());
                bufs.request.clear();
                bufs.request.resize(n, 0);
                let written = lane.template.write(&job.tx, &mut [&mut bufs.request[..]]);
                debug_assert_eq!(written, Some(n));
                (&bufs.request[..], Some(job.id))
            }
            _ => (&lane.ping[..], None),
        };
        let sent_at = Instant::now();
        let in_flight = in_flight.map(|id| (id, sent_at));
        // A delegated send is completed only if it is this connection's, and byte for byte
        // what this process would write now (same plaintext, same record sequence numbers);
        // otherwise nothing is written.
        let mut record = 0;
        if let Next::Delegated(job) = &next {
            let Some(d) = job.delegated else {
                continue; // cannot happen: inbox jobs carry their send
            };
            match check_delegated(lane, session, &d, bytes, tls.as_deref()) {
                Ok(r) => record = r,
                Err((relay_failure::STALE, why)) => {
                    // Another connection's (or another data plane's) send: this connection is
                    // fine, and that request is already on the wire.
                    log!("relay lane {} conn {conn}: {why}", lane.name);
                    let failure = Failure::new(relay_failure::STALE, why);
                    lane.emit(job.id, conn, Err(failure), Some(sent_at));
                    continue;
                }
                Err((code, why)) => {
                    return End::Failed {
                        reason: format!("{why}; closing the connection"),
                        code,
                        in_flight,
                    }
                }
            }
        }
        let mut w = stream;
        let written = match (tls.as_deref_mut(), &next) {
            (None, _) => w.write_all(bytes),
            // The data plane's records: the same plaintexts at the same sequence numbers.
            (Some(t), Next::Delegated(_)) => t.write_records(stream, bytes, record).map(|_| ()),
            // (A KeyUpdate owed to the peer goes first: `write` sends it.)
            (Some(t), _) => t.write(stream, bytes),
        };
        if let Err(e) = written {
            return End::Failed {
                reason: format!("write: {e}"),
                code: relay_failure::NO_RESPONSE,
                in_flight,
            };
        }
        let response = match tls.as_deref_mut() {
            Some(t) => bufs.reader.read_response(
                &mut t.reader(stream),
                sent_at + READ_TIMEOUT,
                &mut bufs.body,
            ),
            None => bufs
                .reader
                .read_response(&mut w, sent_at + READ_TIMEOUT, &mut bufs.body),
        };
        let head = match response {
            Ok(h) => h,
            Err(reason) => {
                let what = if in_flight.is_some() {
                    "request"
                } else {
                    "keep-alive ping"
                };
                return End::Failed {
                    code: response_failure(&reason),
                    reason: format!("{what} sent, no complete response: {reason}"),
                    in_flight,
                };
            }
        };
        *answered = true;
        idle_since = Instant::now();
        if let Next::Delegated(_) = next {
            lane.board.finish_claim(session);
        }
        let reply = in_flight.map(|(id, sent_at)| {
            (
                id,
                sent_at,
                parse_reply(head.status, &head.reason, &bufs.body),
            )
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
