//! The file as written: serde structs that keep the position of every value that a semantic check
//! may need to point at. `resolve` turns them into the public, validated types.
//!
//! Integers are read as `i64` and range-checked in `resolve`, so an out-of-range value gets a
//! message naming the key and the accepted range rather than a bare "expected u16".

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::{Hugepages, LcoreRole, LogLevel, SchedPolicy};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) eal: RawEal,
    pub(crate) shm: Option<RawShm>,
    #[serde(default)]
    pub(crate) mempool: Vec<RawMempool>,
    #[serde(default)]
    pub(crate) port: Vec<RawPort>,
    #[serde(default)]
    pub(crate) lcore: Vec<RawLcore>,
    #[serde(default)]
    pub(crate) lane: Vec<RawLane>,
    pub(crate) control: Option<RawControl>,
    pub(crate) tuning: Option<RawTuning>,
    pub(crate) landing: Option<Spanned<crate::landing::RawLanding>>,
}

/// `[eal]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEal {
    pub(crate) lcores: Spanned<RawLcoreSet>,
    pub(crate) main_lcore: Option<Spanned<i64>>,
    pub(crate) memory_mb: Option<Spanned<i64>>,
    pub(crate) hugepages: Option<Hugepages>,
    pub(crate) huge_dir: Option<Spanned<String>>,
    pub(crate) file_prefix: Option<Spanned<String>>,
    pub(crate) log_level: Option<LogLevel>,
    pub(crate) extra_args: Option<Vec<String>>,
}

/// `eal.lcores`: either a DPDK-style list string or an array of ids.
#[derive(Debug)]
pub(crate) enum RawLcoreSet {
    /// `"0-3,5,7-8"`.
    Text(String),
    /// `[0, 1]`.
    Ids(Vec<Spanned<i64>>),
}

impl<'de> Deserialize<'de> for RawLcoreSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawLcoreSet, D::Error> {
        deserializer.deserialize_any(LcoreSetVisitor)
    }
}

struct LcoreSetVisitor;

impl<'de> Visitor<'de> for LcoreSetVisitor {
    type Value = RawLcoreSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an lcore list string like \"0-3,5\" or an array of lcore ids like [0, 1]")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawLcoreSet, E> {
        Ok(RawLcoreSet::Text(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawLcoreSet, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<Spanned<i64>>()? {
            ids.push(id);
        }
        Ok(RawLcoreSet::Ids(ids))
    }
}

/// `[shm]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShm {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) rings: Option<Spanned<i64>>,
    pub(crate) ring_slots: Option<Spanned<i64>>,
}

/// One `[[mempool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMempool {
    pub(crate) name: Spanned<String>,
    pub(crate) mbufs: Option<Spanned<i64>>,
    pub(crate) cache_size: Option<Spanned<i64>>,
    pub(crate) data_room: Option<Spanned<i64>>,
}

/// One `[[port]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub(crate) name: Spanned<String>,
    pub(crate) device: Spanned<String>,
    pub(crate) rx_queues: Option<Spanned<i64>>,
    pub(crate) tx_queues: Option<Spanned<i64>>,
    pub(crate) rx_descriptors: Option<Spanned<i64>>,
    pub(crate) tx_descriptors: Option<Spanned<i64>>,
    pub(crate) mtu: Option<Spanned<i64>>,
    pub(crate) mac: Option<Spanned<String>>,
    pub(crate) mempool: Option<Spanned<String>>,
    pub(crate) promiscuous: Option<bool>,
}

/// One `[[lcore]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLcore {
    pub(crate) id: Spanned<i64>,
    pub(crate) role: LcoreRole,
    pub(crate) queues: Option<Spanned<Vec<Spanned<RawQueueRef>>>>,
    pub(crate) bridge: Option<Spanned<RawBridge>>,
    pub(crate) poll: Option<Spanned<RawPoll>>,
    pub(crate) idle_polls: Option<Spanned<i64>>,
    pub(crate) max_sleep_us: Option<Spanned<i64>>,
}

/// `lcore.poll`. The public `PollMode` carries the adaptive tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPoll {
    Busy,
    Adaptive,
}

/// `lcore.bridge = { nic = "p0", kernel = "k0", queue = 0 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBridge {
    pub(crate) nic: Spanned<String>,
    pub(crate) kernel: Spanned<String>,
    pub(crate) queue: Option<Spanned<i64>>,
}

/// One `{ port = "p0", queue = 0 }` of `lcore.queues`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueueRef {
    pub(crate) port: Spanned<String>,
    pub(crate) queue: Spanned<i64>,
}

/// `lane.kind`. Kept separate from the public `LaneKind`, which carries each kind's settings.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLaneKind {
    Udp,
    Http,
    Quic,
}

/// One `[[lane]]`. The per-kind keys are optional here and required by `resolve` per kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLane {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Spanned<RawLaneKind>,
    pub(crate) port: Spanned<String>,
    pub(crate) src_ip: Option<Spanned<String>>,
    pub(crate) src_port: Option<Spanned<i64>>,
    pub(crate) dst_ip: Option<Spanned<String>>,
    pub(crate) dst_port: Option<Spanned<i64>>,
    pub(crate) dst_mac: Option<Spanned<String>>,
    pub(crate) provider: Option<Spanned<String>>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) token: Option<Spanned<String>>,
    pub(crate) token_env: Option<Spanned<String>>,
    pub(crate) connections: Option<Spanned<i64>>,
    pub(crate) tls: Option<Spanned<bool>>,
    pub(crate) server_name: Option<Spanned<String>>,
    pub(crate) ca_files: Option<Vec<Spanned<String>>>,
    pub(crate) insecure_skip_verify: Option<Spanned<bool>>,
    pub(crate) keypair_file: Option<Spanned<String>>,
    pub(crate) mev: Option<Spanned<bool>>,
    pub(crate) fallback: Option<Spanned<String>>,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub(crate) metrics_listen: Option<Spanned<String>>,
    pub(crate) rpc_listen: Option<Spanned<String>>,
    pub(crate) rpc_lanes: Option<Vec<Spanned<String>>>,
    pub(crate) rpc_upstream: Option<Spanned<String>>,
    pub(crate) rpc_upstream_timeout_ms: Option<Spanned<i64>>,
}

/// `[tuning]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTuning {
    pub(crate) mlockall: Option<bool>,
    pub(crate) required: Option<bool>,
    pub(crate) lcore_policy: Option<Spanned<SchedPolicy>>,
    pub(crate) lcore_priority: Option<Spanned<i64>>,
    pub(crate) control_cpus: Option<Spanned<String>>,
    pub(crate) control_policy: Option<Spanned<SchedPolicy>>,
    pub(crate) control_priority: Option<Spanned<i64>>,
    pub(crate) latency_monitor: Option<bool>,
}
