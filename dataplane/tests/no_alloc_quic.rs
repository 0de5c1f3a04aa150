//! What a QUIC lane allocates per transaction. quinn-proto allocates by design (a stream's copy
//! of the data, a received datagram's buffer, stream state), so the QUIC path cannot be proved
//! allocation-free like the UDP and delegated paths (`no_alloc.rs`, `no_alloc_fast.rs`); this
//! test counts it instead, and fails if it grows.
//!
//! One QUIC lane (`QuicLanes`, built from a parsed `kind = "quic"` lane the way the runtime
//! builds it, verifying the relay against a CA made here) talks to an in-process relay: a
//! quinn-proto server endpoint. Datagrams go both ways in memory as whole Ethernet/IPv4/UDP
//! frames in mbufs: the lane's from its NIC burst to the relay, the relay's built into mbufs
//! from the pool and handed to `QuicLanes::claims`/`receive`, as the bridging lcore's RX does.
//! After the handshake, each of [`ROUNDS`] transactions is counted in three places:
//!
//! - send: `QuicLanes::send` (open a stream, write, finish, the datagrams into mbufs);
//! - acknowledgement: `claims` + `receive` of the relay's datagrams and the `drive` after them,
//!   until the transaction's completion (`Relayed`, `ACKED`) comes out;
//! - idle: `drive` polls while waiting for the relay (its delayed ACK: up to 25 ms of real time;
//!   the lane's own timers fire here).
//!
//! The relay's side is not counted. The relay checks every stream's bytes are the transaction's.
//!
//! Astralane is the provider: one uni-stream per transaction, nothing else on the connection
//! (no authentication stream as Glaive and Node1 have), and its identity (a certificate with the
//! API key as CN) needs no keypair file; the relay does not ask for the certificate, which only
//! matters to the handshake, not counted.
//!
//! Needs root (EAL); runs in its own process because EAL initialises once per process.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{counted, have_root, net_null_config, sample_transactions, Counts};
use dpdk::{Mbuf, Mempool, TxBurst};
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, ReadError,
    ServerConfig, StreamEvent, StreamId,
};
use swqos_dataplane::lanes::{LaneSend, LaneTable, PortChecksums};
use swqos_dataplane::quic::{QuicLaneSetup, QuicLanes};
use swqos_dataplane::runtime::{Dataplane, RunOptions};
use swqos_dataplane::tx::{Pending, BURST};
use swqos_shm::layout::{quic_outcome, Status};
use swqos_wire::checksum;
use swqos_wire::ethernet::{EthernetAddress, EthernetFrame};
use swqos_wire::ipv4::Ipv4Packet;
use swqos_wire::quic_relay::QuicProvider;
use swqos_wire::udp::UdpPacket;
use swqos_wire::udp_lane::{ChecksumMode, UdpLaneTemplate, UDP_FRAME_HEADER_LEN};

const ROUNDS: usize = 1000;
/// Rounds compared at the start and at the end (the counts must not grow).
const WINDOW: usize = 250;
const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x78, 0x01];
const RELAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x78, 0x02];
const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 78, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 78, 2);
const LOCAL_PORT: u16 = 20_000;
/// Astralane's QUIC port.
const RELAY_PORT: u16 = 7000;
/// The provider's server name, verified against the relay's certificate.
const SERVER_NAME: &str = "astralane";
/// How long the handshake, or one transaction's completion, may take (a failure, never a hang).
const DEADLINE: Duration = Duration::from_secs(10);

/// What a transaction costs, measured (`docs/quic-lanes.md`, "Per transaction"); all of it is
/// quinn-proto's. Sending: the stream's state (160 bytes), its copy of the transaction (its
/// length) and the stream's send queue (128 bytes).
const SEND_ALLOCATIONS: u64 = 3;
const SEND_BYTES_BEYOND_TX: u64 = 160 + 128;
/// The acknowledgement: a node of the stream's set of acknowledged ranges (192 bytes). (The
/// datagram's copy for quinn-proto reuses one buffer: `QuicLanes::receive`.)
const ACK_ALLOCATIONS: u64 = 1;
const ACK_BYTES: u64 = 192;
/// Transactions that may cost more than that (quinn-proto's tables growing, an acknowledgement
/// arriving with other frames, the connection's own timers): one in a hundred.
const OUTLIERS: usize = ROUNDS / 100;
/// Slack on a window's total allocations, and on the live allocations a window may leave: one
/// key update (about 8 allocations for the new packet keys, at a random point on either side,
/// so in either window) and a table growing; a growth or a leak of one allocation per
/// transaction is `WINDOW` (250).
const WINDOW_SLACK: u64 = 10;

