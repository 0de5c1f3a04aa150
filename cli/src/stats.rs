//! `swqos stats`: the dataplane's live statistics, read from the shared segment without locks
//! (see `swqos_shm::stats`). One snapshot takes two reads `--interval` apart (rates need two);
//! `--watch` keeps refreshing. Per lcore, port and lane: packets and bytes per second, drops,
//! completions by outcome, submit-to-`tx_burst` latency quantiles; per lcore also its poll mode
//! and busy share (the part of the time it did not sleep); `--json` for scripts.
//!
//! The figures come from [`Snapshot::read`] and [`Rates::between`], the same code the
//! Prometheus exporter of `swqos control` uses.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};
use swqos_shm::layout::State;
use swqos_shm::stats::{
    merge_latency, outcomes_of, poll_mode, role, Counter, Outcomes, PortCounter, Rates, Snapshot,
    StatsSnapshot,
};
use swqos_shm::{Segment, SegmentError};

/// `swqos stats` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// The dataplane's TOML configuration (for the shared-memory path).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Refresh until interrupted (the screen is cleared only on a terminal).
    #[arg(long)]
    watch: bool,
    /// Seconds between the two reads rates are computed from (and between refreshes).
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Print JSON (one object per refresh with --watch).
    #[arg(long)]
    json: bool,
}

/// Runs `swqos stats`. Exit 0; 2 for bad usage, configuration, or no dataplane running.
pub(crate) fn run(args: StatsArgs) -> ExitCode {
    if !(args.interval.is_finite() && args.interval > 0.0 && args.interval <= 3600.0) {
        eprintln!("error: --interval must be a number of seconds in (0, 3600]");
        return ExitCode::from(2);
    }
    let config = match dpdk_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let path = &config.shm.path;
    let seg = match attach_live(path) {
        Ok(seg) => seg,
        Err(why) => {
            eprintln!("{why}");
            return ExitCode::from(2);
        }
    };
    let interval = Duration::from_secs_f64(args.interval);
    let clear = args.watch && !args.json && std::io::stdout().is_terminal();
    let mut earlier = Snapshot::read(&seg);
    loop {
        std::thread::sleep(interval);
        if let Err(why) = still_live(&seg) {
            eprintln!("{why}");
            return ExitCode::from(2);
        }
        let later = Snapshot::read(&seg);
        let rates = Rates::between(&earlier, &later);
        let landing = config
            .landing
            .as_ref()
            .map(|_| crate::landing_stats::fetch(config.control.metrics_listen));
        let out = if args.json {
            let mut v = render_json(&later, &rates);
            if let Some(l) = &landing {
                v["landing"] = crate::landing_stats::render_json(l);
            }
            let mut s = v.to_string();
            s.push('\n');
            s
        } else {
            let mut s = render_text(path, &later, &rates);
            if let Some(l) = &landing {
                crate::landing_stats::render_text(&mut s, l);
            }
            s
        };
        let mut stdout = std::io::stdout().lock();
        if clear {
            let _ = stdout.write_all(b"\x1b[H\x1b[2J");
        }
        if stdout.write_all(out.as_bytes()).is_err() || stdout.flush().is_err() {
            return ExitCode::SUCCESS; // stdout closed (`| head`): nothing more to say
        }
        if !args.watch {
            return ExitCode::SUCCESS;
        }
        earlier = later;
    }
}

