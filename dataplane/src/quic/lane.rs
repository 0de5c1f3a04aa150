//! One QUIC lane: its connection, the transactions in flight on it, and the datagrams it writes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dpdk::{Mbuf, Mempool, TxBurst};
use quinn_proto::{
    ClientConfig, Connection, ConnectionError, ConnectionEvent, ConnectionHandle, Dir, Endpoint,
    Event, StreamEvent, StreamId, TransportConfig, VarInt,
};
use swqos_shm::layout::{quic_outcome, relay_failure, Status};
use swqos_tls::client_config::TlsSettings;
use swqos_tls::client_identity::quic_lane_config;
use swqos_wire::checksum;
use swqos_wire::quic_relay::{
    QuicProvider, Reply, StreamKind, MAX_AUTH_LEN, NODE1_AUTH_OK, REPLY_HEADER_LEN,
};
use tracing::{info, warn};

use super::Clock;
use crate::lanes::UdpFrame;
use crate::tx::{Pending, BURST};

/// Transactions in flight per lane (awaiting the relay's acknowledgement or reply).
const MAX_IN_FLIGHT: usize = 1024;
/// First and longest wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A PING this often keeps the connection (and NAT state) alive between transactions.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// The connection is given up after this long without a packet from the relay.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a lane is built from (made at start by `runtime.rs`).
pub struct QuicLaneSetup {
    /// Lane id.
    pub(crate) id: u8,
    /// Configured name.
    pub(crate) name: String,
    /// The relay's protocol.
    pub(crate) provider: QuicProvider,
    /// The relay's address.
    pub(crate) remote: SocketAddr,
    /// The lane's own UDP port.
    pub(crate) local_port: u16,
    /// Headers of the lane's datagrams.
    pub(crate) frame: UdpFrame,
    /// quinn-proto's client configuration (TLS, ALPN, identity, transport).
    pub(crate) client: ClientConfig,
    /// SNI and the name verified.
    pub(crate) server_name: String,
    /// The authentication stream sent once per connection, if the provider has one.
    pub(crate) auth: Option<(StreamKind, ArrayVec<u8, MAX_AUTH_LEN>)>,
}

impl QuicLaneSetup {
    /// The setup of lane `id` from its configuration: the TLS configuration (roots, client
    /// certificate) and quinn-proto's transport settings; `mtu` is the port's.
    pub fn new(
        id: u8,
        name: &str,
        q: &dpdk_config::QuicLane,
        frame: UdpFrame,
        mtu: u16,
    ) -> Result<QuicLaneSetup, String> {
        let key = q.token.as_ref().map(|t| t.expose());
        let tls = TlsSettings {
            server_name: q.server_name.clone(),
            ca_files: q.ca_files.clone(),
            insecure_skip_verify: q.insecure_skip_verify,
        };
        let rustls = quic_lane_config(
            name,
            q.provider,
            key,
            q.keypair_file.as_deref(),
            q.mev,
            &tls,
        )?;
        let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(rustls)
            .map_err(|e| format!("lane {name}: QUIC TLS: {e}"))?;
        let mut transport = TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(Some(
                IDLE_TIMEOUT
                    .try_into()
                    .expect("5 s is a valid idle timeout"),
            ))
            // The port's MTU less IPv4 and UDP headers: a 1232-byte transaction fits one
            // datagram on a 1500-byte link (QUIC's 1200 would split it in two).
            .initial_mtu((mtu.min(1500) - 28).max(1200));
        let mut client = ClientConfig::new(Arc::new(crypto));
        client.transport_config(Arc::new(transport));
        let mut auth_bytes = [0u8; MAX_AUTH_LEN];
        let auth = q
            .provider
            .auth(key, q.mev, &mut auth_bytes)
            .map(|(kind, n)| (kind, auth_bytes[..n].iter().copied().collect()));
        Ok(QuicLaneSetup {
            id,
            name: name.to_string(),
            provider: q.provider,
            remote: SocketAddr::new(IpAddr::V4(q.dst_ip), q.dst_port),
            local_port: q.src_port,
            frame,
            client,
            server_name: q.server_name.clone(),
            auth,
        })
    }
}

