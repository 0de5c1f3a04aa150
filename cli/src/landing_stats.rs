//! `swqos stats`'s landing lines: the control plane's landing counters (`[landing]`), read
//! from its metrics endpoint (`[control] metrics_listen`), since they live in that process,
//! not in the segment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

/// One credited lane's landing counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LaneLanding {
    landed: f64,
    with_error: f64,
    expired: f64,
    latency_sum: f64,
}

/// The landing counters by credited lane, from the metrics endpoint at `addr`.
pub(crate) fn fetch(addr: SocketAddr) -> Result<BTreeMap<String, LaneLanding>, String> {
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach swqos control's metrics at {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: swqos\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(parse(&body))
}

/// The `swqos_landing_*` series of an exposition.
pub(crate) fn parse(text: &str) -> BTreeMap<String, LaneLanding> {
    let mut lanes: BTreeMap<String, LaneLanding> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("swqos_landing_")) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once("{lane=\"") else {
            continue;
        };
        let Some(lane) = labels.split('"').next() else {
            continue;
        };
        let e = lanes.entry(lane.to_owned()).or_default();
        match name {
            "swqos_landing_landed_total" => e.landed = v,
            "swqos_landing_landed_with_error_total" => e.with_error = v,
            "swqos_landing_expired_total" => e.expired = v,
            "swqos_landing_latency_seconds_sum" => e.latency_sum = v,
            _ => {}
        }
    }
    lanes
}

/// The lines for `swqos stats`.
pub(crate) fn render_text(o: &mut String, lanes: &Result<BTreeMap<String, LaneLanding>, String>) {
    let _ = writeln!(o);
    let lanes = match lanes {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(o, "landing: {e}");
            return;
        }
    };
    let _ = writeln!(
        o,
        "landing (credited lane: the first relay lane whose relay accepted it)"
    );
    let _ = writeln!(
        o,
        "{:<16} {:>8} {:>10} {:>8} {:>8} {:>12}",
        "lane", "landed", "with-error", "expired", "rate", "mean-latency"
    );
    for (lane, l) in lanes {
        let total = l.landed + l.expired;
        let rate = if total > 0.0 {
            format!("{:.1}%", 100.0 * l.landed / total)
        } else {
            "-".into()
        };
        let mean = if l.landed > 0.0 {
            format!("{:.3} s", l.latency_sum / l.landed)
        } else {
            "-".into()
        };
        let _ = writeln!(
            o,
            "{lane:<16} {:>8} {:>10} {:>8} {rate:>8} {mean:>12}",
            l.landed, l.with_error, l.expired
        );
    }
}

/// The JSON form.
pub(crate) fn render_json(lanes: &Result<BTreeMap<String, LaneLanding>, String>) -> Value {
    match lanes {
        Err(e) => json!({ "error": e }),
        Ok(lanes) => Value::Object(
            lanes
                .iter()
                .map(|(lane, l)| {
                    (
                        lane.clone(),
                        json!({
                            "landed": l.landed, "landed_with_error": l.with_error,
                            "expired": l.expired, "latency_sum_s": l.latency_sum,
                        }),
                    )
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_series_are_read_by_lane() {
        let text = "# HELP x\nswqos_landing_landed_total{lane=\"jito\"} 3\n\
                    swqos_landing_expired_total{lane=\"none\"} 2\n\
                    swqos_landing_latency_seconds_bucket{lane=\"jito\",le=\"1.0\"} 3\n\
                    swqos_landing_latency_seconds_sum{lane=\"jito\"} 1.5\n";
        let l = parse(text);
        assert_eq!(l["jito"].landed, 3.0);
        assert_eq!(l["jito"].latency_sum, 1.5);
        assert_eq!(l["none"].expired, 2.0);
    }
}
