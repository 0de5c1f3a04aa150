//! Real-time tuning of swqos processes, one step at a time, each reporting what took effect.
//!
//! Every step returns a [`Step`]: what was attempted, whether it took effect, and why not. The
//! caller logs one line per step and decides (from `[tuning] required`) whether a failure stops
//! the start. Nothing here panics or aborts on a missing privilege: that is an outcome to report.
//!
//! - [`lock_memory`]: `mlockall(MCL_CURRENT | MCL_FUTURE)`, so no page of the process is ever
//!   faulted in on the hot path.
//! - [`set_thread_policy`]: `SCHED_FIFO` / `SCHED_RR` with a priority for the calling thread.
//! - [`pin_thread`]: restrict the calling thread to a set of CPUs.
//! - [`LatencyMonitor`]: a thread that sleeps 1 ms at a time and records how late it wakes, the
//!   scheduling latency every sleeping thread on those CPUs suffers.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The outcome of one tuning step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was attempted, e.g. `mlockall`.
    pub what: String,
    /// Whether it took effect.
    pub ok: bool,
    /// Why not, or a detail of what took effect.
    pub detail: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.ok { "ok" } else { "FAILED" };
        if self.detail.is_empty() {
            write!(f, "tuning: {}: {status}", self.what)
        } else {
            write!(f, "tuning: {}: {status} ({})", self.what, self.detail)
        }
    }
}

fn step(what: impl Into<String>, result: Result<String, String>) -> Step {
    match result {
        Ok(detail) => Step {
            what: what.into(),
            ok: true,
            detail,
        },
        Err(detail) => Step {
            what: what.into(),
            ok: false,
            detail,
        },
    }
}

/// Explains an errno from a privileged call, with the usual fix.
fn privilege_hint(e: &io::Error, cap: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => format!("{e}: needs root or {cap}"),
        Some(libc::ENOMEM) | Some(libc::EAGAIN) => {
            format!("{e}: RLIMIT_MEMLOCK too low (ulimit -l unlimited, or LimitMEMLOCK=infinity)")
        }
        _ => e.to_string(),
    }
}

/// Locks every current and future page of the process in memory.
pub fn lock_memory() -> Step {
    // SAFETY: mlockall only changes the process's paging attributes.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    let result = if r == 0 {
        Ok(String::new())
    } else {
        Err(privilege_hint(&io::Error::last_os_error(), "CAP_IPC_LOCK"))
    };
    step("mlockall", result)
}

/// A Linux scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER` (time sharing).
    Other,
    /// `SCHED_FIFO` with a priority 1..=99.
    Fifo(u8),
    /// `SCHED_RR` with a priority 1..=99.
    Rr(u8),
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Other => f.write_str("SCHED_OTHER"),
            Policy::Fifo(p) => write!(f, "SCHED_FIFO priority {p}"),
            Policy::Rr(p) => write!(f, "SCHED_RR priority {p}"),
        }
    }
}

/// Sets the calling thread's scheduling policy; `who` names the thread in the report.
pub fn set_thread_policy(who: &str, policy: Policy) -> Step {
    let (pol, prio) = match policy {
        Policy::Other => (libc::SCHED_OTHER, 0),
        Policy::Fifo(p) => (libc::SCHED_FIFO, p as i32),
        Policy::Rr(p) => (libc::SCHED_RR, p as i32),
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let r = unsafe { libc::sched_setscheduler(0, pol, &param) };
    let result = if r == 0 {
        Ok(String::new())
    } else {
        Err(privilege_hint(&io::Error::last_os_error(), "CAP_SYS_NICE"))
    };
    step(format!("{who}: {policy}"), result)
}

/// Sets the calling thread's timer slack to `ns` nanoseconds (at least 1: 0 would restore the
/// default of 50 us), so its short sleeps end when asked rather than up to 50 us later;
/// `who` names the thread in the report. (Real-time threads have no slack anyway.)
pub fn set_timer_slack(who: &str, ns: u64) -> Step {
    let ns = ns.max(1);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    let result = if r == 0 {
        Ok(String::new())
    } else {
        Err(io::Error::last_os_error().to_string())
    };
    step(format!("{who}: timer slack {ns} ns"), result)
}

/// Restricts the calling thread to `cpus`; `who` names the thread in the report.
pub fn pin_thread(who: &str, cpus: &[u32]) -> Step {
    let what = format!("{who}: pin to CPUs {}", list(cpus));
    if cpus.is_empty() {
        return step(what, Err("no CPUs given".into()));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c as usize >= libc::CPU_SETSIZE as usize {
            return step(what, Err(format!("CPU {c} out of range")));
        }
        // SAFETY: `c` is within the set's size (checked above).
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    let result = if r == 0 {
        Ok(String::new())
    } else {
        let e = io::Error::last_os_error();
        Err(match e.raw_os_error() {
            Some(libc::EINVAL) => format!("{e}: none of these CPUs is online"),
            _ => e.to_string(),
        })
    };
    step(what, result)
}

/// The CPUs of this machine that are not in `exclude` (for keeping control threads off the
/// dataplane's lcores).
pub fn cpus_except(exclude: &[u32]) -> Vec<u32> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id as u32)
        .filter(|c| !exclude.contains(c))
        .collect()
}