/// A live connection.
struct Conn {
    handle: ConnectionHandle,
    conn: Connection,
    /// The handshake completed.
    connected: bool,
    /// Transactions may go: connected, and the authentication accepted where the relay
    /// answers it.
    ready: bool,
    /// The authentication stream, while its answer is awaited.
    auth_stream: Option<StreamId>,
    /// The connection failed or was closed: draining, no more sends.
    lost: bool,
}

/// A transaction written on a stream, until the relay acknowledges or answers it.
#[derive(Clone, Copy)]
struct Written {
    id: StreamId,
    pending: Pending,
    deadline: u64,
    reply: [u8; REPLY_HEADER_LEN],
    got: u8,
}

/// The transactions in flight, by stream index (streams of one kind open in order).
struct InFlight {
    slots: Box<[Option<Written>]>,
    /// Lowest stream index that may still be in flight, and one past the highest written.
    tail: u64,
    head: u64,
    /// Transactions in flight.
    len: usize,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            slots: vec![None; MAX_IN_FLIGHT].into_boxed_slice(),
            tail: 0,
            head: 0,
            len: 0,
        }
    }

    fn has_room(&self) -> bool {
        self.head - self.tail < MAX_IN_FLIGHT as u64
    }

    fn insert(&mut self, w: Written) {
        let index = w.id.index();
        if self.tail == self.head {
            self.tail = index;
        }
        self.head = index + 1;
        self.slots[index as usize % MAX_IN_FLIGHT] = Some(w);
        self.len += 1;
    }

    fn get(&mut self, id: StreamId) -> Option<&mut Written> {
        let slot = self.slots[id.index() as usize % MAX_IN_FLIGHT].as_mut()?;
        (slot.id == id).then_some(slot)
    }

    fn take(&mut self, id: StreamId) -> Option<Written> {
        let slot = &mut self.slots[id.index() as usize % MAX_IN_FLIGHT];
        if slot.is_some_and(|w| w.id == id) {
            let w = slot.take();
            self.len -= 1;
            self.advance();
            return w;
        }
        None
    }

    /// Moves `tail` past completed streams.
    fn advance(&mut self) {
        while self.tail < self.head && self.slots[self.tail as usize % MAX_IN_FLIGHT].is_none() {
            self.tail += 1;
        }
    }

    /// The oldest deadline in flight.
    fn next_deadline(&self) -> u64 {
        if self.tail == self.head {
            return u64::MAX;
        }
        self.slots[self.tail as usize % MAX_IN_FLIGHT].map_or(u64::MAX, |w| w.deadline)
    }

    /// Takes every stream whose deadline passed (oldest first: deadlines grow with the index).
    fn expire(&mut self, now_tsc: u64, mut f: impl FnMut(Written)) {
        while self.tail < self.head {
            match self.slots[self.tail as usize % MAX_IN_FLIGHT] {
                Some(w) if w.deadline <= now_tsc => {
                    self.slots[self.tail as usize % MAX_IN_FLIGHT] = None;
                    self.len -= 1;
                    f(w);
                }
                Some(_) => break,
                None => {}
            }
            self.tail += 1;
        }
    }

    /// Takes every stream (the connection is gone).
    fn drain(&mut self, mut f: impl FnMut(Written)) {
        for slot in self.slots.iter_mut() {
            if let Some(w) = slot.take() {
                f(w);
            }
        }
        self.tail = 0;
        self.head = 0;
        self.len = 0;
    }
}

/// One QUIC lane.
pub(crate) struct QuicLane {
    s: QuicLaneSetup,
    conn: Option<Conn>,
    /// When to connect next (TSC), while there is no connection.
    retry_at: u64,
    backoff: Duration,
    /// The reason of a not-sent completion while the lane has no connection.
    failure: u16,
    in_flight: InFlight,
    /// quinn-proto's next timer (TSC; `u64::MAX`: none).
    timer: u64,
    /// Something happened that [`QuicLane::step`] must look at.
    dirty: bool,
    /// Lcore time spent on the handshake under way (TSC ticks), and its longest step: what a
    /// handshake takes from the other lanes' sends, logged when the connection is ready.
    handshake_ticks: u64,
    handshake_longest: u64,
}