/// Attaches to the segment at `path` if a live dataplane owns it; otherwise the message to print.
pub(crate) fn attach_live(path: &Path) -> Result<Segment, String> {
    let seg = match Segment::attach_any_state(path) {
        Ok(seg) => seg,
        Err(SegmentError::NotFound(_)) => {
            return Err(format!(
                "no dataplane running: no shared-memory segment at {} (start swqos-dataplane with this config)",
                path.display()
            ))
        }
        Err(SegmentError::NotASegment { why, .. }) if why == "bad magic" => {
            return Err(format!(
                "no dataplane running: the segment at {} is not initialised yet (is swqos-dataplane starting?)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("error: {e}")),
    };
    still_live(&seg)?;
    Ok(seg)
}

/// Errors with the message to print when the segment's dataplane has gone.
fn still_live(seg: &Segment) -> Result<(), String> {
    let snap_pid = seg
        .header()
        .dataplane_pid
        .load(std::sync::atomic::Ordering::Relaxed);
    if seg.is_damaged() {
        return Err(format!(
            "the segment {} was truncated by another process",
            seg.path().display()
        ));
    }
    if !seg.is_current() || seg.state() == Some(State::Stopped) {
        return Err(format!(
            "no dataplane running: the dataplane (pid {snap_pid}) owning {} has stopped",
            seg.path().display()
        ));
    }
    if !swqos_shm::segment::pid_alive(snap_pid) {
        return Err(format!(
            "no dataplane running: {} was left by pid {snap_pid}, which is gone",
            seg.path().display()
        ));
    }
    Ok(())
}

/// The name of a published state (`unknown` for a value no state has).
pub(crate) fn state_name(state: Option<State>) -> &'static str {
    state.map_or("unknown", State::name)
}

/// p50, p99 and p99.9 of a latency histogram in microseconds, as JSON (null without samples).
fn latency_json(snap: &Snapshot, hist: &[u64]) -> Value {
    let q = |q: f64| snap.quantile_us(hist, q);
    json!({
        "samples": hist.iter().sum::<u64>(),
        "p50": q(0.5),
        "p99": q(0.99),
        "p999": q(0.999),
    })
}

fn outcomes_json(o: &Outcomes) -> Value {
    json!({
        "sent": o.sent,
        "rejected": o.rejected,
        "unknown_lane": o.unknown_lane,
        "dropped": o.dropped,
    })
}

fn gbit(bytes_per_s: f64) -> f64 {
    bytes_per_s * 8.0 / 1e9
}

/// The snapshot and rates as one JSON object.
pub(crate) fn render_json(snap: &Snapshot, rates: &Rates) -> Value {
    let all = snap.latency();
    json!({
        "dataplane": {
            "pid": snap.pid,
            "state": state_name(snap.state),
            "up": snap.is_up(),
            "heartbeat_age_ms": snap.heartbeat_age_ns as f64 / 1e6,
            "tsc_hz": snap.tsc_hz,
        },
        "interval_s": rates.secs,
        "totals": {
            "submissions": snap.total(Counter::Submissions),
            "tx_packets": snap.total(Counter::TxPackets),
            "tx_bytes": snap.total(Counter::TxBytes),
            "completions": outcomes_json(&snap.outcomes()),
            "latency_us": latency_json(snap, &all),
            "delegated_send_latency_us": latency_json(snap, &snap.fast_latency()),
        },
        "lcores": lcores_json(snap, rates),
        "ports": ports_json(snap, rates),
        "lanes": lanes_json(snap, rates),
    })
}

/// Each lcore's counters, completions, rates and latency.
fn lcores_json(snap: &Snapshot, rates: &Rates) -> Vec<Value> {
    snap.lcores
        .iter()
        .zip(&rates.lcores)
        .map(|(s, r)| {
            let counters: Map<String, Value> = Counter::ALL
                .iter()
                .map(|&c| (c.name().to_string(), json!(s.get(c))))
                .collect();
            json!({
                "lcore": s.lcore_id,
                "role": role::name(s.role),
                "poll": poll_mode::name(s.poll_mode),
                // Over the interval: the part of the time the lcore did not sleep, and the part
                // of its polls that found work; since its start in `since_start`.
                "busy_share": r.busy_share,
                "work_share": r.work_share,
                "since_start": {
                    "busy_share": s.busy_share_since_start(snap.taken_ns),
                    "work_share": s.work_share(),
                },
                "counters": counters,
                "completions": outcomes_json(&outcomes_of(std::iter::once(s))),
                "rates": {
                    "tx_packets_per_s": r.tx_packets,
                    "tx_bytes_per_s": r.tx_bytes,
                    "tx_gbit_per_s": gbit(r.tx_bytes),
                    "rx_packets_per_s": r.rx_packets,
                    "rx_bytes_per_s": r.rx_bytes,
                    "submissions_per_s": r.submissions,
                    "dropped_per_s": r.dropped,
                },
                "latency_us": latency_json(snap, &s.latency),
            })
        })
        .collect()
}

/// Each port's counters and rates.
fn ports_json(snap: &Snapshot, rates: &Rates) -> Vec<Value> {
    snap.ports
        .iter()
        .zip(&rates.ports)
        .map(|(p, r)| {
            let counters: Map<String, Value> = PortCounter::ALL
                .iter()
                .map(|&c| (c.name().to_string(), json!(p.get(c))))
                .collect();
            json!({
                "name": p.name,
                "counters": counters,
                "updated_ms_ago": (p.updated_ns != 0)
                    .then(|| snap.taken_ns.saturating_sub(p.updated_ns) as f64 / 1e6),
                "rates": {
                    "opackets_per_s": r.opackets,
                    "obytes_per_s": r.obytes,
                    "tx_gbit_per_s": gbit(r.obytes),
                    "ipackets_per_s": r.ipackets,
                    "ibytes_per_s": r.ibytes,
                },
            })
        })
        .collect()
}

/// Each lane's counters and rates.
fn lanes_json(snap: &Snapshot, rates: &Rates) -> Vec<Value> {
    snap.lanes
        .iter()
        .zip(&rates.lanes)
        .map(|(l, r)| {
            json!({
                "id": l.id,
                "name": l.name,
                "kind": l.kind.name(),
                "packets": l.packets,
                "bytes": l.bytes,
                "dropped": l.dropped,
                "fast": l.fast,
                "fallback": l.fallback,
                "rates": {
                    "packets_per_s": r.packets,
                    "bytes_per_s": r.bytes,
                    "gbit_per_s": r.bytes.map(gbit),
                    "dropped_per_s": r.dropped,
                },
            })
        })
        .collect()
}

/// A share (0..=1) as a percentage, `-` when unknown.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1}", v * 100.0))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

fn quantiles(snap: &Snapshot, hist: &[u64]) -> [String; 3] {
    [0.5, 0.99, 0.999].map(|q| us(snap.quantile_us(hist, q)))
}

/// The snapshot and rates as tables.
pub(crate) fn render_text(path: &Path, snap: &Snapshot, rates: &Rates) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "dataplane pid {} {}{}, heartbeat {:.0} ms ago, segment {}, rates over {:.2} s",
        snap.pid,
        state_name(snap.state),
        if snap.is_up() { "" } else { " (NOT UP)" },
        snap.heartbeat_age_ns as f64 / 1e6,
        path.display(),
        rates.secs
    );
    let all = snap.latency();
    let [p50, p99, p999] = quantiles(snap, &all);
    let o_all = snap.outcomes();
    let _ = writeln!(
        o,
        "completions: sent {} rejected {} unknown-lane {} dropped {}; submit-to-tx_burst latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us",
        o_all.sent, o_all.rejected, o_all.unknown_lane, o_all.dropped
    );
    let fast = snap.fast_latency();
    let fast_n: u64 = fast.iter().sum();
    if fast_n > 0 {
        let [p50, p99, p999] = quantiles(snap, &fast);
        let _ = writeln!(
            o,
            "delegated sends (relay lanes): {fast_n}; submit-to-tx_burst of the last segment p50 {p50} us, p99 {p99} us, p99.9 {p999} us"
        );
    }

    lcore_table(&mut o, snap, rates);
    port_table(&mut o, snap, rates);
    lane_table(&mut o, snap, rates);
    o
}

