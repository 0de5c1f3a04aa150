//! Per-lcore and per-port statistics in shared memory, read without locks the way FD.io VPP's
//! stats segment is.
//!
//! Each block has exactly one writer (an lcore for [`LcoreStats`], the dataplane's main loop for
//! [`PortStats`]). The writer brackets each batch of updates with [`StatsWriter::begin`] /
//! [`StatsWriter::end`], which make the epoch odd then even again; a reader copies the block and
//! retries when the epoch was odd or changed meanwhile. Updates are relaxed load+store pairs
//! (plain `mov`s on x86: no locked instruction, since there is one writer).
//!
//! [`Snapshot::read`] is the one reader of the figures: `swqos stats` and the Prometheus
//! exporter of `swqos control` both print what it returns, and [`Rates::between`] turns two
//! snapshots into per-second rates.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::layout::{LaneKind, State, MAX_LANES, PORT_NAME_LEN};
use crate::segment::{pid_alive, Segment, HEARTBEAT_TIMEOUT};
use crate::time::monotonic_ns;

/// The counters of one lcore, by index into [`LcoreStats::counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Poll loop iterations.
    Polls = 0,
    /// Submission slots consumed from the rings.
    Submissions,
    /// Submissions rejected by transaction validation.
    Rejected,
    /// (slot, lane) pairs naming no configured lane.
    UnknownLane,
    /// Packets accepted by `tx_burst`.
    TxPackets,
    /// Bytes of those packets (Ethernet frame, no FCS).
    TxBytes,
    /// `tx_burst` calls that accepted fewer packets than offered (backpressure).
    TxFull,
    /// Packets dropped after the send timeout or at shutdown.
    TxDropped,
    /// Moments an mbuf allocation failed (the slot waits and is retried).
    NoMbuf,
    /// Completion records that found the client's completion ring full (a client ignoring its
    /// credits); the record is lost, never the packet.
    CompletionOverflow,
    /// Submit-ring tails found corrupt: behind the head (ignored: a head never moves back, so
    /// nothing is replayed) or more than a ring ahead (the head skips forward to it).
    RingCorrupt,
    /// Packets received on polled RX queues.
    RxPackets,
    /// Bytes received.
    RxBytes,
    /// Received frames that are not Ethernet/IPv4 or are too short.
    RxGarbage,
    /// Frames the exception-path bridge passed from the NIC to the kernel.
    ToKernel,
    /// Frames the bridge passed from the kernel to the NIC.
    FromKernel,
    /// Bridged frames dropped because the other side's queue stayed full.
    BridgeDropped,
    /// (submission, relay lane) pairs handed to the control plane.
    HandedOff,
    /// Of those, the ones the data plane sent itself on an armed connection (delegated sends).
    FastSends,
    /// Delegated sends given up before the claim: the request did not fit the mbufs or the
    /// port, or sealing it failed. Nothing left; the control plane sent it (fallback).
    FastRefused,
    /// Latency samples left out of the histograms because the client's submit timestamp was 0,
    /// in the future or older than [`MAX_LATENCY_SECS`].
    BadTimestamp,
    /// Polls that found work (with [`Counter::Polls`]: the lcore's work share). Like `Polls`,
    /// a single word that may be read a batch ahead of the rest.
    WorkPolls,
    /// Sleeps an adaptive lcore took between polls while idle (never on a busy lcore).
    IdleSleeps,
    /// Nanoseconds those sleeps lasted (with the lcore's age: its busy share, the part of the
    /// time it kept its CPU).
    SleepNs,
}

/// Number of [`Counter`]s.
pub const N_COUNTERS: usize = Counter::SleepNs as usize + 1;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; N_COUNTERS] = [
        Counter::Polls,
        Counter::Submissions,
        Counter::Rejected,
        Counter::UnknownLane,
        Counter::TxPackets,
        Counter::TxBytes,
        Counter::TxFull,
        Counter::TxDropped,
        Counter::NoMbuf,
        Counter::CompletionOverflow,
        Counter::RingCorrupt,
        Counter::RxPackets,
        Counter::RxBytes,
        Counter::RxGarbage,
        Counter::ToKernel,
        Counter::FromKernel,
        Counter::BridgeDropped,
        Counter::HandedOff,
        Counter::FastSends,
        Counter::FastRefused,
        Counter::BadTimestamp,
        Counter::WorkPolls,
        Counter::IdleSleeps,
        Counter::SleepNs,
    ];

    /// A snake_case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Polls => "polls",
            Counter::Submissions => "submissions",
            Counter::Rejected => "rejected",
            Counter::UnknownLane => "unknown_lane",
            Counter::TxPackets => "tx_packets",
            Counter::TxBytes => "tx_bytes",
            Counter::TxFull => "tx_full",
            Counter::TxDropped => "tx_dropped",
            Counter::NoMbuf => "no_mbuf",
            Counter::CompletionOverflow => "completion_overflow",
            Counter::RingCorrupt => "ring_corrupt",
            Counter::RxPackets => "rx_packets",
            Counter::RxBytes => "rx_bytes",
            Counter::RxGarbage => "rx_garbage",
            Counter::ToKernel => "to_kernel",
            Counter::FromKernel => "from_kernel",
            Counter::BridgeDropped => "bridge_dropped",
            Counter::HandedOff => "handed_off",
            Counter::FastSends => "fast_sends",
            Counter::FastRefused => "fast_refused",
            Counter::BadTimestamp => "bad_timestamp",
            Counter::WorkPolls => "work_polls",
            Counter::IdleSleeps => "idle_sleeps",
            Counter::SleepNs => "sleep_ns",
        }
    }
}

/// The stages of the data plane's send path, each timed with the TSC from the end of the one
/// before (the latency budget `swqos bench tx-latency` and `swqos bench latency` print). The
/// first three run for every submission; the others for delegated sends (relay lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stage {
    /// The client's submit stamp to the TX lcore starting to read the slot: how long the
    /// slot waited in the ring (includes the rest of the lcore's poll loop). This stage,
    /// [`Stage::CopyOut`] and [`Stage::Validate`] are timed on the first slot the lcore takes
    /// from a ring in each poll (every slot while they come one at a time; one per batch under
    /// load, where three TSC reads per slot would cost a third of the slot's time).
    Poll = 0,
    /// Copying the slot out of shared memory (once, before anything reads it).
    CopyOut,
    /// Validating the transaction.
    Validate,
    /// Finding an armed connection of the lane (session table and flow table).
    Lookup,
    /// Allocating the segments' mbufs, writing the request from the lane's template, and its
    /// digest for the hand-off record.
    Build,
    /// Sealing the TLS records in place (TLS lanes only).
    Seal,
    /// Claiming the session entry (one compare-and-swap).
    Claim,
    /// Writing the TCP/IPv4/Ethernet headers and queueing the segments.
    Emit,
    /// Writing the hand-off record for the control plane.
    Handoff,
    /// From the hand-off record of the poll's first delegated send to the `tx_burst` call that
    /// takes it (the slot's other lanes, and other slots, are built meanwhile).
    Queue,
    /// The `tx_burst` call that took the poll's delegated sends (on `net_af_packet`: the copy
    /// into the kernel's TPACKET ring and the `sendto` that makes the kernel send it).
    TxBurst,
}

