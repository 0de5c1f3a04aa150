//! Delegated sends: the TX lcore that bridges the kernel's exception path watches the control
//! plane's relay connections go by, and when one is armed and idle it writes a request as TCP
//! segments of that connection itself, at the kernel's `snd_nxt`, then hands the submission to
//! the control plane, which writes the identical bytes to the socket (the relay keeps the first
//! copy). See docs/relay-lanes.md; the per-connection rules are `swqos_wire::delegate`.
//!
//! Everything here runs on one lcore: the flow table has one owner. Flows are kept in a table
//! allocated at start (no allocation per packet).

use std::net::Ipv4Addr;
use std::sync::Arc;

use arrayvec::ArrayVec;
use dpdk::{Mbuf, Mempool, TxBurst};
use swqos_shm::layout::MAX_SESSIONS;
use swqos_shm::sessions::{state, Armed, DelegatedSend, TlsWrite};
use swqos_shm::stats::Stage;
use swqos_shm::ControlSegment;
use swqos_tls::{content_type, RecordSealer, Suite, TrafficKeys};
use swqos_wire::delegate::{
    Connection, FastSend, Verdict, FAST_HEADERS_LEN, FAST_TCP_LEN, L2L3_LEN,
};
use swqos_wire::ethernet::{ethertype, EthernetFrame};
use swqos_wire::ipv4::{protocol, Ipv4Packet};
use swqos_wire::relay::{request_digest, RequestTemplate};
use swqos_wire::tcp::{flags, TcpPacket};
use zeroize::Zeroize;

use crate::budget::Laps;
use crate::tx::FastTag;

/// Flows tracked at once (one per control-plane relay connection, plus closed ones until reused).
const MAX_FLOWS: usize = MAX_SESSIONS;
/// Relay segments held per flow while the kernel's copy has not gone out.
const MAX_HELD: usize = 8;
/// Segments of one fast send (a 1232-byte transaction in the largest body is under 3 KiB).
const MAX_SEGMENTS: usize = 8;
/// TCP header with the timestamp option (NOP, NOP, TS).
const TCP_TS_LEN: usize = FAST_TCP_LEN;
/// Header bytes of a fast segment.
const HEADERS: usize = FAST_HEADERS_LEN;

/// The sealer of one TLS session entry, kept while its keys stay the same (the control plane
/// publishes the keys with every arming; they change on a new connection or a KeyUpdate).
struct CachedSealer {
    suite: u32,
    key: [u8; 32],
    iv: [u8; 12],
    sealer: RecordSealer,
}

impl Drop for CachedSealer {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// A 4-tuple seen from the host: (local ip, local port, remote ip, remote port).
type FlowKey = (u32, u16, u32, u16);

struct Flow {
    key: FlowKey,
    conn: Connection,
    /// Ethernet and IPv4 headers of the kernel's latest segment on this flow.
    l2l3: [u8; L2L3_LEN],
    held: ArrayVec<(Mbuf, u32), MAX_HELD>,
    held_since: u64,
}

/// The fast path of one TX lcore.
pub struct FastPath {
    seg: Arc<ControlSegment>,
    flows: Vec<Flow>,
    /// Relay addresses (ip, port) whose flows are tracked.
    relays: Vec<(u32, u16)>,
    /// Request template per config lane id (relay lanes only).
    templates: Vec<Option<RequestTemplate>>,
    /// Per session entry: the TLS sealer of its connection, if it has one.
    sealers: Vec<Option<CachedSealer>>,
    ip_ident: u16,
    /// Largest frame the NIC port sends (MTU + Ethernet header).
    max_frame: usize,
    hold_ticks: u64,
    /// When the sealer cache was last swept.
    last_sweep: u64,
    /// The stages of the latest successful [`FastPath::try_send`] (the latency budget).
    pub laps: Laps,
}

/// Parses Ethernet/IPv4/TCP; returns (key as the sender sees it: src ip, src port, dst ip,
/// dst port) and the TCP segment.
fn parse(frame: &[u8]) -> Option<(FlowKey, TcpPacket<&[u8]>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    // Only plain 20-byte headers: fast segments copy the kernel's as they are.
    if ip.protocol() != protocol::TCP
        || ip.more_frags()
        || ip.frag_offset() != 0
        || ip.header_len() != 20
    {
        return None;
    }
    let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let end = (14 + ip.total_len() as usize).min(frame.len());
    let tcp = TcpPacket::new_checked(frame.get(L2L3_LEN..end)?).ok()?;
    Some(((src, tcp.src_port(), dst, tcp.dst_port()), tcp))
}

impl FastPath {
    /// A fast path for the relay lanes `templates` (indexed by lane id) at `relays`, sending
    /// frames of at most `max_frame` bytes (the NIC port's MTU plus the Ethernet header).
    pub fn new(
        seg: Arc<ControlSegment>,
        relays: Vec<(Ipv4Addr, u16)>,
        templates: Vec<Option<RequestTemplate>>,
        tsc_hz: u64,
        max_frame: usize,
    ) -> FastPath {
        FastPath {
            max_frame,
            seg,
            flows: Vec::with_capacity(MAX_FLOWS),
            relays: relays
                .into_iter()
                .map(|(ip, p)| (u32::from(ip), p))
                .collect(),
            templates,
            sealers: (0..MAX_SESSIONS).map(|_| None).collect(),
            ip_ident: 0,
            hold_ticks: tsc_hz / 20, // 50 ms
            last_sweep: 0,
            laps: Laps::new(),
        }
    }

