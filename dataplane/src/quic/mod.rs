//! QUIC lanes: the data plane's own connections to QUIC relays (docs/quic-lanes.md).
//!
//! Each QUIC lane is one connection, a sans-IO `quinn_proto::Connection` owned by the TX lcore
//! that bridges the lane's port: that lcore reads the port's RX queue, so the relay's datagrams
//! for the lane's local UDP port come here ([`QuicLanes::claims`]) and never reach the kernel.
//! Its datagrams are written into mbufs behind the lane's Ethernet/IPv4/UDP template and leave
//! with the bridge's NIC burst. Nothing here makes a syscall; quinn-proto allocates (a stream's
//! state, its copy of the transaction, its send queue, the acknowledged ranges: 3 allocations
//! to send a transaction, 1 to process its acknowledgement), counted and bounded by
//! `dataplane/tests/no_alloc_quic.rs`.
//!
//! Per transaction ([`QuicLanes::send`]): open a stream (uni, or bi for a provider that
//! replies), write the transaction, finish it, and write the datagrams out at once. The
//! submission is completed once per lane: `Relayed` when the relay acknowledged every byte
//! (or replied, Node1), `RelayError` when the connection failed with the stream unacknowledged
//! (maybe delivered) or no acknowledgement came within [`ACK_TIMEOUT`], and at once, not sent,
//! while the lane has no connection. A transaction is written once: QUIC retransmits lost
//! packets of a stream, never the stream again.
//!
//! Handshakes, keep-alives and reconnects run in [`QuicLanes::drive`], a bounded step per
//! lane per poll between the lcore's other work; a connection that fails is retried with
//! backoff (100 ms doubling to 5 s).

mod lane;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dpdk::{Mbuf, Mempool, TxBurst};
use quinn_proto::{DatagramEvent, Endpoint, EndpointConfig};
use swqos_shm::layout::{Status, MAX_LANES};
use swqos_wire::ethernet::{ethertype, EthernetFrame};
use swqos_wire::ipv4::{protocol, Ipv4Packet};
use swqos_wire::udp::UdpPacket;

use crate::tx::{Pending, BURST};
pub use lane::QuicLaneSetup;
use lane::{QuicLane, Transmitter};

/// How long a written transaction may wait for the relay's acknowledgement (or reply) before
/// it is completed as `TIMEOUT` (maybe delivered): a backstop past the connection's idle
/// timeout (5 s), so while the connection lives QUIC's own loss recovery decides (under 20%
/// loss on a loaded host an acknowledgement took over 2 s, the backstop's earlier value, and
/// the transaction was reported maybe delivered although it arrived).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(6);

/// Bytes of the buffer the relays' datagrams are copied into for quinn-proto (see
/// [`QuicLanes::receive`]).
const RX_BUFFER: usize = 16 * 1024;

/// The lcore's clock for quinn-proto: TSC ticks as `Instant`s, without reading the system
/// clock per poll.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_tsc: u64,
    base: Instant,
    hz: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base_tsc: dpdk::tsc(),
            base: Instant::now(),
            hz: dpdk::tsc_hz().max(1),
        }
    }

    /// The instant of TSC reading `tsc`.
    pub(crate) fn at(&self, tsc: u64) -> Instant {
        let ticks = tsc.saturating_sub(self.base_tsc) as u128;
        self.base + Duration::from_nanos((ticks * 1_000_000_000 / self.hz as u128) as u64)
    }

    /// The TSC reading at `t` (for comparing deadlines without building `Instant`s).
    pub(crate) fn tsc_of(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        self.base_tsc + (ns * self.hz as u128 / 1_000_000_000) as u64
    }

    /// `d` in TSC ticks.
    pub(crate) fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos() * self.hz as u128 / 1_000_000_000) as u64
    }
}