/// Number of [`Stage`]s.
pub const N_STAGES: usize = Stage::TxBurst as usize + 1;

/// Buckets of a stage's histogram: exact below 8 ticks, then 4 per power of two (about 19%
/// wide) up to 2^33 ticks (seconds); coarser than the latency histogram's, so the eleven
/// stages fit in 11 KiB per lcore.
pub const STAGE_BUCKETS: usize = 8 + 30 * 4;

/// The bucket of `ticks` in a stage's histogram.
#[inline]
pub fn stage_bucket_of(ticks: u64) -> usize {
    if ticks < 8 {
        return ticks as usize;
    }
    let msb = 63 - ticks.leading_zeros(); // >= 3
    let sub = (ticks >> (msb - 2)) & 3;
    (8 + (msb as usize - 3) * 4 + sub as usize).min(STAGE_BUCKETS - 1)
}

/// The smallest tick count in bucket `b` of a stage's histogram.
pub fn stage_bucket_low(b: usize) -> u64 {
    if b < 8 {
        return b as u64;
    }
    let (octave, sub) = ((b - 8) / 4, (b - 8) % 4);
    (4 + sub as u64) << (octave + 1)
}

/// The `q` quantile (0..=1) of a stage's histogram, in ticks (the low edge of its bucket).
pub fn stage_quantile(hist: &[u64], q: f64) -> Option<u64> {
    quantile_by(hist, q, stage_bucket_low)
}

impl Stage {
    /// Every stage, in path order.
    pub const ALL: [Stage; N_STAGES] = [
        Stage::Poll,
        Stage::CopyOut,
        Stage::Validate,
        Stage::Lookup,
        Stage::Build,
        Stage::Seal,
        Stage::Claim,
        Stage::Emit,
        Stage::Handoff,
        Stage::Queue,
        Stage::TxBurst,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Poll => "ring poll (wait)",
            Stage::CopyOut => "copy-out",
            Stage::Validate => "validate",
            Stage::Lookup => "find armed conn",
            Stage::Build => "build+digest",
            Stage::Seal => "TLS seal",
            Stage::Claim => "claim (CAS)",
            Stage::Emit => "headers+queue",
            Stage::Handoff => "hand-off record",
            Stage::Queue => "wait for burst",
            Stage::TxBurst => "tx_burst",
        }
    }
}

/// The oldest client submit timestamp a latency sample may come from, in seconds; older
/// ones (and 0, and ones in the future) are counted as [`Counter::BadTimestamp`] instead.
pub const MAX_LATENCY_SECS: u64 = 60;

/// Sub-buckets per power of two in the latency histogram (5 bits: about 3% resolution).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Largest power of two recorded exactly; larger values land in the last bucket.
const MAX_MSB: u32 = 40;
/// Buckets of the latency histogram.
pub const HISTOGRAM_BUCKETS: usize =
    (SUB as usize) * 2 + ((MAX_MSB - SUB_BITS) as usize) * SUB as usize;

/// Bucket of a value: exact below `2*SUB`, then `SUB` log-linear sub-buckets per power of two.
#[inline]
pub fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    if msb > MAX_MSB {
        return HISTOGRAM_BUCKETS - 1;
    }
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) & (SUB - 1);
    (2 * SUB + (msb - SUB_BITS - 1) as u64 * SUB + sub) as usize
}

/// Smallest value that falls in `bucket`.
pub fn bucket_low(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < 2 * SUB {
        return b;
    }
    let octave = (b - 2 * SUB) / SUB; // msb - SUB_BITS - 1
    let sub = (b - 2 * SUB) % SUB;
    let shift = octave + 1;
    (SUB + sub) << shift
}

/// One lcore's statistics block.
#[repr(C, align(128))]
pub struct LcoreStats {
    /// VPP-style epoch: odd while the writer is updating.
    pub epoch: AtomicU64,
    /// The DPDK lcore id, once the block is assigned.
    pub lcore_id: AtomicU32,
    /// 0 unused, 1 tx, 2 rx.
    pub role: AtomicU32,
    /// How the lcore polls (see [`poll_mode`]), written when its loop starts.
    pub poll_mode: AtomicU32,
    _reserved: u32,
    /// `CLOCK_MONOTONIC` nanoseconds when the lcore's loop started; 0 before.
    pub started_ns: AtomicU64,
    /// Indexed by [`Counter`].
    pub counters: [AtomicU64; N_COUNTERS],
    /// Packets sent per lane.
    pub lane_packets: [AtomicU64; MAX_LANES],
    /// Packets dropped per lane.
    pub lane_dropped: [AtomicU64; MAX_LANES],
    /// Bytes (Ethernet frames, no FCS) sent per lane, by writers that call
    /// [`StatsWriter::lane_bytes`].
    pub lane_bytes: [AtomicU64; MAX_LANES],
    /// Relay-lane submissions the data plane sent itself (delegated sends), per lane.
    pub lane_fast: [AtomicU64; MAX_LANES],
    /// Submit-to-`tx_burst` latency in TSC ticks, log-linear buckets (see [`bucket_of`]).
    pub latency: [AtomicU64; HISTOGRAM_BUCKETS],
    /// The same for delegated sends (relay lanes, plain or TLS): submit to the `tx_burst`
    /// that took the request's last segment.
    pub fast_latency: [AtomicU64; HISTOGRAM_BUCKETS],
    /// Submit-to-`tx_burst` TSC ticks of delegated sends, summed per relay lane (with
    /// `lane_fast`: each lane's mean; the histogram has the quantiles of all lanes).
    pub lane_fast_ticks: [AtomicU64; MAX_LANES],
    /// TSC ticks spent per [`Stage`] (the latency budget), summed.
    pub stage_ticks: [AtomicU64; N_STAGES],
    /// Each [`Stage`]'s timings, by [`stage_bucket_of`].
    pub stage_hist: [[AtomicU64; STAGE_BUCKETS]; N_STAGES],
}

/// Role numbers stored in [`LcoreStats::role`].
pub mod role {
    /// Block unused.
    pub const NONE: u32 = 0;
    /// Submit/TX lcore.
    pub const TX: u32 = 1;
    /// NIC RX lcore.
    pub const RX: u32 = 2;

    /// The role's name in `swqos stats` and the metrics (`tx`, `rx`, `none`).
    pub fn name(role: u32) -> &'static str {
        match role {
            TX => "tx",
            RX => "rx",
            _ => "none",
        }
    }
}

/// Poll modes stored in [`LcoreStats::poll_mode`].
pub mod poll_mode {
    /// Busy polling: the lcore never pauses or sleeps.
    pub const BUSY: u32 = 0;
    /// Adaptive polling: the lcore backs off when idle (pause, then sleeps).
    pub const ADAPTIVE: u32 = 1;