    fn flow(&mut self, key: FlowKey) -> Option<&mut Flow> {
        self.flows.iter_mut().find(|f| f.key == key)
    }

    /// Learns from a frame the kernel sends; releases held relay segments the kernel has now
    /// caught up with into `release` (towards the kernel).
    pub fn on_kernel(&mut self, frame: &[u8], mut release: impl FnMut(Mbuf)) {
        let Some((key, tcp)) = parse(frame) else {
            return;
        };
        if !self.relays.contains(&(key.2, key.3)) {
            return;
        }
        if tcp.flags() & (flags::SYN | flags::ACK) == flags::SYN {
            // A new connection (maybe reusing a closed flow's slot).
            let Some(conn) = Connection::from_kernel_syn(&tcp) else {
                return;
            };
            let mut l2l3 = [0u8; L2L3_LEN];
            l2l3.copy_from_slice(&frame[..L2L3_LEN]);
            let flow = Flow {
                key,
                conn,
                l2l3,
                held: ArrayVec::new(),
                held_since: 0,
            };
            if let Some(old) = self
                .flows
                .iter_mut()
                .find(|f| f.key == key || f.conn.phase() == swqos_wire::delegate::Phase::Closed)
            {
                for (m, _) in old.held.drain(..) {
                    release(m);
                }
                *old = flow;
            } else if self.flows.len() < MAX_FLOWS {
                self.flows.push(flow); // within the capacity reserved at start
            }
            return;
        }
        let Some(flow) = self.flow(key) else {
            return;
        };
        flow.conn.on_kernel(&tcp);
        flow.l2l3.copy_from_slice(&frame[..L2L3_LEN]);
        while let Some(&(_, ack)) = flow.held.first() {
            if !flow.conn.releasable(ack) {
                break;
            }
            let (m, _) = flow.held.remove(0);
            if let Some((_, t)) = parse(m.data()) {
                flow.conn.on_peer(&t);
            }
            release(m);
        }
    }

    /// Learns from a relay's frame; returns it unless it must wait for the kernel's copy.
    pub fn on_peer(&mut self, m: Mbuf, now: u64) -> Option<Mbuf> {
        let Some((key, tcp)) = parse(m.data()) else {
            return Some(m);
        };
        let local = (key.2, key.3, key.0, key.1);
        let ack = tcp.ack();
        let Some(flow) = self.flow(local) else {
            return Some(m);
        };
        if flow.conn.on_peer(&tcp) == Verdict::Forward || flow.held.is_full() {
            return Some(m);
        }
        if flow.held.is_empty() {
            flow.held_since = now;
        }
        flow.held.push((m, ack));
        None
    }

    /// Releases segments held longer than 50 ms (the kernel will sort them out), and every
    /// 100 ms forgets (zeroizes) the sealers of connections that have ended or changed keys.
    pub fn expire(&mut self, now: u64, mut release: impl FnMut(Mbuf)) {
        for f in &mut self.flows {
            if !f.held.is_empty() && now.wrapping_sub(f.held_since) > self.hold_ticks {
                for (m, _) in f.held.drain(..) {
                    release(m);
                }
            }
        }
        if now.wrapping_sub(self.last_sweep) > 2 * self.hold_ticks {
            self.last_sweep = now;
            for (i, cached) in self.sealers.iter_mut().enumerate() {
                let Some(c) = cached else {
                    continue;
                };
                let e = self.seg.session(i);
                // The control plane clears the entry's keys when the connection ends.
                if e.state() == state::FREE || e.tls_suite() != c.suite {
                    *cached = None; // `CachedSealer`'s drop zeroizes the keys
                }
            }
        }
    }

