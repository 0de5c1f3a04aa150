//! A small safe layer over DPDK (22.11+), built on `dpdk-sys`.
//!
//! - [`Eal`]: process-wide EAL init/cleanup (RAII).
//! - [`lcore`]: lcore ids and [`lcore::launch`] with panic capture.
//! - [`Mempool`] / [`Mbuf`]: packet buffers; `Mbuf` frees itself on drop.
//! - [`Port`]: ethdev configuration, start/stop, stats; queues are handed out
//!   once each as [`RxQueue`] / [`TxQueue`] so every queue has one owner.
//! - [`RxBurst`] / [`TxBurst`]: fixed-size, heap-free burst batches.
//! - [`offload`], [`net`]: offload bits and IPv4/UDP checksum helpers.
//!
//! All FFI stays inside this crate; the public API is safe. Lifetimes that
//! DPDK cannot express in types are enforced at run time: EAL cleanup is
//! skipped while DPDK objects are alive, a mempool with mbufs still in use is
//! leaked instead of freed, and a port is closed only after its last queue
//! handle is gone.

mod burst;
mod eal;
mod error;
pub mod lcore;
mod mbuf;
mod mempool;
pub mod net;
pub mod offload;
mod port;

pub use burst::{RxBurst, RxDrain, TxBurst};
pub use eal::Eal;
pub use error::{DpdkError, Result};
pub use lcore::{LcoreHandle, LcoreId, LcorePanic};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Link, Port, PortConf, PortId, PortInfo, PortStats, RxQueue, TxQueue};

/// Current value of the CPU timestamp counter (`rte_rdtsc`).
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC is available on every x86_64 CPU and has no memory
        // effects; this is exactly what rte_rdtsc() does on x86.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: shim_rdtsc only reads the cycle counter.
        unsafe { dpdk_sys::shim_rdtsc() }
    }
}

/// TSC ticks per second as measured by EAL; 0 before [`Eal::init`].
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a static set once during EAL init (0 before it).
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// Spin-loop hint (`rte_pause`).
#[inline]
pub fn pause() {
    core::hint::spin_loop();
}
