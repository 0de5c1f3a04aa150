//! The latency budget's stopwatch: TSC laps of the send path's stages
//! ([`swqos_shm::stats::Stage`]), taken on the lcore and added to its stats block once the send
//! is done, so a send given up halfway records nothing.

use swqos_shm::stats::{Stage, StatsWriter, N_STAGES};

/// Laps of one send: each stage's ticks since the previous lap.
pub struct Laps {
    last: u64,
    ticks: [u64; N_STAGES],
    /// Bit `s`: stage `s` was timed since [`Laps::start`].
    timed: u32,
}

impl Laps {
    /// A stopwatch with nothing timed.
    pub const fn new() -> Laps {
        Laps {
            last: 0,
            ticks: [0; N_STAGES],
            timed: 0,
        }
    }

    /// Starts timing a send now, forgetting earlier laps.
    #[inline]
    pub fn start(&mut self) {
        self.last = dpdk::tsc();
        self.timed = 0;
    }

    /// Ends `stage` now; repeated laps of one stage add up.
    #[inline]
    pub fn lap(&mut self, stage: Stage) {
        let now = dpdk::tsc();
        let s = stage as usize;
        if self.timed & (1 << s) == 0 {
            self.ticks[s] = 0;
        }
        self.ticks[s] += now.wrapping_sub(self.last);
        self.timed |= 1 << s;
        self.last = now;
    }

    /// When the latest lap ended (TSC).
    #[inline]
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Adds the stages timed since [`Laps::start`] to `stats`.
    #[inline]
    pub fn record(&self, stats: &mut StatsWriter) {
        for stage in Stage::ALL {
            if self.timed & (1 << stage as usize) != 0 {
                stats.stage(stage, self.ticks[stage as usize]);
            }
        }
    }
}

impl Default for Laps {
    fn default() -> Laps {
        Laps::new()
    }
}
