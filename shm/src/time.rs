//! Clocks shared by every process on the host.

/// `CLOCK_MONOTONIC` in nanoseconds (the heartbeat clock: system-wide, never jumps).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The time-stamp counter, the same clock the dataplane's `rte_rdtsc` reads (invariant TSC is
/// synchronised across cores on the hosts this runs on). Other architectures fall back to
/// [`monotonic_ns`], so latencies there are in nanoseconds.
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_ns()
    }
}
