//! Semantic validation: turns the raw file into [`Config`], filling defaults, checking ranges and
//! resolving names to indices. The first error wins; it points at the offending value.

use crate::raw::{RawBridge, RawPoll, RawQueueRef};
use crate::{AdaptivePoll, PollMode, MAX_IDLE_POLLS, MAX_SLEEP_US};
use crate::{
    BridgeConfig, HttpLane, PortDevice, Provider, QuicLane, QuicProvider, Secret, TlsLane,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::error::Source;
use crate::raw::{
    RawConfig, RawControl, RawEal, RawLane, RawLaneKind, RawLcore, RawLcoreSet, RawMempool,
    RawPort, RawShm, RawTuning,
};
use crate::syntax::{self, MAX_LCORE_ID};
use crate::DEFAULT_SHM_PATH;
use crate::{
    Config, ConfigError, ControlConfig, EalConfig, LaneConfig, LaneKind, LcoreConfig, LcoreRole,
    MempoolConfig, PortConfig, QueueRef, RpcUpstream, SchedPolicy, ShmConfig, TuningConfig,
    UdpLane,
};
use crate::{DEFAULT_RPC_UPSTREAM_TIMEOUT_MS, MAX_RPC_UPSTREAM_TIMEOUT_MS};

/// Most lanes a configuration may define.
const MAX_LANES: usize = 64;
/// Longest lane name in bytes (the name is stored in fixed 32-byte fields with a NUL).
const MAX_LANE_NAME: usize = 31;

type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) fn resolve(raw: RawConfig, src: &Source<'_>) -> Result<Config> {
    let eal = resolve_eal(raw.eal, src)?;
    let shm = resolve_shm(raw.shm, src)?;
    let mempools = resolve_mempools(raw.mempool, src)?;
    if raw.port.is_empty() {
        return Err(src.error_at(
            0,
            "no [[port]] is defined; expected at least one [[port]] table",
        ));
    }
    let ports = resolve_ports(raw.port, &mempools, src)?;
    let (lcores, lcore_spans) = resolve_lcores(raw.lcore, &eal, &ports, src)?;
    let lanes = resolve_lanes(raw.lane, &lcores, &lcore_spans, &ports, src)?;
    let control = resolve_control(raw.control, &lanes, src)?;
    let tuning = resolve_tuning(raw.tuning, &eal, src)?;
    let landing = crate::landing::resolve(raw.landing, src)?;
    Ok(Config {
        landing,
        eal,
        shm,
        mempools,
        ports,
        lcores,
        lanes,
        control,
        tuning,
    })
}