/// The QUIC lanes of one lcore.
pub struct QuicLanes {
    endpoint: Endpoint,
    lanes: Vec<QuicLane>,
    /// For each lane id, its index in `lanes` (`u8::MAX`: not a QUIC lane).
    index: [u8; MAX_LANES],
    mask: u64,
    clock: Clock,
    out: Transmitter,
    /// The relays' datagrams are copied here and split off for quinn-proto, which takes each as
    /// a `BytesMut` of its own: once it has dropped the earlier ones, the buffer is taken back
    /// instead of allocating one per datagram.
    rx: BytesMut,
    /// Handshake datagrams waiting for a later poll: one handshake step per poll, so several
    /// lanes connecting at once (start, a relay's restart) do not hold one poll for all of
    /// their handshakes while submissions wait (`receive`).
    deferred: VecDeque<(Claim, Mbuf)>,
    /// A handshake datagram was taken in this poll.
    handshake_stepped: bool,
    /// Handshake datagrams dropped because too many were waiting (QUIC sends them again).
    deferred_dropped: u64,
}

/// Handshake datagrams kept for later polls, at most.
const MAX_DEFERRED: usize = 64;

impl QuicLanes {
    /// The lanes of `setups`, each connecting at once.
    pub fn new(setups: Vec<QuicLaneSetup>) -> Result<QuicLanes, String> {
        let mut index = [u8::MAX; MAX_LANES];
        let mut mask = 0u64;
        let mut lanes = Vec::with_capacity(setups.len());
        for (i, s) in setups.into_iter().enumerate() {
            index[s.id as usize] = i as u8;
            mask |= 1 << s.id;
            lanes.push(QuicLane::new(s)?);
        }
        // No server config: this endpoint only connects. MTU discovery on.
        let endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None);
        Ok(QuicLanes {
            endpoint,
            lanes,
            index,
            mask,
            clock: Clock::new(),
            out: Transmitter::new(),
            rx: BytesMut::with_capacity(RX_BUFFER),
            deferred: VecDeque::with_capacity(MAX_DEFERRED),
            handshake_stepped: false,
            deferred_dropped: 0,
        })
    }

    /// The lanes this engine sends (a lane mask).
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// Sends `tx` on QUIC lane `lane`: `Ok` once its stream is written (the completion comes
    /// from [`QuicLanes::drive`]); `Err(reason)` when it cannot be sent now, the reason of a
    /// `RelayError` completion (not sent).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        lane: u8,
        tx: &[u8],
        pending: Pending,
        now_tsc: u64,
        pool: &Mempool,
        burst: &mut TxBurst<u64, BURST>,
    ) -> Result<(), u16> {
        let i = self.index[lane as usize];
        let l = self
            .lanes
            .get_mut(i as usize)
            .ok_or(swqos_shm::layout::relay_failure::NOT_SENT)?;
        let now = self.clock.at(now_tsc);
        let deadline = now_tsc + self.clock.ticks(ACK_TIMEOUT);
        l.send(tx, pending, deadline)?;
        let tag = crate::tx::FastTag::pack(pending.submit_tsc(), lane);
        self.out.flush(l, now, pool, burst, tag);
        Ok(())
    }

    /// Whether `frame` is a datagram of one of the lanes' relays to the lane's local port: the
    /// lane and where its payload is (the frame is parsed once, here).
    pub fn claims(&self, frame: &[u8]) -> Option<Claim> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != ethertype::IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.protocol() != protocol::UDP || ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        let from = SocketAddr::new(IpAddr::V4(ip.src_addr()), udp.src_port());
        let lane = self
            .lanes
            .iter()
            .position(|l| l.remote() == from && l.local_port() == udp.dst_port())?;
        // `new_checked` bounds each view by its own length field.
        let start = 14 + ip.header_len() as usize + 8;
        Some(Claim {
            lane,
            payload: start..start + udp.payload().len(),
        })
    }

    /// Takes a datagram [`QuicLanes::claims`] claimed into its lane's connection.
    pub fn receive(&mut self, c: Claim, m: Mbuf, now_tsc: u64) {
        let Some(l) = self.lanes.get(c.lane) else {
            return;
        };
        // One handshake step per poll; the rest, and whatever follows them for that lane (in
        // order), waits for the next polls.
        let behind =
            !self.deferred.is_empty() && self.deferred.iter().any(|(d, _)| d.lane == c.lane);
        let handshaking = l.is_handshaking();
        if behind || (handshaking && self.handshake_stepped) {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred.push_back((c, m));
            } else {
                self.deferred_dropped += 1; // QUIC's loss recovery sends it again
            }
            return;
        }
        self.handshake_stepped |= handshaking;
        self.take(c, m, now_tsc);
    }

    /// Gives a lane's datagram to its connection.
    fn take(&mut self, c: Claim, m: Mbuf, now_tsc: u64) {
        let start = dpdk::tsc();
        let (Some(payload), Some(l)) = (m.data().get(c.payload), self.lanes.get(c.lane)) else {
            return;
        };
        let now = self.clock.at(now_tsc);
        // No allocation unless quinn-proto still holds part of the buffer (or on the first
        // split, which makes it shared): `reserve` reclaims it when no datagram is left in it.
        self.rx.reserve(payload.len());
        self.rx.extend_from_slice(payload);
        let data = self.rx.split();
        drop(m);
        let remote = l.remote();
        match self
            .endpoint
            .handle(now, remote, None, None, data, self.out.scratch())
        {
            Some(DatagramEvent::ConnectionEvent(h, event)) => {
                if let Some(l) = self.lanes.iter_mut().find(|l| l.handle() == Some(h)) {
                    l.on_event(event);
                    l.charge_handshake(start, dpdk::tsc());
                }
            }
            // A stateless reset or version negotiation for a connection we no longer have:
            // nothing to answer as a client.
            Some(DatagramEvent::Response(_)) | Some(DatagramEvent::NewConnection(_)) | None => {}
        }
    }

    /// One step of every lane: connect when due, timers, the relay's events into completions
    /// (`complete(pending, status, reason)`), and the datagrams to send.
    pub fn drive(
        &mut self,
        now_tsc: u64,
        pool: &Mempool,
        burst: &mut TxBurst<u64, BURST>,
        mut complete: impl FnMut(Pending, Status, u16),
    ) {
        // A handshake datagram left from an earlier poll, if this poll took none.
        if !self.handshake_stepped {
            if let Some((c, m)) = self.deferred.pop_front() {
                self.take(c, m, now_tsc);
            }
        }
        self.handshake_stepped = false;
        let now = self.clock.at(now_tsc);
        for l in &mut self.lanes {
            if !l.due(now_tsc) {
                continue;
            }
            let start = dpdk::tsc();
            l.step(&mut self.endpoint, now, now_tsc, &self.clock, &mut complete);
            self.out.flush(l, now, pool, burst, 0);
            l.arm_timer(&self.clock);
            l.charge_handshake(start, dpdk::tsc());
        }
    }

    /// Closes every connection (shutdown): what is still unacknowledged is completed as maybe
    /// delivered, and each relay is told with a CONNECTION_CLOSE.
    pub fn close_all(
        &mut self,
        now_tsc: u64,
        pool: &Mempool,
        burst: &mut TxBurst<u64, BURST>,
        mut complete: impl FnMut(Pending, Status, u16),
    ) {
        let now = self.clock.at(now_tsc);
        for l in &mut self.lanes {
            l.close(now, &mut complete);
            self.out.flush(l, now, pool, burst, 0);
        }
    }

    /// Transactions written on any lane and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.lanes.iter().map(|l| l.in_flight()).sum()
    }

    /// Whether any lane has a connection up (for logs and tests).
    pub fn connected(&self) -> usize {
        self.lanes.iter().filter(|l| l.is_connected()).count()
    }

    /// Datagrams dropped: lanes' that found the burst full, and relays' handshake datagrams that
    /// found too many waiting (QUIC sends both again).
    pub fn dropped(&self) -> u64 {
        self.out.dropped() + self.deferred_dropped
    }
}

/// A datagram [`QuicLanes::claims`] found to be a lane's: which lane, and its UDP payload's
/// bytes in the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    lane: usize,
    payload: std::ops::Range<usize>,
}

impl Claim {
    /// The lane's index among the QUIC lanes.
    pub fn lane(&self) -> usize {
        self.lane
    }
}