/// The relay's certificate authority (its PEM in a file for the lane's `ca_files`) and the
/// certificate it signed for [`SERVER_NAME`].
struct Pki {
    dir: PathBuf,
    ca_file: PathBuf,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "no_alloc_quic test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("swqos-noallocquic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, pem(ca.der())).unwrap();
        Pki {
            dir,
            ca_file,
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate in PEM.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The lane's setup, the way the runtime makes it (`runtime.rs`, `quic_lanes`): a parsed
/// `kind = "quic"` lane, its frame template from the lane table, `QuicLaneSetup::new`. The
/// config is only parsed (its bridge's TAP is never made).
fn lane_setup(ca_file: &Path) -> QuicLaneSetup {
    let pid = std::process::id();
    let text = format!(
        r#"
[eal]
lcores = "0-1"
hugepages = "off"
[shm]
path = "/dev/shm/swqos-test-noallocquic-lanes-{pid}/segment"
[[port]]
name = "nic"
device = "net_null0"
[[port]]
name = "kernel"
device = "net_tap0,iface=swqos-naq"
[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "nic", queue = 0 }}, {{ port = "kernel", queue = 0 }}]
bridge = {{ nic = "nic", kernel = "kernel" }}
[[lane]]
name = "astralane-quic"
kind = "quic"
provider = "astralane"
port = "nic"
src_ip = "{LOCAL}"
src_port = {LOCAL_PORT}
dst_ip = "{RELAY}"
dst_port = {RELAY_PORT}
dst_mac = "02:00:00:00:78:02"
token = "no-alloc-quic-test-key"
ca_files = ["{}"]
"#,
        ca_file.display()
    );
    let config = dpdk_config::Config::parse(&text, Path::new("no_alloc_quic.toml")).unwrap();
    let table = LaneTable::new(
        &config,
        &[LOCAL_MAC, LOCAL_MAC],
        &[PortChecksums::default(); 2],
    );
    let (LaneSend::Quic(frame), dpdk_config::LaneKind::Quic(q)) =
        (&table[0].send, &config.lanes[0].kind)
    else {
        panic!("lane 0 is a QUIC lane");
    };
    assert_eq!(q.provider, QuicProvider::Astralane);
    assert!(
        !q.insecure_skip_verify,
        "the relay's certificate is verified"
    );
    QuicLaneSetup::new(0, &table[0].name, q, frame.clone(), 1500).unwrap()
}

/// The relay: a quinn-proto server endpoint, its one connection, and what it received.
struct Relay {
    endpoint: Endpoint,
    conn: Option<(ConnectionHandle, Connection)>,
    /// The lane's address, as the relay sees it.
    client: SocketAddr,
    buf: Vec<u8>,
    /// Datagrams for the lane.
    out: Vec<Vec<u8>>,
    /// Streams being received, and the ones received whole.
    partial: HashMap<StreamId, Vec<u8>>,
    received: Vec<Vec<u8>>,
    /// Headers of the relay's frames to the lane.
    frame: UdpLaneTemplate,
    ip_ident: u16,
}

