//! Matching each measured request to the relay's own log line (provider, signature, receipt
//! time).

use std::path::Path;

use super::Request;

/// The relay's log line a request was matched to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Receipt {
    /// `CLOCK_MONOTONIC` when the whole body was received.
    pub(super) t_ns: u64,
    /// `CLOCK_MONOTONIC` when the request line was read.
    pub(super) t_first_ns: u64,
    pub(super) conn: u64,
    pub(super) seq: u64,
}

/// base58 of the transaction's first signature (what the relay logs).
pub(super) fn signature_of(tx: &[u8]) -> String {
    // Valid samples only: a short-vec count >= 1 (one byte below 128 here) then 64-byte
    // signatures.
    bs58::encode(&tx[1..65]).into_string()
}

/// One `ok` line of the relay's log.
pub(super) struct LogLine {
    pub(super) t_ns: u64,
    pub(super) t_first_ns: u64,
    pub(super) conn: u64,
    pub(super) seq: u64,
    /// The lane key it belongs to: the provider, or with `by_port` the provider and the port
    /// of the relay's listener (`provider:port`).
    pub(super) provider: String,
    pub(super) signature: String,
}

/// The `ok` lines of the relay's log at `path`; `by_port` keys them by provider and listener
/// port (QUIC lanes: several lanes of one provider on different ports).
pub(super) fn read_relay_log(path: &Path, by_port: bool) -> Result<Vec<LogLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for line in text.lines() {
        // A line being written right now may be incomplete: skip what does not parse.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // The QUIC peer also logs authentication streams and connections.
        if v["ok"] != true || v["kind"].as_str().is_some_and(|k| k != "tx") {
            continue;
        }
        let num = |k: &str| v[k].as_u64().unwrap_or(0);
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        lines.push(LogLine {
            t_ns: num("t_ns"),
            t_first_ns: num("t_first_ns"),
            conn: num("conn"),
            seq: num("seq"),
            provider: if by_port {
                let port = text("listen").rsplit(':').next().unwrap_or("").to_string();
                format!("{}:{port}", text("provider"))
            } else {
                text("provider")
            },
            signature: text("signature"),
        });
    }
    Ok(lines)
}

/// Matches every request to the relay log line of its lane's key (`providers`: per lane, the
/// provider, or provider and relay port) with its signature
/// received inside its window (`send_ns ..= done_ns`; one submission in flight and distinct
/// providers per submission, so windows of the same (provider, signature) do not overlap).
/// Returns how many accepted requests of these providers the log has inside the run but
/// matched to no request.
pub(super) fn match_receipts(
    requests: &mut [Request],
    log: &[LogLine],
    providers: &[&str],
) -> Result<usize, String> {
    let mut by_key: std::collections::HashMap<(&str, &str), Vec<&LogLine>> = Default::default();
    for l in log {
        by_key
            .entry((&l.provider, &l.signature))
            .or_default()
            .push(l);
    }
    let mut matched = 0;
    for r in requests.iter_mut() {
        let provider = providers[r.lane];
        let hits: Vec<&&LogLine> = by_key
            .get(&(provider, r.signature.as_str()))
            .map(|v| {
                v.iter()
                    .filter(|l| l.t_ns >= r.send_ns && l.t_ns <= r.done_ns)
                    .collect()
            })
            .unwrap_or_default();
        match hits.as_slice() {
            [] => r.receipt = None,
            [l] => {
                r.receipt = Some(Receipt {
                    t_ns: l.t_ns,
                    t_first_ns: l.t_first_ns,
                    conn: l.conn,
                    seq: l.seq,
                });
                matched += 1;
            }
            more => {
                return Err(format!(
                    "request {} ({}, {provider}, {}) was received {} times by the relay",
                    r.index,
                    r.route.name(),
                    r.signature,
                    more.len()
                ))
            }
        }
    }
    let (first, last) = (
        requests.iter().map(|r| r.send_ns).min().unwrap_or(0),
        requests.iter().map(|r| r.done_ns).max().unwrap_or(0),
    );
    let in_run = log
        .iter()
        .filter(|l| providers.contains(&l.provider.as_str()) && l.t_ns >= first && l.t_ns <= last)
        .count();
    Ok(in_run.saturating_sub(matched))
}
