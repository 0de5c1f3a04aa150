//! Per-lcore statistics in shared memory, read without locks the way FD.io VPP's stats segment is.
//!
//! Each block has exactly one writer (its lcore). The writer brackets each batch of updates with
//! [`StatsWriter::begin`] / [`StatsWriter::end`], which make the epoch odd then even again; a
//! reader copies the block and retries when the epoch was odd or changed meanwhile. Updates are
//! relaxed load+store pairs (plain `mov`s on x86: no locked instruction, since there is one writer).

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::layout::MAX_LANES;
use crate::segment::Segment;

/// The counters of one lcore, by index into [`LcoreStats::counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Busy-poll loop iterations.
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
    /// Submit rings found corrupt (tail behind head or too far ahead) and resynchronised.
    RingCorrupt,
    /// Packets received on polled RX queues.
    RxPackets,
    /// Bytes received.
    RxBytes,
    /// Received frames that are not Ethernet/IPv4 or are too short.
    RxGarbage,
}

/// Number of [`Counter`]s.
pub const N_COUNTERS: usize = Counter::RxGarbage as usize + 1;

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
        }
    }
}

/// Sub-buckets per power of two in the latency histogram (5 bits: about 3% resolution).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Largest power of two recorded exactly; larger values land in the last bucket.
const MAX_MSB: u32 = 40;
/// Buckets of the latency histogram.
pub const HISTOGRAM_BUCKETS: usize =
    (SUB as usize) * 2 + ((MAX_MSB - SUB_BITS) as usize) * SUB as usize;

/// Bucket of a value: exact below `2*SUB`, then `SUB` log-linear sub-buckets per power of two.
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
    /// Indexed by [`Counter`].
    pub counters: [AtomicU64; N_COUNTERS],
    /// Packets sent per lane.
    pub lane_packets: [AtomicU64; MAX_LANES],
    /// Packets dropped per lane.
    pub lane_dropped: [AtomicU64; MAX_LANES],
    /// Submit-to-`tx_burst` latency in TSC ticks, log-linear buckets (see [`bucket_of`]).
    pub latency: [AtomicU64; HISTOGRAM_BUCKETS],
}

/// Role numbers stored in [`LcoreStats::role`].
pub mod role {
    /// Block unused.
    pub const NONE: u32 = 0;
    /// Submit/TX lcore.
    pub const TX: u32 = 1;
    /// NIC RX lcore.
    pub const RX: u32 = 2;
}

fn bump(c: &AtomicU64, by: u64) {
    // One writer per block: a relaxed load and store is an exact increment without a locked op.
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// The single writer of one stats block (held by its lcore).
pub struct StatsWriter {
    seg: Arc<Segment>,
    index: usize,
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
        Some(StatsWriter { seg, index })
    }

    #[inline]
    fn block(&self) -> &LcoreStats {
        self.seg.stats(self.index)
    }

    /// Starts a batch of updates (epoch becomes odd).
    #[inline]
    pub fn begin(&mut self) {
        let epoch = &self.block().epoch;
        let e = epoch.load(Ordering::Relaxed);
        epoch.store(e | 1, Ordering::Relaxed);
        // Readers that see the new values must also see the odd epoch.
        fence(Ordering::Release);
    }

    /// Ends a batch (epoch becomes even and larger).
    #[inline]
    pub fn end(&mut self) {
        let epoch = &self.block().epoch;
        let e = epoch.load(Ordering::Relaxed);
        epoch.store((e | 1) + 1, Ordering::Release);
    }

    /// Adds to a counter.
    #[inline]
    pub fn add(&mut self, c: Counter, by: u64) {
        bump(&self.block().counters[c as usize], by);
    }

    /// Counts one packet sent on `lane`.
    #[inline]
    pub fn lane_sent(&mut self, lane: usize) {
        bump(&self.block().lane_packets[lane % MAX_LANES], 1);
    }

    /// Counts one packet dropped on `lane`.
    #[inline]
    pub fn lane_dropped(&mut self, lane: usize) {
        bump(&self.block().lane_dropped[lane % MAX_LANES], 1);
    }

    /// Records one latency sample in TSC ticks.
    #[inline]
    pub fn latency(&mut self, ticks: u64) {
        bump(&self.block().latency[bucket_of(ticks)], 1);
    }
}

/// A consistent copy of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// DPDK lcore id.
    pub lcore_id: u32,
    /// Role number (see [`role`]).
    pub role: u32,
    /// Indexed by [`Counter`].
    pub counters: [u64; N_COUNTERS],
    /// Packets sent per lane.
    pub lane_packets: [u64; MAX_LANES],
    /// Packets dropped per lane.
    pub lane_dropped: [u64; MAX_LANES],
    /// Latency histogram in TSC ticks.
    pub latency: Vec<u64>,
}

impl StatsSnapshot {
    /// Value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }

    /// The `q` quantile (0..=1) of the latency histogram, in ticks (the low edge of its bucket),
    /// or `None` with no samples.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        quantile(&self.latency, q)
    }
}

/// The `q` quantile of a histogram laid out as [`bucket_of`] says.
pub fn quantile(hist: &[u64], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_low(i));
        }
    }
    Some(bucket_low(hist.len() - 1))
}

/// Copies `block` consistently: retries while the writer is mid-batch. Gives up after many
/// tries (a writer that died mid-batch) and returns the last, possibly torn, copy.
pub fn read(block: &LcoreStats) -> StatsSnapshot {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut snap;
    let mut tries = 0;
    loop {
        let e1 = block.epoch.load(Ordering::Acquire);
        snap = StatsSnapshot {
            lcore_id: block.lcore_id.load(Ordering::Relaxed),
            role: block.role.load(Ordering::Relaxed),
            counters: std::array::from_fn(|i| load(&block.counters[i])),
            lane_packets: std::array::from_fn(|i| load(&block.lane_packets[i])),
            lane_dropped: std::array::from_fn(|i| load(&block.lane_dropped[i])),
            latency: block.latency.iter().map(load).collect(),
        };
        fence(Ordering::Acquire);
        let e2 = block.epoch.load(Ordering::Relaxed);
        tries += 1;
        if (e1 == e2 && e1 & 1 == 0) || tries > 10_000 {
            return snap;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
