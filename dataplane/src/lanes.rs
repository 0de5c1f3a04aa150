//! The lane table: for each configured lane, a prebuilt frame template and how its checksums are
//! filled (by the NIC when the port offers the offload, in software otherwise).

use std::ops::Deref;

use dpdk_config::{Config, LaneKind};
use swqos_wire::ethernet::EthernetAddress;
use swqos_wire::udp_lane::{ChecksumMode, FrameError, UdpLaneTemplate, UDP_FRAME_HEADER_LEN};

/// Time-to-live of the frames we send.
const TTL: u8 = 64;

/// Mbuf metadata for a port that computes checksums itself.
#[derive(Debug, Clone, Copy)]
pub struct Offload {
    /// `RTE_MBUF_F_TX_*` flags.
    pub flags: u64,
    /// Ethernet header length.
    pub l2_len: u8,
    /// IPv4 header length.
    pub l3_len: u16,
    /// UDP header length.
    pub l4_len: u8,
}

/// What a port can do for our checksums (from its `tx_offload_capa`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortChecksums {
    /// The NIC fills the IPv4 header checksum.
    pub ipv4: bool,
    /// The NIC fills the UDP checksum.
    pub udp: bool,
}

/// One lane, ready for the per-packet path.
#[derive(Debug, Clone)]
pub struct Lane {
    /// Configured name.
    pub name: String,
    /// Config index of the port it sends on.
    pub port: usize,
    /// How its submissions leave.
    pub send: LaneSend,
    /// A QUIC lane's fallback http lane (its id), if it has one.
    pub fallback: Option<usize>,
}

/// How a lane's submissions leave the host.
#[derive(Debug, Clone)]
pub enum LaneSend {
    /// A UDP datagram built in an mbuf by the TX lcore.
    Udp(UdpFrame),
    /// An HTTP relay: the submission is handed to the control plane, which sends it on one of
    /// its kernel TCP connections (the delegated fast path builds on this).
    Relay,
    /// A QUIC relay: the bridging lcore's connection (`crate::quic`), whose datagrams carry
    /// these headers.
    Quic(UdpFrame),
}

/// A UDP lane's prebuilt frame template and checksum handling.
#[derive(Debug, Clone)]
pub struct UdpFrame {
    template: UdpLaneTemplate,
    mode: ChecksumMode,
    /// Mbuf offload metadata, when the NIC fills any checksum.
    pub offload: Option<Offload>,
}

impl UdpFrame {
    /// Bytes of headers before the transaction.
    #[inline]
    pub fn header_len(&self) -> usize {
        UDP_FRAME_HEADER_LEN
    }

    /// Writes the frame for `tx` into `frame` (exactly `header_len() + tx.len()` bytes).
    #[inline]
    pub fn write(
        &self,
        frame: &mut [u8],
        tx: &[u8],
        payload_sum: u32,
        ip_ident: u16,
    ) -> Result<(), FrameError> {
        self.template
            .write(frame, tx, payload_sum, ip_ident, self.mode)
    }
}

/// All lanes, indexed by lane id (their order in the config).
#[derive(Debug, Clone, Default)]
pub struct LaneTable(Vec<Lane>);

impl Deref for LaneTable {
    type Target = [Lane];
    fn deref(&self) -> &[Lane] {
        &self.0
    }
}

impl LaneTable {
    /// Builds the table from the config, each port's MAC and its checksum offloads.
    pub fn new(config: &Config, port_macs: &[[u8; 6]], offloads: &[PortChecksums]) -> LaneTable {
        let lanes = config
            .lanes
            .iter()
            .map(|lane| {
                let send = match &lane.kind {
                    LaneKind::Udp(udp) => {
                        LaneSend::Udp(udp_frame(udp, port_macs[lane.port], offloads[lane.port]))
                    }
                    LaneKind::Http(_) => LaneSend::Relay,
                    LaneKind::Quic(q) => {
                        let udp = dpdk_config::UdpLane {
                            src_ip: q.src_ip,
                            src_port: q.src_port,
                            dst_ip: q.dst_ip,
                            dst_port: q.dst_port,
                            dst_mac: q.dst_mac,
                        };
                        LaneSend::Quic(udp_frame(&udp, port_macs[lane.port], offloads[lane.port]))
                    }
                };
                Lane {
                    name: lane.name.clone(),
                    port: lane.port,
                    send,
                    fallback: match &lane.kind {
                        LaneKind::Quic(q) => q.fallback,
                        _ => None,
                    },
                }
            })
            .collect();
        LaneTable(lanes)
    }

    /// Lanes whose submissions go to the control plane (a lane mask).
    pub fn relay_mask(&self) -> u64 {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l.send, LaneSend::Relay))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Lanes sent over the data plane's QUIC connections (a lane mask).
    pub fn quic_mask(&self) -> u64 {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l.send, LaneSend::Quic(_)))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// For each QUIC lane with a `fallback`, the http lane's id (`u8::MAX` elsewhere).
    pub fn quic_fallbacks(&self) -> [u8; swqos_shm::layout::MAX_LANES] {
        let mut out = [u8::MAX; swqos_shm::layout::MAX_LANES];
        for (id, lane) in self.0.iter().enumerate() {
            if let (LaneSend::Quic(_), Some(f)) = (&lane.send, lane.fallback) {
                out[id] = f as u8;
            }
        }
        out
    }

    /// A description of each lane for the startup log (tokens never appear).
    pub fn describe(config: &Config) -> Vec<String> {
        config
            .lanes
            .iter()
            .map(|l| match &l.kind {
                LaneKind::Udp(u) => format!(
                    "lane {} udp {}:{} -> {}:{} via port {}",
                    l.name, u.src_ip, u.src_port, u.dst_ip, u.dst_port, config.ports[l.port].name
                ),
                LaneKind::Http(h) => format!(
                    "lane {} http {} relay {}:{} (Host {}), {} kernel connection(s) by the control plane",
                    l.name, h.provider, h.dst_ip, h.dst_port, h.host, h.connections
                ),
                LaneKind::Quic(q) => format!(
                    "lane {} quic {} {}:{} -> {}:{} (server name {}) via port {}",
                    l.name,
                    q.provider,
                    q.src_ip,
                    q.src_port,
                    q.dst_ip,
                    q.dst_port,
                    q.server_name,
                    config.ports[l.port].name
                ),
            })
            .collect()
    }
}

/// The frame template of a UDP lane sent from a port with `port_mac` and checksum offloads `cs`.
fn udp_frame(udp: &dpdk_config::UdpLane, port_mac: [u8; 6], cs: PortChecksums) -> UdpFrame {
    let mode = if cs.ipv4 || cs.udp {
        ChecksumMode::Offload {
            ip: cs.ipv4,
            udp: cs.udp,
        }
    } else {
        ChecksumMode::Software
    };
    let offload = (cs.ipv4 || cs.udp).then_some(Offload {
        flags: dpdk::offload::mbuf::TX_IPV4
            | if cs.ipv4 {
                dpdk::offload::mbuf::TX_IP_CKSUM
            } else {
                0
            }
            | if cs.udp {
                dpdk::offload::mbuf::TX_UDP_CKSUM
            } else {
                0
            },
        l2_len: 14,
        l3_len: 20,
        l4_len: 8,
    });
    UdpFrame {
        template: UdpLaneTemplate::new(
            EthernetAddress(port_mac),
            EthernetAddress(udp.dst_mac),
            udp.src_ip,
            udp.dst_ip,
            udp.src_port,
            udp.dst_port,
            TTL,
        ),
        mode,
        offload,
    }
}