/// `value` as checked to lie in `min..=max`; the message names `key` and the range.
pub(crate) fn in_range(
    src: &Source<'_>,
    value: &Spanned<i64>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<i64> {
    let n = *value.get_ref();
    if n < min || n > max {
        return Err(src.error(
            value,
            format!("`{key}` = {n} is out of range; expected {min}..={max}"),
        ));
    }
    Ok(n)
}

/// Like [`in_range`], and also a power of two.
fn power_of_two(
    src: &Source<'_>,
    value: &Spanned<i64>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<i64> {
    let n = *value.get_ref();
    if n < min || n > max || n.count_ones() != 1 {
        return Err(src.error(
            value,
            format!("`{key}` = {n} is not valid; expected a power of two in {min}..={max}"),
        ));
    }
    Ok(n)
}

/// An optional integer checked with `check`, or `default` when absent.
pub(crate) fn optional(
    value: &Option<Spanned<i64>>,
    default: i64,
    check: impl FnOnce(&Spanned<i64>) -> Result<i64>,
) -> Result<i64> {
    match value {
        Some(value) => check(value),
        None => Ok(default),
    }
}

fn absolute_path(src: &Source<'_>, value: &Spanned<String>, key: &str) -> Result<PathBuf> {
    let path = PathBuf::from(value.get_ref());
    if !path.is_absolute() {
        return Err(src.error(
            value,
            format!(
                "`{key}` = {:?} is not valid; expected an absolute path",
                value.get_ref()
            ),
        ));
    }
    Ok(path)
}

fn mac(src: &Source<'_>, value: &Spanned<String>, key: &str) -> Result<[u8; 6]> {
    syntax::parse_mac(value.get_ref()).ok_or_else(|| {
        src.error(
            value,
            format!(
                "`{key}` = {:?} is not a MAC address; expected six hex bytes like \"02:00:00:00:00:01\"",
                value.get_ref()
            ),
        )
    })
}

fn resolve_eal(raw: RawEal, src: &Source<'_>) -> Result<EalConfig> {
    let mut lcores: Vec<u32> = match raw.lcores.get_ref() {
        RawLcoreSet::Text(text) => syntax::parse_lcore_list(text).map_err(|reason| {
            src.error(
                &raw.lcores,
                format!(
                    "`lcores` = {text:?} is not a valid lcore list ({reason}); \
                     expected ids and ranges like \"0-3,5,7-8\""
                ),
            )
        })?,
        RawLcoreSet::Ids(ids) => {
            let mut out: Vec<u32> = Vec::with_capacity(ids.len());
            for id in ids {
                let n = in_range(src, id, "lcores", 0, i64::from(MAX_LCORE_ID))? as u32;
                if out.contains(&n) {
                    return Err(src.error(id, format!("lcore {n} is listed twice in `lcores`")));
                }
                out.push(n);
            }
            out
        }
    };
    if lcores.is_empty() {
        return Err(src.error(
            &raw.lcores,
            "`lcores` is empty; expected at least one lcore",
        ));
    }
    lcores.sort_unstable();

    let main_lcore = match &raw.main_lcore {
        Some(value) => {
            let id = *value.get_ref();
            if !lcores.iter().any(|&l| i64::from(l) == id) {
                return Err(src.error(
                    value,
                    format!(
                        "`main_lcore` = {id} is not in `eal.lcores` ({}); expected one of those lcores",
                        syntax::format_lcore_list(&lcores)
                    ),
                ));
            }
            id as u32
        }
        None => lcores[0],
    };

    let memory_mb = optional(&raw.memory_mb, 256, |v| {
        in_range(src, v, "memory_mb", 1, i64::from(u32::MAX))
    })? as u32;

    let huge_dir = match &raw.huge_dir {
        Some(value) => Some(absolute_path(src, value, "huge_dir")?),
        None => None,
    };

    let file_prefix = match &raw.file_prefix {
        Some(value) => {
            if !syntax::is_name(value.get_ref(), b"_-") {
                return Err(src.error(
                    value,
                    format!(
                        "`file_prefix` = {:?} is not valid; expected letters, digits, `_` and `-`",
                        value.get_ref()
                    ),
                ));
            }
            value.get_ref().clone()
        }
        None => "swqos".to_owned(),
    };

    Ok(EalConfig {
        lcores,
        main_lcore,
        memory_mb,
        hugepages: raw.hugepages.unwrap_or_default(),
        huge_dir,
        file_prefix,
        log_level: raw.log_level,
        extra_args: raw.extra_args.unwrap_or_default(),
    })
}

fn resolve_shm(raw: Option<RawShm>, src: &Source<'_>) -> Result<ShmConfig> {
    let Some(raw) = raw else {
        return Ok(ShmConfig {
            path: PathBuf::from(DEFAULT_SHM_PATH),
            rings: 8,
            ring_slots: 256,
        });
    };
    let path = match &raw.path {
        Some(value) => absolute_path(src, value, "path")?,
        None => PathBuf::from(DEFAULT_SHM_PATH),
    };
    let rings = optional(&raw.rings, 8, |v| in_range(src, v, "rings", 1, 64))? as u32;
    let ring_slots = optional(&raw.ring_slots, 256, |v| {
        power_of_two(src, v, "ring_slots", 16, 65536)
    })? as u32;
    Ok(ShmConfig {
        path,
        rings,
        ring_slots,
    })
}

fn resolve_mempools(raw: Vec<RawMempool>, src: &Source<'_>) -> Result<Vec<MempoolConfig>> {
    if raw.is_empty() {
        return Ok(vec![MempoolConfig {
            name: "default".to_owned(),
            mbufs: 8191,
            cache_size: 256,
            data_room: 2176,
        }]);
    }
    let mut pools: Vec<MempoolConfig> = Vec::with_capacity(raw.len());
    for pool in &raw {
        let name = pool.name.get_ref();
        if !syntax::is_name(name, b"_-") {
            return Err(src.error(
                &pool.name,
                format!(
                    "mempool name {name:?} is not valid; expected letters, digits, `_` and `-`"
                ),
            ));
        }
        if pools.iter().any(|p| &p.name == name) {
            return Err(src.error(
                &pool.name,
                format!("mempool `{name}` is defined twice; expected unique mempool names"),
            ));
        }
        let mbufs = optional(&pool.mbufs, 8191, |v| {
            in_range(src, v, "mbufs", 64, i64::from(u32::MAX))
        })?;
        let cache_size = optional(&pool.cache_size, 256, |v| {
            in_range(src, v, "cache_size", 0, 512)
        })?;
        // DPDK refuses a cache larger than the pool divided by 1.5 (CACHE_FLUSHTHRESH_MULTIPLIER).
        if cache_size * 3 > mbufs * 2 {
            let at = pool.cache_size.as_ref().or(pool.mbufs.as_ref());
            let message = format!(
                "`cache_size` = {cache_size} is too large for `mbufs` = {mbufs}; \
                 expected at most mbufs / 1.5 = {}",
                mbufs * 2 / 3
            );
            return Err(match at {
                Some(value) => src.error(value, message),
                None => src.error(&pool.name, message),
            });
        }
        let data_room = optional(&pool.data_room, 2176, |v| {
            in_range(src, v, "data_room", 256, 65535)
        })?;
        pools.push(MempoolConfig {
            name: name.clone(),
            mbufs: mbufs as u32,
            cache_size: cache_size as u32,
            data_room: data_room as u16,
        });
    }
    Ok(pools)
}

fn resolve_ports(
    raw: Vec<RawPort>,
    mempools: &[MempoolConfig],
    src: &Source<'_>,
) -> Result<Vec<PortConfig>> {
    let mut ports: Vec<PortConfig> = Vec::with_capacity(raw.len());
    for port in &raw {
        let name = port.name.get_ref();
        if !syntax::is_name(name, b"_-") {
            return Err(src.error(
                &port.name,
                format!("port name {name:?} is not valid; expected letters, digits, `_` and `-`"),
            ));
        }
        if ports.iter().any(|p| &p.name == name) {
            return Err(src.error(
                &port.name,
                format!("port `{name}` is defined twice; expected unique port names"),
            ));
        }

        let device = syntax::parse_device(port.device.get_ref()).map_err(|reason| {
            src.error(
                &port.device,
                format!(
                    "`device` = {:?} is not valid ({reason}); expected a PCI address like \
                     \"0000:3b:00.0\" or a vdev like \"net_null0\" or \"net_pcap0,tx_pcap=/tmp/out.pcap\"",
                    port.device.get_ref()
                ),
            )
        })?;
        if let Some(other) = ports
            .iter()
            .find(|p| p.device.eal_name() == device.eal_name())
        {
            return Err(src.error(
                &port.device,
                format!(
                    "device `{}` is already used by port `{}`; expected each port on its own device",
                    device.eal_name(),
                    other.name
                ),
            ));
        }

        let rx_queues = optional(&port.rx_queues, 1, |v| in_range(src, v, "rx_queues", 0, 64))?;
        let tx_queues = optional(&port.tx_queues, 1, |v| in_range(src, v, "tx_queues", 1, 64))?;
        let rx_descriptors = optional(&port.rx_descriptors, 1024, |v| {
            power_of_two(src, v, "rx_descriptors", 64, 32768)
        })?;
        let tx_descriptors = optional(&port.tx_descriptors, 1024, |v| {
            power_of_two(src, v, "tx_descriptors", 64, 32768)
        })?;
        let mtu = match &port.mtu {
            Some(value) => Some(in_range(src, value, "mtu", 68, 9600)? as u16),
            None => None,
        };
        let port_mac = port_mac(src, port.mac.as_ref())?;
        let mempool = port_mempool(src, port, mempools)?;

        ports.push(PortConfig {
            name: name.clone(),
            device,
            rx_queues: rx_queues as u16,
            tx_queues: tx_queues as u16,
            rx_descriptors: rx_descriptors as u16,
            tx_descriptors: tx_descriptors as u16,
            mtu,
            mac: port_mac,
            mempool,
            promiscuous: port.promiscuous.unwrap_or(false),
        });
    }
    Ok(ports)
}

/// A port's `mac`: unicast and non-zero.
fn port_mac(src: &Source<'_>, value: Option<&Spanned<String>>) -> Result<Option<[u8; 6]>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let address = mac(src, value, "mac")?;
    if address[0] & 1 != 0 || address == [0; 6] {
        return Err(src.error(
            value,
            format!(
                "`mac` = {:?} is not valid; expected a unicast, non-zero MAC address",
                value.get_ref()
            ),
        ));
    }
    Ok(Some(address))
}

/// The index of a port's mempool: the one it names, or `default`.
fn port_mempool(src: &Source<'_>, port: &RawPort, mempools: &[MempoolConfig]) -> Result<usize> {
    let names = || list_names(mempools.iter().map(|p| p.name.as_str()));
    match &port.mempool {
        Some(value) => mempools
            .iter()
            .position(|p| &p.name == value.get_ref())
            .ok_or_else(|| {
                src.error(
                    value,
                    format!(
                        "mempool `{}` is not defined; expected one of {}",
                        value.get_ref(),
                        names()
                    ),
                )
            }),
        None => mempools
            .iter()
            .position(|p| p.name == "default")
            .ok_or_else(|| {
                src.error(
                    &port.name,
                    format!(
                        "port `{}` uses mempool `default`, which is not defined; \
                         expected `mempool` = one of {}",
                        port.name.get_ref(),
                        names()
                    ),
                )
            }),
    }
}

/// `` `a`, `b`, `c` ``, for "expected one of" messages.
fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The resolved lcore map and, per lcore, the position of its `id` for later errors.
fn resolve_lcores(
    raw: Vec<RawLcore>,
    eal: &EalConfig,
    ports: &[PortConfig],
    src: &Source<'_>,
) -> Result<(Vec<LcoreConfig>, Vec<usize>)> {
    let mut lcores: Vec<LcoreConfig> = Vec::with_capacity(raw.len());
    let mut id_spans = Vec::with_capacity(raw.len());
    // (port, role, queue) -> the lcore that owns or polls it.
    let mut owners: HashMap<(usize, LcoreRole, u16), u32> = HashMap::new();

    for lcore in &raw {
        let id = lcore_id(lcore, eal, &lcores, src)?;
        let role = lcore.role;
        let direction = match role {
            LcoreRole::Tx => "TX",
            LcoreRole::Rx => "RX",
        };
        let mut queues = Vec::new();
        if let Some(list) = &lcore.queues {
            for entry in list.get_ref() {
                let (port, queue) =
                    lcore_queue(entry.get_ref(), role, id, ports, &mut owners, src)?;
                queues.push(QueueRef { port, queue });
            }
        }
        if queues.is_empty() {
            let message = format!(
                "lcore {id} ({role}) has no queues; expected `queues` = [ {{ port = \"...\", queue = N }} ] \
                 listing the {direction} queues it {}",
                match role {
                    LcoreRole::Tx => "owns",
                    LcoreRole::Rx => "polls",
                }
            );
            return Err(match &lcore.queues {
                Some(list) => src.error(list, message),
                None => src.error(&lcore.id, message),
            });
        }

        let bridge = match &lcore.bridge {
            None => None,
            Some(b) => Some(resolve_bridge(
                b,
                id,
                role,
                &queues,
                ports,
                &mut owners,
                src,
            )?),
        };

        let poll = resolve_poll(lcore, id, src)?;

        id_spans.push(lcore.id.span().start);
        lcores.push(LcoreConfig {
            id,
            role,
            queues,
            bridge,
            poll,
        });
    }
    Ok((lcores, id_spans))
}

/// An `[[lcore]]`'s id: one of `eal.lcores`, not the main lcore, listed once.
fn lcore_id(
    lcore: &RawLcore,
    eal: &EalConfig,
    lcores: &[LcoreConfig],
    src: &Source<'_>,
) -> Result<u32> {
    let id = *lcore.id.get_ref();
    if !eal.lcores.iter().any(|&l| i64::from(l) == id) {
        return Err(src.error(
            &lcore.id,
            format!(
                "lcore {id} is not in `eal.lcores` ({}); expected one of those lcores",
                syntax::format_lcore_list(&eal.lcores)
            ),
        ));
    }
    let id = id as u32;
    if id == eal.main_lcore {
        return Err(src.error(
            &lcore.id,
            format!(
                "lcore {id} is the main lcore (`eal.main_lcore`), which runs the control \
                 loop; expected only the other lcores in [[lcore]]"
            ),
        ));
    }
    if lcores.iter().any(|l| l.id == id) {
        return Err(src.error(
            &lcore.id,
            format!("lcore {id} is listed twice in [[lcore]]; expected unique ids"),
        ));
    }
    Ok(id)
}

/// One `queues` entry of lcore `id` in `role`: a queue that exists on a defined port and that
/// no lcore (this one included) has taken yet; recorded in `owners`.
fn lcore_queue(
    entry: &RawQueueRef,
    role: LcoreRole,
    id: u32,
    ports: &[PortConfig],
    owners: &mut HashMap<(usize, LcoreRole, u16), u32>,
    src: &Source<'_>,
) -> Result<(usize, u16)> {
    let direction = match role {
        LcoreRole::Tx => "TX",
        LcoreRole::Rx => "RX",
    };
    let port_name = entry.port.get_ref();
    let port = ports
        .iter()
        .position(|p| &p.name == port_name)
        .ok_or_else(|| {
            src.error(
                &entry.port,
                format!(
                    "port `{port_name}` is not defined; expected one of {}",
                    list_names(ports.iter().map(|p| p.name.as_str()))
                ),
            )
        })?;
    let count = match role {
        LcoreRole::Tx => ports[port].tx_queues,
        LcoreRole::Rx => ports[port].rx_queues,
    };
    let queue = *entry.queue.get_ref();
    if queue < 0 || queue >= i64::from(count) {
        let expected = if count == 0 {
            format!(
                "port `{port_name}` has no {direction} queues (`{}_queues` = 0)",
                direction.to_lowercase()
            )
        } else {
            format!(
                "expected 0..={} (port `{port_name}` has `{}_queues` = {count})",
                count - 1,
                direction.to_lowercase()
            )
        };
        return Err(src.error(
            &entry.queue,
            format!("{direction} queue {queue} does not exist; {expected}"),
        ));
    }
    let queue = queue as u16;
    if let Some(&owner) = owners.get(&(port, role, queue)) {
        let message = if owner == id {
            format!(
                "lcore {id} lists {direction} queue {queue} of port `{port_name}` twice; \
                 expected each queue once"
            )
        } else {
            format!(
                "{direction} queue {queue} of port `{port_name}` is already taken by \
                 lcore {owner}, so lcore {id} cannot use it too; expected each queue \
                 on exactly one lcore"
            )
        };
        return Err(src.error(&entry.queue, message));
    }
    owners.insert((port, role, queue), id);
    Ok((port, queue))
}

/// `lcore.poll` and its tunables, which only an adaptive lcore may set.
fn resolve_poll(lcore: &RawLcore, id: u32, src: &Source<'_>) -> Result<PollMode> {
    let adaptive = lcore
        .poll
        .as_ref()
        .is_some_and(|p| *p.get_ref() == RawPoll::Adaptive);
    if !adaptive {
        for (key, value) in [
            ("idle_polls", &lcore.idle_polls),
            ("max_sleep_us", &lcore.max_sleep_us),
        ] {
            if let Some(value) = value {
                return Err(src.error(
                    value,
                    format!(
                        "`{key}` applies to adaptive polling only, and lcore {id} polls busy; \
                         expected `poll = \"adaptive\"` with it, or no `{key}`"
                    ),
                ));
            }
        }
        return Ok(PollMode::Busy);
    }
    let mut a = AdaptivePoll::default();
    if let Some(v) = &lcore.idle_polls {
        a.idle_polls = in_range(src, v, "idle_polls", 1, i64::from(MAX_IDLE_POLLS))? as u32;
    }
    if let Some(v) = &lcore.max_sleep_us {
        a.max_sleep_us = in_range(src, v, "max_sleep_us", 1, i64::from(MAX_SLEEP_US))? as u32;
    }
    Ok(PollMode::Adaptive(a))
}

/// Checks `lcore.bridge`: a tx lcore, two different defined ports (the kernel one a TAP or
/// virtio_user vdev), an RX queue free on both, and the lcore's own TX queue on both.
fn resolve_bridge(
    raw: &Spanned<RawBridge>,
    id: u32,
    role: LcoreRole,
    queues: &[QueueRef],
    ports: &[PortConfig],
    owners: &mut HashMap<(usize, LcoreRole, u16), u32>,
    src: &Source<'_>,
) -> Result<BridgeConfig> {
    if role != LcoreRole::Tx {
        return Err(src.error(
            raw,
            format!("lcore {id} is an {role} lcore; expected `bridge` only on a tx lcore"),
        ));
    }
    let b = raw.get_ref();
    let find = |name: &Spanned<String>| {
        ports
            .iter()
            .position(|p| &p.name == name.get_ref())
            .ok_or_else(|| {
                src.error(
                    name,
                    format!(
                        "port `{}` is not defined; expected one of {}",
                        name.get_ref(),
                        list_names(ports.iter().map(|p| p.name.as_str()))
                    ),
                )
            })
    };
    let nic = find(&b.nic)?;
    let kernel = find(&b.kernel)?;
    check_bridge_kernel(b, nic, kernel, ports, src)?;
    let queue = match &b.queue {
        None => 0,
        Some(q) => {
            let v = *q.get_ref();
            if !(0..=i64::from(u16::MAX)).contains(&v) {
                return Err(src.error(q, format!("queue {v} is out of range")));
            }
            v as u16
        }
    };
    for port in [nic, kernel] {
        let name = &ports[port].name;
        let at = if port == nic { &b.nic } else { &b.kernel };
        if queue >= ports[port].rx_queues {
            return Err(src.error(
                at,
                format!(
                    "port `{name}` has `rx_queues` = {}; the bridge polls RX queue {queue} on it",
                    ports[port].rx_queues
                ),
            ));
        }
        if let Some(&owner) = owners.get(&(port, LcoreRole::Rx, queue)) {
            return Err(src.error(
                at,
                format!(
                    "RX queue {queue} of port `{name}` is already polled by lcore {owner}; expected each queue on exactly one lcore"
                ),
            ));
        }
        owners.insert((port, LcoreRole::Rx, queue), id);
        if !queues.iter().any(|q| q.port == port) {
            return Err(src.error(
                at,
                format!(
                    "lcore {id} bridges port `{name}` but owns no TX queue on it; expected a `{{ port = \"{name}\", queue = N }}` in its `queues`"
                ),
            ));
        }
    }
    Ok(BridgeConfig { nic, kernel, queue })
}

/// A bridge's kernel side: a port of its own, and a kernel interface (TAP or virtio_user).
fn check_bridge_kernel(
    b: &RawBridge,
    nic: usize,
    kernel: usize,
    ports: &[PortConfig],
    src: &Source<'_>,
) -> Result<()> {
    if nic == kernel {
        return Err(src.error(
            &b.kernel,
            "the kernel side is the NIC itself; expected a second port (a net_tap or virtio_user vdev)",
        ));
    }
    let kernel_is_tap = matches!(
        &ports[kernel].device,
        PortDevice::Vdev { name, .. } if name.starts_with("net_tap") || name.starts_with("virtio_user")
    );
    if !kernel_is_tap {
        return Err(src.error(
            &b.kernel,
            format!(
                "port `{}` is {}; expected a kernel interface: a `net_tapN,iface=...` or `virtio_userN,...` vdev",
                ports[kernel].name, ports[kernel].device
            ),
        ));
    }
    Ok(())
}

fn resolve_lanes(
    raw: Vec<RawLane>,
    lcores: &[LcoreConfig],
    lcore_spans: &[usize],
    ports: &[PortConfig],
    src: &Source<'_>,
) -> Result<Vec<LaneConfig>> {
    let mut lanes: Vec<LaneConfig> = Vec::with_capacity(raw.len());
    let mut relay_connections = 0usize;
    for (index, lane) in raw.iter().enumerate() {
        let name = lane.name.get_ref();
        if index == MAX_LANES {
            return Err(src.error(
                &lane.name,
                format!("too many lanes; expected at most {MAX_LANES} [[lane]] tables"),
            ));
        }
        if !syntax::is_name(name, b"_.-") || name.len() > MAX_LANE_NAME {
            return Err(src.error(
                &lane.name,
                format!(
                    "lane name {name:?} is not valid; expected 1..={MAX_LANE_NAME} bytes of \
                     letters, digits, `_`, `.` and `-`"
                ),
            ));
        }
        if lanes.iter().any(|l| &l.name == name) {
            return Err(src.error(
                &lane.name,
                format!("lane `{name}` is defined twice; expected unique lane names"),
            ));
        }
        let port_name = lane.port.get_ref();
        let port = ports
            .iter()
            .position(|p| &p.name == port_name)
            .ok_or_else(|| {
                src.error(
                    &lane.port,
                    format!(
                        "port `{port_name}` is not defined; expected one of {}",
                        list_names(ports.iter().map(|p| p.name.as_str()))
                    ),
                )
            })?;
        if !matches!(lane.kind.get_ref(), RawLaneKind::Quic) {
            reject_quic_keys(lane, src)?;
        }
        let kind = match lane.kind.get_ref() {
            RawLaneKind::Udp => LaneKind::Udp(resolve_udp_lane(lane, src)?),
            RawLaneKind::Http => LaneKind::Http(resolve_http_lane(lane, src)?),
            RawLaneKind::Quic => LaneKind::Quic(resolve_quic_lane(lane, index, src)?),
        };
        if let LaneKind::Http(h) = &kind {
            relay_connections += h.connections as usize;
            if relay_connections > crate::MAX_RELAY_CONNECTIONS {
                let at = lane
                    .connections
                    .as_ref()
                    .map_or(lane.name.span(), |c| c.span());
                return Err(src.error_at(
                    at.start,
                    format!(
                        "lane `{name}` brings the relay lanes to {relay_connections} connections; \
                         expected at most {} in all (the data plane's session table has one \
                         entry per connection)",
                        crate::MAX_RELAY_CONNECTIONS
                    ),
                ));
            }
        }
        lanes.push(LaneConfig {
            name: name.clone(),
            port,
            kind,
        });
    }

    every_tx_lcore_reaches_every_lane(&raw, &lanes, lcores, lcore_spans, ports, src)?;
    quic_lanes_have_their_lcore(&raw, &lanes, lcores, ports, src)?;
    resolve_fallbacks(&raw, &mut lanes, src)?;
    Ok(lanes)
}

/// A QUIC lane's connection lives on the tx lcore that bridges its port: that lcore reads the
/// port's RX queue, where the relay's datagrams arrive. Submissions are dealt to every tx lcore,
/// so (for now) a configuration with QUIC lanes has exactly one tx lcore.
fn quic_lanes_have_their_lcore(
    raw: &[RawLane],
    lanes: &[LaneConfig],
    lcores: &[LcoreConfig],
    ports: &[PortConfig],
    src: &Source<'_>,
) -> Result<()> {
    let tx: Vec<&LcoreConfig> = lcores.iter().filter(|l| l.role == LcoreRole::Tx).collect();
    for (lane, raw) in lanes.iter().zip(raw) {
        if !matches!(lane.kind, LaneKind::Quic(_)) {
            continue;
        }
        if tx.len() != 1 {
            return Err(src.error(
                &raw.kind,
                format!(
                    "quic lane `{}` needs exactly one tx lcore (its connection lives on the lcore \
                     that reads the relay's datagrams), but {} [[lcore]] have role = \"tx\"",
                    lane.name,
                    tx.len()
                ),
            ));
        }
        if tx[0].bridge.is_none_or(|b| b.nic != lane.port) {
            return Err(src.error(
                &raw.port,
                format!(
                    "quic lane `{}` sends on port `{}`, which its tx lcore does not bridge; \
                     expected a `bridge` on lcore {} for that port (the relay's datagrams \
                     arrive on its RX queue)",
                    lane.name, ports[lane.port].name, tx[0].id
                ),
            ));
        }
    }
    Ok(())
}

/// The first local UDP port of QUIC lanes without `src_port` (lane `i` gets this + `i`).
pub(crate) const QUIC_DEFAULT_SRC_PORT: u16 = 20000;

fn resolve_quic_lane(lane: &RawLane, index: usize, src: &Source<'_>) -> Result<QuicLane> {
    let provider = quic_provider(lane, src)?;
    reject_http_keys_on_quic(lane, src)?;
    let mev = lane.mev.as_ref().is_some_and(|m| *m.get_ref());
    if let (Some(m), false) = (&lane.mev, provider.has_mev()) {
        return Err(src.error(
            m,
            format!(
                "`mev` is not a setting of {provider}; only glaive, astralane and lunarlander \
                 have one"
            ),
        ));
    }
    let (src_ip, src_port, dst_ip, dst_port, dst_mac) =
        quic_addresses(lane, index, provider.default_port(mev), src)?;
    let token = resolve_quic_key(lane, provider, src)?;
    let keypair_file = resolve_keypair_file(lane, provider, src)?;
    let server_name = match &lane.server_name {
        Some(n) => server_name(src, n)?,
        None => provider
            .server_name()
            .map_or_else(|| dst_ip.to_string(), str::to_string),
    };
    let mut ca_files = Vec::new();
    for f in lane.ca_files.iter().flatten() {
        ca_files.push(absolute_path(src, f, "ca_files")?);
    }
    Ok(QuicLane {
        provider,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        dst_mac,
        server_name,
        token: token.map(Secret::new),
        keypair_file,
        mev,
        ca_files,
        insecure_skip_verify: lane
            .insecure_skip_verify
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
        fallback: None, // resolved once every lane is known (`resolve_fallbacks`)
    })
}

/// A quic lane's `provider`.
fn quic_provider(lane: &RawLane, src: &Source<'_>) -> Result<QuicProvider> {
    let text = lane.provider.as_ref().ok_or_else(|| {
        src.error(
            &lane.kind,
            format!(
                "quic lane `{}` has no `provider`; expected one of the QUIC relay providers, \
                 e.g. \"soyas\"",
                lane.name.get_ref()
            ),
        )
    })?;
    text.get_ref().parse().map_err(|_| {
        src.error(
            text,
            format!(
                "unknown QUIC provider {:?}; expected one of {}",
                text.get_ref(),
                list_names(QuicProvider::ALL.iter().map(|p| p.name()))
            ),
        )
    })
}

/// A quic lane's (src_ip, src_port, dst_ip, dst_port, dst_mac); `src_port` defaults to
/// [`QUIC_DEFAULT_SRC_PORT`] + the lane's `index`, `dst_port` to `default_port`.
fn quic_addresses(
    lane: &RawLane,
    index: usize,
    default_port: u16,
    src: &Source<'_>,
) -> Result<(std::net::Ipv4Addr, u16, std::net::Ipv4Addr, u16, [u8; 6])> {
    let missing = |key: &str, what: &str| {
        src.error(
            &lane.kind,
            format!(
                "quic lane `{}` has no `{key}`; expected {what}",
                lane.name.get_ref()
            ),
        )
    };
    let addr = |key: &str, value: Option<&Spanned<String>>| -> Result<std::net::Ipv4Addr> {
        let value = value.ok_or_else(|| missing(key, "an IPv4 address like \"10.0.0.1\""))?;
        syntax::parse_ipv4(value.get_ref()).ok_or_else(|| {
            src.error(
                value,
                format!(
                    "`{key}` = {:?} is not an IPv4 address; expected a dotted quad",
                    value.get_ref()
                ),
            )
        })
    };
    let src_ip = addr("src_ip", lane.src_ip.as_ref())?;
    let dst_ip = addr("dst_ip", lane.dst_ip.as_ref())?;
    let src_port = match &lane.src_port {
        Some(p) => in_range(src, p, "src_port", 1, 65535)? as u16,
        None => QUIC_DEFAULT_SRC_PORT + index as u16,
    };
    let dst_port = match &lane.dst_port {
        Some(p) => in_range(src, p, "dst_port", 1, 65535)? as u16,
        None => default_port,
    };
    let dst_mac = lane.dst_mac.as_ref().ok_or_else(|| {
        missing(
            "dst_mac",
            "the relay's (or the gateway's) MAC address like \"02:00:00:00:00:02\"",
        )
    })?;
    Ok((
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        mac(src, dst_mac, "dst_mac")?,
    ))
}

/// Each quic lane's `fallback`: the name of an http lane (defined anywhere in the file).
fn resolve_fallbacks(raw: &[RawLane], lanes: &mut [LaneConfig], src: &Source<'_>) -> Result<()> {
    let http: Vec<(usize, String)> = lanes
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.kind, LaneKind::Http(_)))
        .map(|(i, l)| (i, l.name.clone()))
        .collect();
    for (lane, r) in lanes.iter_mut().zip(raw) {
        let (LaneKind::Quic(q), Some(name)) = (&mut lane.kind, &r.fallback) else {
            continue;
        };
        let Some(&(id, _)) = http.iter().find(|(_, n)| n == name.get_ref()) else {
            return Err(src.error(
                name,
                format!(
                    "`fallback` = {:?} is not an http lane; expected one of {}",
                    name.get_ref(),
                    list_names(http.iter().map(|(_, n)| n.as_str()))
                ),
            ));
        };
        q.fallback = Some(id);
    }
    Ok(())
}

