//! The submit/TX lcore: pop submissions from the shared-memory rings, write one frame per lane
//! straight into an mbuf, burst, and report one completion per (submission, lane).
//!
//! Read [`TxWorker::poll`] top to bottom: it is the whole per-packet path. It allocates nothing,
//! takes no lock and makes no syscall (a test proves the first with a counting allocator).

use std::sync::Arc;

use arrayvec::ArrayVec;
use dpdk::{Mbuf, Mempool, RxBurst, RxQueue, TxBurst, TxQueue};
use swqos_shm::layout::{lanes_of, Completion, DropReason, Status, MAX_LANES, MAX_TX_SIZE};
use swqos_shm::ring::{CompletionProducer, HandoffProducer, SlotRef, SubmitConsumer};
use swqos_shm::stats::{Counter, Stage, StatsWriter};
use swqos_shm::ControlSegment;
use swqos_wire::checksum;
use swqos_wire::solana::{Transaction, TxError};

use crate::fast::{FastPath, Miss};
use crate::lanes::{LaneSend, LaneTable};
use crate::quic::QuicLanes;
use crate::tally::LaneTally;

/// A control plane whose heartbeat is older than this is considered gone (500 ms: generous, so a
/// loaded host that delays its relay thread does not turn into spurious drops).
const CONTROL_TIMEOUT_NS: u64 = 500_000_000;

/// Packets per `tx_burst` call (and the most a worker holds per queue).
pub const BURST: usize = 64;

/// Submission slots taken from one ring per poll, so one busy client cannot starve the others.
const SLOTS_PER_RING_PER_POLL: u32 = 32;

/// What a queued packet must remember to report its completion.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// Index of the ring in the worker's ring list.
    ring: u8,
    /// Lane id.
    lane: u8,
    /// The ring lease generation of the submission.
    lease_gen: u32,
    /// The submission's tag.
    tag: u64,
    /// The submission's TSC stamp.
    submit_tsc: u64,
    /// Frame length in bytes.
    len: u16,
}

impl Pending {
    /// The submission's TSC stamp.
    pub(crate) fn submit_tsc(&self) -> u64 {
        self.submit_tsc
    }

    /// A submission with `tag` for `lane`, outside any ring: for tests that drive a lane engine
    /// (`dataplane/tests/no_alloc_quic.rs`) without the shared-memory rings.
    #[doc(hidden)]
    pub fn detached(lane: u8, tag: u64, submit_tsc: u64) -> Pending {
        Pending {
            ring: 0,
            lane,
            lease_gen: 0,
            tag,
            submit_tsc,
            len: 0,
        }
    }

    /// The submission's tag (for tests that match completions to submissions).
    #[doc(hidden)]
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// What a frame (or answer) for `lane` of a slot of ring `r` must remember.
    fn of(r: usize, slot: &SlotRef<'_>, lane: u8) -> Pending {
        Pending {
            ring: r as u8,
            lane,
            lease_gen: slot.lease_gen,
            tag: slot.tag,
            submit_tsc: slot.submit_tsc,
            len: 0,
        }
    }
}

/// One TX queue this worker owns, with its pending burst.
pub struct TxPath {
    queue: TxQueue,
    burst: TxBurst<Pending, BURST>,
    /// Frames the exception-path bridge forwards out of this queue (no completions), and
    /// delegated sends' segments; the tag is a [`FastTag`] on a delegated send's last segment
    /// (for its latency), otherwise 0.
    forward: TxBurst<u64, BURST>,
    /// TSC when the queue first refused packets in the current stall, 0 when not stalled.
    stalled_since: u64,
}

impl TxPath {
    /// A path over an owned queue.
    pub fn new(queue: TxQueue) -> TxPath {
        TxPath {
            queue,
            burst: TxBurst::new(),
            forward: TxBurst::new(),
            stalled_since: 0,
        }
    }
}

/// How often an idle kernel interface is read (while frames come, every poll). Reading a TAP
/// is a syscall, about a microsecond, in the loop that also reads the submit rings: reading it
/// every poll made every submission wait for it. The kernel's frames wait at most this long.
const KERNEL_POLL_INTERVAL_NS: u64 = 5_000;