    /// The mode's name in `swqos stats` and the metrics (`busy`, `adaptive`).
    pub fn name(mode: u32) -> &'static str {
        match mode {
            ADAPTIVE => "adaptive",
            _ => "busy",
        }
    }
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    // One writer per block: a relaxed load and store is an exact increment without a locked op.
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// The single writer of one stats block (held by its lcore).
///
/// The epoch is made odd lazily, by the first update of a batch other than
/// [`Counter::Polls`]: an idle lcore's polls then leave it alone, so a reader copying the block
/// (a few microseconds) is not forced to retry by a writer that changes nothing else. The poll
/// counter is a single word and may be read a batch ahead of the rest.
pub struct StatsWriter {
    seg: Arc<Segment>,
    index: usize,
    /// Inside `begin`..`end`.
    in_batch: bool,
    /// [`MAX_LATENCY_SECS`] in TSC ticks.
    max_latency_ticks: u64,
    /// The epoch is odd (an update of this batch happened).
    odd: bool,
}

impl StatsWriter {
    /// Claims block `index` of `seg` for `lcore_id` in `role`; `None` if out of range or
    /// already claimed in this process (one writer per block).
    pub fn new(seg: Arc<Segment>, index: usize, lcore_id: u32, role: u32) -> Option<StatsWriter> {
        if index >= seg.layout().n_lcores as usize || !seg.claim_stats(index) {
            return None;
        }
        let block = seg.stats(index);
        block.lcore_id.store(lcore_id, Ordering::Relaxed);
        block.role.store(role, Ordering::Release);
        let max_latency_ticks = seg.header().tsc_hz.saturating_mul(MAX_LATENCY_SECS);
        Some(StatsWriter {
            seg,
            index,
            max_latency_ticks,
            in_batch: false,
            odd: false,
        })
    }

    #[inline]
    fn block(&self) -> &LcoreStats {
        self.seg.stats(self.index)
    }

    /// Records that the lcore's loop starts now, polling in `mode` (a [`poll_mode`] value): the
    /// origin of its busy share.
    pub fn start(&mut self, mode: u32) {
        let block = self.block();
        block.poll_mode.store(mode, Ordering::Relaxed);
        block.started_ns.store(monotonic_ns(), Ordering::Release);
    }

    /// Counts one idle sleep of `ns` nanoseconds, as a batch of its own.
    pub fn idle_sleep(&mut self, ns: u64) {
        self.begin();
        self.add(Counter::IdleSleeps, 1);
        self.add(Counter::SleepNs, ns);
        self.end();
    }

    /// Starts a batch of updates (the epoch becomes odd at its first update).
    #[inline]
    pub fn begin(&mut self) {
        self.in_batch = true;
    }

    /// Makes the epoch odd before the batch's first update.
    #[inline]
    fn touch(&mut self) {
        if self.in_batch && !self.odd {
            let epoch = &self.block().epoch;
            let e = epoch.load(Ordering::Relaxed);
            epoch.store(e | 1, Ordering::Relaxed);
            // Readers that see the new values must also see the odd epoch.
            fence(Ordering::Release);
            self.odd = true;
        }
    }

    /// Ends a batch (the epoch becomes even and larger if the batch updated anything).
    #[inline]
    pub fn end(&mut self) {
        if self.odd {
            let epoch = &self.block().epoch;
            let e = epoch.load(Ordering::Relaxed);
            epoch.store((e | 1) + 1, Ordering::Release);
            self.odd = false;
        }
        self.in_batch = false;
    }

    /// Adds to a counter.
    #[inline]
    pub fn add(&mut self, c: Counter, by: u64) {
        if c != Counter::Polls {
            self.touch();
        }
        bump(&self.block().counters[c as usize], by);
    }

    /// Counts one packet sent on `lane`.
    #[inline]
    pub fn lane_sent(&mut self, lane: usize) {
        self.touch();
        bump(&self.block().lane_packets[lane % MAX_LANES], 1);
    }

    /// Counts `n` packets sent on `lane` (one update for a burst's packets of one lane).
    #[inline]
    pub fn lane_sent_many(&mut self, lane: usize, n: u64) {
        self.touch();
        bump(&self.block().lane_packets[lane % MAX_LANES], n);
    }

    /// Counts one packet dropped on `lane`.
    #[inline]
    pub fn lane_dropped(&mut self, lane: usize) {
        self.touch();
        bump(&self.block().lane_dropped[lane % MAX_LANES], 1);
    }

    /// Counts one delegated send on relay lane `lane` (besides [`StatsWriter::lane_sent`]).
    #[inline]
    pub fn lane_fast(&mut self, lane: usize) {
        self.touch();
        bump(&self.block().lane_fast[lane % MAX_LANES], 1);
    }

    /// Counts `bytes` sent on `lane` (call with each [`StatsWriter::lane_sent`]).
    #[inline]
    pub fn lane_bytes(&mut self, lane: usize, bytes: u64) {
        self.touch();
        bump(&self.block().lane_bytes[lane % MAX_LANES], bytes);
    }

    /// The latency from a client's submit timestamp to `done` (both TSC), or `None` (counted
    /// as [`Counter::BadTimestamp`]) when the client's stamp is 0, later than `done`, or more
    /// than [`MAX_LATENCY_SECS`] old: a client's word is never taken for a latency unchecked.
    #[inline]
    fn bounded(&mut self, submit_tsc: u64, done: u64) -> Option<u64> {
        let ticks = done.wrapping_sub(submit_tsc);
        if submit_tsc == 0 || submit_tsc > done || ticks > self.max_latency_ticks {
            self.add(Counter::BadTimestamp, 1);
            return None;
        }
        Some(ticks)
    }

    /// Records one submit-to-`tx_burst` latency sample: a client's `submit_tsc` to `done`
    /// (see [`StatsWriter::bounded`] for the stamps left out).
    #[inline]
    pub fn latency_since(&mut self, submit_tsc: u64, done: u64) {
        if let Some(ticks) = self.bounded(submit_tsc, done) {
            self.touch();
            bump(&self.block().latency[bucket_of(ticks)], 1);
        }
    }

    /// Records `n` submit-to-`tx_burst` latency samples with the same stamps (the lanes of one
    /// submission that left in one `tx_burst` call), bounded as [`StatsWriter::latency_since`]
    /// (an implausible stamp is counted once per sample).
    #[inline]
    pub fn latency_since_many(&mut self, submit_tsc: u64, done: u64, n: u64) {
        let ticks = done.wrapping_sub(submit_tsc);
        if submit_tsc == 0 || submit_tsc > done || ticks > self.max_latency_ticks {
            self.add(Counter::BadTimestamp, n);
            return;
        }
        self.touch();
        bump(&self.block().latency[bucket_of(ticks)], n);
    }

    /// Records one delegated send's submit-to-`tx_burst` latency sample on relay lane `lane`,
    /// bounded as [`StatsWriter::latency_since`].
    #[inline]
    pub fn fast_latency_since(&mut self, submit_tsc: u64, done: u64, lane: usize) {
        if let Some(ticks) = self.bounded(submit_tsc, done) {
            self.touch();
            bump(&self.block().fast_latency[bucket_of(ticks)], 1);
            bump(&self.block().lane_fast_ticks[lane % MAX_LANES], ticks);
        }
    }
}

