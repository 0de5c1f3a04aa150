//! `tx-latency`: submits one transaction at a time and busy-polls for its completions,
//! recording `done_tsc - submit_tsc` (client `rdtsc` just before publishing the slot to the
//! dataplane's `rdtsc` right after `tx_burst` accepted the frame): the data plane alone. On
//! relay lanes it also prints the latency budget (TSC time per stage of the delegated send).

use std::time::Instant;

use swqos_shm::layout::LaneKind;
use swqos_shm::stats;
use swqos_shm::Client;

use crate::common::*;

pub(crate) fn latency(
    mut client: Client,
    txs: &[Vec<u8>],
    count: u32,
    lane_counts: &[u32],
) -> Result<(), Failure> {
    let tsc_hz = client.tsc_hz();
    let us = |t: u64| t as f64 * 1e6 / tsc_hz as f64;
    println!(
        "latency: submit-to-tx_burst (client rdtsc before publishing the slot -> dataplane rdtsc \
         after tx_burst accepted the frame), {count} submissions per lane count, one in flight, \
         tsc {:.3} GHz",
        tsc_hz as f64 / 1e9
    );
    // Start from an empty completion ring.
    let deadline = Instant::now() + STALL;
    while client.outstanding() > 0 && Instant::now() < deadline {
        client.poll();
    }
    let mut tag = 1u64 << 40;
    for &k in lane_counts {
        let mask = first_lanes(&client, k)?;
        let kinds: Vec<u8> = client.segment().lanes().iter().map(|l| l.kind).collect();
        let relay = (0..k as usize).filter(|&i| kinds.get(i) == Some(&(LaneKind::Http as u8)));
        match relay.count() {
            0 => {}
            n if n == k as usize => {
                relay_tx_latency(&mut client, txs, count, k, mask, &mut tag)?;
                continue;
            }
            _ => {
                return Err(Failure::Setup(
                    "the first lanes mix udp and http lanes; measure one kind at a time".into(),
                ))
            }
        }
        let warmup = (count / 4).max(1000);
        let mut samples = Vec::with_capacity(count as usize * k as usize);
        for i in 0..warmup + count {
            tag += 1;
            let tx = &txs[i as usize % txs.len()];
            submit_waiting(&mut client, tx, mask, tag)?;
            let record = if i >= warmup {
                Some(&mut samples)
            } else {
                None
            };
            wait_for(&mut client, tag, k, record)?;
        }
        samples.sort_unstable();
        println!(
            "latency lanes={k}: {} completions, p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us, min {:.2} us",
            samples.len(),
            us(pct(&samples, 0.5)),
            us(pct(&samples, 0.99)),
            us(pct(&samples, 0.999)),
            us(samples[samples.len() - 1]),
            us(samples[0]),
        );
    }
    Ok(())
}

/// `tx-latency` on relay lanes: the data plane's delegated sends (plain or TLS), submit to the
/// `tx_burst` that took a request's last segment, from the data plane's histogram (about 3%
/// resolution; samples count only requests that went the fast way, the rest fell back to the
/// control plane's socket). One submission in flight, each waited for until the relays answer.
pub(crate) fn relay_tx_latency(
    client: &mut Client,
    txs: &[Vec<u8>],
    count: u32,
    k: u32,
    mask: u64,
    tag: &mut u64,
) -> Result<(), Failure> {
    let fast_hist = |client: &Client| {
        stats::merge_histograms(snapshot(client.segment()).iter(), |s| &s.fast_latency)
    };
    let warmup = (count / 10).max(20);
    let mut before = fast_hist(client);
    let mut budget_before = snapshot(client.segment());
    for i in 0..warmup + count {
        if i == warmup {
            before = fast_hist(client);
            budget_before = snapshot(client.segment());
        }
        *tag += 1;
        let tx = &txs[i as usize % txs.len()];
        submit_waiting(client, tx, mask, *tag)?;
        wait_for(client, *tag, k, None)?;
    }
    let after = fast_hist(client);
    let hist: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let fast: u64 = hist.iter().sum();
    let us = |q: f64| {
        stats::quantile(&hist, q)
            .map(|t| format!("{:.2} us", t as f64 * 1e6 / client.tsc_hz() as f64))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "latency lanes={k} (relay, delegated sends): {fast} of {} requests went the fast way, \
         p50 {}, p99 {}, p99.9 {}",
        u64::from(count) * u64::from(k),
        us(0.5),
        us(0.99),
        us(0.999),
    );
    budget(&budget_before, &snapshot(client.segment())).print(client.tsc_hz());
    Ok(())
}
