//! The Prometheus text exposition (format 0.0.4) of a stats [`Snapshot`]: the same figures as
//! `swqos stats`, under conventional names (`_total` counters, base units: seconds, bytes).

use std::fmt::Write as _;

use swqos_shm::stats::{approximate_sum, count_at_most, Counter, PortCounter, Snapshot};

use swqos_shm::stats::{poll_mode, role};

/// Upper bounds (seconds) of the latency histogram's `le` buckets, collapsed from the
/// dataplane's ~3%-resolution buckets.
const LATENCY_BOUNDS: [f64; 17] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
    1.0,
];

/// Help text of the per-lcore counter family for `c`.
fn lcore_help(c: Counter) -> &'static str {
    match c {
        Counter::Polls => "Poll loop iterations.",
        Counter::Submissions => "Submission slots taken from the submit rings.",
        Counter::Rejected => "Submissions rejected by transaction validation.",
        Counter::UnknownLane => "Lane bits naming no configured lane, and submissions naming none.",
        Counter::TxPackets => "Packets accepted by tx_burst.",
        Counter::TxBytes => "Bytes of the packets accepted by tx_burst (Ethernet frames, no FCS).",
        Counter::TxFull => "tx_burst calls or submissions held back by a full TX queue.",
        Counter::TxDropped => "Packets dropped after the send timeout or at shutdown.",
        Counter::NoMbuf => "Moments an mbuf allocation failed (the submission was retried).",
        Counter::CompletionOverflow => {
            "Completion records lost to a full client completion ring (packets were sent)."
        }
        Counter::RingCorrupt => "Submit-ring tails found behind the head (ignored) or over a ring ahead (skipped to).",
        Counter::RxPackets => "Packets received on polled RX queues.",
        Counter::RxBytes => "Bytes received on polled RX queues.",
        Counter::RxGarbage => "Received frames that are not Ethernet/IPv4 or are too short.",
        Counter::ToKernel => "Frames the exception-path bridge passed from the NIC to the kernel.",
        Counter::FromKernel => {
            "Frames the exception-path bridge passed from the kernel to the NIC."
        }
        Counter::BridgeDropped => {
            "Bridged frames dropped because the other side's queue stayed full."
        }
        Counter::HandedOff => {
            "Submissions for relay lanes handed to the control plane (one per lane)."
        }
        Counter::FastSends => {
            "Relay-lane submissions the data plane sent itself on an armed connection."
        }
        Counter::FastRefused => {
            "Delegated sends given up before the claim (could not be built or sealed); sent by the control plane."
        }
        Counter::BadTimestamp => {
            "Latency samples left out because the client's submit timestamp was 0, in the future or over 60 s old."
        }
        Counter::WorkPolls => "Poll loop iterations that found work.",
        Counter::IdleSleeps => {
            "Sleeps an adaptive lcore took between polls while idle (0 on busy lcores)."
        }
        Counter::SleepNs => {
            "Time an adaptive lcore slept between polls while idle (0 on busy lcores)."
        }
    }
}

/// Name and help of the per-port family for `c`.
fn port_family(c: PortCounter) -> (&'static str, &'static str) {
    match c {
        PortCounter::Opackets => (
            "swqos_port_tx_packets_total",
            "Packets the driver sent (DPDK opackets).",
        ),
        PortCounter::Obytes => (
            "swqos_port_tx_bytes_total",
            "Bytes the driver sent (DPDK obytes).",
        ),
        PortCounter::Oerrors => (
            "swqos_port_tx_errors_total",
            "Packets the driver failed to send (DPDK oerrors).",
        ),
        PortCounter::Ipackets => (
            "swqos_port_rx_packets_total",
            "Packets received (DPDK ipackets).",
        ),
        PortCounter::Ibytes => ("swqos_port_rx_bytes_total", "Bytes received (DPDK ibytes)."),
        PortCounter::Imissed => (
            "swqos_port_rx_missed_total",
            "Packets the NIC dropped for want of RX descriptors (DPDK imissed).",
        ),
        PortCounter::Ierrors => (
            "swqos_port_rx_errors_total",
            "Erroneous packets received (DPDK ierrors).",
        ),
        PortCounter::RxNombuf => (
            "swqos_port_rx_nombuf_total",
            "RX mbuf allocation failures (DPDK rx_nombuf).",
        ),
    }
}