impl Relay {
    fn new(pki: &Pki) -> Relay {
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key.clone());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], key.into())
            .unwrap();
        tls.alpn_protocols = vec![QuicProvider::Astralane.alpn().unwrap().to_vec()];
        let crypto = QuicServerConfig::try_from(tls).unwrap();
        let server = ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::new(server)),
            true,
            None,
        );
        Relay {
            endpoint,
            conn: None,
            client: SocketAddr::new(IpAddr::V4(LOCAL), LOCAL_PORT),
            buf: Vec::with_capacity(2048),
            out: Vec::new(),
            partial: HashMap::new(),
            received: Vec::new(),
            frame: UdpLaneTemplate::new(
                EthernetAddress(RELAY_MAC),
                EthernetAddress(LOCAL_MAC),
                RELAY,
                LOCAL,
                RELAY_PORT,
                LOCAL_PORT,
                64,
            ),
            ip_ident: 0,
        }
    }

    /// A datagram from the lane.
    fn input(&mut self, datagram: &[u8]) {
        let now = Instant::now();
        self.buf.clear();
        let event = self.endpoint.handle(
            now,
            self.client,
            None,
            None,
            BytesMut::from(datagram),
            &mut self.buf,
        );
        match event {
            Some(DatagramEvent::NewConnection(incoming)) => {
                assert!(self.conn.is_none(), "the lane opened a second connection");
                self.buf.clear();
                let c = self
                    .endpoint
                    .accept(incoming, now, &mut self.buf, None)
                    .unwrap_or_else(|e| panic!("the relay refused the lane: {:?}", e.cause));
                self.conn = Some(c);
            }
            Some(DatagramEvent::ConnectionEvent(h, event)) => {
                let (ch, c) = self.conn.as_mut().expect("a connection for the event");
                assert_eq!(*ch, h);
                c.handle_event(event);
            }
            Some(DatagramEvent::Response(t)) => self.out.push(self.buf[..t.size].to_vec()),
            None => {}
        }
        self.process();
    }

    /// The connection's timers, events and streams; its datagrams into `out`.
    fn process(&mut self) {
        let Some((h, c)) = &mut self.conn else { return };
        let now = Instant::now();
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while let Some(ev) = c.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(*h, ev) {
                c.handle_event(back);
            }
        }
        while let Some(ev) = c.poll() {
            match ev {
                Event::Stream(StreamEvent::Opened { dir }) => {
                    assert_eq!(dir, Dir::Uni, "Astralane: uni-streams only");
                    while let Some(id) = c.streams().accept(dir) {
                        read_stream(c, id, &mut self.partial, &mut self.received);
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    read_stream(c, id, &mut self.partial, &mut self.received)
                }
                Event::ConnectionLost { reason } => panic!("the relay lost the lane: {reason}"),
                _ => {}
            }
        }
        loop {
            self.buf.clear();
            let Some(t) = c.poll_transmit(now, 1, &mut self.buf) else {
                break;
            };
            self.out.push(self.buf[..t.size].to_vec());
        }
    }

    /// When the relay has something to do next (its delayed ACK, a retransmission).
    fn timeout(&mut self) -> Option<Instant> {
        self.conn.as_mut().and_then(|(_, c)| c.poll_timeout())
    }

    /// The relay's datagrams as frames from the NIC, in mbufs of `pool`.
    fn frames(&mut self, pool: &Mempool, into: &mut Vec<Mbuf>) {
        for d in self.out.drain(..) {
            let mut m = pool.alloc().expect("an mbuf for the relay's datagram");
            let bytes = m
                .append((UDP_FRAME_HEADER_LEN + d.len()) as u16)
                .expect("room for the relay's datagram");
            self.ip_ident = self.ip_ident.wrapping_add(1);
            self.frame
                .write(
                    bytes,
                    &d,
                    checksum::sum(&d),
                    self.ip_ident,
                    ChecksumMode::Software,
                )
                .unwrap();
            into.push(m);
        }
    }
}

/// Reads what stream `id` has; a finished stream moves to `received`.
fn read_stream(
    c: &mut Connection,
    id: StreamId,
    partial: &mut HashMap<StreamId, Vec<u8>>,
    received: &mut Vec<Vec<u8>>,
) {
    let mut stream = c.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else {
        return;
    };
    let data = partial.entry(id).or_default();
    let finished = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(chunk)) => data.extend_from_slice(&chunk.bytes),
            Ok(None) => break true,
            Err(ReadError::Blocked) => break false,
            Err(e) => panic!("stream {id}: {e}"),
        }
    };
    let _ = chunks.finalize();
    if finished {
        received.push(partial.remove(&id).unwrap());
    }
}

/// The lane's UDP payload in a frame it sent, after checking the frame goes to the relay.
fn lane_datagram(frame: &[u8]) -> &[u8] {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress(RELAY_MAC));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL, RELAY));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (LOCAL_PORT, RELAY_PORT));
    let start = UDP_FRAME_HEADER_LEN;
    &frame[start..start + udp.payload().len()]
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        allocations: a.allocations + b.allocations,
        bytes: a.bytes + b.bytes,
        deallocations: a.deallocations + b.deallocations,
    }
}

const ZERO: Counts = Counts {
    allocations: 0,
    bytes: 0,
    deallocations: 0,
};

/// What one transaction cost the lane's lcore.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// The transaction's length.
    tx_len: u64,
    send: Counts,
    ack: Counts,
    idle: Counts,
}