    /// Sends `tx` for relay lane `lane` on an armed connection of that lane, as TCP segments
    /// built in mbufs from `pool` and queued on `out`. Returns what was sent, for the hand-off
    /// record, or why nothing was.
    ///
    /// Everything that can fail happens before the claim: the segments are allocated, written,
    /// digested and (on TLS) sealed with the keys and sequence number read from the armed entry;
    /// only then is the entry claimed, by a compare-and-swap that fails if the control plane
    /// touched it since it was read (`swqos_shm::sessions`). After the claim nothing fails: the
    /// headers are written and the segments queued. So a claimed connection always has a send
    /// on the wire, and a send never leaves without a claim.
    pub fn try_send(
        &mut self,
        lane: u8,
        tx: &[u8],
        submit_tsc: u64,
        pool: &Mempool,
        out: &mut TxBurst<u64, 64>,
    ) -> Result<DelegatedSend, Miss> {
        self.laps.start();
        let Some(Some(template)) = self.templates.get(lane as usize) else {
            return Err(Miss::NoConnection);
        };
        let len = template.len(tx.len());
        let mut refused = false;
        for i in 0..MAX_SESSIONS {
            let e = self.seg.session(i);
            let Some((armed, fi)) = self.candidate(i, lane) else {
                continue;
            };
            let suite = armed.tls.as_ref().map_or(0, |t| t.suite);
            let room = out.capacity() - out.len();
            let shape = match shape_on(&mut self.flows[fi], self.max_frame, suite, len, room) {
                Ok(shape) => shape,
                Err(Pass::Refused) => {
                    refused = true;
                    continue;
                }
                Err(Pass::Busy) => continue,
            };
            let sealer = match &armed.tls {
                None => None,
                Some(t) => match sealer_for(&mut self.sealers[i], t) {
                    Some(s) => Some(s),
                    None => {
                        refused = true;
                        continue;
                    }
                },
            };
            self.laps.lap(Stage::Lookup);
            let mut mbufs: ArrayVec<Mbuf, MAX_SEGMENTS> = ArrayVec::new();
            if !pool.alloc_bulk(&mut mbufs, shape.segments) {
                return Err(Miss::NoMbuf);
            }
            let Some(digest) = write_request(&shape, template, tx, &mut mbufs) else {
                refused = true; // the mbufs go back to the pool
                continue;
            };
            self.laps.lap(Stage::Build);
            let tls_seq = armed.tls.as_ref().map(|t| t.seq);
            if let (Some(sealer), Some(seq)) = (sealer, tls_seq) {
                if seal(&shape, len, &mut mbufs, sealer, seq).is_none() {
                    refused = true;
                    continue;
                }
                self.laps.lap(Stage::Seal);
            }
            if !e.claim(&armed) {
                continue; // the control plane took it back, or re-armed it, just now
            }
            self.laps.lap(Stage::Claim);
            let Ok(fs) = self.flows[fi].conn.begin_fast_send(shape.wire_len) else {
                // Cannot happen: `check` passed and nothing ran on this flow since.
                e.unclaim(&armed);
                continue;
            };
            let tag = FastTag::pack(submit_tsc, lane);
            self.emit(fi, &fs, mbufs, &shape, len, tag, out);
            let tls = tls_seq.zip(shape.tls.map(|t| t.plaintext));
            return Ok(DelegatedSend::new(
                i,
                armed.generation,
                fs.seq,
                shape.wire_len,
                tls,
                digest,
            ));
        }
        Err(if refused {
            Miss::Refused
        } else {
            Miss::NoConnection
        })
    }

    /// Session entry `i` if it is armed for `lane` on a flow the bridge has seen: the entry as
    /// read (trustworthy only if the claim later succeeds) and the flow's index.
    fn candidate(&self, i: usize, lane: u8) -> Option<(Armed, usize)> {
        let e = self.seg.session(i);
        if e.armed_lane() != Some(u32::from(lane)) {
            return None;
        }
        let armed = e.armed()?;
        let fi = self.flows.iter().position(|f| f.key == armed.flow)?;
        Some((armed, fi))
    }

