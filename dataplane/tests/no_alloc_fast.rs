//! Delegated sends with TLS allocate nothing: a counting global allocator watches
//! `FastPath::try_send` claim an armed session entry, cut a Jito request into TCP segments and
//! seal each as a TLS 1.3 record in its mbuf, and the steps that let the connection send again
//! (the kernel's copy of the request, the relay's acknowledgment, the control plane's re-arming),
//! thousands of times, with the keys unchanged and after a key change.
//!
//! Needs root (EAL); runs in its own process because EAL initialises once per process.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{counted, have_root, net_null_config, sample_transactions};
use dpdk::{Mempool, TxBurst};
use swqos_dataplane::fast::{FastPath, Miss};
use swqos_dataplane::runtime::{Dataplane, RunOptions};
use swqos_shm::sessions::{state, Take, TlsWriteRef};
use swqos_shm::ControlSegment;
use swqos_tls::{content_type, RecordOpener, Suite, TrafficKeys};
use swqos_wire::checksum;
use swqos_wire::ipv4::protocol;
use swqos_wire::relay::{request_digest, Endpoint, Provider, RequestTemplate};
use swqos_wire::tcp::flags;

const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x01];
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x02];
const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 2);
const LOCAL_PORT: u16 = 40_001;
const RELAY_PORT: u16 = 443;
/// The kernel's ISN: close to the wrap, so the loops cross it.
const ISN: u32 = 0xfff0_0000;
const PEER_ISN: u32 = 0x1234_5678;
/// The kernel's timestamps after the handshake (TSval, TSecr).
const KERNEL_TS: (u32, u32) = (101, 5000);
const SUITE: u16 = 0x1302; // TLS_AES_256_GCM_SHA384
const KEY: [u8; 32] = [0x11; 32];
const NEW_KEY: [u8; 32] = [0x5a; 32];
const IV: [u8; 12] = [
    0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
];
const FIRST_TLS_SEQ: u64 = 7;
const ROUNDS: usize = 2000;
/// Ethernet + IPv4 + TCP with the timestamp option: the relay's pure ACKs.
const PEER_ACK_LEN: usize = 14 + 20 + 32;

/// Fills in the IPv4 and TCP checksums of an Ethernet/IPv4/TCP frame (20-byte IP header).
fn fill_checksums(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let ip_sum = checksum::finish(checksum::sum(&frame[14..34]));
    frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    frame[50..52].copy_from_slice(&[0, 0]);
    let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    let ph = checksum::pseudo_header_ipv4(src, dst, protocol::TCP, (frame.len() - 34) as u16);
    let sum = checksum::finish(checksum::combine(ph, checksum::sum(&frame[34..])));
    frame[50..52].copy_from_slice(&sum.to_be_bytes());
}

