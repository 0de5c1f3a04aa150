//! Delegated-send throughput: HTTP requests per second per lcore on a synthetic armed relay
//! connection, the frames sent on `net_null0`.
//!
//! ```sh
//! cargo build --release -p swqos-dataplane --example fast_send
//! sudo target/release/examples/fast_send [SECONDS]   # scripts/bench.sh runs it
//! ```
//!
//! No control plane and no peer: the example plays both around the TX lcore's real code. It
//! sets up the data plane as `swqos-dataplane` does (EAL, pools, `net_null0`, the session table),
//! teaches a [`FastPath`] a relay connection with the kernel's handshake frames, registers and
//! arms it in session entry 0, then for `SECONDS` (default 3) per mode, plain HTTP then TLS 1.3
//! (`TLS_AES_256_GCM_SHA384`), repeats what one delegated request costs the lcore:
//!
//! 1. `FastPath::try_send`: claim the session, write the Jito request for the next sample
//!    transaction into TCP segments in mbufs (and seal them, TLS), headers and checksums;
//! 2. the kernel's copy of those segments passes the fast path (`on_kernel`), as the bridge sees
//!    the control plane's mirror write; the segments go to `net_null0` in one `tx_burst`;
//! 3. the relay's ACK of them, built in an mbuf, passes the fast path (`on_peer`) and goes to
//!    `net_null0` (standing in for the kernel interface the bridge forwards it to);
//! 4. the control plane's part: the claim finished and the connection re-armed (two atomics).
//!
//! It prints requests per wall-clock second and per second on a CPU of this thread (the host is
//! shared; see docs/benchmarks.md), and the ticks of step 1 alone.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use dpdk::{Mempool, TxBurst, TxQueue};
use swqos_dataplane::fast::FastPath;
use swqos_dataplane::runtime::{Dataplane, RunOptions};
use swqos_shm::sessions::{Take, TlsWriteRef};
use swqos_shm::ControlSegment;
use swqos_wire::checksum;
use swqos_wire::ipv4::protocol;
use swqos_wire::relay::{Endpoint, Provider, RequestTemplate};
use swqos_wire::tcp::flags;

const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x01];
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x02];
const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 2);
const LOCAL_PORT: u16 = 40_001;
const RELAY_PORT: u16 = 443;
const ISN: u32 = 0x1000_0000;
const PEER_ISN: u32 = 0x1234_5678;
const KERNEL_TS: (u32, u32) = (101, 5000);
const SUITE: u16 = 0x1302; // TLS_AES_256_GCM_SHA384
const KEY: [u8; 32] = [0x11; 32];
const IV: [u8; 12] = [7; 12];
/// Ethernet + IPv4 + TCP with the timestamp option: the relay's pure ACKs.
const ACK_LEN: usize = 14 + 20 + 32;

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS: a number"))
        .unwrap_or(3.0);
    let pid = std::process::id();
    let text = format!(
        r#"
[eal]
lcores = "0-1"
hugepages = "auto"
memory_mb = 128
file_prefix = "swqos-fastbench-{pid}"
log_level = "err"
[shm]
path = "/dev/shm/swqos-fastbench-{pid}/segment"
rings = 1
[[mempool]]
name = "default"
mbufs = 4095
cache_size = 256
data_room = 2176
[[port]]
name = "p0"
device = "net_null0"
rx_queues = 0
tx_queues = 2
[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "p0", queue = 0 }}]
[[lane]]
name = "a"
kind = "udp"
port = "p0"
src_ip = "198.18.0.1"
src_port = 9001
dst_ip = "198.18.0.2"
dst_port = 8001
dst_mac = "02:00:00:00:00:02"
"#
    );
    let config = dpdk_config::Config::parse(&text, Path::new("fast_send.toml")).unwrap();
    let mut dp = Dataplane::setup(&config, &RunOptions::default()).expect("data plane setup");
    let queue = dp.take_tx_queue(0, 1).expect("TX queue 1 of net_null0");
    let seg = dp.control_segment().clone();
    let pool = Mempool::create("fast-bench", 4095, 256, Mempool::DEFAULT_DATA_ROOM, -1).unwrap();
    let txs = sample_transactions();
    println!(
        "fast_send: delegated Jito requests on one synthetic armed connection, net_null0, \
         {} sample transactions (avg {:.1} B), {secs:.1} s per mode",
        txs.len(),
        txs.iter().map(Vec::len).sum::<usize>() as f64 / txs.len() as f64
    );
    let mut bench = Bench::new(seg, pool, queue);
    for tls in [false, true] {
        bench.run(&txs, tls, Duration::from_secs_f64(secs));
    }
    drop(bench);
    drop(dp);
}