impl StatsWriter {
    /// Adds one timing of `stage`, `ticks` long, to the latency budget.
    #[inline]
    pub fn stage(&mut self, stage: Stage, ticks: u64) {
        self.touch();
        bump(&self.block().stage_ticks[stage as usize], ticks);
        bump(
            &self.block().stage_hist[stage as usize][stage_bucket_of(ticks)],
            1,
        );
    }

    /// The time a client's slot waited in the ring: its `submit_tsc` to `now`, added to
    /// [`Stage::Poll`] unless the client's stamp is implausible (0, in the future, or older
    /// than [`MAX_LATENCY_SECS`]; the latency histograms count those).
    #[inline]
    pub fn ring_wait(&mut self, submit_tsc: u64, now: u64) {
        let ticks = now.wrapping_sub(submit_tsc);
        if submit_tsc != 0 && submit_tsc <= now && ticks <= self.max_latency_ticks {
            self.stage(Stage::Poll, ticks);
        }
    }
}

/// A consistent copy of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// DPDK lcore id.
    pub lcore_id: u32,
    /// Role number (see [`role`]).
    pub role: u32,
    /// Poll mode (see [`poll_mode`]).
    pub poll_mode: u32,
    /// `CLOCK_MONOTONIC` nanoseconds when the lcore's loop started; 0 before.
    pub started_ns: u64,
    /// Indexed by [`Counter`].
    pub counters: [u64; N_COUNTERS],
    /// Packets sent per lane.
    pub lane_packets: [u64; MAX_LANES],
    /// Packets dropped per lane.
    pub lane_dropped: [u64; MAX_LANES],
    /// Bytes sent per lane.
    pub lane_bytes: [u64; MAX_LANES],
    /// Delegated sends per relay lane.
    pub lane_fast: [u64; MAX_LANES],
    /// Latency histogram in TSC ticks.
    pub latency: Vec<u64>,
    /// Delegated sends' latency histogram in TSC ticks.
    pub fast_latency: Vec<u64>,
    /// Delegated sends' submit-to-`tx_burst` ticks per lane, summed.
    pub lane_fast_ticks: [u64; MAX_LANES],
    /// TSC ticks per [`Stage`], summed.
    pub stage_ticks: [u64; N_STAGES],
    /// Each [`Stage`]'s histogram.
    pub stage_hist: Vec<[u64; STAGE_BUCKETS]>,
}

impl StatsSnapshot {
    /// A block with nothing counted (an unused lcore's).
    pub fn zero() -> StatsSnapshot {
        StatsSnapshot {
            lcore_id: 0,
            role: role::NONE,
            poll_mode: poll_mode::BUSY,
            started_ns: 0,
            counters: [0; N_COUNTERS],
            lane_packets: [0; MAX_LANES],
            lane_dropped: [0; MAX_LANES],
            lane_fast: [0; MAX_LANES],
            lane_bytes: [0; MAX_LANES],
            latency: Vec::new(),
            fast_latency: Vec::new(),
            lane_fast_ticks: [0; MAX_LANES],
            stage_ticks: [0; N_STAGES],
            stage_hist: Vec::new(),
        }
    }

    /// Value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }

    /// The `q` quantile (0..=1) of the latency histogram, in ticks (the low edge of its bucket),
    /// or `None` with no samples.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        quantile(&self.latency, q)
    }

    /// The busy share since the lcore's loop started, up to `now_ns` (`CLOCK_MONOTONIC`): the
    /// part of the time it did not sleep (1 for a busy lcore), or `None` before it started.
    pub fn busy_share_since_start(&self, now_ns: u64) -> Option<f64> {
        if self.started_ns == 0 {
            return None;
        }
        busy_share(
            self.get(Counter::SleepNs),
            now_ns.saturating_sub(self.started_ns),
        )
    }

    /// The work share since the lcore's loop started: the part of its polls that found work,
    /// or `None` before its first poll.
    pub fn work_share(&self) -> Option<f64> {
        share(self.get(Counter::WorkPolls), self.get(Counter::Polls))
    }
}

/// `part / whole`, clamped to 0..=1; `None` when `whole` is 0.
fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64).clamp(0.0, 1.0))
}

/// The part of `elapsed_ns` not spent in `slept_ns` of sleep; `None` for no time at all.
fn busy_share(slept_ns: u64, elapsed_ns: u64) -> Option<f64> {
    share(slept_ns, elapsed_ns).map(|slept| 1.0 - slept)
}

/// The `q` quantile of a histogram laid out as [`bucket_of`] says.
pub fn quantile(hist: &[u64], q: f64) -> Option<u64> {
    quantile_by(hist, q, bucket_low)
}

/// The `q` quantile (nearest rank) of a histogram whose bucket `i` starts at `low(i)`.
fn quantile_by(hist: &[u64], q: f64, low: fn(usize) -> u64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(low(i));
        }
    }
    Some(low(hist.len() - 1))
}

/// Runs `copy` until it ran entirely while `epoch` was even and unchanged: the VPP-style
/// consistent read. Gives up after many tries (a writer that died mid-batch) and returns the
/// last, possibly torn, copy.
/// Copies tried before a reader settles for a possibly torn copy.
const MAX_READ_TRIES: u32 = 1000;

fn read_consistent<T>(epoch: &AtomicU64, copy: impl Fn() -> T) -> T {
    let mut tries = 0;
    loop {
        let e1 = epoch.load(Ordering::Acquire);
        let snap = copy();
        fence(Ordering::Acquire);
        let e2 = epoch.load(Ordering::Relaxed);
        tries += 1;
        if (e1 == e2 && e1 & 1 == 0) || tries >= MAX_READ_TRIES {
            return snap;
        }
        std::hint::spin_loop();
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Copies `block` consistently: retries while the writer is mid-batch. Gives up after many
/// tries (a writer that died mid-batch) and returns the last, possibly torn, copy.
pub fn read(block: &LcoreStats) -> StatsSnapshot {
    read_consistent(&block.epoch, || StatsSnapshot {
        lcore_id: block.lcore_id.load(Ordering::Relaxed),
        role: block.role.load(Ordering::Relaxed),
        poll_mode: block.poll_mode.load(Ordering::Relaxed),
        started_ns: block.started_ns.load(Ordering::Acquire),
        counters: std::array::from_fn(|i| load(&block.counters[i])),
        lane_packets: std::array::from_fn(|i| load(&block.lane_packets[i])),
        lane_dropped: std::array::from_fn(|i| load(&block.lane_dropped[i])),
        lane_fast: std::array::from_fn(|i| load(&block.lane_fast[i])),
        lane_bytes: std::array::from_fn(|i| load(&block.lane_bytes[i])),
        latency: block.latency.iter().map(load).collect(),
        fast_latency: block.fast_latency.iter().map(load).collect(),
        lane_fast_ticks: std::array::from_fn(|i| load(&block.lane_fast_ticks[i])),
        stage_ticks: std::array::from_fn(|i| load(&block.stage_ticks[i])),
        stage_hist: block
            .stage_hist
            .iter()
            .map(|h| std::array::from_fn(|i| load(&h[i])))
            .collect(),
    })
}

/// The DPDK port counters of one port (`rte_eth_stats`), by index into [`PortStats::counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum PortCounter {
    /// Packets the driver sent.
    Opackets = 0,
    /// Bytes the driver sent.
    Obytes,
    /// Packets the driver failed to send.
    Oerrors,
    /// Packets received.
    Ipackets,
    /// Bytes received.
    Ibytes,
    /// Packets the hardware dropped for want of RX descriptors.
    Imissed,
    /// Erroneous packets received.
    Ierrors,
    /// RX mbuf allocation failures.
    RxNombuf,
}

/// Number of [`PortCounter`]s.
pub const N_PORT_COUNTERS: usize = PortCounter::RxNombuf as usize + 1;

impl PortCounter {
    /// Every counter, in index order.
    pub const ALL: [PortCounter; N_PORT_COUNTERS] = [
        PortCounter::Opackets,
        PortCounter::Obytes,
        PortCounter::Oerrors,
        PortCounter::Ipackets,
        PortCounter::Ibytes,
        PortCounter::Imissed,
        PortCounter::Ierrors,
        PortCounter::RxNombuf,
    ];

    /// DPDK's name of the counter (`struct rte_eth_stats`).
    pub fn name(self) -> &'static str {
        match self {
            PortCounter::Opackets => "opackets",
            PortCounter::Obytes => "obytes",
            PortCounter::Oerrors => "oerrors",
            PortCounter::Ipackets => "ipackets",
            PortCounter::Ibytes => "ibytes",
            PortCounter::Imissed => "imissed",
            PortCounter::Ierrors => "ierrors",
            PortCounter::RxNombuf => "rx_nombuf",
        }
    }
}

