//! Offload capability bits and mbuf `ol_flags`.
//!
//! DPDK defines these as function-like macros, which bindgen cannot expand;
//! `dpdk-sys`'s shim header re-exports them as constants (`SHIM_*`).

/// Port TX offload bits (`RTE_ETH_TX_OFFLOAD_*`), for
/// [`crate::PortInfo::tx_offload_capa`] and [`crate::PortConf::tx_offloads`].
pub const TX_IPV4_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
/// `RTE_ETH_TX_OFFLOAD_UDP_CKSUM`.
pub const TX_UDP_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
/// `RTE_ETH_TX_OFFLOAD_TCP_CKSUM`.
pub const TX_TCP_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
/// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`: needed to send chained mbufs.
pub const TX_MULTI_SEGS: u64 = dpdk_sys::SHIM_RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
/// `RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE`: the driver may assume every mbuf
/// sent on a queue comes from one pool and has refcnt 1. Only enable it if
/// each TX queue is fed from a single pool; a mix returns mbufs to the wrong
/// pool.
pub const TX_MBUF_FAST_FREE: u64 = dpdk_sys::SHIM_RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;

/// Port RX offload bits (`RTE_ETH_RX_OFFLOAD_*`), for
/// [`crate::PortInfo::rx_offload_capa`].
pub const RX_IPV4_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
/// `RTE_ETH_RX_OFFLOAD_UDP_CKSUM`.
pub const RX_UDP_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
/// `RTE_ETH_RX_OFFLOAD_TCP_CKSUM`.
pub const RX_TCP_CKSUM: u64 = dpdk_sys::SHIM_RTE_ETH_RX_OFFLOAD_TCP_CKSUM;

/// Per-mbuf `ol_flags` (`RTE_MBUF_F_*`), for [`crate::Mbuf::set_tx_offload`]
/// and [`crate::Mbuf::ol_flags`].
pub mod mbuf {
    /// `RTE_MBUF_F_TX_IPV4`: the packet is IPv4 (needed with the cksum flags).
    pub const TX_IPV4: u64 = dpdk_sys::SHIM_RTE_MBUF_F_TX_IPV4;
    /// `RTE_MBUF_F_TX_IP_CKSUM`: NIC computes the IPv4 header checksum.
    pub const TX_IP_CKSUM: u64 = dpdk_sys::SHIM_RTE_MBUF_F_TX_IP_CKSUM;
    /// `RTE_MBUF_F_TX_UDP_CKSUM`: NIC computes the UDP checksum (put the
    /// pseudo-header checksum, [`crate::net::ipv4_phdr_cksum`], in the field).
    pub const TX_UDP_CKSUM: u64 = dpdk_sys::SHIM_RTE_MBUF_F_TX_UDP_CKSUM;
    /// `RTE_MBUF_F_TX_TCP_CKSUM`.
    pub const TX_TCP_CKSUM: u64 = dpdk_sys::SHIM_RTE_MBUF_F_TX_TCP_CKSUM;
    /// `RTE_MBUF_F_TX_OFFLOAD_MASK`: all TX request bits.
    pub const TX_OFFLOAD_MASK: u64 = dpdk_sys::SHIM_RTE_MBUF_F_TX_OFFLOAD_MASK;
    /// `RTE_MBUF_F_RX_IP_CKSUM_MASK`.
    pub const RX_IP_CKSUM_MASK: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_IP_CKSUM_MASK;
    /// `RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN`.
    pub const RX_IP_CKSUM_UNKNOWN: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN;
    /// `RTE_MBUF_F_RX_IP_CKSUM_BAD`.
    pub const RX_IP_CKSUM_BAD: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_IP_CKSUM_BAD;
    /// `RTE_MBUF_F_RX_IP_CKSUM_GOOD`.
    pub const RX_IP_CKSUM_GOOD: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_IP_CKSUM_GOOD;
    /// `RTE_MBUF_F_RX_IP_CKSUM_NONE`.
    pub const RX_IP_CKSUM_NONE: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_IP_CKSUM_NONE;
    /// `RTE_MBUF_F_RX_L4_CKSUM_MASK`.
    pub const RX_L4_CKSUM_MASK: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_L4_CKSUM_MASK;
    /// `RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN`.
    pub const RX_L4_CKSUM_UNKNOWN: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN;
    /// `RTE_MBUF_F_RX_L4_CKSUM_BAD`.
    pub const RX_L4_CKSUM_BAD: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_L4_CKSUM_BAD;
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`.
    pub const RX_L4_CKSUM_GOOD: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    /// `RTE_MBUF_F_RX_L4_CKSUM_NONE`.
    pub const RX_L4_CKSUM_NONE: u64 = dpdk_sys::SHIM_RTE_MBUF_F_RX_L4_CKSUM_NONE;
}

/// A set of port TX offload bits with readable names in `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOffloads(pub u64);

impl TxOffloads {
    /// Whether all of `bits` are set.
    pub fn contains(self, bits: u64) -> bool {
        self.0 & bits == bits
    }
}

impl std::fmt::Debug for TxOffloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(u64, &str); 5] = [
            (TX_IPV4_CKSUM, "IPV4_CKSUM"),
            (TX_UDP_CKSUM, "UDP_CKSUM"),
            (TX_TCP_CKSUM, "TCP_CKSUM"),
            (TX_MULTI_SEGS, "MULTI_SEGS"),
            (TX_MBUF_FAST_FREE, "MBUF_FAST_FREE"),
        ];
        let mut l = f.debug_set();
        let mut rest = self.0;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                l.entry(&format_args!("{name}"));
                rest &= !bit;
            }
        }
        if rest != 0 {
            l.entry(&format_args!("{rest:#x}"));
        }
        l.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_dpdk_22_11() {
        assert_eq!(TX_IPV4_CKSUM, 1 << 1);
        assert_eq!(TX_UDP_CKSUM, 1 << 2);
        assert_eq!(TX_TCP_CKSUM, 1 << 3);
        assert_eq!(TX_MULTI_SEGS, 1 << 15);
        assert_eq!(TX_MBUF_FAST_FREE, 1 << 16);
        assert_eq!(mbuf::TX_IPV4, 1 << 55);
        assert_eq!(mbuf::TX_IP_CKSUM, 1 << 54);
        assert_eq!(mbuf::TX_UDP_CKSUM, 3 << 52);
        assert_eq!(mbuf::RX_IP_CKSUM_GOOD, 1 << 7);
        assert_eq!(
            format!("{:?}", TxOffloads(TX_IPV4_CKSUM | TX_UDP_CKSUM | 1 << 40)),
            "{IPV4_CKSUM, UDP_CKSUM, 0x10000000000}"
        );
    }
}