/// A label value escaped per the exposition format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// The exposition for `snap`, or only `swqos_dataplane_up 0` when no dataplane is attached.
pub(crate) fn render(snap: Option<&Snapshot>) -> String {
    let mut o = String::new();
    header(
        &mut o,
        "swqos_dataplane_up",
        "gauge",
        "1 when the dataplane is in state running with a live process and a fresh heartbeat, else 0.",
    );
    let up = snap.is_some_and(Snapshot::is_up);
    let _ = writeln!(o, "swqos_dataplane_up {}", u8::from(up));
    let Some(snap) = snap else {
        return o;
    };

    header(
        &mut o,
        "swqos_dataplane_info",
        "gauge",
        "The attached dataplane: its pid and published state (value always 1).",
    );
    let _ = writeln!(
        o,
        "swqos_dataplane_info{{pid=\"{}\",state=\"{}\"}} 1",
        snap.pid,
        snap.state.map_or("unknown", swqos_shm::State::name)
    );
    header(
        &mut o,
        "swqos_heartbeat_age_seconds",
        "gauge",
        "Seconds since the dataplane's main loop last refreshed its heartbeat (every millisecond when healthy).",
    );
    let _ = writeln!(
        o,
        "swqos_heartbeat_age_seconds {}",
        snap.heartbeat_age_ns as f64 / 1e9
    );

    render_lcores(&mut o, snap);
    render_lanes(&mut o, snap);
    render_ports(&mut o, snap);
    render_latency(&mut o, snap);
    o
}

/// The per-lcore counters and the completions by outcome.
fn render_lcores(o: &mut String, snap: &Snapshot) {
    for c in Counter::ALL {
        // Time in seconds, the base unit.
        let (name, scale) = match c {
            Counter::SleepNs => ("swqos_lcore_sleep_seconds_total".to_string(), 1e-9),
            c => (format!("swqos_lcore_{}_total", c.name()), 1.0),
        };
        header(o, &name, "counter", lcore_help(c));
        for s in &snap.lcores {
            let v = s.get(c);
            let _ = if scale == 1.0 {
                writeln!(o, "{name}{{{}}} {v}", lcore_labels(s))
            } else {
                writeln!(o, "{name}{{{}}} {}", lcore_labels(s), v as f64 * scale)
            };
        }
    }

    // The busy share: the part of the time since the lcore started that it did not sleep.
    header(
        o,
        "swqos_lcore_busy_ratio",
        "gauge",
        "Part of the time since the lcore's loop started that it kept its CPU (did not sleep): 1 on busy-polling lcores; over a window: 1 - rate(swqos_lcore_sleep_seconds_total).",
    );
    for s in &snap.lcores {
        if let Some(busy) = s.busy_share_since_start(snap.taken_ns) {
            let _ = writeln!(
                o,
                "swqos_lcore_busy_ratio{{{},poll=\"{}\"}} {busy}",
                lcore_labels(s),
                poll_mode::name(s.poll_mode)
            );
        }
    }

    // Completions by outcome.
    let out = snap.outcomes();
    header(
        o,
        "swqos_completions_total",
        "counter",
        "Outcomes of submissions: sent, dropped and unknown_lane count completion records (one per submission and lane); rejected counts submissions that failed validation (the client gets one rejected record per lane named).",
    );
    for (outcome, v) in [
        ("sent", out.sent),
        ("rejected", out.rejected),
        ("unknown_lane", out.unknown_lane),
        ("dropped", out.dropped),
    ] {
        let _ = writeln!(o, "swqos_completions_total{{outcome=\"{outcome}\"}} {v}");
    }
}

/// The labels of an lcore's series.
fn lcore_labels(s: &swqos_shm::stats::StatsSnapshot) -> String {
    format!("lcore=\"{}\",role=\"{}\"", s.lcore_id, role::name(s.role))
}