/// One port's statistics block: the driver's counters as the dataplane's main loop last read
/// them (about every 100 ms).
#[repr(C, align(128))]
pub struct PortStats {
    /// VPP-style epoch: odd while the writer is updating.
    pub epoch: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last update; 0 before the first.
    pub updated_ns: AtomicU64,
    /// The port's configured name, UTF-8, zero-padded; written once when the segment is created.
    pub name: [u8; PORT_NAME_LEN],
    /// Indexed by [`PortCounter`].
    pub counters: [AtomicU64; N_PORT_COUNTERS],
}

/// The single writer of one port stats block (the dataplane's main loop).
pub struct PortStatsWriter {
    seg: Arc<Segment>,
    index: usize,
}

impl PortStatsWriter {
    /// Claims port block `index` of `seg`; `None` if out of range or already claimed in this
    /// process (one writer per block).
    pub fn new(seg: Arc<Segment>, index: usize) -> Option<PortStatsWriter> {
        if index >= seg.layout().n_ports as usize || !seg.claim_port_stats(index) {
            return None;
        }
        Some(PortStatsWriter { seg, index })
    }

    /// Publishes the driver's counters (indexed by [`PortCounter`]) as of now.
    pub fn publish(&mut self, counters: &[u64; N_PORT_COUNTERS]) {
        let block = self.seg.port_stats(self.index);
        let e = block.epoch.load(Ordering::Relaxed);
        block.epoch.store(e | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (c, &v) in block.counters.iter().zip(counters) {
            c.store(v, Ordering::Relaxed);
        }
        block.updated_ns.store(monotonic_ns(), Ordering::Relaxed);
        block.epoch.store((e | 1) + 1, Ordering::Release);
    }
}

/// A consistent copy of one port block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSnapshot {
    /// The port's configured name.
    pub name: String,
    /// `CLOCK_MONOTONIC` nanoseconds of the dataplane's last update; 0 before the first.
    pub updated_ns: u64,
    /// Indexed by [`PortCounter`].
    pub counters: [u64; N_PORT_COUNTERS],
}

impl PortSnapshot {
    /// Value of one counter.
    pub fn get(&self, c: PortCounter) -> u64 {
        self.counters[c as usize]
    }
}

/// Copies a port block consistently (see [`read`]).
pub fn read_port(block: &PortStats) -> PortSnapshot {
    let end = block
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(PORT_NAME_LEN);
    let name = String::from_utf8_lossy(&block.name[..end]).into_owned();
    let (updated_ns, counters) = read_consistent(&block.epoch, || {
        (
            block.updated_ns.load(Ordering::Relaxed),
            std::array::from_fn(|i| load(&block.counters[i])),
        )
    });
    PortSnapshot {
        name,
        updated_ns,
        counters,
    }
}

/// One lane's totals, summed over every lcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSnapshot {
    /// Lane id (bit in a lane mask).
    pub id: usize,
    /// Configured name.
    pub name: String,
    /// What kind of lane.
    pub kind: LaneKind,
    /// Packets handed to the NIC.
    pub packets: u64,
    /// Bytes of those packets; `None` when the dataplane does not count bytes per lane (it sent
    /// packets but counted no bytes), so no made-up figure is ever shown.
    pub bytes: Option<u64>,
    /// Packets dropped (send timeout, no mbuf, shutdown, too large).
    pub dropped: u64,
    /// Packets sent on the lane's fast path. A UDP lane has only a fast path (the frame is built
    /// in an mbuf and burst by the lcore), so this is `packets`; `None` for kinds without a
    /// defined fast path.
    pub fast: Option<u64>,
    /// Packets sent on the fallback path: 0 for UDP lanes, which have none.
    pub fallback: Option<u64>,
}

/// What happened to submissions, summed over every lcore (the completion records' outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcomes {
    /// `Sent` completions: packets `tx_burst` accepted.
    pub sent: u64,
    /// Submissions that failed validation. Counted once per submission; the client receives one
    /// `Rejected` completion per lane the submission named.
    pub rejected: u64,
    /// `UnknownLane` completions: lane bits naming no lane, and submissions naming none.
    pub unknown_lane: u64,
    /// `Dropped` completions: packets dropped after being built.
    pub dropped: u64,
}

/// Everything the stats segment says at one moment: the one implementation of the figures that
/// `swqos stats` and the metrics exporter print.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `CLOCK_MONOTONIC` nanoseconds when read.
    pub taken_ns: u64,
    /// The dataplane's process id.
    pub pid: u32,
    /// Its published state.
    pub state: Option<State>,
    /// Nanoseconds since its last heartbeat.
    pub heartbeat_age_ns: u64,
    /// Whether its process exists.
    pub pid_alive: bool,
    /// TSC ticks per second (latencies are in ticks).
    pub tsc_hz: u64,
    /// Per lcore, in configuration order.
    pub lcores: Vec<StatsSnapshot>,
    /// Per port, in configuration order.
    pub ports: Vec<PortSnapshot>,
    /// Per lane, by id.
    pub lanes: Vec<LaneSnapshot>,
}