/// The kernel exception path a TX lcore bridges: every frame from the NIC goes to the kernel
/// interface and back, so ARP, ICMP and the kernel's TCP connections use the DPDK-owned NIC.
pub struct Bridge {
    nic_rx: RxQueue,
    kernel_rx: RxQueue,
    /// [`KERNEL_POLL_INTERVAL_NS`] in TSC ticks, and when the kernel side is read next.
    kernel_poll_ticks: u64,
    next_kernel_poll: u64,
    /// Index in the worker's paths of its TX queue on the NIC / on the kernel interface.
    nic_path: usize,
    kernel_path: usize,
    rx: RxBurst<BURST>,
}

impl Bridge {
    /// A bridge over the two RX queues, sending through the worker's paths on the ports
    /// `nic_port` and `kernel_port` (config indices, looked up in `path_ports`).
    pub fn new(
        nic_rx: RxQueue,
        kernel_rx: RxQueue,
        nic_port: usize,
        kernel_port: usize,
        path_ports: &[usize],
    ) -> Result<Bridge, String> {
        let find = |port: usize| {
            path_ports
                .iter()
                .position(|&p| p == port)
                .ok_or_else(|| format!("the bridge has no TX queue on port index {port}"))
        };
        Ok(Bridge {
            nic_rx,
            kernel_rx,
            nic_path: find(nic_port)?,
            kernel_path: find(kernel_port)?,
            rx: RxBurst::new(),
            kernel_poll_ticks: dpdk::tsc_hz() / (1_000_000_000 / KERNEL_POLL_INTERVAL_NS),
            next_kernel_poll: 0,
        })
    }

