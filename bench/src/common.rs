//! What every benchmark shares: the embedded sample transactions, attaching to the data plane,
//! waiting for completions, quantiles.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use swqos_shm::layout::Status;
use swqos_shm::stats::{self, role, StatsSnapshot};
use swqos_shm::{Client, Segment, SubmitError};
use swqos_wire::solana::Transaction;

/// The wire crate's sample transactions, embedded so the benchmark needs no input file.
pub(crate) const SAMPLES: &str = include_str!("../../wire/tests/data/solana-txs.jsonl");

/// How long to wait for a completion before deciding the dataplane is stuck.
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// Why a benchmark stopped.
pub(crate) enum Failure {
    /// Bad configuration, no segment, bad arguments.
    Setup(String),
    /// The dataplane stopped or misbehaved during the run.
    Run(String),
}

pub(crate) fn setup(config: &Path) -> Result<(Client, Vec<Vec<u8>>), Failure> {
    let config = dpdk_config::Config::load(config).map_err(|e| Failure::Setup(e.to_string()))?;
    let client = Client::attach(&config.shm.path).map_err(|e| Failure::Setup(e.to_string()))?;
    let txs = samples().map_err(Failure::Setup)?;
    Ok((client, txs))
}

/// The valid sample transactions (entries without an `invalid` field), decoded and checked.
pub(crate) fn samples() -> Result<Vec<Vec<u8>>, String> {
    let mut txs = Vec::new();
    for line in SAMPLES.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("embedded samples: {e}"))?;
        if v.get("invalid").is_some() {
            continue;
        }
        let Some(b64) = v.get("base64").and_then(|s| s.as_str()) else {
            continue;
        };
        let tx = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("embedded samples: {e}"))?;
        Transaction::parse(&tx).map_err(|e| format!("embedded sample does not parse: {e}"))?;
        txs.push(tx);
    }
    if txs.is_empty() {
        return Err("no valid embedded sample transactions".into());
    }
    Ok(txs)
}

/// A mask of the first `n` lanes, checked against what the dataplane has.
pub(crate) fn first_lanes(client: &Client, n: u32) -> Result<u64, Failure> {
    let have = client.lane_names().len() as u32;
    if n == 0 || n > have {
        return Err(Failure::Setup(format!(
            "asked for {n} lane(s); the dataplane has {have}"
        )));
    }
    Ok(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
}

pub(crate) fn snapshot(seg: &Segment) -> Vec<StatsSnapshot> {
    (0..seg.layout().n_lcores as usize)
        .map(|i| stats::read(seg.stats(i)))
        .collect()
}

pub(crate) fn role_name(r: u32) -> &'static str {
    match r {
        role::TX => "tx",
        role::RX => "rx",
        _ => "unused",
    }
}

pub(crate) fn status_index(status: u8) -> usize {
    match Status::from_u8(status) {
        Some(Status::Sent) | Some(Status::Relayed) => 0,
        Some(Status::Rejected) => 1,
        Some(Status::UnknownLane) => 2,
        Some(Status::Dropped) | Some(Status::RelayError) => 3,
        // Landing answers: the bench never asks for them.
        Some(Status::Landed) | Some(Status::Expired) | None => 4,
    }
}

pub(crate) const STATUS_NAMES: [&str; 5] = ["sent", "rejected", "unknown-lane", "dropped", "other"];

pub(crate) fn submit_error(e: SubmitError) -> Failure {
    match e {
        SubmitError::NotRunning(_) => Failure::Run(e.to_string()),
        e => Failure::Setup(format!("submission refused: {e}")),
    }
}

/// Reads every completion available now, counting them by status; returns how many.
pub(crate) fn drain(client: &mut Client, by_status: &mut [u64; 5]) -> usize {
    let mut n = 0;
    while let Some(c) = client.poll() {
        by_status[status_index(c.status)] += 1;
        n += 1;
    }
    n
}