impl Snapshot {
    /// Reads every block of `seg` (each consistently; blocks are independent of each other).
    pub fn read(seg: &Segment) -> Snapshot {
        let h = seg.header();
        let pid = h.dataplane_pid.load(Ordering::Relaxed);
        let taken_ns = monotonic_ns();
        let heartbeat_age_ns = taken_ns.saturating_sub(h.heartbeat_ns.load(Ordering::Acquire));
        let lcores: Vec<StatsSnapshot> = (0..seg.layout().n_lcores as usize)
            .map(|i| read(seg.stats(i)))
            .collect();
        let ports = (0..seg.layout().n_ports as usize)
            .map(|i| read_port(seg.port_stats(i)))
            .collect();
        let lanes = seg
            .lanes()
            .iter()
            .enumerate()
            .map(|(id, info)| {
                let packets: u64 = lcores.iter().map(|s| s.lane_packets[id]).sum();
                let bytes: u64 = lcores.iter().map(|s| s.lane_bytes[id]).sum();
                let fast: u64 = lcores.iter().map(|s| s.lane_fast[id]).sum();
                let kind = match info.kind {
                    k if k == LaneKind::Udp as u8 => LaneKind::Udp,
                    k if k == LaneKind::Http as u8 => LaneKind::Http,
                    k if k == LaneKind::Quic as u8 => LaneKind::Quic,
                    _ => LaneKind::None,
                };
                LaneSnapshot {
                    id,
                    name: info.name(),
                    kind,
                    packets,
                    bytes: (bytes > 0 || packets == 0).then_some(bytes),
                    dropped: lcores.iter().map(|s| s.lane_dropped[id]).sum(),
                    // UDP: every packet is built in an mbuf (fast). Relay lanes: `packets`
                    // counts submissions handed to the control plane; `fast` those the data
                    // plane sent itself first (delegated), the rest went the kernel's way.
                    // QUIC: every transaction is written by the data plane.
                    fast: match kind {
                        LaneKind::Udp | LaneKind::Quic => Some(packets),
                        LaneKind::Http => Some(fast),
                        LaneKind::None => None,
                    },
                    fallback: match kind {
                        LaneKind::Udp | LaneKind::Quic => Some(0),
                        LaneKind::Http => Some(packets.saturating_sub(fast)),
                        LaneKind::None => None,
                    },
                }
            })
            .collect();
        Snapshot {
            taken_ns,
            pid,
            state: State::from_u32(h.state.load(Ordering::Acquire)),
            heartbeat_age_ns,
            pid_alive: pid_alive(pid),
            tsc_hz: h.tsc_hz,
            lcores,
            ports,
            lanes,
        }
    }

    /// Whether the dataplane is up: state Running, process alive, heartbeat fresh (the same
    /// test clients apply before they submit).
    pub fn is_up(&self) -> bool {
        self.state == Some(State::Running)
            && self.pid_alive
            && self.heartbeat_age_ns <= HEARTBEAT_TIMEOUT.as_nanos() as u64
    }

    /// Sum of a counter over every lcore.
    pub fn total(&self, c: Counter) -> u64 {
        self.lcores.iter().map(|s| s.get(c)).sum()
    }

    /// Outcomes over every lcore.
    pub fn outcomes(&self) -> Outcomes {
        outcomes_of(self.lcores.iter())
    }

    /// The latency histograms of every lcore, merged.
    pub fn latency(&self) -> Vec<u64> {
        merge_latency(self.lcores.iter())
    }

    /// The delegated sends' latency histograms of every lcore, merged.
    pub fn fast_latency(&self) -> Vec<u64> {
        merge_histograms(self.lcores.iter(), |s| &s.fast_latency)
    }

    /// Converts TSC ticks to seconds with the dataplane's measured rate.
    pub fn ticks_to_secs(&self, ticks: f64) -> f64 {
        if self.tsc_hz == 0 {
            0.0
        } else {
            ticks / self.tsc_hz as f64
        }
    }

    /// The `q` quantile of a histogram in microseconds (low edge of its bucket, ~3% resolution).
    pub fn quantile_us(&self, hist: &[u64], q: f64) -> Option<f64> {
        quantile(hist, q).map(|t| self.ticks_to_secs(t as f64) * 1e6)
    }
}

/// Outcomes over some lcores.
pub fn outcomes_of<'a>(lcores: impl Iterator<Item = &'a StatsSnapshot>) -> Outcomes {
    let mut o = Outcomes::default();
    for s in lcores {
        o.sent += s.get(Counter::TxPackets);
        o.rejected += s.get(Counter::Rejected);
        o.unknown_lane += s.get(Counter::UnknownLane);
        o.dropped += s.get(Counter::TxDropped);
    }
    o
}

/// The latency histograms of some lcores, merged.
pub fn merge_latency<'a>(lcores: impl Iterator<Item = &'a StatsSnapshot>) -> Vec<u64> {
    merge_histograms(lcores, |s| &s.latency)
}

/// One histogram (`pick`) of some lcores, merged.
pub fn merge_histograms<'a>(
    lcores: impl Iterator<Item = &'a StatsSnapshot>,
    pick: impl Fn(&StatsSnapshot) -> &[u64],
) -> Vec<u64> {
    let mut hist = vec![0u64; HISTOGRAM_BUCKETS];
    for s in lcores {
        for (h, v) in hist.iter_mut().zip(pick(s)) {
            *h += v;
        }
    }
    hist
}

/// Exclusive upper edge of `bucket` in ticks (`u64::MAX` for the last, open-ended one).
pub fn bucket_high(bucket: usize) -> u64 {
    if bucket + 1 >= HISTOGRAM_BUCKETS {
        u64::MAX
    } else {
        bucket_low(bucket + 1)
    }
}

/// Samples certainly at most `ticks`: every bucket whose whole range lies at or below it. A
/// bucket straddling `ticks` is left out, so this is a lower bound, exact to the histogram's
/// resolution (Prometheus `le` buckets are built from it).
pub fn count_at_most(hist: &[u64], ticks: u64) -> u64 {
    hist.iter()
        .enumerate()
        .take_while(|&(i, _)| bucket_high(i) <= ticks.saturating_add(1))
        .map(|(_, &n)| n)
        .sum()
}

/// The sum of the samples estimated from bucket midpoints (low edge for the open last bucket).
pub fn approximate_sum(hist: &[u64]) -> f64 {
    hist.iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(i, &n)| {
            let low = bucket_low(i) as f64;
            let mid = if i + 1 >= HISTOGRAM_BUCKETS {
                low
            } else {
                (low + bucket_high(i) as f64 - 1.0) / 2.0
            };
            mid * n as f64
        })
        .sum()
}

/// Per-second rates between two snapshots of the same segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// Seconds between the two reads.
    pub secs: f64,
    /// Per lcore (same order as [`Snapshot::lcores`]).
    pub lcores: Vec<LcoreRates>,
    /// Per port (same order as [`Snapshot::ports`]).
    pub ports: Vec<PortRates>,
    /// Per lane (same order as [`Snapshot::lanes`]).
    pub lanes: Vec<LaneRates>,
}

/// One lcore's rates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LcoreRates {
    /// Packets `tx_burst` accepted per second.
    pub tx_packets: f64,
    /// Bytes of those per second.
    pub tx_bytes: f64,
    /// Packets received per second.
    pub rx_packets: f64,
    /// Bytes received per second.
    pub rx_bytes: f64,
    /// Submissions taken from the rings per second.
    pub submissions: f64,
    /// Packets dropped per second.
    pub dropped: f64,
    /// The part of the interval the lcore did not sleep (1 for a busy lcore); `None` when it
    /// had not started.
    pub busy_share: Option<f64>,
    /// The part of the interval's polls that found work; `None` without polls.
    pub work_share: Option<f64>,
}

