//! The summary printed when the dataplane exits: what each lane sent, what each lcore did, what
//! each port counted, and the submit-to-`tx_burst` latency.

use std::fmt;

use dpdk::Port;
use dpdk_config::Config;
use swqos_shm::stats::{self, quantile, Counter, StatsSnapshot, HISTOGRAM_BUCKETS};
use swqos_shm::Segment;

/// One lane's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneLine {
    /// Lane name.
    pub name: String,
    /// Packets handed to the NIC.
    pub sent: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// For relay lanes: how many of `sent` the data plane sent itself (delegated sends); the
    /// rest went through the control plane's kernel connections.
    pub fast: Option<u64>,
    /// Submit-to-`tx_burst` TSC ticks of those fast sends, summed.
    pub fast_ticks: u64,
}

/// One port's NIC counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLine {
    /// Port name.
    pub name: String,
    /// Packets the driver sent.
    pub opackets: u64,
    /// Bytes the driver sent.
    pub obytes: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Packets received.
    pub ipackets: u64,
}

/// The exit summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per lane.
    pub lanes: Vec<LaneLine>,
    /// Per lcore (config order).
    pub lcores: Vec<StatsSnapshot>,
    /// Per port.
    pub ports: Vec<PortLine>,
    /// TSC ticks per microsecond, for latencies.
    pub ticks_per_us: f64,
    /// Largest wake-up latency of the main lcore's 1 ms sleeps, in microseconds.
    pub main_wakeup_max_us: u64,
    /// Things that went wrong (panicked lcores); non-empty means a failed run.
    pub failures: Vec<String>,
}

impl Report {
    /// Reads everything from the segment and the ports.
    pub fn collect(config: &Config, seg: &Segment, ports: &[Port], tsc_hz: u64) -> Report {
        let lcores: Vec<StatsSnapshot> = (0..seg.layout().n_lcores as usize)
            .map(|i| stats::read(seg.stats(i)))
            .collect();
        let lanes = config
            .lanes
            .iter()
            .enumerate()
            .map(|(id, l)| LaneLine {
                name: l.name.clone(),
                sent: lcores.iter().map(|s| s.lane_packets[id]).sum(),
                dropped: lcores.iter().map(|s| s.lane_dropped[id]).sum(),
                fast: matches!(
                    l.kind,
                    dpdk_config::LaneKind::Http(_) | dpdk_config::LaneKind::Quic(_)
                )
                .then(|| lcores.iter().map(|s| s.lane_fast[id]).sum()),
                fast_ticks: lcores.iter().map(|s| s.lane_fast_ticks[id]).sum(),
            })
            .collect();
        let ports = config
            .ports
            .iter()
            .zip(ports)
            .map(|(c, p)| {
                let s = p.stats().unwrap_or_default();
                PortLine {
                    name: c.name.clone(),
                    opackets: s.opackets,
                    obytes: s.obytes,
                    oerrors: s.oerrors,
                    ipackets: s.ipackets,
                }
            })
            .collect();
        Report {
            lanes,
            lcores,
            ports,
            ticks_per_us: tsc_hz as f64 / 1e6,
            main_wakeup_max_us: 0,
            failures: Vec::new(),
        }
    }

    /// Sum of a counter over all lcores.
    pub fn total(&self, c: Counter) -> u64 {
        self.lcores.iter().map(|s| s.get(c)).sum()
    }

    fn latency_us(&self, q: f64) -> Option<f64> {
        let mut hist = vec![0u64; HISTOGRAM_BUCKETS];
        for s in &self.lcores {
            for (h, v) in hist.iter_mut().zip(&s.latency) {
                *h += v;
            }
        }
        quantile(&hist, q).map(|t| t as f64 / self.ticks_per_us)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "submissions {} rejected {} unknown-lane {} sent {} dropped {}",
            self.total(Counter::Submissions),
            self.total(Counter::Rejected),
            self.total(Counter::UnknownLane),
            self.total(Counter::TxPackets),
            self.total(Counter::TxDropped)
        )?;
        for l in &self.lanes {
            match l.fast {
                None => writeln!(f, "lane {}: sent {} dropped {}", l.name, l.sent, l.dropped)?,
                Some(fast) => {
                    write!(
                        f,
                        "lane {}: sent {} dropped {} (fast {fast}, fallback {})",
                        l.name,
                        l.sent,
                        l.dropped,
                        l.sent - fast
                    )?;
                    if fast > 0 {
                        // The data plane's own time: submit to the `tx_burst` of the request.
                        let mean_us = l.fast_ticks as f64 / fast as f64 / self.ticks_per_us;
                        write!(f, ", on the wire {mean_us:.1} us after submit (mean)")?;
                    }
                    writeln!(f)?
                }
            }
        }
        for p in &self.ports {
            writeln!(
                f,
                "port {}: opackets {} obytes {} oerrors {} ipackets {}",
                p.name, p.opackets, p.obytes, p.oerrors, p.ipackets
            )?;
        }
        for s in &self.lcores {
            let nonzero: Vec<String> = Counter::ALL
                .iter()
                .filter(|&&c| s.get(c) != 0)
                .map(|&c| format!("{} {}", c.name(), s.get(c)))
                .collect();
            writeln!(f, "lcore {}: {}", s.lcore_id, nonzero.join(" "))?;
        }
        if let (Some(p50), Some(p99), Some(p999)) = (
            self.latency_us(0.5),
            self.latency_us(0.99),
            self.latency_us(0.999),
        ) {
            writeln!(
                f,
                "submit-to-tx_burst latency: p50 {p50:.2} us, p99 {p99:.2} us, p99.9 {p999:.2} us"
            )?;
        }
        writeln!(
            f,
            "main-lcore wake-up latency: max {} us",
            self.main_wakeup_max_us
        )?;
        for failure in &self.failures {
            writeln!(f, "FAILED: {failure}")?;
        }
        Ok(())
    }
}