fn list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Wake-up lateness samples, in nanoseconds, as a few fixed buckets plus the maximum.
#[derive(Debug, Default)]
pub struct LatencyStats {
    /// Bucket upper bounds in nanoseconds; the last bucket takes everything above.
    counts: [AtomicU64; BUCKETS_NS.len() + 1],
    max_ns: AtomicU64,
    sum_ns: AtomicU64,
}

/// Upper bounds of the wake-up latency buckets, in nanoseconds.
pub const BUCKETS_NS: [u64; 8] = [
    10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 10_000_000,
];

impl LatencyStats {
    /// Records one sample.
    pub fn record(&self, ns: u64) {
        let i = BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BUCKETS_NS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Samples per bucket (`BUCKETS_NS.len() + 1` entries, the last one above every bound).
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Largest sample.
    pub fn max_ns(&self) -> u64 {
        self.max_ns.load(Ordering::Relaxed)
    }

    /// Sum of all samples.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Ordering::Relaxed)
    }
}

/// A thread that measures its own wake-up lateness from 1 ms sleeps.
pub struct LatencyMonitor {
    stats: Arc<LatencyStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LatencyMonitor {
    /// Starts the monitor, pinned to `cpus` when given (the CPUs whose latency matters).
    pub fn start(cpus: Option<Vec<u32>>) -> io::Result<LatencyMonitor> {
        let stats = Arc::new(LatencyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("swqos-latmon".into())
            .spawn(move || {
                if let Some(cpus) = cpus {
                    let _ = pin_thread("latency monitor", &cpus);
                }
                let period = Duration::from_millis(1);
                while !st.load(Ordering::Relaxed) {
                    let start = std::time::Instant::now();
                    std::thread::sleep(period);
                    let late = start.elapsed().saturating_sub(period);
                    s.record(late.as_nanos() as u64);
                }
            })?;
        Ok(LatencyMonitor {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// The samples so far.
    pub fn stats(&self) -> &Arc<LatencyStats> {
        &self.stats
    }
}

impl Drop for LatencyMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_report_outcomes() {
        // Pinning to every CPU we have always works; to a CPU we do not have never does.
        let all = cpus_except(&[]);
        assert!(!all.is_empty());
        let s = pin_thread("test", &all);
        assert!(s.ok, "{s}");
        let s = pin_thread("test", &[100_000]);
        assert!(!s.ok && s.detail.contains("out of range"), "{s}");
        assert!(!pin_thread("test", &[]).ok);
        // SCHED_OTHER is always allowed.
        let s = set_thread_policy("test", Policy::Other);
        assert!(s.ok, "{s}");
        assert_eq!(s.to_string(), "tuning: test: SCHED_OTHER: ok");
    }

    /// The calling thread's scheduling policy and priority, as the kernel reports them.
    fn current_policy() -> (i32, i32) {
        let mut param = libc::sched_param { sched_priority: -1 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid, writable sched_param.
        let (policy, rc) = unsafe {
            (
                libc::sched_getscheduler(0),
                libc::sched_getparam(0, &mut param),
            )
        };
        assert!(policy >= 0 && rc == 0, "{}", io::Error::last_os_error());
        (policy, param.sched_priority)
    }

    #[test]
    fn realtime_policy_takes_effect_or_reports_privilege_problems() {
        // On a thread of its own, which ends with the policy it got.
        let (s, got) = std::thread::spawn(|| {
            let s = set_thread_policy("rt", Policy::Fifo(10));
            (s, current_policy())
        })
        .join()
        .unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root (as CI runs): the kernel applied exactly what was asked.
            assert!(s.ok, "{s}");
            assert_eq!(got, (libc::SCHED_FIFO, 10), "{s}");
            assert_eq!(s.to_string(), "tuning: rt: SCHED_FIFO priority 10: ok");
        } else {
            // Refused, saying which privilege is missing, and the thread is unchanged.
            assert!(!s.ok && s.detail.contains("CAP_SYS_NICE"), "{s}");
            assert_eq!(got, (libc::SCHED_OTHER, 0), "{s}");
        }
    }

    #[test]
    fn latency_buckets_and_monitor() {
        let st = LatencyStats::default();
        for ns in [5_000, 15_000, 15_000, 2_000_000, 50_000_000] {
            st.record(ns);
        }
        assert_eq!(st.counts(), vec![1, 2, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(st.max_ns(), 50_000_000);
        let m = LatencyMonitor::start(None).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let n: u64 = m.stats().counts().iter().sum();
        assert!(n >= 5, "monitor took {n} samples in 30 ms");
        drop(m);
    }
}
