//! Ethernet ports (ethdev) and their queues.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::eal::{self, LiveToken};
use crate::error::{DpdkError, Result};
use crate::mempool::Mempool;

/// An ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// Static facts about a port (`rte_eth_dev_info_get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// PMD name, e.g. `net_null`, `net_ice`.
    pub driver_name: String,
    /// Maximum RX queues.
    pub max_rx_queues: u16,
    /// Maximum TX queues.
    pub max_tx_queues: u16,
    /// Supported port TX offloads (`offload::TX_*` bits).
    pub tx_offload_capa: u64,
    /// Supported port RX offloads (`offload::RX_*` bits).
    pub rx_offload_capa: u64,
    /// NUMA socket of the device, -1 if unknown.
    pub socket_id: i32,
    /// Smallest MTU the port accepts.
    pub min_mtu: u16,
    /// Largest MTU the port accepts.
    pub max_mtu: u16,
}

impl PortInfo {
    /// Whether every TX offload in `bits` is supported.
    pub fn supports_tx(&self, bits: u64) -> bool {
        self.tx_offload_capa & bits == bits
    }

    /// Whether every RX offload in `bits` is supported.
    pub fn supports_rx(&self, bits: u64) -> bool {
        self.rx_offload_capa & bits == bits
    }
}

/// How to configure a port: queue counts, ring sizes, MTU and TX offloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// Number of RX queues.
    pub rx_queues: u16,
    /// Number of TX queues.
    pub tx_queues: u16,
    /// RX ring size (adjusted to the driver's limits).
    pub rx_descriptors: u16,
    /// TX ring size (adjusted to the driver's limits).
    pub tx_descriptors: u16,
    /// MTU; `None` keeps the driver default (1500).
    pub mtu: Option<u16>,
    /// Port-wide TX offloads (`offload::TX_*`); must be within the port's
    /// `tx_offload_capa`.
    pub tx_offloads: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown or down).
    pub speed_mbps: u32,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// RX packets dropped by the hardware (no descriptors).
    pub imissed: u64,
    /// Erroneous RX packets.
    pub ierrors: u64,
    /// Failed TX packets.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// One `Port` object per port id at a time.
static CLAIMED: [AtomicBool; dpdk_sys::SHIM_RTE_MAX_ETHPORTS as usize] =
    [const { AtomicBool::new(false) }; dpdk_sys::SHIM_RTE_MAX_ETHPORTS as usize];

/// Shared by a [`Port`] and its queue handles; the port is closed when the
/// last of them drops.
#[derive(Debug)]
pub(crate) struct Shared {
    id: PortId,
    started: AtomicBool,
    /// RX pools the driver allocates from; kept alive until close.
    rx_pools: Vec<Mempool>,
    _live: LiveToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let id = self.id.0;
        if self.started.load(Ordering::SeqCst) {
            // SAFETY: no queue handle exists any more (we are the last
            // reference), so nothing polls the port.
            unsafe { dpdk_sys::rte_eth_dev_stop(id) };
        }
        // SAFETY: as above; the port id is ours (CLAIMED) and EAL is alive
        // (our LiveToken is dropped after this).
        unsafe { dpdk_sys::rte_eth_dev_close(id) };
        CLAIMED[usize::from(id)].store(false, Ordering::SeqCst);
    }
}

/// An ethdev port, owned by this object (one per port id).
///
/// Flow: [`Port::by_name`], [`Port::configure`], take queues, [`Port::start`],
/// hand queues to workers. Reconfiguring or stopping needs every queue
/// handle dropped first. The port is stopped and closed when the `Port` and
/// all its queue handles are gone.
#[derive(Debug)]
pub struct Port {
    shared: Arc<Shared>,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
}