/// The fast path on one connection, and what a round needs.
struct Bench {
    fast: FastPath,
    seg: std::sync::Arc<ControlSegment>,
    pool: Mempool,
    queue: TxQueue,
    out: TxBurst<u64, 64>,
    wire: TxBurst<u64, 64>,
    ack: [u8; ACK_LEN],
    peer_tsval: u32,
    tls_seq: u64,
}

impl Bench {
    /// A fast path that saw the kernel's handshake with the relay; session entry 0 registered.
    fn new(seg: std::sync::Arc<ControlSegment>, pool: Mempool, queue: TxQueue) -> Bench {
        let template = RequestTemplate::new(
            Provider::Jito,
            Endpoint {
                host: "mainnet.block-engine.jito.wtf",
                path: None,
                token: Some("fast-send-bench-token"),
            },
        )
        .unwrap();
        let mut fast = FastPath::new(
            seg.clone(),
            vec![(RELAY, RELAY_PORT)],
            vec![Some(template)],
            dpdk::tsc_hz(),
            1514,
        );
        let syn = tcp_frame(
            true,
            ISN,
            0,
            flags::SYN,
            64240,
            &syn_options(1460, 100, 0, 7),
        );
        fast.on_kernel(&syn, drop);
        let syn_ack = tcp_frame(
            false,
            PEER_ISN,
            ISN.wrapping_add(1),
            flags::SYN | flags::ACK,
            65160,
            &syn_options(1460, 5000, 100, 7),
        );
        let mut m = pool.alloc().unwrap();
        m.append(syn_ack.len() as u16)
            .unwrap()
            .copy_from_slice(&syn_ack);
        assert!(fast.on_peer(m, dpdk::tsc()).is_some(), "SYN-ACK passes");
        let ts = ts_options(KERNEL_TS.0, KERNEL_TS.1);
        let ack = tcp_frame(true, ISN + 1, PEER_ISN + 1, flags::ACK, 502, &ts);
        fast.on_kernel(&ack, drop);
        seg.session(0).open(
            0,
            SocketAddrV4::new(LOCAL, LOCAL_PORT),
            SocketAddrV4::new(RELAY, RELAY_PORT),
        );
        let ts = ts_options(5000, KERNEL_TS.0);
        let ack = tcp_frame(false, PEER_ISN + 1, 0, flags::ACK, 502, &ts);
        Bench {
            fast,
            seg,
            pool,
            queue,
            out: TxBurst::new(),
            wire: TxBurst::new(),
            ack: ack.try_into().unwrap(),
            peer_tsval: 5000,
            tls_seq: 1,
        }
    }

    /// Arms entry 0 (plain or with the TLS write key at the current record number).
    fn arm(&mut self, tls: bool) {
        let keys = TlsWriteRef {
            suite: SUITE,
            key: &KEY,
            iv: &IV,
            seq: self.tls_seq,
        };
        assert!(self.seg.session(0).arm(tls.then_some(keys)), "armed");
    }