/// The per-lane counters.
fn render_lanes(o: &mut String, snap: &Snapshot) {
    header(
        o,
        "swqos_lane_packets_total",
        "counter",
        "Packets sent on the lane (accepted by tx_burst).",
    );
    for l in &snap.lanes {
        let _ = writeln!(
            o,
            "swqos_lane_packets_total{{lane=\"{}\",kind=\"{}\"}} {}",
            esc(&l.name),
            l.kind.name(),
            l.packets
        );
    }
    if snap.lanes.iter().any(|l| l.bytes.is_some()) {
        header(
            o,
            "swqos_lane_bytes_total",
            "counter",
            "Bytes sent on the lane (Ethernet frames, no FCS); absent for lanes whose bytes the dataplane does not count.",
        );
        for l in &snap.lanes {
            if let Some(b) = l.bytes {
                let _ = writeln!(
                    o,
                    "swqos_lane_bytes_total{{lane=\"{}\",kind=\"{}\"}} {b}",
                    esc(&l.name),
                    l.kind.name()
                );
            }
        }
    }
    header(
        o,
        "swqos_lane_dropped_total",
        "counter",
        "Packets dropped on the lane (send timeout, no mbuf, shutdown, too large).",
    );
    for l in &snap.lanes {
        let _ = writeln!(
            o,
            "swqos_lane_dropped_total{{lane=\"{}\",kind=\"{}\"}} {}",
            esc(&l.name),
            l.kind.name(),
            l.dropped
        );
    }
    if snap.lanes.iter().any(|l| l.fast.is_some()) {
        header(
            o,
            "swqos_lane_path_packets_total",
            "counter",
            "Packets sent per path: fast (built in an mbuf and burst by the lcore) or fallback. UDP lanes have only the fast path.",
        );
        for l in &snap.lanes {
            for (path, v) in [("fast", l.fast), ("fallback", l.fallback)] {
                if let Some(v) = v {
                    let _ = writeln!(
                        o,
                        "swqos_lane_path_packets_total{{lane=\"{}\",kind=\"{}\",path=\"{path}\"}} {v}",
                        esc(&l.name),
                        l.kind.name()
                    );
                }
            }
        }
    }
}

/// The per-port counters.
fn render_ports(o: &mut String, snap: &Snapshot) {
    for c in PortCounter::ALL {
        let (name, help) = port_family(c);
        header(o, name, "counter", help);
        for p in &snap.ports {
            let _ = writeln!(o, "{name}{{port=\"{}\"}} {}", esc(&p.name), p.get(c));
        }
    }
}

/// The data plane's latency histograms.
fn render_latency(o: &mut String, snap: &Snapshot) {
    histogram(
        o,
        snap,
        &snap.latency(),
        "swqos_submit_to_tx_latency_seconds",
        "Submit-to-tx_burst latency (client TSC at submit to dataplane TSC after tx_burst accepted the frame), all TX lcores. Buckets are collapsed from ~3%-resolution buckets: a sample counts under le only when its whole fine bucket lies at or below le. _sum is approximated from the fine buckets' midpoints.",
    );
    histogram(
        o,
        snap,
        &snap.fast_latency(),
        "swqos_delegated_send_latency_seconds",
        "Relay lanes' delegated sends (plain or TLS): client TSC at submit to dataplane TSC after tx_burst accepted the request's last segment. Buckets as for swqos_submit_to_tx_latency_seconds.",
    );
}

/// Appends one latency histogram of the data plane (TSC ticks, ~3% buckets) in seconds.
fn histogram(o: &mut String, snap: &Snapshot, hist: &[u64], name: &str, help: &str) {
    header(o, name, "histogram", help);
    for bound in LATENCY_BOUNDS {
        let ticks = (bound * snap.tsc_hz as f64).floor() as u64;
        let _ = writeln!(
            o,
            "{name}_bucket{{le=\"{}\"}} {}",
            fmt_le(bound),
            count_at_most(hist, ticks)
        );
    }
    let count: u64 = hist.iter().sum();
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        o,
        "{name}_sum {}",
        snap.ticks_to_secs(approximate_sum(hist))
    );
    let _ = writeln!(o, "{name}_count {count}");
}

/// The relay thread's own counters (`crate::relay_lanes::METRICS`): which relay lanes may take
/// delegated sends (their request templates match the data plane's), and delegated sends the
/// control plane refused to complete.
pub(crate) fn render_relay(o: &mut String, m: &crate::relay_lanes::RelayMetrics) {
    let lanes = m.lanes();
    if lanes.is_empty() {
        return;
    }
    let name = "swqos_relay_lane_fast_enabled";
    header(
        o,
        name,
        "gauge",
        "1 when the data plane builds the lane's requests exactly as the control plane does (fast sends allowed), 0 when their templates differ.",
    );
    for (lane, on) in &lanes {
        let _ = writeln!(o, "{name}{{lane=\"{}\"}} {}", esc(lane), u8::from(*on));
    }
    let name = "swqos_relay_delegated_refused_total";
    header(
        o,
        name,
        "counter",
        "Delegated sends the control plane did not complete: stale (made on a connection or by a data plane that is gone) or mismatch (not what the control plane would write; the connection was closed).",
    );
    let (stale, mismatch) = m.refused();
    let _ = writeln!(o, "{name}{{reason=\"stale\"}} {stale}");
    let _ = writeln!(o, "{name}{{reason=\"mismatch\"}} {mismatch}");
}