/// QUIC-only keys on another kind of lane.
fn reject_quic_keys(lane: &RawLane, src: &Source<'_>) -> Result<()> {
    let keys = [
        ("keypair_file", lane.keypair_file.as_ref().map(|v| v.span())),
        ("mev", lane.mev.as_ref().map(|v| v.span())),
        ("fallback", lane.fallback.as_ref().map(|v| v.span())),
    ];
    reject_keys(src, keys, "is for quic lanes (kind = \"quic\")")
}

/// HTTP-only keys on a quic lane: mistakes, not silently ignored settings.
fn reject_http_keys_on_quic(lane: &RawLane, src: &Source<'_>) -> Result<()> {
    let keys = [
        ("host", lane.host.as_ref().map(|v| v.span())),
        ("path", lane.path.as_ref().map(|v| v.span())),
        ("connections", lane.connections.as_ref().map(|v| v.span())),
        ("tls", lane.tls.as_ref().map(|v| v.span())),
    ];
    reject_keys(
        src,
        keys,
        "is for http lanes; a quic lane is always encrypted, on one connection",
    )
}

/// The first of `keys` that is set is an error: "`key` <why>", at its value.
fn reject_keys<const N: usize>(
    src: &Source<'_>,
    keys: [(&str, Option<std::ops::Range<usize>>); N],
    why: &str,
) -> Result<()> {
    match keys.into_iter().find_map(|(k, at)| Some((k, at?))) {
        Some((key, span)) => Err(src.error_at(span.start, format!("`{key}` {why}"))),
        None => Ok(()),
    }
}