    /// Writes the headers of a claimed send's segments (already written and sealed in
    /// `mbufs`) on flow `fi` and queues them on `out`, the last one tagged `tag` (the
    /// [`Stage::Emit`] lap). Cannot fail: every frame was sized and `out`'s room checked before
    /// the claim.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        fi: usize,
        fs: &FastSend,
        mbufs: ArrayVec<Mbuf, MAX_SEGMENTS>,
        shape: &Shape,
        len: usize,
        tag: u64,
        out: &mut TxBurst<u64, 64>,
    ) {
        let flow = &self.flows[fi];
        let ports = (flow.key.1, flow.key.3);
        let last = mbufs.len() - 1;
        for (k, mut m) in mbufs.into_iter().enumerate() {
            let (offset, _, _) = shape.segment(k, len);
            self.ip_ident = self.ip_ident.wrapping_add(1);
            let _ = fs.emit_segment(
                m.data_mut(),
                &flow.l2l3,
                ports,
                offset as u32,
                k == last,
                self.ip_ident,
            );
            let _ = out.push(m, if k == last { tag } else { 0 });
        }
        self.laps.lap(Stage::Emit);
    }
}

/// How a `len`-byte request goes out on `flow` with TLS suite `suite` (0: none), in frames of
/// at most `max_frame` bytes, with `room` places left in the burst. Marks the flow armed: the
/// session table says the control plane armed it.
fn shape_on(
    flow: &mut Flow,
    max_frame: usize,
    suite: u16,
    len: usize,
    room: usize,
) -> Result<Shape, Pass> {
    let mss = flow.conn.mss() as usize;
    // A suite this build cannot seal, or a kernel MSS that does not fit the NIC's MTU.
    let shape = Shape::of(u32::from(suite), mss, len).ok_or(Pass::Refused)?;
    if HEADERS + shape.per_segment > max_frame {
        return Err(Pass::Refused);
    }
    flow.conn.arm();
    if flow.conn.check(shape.wire_len).is_err()
        || shape.segments > MAX_SEGMENTS
        || shape.segments > room
    {
        return Err(Pass::Busy);
    }
    Ok(shape)
}

/// Why an armed connection was passed over for a send.
enum Pass {
    /// It can never take this request (suite, MTU): counted as refused if no other does.
    Refused,
    /// Not now: a send is under way on it, or the burst is full.
    Busy,
}

/// Why a relay lane's submission was not sent by the data plane (the control plane sends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No armed connection of the lane can take it now.
    NoConnection,
    /// The pool had no mbufs.
    NoMbuf,
    /// An armed connection was there, but the request could not be built or sealed for it
    /// (too large for the mbufs or the NIC's MTU, an unknown suite, a sealing error).
    Refused,
}

/// Writes the request into the payload areas of `mbufs` (each record's plaintext area, with
/// TLS) and digests the plaintext. Returns the digest, or `None` when a segment does not fit
/// its mbuf (nothing may be sent then).
fn write_request(
    shape: &Shape,
    template: &RequestTemplate,
    tx: &[u8],
    mbufs: &mut ArrayVec<Mbuf, MAX_SEGMENTS>,
) -> Option<u64> {
    let len = template.len(tx.len());
    let mut chunks: ArrayVec<&mut [u8], MAX_SEGMENTS> = ArrayVec::new();
    for (k, m) in mbufs.iter_mut().enumerate() {
        let (_, payload, plain) = shape.segment(k, len);
        let frame = m.append((HEADERS + payload) as u16)?;
        let start = HEADERS + shape.tls.map_or(0, |t| t.offset);
        chunks.push(&mut frame[start..start + plain]);
    }
    template.write(tx, &mut chunks)?;
    let plaintext: ArrayVec<&[u8], MAX_SEGMENTS> = chunks.iter().map(|c| &**c).collect();
    Some(request_digest(&plaintext))
}

/// Seals the `len`-byte request written by [`write_request`] as one TLS record per segment,
/// from sequence number `seq`. `None` when sealing fails (nothing may be sent then).
fn seal(
    shape: &Shape,
    len: usize,
    mbufs: &mut ArrayVec<Mbuf, MAX_SEGMENTS>,
    sealer: &mut RecordSealer,
    seq: u64,
) -> Option<()> {
    sealer.set_seq(seq);
    for (k, m) in mbufs.iter_mut().enumerate() {
        let (_, payload, plain) = shape.segment(k, len);
        let record = &mut m.data_mut()[HEADERS..HEADERS + payload];
        sealer
            .seal_in_place(record, plain, content_type::APPLICATION_DATA)
            .ok()?;
    }
    Some(())
}