/// Busy-polls until `want` completions with `tag` have arrived, pushing their latencies.
pub(crate) fn wait_for(
    client: &mut Client,
    tag: u64,
    want: u32,
    samples: Option<&mut Vec<u64>>,
) -> Result<(), Failure> {
    let mut got = 0;
    let mut spins = 0u64;
    let mut started: Option<Instant> = None;
    let mut samples = samples;
    while got < want {
        match client.poll() {
            Some(c) if c.tag == tag => {
                if !matches!(
                    Status::from_u8(c.status),
                    Some(Status::Sent | Status::Relayed)
                ) {
                    return Err(Failure::Run(format!(
                        "lane {} answered {} (reason {})",
                        c.lane,
                        STATUS_NAMES[status_index(c.status)],
                        c.reason
                    )));
                }
                if let Some(s) = samples.as_deref_mut() {
                    s.push(c.done_tsc.wrapping_sub(c.submit_tsc));
                }
                got += 1;
            }
            Some(_) => {} // a late completion of an earlier submission: ignore
            None => {
                spins += 1;
                if spins.is_multiple_of(4096) {
                    let t = *started.get_or_insert_with(Instant::now);
                    if t.elapsed() > STALL {
                        client
                            .segment()
                            .check_running()
                            .map_err(|e| Failure::Run(e.to_string()))?;
                        return Err(Failure::Run(format!(
                            "no completion for {STALL:?} (tag {tag}, {got}/{want})"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Submits one transaction, polling completions while the ring is full (one in flight: it
/// empties as the data plane sends).
pub(crate) fn submit_waiting(
    client: &mut Client,
    tx: &[u8],
    mask: u64,
    tag: u64,
) -> Result<(), Failure> {
    loop {
        match client.submit(tx, mask, tag) {
            Ok(()) => return Ok(()),
            Err(SubmitError::Full) => {
                client.poll();
            }
            Err(e) => return Err(submit_error(e)),
        }
    }
}

/// Nearest-rank quantile of sorted samples.
pub(crate) fn pct(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The data plane's latency budget over a run: TSC ticks and timings per stage of its send
/// path, and its delegated (fast) and handed-off relay sends, from the stats blocks.
pub(crate) struct Budget {
    ticks: [u64; stats::N_STAGES],
    hist: Vec<[u64; stats::STAGE_BUCKETS]>,
    /// Relay requests the data plane sent itself.
    pub(crate) fast_sends: u64,
    /// Relay requests handed to the control plane (fast ones included).
    pub(crate) handed_off: u64,
}

/// The budget between two snapshots of every lcore's stats block.
pub(crate) fn budget(before: &[StatsSnapshot], after: &[StatsSnapshot]) -> Budget {
    let mut b = Budget {
        ticks: [0; stats::N_STAGES],
        hist: vec![[0; stats::STAGE_BUCKETS]; stats::N_STAGES],
        fast_sends: 0,
        handed_off: 0,
    };
    let zero = StatsSnapshot::zero();
    for (i, a) in after.iter().enumerate() {
        let z = before.get(i).unwrap_or(&zero);
        for s in 0..stats::N_STAGES {
            b.ticks[s] += a.stage_ticks[s].wrapping_sub(z.stage_ticks[s]);
            let h0 = z.stage_hist.get(s);
            for (k, v) in a.stage_hist[s].iter().enumerate() {
                b.hist[s][k] += v.wrapping_sub(h0.map_or(0, |h| h[k]));
            }
        }
        let counter = |c: stats::Counter| a.get(c).wrapping_sub(z.get(c));
        b.fast_sends += counter(stats::Counter::FastSends);
        b.handed_off += counter(stats::Counter::HandedOff);
    }
    b
}

impl Budget {
    /// Prints the table: median, p99 and mean time per stage, in path order.
    pub(crate) fn print(&self, tsc_hz: u64) {
        let ns = |ticks: f64| ticks * 1e9 / tsc_hz as f64;
        println!(
            "latency budget of the data plane (TSC per stage on the TX lcore; {} delegated \
             sends, {} relay requests handed to the control plane):",
            self.fast_sends, self.handed_off
        );
        println!(
            "  {:<18} {:>9} {:>9} {:>9} {:>9}  what",
            "stage", "p50 ns", "p99 ns", "mean ns", "timings"
        );
        let mut per_send = 0.0;
        for stage in stats::Stage::ALL {
            let hist = &self.hist[stage as usize];
            let (t, n) = (self.ticks[stage as usize], hist.iter().sum::<u64>());
            if n == 0 {
                continue;
            }
            let q = |q| stats::stage_quantile(hist, q).map_or(f64::NAN, |t| ns(t as f64));
            if stage != stats::Stage::Poll {
                per_send += q(0.5);
            }
            println!(
                "  {:<18} {:>9.0} {:>9.0} {:>9.0} {:>9}  {}",
                stage.name(),
                q(0.5),
                q(0.99),
                ns(t as f64 / n as f64),
                n,
                match stage {
                    stats::Stage::Poll | stats::Stage::CopyOut | stats::Stage::Validate =>
                        "per submission (the first of a ring's in each poll)",
                    stats::Stage::Queue | stats::Stage::TxBurst => "per poll with fast sends",
                    _ => "per delegated send",
                }
            );
        }
        println!(
            "  sum of the medians after the ring poll: {:.2} us (the data plane's typical own \
             work for a single-lane send; the ring poll is how long a slot waited to be read; \
             quantiles are bucket low edges, about 19% wide; means include preemptions)",
            per_send / 1e3
        );
    }
}

/// The thread of `pid` that runs EAL lcore `lcore` (DPDK names it `dpdk-worker<N>` or
/// `lcore-worker-<N>`).
pub(crate) fn lcore_thread(pid: u32, lcore: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        let comm = comm.trim();
        let digits = comm.trim_start_matches(|c: char| !c.is_ascii_digit());
        (comm.contains("worker") && digits == lcore.to_string())
            .then(|| t.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// Nanoseconds thread `tid` of `pid` has spent on a CPU (the first field of its
/// `/proc/<pid>/task/<tid>/schedstat`): the time it ran, whatever else shared its core.
pub(crate) fn thread_oncpu_ns(pid: u32, tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The data plane's process id, from the segment header.
pub(crate) fn dataplane_pid(client: &Client) -> u32 {
    client
        .segment()
        .header()
        .dataplane_pid
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Moves this process off the CPUs the data plane's lcore threads `lcores` may run on, so a
/// busy-polling lcore never shares its core with the client it waits for (the scheduler put
/// the client there on a loaded 2-core host: both then crawled). Returns the CPUs kept, or why
/// nothing changed.
pub(crate) fn avoid_lcore_cpus(pid: u32, lcores: &[u32]) -> Result<Vec<usize>, String> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut mine: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `mine` is a valid, writable `cpu_set_t` of `size` bytes; 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, size, &mut mine) } != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    for &lcore in lcores {
        let Some(tid) = lcore_thread(pid, lcore) else {
            return Err(format!("no thread of pid {pid} runs lcore {lcore}"));
        };
        // SAFETY: as above.
        let mut theirs: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `theirs` is a valid, writable `cpu_set_t` of `size` bytes.
        if unsafe { libc::sched_getaffinity(tid as libc::pid_t, size, &mut theirs) } != 0 {
            return Err(format!(
                "sched_getaffinity({tid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        for cpu in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: `cpu < CPU_SETSIZE`, within both sets.
            unsafe {
                if libc::CPU_ISSET(cpu, &theirs) {
                    libc::CPU_CLR(cpu, &mut mine);
                }
            }
        }
    }
    // SAFETY: `cpu < CPU_SETSIZE`, within the set.
    let kept: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &mine) })
        .collect();
    if kept.is_empty() {
        return Err("every CPU of this process runs a data-plane lcore".into());
    }
    // SAFETY: `mine` is a valid `cpu_set_t` of `size` bytes; 0 is this (single) thread.
    if unsafe { libc::sched_setaffinity(0, size, &mine) } != 0 {
        return Err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(kept)
}