impl QuicLane {
    pub(crate) fn new(s: QuicLaneSetup) -> Result<QuicLane, String> {
        Ok(QuicLane {
            s,
            conn: None,
            retry_at: 0,
            backoff: BACKOFF_MIN,
            failure: relay_failure::CONNECT,
            in_flight: InFlight::new(),
            timer: u64::MAX,
            dirty: true,
            handshake_ticks: 0,
            handshake_longest: 0,
        })
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.s.remote
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.s.local_port
    }

    pub(crate) fn handle(&self) -> Option<ConnectionHandle> {
        self.conn.as_ref().map(|c| c.handle)
    }

    /// Whether the lane's handshake is under way (its datagrams cost the most lcore time:
    /// certificate checks, key exchange, signatures).
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.connected && !c.lost)
    }

    /// Transactions written and not yet completed.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.ready && !c.lost)
    }

    /// Counts `start..end` (TSC) as handshake time while the connection is not ready.
    pub(crate) fn charge_handshake(&mut self, start: u64, end: u64) {
        if self.conn.as_ref().is_some_and(|c| !c.ready && !c.lost) {
            let t = end.saturating_sub(start);
            self.handshake_ticks += t;
            self.handshake_longest = self.handshake_longest.max(t);
        }
    }

    /// The handshake's cost for the log line, and a fresh count for the next one.
    fn take_handshake_cost(&mut self) -> String {
        let us = |t: u64| t as f64 * 1e6 / dpdk::tsc_hz().max(1) as f64;
        let cost = format!(
            "handshake: {:.0} us of lcore time, longest step {:.0} us",
            us(self.handshake_ticks),
            us(self.handshake_longest)
        );
        self.handshake_ticks = 0;
        self.handshake_longest = 0;
        cost
    }

    /// A datagram's event for this lane's connection.
    pub(crate) fn on_event(&mut self, event: ConnectionEvent) {
        if let Some(c) = &mut self.conn {
            c.conn.handle_event(event);
            self.dirty = true;
        }
    }

    /// Writes `tx` on a new stream; `Err(reason)` when it cannot be sent now.
    pub(crate) fn send(&mut self, tx: &[u8], pending: Pending, deadline: u64) -> Result<(), u16> {
        let Some(c) = self.conn.as_mut().filter(|c| c.ready && !c.lost) else {
            return Err(self.failure);
        };
        if !self.in_flight.has_room() {
            return Err(relay_failure::NOT_SENT);
        }
        let dir = match self.s.provider.tx_stream() {
            StreamKind::Uni => Dir::Uni,
            StreamKind::Bi => Dir::Bi,
        };
        // `None`: the relay's stream limit is reached for now.
        let id = c.conn.streams().open(dir).ok_or(relay_failure::NOT_SENT)?;
        let mut stream = c.conn.send_stream(id);
        if stream.write(tx) != Ok(tx.len()) {
            // Flow control took part of it: withdraw the stream (nothing was transmitted yet).
            let _ = stream.reset(VarInt::from_u32(0));
            return Err(relay_failure::NOT_SENT);
        }
        let _ = stream.finish();
        self.in_flight.insert(Written {
            id,
            pending,
            deadline,
            reply: [0; REPLY_HEADER_LEN],
            got: 0,
        });
        self.dirty = true;
        Ok(())
    }

    /// Whether [`QuicLane::step`] has anything to do at `now_tsc`.
    pub(crate) fn due(&self, now_tsc: u64) -> bool {
        self.dirty
            || now_tsc >= self.timer
            || now_tsc >= self.in_flight.next_deadline()
            || (self.conn.is_none() && now_tsc >= self.retry_at)
    }

    /// Connects when due; runs timers; turns the connection's events into completions.
    pub(crate) fn step(
        &mut self,
        endpoint: &mut Endpoint,
        now: Instant,
        now_tsc: u64,
        clock: &Clock,
        complete: &mut impl FnMut(Pending, Status, u16),
    ) {
        self.dirty = false;
        if self.conn.is_none() {
            if now_tsc >= self.retry_at {
                self.connect(endpoint, now, now_tsc, clock);
            }
            return;
        }
        let Some(c) = &mut self.conn else { return };
        if now_tsc >= self.timer {
            c.conn.handle_timeout(now);
        }
        while let Some(ev) = c.conn.poll_endpoint_events() {
            if let Some(back) = endpoint.handle_event(c.handle, ev) {
                c.conn.handle_event(back);
            }
        }
        while let Some(ev) = self.conn.as_mut().and_then(|c| c.conn.poll()) {
            self.on_app_event(ev, now, complete);
        }
        self.in_flight.expire(now_tsc, |w| {
            complete(w.pending, Status::RelayError, relay_failure::TIMEOUT)
        });
        if self.conn.as_ref().is_some_and(|c| c.conn.is_drained()) {
            self.conn = None;
            self.retry_at = now_tsc + clock.ticks(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            self.dirty = true;
        }
    }

    fn connect(&mut self, endpoint: &mut Endpoint, now: Instant, now_tsc: u64, clock: &Clock) {
        match endpoint.connect(
            now,
            self.s.client.clone(),
            self.s.remote,
            &self.s.server_name,
        ) {
            Ok((handle, conn)) => {
                self.conn = Some(Conn {
                    handle,
                    conn,
                    connected: false,
                    ready: false,
                    auth_stream: None,
                    lost: false,
                });
                self.dirty = true;
            }
            Err(e) => {
                warn!(
                    "lane {}: QUIC connect to {}: {e}",
                    self.s.name, self.s.remote
                );
                self.failure = relay_failure::CONNECT;
                self.retry_at = now_tsc + clock.ticks(BACKOFF_MAX);
            }
        }
    }

    fn on_app_event(
        &mut self,
        ev: Event,
        now: Instant,
        complete: &mut impl FnMut(Pending, Status, u16),
    ) {
        match ev {
            Event::Connected => self.on_connected(),
            Event::ConnectionLost { reason } => self.on_lost(reason, complete),
            // A uni-stream's transaction is done when the relay acknowledged all of it; a
            // bi-stream's when the reply comes.
            Event::Stream(StreamEvent::Finished { id })
                if self.s.provider.tx_stream() == StreamKind::Uni =>
            {
                if let Some(w) = self.in_flight.take(id) {
                    complete(w.pending, Status::Relayed, quic_outcome::ACKED);
                }
            }
            Event::Stream(StreamEvent::Readable { id })
                if self.conn.as_ref().and_then(|c| c.auth_stream) == Some(id) =>
            {
                self.read_auth_answer(id, now)
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read_reply(id, complete),
            Event::Stream(StreamEvent::Stopped { id, error_code }) => {
                if let Some(w) = self.in_flight.take(id) {
                    let code = quic_outcome::stopped(error_code.into_inner());
                    complete(w.pending, Status::RelayError, code);
                }
            }
            Event::Stream(StreamEvent::Opened { dir }) => {
                // Relays open no streams of their own: refuse any.
                if let Some(c) = &mut self.conn {
                    while let Some(id) = c.conn.streams().accept(dir) {
                        let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(0));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connected(&mut self) {
        let Some(c) = &mut self.conn else { return };
        c.connected = true;
        c.ready = true;
        self.backoff = BACKOFF_MIN;
        if let Some((kind, bytes)) = &self.s.auth {
            let dir = if *kind == StreamKind::Bi {
                Dir::Bi
            } else {
                Dir::Uni
            };
            if let Some(id) = c.conn.streams().open(dir) {
                let mut s = c.conn.send_stream(id);
                let _ = s.write(bytes);
                let _ = s.finish();
                if self.s.provider.auth_has_reply() {
                    // Transactions wait for the relay's answer (Node1).
                    c.ready = false;
                    c.auth_stream = Some(id);
                }
            }
        }
        if c.ready {
            let cost = self.take_handshake_cost();
            info!(
                "lane {}: QUIC connection to {} ({}) up ({cost})",
                self.s.name, self.s.remote, self.s.provider
            );
        } else {
            info!(
                "lane {}: QUIC connection to {} ({}) up, authenticating",
                self.s.name, self.s.remote, self.s.provider
            );
        }
    }

    /// The relay's one-byte answer to the authentication stream (Node1).
    fn read_auth_answer(&mut self, id: StreamId, now: Instant) {
        let Some(c) = &mut self.conn else { return };
        let mut stream = c.conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            return;
        };
        let answer = match chunks.next(1) {
            Ok(Some(chunk)) => chunk.bytes.first().copied(),
            _ => None,
        };
        let _ = chunks.finalize();
        let Some(answer) = answer else { return };
        c.auth_stream = None;
        if answer == NODE1_AUTH_OK {
            c.ready = true;
            let cost = self.take_handshake_cost();
            info!("lane {}: authenticated ({cost})", self.s.name);
        } else {
            warn!(
                "lane {}: the relay refused the API key (answer {answer}); closing",
                self.s.name
            );
            self.failure = quic_outcome::AUTH_REFUSED + u16::from(answer);
            c.conn
                .close(now, VarInt::from_u32(0), bytes::Bytes::from_static(b"auth"));
            c.lost = true;
        }
    }

    fn on_lost(
        &mut self,
        reason: ConnectionError,
        complete: &mut impl FnMut(Pending, Status, u16),
    ) {
        let Some(c) = &mut self.conn else { return };
        let was_up = c.connected;
        c.lost = true;
        let (in_flight_code, not_sent_code) = classify(&reason, was_up);
        // A refused authentication keeps its own reason.
        if !(quic_outcome::AUTH_REFUSED..quic_outcome::AUTH_REFUSED + 256).contains(&self.failure)
            || was_up && c.ready
        {
            self.failure = not_sent_code;
        }
        self.in_flight
            .drain(|w| complete(w.pending, Status::RelayError, in_flight_code));
        let what = match &reason {
            ConnectionError::ApplicationClosed(a) => {
                let code = a.error_code.into_inner();
                format!("{} (code {code})", self.s.provider.close_reason(code))
            }
            other => other.to_string(),
        };
        warn!(
            "lane {}: QUIC connection to {} lost: {what}; reconnecting",
            self.s.name, self.s.remote
        );
    }

    /// A reply on a bi-stream (Node1): complete on its header; the rest is not read.
    fn read_reply(&mut self, id: StreamId, complete: &mut impl FnMut(Pending, Status, u16)) {
        let Some(c) = &mut self.conn else { return };
        let mut stream = c.conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            return;
        };
        let mut done = None;
        while let Ok(Some(chunk)) = chunks.next(REPLY_HEADER_LEN) {
            let Some(w) = self.in_flight.get(id) else {
                continue; // the authentication stream's answer, or a stream already completed
            };
            let got = w.got as usize;
            let n = chunk.bytes.len().min(REPLY_HEADER_LEN - got);
            w.reply[got..got + n].copy_from_slice(&chunk.bytes[..n]);
            w.got += n as u8;
            if let Some(reply) = Reply::parse(&w.reply[..w.got as usize]) {
                done = Some(reply);
                break;
            }
        }
        let _ = chunks.finalize();
        if let Some(reply) = done {
            let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(0));
            if let Some(w) = self.in_flight.take(id) {
                let status = if reply.accepted() {
                    Status::Relayed
                } else {
                    Status::RelayError
                };
                complete(w.pending, status, quic_outcome::reply(reply.status));
            }
        }
    }

    /// quinn-proto's next timer, in TSC.
    pub(crate) fn arm_timer(&mut self, clock: &Clock) {
        self.timer = self
            .conn
            .as_mut()
            .and_then(|c| c.conn.poll_timeout())
            .map_or(u64::MAX, |t| clock.tsc_of(t));
    }

    /// Closes the connection (shutdown): what is in flight may have been delivered.
    pub(crate) fn close(&mut self, now: Instant, complete: &mut impl FnMut(Pending, Status, u16)) {
        self.in_flight
            .drain(|w| complete(w.pending, Status::RelayError, relay_failure::NO_RESPONSE));
        if let Some(c) = &mut self.conn {
            c.conn.close(now, VarInt::from_u32(0), bytes::Bytes::new());
            c.lost = true;
        }
    }
}

/// A lost connection's completion reasons: for the transactions in flight (maybe delivered)
/// and for those submitted until it is back (not sent).
fn classify(reason: &ConnectionError, was_up: bool) -> (u16, u16) {
    match reason {
        ConnectionError::ApplicationClosed(a) => {
            let code = a.error_code.into_inner();
            (quic_outcome::closed(code), quic_outcome::refused(code))
        }
        // Our own TLS stack refused the handshake: the relay's certificate.
        ConnectionError::TransportError(e) if !was_up && is_crypto(u64::from(e.code)) => {
            (relay_failure::NO_RESPONSE, relay_failure::TLS_UNTRUSTED)
        }
        // The relay's TLS stack refused it: our certificate, ALPN or name.
        ConnectionError::ConnectionClosed(c) if !was_up && is_crypto(u64::from(c.error_code)) => {
            (relay_failure::NO_RESPONSE, relay_failure::TLS_HANDSHAKE)
        }
        _ => (relay_failure::NO_RESPONSE, relay_failure::CONNECT),
    }
}

/// QUIC's CRYPTO_ERROR range: a TLS alert (RFC 9001 section 4.8).
fn is_crypto(code: u64) -> bool {
    (0x100..0x200).contains(&code)
}

/// Writes lanes' datagrams into mbufs behind their headers, onto the NIC burst.
pub(crate) struct Transmitter {
    /// One datagram from quinn-proto (capacity for the largest, reserved once).
    buf: Vec<u8>,
    /// Endpoint responses (unused by a client, but required by the call).
    scratch: Vec<u8>,
    ip_ident: u16,
    dropped: u64,
}

impl Transmitter {
    pub(crate) fn new() -> Transmitter {
        Transmitter {
            buf: Vec::with_capacity(2048),
            scratch: Vec::with_capacity(2048),
            ip_ident: 0,
            dropped: 0,
        }
    }

    pub(crate) fn scratch(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        &mut self.scratch
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every datagram lane `l` has to send now; the last one carries `tag` (a send's latency).
    /// With the burst full, the rest waits for the next poll.
    pub(crate) fn flush(
        &mut self,
        l: &mut QuicLane,
        now: Instant,
        pool: &Mempool,
        burst: &mut TxBurst<u64, BURST>,
        tag: u64,
    ) {
        let Some(c) = &mut l.conn else { return };
        let mut last: Option<Mbuf> = None;
        loop {
            // Room for the one held back and this one.
            if burst.len() + 2 > BURST {
                l.dirty = true;
                break;
            }
            self.buf.clear();
            let Some(t) = c.conn.poll_transmit(now, 1, &mut self.buf) else {
                break;
            };
            let Some(m) = self.frame(&l.s.frame, t.size, pool) else {
                self.dropped += 1; // no mbuf: QUIC's loss recovery sends it again
                continue;
            };
            if let Some(prev) = last.replace(m) {
                let _ = burst.push(prev, 0);
            }
        }
        if let Some(m) = last {
            let _ = burst.push(m, tag);
        }
    }

    /// An mbuf with `frame`'s headers and the first `size` bytes of `buf`.
    fn frame(&mut self, frame: &UdpFrame, size: usize, pool: &Mempool) -> Option<Mbuf> {
        let payload = self.buf.get(..size)?;
        let mut m = pool.alloc()?;
        let bytes = m.append((frame.header_len() + size) as u16)?;
        self.ip_ident = self.ip_ident.wrapping_add(1);
        frame
            .write(bytes, payload, checksum::sum(payload), self.ip_ident)
            .ok()?;
        if let Some(ol) = frame.offload {
            m.set_tx_offload(ol.flags, ol.l2_len, ol.l3_len, ol.l4_len);
        }
        Some(m)
    }
}
