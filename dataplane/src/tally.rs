//! Per-burst accumulators for the statistics of frames `tx_burst` accepted: one stats update
//! per lane (packets, bytes) and one latency-histogram update per run of a submission's frames,
//! instead of one of each per frame. The stats block is published once per poll (its epoch),
//! so readers see exactly the counts they saw before, only with fewer shared-memory writes.

use swqos_shm::layout::{lanes_of, MAX_LANES};
use swqos_shm::stats::StatsWriter;

/// Packets and bytes per lane since the last [`LaneTally::flush`].
pub struct LaneTally {
    /// Bit `l`: lane `l` has counts to flush.
    touched: u64,
    packets: [u32; MAX_LANES],
    bytes: [u64; MAX_LANES],
    /// The submission stamp of the current run of latency samples, and its length.
    run_tsc: u64,
    run_len: u64,
}

impl LaneTally {
    /// Nothing counted.
    pub const fn new() -> LaneTally {
        LaneTally {
            touched: 0,
            packets: [0; MAX_LANES],
            bytes: [0; MAX_LANES],
            run_tsc: 0,
            run_len: 0,
        }
    }

    /// Counts one frame of `len` bytes sent on `lane`, submitted at `submit_tsc`, that left in
    /// the `tx_burst` of `done` (TSC); flushes the previous run of latency samples when this
    /// frame belongs to another submission.
    #[inline]
    pub fn sent(
        &mut self,
        stats: &mut StatsWriter,
        lane: u8,
        len: u16,
        submit_tsc: u64,
        done: u64,
    ) {
        let l = lane as usize % MAX_LANES;
        self.touched |= 1 << l;
        self.packets[l] += 1;
        self.bytes[l] += u64::from(len);
        if self.run_len > 0 && self.run_tsc != submit_tsc {
            stats.latency_since_many(self.run_tsc, done, self.run_len);
            self.run_len = 0;
        }
        self.run_tsc = submit_tsc;
        self.run_len += 1;
    }

    /// Adds everything counted since the last flush to `stats` (`done`: the `tx_burst`'s TSC,
    /// as given to [`LaneTally::sent`]).
    #[inline]
    pub fn flush(&mut self, stats: &mut StatsWriter, done: u64) {
        if self.run_len > 0 {
            stats.latency_since_many(self.run_tsc, done, self.run_len);
            self.run_len = 0;
        }
        for lane in lanes_of(self.touched) {
            let l = lane as usize;
            stats.lane_sent_many(l, u64::from(self.packets[l]));
            stats.lane_bytes(l, self.bytes[l]);
            self.packets[l] = 0;
            self.bytes[l] = 0;
        }
        self.touched = 0;
    }
}

impl Default for LaneTally {
    fn default() -> LaneTally {
        LaneTally::new()
    }
}