/// Appends the landing feedback counters (`[landing]`): nothing when landing feedback is off.
pub(crate) fn render_landing(o: &mut String) {
    let Some(lanes) = crate::landing::metrics_snapshot() else {
        return;
    };
    let counters = [
        (
            "swqos_landing_landed_total",
            "Watched submissions seen on chain at the configured commitment, by the lane credited with landing them (the first relay lane whose relay accepted it; lane=\"none\" when no relay accepted it).",
        ),
        (
            "swqos_landing_landed_with_error_total",
            "Of swqos_landing_landed_total: landed with an error (the transaction failed on chain).",
        ),
        (
            "swqos_landing_expired_total",
            "Watched submissions not seen on chain within the landing window (or left when the control plane stopped), by the credited lane as for landed.",
        ),
    ];
    for (i, (name, help)) in counters.iter().enumerate() {
        header(o, name, "counter", help);
        for (lane, c) in &lanes {
            let v = [c.landed, c.landed_with_error, c.expired][i];
            let _ = writeln!(o, "{name}{{lane=\"{}\"}} {v}", esc(lane));
        }
    }
    let name = "swqos_landing_latency_seconds";
    header(
        o,
        name,
        "histogram",
        "From the client's submit to the landing verdict (WebSocket notification or status poll) of landed submissions, by credited lane.",
    );
    for (lane, c) in &lanes {
        let lane = esc(lane);
        let mut cumulative = 0;
        for (le, n) in crate::landing::LATENCY_BUCKETS.iter().zip(&c.buckets) {
            cumulative += n;
            let _ = writeln!(
                o,
                "{name}_bucket{{lane=\"{lane}\",le=\"{}\"}} {cumulative}",
                fmt_le(*le)
            );
        }
        let _ = writeln!(
            o,
            "{name}_bucket{{lane=\"{lane}\",le=\"+Inf\"}} {}",
            c.landed
        );
        let _ = writeln!(o, "{name}_sum{{lane=\"{lane}\"}} {}", c.latency_sum);
        let _ = writeln!(o, "{name}_count{{lane=\"{lane}\"}} {}", c.landed);
    }
}

/// Appends the control plane's wake-up latency histogram (from `swqos_rt::LatencyMonitor`).
pub(crate) fn render_wakeup_latency(o: &mut String, stats: &swqos_rt::LatencyStats) {
    let name = "swqos_control_wakeup_latency_seconds";
    header(
        o,
        name,
        "histogram",
        "How late the control plane's 1 ms sleeps wake up: the scheduling latency of its CPUs.",
    );
    let counts = stats.counts();
    let mut cumulative = 0;
    for (bound, n) in swqos_rt::BUCKETS_NS.iter().zip(&counts) {
        cumulative += n;
        let le = fmt_le(*bound as f64 / 1e9);
        o.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
    }
    let total: u64 = counts.iter().sum();
    o.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {total}\n"));
    o.push_str(&format!("{name}_sum {}\n", stats.sum_ns() as f64 / 1e9));
    o.push_str(&format!("{name}_count {total}\n"));
}

/// A bucket bound as Prometheus clients print them (`1e-06`, `0.0001`, `1.0`).
fn fmt_le(v: f64) -> String {
    if v < 1e-4 {
        let s = format!("{v:e}"); // "1e-6"
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bounds_print_like_prometheus_clients() {
        assert_eq!(fmt_le(1e-6), "1e-06");
        assert_eq!(fmt_le(5e-5), "5e-05");
        assert_eq!(fmt_le(1e-4), "0.0001");
        assert_eq!(fmt_le(0.1), "0.1");
        assert_eq!(fmt_le(1.0), "1.0");
    }

    #[test]
    fn no_dataplane_is_up_zero_only() {
        let text = render(None);
        assert!(text.contains("# TYPE swqos_dataplane_up gauge\nswqos_dataplane_up 0\n"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    }
}