/// A quic lane's API key: required by the providers that authenticate with one (a UUID where
/// it travels as 16 bytes), refused by the others.
fn resolve_quic_key(
    lane: &RawLane,
    provider: QuicProvider,
    src: &Source<'_>,
) -> Result<Option<String>> {
    let token = resolve_token(lane, src)?;
    let at = lane.token.as_ref().or(lane.token_env.as_ref());
    match (&token, at) {
        (None, _) if provider.needs_key() => Err(src.error(
            &lane.kind,
            format!(
                "quic lane `{}` ({provider}) has no `token`; expected the API key \
                 (`token = \"...\"` or `token_env = \"VAR\"`)",
                lane.name.get_ref()
            ),
        )),
        (Some(_), Some(at)) if !provider.needs_key() => Err(src.error(
            at,
            format!(
                "{provider} identifies the client by its Solana keypair, not an API key; \
                 expected `keypair_file` instead"
            ),
        )),
        (Some(t), Some(at)) if provider.key_is_uuid() && !is_uuid_v4(t) => Err(src.error(
            at,
            format!(
                "this token is not a {provider} API key; expected a UUID v4 \
                 (xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx, hex digits)"
            ),
        )),
        _ => Ok(token),
    }
}

/// A quic lane's `keypair_file`: required by the providers that identify the client by its
/// Solana key; checked to exist and hold a keypair when the data plane starts.
fn resolve_keypair_file(
    lane: &RawLane,
    provider: QuicProvider,
    src: &Source<'_>,
) -> Result<Option<PathBuf>> {
    let needs = provider.identity().needs_keypair();
    match &lane.keypair_file {
        Some(f) if !needs => Err(src.error(
            f,
            format!("`keypair_file` is not a setting of {provider}; it authenticates by API key"),
        )),
        Some(f) => Ok(Some(absolute_path(src, f, "keypair_file")?)),
        None if needs => Err(src.error(
            &lane.kind,
            format!(
                "quic lane `{}` ({provider}) has no `keypair_file`; expected the absolute path \
                 of a Solana keypair file (a JSON array of 64 bytes, as solana-keygen writes)",
                lane.name.get_ref()
            ),
        )),
        None => Ok(None),
    }
}

