//! `throughput`: floods the ring with real signed transactions, each to the first N lanes,
//! draining completions continuously, and reads the dataplane's per-lcore stats blocks before
//! and after to report lane packets per second per TX lcore.

use std::time::{Duration, Instant};

use swqos_shm::stats::{self, role, Counter};
use swqos_shm::{Client, SubmitError};

use crate::common::*;

pub(crate) fn throughput(
    mut client: Client,
    txs: &[Vec<u8>],
    window: Duration,
    lanes: Option<u32>,
) -> Result<(), Failure> {
    let n_lanes = lanes.unwrap_or(client.lane_names().len() as u32);
    let mask = first_lanes(&client, n_lanes)?;
    let tsc_hz = client.tsc_hz();
    let avg_tx = txs.iter().map(Vec::len).sum::<usize>() as f64 / txs.len() as f64;
    println!(
        "throughput: {:.1} s window, {n_lanes} lane(s) per submission, {} sample transactions \
         (avg {avg_tx:.1} B), ring {}, tsc {:.3} GHz",
        window.as_secs_f64(),
        txs.len(),
        client.ring(),
        tsc_hz as f64 / 1e9
    );

    let pid = dataplane_pid(&client);
    let lcores: Vec<(u32, Option<u32>)> = snapshot(client.segment())
        .iter()
        .filter(|s| s.role == role::TX || s.role == role::RX)
        .map(|s| (s.lcore_id, lcore_thread(pid, s.lcore_id)))
        .collect();
    let ids: Vec<u32> = lcores.iter().map(|&(id, _)| id).collect();
    match avoid_lcore_cpus(pid, &ids) {
        Ok(cpus) => {
            println!("client: runs on cpu(s) {cpus:?}, off the data plane's lcores {ids:?}")
        }
        Err(e) => println!("client: not moved off the lcores' cpus ({e})"),
    }
    let oncpu = || -> Vec<Option<u64>> {
        lcores
            .iter()
            .map(|&(_, tid)| tid.and_then(|t| thread_oncpu_ns(pid, t)))
            .collect()
    };

    let idle_ns = idle_poll_ns(&client, &lcores, pid);
    let mut by_status = [0u64; 5];
    let before = snapshot(client.segment());
    let cpu_before = oncpu();
    let start = Instant::now();
    let (submitted_in_window, full_spins) = flood(&mut client, txs, mask, window, &mut by_status)?;
    let after = snapshot(client.segment());
    let cpu_after = oncpu();
    let secs = start.elapsed().as_secs_f64();

    // Collect what is still owed so every submission is accounted for.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        drain(&mut client, &mut by_status);
    }

    println!(
        "client: {:.0} submissions/s ({submitted_in_window} in {secs:.3} s, ring full {full_spins} times), \
         {:.0} lane completions/s",
        submitted_in_window as f64 / secs,
        submitted_in_window as f64 * n_lanes as f64 / secs,
    );
    let statuses: Vec<String> = STATUS_NAMES
        .iter()
        .zip(by_status)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "completions: {}; still outstanding {}",
        statuses.join(", "),
        client.outstanding()
    );

    let (total_pkts, total_bytes, total_drops) = print_lcores(&before, &after, secs, tsc_hz);
    print_oncpu(
        &before,
        &after,
        &lcores,
        (&cpu_before, &cpu_after),
        &idle_ns,
        secs,
    );
    println!(
        "total: {:.0} lane pkt/s, {:.2} Gbit/s (Ethernet frames, no preamble/FCS), dropped {total_drops}",
        total_pkts as f64 / secs,
        total_bytes as f64 * 8.0 / secs / 1e9,
    );
    if by_status[0] == 0 {
        return Err(Failure::Run("no packet was sent".into()));
    }
    Ok(())
}

