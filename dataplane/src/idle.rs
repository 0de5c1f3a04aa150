//! What an lcore does with the polls that find no work (`lcore.poll` in the config).
//!
//! A busy lcore does nothing with them: it polls again at once, forever, and a submission waits
//! at most one poll. An adaptive lcore backs off once it has been idle for `idle_polls`
//! consecutive polls: it pauses (`rte_pause`, [`std::hint::spin_loop`]) between polls for as
//! many polls again, then sleeps between polls, 1 us at first and twice as long after each
//! empty poll, up to `max_sleep_us`. Any work resets it to busy polling. The first submission
//! after an idle spell therefore waits at most about `max_sleep_us` (plus how late the kernel
//! wakes the thread), and while the lcore has work its loop is exactly the busy one: the
//! back-off starts only after `idle_polls` empty polls.

use std::time::{Duration, Instant};

use dpdk_config::PollMode;
use swqos_shm::stats::{poll_mode, Counter, StatsWriter};

/// The first sleep of an idle spell.
const FIRST_SLEEP: Duration = Duration::from_micros(1);

/// The idle state of one lcore's loop.
pub struct Idle {
    /// Whether the lcore backs off at all (adaptive polling).
    adaptive: bool,
    /// Empty polls before the lcore pauses; as many again before it sleeps.
    idle_polls: u32,
    /// The longest sleep.
    max_sleep: Duration,
    /// Consecutive empty polls so far.
    empty: u32,
    /// The next sleep.
    sleep: Duration,
}

impl Idle {
    /// The idle state of an lcore polling in `mode`.
    pub fn new(mode: PollMode) -> Idle {
        let (adaptive, idle_polls, max_sleep_us) = match mode {
            PollMode::Busy => (false, u32::MAX, 0),
            PollMode::Adaptive(a) => (true, a.idle_polls.max(1), a.max_sleep_us),
        };
        Idle {
            adaptive,
            idle_polls,
            max_sleep: Duration::from_micros(u64::from(max_sleep_us)).max(FIRST_SLEEP),
            empty: 0,
            sleep: FIRST_SLEEP,
        }
    }

    /// Records in the lcore's stats block that its loop starts now, in this mode.
    pub fn start(&self, stats: &mut StatsWriter) {
        stats.start(if self.adaptive {
            poll_mode::ADAPTIVE
        } else {
            poll_mode::BUSY
        });
    }

    /// Counts a poll that did `work`; says whether the lcore has been idle long enough to back
    /// off (never on a busy lcore).
    #[inline]
    pub fn after_poll(&mut self, work: usize, stats: &mut StatsWriter) -> bool {
        if work > 0 {
            stats.add(Counter::WorkPolls, 1);
        }
        self.count(work)
    }

    /// Backs off once, before the next poll: a pause during the first `idle_polls` polls of
    /// the back-off, then a sleep (counted in `stats`).
    pub fn back_off(&mut self, stats: &mut StatsWriter) {
        match self.next_back_off() {
            None => std::hint::spin_loop(),
            Some(sleep) => {
                let start = Instant::now();
                std::thread::sleep(sleep);
                stats.idle_sleep(start.elapsed().as_nanos() as u64);
            }
        }
    }

    /// [`Idle::after_poll`] without the stats.
    #[inline]
    fn count(&mut self, work: usize) -> bool {
        if work > 0 {
            self.empty = 0;
            self.sleep = FIRST_SLEEP;
            return false;
        }
        self.empty = self.empty.saturating_add(1);
        self.adaptive && self.empty >= self.idle_polls
    }

    /// The back-off before the next poll: `None` for a pause, else how long to sleep (each
    /// sleep twice the last, up to the ceiling).
    fn next_back_off(&mut self) -> Option<Duration> {
        if self.empty - self.idle_polls < self.idle_polls {
            return None;
        }
        let sleep = self.sleep;
        self.sleep = (sleep * 2).min(self.max_sleep);
        Some(sleep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpdk_config::AdaptivePoll;

    #[test]
    fn busy_never_backs_off() {
        let mut idle = Idle::new(PollMode::Busy);
        for _ in 0..100_000 {
            assert!(!idle.count(0));
        }
        assert!(!idle.count(1));
    }

    #[test]
    fn adaptive_pauses_then_sleeps_longer_up_to_the_ceiling_and_work_resets_it() {
        let mut idle = Idle::new(PollMode::Adaptive(AdaptivePoll {
            idle_polls: 3,
            max_sleep_us: 5,
        }));
        let us = Duration::from_micros;
        // What the loop does: poll, and back off when told to.
        let run = |idle: &mut Idle, polls: usize| {
            (0..polls)
                .map(|_| idle.count(0).then(|| idle.next_back_off()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run(&mut idle, 10),
            [
                None,              // busy
                None,              // busy
                Some(None),        // third empty poll: pause
                Some(None),        // pause
                Some(None),        // pause
                Some(Some(us(1))), // sleep
                Some(Some(us(2))),
                Some(Some(us(4))),
                Some(Some(us(5))), // the ceiling
                Some(Some(us(5))),
            ]
        );
        assert!(!idle.count(7), "work: busy again");
        assert_eq!(
            run(&mut idle, 6),
            [
                None,
                None,
                Some(None),
                Some(None),
                Some(None),
                Some(Some(us(1)))
            ]
        );
    }
}