/// A `server_name` value: a host name or IPv4 address, without port or spaces.
fn server_name(src: &Source<'_>, n: &Spanned<String>) -> Result<String> {
    let text = n.get_ref();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) || text.contains(':') {
        return Err(src.error(
            n,
            "`server_name` must be a host name or IPv4 address without port or spaces",
        ));
    }
    Ok(text.clone())
}

/// Submissions are spread over the tx lcores, so each must be able to send on every lane.
fn every_tx_lcore_reaches_every_lane(
    raw: &[RawLane],
    lanes: &[LaneConfig],
    lcores: &[LcoreConfig],
    lcore_spans: &[usize],
    ports: &[PortConfig],
    src: &Source<'_>,
) -> Result<()> {
    if let Some(first) = raw.first() {
        if !lcores.iter().any(|l| l.role == LcoreRole::Tx) {
            return Err(src.error(
                &first.name,
                format!(
                    "lane `{}` needs a tx lcore, but no [[lcore]] has role = \"tx\"; \
                     expected at least one",
                    first.name.get_ref()
                ),
            ));
        }
        for (lcore, &span) in lcores.iter().zip(lcore_spans) {
            if lcore.role != LcoreRole::Tx {
                continue;
            }
            for lane in lanes {
                if lcore.queues.iter().any(|q| q.port == lane.port) {
                    continue;
                }
                let port_name = &ports[lane.port].name;
                return Err(src.error_at(
                    span,
                    format!(
                        "tx lcore {} owns no TX queue on port `{port_name}`, which lane `{}` uses; \
                         expected every tx lcore to own a TX queue on every lane's port \
                         (add {{ port = \"{port_name}\", queue = N }} to its `queues`)",
                        lcore.id, lane.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn resolve_udp_lane(lane: &RawLane, src: &Source<'_>) -> Result<UdpLane> {
    let missing = |key: &str, what: &str| {
        src.error(
            &lane.kind,
            format!(
                "udp lane `{}` has no `{key}`; expected {what}",
                lane.name.get_ref()
            ),
        )
    };
    let ip = |value: &Spanned<String>, key: &str| {
        syntax::parse_ipv4(value.get_ref()).ok_or_else(|| {
            src.error(
                value,
                format!(
                    "`{key}` = {:?} is not an IPv4 address; expected a dotted quad like \"10.0.0.1\"",
                    value.get_ref()
                ),
            )
        })
    };
    let src_ip = lane
        .src_ip
        .as_ref()
        .ok_or_else(|| missing("src_ip", "an IPv4 address like \"10.0.0.1\""))?;
    let src_ip = ip(src_ip, "src_ip")?;
    let src_port = lane
        .src_port
        .as_ref()
        .ok_or_else(|| missing("src_port", "a UDP port 1..=65535"))?;
    let src_port = in_range(src, src_port, "src_port", 1, 65535)? as u16;
    let dst_ip = lane
        .dst_ip
        .as_ref()
        .ok_or_else(|| missing("dst_ip", "an IPv4 address like \"10.0.0.2\""))?;
    let dst_ip = ip(dst_ip, "dst_ip")?;
    let dst_port = lane
        .dst_port
        .as_ref()
        .ok_or_else(|| missing("dst_port", "a UDP port 1..=65535"))?;
    let dst_port = in_range(src, dst_port, "dst_port", 1, 65535)? as u16;
    let dst_mac = lane
        .dst_mac
        .as_ref()
        .ok_or_else(|| missing("dst_mac", "a MAC address like \"02:00:00:00:00:02\""))?;
    let dst_mac = mac(src, dst_mac, "dst_mac")?;
    Ok(UdpLane {
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        dst_mac,
    })
}

/// Most kernel TCP connections one HTTP lane may keep.
const MAX_CONNECTIONS: i64 = 64;

/// Provider-specific token formats (Glaive issues UUID v4 keys). The token itself is never
/// echoed: it may be a real key in the wrong place.
fn check_token_format(
    lane: &RawLane,
    provider: Provider,
    token: Option<&str>,
    src: &Source<'_>,
) -> Result<()> {
    let token_at = lane.token.as_ref().or(lane.token_env.as_ref());
    if let (Provider::Glaive, Some(t), Some(at)) = (provider, token, token_at) {
        if !is_uuid_v4(t) {
            return Err(src.error(
                at,
                "this token is not a Glaive API key; expected a UUID v4 \
                 (xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx, hex digits), as Glaive issues them",
            ));
        }
    }
    Ok(())
}

fn resolve_http_lane(lane: &RawLane, src: &Source<'_>) -> Result<HttpLane> {
    let name = lane.name.get_ref();
    let missing = |key: &str, what: &str| {
        src.error(
            &lane.kind,
            format!("http lane `{name}` has no `{key}`; expected {what}"),
        )
    };
    reject_udp_keys(lane, src)?;
    let provider_text = lane
        .provider
        .as_ref()
        .ok_or_else(|| missing("provider", "one of the relay providers, e.g. \"jito\""))?;
    let provider: Provider = provider_text.get_ref().parse().map_err(|_| {
        src.error(
            provider_text,
            format!(
                "unknown provider {:?}; expected one of {}",
                provider_text.get_ref(),
                list_names(Provider::ALL.iter().map(|p| p.name()))
            ),
        )
    })?;
    let dst_ip = lane
        .dst_ip
        .as_ref()
        .ok_or_else(|| missing("dst_ip", "the relay's IPv4 address"))?;
    let dst_ip = syntax::parse_ipv4(dst_ip.get_ref()).ok_or_else(|| {
        src.error(
            dst_ip,
            format!(
                "`dst_ip` = {:?} is not an IPv4 address; expected a dotted quad",
                dst_ip.get_ref()
            ),
        )
    })?;
    let tls_on = lane.tls.as_ref().is_some_and(|t| *t.get_ref());
    if !tls_on {
        reject_tls_keys(lane, src)?;
    }
    let default_port = if tls_on { 443 } else { 80 };
    let dst_port = match &lane.dst_port {
        Some(p) => in_range(src, p, "dst_port", 1, 65535)? as u16,
        None => default_port,
    };
    let (host, path) = resolve_target(lane, src, dst_ip, dst_port, default_port)?;
    let token = resolve_token(lane, src)?;
    if token.is_none() && provider.needs_token() {
        return Err(missing(
            "token",
            "the relay's API token (`token = \"...\"` or `token_env = \"VAR\"`)",
        ));
    }
    check_token_format(lane, provider, token.as_deref(), src)?;
    let connections = match &lane.connections {
        Some(c) => in_range(src, c, "connections", 1, MAX_CONNECTIONS)? as u16,
        None => 2,
    };
    let tls = if tls_on {
        Some(resolve_tls(lane, src, &host)?)
    } else {
        None
    };
    Ok(HttpLane {
        provider,
        dst_ip,
        dst_port,
        host,
        path,
        token: token.map(Secret::new),
        connections,
        tls,
    })
}

/// An http lane's `host` (default: the relay's address, with the port unless it is the
/// default one) and `path`.
fn resolve_target(
    lane: &RawLane,
    src: &Source<'_>,
    dst_ip: std::net::Ipv4Addr,
    dst_port: u16,
    default_port: u16,
) -> Result<(String, Option<String>)> {
    let host = match &lane.host {
        Some(h) => {
            let text = h.get_ref();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(src.error(h, "`host` must be a non-empty host name without spaces"));
            }
            text.clone()
        }
        None if dst_port == default_port => dst_ip.to_string(),
        None => format!("{dst_ip}:{dst_port}"),
    };
    let path = match &lane.path {
        Some(p)
            if !p.get_ref().starts_with('/')
                || !p.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
        {
            return Err(src.error(p, "`path` must start with `/` and contain no spaces"));
        }
        Some(p) => Some(p.get_ref().clone()),
        None => None,
    };
    Ok((host, path))
}

/// Keys of a udp lane on an http lane: mistakes, not silently ignored settings.
fn reject_udp_keys(lane: &RawLane, src: &Source<'_>) -> Result<()> {
    for (key, value) in [
        ("src_ip", lane.src_ip.as_ref()),
        ("dst_mac", lane.dst_mac.as_ref()),
    ] {
        if let Some(v) = value {
            return Err(src.error(
                v,
                format!("`{key}` is for udp lanes; an http lane's addresses come from the kernel's connection"),
            ));
        }
    }
    if let Some(v) = &lane.src_port {
        return Err(src.error(
            v,
            "`src_port` is for udp lanes; the kernel picks an http lane's ports",
        ));
    }
    Ok(())
}

/// TLS keys on an http lane without `tls = true`.
fn reject_tls_keys(lane: &RawLane, src: &Source<'_>) -> Result<()> {
    let keys = [
        ("server_name", lane.server_name.as_ref().map(|v| v.span())),
        (
            "ca_files",
            lane.ca_files
                .as_ref()
                .and_then(|v| v.first().map(|f| f.span())),
        ),
        (
            "insecure_skip_verify",
            lane.insecure_skip_verify.as_ref().map(|v| v.span()),
        ),
    ];
    reject_keys(src, keys, "is for TLS lanes; add `tls = true` or remove it")
}

/// A UUID v4 in its hyphenated form (`8-4-4-4-12` hex digits, version digit `4`): how Glaive
/// issues API keys.
fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
        && b[14] == b'4'
}

/// An http lane's API token: `token`, or the environment variable `token_env` names (not
/// both), printable ASCII without spaces.
fn resolve_token(lane: &RawLane, src: &Source<'_>) -> Result<Option<String>> {
    let token = match (&lane.token, &lane.token_env) {
        (Some(t), Some(_)) => {
            return Err(src.error(t, "both `token` and `token_env`; expected one of them"));
        }
        (Some(t), None) => Some(t.get_ref().clone()),
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                return Err(src.error(
                    var,
                    format!(
                    "environment variable `{}` is not set or empty; expected the API token in it",
                    var.get_ref()
                ),
                ))
            }
        },
        (None, None) => None,
    };
    if let (Some(t), Some(at)) = (&token, lane.token.as_ref().or(lane.token_env.as_ref())) {
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(src.error(at, "the token contains spaces or control characters"));
        }
    }
    Ok(token)
}

/// The TLS keys of an http lane with `tls = true`.
fn resolve_tls(lane: &RawLane, src: &Source<'_>, host: &str) -> Result<TlsLane> {
    let server_name = match &lane.server_name {
        Some(n) => server_name(src, n)?,
        // `host` may carry a port (`relay.example:8443`); SNI is the name alone.
        None => host.rsplit_once(':').map_or(host, |(h, _)| h).to_string(),
    };
    let mut ca_files = Vec::new();
    for f in lane.ca_files.iter().flatten() {
        ca_files.push(absolute_path(src, f, "ca_files")?);
    }
    Ok(TlsLane {
        server_name,
        ca_files,
        insecure_skip_verify: lane
            .insecure_skip_verify
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    })
}

fn socket_addr(src: &Source<'_>, value: &Spanned<String>, key: &str) -> Result<SocketAddr> {
    let text = value.get_ref();
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(src.error(
            value,
            format!("`{key}` = {text:?} has port 0; expected a fixed, non-zero port"),
        )),
        Err(_) => Err(src.error(
            value,
            format!(
                "`{key}` = {text:?} is not a socket address; expected an IP address and port \
                 like \"127.0.0.1:9464\" or \"[::1]:9464\""
            ),
        )),
    }
}

fn resolve_control(
    raw: Option<RawControl>,
    lanes: &[LaneConfig],
    src: &Source<'_>,
) -> Result<ControlConfig> {
    let Some(raw) = raw else {
        return Ok(ControlConfig::default());
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(value) => socket_addr(src, value, "metrics_listen")?,
        None => ControlConfig::default().metrics_listen,
    };
    let rpc_listen = match &raw.rpc_listen {
        Some(value) => Some(socket_addr(src, value, "rpc_listen")?),
        None => None,
    };
    let rpc_lanes = match &raw.rpc_lanes {
        Some(names) => Some(rpc_lane_ids(names, lanes, src)?),
        None => None,
    };
    if let (Some(rpc), Some(at)) = (rpc_listen, &raw.rpc_listen) {
        if rpc == metrics_listen {
            return Err(src.error(
                at,
                format!(
                    "`rpc_listen` = \"{rpc}\" is also `metrics_listen`; expected two different \
                     addresses"
                ),
            ));
        }
    }
    let rpc_upstream = match &raw.rpc_upstream {
        Some(value) => Some(rpc_upstream(src, value)?),
        None => None,
    };
    let rpc_upstream_timeout = match (&raw.rpc_upstream_timeout_ms, &raw.rpc_upstream) {
        (Some(value), None) => {
            return Err(src.error(
                value,
                "`rpc_upstream_timeout_ms` is set but `rpc_upstream` is not; expected both or \
                 neither",
            ))
        }
        (value, _) => {
            Duration::from_millis(
                optional(value, DEFAULT_RPC_UPSTREAM_TIMEOUT_MS as i64, |v| {
                    in_range(
                        src,
                        v,
                        "rpc_upstream_timeout_ms",
                        1,
                        MAX_RPC_UPSTREAM_TIMEOUT_MS as i64,
                    )
                })? as u64,
            )
        }
    };
    Ok(ControlConfig {
        metrics_listen,
        rpc_listen,
        rpc_lanes,
        rpc_upstream,
        rpc_upstream_timeout,
    })
}

/// `rpc_lanes`: ids of defined lanes, each named once.
fn rpc_lane_ids(
    names: &[Spanned<String>],
    lanes: &[LaneConfig],
    src: &Source<'_>,
) -> Result<Vec<usize>> {
    let mut ids: Vec<usize> = Vec::with_capacity(names.len());
    for name in names {
        let id = lanes
            .iter()
            .position(|l| &l.name == name.get_ref())
            .ok_or_else(|| {
                src.error(
                    name,
                    format!(
                        "lane `{}` in `rpc_lanes` is not defined; expected one of {}",
                        name.get_ref(),
                        if lanes.is_empty() {
                            "the [[lane]] names (none are defined)".to_owned()
                        } else {
                            list_names(lanes.iter().map(|l| l.name.as_str()))
                        }
                    ),
                )
            })?;
        if ids.contains(&id) {
            return Err(src.error(
                name,
                format!(
                    "lane `{}` is listed twice in `rpc_lanes`; expected each lane once",
                    name.get_ref()
                ),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// `rpc_upstream`: an `http://host[:port][/path][?query]` URL.
fn rpc_upstream(src: &Source<'_>, value: &Spanned<String>) -> Result<RpcUpstream> {
    plain_url(src, value, "rpc_upstream", "http")
}

/// A URL's `host[:port]` (an IPv6 host in brackets), checked; `Err` says what is wrong.
fn split_authority(authority: &str) -> std::result::Result<(&str, Option<&str>), &'static str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("has an unclosed `[`");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 address");
        }
        match after {
            "" => (addr, None),
            p if p.starts_with(':') => (addr, Some(&p[1..])),
            _ => return Err("has text after the IPv6 address"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return Err("has an invalid host name");
    }
    Ok((host, port))
}

/// A `<scheme>://host[:port][/path][?query]` URL (`scheme` is `http` or `ws`; the TLS variant
/// is refused with a hint), as the value of `key`.
pub(crate) fn plain_url(
    src: &Source<'_>,
    value: &Spanned<String>,
    key: &str,
    scheme: &str,
) -> Result<RpcUpstream> {
    let url = value.get_ref();
    let article = if scheme == "http" { "an" } else { "a" };
    let bad = |why: &str| {
        src.error(
            value,
            format!(
                "`{key}` = {url:?} {why}; expected {article} {scheme} URL like \
                 \"{scheme}://127.0.0.1:8899\" or \"{scheme}://rpc.example:8899/path\""
            ),
        )
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with(&format!("{scheme}s://")) {
        return Err(bad(&format!(
            "is {scheme}s, which the control plane does not speak to upstreams (it carries no \
             {stack}); run a local TLS proxy to the provider and name it here",
            stack = if scheme == "http" {
                "HTTP client stack"
            } else {
                "TLS client for it"
            }
        )));
    }
    let prefix = format!("{scheme}://");
    if !lower.starts_with(&prefix) {
        return Err(bad(&format!("is not an {prefix} URL")));
    }
    let rest = &url[prefix.len()..];
    if let Some(c) = rest.chars().find(|c| !matches!(c, '!'..='~')) {
        return Err(bad(&format!("contains {c:?}")));
    }
    if rest.contains('#') {
        return Err(bad("has a fragment (#)"));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("carries credentials (user@host)"));
    }
    let (host, port) = split_authority(authority).map_err(&bad)?;
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(bad("has an invalid port (1..=65535)")),
        },
    };
    let path = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    Ok(RpcUpstream {
        url: url.clone(),
        host: host.to_owned(),
        port,
        authority: authority.to_owned(),
        path,
    })
}

/// A scheduling policy and its priority: 1..=99 for the real-time policies, 0 otherwise.
fn sched(
    src: &Source<'_>,
    policy: &Option<Spanned<SchedPolicy>>,
    priority: &Option<Spanned<i64>>,
    policy_key: &str,
    priority_key: &str,
) -> Result<(SchedPolicy, u8)> {
    let chosen = policy.as_ref().map_or(SchedPolicy::Other, |p| *p.get_ref());
    if chosen.is_realtime() {
        let Some(value) = priority else {
            let at = policy.as_ref().expect("a real-time policy was written");
            return Err(src.error(
                at,
                format!(
                    "`{policy_key}` = \"{chosen}\" needs a real-time priority; expected \
                     `{priority_key}` = 1..=99"
                ),
            ));
        };
        let n = in_range(src, value, priority_key, 1, 99)?;
        return Ok((chosen, n as u8));
    }
    if let Some(value) = priority {
        if *value.get_ref() != 0 {
            return Err(src.error(
                value,
                format!(
                    "`{priority_key}` = {} needs `{policy_key}` = \"fifo\" or \"rr\"; \
                     expected 0 (or no `{priority_key}`) with policy \"other\"",
                    value.get_ref()
                ),
            ));
        }
    }
    Ok((chosen, 0))
}

fn resolve_tuning(
    raw: Option<RawTuning>,
    eal: &EalConfig,
    src: &Source<'_>,
) -> Result<TuningConfig> {
    let Some(raw) = raw else {
        return Ok(TuningConfig::default());
    };
    let defaults = TuningConfig::default();
    let (lcore_policy, lcore_priority) = sched(
        src,
        &raw.lcore_policy,
        &raw.lcore_priority,
        "lcore_policy",
        "lcore_priority",
    )?;
    let (control_policy, control_priority) = sched(
        src,
        &raw.control_policy,
        &raw.control_priority,
        "control_policy",
        "control_priority",
    )?;
    let control_cpus = match &raw.control_cpus {
        Some(value) => {
            let text = value.get_ref();
            let mut cpus = syntax::parse_lcore_list(text).map_err(|reason| {
                src.error(
                    value,
                    format!(
                        "`control_cpus` = {text:?} is not a valid cpu list ({reason}); \
                         expected ids and ranges like \"0,4-5\""
                    ),
                )
            })?;
            cpus.sort_unstable();
            let workers: Vec<u32> = eal
                .lcores
                .iter()
                .copied()
                .filter(|&l| l != eal.main_lcore)
                .collect();
            if let Some(cpu) = cpus.iter().find(|c| workers.contains(c)) {
                return Err(src.error(
                    value,
                    format!(
                        "`control_cpus` = {text:?} includes cpu {cpu}, which is dataplane worker \
                         lcore {cpu} (`eal.lcores` without `main_lcore`: {}); expected cpus the \
                         dataplane does not busy-poll",
                        syntax::format_lcore_list(&workers)
                    ),
                ));
            }
            Some(cpus)
        }
        None => None,
    };
    Ok(TuningConfig {
        mlockall: raw.mlockall.unwrap_or(defaults.mlockall),
        required: raw.required.unwrap_or(defaults.required),
        lcore_policy,
        lcore_priority,
        control_cpus,
        control_policy,
        control_priority,
        latency_monitor: raw.latency_monitor.unwrap_or(defaults.latency_monitor),
    })
}