/// Submits as fast as the ring takes transactions until `window` has passed, draining
/// completions into `by_status`; returns (submitted, times the ring was found full).
fn flood(
    client: &mut Client,
    txs: &[Vec<u8>],
    mask: u64,
    window: Duration,
    by_status: &mut [u64; 5],
) -> Result<(u64, u64), Failure> {
    let mut submitted = 0u64;
    let mut next = 0usize;
    let mut full_spins = 0u64;
    let start = Instant::now();
    let mut iter = 0u64;
    let mut last_progress = Instant::now();
    // After `Full`, retry only once a completion has come back (the dataplane releases slots
    // before it publishes completions), so the client does not re-validate the same transaction
    // in a tight loop while the ring is full.
    let mut may_submit = true;
    loop {
        // Fill the ring until it (or the completion credit) is full, then read completions.
        while may_submit {
            match client.submit(&txs[next], mask, submitted) {
                Ok(()) => {
                    submitted += 1;
                    next += 1;
                    if next == txs.len() {
                        next = 0;
                    }
                }
                Err(SubmitError::Full) => {
                    full_spins += 1;
                    may_submit = false;
                }
                Err(e) => return Err(submit_error(e)),
            }
        }
        if drain(client, by_status) > 0 {
            last_progress = Instant::now();
            may_submit = true;
        }
        iter += 1;
        if iter.is_multiple_of(64) {
            let now = Instant::now();
            if now.duration_since(start) >= window {
                break;
            }
            if now.duration_since(last_progress) > STALL {
                client
                    .segment()
                    .check_running()
                    .map_err(|e| Failure::Run(e.to_string()))?;
                return Err(Failure::Run(format!(
                    "no completion for {STALL:?} with {} outstanding",
                    client.outstanding()
                )));
            }
        }
    }
    Ok((submitted, full_spins))
}

/// For each TX lcore, the time its thread was on a CPU during the window and the lane packets
/// per second of that time: what the lcore does when it runs, whatever else shares its core.
/// On a loaded host the wall-clock rate falls with the share of the core the lcore gets; this
/// one does not (testpmd's is computed the same way by `scripts/bench.sh`).
fn print_oncpu(
    before: &[stats::StatsSnapshot],
    after: &[stats::StatsSnapshot],
    lcores: &[(u32, Option<u32>)],
    (cpu_before, cpu_after): (&[Option<u64>], &[Option<u64>]),
    idle_ns: &[Option<f64>],
    secs: f64,
) {
    for (k, &(id, tid)) in lcores.iter().enumerate() {
        let Some(a) = after
            .iter()
            .find(|s| s.lcore_id == id && s.role == role::TX)
        else {
            continue;
        };
        let Some(b) = before.iter().find(|s| s.lcore_id == id) else {
            continue;
        };
        let d = |c: Counter| a.get(c).wrapping_sub(b.get(c));
        let pkts = d(Counter::TxPackets);
        let idle_polls = d(Counter::Polls).saturating_sub(d(Counter::WorkPolls));
        match (tid, cpu_before[k], cpu_after[k]) {
            (Some(tid), Some(x), Some(y)) if y > x => {
                let on = (y - x) as f64 / 1e9;
                println!(
                    "lcore {id} (tx) on-cpu: {on:.3} s of {secs:.3} s ({:.0}%, thread {tid}), \
                     {:.0} lane pkt per on-cpu second, {:.1} ns per lane packet",
                    on * 100.0 / secs,
                    pkts as f64 / on,
                    on * 1e9 / pkts.max(1) as f64,
                );
                // Less the polls that found nothing (the lcore waiting for the client), at
                // what an empty poll cost with nothing submitted: the rate when always fed.
                if let Some(c) = idle_ns[k] {
                    let busy = (on - idle_polls as f64 * c / 1e9).max(on * 0.01);
                    println!(
                        "lcore {id} (tx) fed: {idle_polls} empty polls x {c:.1} ns = {:.3} s \
                         waiting for the client; {busy:.3} s working: {:.0} lane pkt per \
                         working second, {:.1} ns per lane packet",
                        on - busy,
                        pkts as f64 / busy,
                        busy * 1e9 / pkts.max(1) as f64,
                    );
                }
            }
            _ => println!("lcore {id} (tx) on-cpu: unknown (no schedstat for its thread)"),
        }
    }
}