/// An Ethernet/IPv4/TCP frame, from the kernel (`from_kernel`) or from the relay, with `opts`
/// (a multiple of 4 bytes) and `payload` zero bytes; checksums filled in.
fn tcp_frame(
    from_kernel: bool,
    seq: u32,
    ack: u32,
    fl: u8,
    window: u16,
    opts: &[u8],
    payload: usize,
) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let (src_mac, dst_mac, src, dst, sport, dport) = if from_kernel {
        (LOCAL_MAC, GATEWAY_MAC, LOCAL, RELAY, LOCAL_PORT, RELAY_PORT)
    } else {
        (GATEWAY_MAC, LOCAL_MAC, RELAY, LOCAL, RELAY_PORT, LOCAL_PORT)
    };
    let tcp_len = 20 + opts.len();
    let mut f = vec![0u8; 34 + tcp_len + payload];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + tcp_len + payload) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
    f[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    f[22] = 64;
    f[23] = protocol::TCP;
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    let t = &mut f[34..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = fl;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[20..tcp_len].copy_from_slice(opts);
    fill_checksums(&mut f);
    f
}

/// SYN options as Linux sends them: MSS, SACK permitted, timestamps, NOP, window scale.
fn syn_options(mss: u16, tsval: u32, tsecr: u32, wscale: u8) -> Vec<u8> {
    let mut o = vec![2, 4];
    o.extend_from_slice(&mss.to_be_bytes());
    o.extend_from_slice(&[4, 2, 8, 10]);
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o.extend_from_slice(&[1, 3, 3, wscale]);
    o
}

/// NOP, NOP, timestamps.
fn ts_options(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

/// The fast path, its connection and the session entry, with everything a round needs
/// prepared outside the counted region.
struct Harness {
    fast: FastPath,
    seg: Arc<ControlSegment>,
    pool: Mempool,
    out: TxBurst<u64, 64>,
    /// The relay's pure ACK; each round patches the acknowledgment number and TSval.
    peer_ack: [u8; PEER_ACK_LEN],
    peer_tsval: u32,
    rounds: u64,
    /// The connection's generation, and the write key and next record sequence number the
    /// control plane publishes with each arming.
    generation: u32,
    key: [u8; 32],
    tls_seq: u64,
}

/// What one round sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// First sequence number and bytes on the wire.
    seq: u32,
    len: u32,
    /// TLS records (= TCP segments) and the sequence number of the first.
    records: u64,
    tls_seq: u64,
    /// The digest the hand-off record carries.
    digest: u64,
}

impl Harness {
    /// One delegated send, then what makes the connection sendable again: the kernel's copy of
    /// the request (the same segments: the control plane's mirror write seals the same
    /// plaintexts at the same record sequence numbers), the relay's ACK of all of it (before
    /// the kernel's copy when `peer_first`: the fast path must hold it, then release it), and
    /// the control plane's re-arming (CLAIMED -> BUSY -> ARMED, the record sequence number
    /// advanced past the records sent). `inspect` sees every frame sent.
    fn round(&mut self, tx: &[u8], peer_first: bool, mut inspect: impl FnMut(&[u8])) -> Sent {
        let Harness {
            fast,
            seg,
            pool,
            out,
            peer_ack,
            peer_tsval,
            rounds,
            generation,
            key,
            tls_seq,
        } = self;
        let e = seg.session(0);
        let Ok(d) = fast.try_send(0, tx, dpdk::tsc(), pool, out) else {
            panic!("try_send did not claim the armed session");
        };
        assert_eq!((d.session, d.generation), (0, *generation));
        assert_eq!(e.state(), state::CLAIMED);
        assert_eq!(
            d.tls_seq, *tls_seq,
            "sealed from the published sequence number"
        );
        let sent = Sent {
            seq: d.tcp_seq,
            len: d.wire_len,
            records: out.len() as u64,
            tls_seq: d.tls_seq,
            digest: d.digest,
        };
        assert!(sent.records > 0);

        // The relay's ACK of everything, in an mbuf as it comes from the NIC.
        let mut ack = pool.alloc().expect("an mbuf for the relay's ACK");
        let frame = ack
            .append(PEER_ACK_LEN as u16)
            .expect("room for the relay's ACK");
        frame.copy_from_slice(peer_ack);
        *peer_tsval = peer_tsval.wrapping_add(1);
        frame[34 + 8..34 + 12].copy_from_slice(&sent.seq.wrapping_add(sent.len).to_be_bytes());
        frame[34 + 24..34 + 28].copy_from_slice(&peer_tsval.to_be_bytes());
        fill_checksums(frame);
        let mut ack = Some(ack);
        if peer_first {
            let m = ack.take().expect("not yet given");
            assert!(
                fast.on_peer(m, dpdk::tsc()).is_none(),
                "an ACK of bytes only the data plane sent must be held"
            );
        }

        // The kernel's copy goes out; the fast segments are freed.
        let mut released = 0;
        out.drain(|m, _| {
            inspect(m.data());
            fast.on_kernel(m.data(), |r| {
                released += 1;
                drop(r);
            });
        });
        assert_eq!(released, u32::from(peer_first), "held ACK released");
        if let Some(m) = ack {
            assert!(
                fast.on_peer(m, dpdk::tsc()).is_some(),
                "an ACK of the kernel's bytes passes"
            );
        }

        // The control plane's response handling and re-arming.
        assert!(e.finish_claim());
        *tls_seq += sent.records;
        assert!(e.arm(Some(TlsWriteRef {
            suite: SUITE,
            key: &key[..],
            iv: &IV,
            seq: *tls_seq,
        })));
        *rounds += 1;
        sent
    }

    /// Publishes new write keys (the control plane takes the entry back), as after a KeyUpdate.
    fn rekey(&mut self, key: &[u8; 32]) {
        let e = self.seg.session(0);
        assert_eq!(e.take(), Take::Taken);
        self.key = *key;
        assert!(e.arm(Some(TlsWriteRef {
            suite: SUITE,
            key: &self.key[..],
            iv: &IV,
            seq: self.tls_seq,
        })));
    }
}

/// Checks the frames of one fast send: headers, checksums, contiguous sequence numbers, one
/// TLS record per segment, and the records decrypt (with `key` from `sent.tls_seq`) to the
/// whole request.
fn check_frames(frames: &[Vec<u8>], sent: Sent, key: &[u8; 32], expected: &[u8]) {
    assert_eq!(frames.len() as u64, sent.records);
    let suite = Suite::from_iana(SUITE).unwrap();
    let keys = TrafficKeys::new(suite, key, &IV).unwrap();
    let mut opener = RecordOpener::new(keys, sent.tls_seq);
    let mut seq = sent.seq;
    let mut plaintext = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(
            &f[0..6],
            &GATEWAY_MAC,
            "destination MAC from the kernel's frames"
        );
        assert_eq!(&f[6..12], &LOCAL_MAC);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
        assert_eq!(ip_len + 14, f.len(), "IPv4 total length");
        assert_eq!(f[23], protocol::TCP);
        assert_eq!(&f[26..30], &LOCAL.octets());
        assert_eq!(&f[30..34], &RELAY.octets());
        assert_eq!(
            checksum::fold(checksum::sum(&f[14..34])),
            0xffff,
            "IPv4 checksum"
        );
        let tcp = swqos_wire::tcp::TcpPacket::new_checked(&f[34..]).unwrap();
        assert!(tcp.verify_checksum(LOCAL, RELAY), "TCP checksum");
        assert_eq!((tcp.src_port(), tcp.dst_port()), (LOCAL_PORT, RELAY_PORT));
        assert_eq!(tcp.seq(), seq, "segment {k}: contiguous sequence numbers");
        assert_eq!(tcp.ack(), PEER_ISN.wrapping_add(1));
        assert_eq!(tcp.window(), 502, "the kernel's window");
        assert_eq!(
            tcp.options().timestamps,
            Some(KERNEL_TS),
            "the kernel's timestamps"
        );
        let last = k == frames.len() - 1;
        assert_eq!(
            tcp.flags(),
            flags::ACK | if last { flags::PSH } else { 0 },
            "segment {k}: flags"
        );
        let payload = tcp.payload();
        assert!(payload.len() <= 1448, "within the MSS less the timestamps");
        assert_eq!(
            &payload[..3],
            &[0x17, 0x03, 0x03],
            "segment {k}: a TLS application-data record header"
        );
        assert_eq!(
            swqos_tls::record_len(payload),
            Some(payload.len()),
            "segment {k}: exactly one record"
        );
        let mut record = payload.to_vec();
        let opened = opener
            .open_in_place(&mut record)
            .unwrap_or_else(|e| panic!("segment {k}: record does not open: {e}"));
        assert_eq!(opened.content_type, content_type::APPLICATION_DATA);
        plaintext.extend_from_slice(&record[opened.plaintext]);
        seq = seq.wrapping_add(payload.len() as u32);
    }
    assert_eq!(seq.wrapping_sub(sent.seq), sent.len, "fast_len");
    assert_eq!(
        sent.digest,
        request_digest(&[expected]),
        "the hand-off digest is the request's"
    );
    assert!(plaintext.starts_with(b"POST "), "an HTTP request");
    assert_eq!(
        plaintext, expected,
        "the records carry the template's request"
    );
}