/// The lane, the relay, and the lcore's pieces (pool, NIC burst, RX frames, completions).
struct Harness {
    lanes: QuicLanes,
    relay: Relay,
    pool: Mempool,
    burst: TxBurst<u64, BURST>,
    /// The relay's frames for the lane (capacity kept: no allocation while counting).
    inbox: Vec<Mbuf>,
    /// Completions: (tag, status, reason) (capacity kept).
    completions: Vec<(u64, Status, u16)>,
}

impl Harness {
    /// The lane's frames on the NIC burst, to the relay.
    fn forward_to_relay(&mut self) {
        let relay = &mut self.relay;
        self.burst
            .drain(|m, _| relay.input(lane_datagram(m.data())));
        relay.process();
    }

    /// One poll of the lane's lcore: the relay's frames (`claims`, `receive`) and `drive`.
    fn poll(&mut self) {
        let now = dpdk::tsc();
        for m in self.inbox.drain(..) {
            let claim = self.lanes.claims(m.data()).expect("the lane's frame");
            assert_eq!(claim.lane(), 0, "the lane's frame");
            self.lanes.receive(claim, m, now);
        }
        let completions = &mut self.completions;
        self.lanes
            .drive(dpdk::tsc(), &self.pool, &mut self.burst, |p, s, r| {
                completions.push((p.tag(), s, r))
            });
    }

    /// Polls until `done`, shuttling datagrams both ways: polls with the relay's frames count
    /// into `ack`, the others into `idle`. Waits for the relay's timers in real time.
    fn run_until(&mut self, ack: &mut Counts, idle: &mut Counts, done: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "nothing came within {DEADLINE:?}"
            );
            self.forward_to_relay();
            self.relay.frames(&self.pool, &mut self.inbox);
            let with_frames = !self.inbox.is_empty();
            let ((), c) = counted(|| self.poll());
            if with_frames {
                *ack = add(*ack, c);
            } else {
                *idle = add(*idle, c);
                // Nothing from the relay: wait (a little) for its timer.
                let now = Instant::now();
                let until = self
                    .relay
                    .timeout()
                    .unwrap_or(now)
                    .min(now + Duration::from_millis(1));
                std::thread::sleep(until.saturating_duration_since(now));
            }
        }
    }

    /// One transaction, `tag`: sent, received whole by the relay, acknowledged, completed once.
    fn round(&mut self, tag: u64, tx: &[u8]) -> Cost {
        let pending = Pending::detached(0, tag, dpdk::tsc());
        let (sent, send) = counted(|| {
            self.lanes
                .send(0, tx, pending, dpdk::tsc(), &self.pool, &mut self.burst)
        });
        assert_eq!(sent, Ok(()), "transaction {tag}: the lane did not send it");
        assert!(!self.burst.is_empty(), "transaction {tag}: no datagram");
        let (mut ack, mut idle) = (ZERO, ZERO);
        self.run_until(&mut ack, &mut idle, |h| !h.completions.is_empty());
        assert_eq!(
            self.completions,
            [(tag, Status::Relayed, quic_outcome::ACKED)],
            "transaction {tag}: one completion, acknowledged"
        );
        self.completions.clear();
        assert_eq!(
            self.relay.received,
            [tx],
            "transaction {tag}: the relay received it whole, once"
        );
        self.relay.received.clear();
        Cost {
            tx_len: tx.len() as u64,
            send,
            ack,
            idle,
        }
    }
}