/// What one empty poll costs each lcore's thread, in on-CPU nanoseconds: measured over 300 ms
/// with nothing submitted, before the window.
fn idle_poll_ns(client: &Client, lcores: &[(u32, Option<u32>)], pid: u32) -> Vec<Option<f64>> {
    let cpu = || -> Vec<Option<u64>> {
        lcores
            .iter()
            .map(|&(_, tid)| tid.and_then(|t| thread_oncpu_ns(pid, t)))
            .collect()
    };
    let (s0, c0) = (snapshot(client.segment()), cpu());
    std::thread::sleep(Duration::from_millis(300));
    let (s1, c1) = (snapshot(client.segment()), cpu());
    lcores
        .iter()
        .enumerate()
        .map(|(k, &(id, _))| {
            let polls = |s: &[stats::StatsSnapshot]| {
                s.iter()
                    .find(|x| x.lcore_id == id)
                    .map(|x| x.get(Counter::Polls))
            };
            let n = polls(&s1)?.checked_sub(polls(&s0)?)?;
            let ns = c1[k]?.checked_sub(c0[k]?)?;
            (n > 0).then(|| ns as f64 / n as f64)
        })
        .collect()
}

/// One line per lcore from the stats blocks before and after the window; returns the TX
/// lcores' (packets, bytes, drops).
fn print_lcores(
    before: &[stats::StatsSnapshot],
    after: &[stats::StatsSnapshot],
    secs: f64,
    tsc_hz: u64,
) -> (u64, u64, u64) {
    let mut total_pkts = 0u64;
    let mut total_bytes = 0u64;
    let mut total_drops = 0u64;
    for (b, a) in before.iter().zip(after) {
        let d = |c: Counter| a.get(c).wrapping_sub(b.get(c));
        let polls = d(Counter::Polls);
        if a.role == role::TX {
            let pkts = d(Counter::TxPackets);
            let bytes = d(Counter::TxBytes);
            let drops = d(Counter::TxDropped);
            total_pkts += pkts;
            total_bytes += bytes;
            total_drops += drops;
            let hist: Vec<u64> = a
                .latency
                .iter()
                .zip(&b.latency)
                .map(|(x, y)| x.wrapping_sub(*y))
                .collect();
            let us = |q: f64| {
                stats::quantile(&hist, q)
                    .map(|t| format!("{:.1}", t as f64 * 1e6 / tsc_hz as f64))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "lcore {} (tx): {:.0} lane pkt/s, {:.2} Gbit/s, avg frame {:.1} B, \
                 {:.0} submissions/s, {polls} polls ({:.0}/s, {:.2} pkt/poll), dropped {drops}, \
                 tx_full {}, no_mbuf {}, completion_overflow {}, rejected {}, \
                 in-flight latency p50 {} us p99 {} us",
                a.lcore_id,
                pkts as f64 / secs,
                bytes as f64 * 8.0 / secs / 1e9,
                if pkts > 0 {
                    bytes as f64 / pkts as f64
                } else {
                    0.0
                },
                d(Counter::Submissions) as f64 / secs,
                polls as f64 / secs,
                if polls > 0 {
                    pkts as f64 / polls as f64
                } else {
                    0.0
                },
                d(Counter::TxFull),
                d(Counter::NoMbuf),
                d(Counter::CompletionOverflow),
                d(Counter::Rejected),
                us(0.5),
                us(0.99),
            );
        } else {
            println!(
                "lcore {} ({}): {polls} polls ({:.0}/s), rx {} pkts",
                a.lcore_id,
                role_name(a.role),
                polls as f64 / secs,
                d(Counter::RxPackets),
            );
        }
    }
    (total_pkts, total_bytes, total_drops)
}