/// How one request is cut into segments (and TLS records) on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    /// TCP payload bytes per full segment.
    per_segment: usize,
    /// TLS: record layout; one record per segment.
    tls: Option<RecordShape>,
    segments: usize,
    /// Bytes on the wire (the request, plus the records' overhead with TLS).
    wire_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordShape {
    /// Plaintext bytes per full record.
    plaintext: usize,
    /// Where the plaintext starts in a record.
    offset: usize,
    overhead: usize,
}

impl Shape {
    /// The shape of a `len`-byte request on a connection with `mss` and TLS suite `suite_id`
    /// (IANA id, 0 for none); `None` for a suite this build cannot seal.
    fn of(suite_id: u32, mss: usize, len: usize) -> Option<Shape> {
        let per_segment = mss.saturating_sub(TCP_TS_LEN - 20).max(1);
        if suite_id == 0 {
            return Some(Shape {
                per_segment,
                tls: None,
                segments: len.div_ceil(per_segment),
                wire_len: len,
            });
        }
        let suite = Suite::from_iana(u16::try_from(suite_id).ok()?)?;
        let overhead = suite.record_overhead();
        let plaintext = per_segment
            .checked_sub(overhead)?
            .clamp(1, swqos_tls::MAX_PLAINTEXT);
        let segments = len.div_ceil(plaintext);
        Some(Shape {
            per_segment,
            tls: Some(RecordShape {
                plaintext,
                offset: suite.plaintext_offset(),
                overhead,
            }),
            segments,
            wire_len: len + segments * overhead,
        })
    }

    /// Segment `k` of a `len`-byte request: (offset in the byte stream, payload bytes,
    /// plaintext bytes).
    fn segment(&self, k: usize, len: usize) -> (usize, usize, usize) {
        match self.tls {
            None => {
                let payload = self.per_segment.min(len - k * self.per_segment);
                (k * self.per_segment, payload, payload)
            }
            Some(t) => {
                let plain = t.plaintext.min(len - k * t.plaintext);
                (k * (t.plaintext + t.overhead), plain + t.overhead, plain)
            }
        }
    }
}

/// The sealer for the write state `tls` (as read from an armed entry), rebuilt when the keys
/// changed since the cached one was made.
fn sealer_for<'a>(
    cache: &'a mut Option<CachedSealer>,
    tls: &TlsWrite,
) -> Option<&'a mut RecordSealer> {
    let suite_id = u32::from(tls.suite);
    let fresh = match cache {
        Some(c) => c.suite != suite_id || c.key != tls.key || c.iv != tls.iv,
        None => true,
    };
    if fresh {
        let suite = Suite::from_iana(tls.suite)?;
        let keys = TrafficKeys::new(suite, &tls.key[..suite.aead().key_len()], &tls.iv).ok();
        *cache = keys.map(|k| CachedSealer {
            suite: suite_id,
            key: tls.key,
            iv: tls.iv,
            sealer: RecordSealer::new(k, 0),
        });
    }
    cache.as_mut().map(|c| &mut c.sealer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_requests_fill_segments_up_to_the_mss() {
        // MSS 1460 with the 12-byte timestamp option: 1448 payload bytes per segment.
        let s = Shape::of(0, 1460, 3000).unwrap();
        assert_eq!((s.segments, s.wire_len), (3, 3000));
        assert_eq!(s.segment(0, 3000), (0, 1448, 1448));
        assert_eq!(s.segment(2, 3000), (2896, 104, 104));
    }

    #[test]
    fn tls_requests_are_one_record_per_segment() {
        // TLS 1.3 AES-128-GCM: 22 bytes per record (header 5, inner type 1, tag 16).
        let s = Shape::of(0x1301, 1460, 3000).unwrap();
        let t = s.tls.unwrap();
        assert_eq!((t.plaintext, t.offset, t.overhead), (1426, 5, 22));
        assert_eq!((s.segments, s.wire_len), (3, 3000 + 3 * 22));
        assert_eq!(s.segment(0, 3000), (0, 1448, 1426));
        assert_eq!(s.segment(2, 3000), (2 * 1448, 148 + 22, 148));
        // TLS 1.2 AES-GCM adds the 8-byte explicit nonce and has no inner type.
        let s = Shape::of(0xc02c, 1460, 1000).unwrap();
        let t = s.tls.unwrap();
        assert_eq!((t.plaintext, t.offset, t.overhead), (1419, 13, 29));
        assert_eq!((s.segments, s.wire_len), (1, 1029));
        // A suite this build does not know is not claimed.
        assert_eq!(Shape::of(0x1304, 1460, 1000), None);
    }
}