fn expected_request(template: &RequestTemplate, tx: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; template.len(tx.len())];
    assert_eq!(template.write(tx, &mut [&mut buf[..]]), Some(buf.len()));
    buf
}

#[test]
fn fast_path_tls_sends_allocate_nothing() {
    if !have_root("fast_path_tls_sends_allocate_nothing") {
        return;
    }
    let config = net_null_config(
        "noallocfast",
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
    // EAL, the shared segment (and its session table) as the data plane sets them up; the
    // fast path's mbufs come from a pool of its own.
    let dp = Dataplane::setup(&config, &RunOptions::default()).unwrap();
    let seg = dp.control_segment().clone();
    let pool = Mempool::create("noalloc-fast", 1023, 0, Mempool::DEFAULT_DATA_ROOM, -1).unwrap();

    let template = RequestTemplate::new(
        Provider::Jito,
        Endpoint {
            host: "mainnet.block-engine.jito.wtf",
            path: None,
            token: Some("no-alloc-test-token"),
        },
    )
    .unwrap();
    let mut fast = FastPath::new(
        seg.clone(),
        vec![(RELAY, RELAY_PORT)],
        vec![Some(template.clone())],
        dpdk::tsc_hz(),
        1514,
    );

    // The handshake: the kernel's SYN, the relay's SYN-ACK, the kernel's ACK.
    let syn = tcp_frame(
        true,
        ISN,
        0,
        flags::SYN,
        64240,
        &syn_options(1460, 100, 0, 7),
        0,
    );
    fast.on_kernel(&syn, drop);
    let syn_ack = tcp_frame(
        false,
        PEER_ISN,
        ISN.wrapping_add(1),
        flags::SYN | flags::ACK,
        65160,
        &syn_options(1460, 5000, 100, 7),
        0,
    );
    let mut m = pool.alloc().unwrap();
    m.append(syn_ack.len() as u16)
        .unwrap()
        .copy_from_slice(&syn_ack);
    assert!(fast.on_peer(m, dpdk::tsc()).is_some(), "SYN-ACK passes");
    let ack = tcp_frame(
        true,
        ISN.wrapping_add(1),
        PEER_ISN.wrapping_add(1),
        flags::ACK,
        502,
        &ts_options(KERNEL_TS.0, KERNEL_TS.1),
        0,
    );
    fast.on_kernel(&ack, drop);

    // The control plane registers and arms the connection in session entry 0.
    let e = seg.session(0);
    let generation = e.open(
        0,
        SocketAddrV4::new(LOCAL, LOCAL_PORT),
        SocketAddrV4::new(RELAY, RELAY_PORT),
    );
    assert!(e.arm(Some(TlsWriteRef {
        suite: SUITE,
        key: &KEY,
        iv: &IV,
        seq: FIRST_TLS_SEQ,
    })));

    let peer_ack: [u8; PEER_ACK_LEN] = tcp_frame(
        false,
        PEER_ISN.wrapping_add(1),
        0,
        flags::ACK,
        502,
        &ts_options(5000, KERNEL_TS.0),
        0,
    )
    .try_into()
    .unwrap();
    let mut h = Harness {
        fast,
        seg: seg.clone(),
        pool,
        out: TxBurst::new(),
        peer_ack,
        peer_tsval: 5000,
        rounds: 0,
        generation,
        key: KEY,
        tls_seq: FIRST_TLS_SEQ,
    };
    let txs = sample_transactions();
    assert!(txs.len() > 4);
    let expected: Vec<Vec<u8>> = txs.iter().map(|t| expected_request(&template, t)).collect();

    // Warm-up (uncounted): the first send builds the sealer; its frames are checked in full.
    let mut frames = Vec::new();
    let sent = h.round(&txs[0], false, |f| frames.push(f.to_vec()));
    assert_eq!(sent.seq, ISN.wrapping_add(1));
    assert_eq!(sent.tls_seq, FIRST_TLS_SEQ);
    assert!(sent.records >= 2, "a request of several segments");
    check_frames(&frames, sent, &KEY, &expected[0]);
    // And once with the held-ACK order.
    let mut frames = Vec::new();
    let sent = h.round(&txs[1], true, |f| frames.push(f.to_vec()));
    check_frames(&frames, sent, &KEY, &expected[1]);

    // Counted: the same keys.
    let start = Instant::now();
    let ((), same_key) = counted(|| {
        for i in 0..ROUNDS {
            h.round(&txs[i % txs.len()], i % 2 == 1, |_| {});
        }
    });
    let same_key_time = start.elapsed();
    assert_eq!(h.pool.in_use(), 0, "every mbuf went back to the pool");

    // Counted: the control plane publishes a new key before the first send (a KeyUpdate), so
    // the first claim rebuilds the sealer.
    let start = Instant::now();
    let ((), new_key) = counted(|| {
        for i in 0..ROUNDS {
            if i == 0 {
                h.rekey(&NEW_KEY);
            }
            h.round(&txs[(i + 3) % txs.len()], i % 2 == 0, |_| {});
        }
    });
    let new_key_time = start.elapsed();
    assert_eq!(h.pool.in_use(), 0, "every mbuf went back to the pool");

    // The sealer in use now has the new key (uncounted check).
    let mut frames = Vec::new();
    let sent = h.round(&txs[2], false, |f| frames.push(f.to_vec()));
    check_frames(&frames, sent, &NEW_KEY, &expected[2]);
    assert_eq!(h.seg.session(0).fast_sends(), h.rounds);
    assert!(
        sent.seq.wrapping_sub(ISN) > ISN.wrapping_neg(),
        "the sequence space wrapped during the loops"
    );

    eprintln!(
        "{} rounds with the same key: {same_key:?} in {same_key_time:?}; {} rounds after a key change: {new_key:?} in {new_key_time:?}; {} fast sends, {} TLS records",
        ROUNDS,
        ROUNDS,
        h.rounds,
        h.tls_seq - FIRST_TLS_SEQ,
    );
    assert_eq!(
        same_key.allocations, 0,
        "try_send and the restore steps allocated ({same_key:?})"
    );
    assert_eq!(
        new_key.allocations, 0,
        "try_send after a key change allocated ({new_key:?})"
    );
    assert_eq!(same_key.deallocations + new_key.deallocations, 0);

    // A seal that fails (the record sequence number is exhausted) sends nothing and claims
    // nothing: before, the error was ignored and the request could leave in clear, token and
    // all. The control plane sends it instead.
    let e = h.seg.session(0);
    assert_eq!(e.take(), Take::Taken);
    assert!(e.arm(Some(TlsWriteRef {
        suite: SUITE,
        key: &h.key[..],
        iv: &IV,
        seq: u64::MAX,
    })));
    let before = e.fast_sends();
    let refused = h
        .fast
        .try_send(0, &txs[0], dpdk::tsc(), &h.pool, &mut h.out);
    assert_eq!(refused.unwrap_err(), Miss::Refused);
    assert!(h.out.is_empty(), "nothing queued for the wire");
    assert_eq!(e.state(), state::ARMED, "not claimed");
    assert_eq!(e.fast_sends(), before);
    assert_eq!(h.pool.in_use(), 0, "the segments went back to the pool");

    drop(h);
    drop(seg);
    drop(dp);
}