impl Port {
    /// Opens the port named `name`: a vdev's name (the `--vdev` argument up
    /// to the first comma, e.g. `net_null0`) or a PCI address
    /// (`0000:3b:00.0`).
    pub fn by_name(name: &str) -> Result<Port> {
        const OP: &str = "rte_eth_dev_get_port_by_name";
        let running = eal::running(OP)?;
        let cname =
            CString::new(name).map_err(|_| DpdkError::new(OP, libc::EINVAL, "NUL in name"))?;
        let mut id = 0u16;
        // SAFETY: EAL running; valid C string and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::new(OP, ret, format!("no port named {name:?}")));
        }
        let slot = CLAIMED
            .get(usize::from(id))
            .ok_or_else(|| DpdkError::new(OP, libc::ERANGE, "port id out of range"))?;
        if slot.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new(
                OP,
                libc::EBUSY,
                format!("port {name:?} is already open"),
            ));
        }
        Ok(Port {
            shared: Arc::new(Shared {
                id: PortId(id),
                started: AtomicBool::new(false),
                rx_pools: Vec::new(),
                _live: LiveToken::new(&running),
            }),
            rx_taken: Vec::new(),
            tx_taken: Vec::new(),
        })
    }

    /// Number of usable ports (`rte_eth_dev_count_avail`); 0 before EAL init.
    pub fn count() -> u16 {
        match eal::running("rte_eth_dev_count_avail") {
            // SAFETY: EAL is running.
            Ok(_g) => unsafe { dpdk_sys::rte_eth_dev_count_avail() },
            Err(_) => 0,
        }
    }

    /// This port's id.
    pub fn id(&self) -> PortId {
        self.shared.id
    }

    fn pid(&self) -> u16 {
        self.shared.id.0
    }

    /// Driver capabilities.
    pub fn info(&self) -> Result<PortInfo> {
        let raw = self.raw_info()?;
        // SAFETY: driver_name points at the PMD's static name string.
        let driver_name = unsafe {
            if raw.driver_name.is_null() {
                String::new()
            } else {
                CStr::from_ptr(raw.driver_name)
                    .to_string_lossy()
                    .into_owned()
            }
        };
        // SAFETY: our port id is valid.
        let socket_id = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.pid()) };
        Ok(PortInfo {
            driver_name,
            max_rx_queues: raw.max_rx_queues,
            max_tx_queues: raw.max_tx_queues,
            tx_offload_capa: raw.tx_offload_capa,
            rx_offload_capa: raw.rx_offload_capa,
            socket_id,
            min_mtu: raw.min_mtu,
            max_mtu: raw.max_mtu,
        })
    }

    fn raw_info(&self) -> Result<dpdk_sys::rte_eth_dev_info> {
        let mut raw = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.pid(), &mut raw) };
        DpdkError::check("rte_eth_dev_info_get", ret)?;
        Ok(raw)
    }

    /// Configures queues and offloads and sets up every RX queue on
    /// `rx_pool` and every TX queue. The port must be stopped and no queue
    /// handle may be alive. Previously taken queues can be taken again.
    pub fn configure(&mut self, conf: &PortConf, rx_pool: &Mempool) -> Result<()> {
        const OP: &str = "rte_eth_dev_configure";
        let info = self.info()?;
        let raw_info = self.raw_info()?;
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            DpdkError::new(
                OP,
                libc::EBUSY,
                "queue handles are still alive; drop them first",
            )
        })?;
        if shared.started.load(Ordering::SeqCst) {
            return Err(DpdkError::new(
                OP,
                libc::EBUSY,
                "port is started; stop it first",
            ));
        }
        let id = shared.id.0;
        let unsupported = conf.tx_offloads & !info.tx_offload_capa;
        if unsupported != 0 {
            return Err(DpdkError::new(
                OP,
                libc::ENOTSUP,
                format!(
                    "TX offloads {unsupported:#x} not supported by {} (requested {:#x}, capa {:#x})",
                    info.driver_name, conf.tx_offloads, info.tx_offload_capa
                ),
            ));
        }
        if conf.rx_queues > info.max_rx_queues || conf.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                OP,
                libc::EINVAL,
                format!(
                    "{} supports at most {} RX / {} TX queues (requested {} / {})",
                    info.driver_name,
                    info.max_rx_queues,
                    info.max_tx_queues,
                    conf.rx_queues,
                    conf.tx_queues
                ),
            ));
        }

        let mut eth_conf = dpdk_sys::rte_eth_conf::default();
        eth_conf.txmode.offloads = conf.tx_offloads;
        eth_conf.rxmode.mtu = conf.mtu.map_or(0, u32::from);
        // SAFETY: valid port id; eth_conf is a zeroed (default) config.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf)
        };
        DpdkError::check(OP, ret)?;

        let (mut nb_rx, mut nb_tx) = (conf.rx_descriptors, conf.tx_descriptors);
        // SAFETY: valid port id and out pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx) };
        DpdkError::check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;

        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(dpdk_sys::SHIM_SOCKET_ID_ANY as u32);
        for q in 0..conf.rx_queues {
            // SAFETY: configured port, q < rx_queues, the pool is alive and
            // kept alive below until the port is closed; NULL = default conf.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nb_rx,
                    socket,
                    std::ptr::null(),
                    rx_pool.as_ptr(),
                )
            };
            DpdkError::check("rte_eth_rx_queue_setup", ret)?;
        }
        let mut txconf = raw_info.default_txconf;
        txconf.offloads = conf.tx_offloads;
        for q in 0..conf.tx_queues {
            // SAFETY: configured port, q < tx_queues, txconf is a valid copy.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, nb_tx, socket, &txconf) };
            DpdkError::check("rte_eth_tx_queue_setup", ret)?;
        }

        shared.rx_pools.push(rx_pool.clone());
        self.rx_taken = vec![false; usize::from(conf.rx_queues)];
        self.tx_taken = vec![false; usize::from(conf.tx_queues)];
        Ok(())
    }

    /// Starts the port (`rte_eth_dev_start`).
    pub fn start(&mut self) -> Result<()> {
        // SAFETY: valid port id; &mut self serialises control calls.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.pid()) };
        DpdkError::check("rte_eth_dev_start", ret)?;
        self.shared.started.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stops the port (`rte_eth_dev_stop`). Every queue handle must have
    /// been dropped (no one may be polling).
    pub fn stop(&mut self) -> Result<()> {
        const OP: &str = "rte_eth_dev_stop";
        if Arc::strong_count(&self.shared) != 1 {
            return Err(DpdkError::new(
                OP,
                libc::EBUSY,
                "queue handles are still alive; drop them first",
            ));
        }
        if !self.shared.started.load(Ordering::SeqCst) {
            return Ok(());
        }
        // SAFETY: valid port id; no queue handle exists, so nobody polls.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.pid()) };
        DpdkError::check(OP, ret)?;
        self.shared.started.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Whether [`Port::start`] succeeded and the port was not stopped since.
    pub fn is_started(&self) -> bool {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.pid(), &mut addr) };
        DpdkError::check("rte_eth_macaddr_get", ret)?;
        Ok(addr.addr_bytes)
    }

    /// Sets the port's MAC address.
    pub fn set_mac(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id; DPDK only reads `addr`.
        let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.pid(), &mut addr) };
        DpdkError::check("rte_eth_dev_default_mac_addr_set", ret).map(drop)
    }

    /// Enables or disables promiscuous mode.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        // SAFETY: valid port id.
        let ret = unsafe {
            if on {
                dpdk_sys::rte_eth_promiscuous_enable(self.pid())
            } else {
                dpdk_sys::rte_eth_promiscuous_disable(self.pid())
            }
        };
        DpdkError::check("rte_eth_promiscuous_enable/disable", ret).map(drop)
    }

    /// Current link state, without waiting.
    pub fn link(&self) -> Result<Link> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.pid(), &mut link) };
        DpdkError::check("rte_eth_link_get_nowait", ret)?;
        let up = link.link_status() != 0;
        // RTE_ETH_SPEED_NUM_UNKNOWN is u32::MAX.
        let speed = if link.link_speed == u32::MAX {
            0
        } else {
            link.link_speed
        };
        Ok(Link {
            up,
            speed_mbps: if up { speed } else { 0 },
        })
    }

    /// Basic counters.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.pid(), &mut s) };
        DpdkError::check("rte_eth_stats_get", ret)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Resets the basic counters.
    pub fn reset_stats(&mut self) -> Result<()> {
        // SAFETY: valid port id.
        let ret = unsafe { dpdk_sys::rte_eth_stats_reset(self.pid()) };
        DpdkError::check("rte_eth_stats_reset", ret).map(drop)
    }

    /// Driver-specific extended counters, as (name, value).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        let id = self.pid();
        // SAFETY: valid port id; NULL/0 asks for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        let n = DpdkError::check("rte_eth_xstats_get_names", n)? as usize;
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
        // SAFETY: `names` has room for n entries.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n as u32) };
        let got = DpdkError::check("rte_eth_xstats_get_names", got)? as usize;
        let mut vals = vec![dpdk_sys::rte_eth_xstat::default(); n];
        // SAFETY: `vals` has room for n entries.
        let gotv = unsafe { dpdk_sys::rte_eth_xstats_get(id, vals.as_mut_ptr(), n as u32) };
        let gotv = DpdkError::check("rte_eth_xstats_get", gotv)? as usize;
        let count = got.min(gotv).min(n);
        Ok(vals[..count]
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: name is a fixed char array; DPDK NUL-terminates it
                // (zeroed by default otherwise), and we bound the read.
                let bytes = unsafe {
                    std::slice::from_raw_parts(name.name.as_ptr().cast::<u8>(), name.name.len())
                };
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Some((String::from_utf8_lossy(&bytes[..end]).into_owned(), v.value))
            })
            .collect())
    }

    /// Hands out RX queue `q` (once per [`Port::configure`]).
    pub fn take_rx_queue(&mut self, q: u16) -> Option<RxQueue> {
        let taken = self.rx_taken.get_mut(usize::from(q))?;
        if std::mem::replace(taken, true) {
            return None;
        }
        Some(RxQueue {
            port: self.shared.id.0,
            queue: q,
            _shared: Arc::clone(&self.shared),
            _not_sync: PhantomData,
        })
    }

    /// Hands out TX queue `q` (once per [`Port::configure`]).
    pub fn take_tx_queue(&mut self, q: u16) -> Option<TxQueue> {
        let taken = self.tx_taken.get_mut(usize::from(q))?;
        if std::mem::replace(taken, true) {
            return None;
        }
        Some(TxQueue {
            port: self.shared.id.0,
            queue: q,
            _shared: Arc::clone(&self.shared),
            _not_sync: PhantomData,
        })
    }
}

/// The sole handle to one RX queue. `Send`, not `Sync`: one poller.
///
/// Keeps the port open. Poll only while the port is started (DPDK returns 0
/// and logs an error otherwise).
#[derive(Debug)]
pub struct RxQueue {
    pub(crate) port: u16,
    pub(crate) queue: u16,
    _shared: Arc<Shared>,
    _not_sync: PhantomData<Cell<()>>,
}

/// The sole handle to one TX queue. `Send`, not `Sync`: one sender.
///
/// Keeps the port open. Send only while the port is started.
#[derive(Debug)]
pub struct TxQueue {
    pub(crate) port: u16,
    pub(crate) queue: u16,
    _shared: Arc<Shared>,
    _not_sync: PhantomData<Cell<()>>,
}

impl RxQueue {
    /// (port, queue).
    pub fn id(&self) -> (PortId, u16) {
        (PortId(self.port), self.queue)
    }
}

impl TxQueue {
    /// (port, queue).
    pub fn id(&self) -> (PortId, u16) {
        (PortId(self.port), self.queue)
    }
}