/// One port's rates, over the interval between the dataplane's updates of its block.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PortRates {
    /// Packets sent per second.
    pub opackets: f64,
    /// Bytes sent per second.
    pub obytes: f64,
    /// Packets received per second.
    pub ipackets: f64,
    /// Bytes received per second.
    pub ibytes: f64,
}

/// One lane's rates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LaneRates {
    /// Packets sent per second.
    pub packets: f64,
    /// Bytes sent per second, when the lane counts bytes.
    pub bytes: Option<f64>,
    /// Packets dropped per second.
    pub dropped: f64,
}

fn per_sec(later: u64, earlier: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        later.saturating_sub(earlier) as f64 / secs
    }
}

impl Rates {
    /// Rates from `earlier` to `later`. Blocks missing from `earlier` (none, for the same
    /// segment) count from zero.
    pub fn between(earlier: &Snapshot, later: &Snapshot) -> Rates {
        let secs = later.taken_ns.saturating_sub(earlier.taken_ns) as f64 / 1e9;
        let zero_lcore = StatsSnapshot::zero();
        let lcores = later
            .lcores
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let a = earlier.lcores.get(i).unwrap_or(&zero_lcore);
                let r = |c: Counter| per_sec(b.get(c), a.get(c), secs);
                let delta = |c: Counter| b.get(c).saturating_sub(a.get(c));
                // The interval counts from the earlier read or the lcore's start, the later.
                let since = earlier.taken_ns.max(b.started_ns);
                let busy = match b.started_ns {
                    0 => None,
                    _ => busy_share(
                        delta(Counter::SleepNs),
                        later.taken_ns.saturating_sub(since),
                    ),
                };
                LcoreRates {
                    busy_share: busy,
                    work_share: share(delta(Counter::WorkPolls), delta(Counter::Polls)),
                    tx_packets: r(Counter::TxPackets),
                    tx_bytes: r(Counter::TxBytes),
                    rx_packets: r(Counter::RxPackets),
                    rx_bytes: r(Counter::RxBytes),
                    submissions: r(Counter::Submissions),
                    dropped: r(Counter::TxDropped),
                }
            })
            .collect();
        let ports = later
            .ports
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let Some(a) = earlier.ports.get(i) else {
                    return PortRates::default();
                };
                // The block changes only when the dataplane updates it: divide by its own clock.
                let secs = b.updated_ns.saturating_sub(a.updated_ns) as f64 / 1e9;
                let r = |c: PortCounter| per_sec(b.get(c), a.get(c), secs);
                PortRates {
                    opackets: r(PortCounter::Opackets),
                    obytes: r(PortCounter::Obytes),
                    ipackets: r(PortCounter::Ipackets),
                    ibytes: r(PortCounter::Ibytes),
                }
            })
            .collect();
        let lanes = later
            .lanes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let a = earlier.lanes.get(i);
                let a_packets = a.map_or(0, |a| a.packets);
                let a_dropped = a.map_or(0, |a| a.dropped);
                let a_bytes = a.map_or(Some(0), |a| a.bytes);
                LaneRates {
                    packets: per_sec(b.packets, a_packets, secs),
                    bytes: match (b.bytes, a_bytes) {
                        (Some(y), Some(x)) => Some(per_sec(y, x, secs)),
                        _ => None,
                    },
                    dropped: per_sec(b.dropped, a_dropped, secs),
                }
            })
            .collect();
        Rates {
            secs,
            lcores,
            ports,
            lanes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_buckets_are_ordered_and_hold_their_values() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456,
            1 << 32,
            u64::MAX,
        ] {
            let b = stage_bucket_of(v);
            assert!(b >= last && b < STAGE_BUCKETS, "{v}");
            last = b;
            if v < 1 << 33 {
                assert!(stage_bucket_low(b) <= v, "{v}");
                assert!(v < stage_bucket_low(b + 1), "{v}");
            }
        }
        let mut h = [0u64; STAGE_BUCKETS];
        h[stage_bucket_of(100)] = 9;
        h[stage_bucket_of(10_000)] = 1;
        assert_eq!(
            stage_quantile(&h, 0.5),
            Some(stage_bucket_low(stage_bucket_of(100)))
        );
    }

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 1 << 30, 1 << 40, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last, "v={v}");
            assert!(b < HISTOGRAM_BUCKETS);
            if v < 1 << 40 {
                assert!(bucket_low(b) <= v, "v={v} b={b} low={}", bucket_low(b));
                // resolution: within 1/SUB of the value
                assert!(v - bucket_low(b) <= v / SUB + 1, "v={v}");
            }
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), HISTOGRAM_BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = vec![0u64; HISTOGRAM_BUCKETS];
        for v in 1..=1000u64 {
            h[bucket_of(v * 100)] += 1;
        }
        let p50 = quantile(&h, 0.5).unwrap();
        let p99 = quantile(&h, 0.99).unwrap();
        assert!((48_000..=50_000).contains(&p50), "{p50}");
        assert!((96_000..=99_000).contains(&p99), "{p99}");
        assert_eq!(quantile(&[0; 4], 0.5), None);
    }

    #[test]
    fn client_timestamps_out_of_bounds_stay_out_of_the_latency_quantiles() {
        use crate::layout::{LaneInfo, Layout};
        let path = std::env::temp_dir()
            .join(format!("swqos-stats-tsc-{}", std::process::id()))
            .join("segment");
        let layout = Layout::new(1, 16, 1, 1).unwrap();
        let lanes = [LaneInfo::new("a", LaneKind::Udp)];
        let hz = 1_000_000_000; // 1 GHz: one tick a nanosecond
        let seg = Arc::new(Segment::create(&path, layout, &lanes, &["p0"], hz).unwrap());
        seg.set_state(State::Running);
        let mut w = StatsWriter::new(seg.clone(), 0, 0, role::TX).unwrap();
        let now = 1_000 * hz; // 1000 s after the TSC started
        w.begin();
        for _ in 0..10 {
            w.latency_since(now - 5_000, now); // 5 us, sane
            w.fast_latency_since(now - 5_000, now, 0);
        }
        w.latency_since(0, now); // never stamped
        w.latency_since(now + 1_000, now); // in the future
        w.latency_since(now - 61 * hz, now); // older than a minute
        w.fast_latency_since(0, now, 0);
        w.end();
        let snap = Snapshot::read(&seg);
        assert_eq!(snap.latency().iter().sum::<u64>(), 10);
        assert_eq!(snap.fast_latency().iter().sum::<u64>(), 10);
        assert_eq!(snap.total(Counter::BadTimestamp), 4);
        for hist in [snap.latency(), snap.fast_latency()] {
            let p999 = snap.quantile_us(&hist, 0.999).unwrap();
            assert!((4.5..=5.0).contains(&p999), "p99.9 {p999} us");
        }
    }

    #[test]
    fn snapshot_reads_lcores_ports_and_lanes() {
        use crate::layout::{LaneInfo, Layout};
        let path = std::env::temp_dir()
            .join(format!("swqos-stats-test-{}", std::process::id()))
            .join("segment");
        let layout = Layout::new(1, 16, 2, 2).unwrap();
        let lanes = [
            LaneInfo::new("a", LaneKind::Udp),
            LaneInfo::new("b", LaneKind::Udp),
        ];
        let seg =
            Arc::new(Segment::create(&path, layout, &lanes, &["p0", "p1"], 1_000_000).unwrap());
        seg.set_state(State::Running);
        let mut w = StatsWriter::new(seg.clone(), 0, 3, role::TX).unwrap();
        assert!(StatsWriter::new(seg.clone(), 0, 3, role::TX).is_none());

        // An idle poll leaves the epoch alone; a batch with updates moves it by two.
        w.begin();
        w.add(Counter::Polls, 1);
        w.end();
        assert_eq!(seg.stats(0).epoch.load(Ordering::Relaxed), 0);
        w.begin();
        w.add(Counter::TxPackets, 3);
        w.add(Counter::TxBytes, 300);
        w.lane_sent(0);
        w.lane_sent(0);
        w.lane_sent(1);
        w.lane_bytes(0, 200);
        w.lane_bytes(1, 100);
        w.latency_since(10_000, 11_000);
        w.latency_since(10_000, 12_000);
        w.latency_since(10_000, 13_000);
        w.add(Counter::Rejected, 1);
        w.end();
        assert_eq!(seg.stats(0).epoch.load(Ordering::Relaxed), 2);

        let mut p = PortStatsWriter::new(seg.clone(), 1).unwrap();
        let mut c = [0u64; N_PORT_COUNTERS];
        c[PortCounter::Opackets as usize] = 3;
        c[PortCounter::Obytes as usize] = 300;
        p.publish(&c);

        let first = Snapshot::read(&seg);
        assert!(first.is_up());
        assert_eq!(first.lcores.len(), 2);
        assert_eq!(first.lcores[0].lcore_id, 3);
        assert_eq!(first.total(Counter::TxPackets), 3);
        assert_eq!(
            first.outcomes(),
            Outcomes {
                sent: 3,
                rejected: 1,
                unknown_lane: 0,
                dropped: 0
            }
        );
        assert_eq!(first.ports[0].name, "p0");
        assert_eq!(first.ports[0].updated_ns, 0);
        assert_eq!(first.ports[1].name, "p1");
        assert_eq!(first.ports[1].get(PortCounter::Opackets), 3);
        let a = &first.lanes[0];
        assert_eq!((a.name.as_str(), a.packets, a.bytes), ("a", 2, Some(200)));
        assert_eq!((a.fast, a.fallback), (Some(2), Some(0)));
        assert_eq!(first.lanes[1].bytes, Some(100));
        assert_eq!(first.latency().iter().sum::<u64>(), 3);
        let p50 = first.quantile_us(&first.latency(), 0.5).unwrap();
        assert!((1900.0..=2000.0).contains(&p50), "{p50}");

        // Packets without bytes: the byte count is unknown, not zero.
        w.begin();
        w.lane_sent(1);
        w.add(Counter::TxPackets, 1);
        w.end();
        std::thread::sleep(std::time::Duration::from_millis(2));
        c[PortCounter::Opackets as usize] = 4;
        p.publish(&c);
        let second = Snapshot::read(&seg);
        assert_eq!(second.lanes[1].packets, 2);
        assert_eq!(second.lanes[1].bytes, Some(100));
        let rates = Rates::between(&first, &second);
        assert!(rates.secs > 0.0);
        assert!(rates.lcores[0].tx_packets > 0.0);
        assert!(rates.ports[1].opackets > 0.0);
        assert_eq!(rates.lanes[0].packets, 0.0);

        let mut w2 = StatsWriter::new(seg.clone(), 1, 4, role::TX).unwrap();
        w2.begin();
        w2.lane_sent(0);
        w2.end();
        let third = Snapshot::read(&seg);
        assert_eq!(third.lanes[0].packets, 3);
        assert_eq!(third.lanes[0].bytes, Some(200));
        assert!(seg.is_current());
        drop((w, w2, p, seg));
    }

    #[test]
    fn busy_and_work_shares() {
        use crate::layout::{LaneInfo, Layout};
        let path = std::env::temp_dir()
            .join(format!("swqos-stats-shares-{}", std::process::id()))
            .join("segment");
        let layout = Layout::new(1, 16, 2, 1).unwrap();
        let lanes = [LaneInfo::new("a", LaneKind::Udp)];
        let seg = Arc::new(Segment::create(&path, layout, &lanes, &["p0"], 1_000_000).unwrap());
        let mut adaptive = StatsWriter::new(seg.clone(), 0, 1, role::TX).unwrap();
        let mut busy = StatsWriter::new(seg.clone(), 1, 2, role::RX).unwrap();
        let before = Snapshot::read(&seg);
        assert_eq!(
            before.lcores[0].busy_share_since_start(before.taken_ns),
            None
        );
        assert_eq!(before.lcores[0].work_share(), None);

        adaptive.start(poll_mode::ADAPTIVE);
        busy.start(poll_mode::BUSY);
        for w in [&mut adaptive, &mut busy] {
            w.begin();
            w.add(Counter::Polls, 4);
            w.add(Counter::WorkPolls, 1);
            w.end();
        }
        // Sleeps (made up, longer than the test takes): the adaptive lcore "slept" all along.
        adaptive.idle_sleep(3_600_000_000_000);
        let snap = Snapshot::read(&seg);
        let (a, b) = (&snap.lcores[0], &snap.lcores[1]);
        assert_eq!(
            (a.poll_mode, b.poll_mode),
            (poll_mode::ADAPTIVE, poll_mode::BUSY)
        );
        assert_eq!(
            (poll_mode::name(a.poll_mode), poll_mode::name(b.poll_mode)),
            ("adaptive", "busy")
        );
        assert!(a.started_ns > 0 && b.started_ns > 0);
        assert_eq!(
            (a.get(Counter::IdleSleeps), b.get(Counter::IdleSleeps)),
            (1, 0)
        );
        assert_eq!(a.work_share(), Some(0.25));
        let later = snap.taken_ns + 1;
        assert_eq!(a.busy_share_since_start(later), Some(0.0));
        assert_eq!(b.busy_share_since_start(later), Some(1.0));
        let rates = Rates::between(&before, &snap);
        assert_eq!(rates.lcores[0].busy_share, Some(0.0));
        assert_eq!(rates.lcores[1].busy_share, Some(1.0));
        assert_eq!(rates.lcores[1].work_share, Some(0.25));
        drop((adaptive, busy, seg));
    }

    #[test]
    fn cumulative_counts_and_sum() {
        let mut h = vec![0u64; HISTOGRAM_BUCKETS];
        for v in [10u64, 100, 1000, 10_000] {
            h[bucket_of(v)] += 1;
        }
        assert_eq!(count_at_most(&h, 9), 0);
        assert_eq!(count_at_most(&h, 10), 1);
        assert_eq!(count_at_most(&h, 2000), 3);
        assert_eq!(count_at_most(&h, u64::MAX), 4);
        let sum = approximate_sum(&h);
        assert!((10_500.0..11_700.0).contains(&sum), "{sum}");
        for i in 0..HISTOGRAM_BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_high(i) - 1), i);
            assert_eq!(bucket_of(bucket_high(i)), i + 1);
        }
    }
}