/// A row per lcore: poll mode, busy share (time not asleep) and work share (polls that found
/// work) over the interval, traffic, submissions, completions, latency.
fn lcore_table(o: &mut String, snap: &Snapshot, rates: &Rates) {
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<6} {:<4} {:<8} {:>6} {:>6} {:>12} {:>14} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "LCORE",
        "ROLE",
        "POLL",
        "busy%",
        "work%",
        "pkts/s",
        "bytes/s",
        "Gbit/s",
        "submissions",
        "sent",
        "rejected",
        "unknown",
        "dropped",
        "p50 us",
        "p99 us",
        "p99.9 us"
    );
    for (s, r) in snap.lcores.iter().zip(&rates.lcores) {
        let (pps, bps) = lcore_traffic(s, r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes);
        let out = outcomes_of(std::iter::once(s));
        let [p50, p99, p999] = quantiles(snap, &merge_latency(std::iter::once(s)));
        let _ = writeln!(
            o,
            "{:<6} {:<4} {:<8} {:>6} {:>6} {:>12.0} {:>14.0} {:>8.3} {:>12} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
            s.lcore_id,
            role::name(s.role),
            poll_mode::name(s.poll_mode),
            percent(r.busy_share),
            percent(r.work_share),
            pps,
            bps,
            gbit(bps),
            s.get(Counter::Submissions),
            out.sent,
            out.rejected,
            out.unknown_lane,
            out.dropped,
            p50,
            p99,
            p999
        );
    }
}

