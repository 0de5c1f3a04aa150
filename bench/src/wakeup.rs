//! `wakeup`: what adaptive polling costs and saves. Submits one transaction every `--gap-ms`
//! (the TX lcore is idle in between: an adaptive one has backed off to its longest sleep) and
//! reports submit-to-`tx_burst` latency of those submissions (client `rdtsc` before publishing
//! the slot to the data plane's `rdtsc` after `tx_burst`), then watches the idle lcore for
//! `--idle-secs`: the CPU its thread used (`utime + stime` in `/proc/<pid>/task/<tid>/stat`)
//! and its busy share from its own counters (the part of the time it did not sleep). Run it
//! once against a busy and once against an adaptive data plane (`scripts/bench-poll.sh`).

use std::time::{Duration, Instant};

use swqos_shm::stats::{poll_mode, role, Counter, StatsSnapshot};
use swqos_shm::Client;

use crate::common::*;

pub(crate) fn wakeup(
    mut client: Client,
    txs: &[Vec<u8>],
    count: u32,
    gap: Duration,
    idle: Duration,
) -> Result<(), Failure> {
    let tsc_hz = client.tsc_hz();
    let us = |t: u64| t as f64 * 1e6 / tsc_hz as f64;
    let (index, lcore) = first_tx_lcore(&client)?;
    let mode = poll_mode::name(lcore.poll_mode);
    let pid = client
        .segment()
        .header()
        .dataplane_pid
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "wakeup: one submission to 1 lane every {} ms, {count} submissions; tx lcore {} polls {mode}",
        gap.as_millis(),
        lcore.lcore_id,
    );
    let mask = first_lanes(&client, 1)?;
    let mut samples = Vec::with_capacity(count as usize);
    let mut tag = 1u64 << 41;
    for i in 0..count {
        std::thread::sleep(gap);
        tag += 1;
        submit_waiting(&mut client, &txs[i as usize % txs.len()], mask, tag)?;
        wait_for(&mut client, tag, 1, Some(&mut samples))?;
    }
    samples.sort_unstable();
    println!(
        "wakeup poll={mode}: {} completions, p50 {:.2} us, p99 {:.2} us, max {:.2} us, min {:.2} us",
        samples.len(),
        us(pct(&samples, 0.5)),
        us(pct(&samples, 0.99)),
        us(samples[samples.len() - 1]),
        us(samples[0]),
    );

    // The idle lcore: its thread's CPU time and its own counters over `idle`, nothing submitted.
    let tid = lcore_thread(pid, lcore.lcore_id);
    let cpu_before = tid.and_then(|t| thread_cpu_ticks(pid, t));
    let before = snapshot(client.segment())[index].clone();
    let start = Instant::now();
    std::thread::sleep(idle);
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = tid.and_then(|t| thread_cpu_ticks(pid, t));
    let after = snapshot(client.segment())[index].clone();
    let delta = |c: Counter| after.get(c).saturating_sub(before.get(c));
    let busy = 1.0 - (delta(Counter::SleepNs) as f64 / 1e9 / secs).clamp(0.0, 1.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = match (tid, cpu_before, cpu_after) {
        (Some(tid), Some(a), Some(b)) => format!(
            "cpu {:.1}% (utime+stime of thread {tid})",
            (b - a) as f64 / hz / secs * 100.0
        ),
        _ => "cpu - (lcore thread not found in /proc)".to_string(),
    };
    println!(
        "idle poll={mode} lcore {} over {secs:.1} s: {cpu}, busy share {:.1}% (not asleep), \
         {} sleeps, {} polls",
        lcore.lcore_id,
        busy * 100.0,
        delta(Counter::IdleSleeps),
        delta(Counter::Polls),
    );
    Ok(())
}

/// The first TX lcore's stats block: its index and a snapshot.
fn first_tx_lcore(client: &Client) -> Result<(usize, StatsSnapshot), Failure> {
    snapshot(client.segment())
        .into_iter()
        .enumerate()
        .find(|(_, s)| s.role == role::TX)
        .ok_or_else(|| Failure::Setup("the data plane has no tx lcore".into()))
}

/// utime + stime of thread `tid` of `pid`, in clock ticks.
fn thread_cpu_ticks(pid: u32, tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