#[test]
fn quic_lane_allocations_per_transaction() {
    if !have_root("quic_lane_allocations_per_transaction") {
        return;
    }
    // EAL as the data plane sets it up; the lane's mbufs come from a pool of its own.
    let config = net_null_config(
        "noallocquic",
        r#"
[[lane]]
name = "a"
kind = "udp"
port = "p0"
src_ip = "198.18.0.1"
src_port = 9001
dst_ip = "198.18.0.2"
dst_port = 8001
dst_mac = "02:00:00:00:00:02"
"#,
    );
    let dp = Dataplane::setup(&config, &RunOptions::default()).unwrap();
    let pool = Mempool::create("noalloc-quic", 1023, 0, Mempool::DEFAULT_DATA_ROOM, -1).unwrap();
    let pki = Pki::new();
    let mut h = Harness {
        lanes: QuicLanes::new(vec![lane_setup(&pki.ca_file)]).unwrap(),
        relay: Relay::new(&pki),
        pool,
        burst: TxBurst::new(),
        inbox: Vec::with_capacity(64),
        completions: Vec::with_capacity(64),
    };

    // The handshake, not counted.
    let (mut ack, mut idle) = (ZERO, ZERO);
    h.run_until(&mut ack, &mut idle, |h| h.lanes.connected() == 1);
    // What follows it (session tickets, connection IDs, their acknowledgements), not counted.
    let settled = Instant::now() + Duration::from_millis(200);
    h.run_until(&mut ack, &mut idle, |_| Instant::now() >= settled);
    assert!(
        h.completions.is_empty(),
        "completions before any transaction"
    );

    let txs = sample_transactions();
    let costs: Vec<Cost> = (0..ROUNDS)
        .map(|r| h.round(r as u64, &txs[r % txs.len()]))
        .collect();
    // No completion comes twice: nothing more while the connection idles a little.
    let quiet = Instant::now() + Duration::from_millis(100);
    h.run_until(&mut ack, &mut idle, |_| Instant::now() >= quiet);
    assert!(
        h.completions.is_empty(),
        "a completion after its transaction's: {:?}",
        h.completions
    );
    assert_eq!(
        h.lanes.dropped(),
        0,
        "every datagram found room on the burst"
    );
    h.forward_to_relay();
    assert_eq!(h.pool.in_use(), 0, "every mbuf went back to the pool");
    check(&costs);

    drop(h);
    drop(dp);
}

/// Prints what the transactions cost and checks it against the measured costs: the typical
/// transaction costs no more, at most [`OUTLIERS`] cost more, the last [`WINDOW`] rounds cost no
/// more than the first, and leave no more allocations live.
fn check(costs: &[Cost]) {
    let sum = |rounds: &[Cost], f: fn(&Cost) -> Counts| rounds.iter().map(f).fold(ZERO, add);
    let n = costs.len() as f64;
    let first = &costs[..WINDOW];
    let last = &costs[costs.len() - WINDOW..];
    for (what, f) in [
        ("send", (|c: &Cost| c.send) as fn(&Cost) -> Counts),
        ("acknowledgement", |c: &Cost| c.ack),
        ("idle polls", |c: &Cost| c.idle),
    ] {
        let (t, a, b) = (sum(costs, f), sum(first, f), sum(last, f));
        let most = costs
            .iter()
            .map(f)
            .max_by_key(|c| c.allocations)
            .unwrap_or(ZERO);
        eprintln!(
            "{what}: {:.2} allocations, {:.0} bytes per transaction (most: {}, {} bytes); \
             first {WINDOW}: {} allocations, {} live after; last {WINDOW}: {}, {} live after",
            t.allocations as f64 / n,
            t.bytes as f64 / n,
            most.allocations,
            most.bytes,
            a.allocations,
            a.allocations as i64 - a.deallocations as i64,
            b.allocations,
            b.allocations as i64 - b.deallocations as i64,
        );
        assert!(
            b.allocations <= a.allocations + WINDOW_SLACK,
            "{what}: the last {WINDOW} transactions allocated more than the first"
        );
    }
    let (a, b) = (sum(first, total), sum(last, total));
    assert!(
        b.allocations <= b.deallocations + WINDOW_SLACK,
        "the last {WINDOW} transactions left {} allocations live (the first {WINDOW}: {})",
        b.allocations - b.deallocations,
        a.allocations as i64 - a.deallocations as i64
    );
    let over: Vec<usize> = (0..costs.len())
        .filter(|&r| {
            let c = &costs[r];
            c.send.allocations > SEND_ALLOCATIONS
                || c.send.bytes > SEND_BYTES_BEYOND_TX + c.tx_len
                || c.ack.allocations > ACK_ALLOCATIONS
                || c.ack.bytes > ACK_BYTES
                || c.idle.allocations > 0
        })
        .collect();
    eprintln!(
        "{} of {} transactions cost more than {SEND_ALLOCATIONS} allocations ({SEND_BYTES_BEYOND_TX} \
         bytes + the transaction) to send and {ACK_ALLOCATIONS} ({ACK_BYTES} bytes) to \
         acknowledge: {:?}",
        over.len(),
        costs.len(),
        &over[..over.len().min(OUTLIERS + 1)]
    );
    assert!(
        over.len() <= OUTLIERS,
        "more than {OUTLIERS} transactions cost more than measured"
    );
}

/// Everything one transaction cost.
fn total(c: &Cost) -> Counts {
    add(add(c.send, c.ack), c.idle)
}