/// A row per port: the driver's counters and rates.
fn port_table(o: &mut String, snap: &Snapshot, rates: &Rates) {
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<12} {:>12} {:>14} {:>8} {:>12} {:>14} {:>8} {:>12} {:>8} {:>8} {:>8} {:>9}",
        "PORT",
        "tx pkts/s",
        "tx bytes/s",
        "Gbit/s",
        "opackets",
        "obytes",
        "oerrors",
        "ipackets",
        "imissed",
        "ierrors",
        "rx_nombuf",
        "rx pkts/s"
    );
    for (p, r) in snap.ports.iter().zip(&rates.ports) {
        let _ = writeln!(
            o,
            "{:<12} {:>12.0} {:>14.0} {:>8.3} {:>12} {:>14} {:>8} {:>12} {:>8} {:>8} {:>8} {:>9.0}",
            p.name,
            r.opackets,
            r.obytes,
            gbit(r.obytes),
            p.get(PortCounter::Opackets),
            p.get(PortCounter::Obytes),
            p.get(PortCounter::Oerrors),
            p.get(PortCounter::Ipackets),
            p.get(PortCounter::Imissed),
            p.get(PortCounter::Ierrors),
            p.get(PortCounter::RxNombuf),
            r.ipackets
        );
    }
}

/// A row per lane: packets, bytes, drops, fast and fallback sends.
fn lane_table(o: &mut String, snap: &Snapshot, rates: &Rates) {
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<20} {:<4} {:>12} {:>14} {:>8} {:>12} {:>14} {:>9} {:>12} {:>9}",
        "LANE",
        "KIND",
        "pkts/s",
        "bytes/s",
        "Gbit/s",
        "packets",
        "bytes",
        "dropped",
        "fast",
        "fallback"
    );
    let dash = || "-".to_string();
    for (l, r) in snap.lanes.iter().zip(&rates.lanes) {
        let _ = writeln!(
            o,
            "{:<20} {:<4} {:>12.0} {:>14} {:>8} {:>12} {:>14} {:>9} {:>12} {:>9}",
            l.name,
            l.kind.name(),
            r.packets,
            r.bytes.map_or_else(dash, |b| format!("{b:.0}")),
            r.bytes.map_or_else(dash, |b| format!("{:.3}", gbit(b))),
            l.packets,
            l.bytes.map_or_else(dash, |b| b.to_string()),
            l.dropped,
            l.fast.map_or_else(dash, |b| b.to_string()),
            l.fallback.map_or_else(dash, |b| b.to_string()),
        );
    }
}

/// The packet and byte rates of an lcore's own direction: TX for tx lcores, RX for rx lcores.
fn lcore_traffic(s: &StatsSnapshot, txp: f64, txb: f64, rxp: f64, rxb: f64) -> (f64, f64) {
    if s.role == role::RX {
        (rxp, rxb)
    } else {
        (txp, txb)
    }
}