    /// Rounds for `window`; prints the rates.
    fn run(&mut self, txs: &[Vec<u8>], tls: bool, window: Duration) {
        let e = self.seg.session(0);
        if e.armed().is_some() {
            // Armed by the previous mode: take it back to arm it with the other keys.
            assert_eq!(e.take(), Take::Taken);
        }
        self.arm(tls);
        let (mut rounds, mut segments, mut bytes, mut send_ticks) = (0u64, 0u64, 0u64, 0u64);
        let cpu0 = thread_oncpu_ns();
        let start = Instant::now();
        while start.elapsed() < window {
            for _ in 0..64 {
                let (segs, len, ticks) = self.round(&txs[rounds as usize % txs.len()], tls);
                rounds += 1;
                segments += segs;
                bytes += len;
                send_ticks += ticks;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = (thread_oncpu_ns() - cpu0) as f64 / 1e9;
        let ns = |t: u64| t as f64 * 1e9 / dpdk::tsc_hz() as f64;
        println!(
            "fast_send {}: {rounds} requests in {wall:.3} s ({cpu:.3} s on cpu): {:.0} req/s, \
             {:.0} req per on-cpu second ({:.0} ns per request; try_send {:.0} ns), \
             {:.2} segments and {:.0} B on the wire per request",
            if tls { "tls" } else { "plain" },
            rounds as f64 / wall,
            rounds as f64 / cpu,
            cpu * 1e9 / rounds as f64,
            ns(send_ticks) / rounds as f64,
            segments as f64 / rounds as f64,
            bytes as f64 / rounds as f64,
        );
    }

    /// One delegated request and what lets the connection send again; returns (segments,
    /// bytes on the wire, ticks of `try_send`).
    fn round(&mut self, tx: &[u8], tls: bool) -> (u64, u64, u64) {
        let t0 = dpdk::tsc();
        let Ok(d) = self.fast.try_send(0, tx, t0, &self.pool, &mut self.out) else {
            panic!("try_send did not take the armed connection");
        };
        let ticks = dpdk::tsc() - t0;
        let segs = self.out.len() as u64;
        let Bench {
            fast, out, wire, ..
        } = self;
        out.drain(|m, tag| {
            fast.on_kernel(m.data(), drop);
            if wire.push(m, tag).is_err() {
                panic!("more than 64 segments");
            }
        });
        // The relay's ACK of all of it.
        let mut m = self.pool.alloc().expect("an mbuf for the relay's ACK");
        let f = m.append(ACK_LEN as u16).expect("room for an ACK");
        f.copy_from_slice(&self.ack);
        self.peer_tsval = self.peer_tsval.wrapping_add(1);
        f[42..46].copy_from_slice(&d.tcp_seq.wrapping_add(d.wire_len).to_be_bytes());
        f[58..62].copy_from_slice(&self.peer_tsval.to_be_bytes());
        fill_checksums(f);
        let m = self.fast.on_peer(m, dpdk::tsc()).expect("the ACK passes");
        if self.wire.push(m, 0).is_err() {
            panic!("no room for the ACK");
        }
        while !self.wire.is_empty() {
            self.queue.tx_burst(&mut self.wire, |_| {});
        }
        let e = self.seg.session(0);
        assert!(e.finish_claim(), "claimed by try_send");
        self.tls_seq += if tls { segs } else { 0 };
        self.arm(tls);
        (segs, u64::from(d.wire_len), ticks)
    }
}

/// Nanoseconds this thread has spent on a CPU (its schedstat).
fn thread_oncpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The valid sample transactions of `wire/tests/data/solana-txs.jsonl`.
fn sample_transactions() -> Vec<Vec<u8>> {
    use base64::Engine;
    include_str!("../../wire/tests/data/solana-txs.jsonl")
        .lines()
        .filter(|l| !l.contains("\"invalid\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(v["base64"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

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

/// An Ethernet/IPv4/TCP frame without payload, from the kernel (`from_kernel`) or the relay,
/// with `opts` (a multiple of 4 bytes); checksums filled in.
fn tcp_frame(from_kernel: bool, seq: u32, ack: u32, fl: u8, window: u16, opts: &[u8]) -> Vec<u8> {
    let (src_mac, dst_mac, src, dst, sport, dport) = if from_kernel {
        (LOCAL_MAC, GATEWAY_MAC, LOCAL, RELAY, LOCAL_PORT, RELAY_PORT)
    } else {
        (GATEWAY_MAC, LOCAL_MAC, RELAY, LOCAL, RELAY_PORT, LOCAL_PORT)
    };
    let tcp_len = 20 + opts.len();
    let mut f = vec![0u8; 34 + tcp_len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
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