    /// Moves what arrived on each side to the other; returns the frames moved. With a fast
    /// path, every frame teaches it about the relay connections, and relay segments that
    /// acknowledge bytes only the data plane has sent wait until the kernel's copy is out.
    fn poll(
        &mut self,
        paths: &mut [TxPath],
        stats: &mut StatsWriter,
        mut fast: Option<&mut FastPath>,
        mut quic: Option<&mut QuicLanes>,
    ) -> usize {
        let now = dpdk::tsc();
        let (nic, kernel) = two_mut(paths, self.nic_path, self.kernel_path);
        if self.nic_rx.rx_burst(&mut self.rx) > 0 {
            for m in self.rx.drain() {
                // A QUIC lane's relay datagrams are its connection's, never the kernel's.
                if let Some(q) = quic.as_deref_mut() {
                    if let Some(claim) = q.claims(m.data()) {
                        q.receive(claim, m, now);
                        continue;
                    }
                }
                let m = match fast.as_deref_mut() {
                    Some(f) => match f.on_peer(m, now) {
                        Some(m) => m,
                        None => continue, // held
                    },
                    None => m,
                };
                queue(&mut kernel.forward, m, stats);
            }
        }
        if now >= self.next_kernel_poll {
            self.next_kernel_poll = now + self.kernel_poll_ticks;
            if self.kernel_rx.rx_burst(&mut self.rx) > 0 {
                // Frames are coming: read again at the next poll.
                self.next_kernel_poll = now;
                for m in self.rx.drain() {
                    if let Some(f) = fast.as_deref_mut() {
                        f.on_kernel(m.data(), |held| queue(&mut kernel.forward, held, stats));
                    }
                    queue(&mut nic.forward, m, stats);
                }
            }
        }
        if let Some(f) = fast {
            f.expire(now, |held| queue(&mut kernel.forward, held, stats));
        }
        let to_kernel = flush_forward(kernel, stats);
        stats.add(Counter::ToKernel, to_kernel as u64);
        let from_kernel = flush_forward(nic, stats);
        stats.add(Counter::FromKernel, from_kernel as u64);
        to_kernel + from_kernel
    }
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(s: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = s.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = s.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// Queues a bridged frame; one that finds the outgoing burst still full is dropped and
/// counted: the kernel's TCP retransmits, and holding it would stall this lcore's lanes.
fn queue(to: &mut TxBurst<u64, BURST>, m: Mbuf, stats: &mut StatsWriter) {
    if let Err((m, _)) = to.push(m, 0) {
        drop(m);
        stats.add(Counter::BridgeDropped, 1);
    }
}

/// Offers a path's forwarded frames to its queue (what it refuses stays for the next poll).
fn flush_forward(to: &mut TxPath, stats: &mut StatsWriter) -> usize {
    if to.forward.is_empty() {
        return 0;
    }
    let done = dpdk::tsc();
    to.queue.tx_burst(&mut to.forward, |tag| {
        if let Some((submit_tsc, lane)) = FastTag::unpack(tag) {
            stats.fast_latency_since(submit_tsc, done, lane);
        }
    })
}

/// The tag of a delegated send's last segment in a forward burst: the submission's TSC stamp
/// (56 bits: centuries of ticks) and its lane, so the send's latency is recorded per lane when
/// `tx_burst` takes it. 0 on every other frame.
pub struct FastTag;

impl FastTag {
    const TSC_BITS: u32 = 56;

    /// The tag for a send of `lane` submitted at `submit_tsc`.
    pub fn pack(submit_tsc: u64, lane: u8) -> u64 {
        (u64::from(lane) + 1) << Self::TSC_BITS | (submit_tsc & ((1 << Self::TSC_BITS) - 1))
    }

    /// (submit TSC, lane) of a tag, `None` for 0.
    fn unpack(tag: u64) -> Option<(u64, usize)> {
        let lane = (tag >> Self::TSC_BITS) as usize;
        (lane != 0).then(|| (tag & ((1 << Self::TSC_BITS) - 1), lane - 1))
    }
}

/// [`flush_forward`] of the delegated sends queued in this poll since `queued` (TSC, 0: none),
/// timing the wait for the burst and the `tx_burst` call for the latency budget.
fn flush_fast(to: &mut TxPath, stats: &mut StatsWriter, queued: u64) -> usize {
    if queued == 0 {
        return flush_forward(to, stats);
    }
    let start = dpdk::tsc();
    let sent = flush_forward(to, stats);
    stats.stage(Stage::Queue, start.wrapping_sub(queued));
    stats.stage(Stage::TxBurst, dpdk::tsc().wrapping_sub(start));
    sent
}

/// A client's ring pair as the dataplane holds it.
pub struct RingPair {
    /// Submissions from the client.
    pub submit: SubmitConsumer,
    /// Completions to the client.
    pub complete: CompletionProducer,
}

/// The state of one submit/TX lcore.
pub struct TxWorker {
    /// Submit rings, apart from the rest so a slot can be read while everything else changes.
    submits: Vec<SubmitConsumer>,
    out: Output,
    bridge: Option<Bridge>,
    next_ring: usize,
}

/// Everything a slot turns into: frames on queues, completions, counters.
struct Output {
    completes: Vec<CompletionProducer>,
    /// Submissions for relay lanes, to the control plane.
    handoff: Option<HandoffProducer>,
    /// Lanes whose submissions are handed off.
    relay_mask: u64,
    /// Delegated sends (with the index in `paths` of the NIC queue they go out on), when this
    /// lcore bridges the exception path.
    fast: Option<FastPath>,
    /// The QUIC lanes' connections (their datagrams go out on the same queue), when this lcore
    /// bridges their port.
    quic: Option<QuicLanes>,
    /// Lanes sent over `quic`.
    quic_mask: u64,
    /// For each QUIC lane, the http lane it falls back to (`u8::MAX`: none).
    quic_fallback: [u8; MAX_LANES],
    fast_out: usize,
    /// TSC when this poll's first delegated send was queued (0: none yet).
    fast_queued: u64,
    ctl: Arc<ControlSegment>,
    paths: Vec<TxPath>,
    lanes: Arc<LaneTable>,
    /// For each lane id, the index in `paths` of the queue on the lane's port.
    lane_path: [u8; MAX_LANES],
    pool: Arc<Mempool>,
    stats: StatsWriter,
    /// Per-lane counts of the burst being flushed (one stats update per lane per burst).
    tally: LaneTally,
    ip_ident: u16,
    tx_timeout_ticks: u64,
}

/// Everything a worker is built from.
pub struct TxWorkerParts {
    /// The rings this lcore serves.
    pub rings: Vec<RingPair>,
    /// One path per port that a lane uses, each with this lcore's queue on it.
    pub paths: Vec<TxPath>,
    /// For each path, the config index of its port.
    pub path_ports: Vec<usize>,
    /// The lanes.
    pub lanes: Arc<LaneTable>,
    /// The pool mbufs come from.
    pub pool: Arc<Mempool>,
    /// This lcore's stats block.
    pub stats: StatsWriter,
    /// How long a full NIC queue may hold packets before they are dropped, in TSC ticks.
    pub tx_timeout_ticks: u64,
    /// The exception path this lcore bridges, if any.
    pub bridge: Option<Bridge>,
    /// This lcore's hand-off ring to the control plane (needed when any lane is a relay).
    pub handoff: Option<HandoffProducer>,
    /// Delegated sends on the bridged relay connections (needs `bridge`).
    pub fast: Option<FastPath>,
    /// The QUIC lanes (needs `bridge`).
    pub quic: Option<QuicLanes>,
    /// The control file (for the control plane's heartbeat).
    pub ctl: Arc<ControlSegment>,
}

impl TxWorker {
    /// Builds a worker; fails if a lane's port has no path.
    pub fn new(parts: TxWorkerParts) -> Result<TxWorker, String> {
        let mut lane_path = [u8::MAX; MAX_LANES];
        for (id, lane) in parts.lanes.iter().enumerate() {
            let p = parts
                .path_ports
                .iter()
                .position(|&port| port == lane.port)
                .ok_or_else(|| format!("lane {} has no TX queue on this lcore", lane.name))?;
            lane_path[id] = p as u8;
        }
        let (submits, completes) = parts
            .rings
            .into_iter()
            .map(|r| (r.submit, r.complete))
            .unzip();
        Ok(TxWorker {
            submits,
            out: Output {
                completes,
                handoff: parts.handoff,
                relay_mask: parts.lanes.relay_mask(),
                fast_out: parts.bridge.as_ref().map_or(0, |b| b.nic_path),
                fast_queued: 0,
                fast: parts.fast,
                quic_mask: parts.quic.as_ref().map_or(0, |q| q.mask()),
                quic_fallback: parts.lanes.quic_fallbacks(),
                quic: parts.quic,
                ctl: parts.ctl,
                paths: parts.paths,
                lanes: parts.lanes,
                lane_path,
                pool: parts.pool,
                stats: parts.stats,
                tally: LaneTally::new(),
                ip_ident: 0,
                tx_timeout_ticks: parts.tx_timeout_ticks,
            },
            bridge: parts.bridge,
            next_ring: 0,
        })
    }

    /// One busy-poll iteration: flush what the NIC refused last time, then take new
    /// submissions while every queue has room for them. Returns the work done (slots + packets).
    pub fn poll(&mut self) -> usize {
        let out = &mut self.out;
        out.stats.begin();
        out.stats.add(Counter::Polls, 1);
        let mut work = match &mut self.bridge {
            Some(b) => b.poll(
                &mut out.paths,
                &mut out.stats,
                out.fast.as_mut(),
                out.quic.as_mut(),
            ),
            None => 0,
        };
        work += out.flush(false);
        let n_rings = self.submits.len();
        for k in 0..n_rings {
            // Rotate the starting ring so every client gets first turn in time.
            let r = (self.next_ring + k) % n_rings;
            work += take_submissions(&mut self.submits[r], r, out);
        }
        self.next_ring = self.next_ring.wrapping_add(1);
        work += out.flush(false);
        out.step_quic(false);
        if out.fast.is_some() || out.quic.is_some() {
            // Delegated sends (and QUIC datagrams) queued just now leave in this poll.
            let queued = std::mem::take(&mut out.fast_queued);
            work += flush_fast(&mut out.paths[out.fast_out], &mut out.stats, queued);
        }
        out.publish_completions();
        out.stats.end();
        work
    }

    /// This lcore's stats block (for its loop's own counters).
    pub fn stats(&mut self) -> &mut StatsWriter {
        &mut self.out.stats
    }

    /// Whether any packet is still waiting for the NIC, or a QUIC lane's transaction for the
    /// relay's acknowledgement.
    pub fn has_pending(&self) -> bool {
        self.out.paths.iter().any(|p| !p.burst.is_empty())
            || self.out.quic.as_ref().is_some_and(|q| q.in_flight() > 0)
    }

    /// Whether any ring has published slots not yet taken.
    pub fn has_ready(&mut self) -> bool {
        self.submits
            .iter_mut()
            .any(|s| s.ready().map(|n| n > 0).unwrap_or(false))
    }

    /// Drops every packet still waiting for the NIC with `DropReason::Shutdown` completions,
    /// and closes the QUIC lanes' connections (what they have in flight is completed).
    pub fn abandon_pending(&mut self) {
        let out = &mut self.out;
        out.stats.begin();
        out.step_quic(true);
        out.flush(true);
        out.publish_completions();
        out.stats.end();
    }
}

/// Takes up to [`SLOTS_PER_RING_PER_POLL`] slots from ring `r`, each copied out of the ring
/// once (into the consumer's own buffer) before anything reads it.
///
/// The latency budget's per-slot stages (ring wait, copy-out, validation) are timed on the
/// first slot taken from the ring in each poll, i.e. on every slot while submissions come one
/// at a time, and on one per batch under load: three TSC reads per slot cost ~90 ns on a KVM
/// guest (~30 ns each), a third of a single-lane submission's time in the lcore.
fn take_submissions(submit: &mut SubmitConsumer, r: usize, out: &mut Output) -> usize {
    let ready = match submit.ready() {
        Ok(n) => n.min(SLOTS_PER_RING_PER_POLL),
        Err(_) => {
            out.stats.add(Counter::RingCorrupt, 1);
            return 0;
        }
    };
    let mut taken = 0;
    while taken < ready {
        if taken + 1 < ready {
            submit.prefetch(taken + 1);
        }
        let stamps = if taken == 0 {
            let read = dpdk::tsc();
            let slot = submit.slot(taken);
            (slot, Some((read, dpdk::tsc())))
        } else {
            (submit.slot(taken), None)
        };
        if !out.handle_slot(r, stamps.0, stamps.1) {
            break; // no room or no mbufs: the slot stays in the ring for the next poll
        }
        taken += 1;
    }
    if taken > 0 {
        submit.release(taken);
        out.stats.add(Counter::Submissions, taken as u64);
    }
    taken as usize
}

impl Output {
    /// Turns a slot of ring `r` into frames (or rejections); `stamps`, when the slot is timed,
    /// are when the lcore started to read it and when it was copied out (TSC). `false` leaves it
    /// in the ring (and times nothing: it is read again next poll).
    fn handle_slot(&mut self, r: usize, slot: SlotRef<'_>, stamps: Option<(u64, u64)>) -> bool {
        let n_lanes = self.lanes.len() as u32;
        let pending = |lane: u8| Pending::of(r, &slot, lane);

        // Lanes that do not exist are answered at once; a slot with none gets one answer.
        let known = if n_lanes >= 64 {
            slot.lanes
        } else {
            slot.lanes & ((1u64 << n_lanes) - 1)
        };
        let verdict = if (slot.tx_len as usize) > MAX_TX_SIZE {
            Err(TxError::Oversize {
                len: slot.tx_len as usize,
            })
        } else {
            Transaction::parse(slot.tx).map(|_| ())
        };
        let validated = stamps.map(|_| dpdk::tsc());
        let time_slot = |stats: &mut StatsWriter| {
            if let (Some((read, copied)), Some(validated)) = (stamps, validated) {
                stats.ring_wait(slot.submit_tsc, read);
                stats.stage(Stage::CopyOut, copied.wrapping_sub(read));
                stats.stage(Stage::Validate, validated.wrapping_sub(copied));
            }
        };

        if let Err(e) = verdict {
            time_slot(&mut self.stats);
            self.stats.add(Counter::Rejected, 1);
            let done = dpdk::tsc();
            for lane in lanes_of(slot.lanes) {
                self.complete(pending(lane), Status::Rejected, e.code(), done);
            }
            if slot.lanes == 0 {
                self.complete(pending(u8::MAX), Status::UnknownLane, 0, done);
            }
            return true;
        }

        let relay = known & self.relay_mask;
        let quic = known & self.quic_mask;
        let udp = known & !self.relay_mask & !self.quic_mask;

        // Every queue this slot uses must have room for all of its frames, so a slot is taken
        // whole or not at all.
        for lane in lanes_of(udp) {
            let path = &self.paths[self.lane_path[lane as usize] as usize];
            if path.burst.len() + udp.count_ones() as usize > BURST {
                self.stats.add(Counter::TxFull, 1);
                return false;
            }
        }
        // All of the slot's mbufs at once (one pool operation), or none: the slot waits.
        let mut mbufs: ArrayVec<Mbuf, MAX_LANES> = ArrayVec::new();
        if !self.pool.alloc_bulk(&mut mbufs, udp.count_ones() as usize) {
            self.stats.add(Counter::NoMbuf, 1);
            return false;
        }
        // Taken: from here on the slot is answered on every lane.
        time_slot(&mut self.stats);

        if relay != 0 {
            self.hand_off(r, &slot, relay);
        }
        if quic != 0 {
            self.send_quic(r, &slot, quic);
        }
        self.send_udp(r, &slot, slot.lanes & !relay & !quic, mbufs);
        if slot.lanes == 0 {
            self.stats.add(Counter::UnknownLane, 1);
            self.complete(pending(u8::MAX), Status::UnknownLane, 0, dpdk::tsc());
        }
        true
    }

    /// Writes the slot's frame for each of `lanes` (its UDP lanes, and lanes that do not exist,
    /// answered at once) into `mbufs` (one per UDP lane) and queues them.
    fn send_udp(
        &mut self,
        r: usize,
        slot: &SlotRef<'_>,
        lanes: u64,
        mut mbufs: ArrayVec<Mbuf, MAX_LANES>,
    ) {
        let n_lanes = self.lanes.len() as u32;
        let pending = |lane: u8| Pending::of(r, slot, lane);
        let payload_sum = checksum::sum(slot.tx);
        for lane in lanes_of(lanes) {
            if (lane as u32) >= n_lanes {
                self.stats.add(Counter::UnknownLane, 1);
                self.complete(pending(lane), Status::UnknownLane, 0, dpdk::tsc());
                continue;
            }
            let Some(mbuf) = mbufs.pop() else {
                continue; // cannot happen: one mbuf per UDP lane was allocated
            };
            match self.build_frame(mbuf, lane, slot.tx, payload_sum) {
                Ok(m) => {
                    let path = &mut self.paths[self.lane_path[lane as usize] as usize];
                    let p = Pending {
                        len: m.data_len(),
                        ..pending(lane)
                    };
                    if let Err((m, p)) = path.burst.push(m, p) {
                        drop(m); // cannot happen: room was checked above
                        self.drop_packet(p, DropReason::TxTimeout);
                    }
                }
                Err(reason) => self.drop_packet(pending(lane), reason),
            }
        }
    }

    /// Passes a submission's relay lanes to the control plane, which answers their completions;
    /// without a live control plane, or with its ring full, they are dropped and answered here.
    fn hand_off(&mut self, r: usize, slot: &SlotRef<'_>, mut relay: u64) {
        let reason = match &mut self.handoff {
            Some(h) if self.ctl.control_alive(CONTROL_TIMEOUT_NS) => {
                // Lanes with an armed connection go out now, each with its own record; the
                // rest in one record for the control plane to send.
                let mut rest = relay;
                // Fast sends only when every record this slot may need fits: a request already
                // on the wire must always reach the control plane to be completed.
                let room = h.has_room(relay.count_ones() + 1);
                if let (Some(fast), true) = (&mut self.fast, room) {
                    let out = &mut self.paths[self.fast_out].forward;
                    for lane in lanes_of(relay) {
                        let sent =
                            match fast.try_send(lane, slot.tx, slot.submit_tsc, &self.pool, out) {
                                Ok(sent) => sent,
                                Err(Miss::Refused) => {
                                    self.stats.add(Counter::FastRefused, 1);
                                    continue;
                                }
                                Err(_) => continue,
                            };
                        // Room for this record was checked above: a request on the wire always
                        // reaches the control plane.
                        if h.push(r, slot, 1 << lane, Some(&sent)) {
                            fast.laps.lap(Stage::Handoff);
                            fast.laps.record(&mut self.stats);
                            if self.fast_queued == 0 {
                                self.fast_queued = fast.laps.last();
                            }
                            rest &= !(1 << lane);
                            self.stats.add(Counter::FastSends, 1);
                            self.stats.add(Counter::HandedOff, 1);
                            self.stats.lane_sent(lane as usize);
                            self.stats.lane_fast(lane as usize);
                        }
                    }
                }
                if rest == 0 || h.push(r, slot, rest, None) {
                    self.stats.add(Counter::HandedOff, rest.count_ones() as u64);
                    for lane in lanes_of(rest) {
                        self.stats.lane_sent(lane as usize);
                    }
                    return;
                }
                relay = rest;
                DropReason::HandoffFull
            }
            _ => DropReason::NoControlPlane,
        };
        for lane in lanes_of(relay) {
            self.drop_packet(Pending::of(r, slot, lane), reason);
        }
    }

    /// Writes a submission on each of its QUIC lanes' connections; one that cannot be sent now
    /// is completed at once with the reason (not sent).
    fn send_quic(&mut self, r: usize, slot: &SlotRef<'_>, lanes: u64) {
        for lane in lanes_of(lanes) {
            let p = Pending::of(r, slot, lane);
            let Some(q) = &mut self.quic else { return };
            let out = &mut self.paths[self.fast_out].forward;
            match q.send(lane, slot.tx, p, dpdk::tsc(), &self.pool, out) {
                Ok(()) => {
                    self.stats.lane_sent(lane as usize);
                    self.stats.lane_fast(lane as usize);
                    self.stats.lane_bytes(lane as usize, slot.tx.len() as u64);
                    if self.fast_queued == 0 {
                        self.fast_queued = dpdk::tsc();
                    }
                }
                Err(reason) if self.fall_back(r, slot, lane, reason) => {
                    self.stats.lane_sent(lane as usize);
                    self.stats.add(Counter::HandedOff, 1);
                }
                Err(reason) => {
                    self.stats.lane_dropped(lane as usize);
                    push_completion(
                        &mut self.completes,
                        &mut self.stats,
                        p,
                        Status::RelayError,
                        reason,
                        dpdk::tsc(),
                    );
                }
            }
        }
    }

    /// Hands a QUIC lane's submission that was not sent (`reason`) to its fallback http lane,
    /// if it has one and the control plane is there; the completion comes back as the QUIC
    /// lane's. `false`: no fallback.
    fn fall_back(&mut self, r: usize, slot: &SlotRef<'_>, lane: u8, reason: u16) -> bool {
        let http = self.quic_fallback[lane as usize];
        if http == u8::MAX || !swqos_shm::layout::not_sent(reason) {
            return false;
        }
        match &mut self.handoff {
            Some(h) if self.ctl.control_alive(CONTROL_TIMEOUT_NS) => {
                h.push_fallback(r, slot, http, lane)
            }
            _ => false,
        }
    }

    /// One step of the QUIC lanes (handshakes, timers, acknowledgements into completions); or,
    /// `closing` (shutdown), their connections closed and what they hold completed.
    fn step_quic(&mut self, closing: bool) {
        let Output {
            quic,
            paths,
            completes,
            stats,
            pool,
            fast_out,
            ..
        } = self;
        let Some(q) = quic else { return };
        let now = dpdk::tsc();
        let path = &mut paths[*fast_out];
        {
            let complete =
                |p, status, reason| push_completion(completes, stats, p, status, reason, now);
            if closing {
                q.close_all(now, pool, &mut path.forward, complete);
            } else {
                q.drive(now, pool, &mut path.forward, complete);
            }
        }
        if closing {
            flush_forward(path, stats);
        }
    }

    /// Writes lane `lane`'s Ethernet/IPv4/UDP headers and the transaction into `mbuf`.
    fn build_frame(
        &mut self,
        mut mbuf: Mbuf,
        lane: u8,
        tx: &[u8],
        payload_sum: u32,
    ) -> Result<Mbuf, DropReason> {
        let LaneSend::Udp(lane) = &self.lanes[lane as usize].send else {
            return Err(DropReason::TooLarge); // relay lanes never get here (see `handle_slot`)
        };
        let frame_len = lane.header_len() + tx.len();
        let Some(frame) = mbuf.append(frame_len as u16) else {
            return Err(DropReason::TooLarge);
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        lane.write(frame, tx, payload_sum, self.ip_ident)
            .map_err(|_| DropReason::TooLarge)?;
        if let Some(ol) = lane.offload {
            mbuf.set_tx_offload(ol.flags, ol.l2_len, ol.l3_len, ol.l4_len);
        }
        Ok(mbuf)
    }

    /// Offers every queue's burst to the NIC. With `abandon`, what it refuses is dropped at once
    /// (shutdown); otherwise it waits up to the send timeout.
    fn flush(&mut self, abandon: bool) -> usize {
        let mut sent_total = 0;
        let Output {
            paths,
            completes,
            stats,
            tally,
            tx_timeout_ticks,
            ..
        } = self;
        for path in paths.iter_mut() {
            if path.burst.is_empty() {
                continue;
            }
            let offered = path.burst.len();
            let mut bytes = 0u64;
            // One clock read per burst: every frame of it left in the same tx_burst call.
            let done = dpdk::tsc();
            let sent = path.queue.tx_burst(&mut path.burst, |p: Pending| {
                bytes += p.len as u64;
                tally.sent(stats, p.lane, p.len, p.submit_tsc, done);
                push_completion(completes, stats, p, Status::Sent, 0, done);
            });
            tally.flush(stats, done);
            stats.add(Counter::TxPackets, sent as u64);
            stats.add(Counter::TxBytes, bytes);
            sent_total += sent;
            if sent == offered {
                path.stalled_since = 0;
                continue;
            }
            stats.add(Counter::TxFull, 1);
            let now = done;
            if path.stalled_since == 0 {
                path.stalled_since = now;
            }
            let timed_out = now.wrapping_sub(path.stalled_since) > *tx_timeout_ticks;
            if abandon || timed_out {
                let reason = if abandon {
                    DropReason::Shutdown
                } else {
                    DropReason::TxTimeout
                };
                path.burst.drain(|mbuf, p| {
                    drop(mbuf);
                    stats.add(Counter::TxDropped, 1);
                    stats.lane_dropped(p.lane as usize);
                    push_completion(completes, stats, p, Status::Dropped, reason as u16, now);
                });
                path.stalled_since = 0;
            }
        }
        sent_total
    }

    fn drop_packet(&mut self, p: Pending, reason: DropReason) {
        self.stats.add(Counter::TxDropped, 1);
        self.stats.lane_dropped(p.lane as usize);
        self.complete(p, Status::Dropped, reason as u16, dpdk::tsc());
    }

    fn complete(&mut self, p: Pending, status: Status, reason: u16, done: u64) {
        push_completion(
            &mut self.completes,
            &mut self.stats,
            p,
            status,
            reason,
            done,
        );
    }

    fn publish_completions(&mut self) {
        for c in &mut self.completes {
            c.publish();
        }
        if let Some(h) = &mut self.handoff {
            h.publish();
        }
    }
}

fn push_completion(
    completes: &mut [CompletionProducer],
    stats: &mut StatsWriter,
    p: Pending,
    status: Status,
    reason: u16,
    done_tsc: u64,
) {
    let c = Completion {
        tag: p.tag,
        lease_gen: p.lease_gen,
        lane: p.lane,
        status: status as u8,
        reason,
        submit_tsc: p.submit_tsc,
        done_tsc,
    };
    if !completes[p.ring as usize].push(c) {
        stats.add(Counter::CompletionOverflow, 1);
    }
}
