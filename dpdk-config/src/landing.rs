//! `[landing]`: landing feedback. The control plane asks a Solana RPC whether each watched
//! submission landed (`signatureSubscribe` over `ws_url`, batched `getSignatureStatuses` on
//! `rpc_url` when the WebSocket is down or a subscription stays silent).
//!
//! ```toml
//! [landing]
//! rpc_url = "http://127.0.0.1:8899"
//! ws_url = "ws://127.0.0.1:8900"      # optional: without it, polling only
//! commitment = "confirmed"            # processed | confirmed | finalized
//! expire_ms = 60000                   # not seen within this: expired
//! ws_timeout_ms = 10000               # a subscription silent this long is polled too
//! poll_interval_ms = 1000             # getSignatureStatuses every ...
//! poll_batch = 256                    # ... with up to this many signatures per call
//! rpc_timeout_ms = 2000               # one HTTP call, connect to last byte
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::Source;
use crate::resolve::{in_range, optional, plain_url};
use crate::{ConfigError, RpcUpstream};

/// The commitment a transaction must reach to count as landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Commitment {
    /// Seen in a block of the node's fork (may be rolled back).
    Processed,
    /// Voted on by a supermajority (the default).
    Confirmed,
    /// Rooted.
    Finalized,
}

impl Commitment {
    /// The name Solana's RPC uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Commitment::Processed => "processed",
            Commitment::Confirmed => "confirmed",
            Commitment::Finalized => "finalized",
        }
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[landing]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingConfig {
    /// The HTTP JSON-RPC endpoint for `getSignatureStatuses` (`rpc_url`, `http://` only).
    pub rpc_url: RpcUpstream,
    /// The WebSocket endpoint for `signatureSubscribe` (`ws_url`, `ws://` only); `None`:
    /// polling only.
    pub ws_url: Option<RpcUpstream>,
    /// The commitment that counts as landed (`commitment`, default `confirmed`).
    pub commitment: Commitment,
    /// A submission not seen on chain this long after the control plane got it is expired
    /// (`expire_ms`, 1000..=600000, default 60000: a blockhash is valid for 150 blocks, about
    /// 60 to 90 s, so a transaction not landed by then rarely lands later).
    pub expire: Duration,
    /// A subscription without a notification this long is also polled (`ws_timeout_ms`,
    /// 100..=600000, default 10000).
    pub ws_timeout: Duration,
    /// How often `getSignatureStatuses` runs while signatures need polling
    /// (`poll_interval_ms`, 50..=60000, default 1000).
    pub poll_interval: Duration,
    /// Signatures per `getSignatureStatuses` call (`poll_batch`, 1..=256, default 256, the
    /// RPC's limit).
    pub poll_batch: usize,
    /// How long one HTTP call may take (`rpc_timeout_ms`, 1..=10000, default 2000).
    pub rpc_timeout: Duration,
}

/// `[landing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLanding {
    rpc_url: Option<Spanned<String>>,
    ws_url: Option<Spanned<String>>,
    commitment: Option<Commitment>,
    expire_ms: Option<Spanned<i64>>,
    ws_timeout_ms: Option<Spanned<i64>>,
    poll_interval_ms: Option<Spanned<i64>>,
    poll_batch: Option<Spanned<i64>>,
    rpc_timeout_ms: Option<Spanned<i64>>,
}

/// Validates `[landing]`.
pub(crate) fn resolve(
    raw: Option<Spanned<RawLanding>>,
    src: &Source<'_>,
) -> Result<Option<LandingConfig>, ConfigError> {
    let Some(table) = raw else {
        return Ok(None);
    };
    let raw = table.get_ref();
    let Some(rpc_url) = &raw.rpc_url else {
        return Err(src.error(
            &table,
            "[landing] has no `rpc_url`; expected the Solana RPC to ask, like \
             rpc_url = \"http://127.0.0.1:8899\"",
        ));
    };
    let rpc_url = plain_url(src, rpc_url, "rpc_url", "http")?;
    let ws_url = match &raw.ws_url {
        Some(v) => Some(plain_url(src, v, "ws_url", "ws")?),
        None => None,
    };
    let ms = |v: &Option<Spanned<i64>>, key: &str, default: i64, min: i64, max: i64| {
        optional(v, default, |v| in_range(src, v, key, min, max))
            .map(|n| Duration::from_millis(n as u64))
    };
    Ok(Some(LandingConfig {
        rpc_url,
        ws_url,
        commitment: raw.commitment.unwrap_or(Commitment::Confirmed),
        expire: ms(&raw.expire_ms, "expire_ms", 60_000, 1_000, 600_000)?,
        ws_timeout: ms(&raw.ws_timeout_ms, "ws_timeout_ms", 10_000, 100, 600_000)?,
        poll_interval: ms(&raw.poll_interval_ms, "poll_interval_ms", 1_000, 50, 60_000)?,
        poll_batch: optional(&raw.poll_batch, 256, |v| {
            in_range(src, v, "poll_batch", 1, 256)
        })? as usize,
        rpc_timeout: ms(&raw.rpc_timeout_ms, "rpc_timeout_ms", 2_000, 1, 10_000)?,
    }))
}
