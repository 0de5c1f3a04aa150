//! The per-packet Ethernet/IPv4/UDP frame builder for UDP lanes.
//!
//! A [`UdpLaneTemplate`] is built once per lane (addresses, ports, TTL). For each transaction the
//! data plane computes `checksum::sum(payload)` once and calls [`UdpLaneTemplate::write`] for
//! every lane the transaction goes to: a 42-byte copy, three patched 16-bit fields, two
//! checksums from precomputed partial sums, and the payload copy.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use swqos_wire::checksum;
//! use swqos_wire::ethernet::EthernetAddress;
//! use swqos_wire::udp_lane::{ChecksumMode, UdpLaneTemplate, UDP_FRAME_HEADER_LEN};
//!
//! let lane = UdpLaneTemplate::new(
//!     "02:00:00:00:00:01".parse().unwrap(),
//!     "02:00:00:00:00:02".parse().unwrap(),
//!     Ipv4Addr::new(10, 0, 0, 1),
//!     Ipv4Addr::new(10, 0, 0, 2),
//!     40000,
//!     8001,
//!     64,
//! );
//! let tx = [0u8; 300]; // the signed transaction
//! let tx_sum = checksum::sum(&tx); // once per transaction
//! let mut frame = [0u8; UDP_FRAME_HEADER_LEN + 300]; // an mbuf's data room in the data plane
//! lane.write(&mut frame, &tx, tx_sum, 1, ChecksumMode::Software).unwrap();
//! assert_eq!(&frame[UDP_FRAME_HEADER_LEN..], &tx[..]);
//! ```

use core::fmt;
use core::net::Ipv4Addr;

use crate::checksum;
use crate::ethernet::{self, EthernetAddress};
use crate::ipv4::{self, protocol, FLAG_DF};
use crate::udp;

/// Bytes of Ethernet (14) + IPv4 (20) + UDP (8) headers.
pub const UDP_FRAME_HEADER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// Largest payload whose IPv4 total length fits 16 bits.
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize - ipv4::HEADER_LEN - udp::HEADER_LEN;

const IP: usize = ethernet::HEADER_LEN;
const IP_TOTAL_LEN: usize = IP + 2;
const IP_IDENT: usize = IP + 4;
const IP_CHECKSUM: usize = IP + 10;
const UDP: usize = IP + ipv4::HEADER_LEN;
const UDP_LEN: usize = UDP + 4;
const UDP_CHECKSUM: usize = UDP + 6;

/// Which checksums software computes and which are left to the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumMode {
    /// Fill the IPv4 header checksum and the UDP checksum in software.
    Software,
    /// Leave the marked checksums to the NIC (DPDK `RTE_MBUF_F_TX_IP_CKSUM` /
    /// `RTE_MBUF_F_TX_UDP_CKSUM`). For an offloaded IPv4 checksum the field is written as 0; for
    /// an offloaded UDP checksum the field holds the non-inverted pseudo-header checksum (as
    /// DPDK's `rte_ipv4_phdr_cksum` returns), which the hardware completes. A `false` field is
    /// computed in software.
    Offload {
        /// The NIC computes the IPv4 header checksum.
        ip: bool,
        /// The NIC computes the UDP checksum.
        udp: bool,
    },
}

/// Error from [`UdpLaneTemplate::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// The frame buffer is not exactly `UDP_FRAME_HEADER_LEN + payload.len()` bytes.
    LengthMismatch {
        /// The required length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The payload is longer than [`MAX_UDP_PAYLOAD`].
    PayloadTooLarge {
        /// The payload length given.
        len: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::LengthMismatch { expected, actual } => write!(
                f,
                "frame buffer is {actual} bytes, expected {expected} (headers plus payload)"
            ),
            FrameError::PayloadTooLarge { len } => write!(
                f,
                "UDP payload of {len} bytes exceeds the maximum of {MAX_UDP_PAYLOAD}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Prebuilt headers of one UDP lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpLaneTemplate {
    /// Headers with total length, ident, UDP length and both checksums zero.
    header: [u8; UDP_FRAME_HEADER_LEN],
    /// Partial sum of the 20-byte IPv4 header as stored in `header`.
    ip_sum: u32,
    /// Partial sum of the pseudo-header with length 0 (addresses and protocol).
    pseudo_sum: u32,
    /// `pseudo_sum` plus the UDP header as stored in `header` (the two ports).
    udp_sum: u32,
}

impl UdpLaneTemplate {
    /// Builds the template: Ethernet II with EtherType IPv4; IPv4 version 4, IHL 5, DSCP/ECN 0,
    /// DF set, the given TTL (64 is the usual default), protocol UDP; UDP with the given ports.
    pub fn new(
        src_mac: EthernetAddress,
        dst_mac: EthernetAddress,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        ttl: u8,
    ) -> Self {
        let mut h = [0u8; UDP_FRAME_HEADER_LEN];
        h[0..6].copy_from_slice(&dst_mac.0);
        h[6..12].copy_from_slice(&src_mac.0);
        h[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
        h[IP] = 0x45;
        h[IP + 6..IP + 8].copy_from_slice(&FLAG_DF.to_be_bytes());
        h[IP + 8] = ttl;
        h[IP + 9] = protocol::UDP;
        h[IP + 12..IP + 16].copy_from_slice(&src_ip.octets());
        h[IP + 16..IP + 20].copy_from_slice(&dst_ip.octets());
        h[UDP..UDP + 2].copy_from_slice(&src_port.to_be_bytes());
        h[UDP + 2..UDP + 4].copy_from_slice(&dst_port.to_be_bytes());
        let ip_sum = checksum::sum(&h[IP..UDP]);
        let pseudo_sum = checksum::pseudo_header_ipv4(src_ip, dst_ip, protocol::UDP, 0);
        let udp_sum = checksum::combine(pseudo_sum, checksum::sum(&h[UDP..]));
        UdpLaneTemplate {
            header: h,
            ip_sum,
            pseudo_sum,
            udp_sum,
        }
    }

    /// The prebuilt header bytes (lengths, ident and checksums zero).
    pub fn header(&self) -> &[u8; UDP_FRAME_HEADER_LEN] {
        &self.header
    }

    /// Writes Ethernet/IPv4/UDP headers and `payload` into `frame`, which must be exactly
    /// [`UDP_FRAME_HEADER_LEN`]` + payload.len()` bytes (otherwise an error, never a panic).
    ///
    /// `payload_sum` must be [`checksum::sum`]`(payload)`, computed once per transaction and
    /// reused for every lane it goes to. `ip_ident` is the IPv4 identification.
    pub fn write(
        &self,
        frame: &mut [u8],
        payload: &[u8],
        payload_sum: u32,
        ip_ident: u16,
        mode: ChecksumMode,
    ) -> Result<(), FrameError> {
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(FrameError::PayloadTooLarge { len: payload.len() });
        }
        let expected = UDP_FRAME_HEADER_LEN + payload.len();
        if frame.len() != expected {
            return Err(FrameError::LengthMismatch {
                expected,
                actual: frame.len(),
            });
        }
        let Some((hdr, body)) = frame.split_first_chunk_mut::<UDP_FRAME_HEADER_LEN>() else {
            return Err(FrameError::LengthMismatch {
                expected,
                actual: frame.len(),
            });
        };
        // Both fit: payload.len() <= MAX_UDP_PAYLOAD.
        let udp_len = (udp::HEADER_LEN + payload.len()) as u16;
        let total_len = udp_len + ipv4::HEADER_LEN as u16;

        *hdr = self.header;
        body.copy_from_slice(payload);
        put(hdr, IP_TOTAL_LEN, total_len);
        put(hdr, IP_IDENT, ip_ident);
        put(hdr, UDP_LEN, udp_len);

        let (ip_offload, udp_offload) = match mode {
            ChecksumMode::Software => (false, false),
            ChecksumMode::Offload { ip, udp } => (ip, udp),
        };

        let ip_csum = if ip_offload {
            0
        } else {
            let s = checksum::combine(self.ip_sum, u32::from(total_len) + u32::from(ip_ident));
            checksum::finish(s)
        };
        put(hdr, IP_CHECKSUM, ip_csum);

        let udp_csum = if udp_offload {
            checksum::fold(checksum::combine(self.pseudo_sum, u32::from(udp_len)))
        } else {
            // The length appears twice: in the pseudo-header and in the UDP header.
            let s = checksum::combine(self.udp_sum, 2 * u32::from(udp_len));
            let c = checksum::finish(checksum::combine(s, payload_sum));
            if c == 0 {
                0xffff
            } else {
                c
            }
        };
        put(hdr, UDP_CHECKSUM, udp_csum);
        Ok(())
    }
}

#[inline(always)]
fn put(hdr: &mut [u8; UDP_FRAME_HEADER_LEN], at: usize, value: u16) {
    let [a, b] = value.to_be_bytes();
    hdr[at] = a;
    hdr[at + 1] = b;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::{EthernetFrame, EthernetRepr};
    use crate::ipv4::{Ipv4Packet, Ipv4Repr};
    use crate::udp::{UdpPacket, UdpRepr};

    const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const DST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const DST_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 250);

    fn template() -> UdpLaneTemplate {
        UdpLaneTemplate::new(SRC_MAC, DST_MAC, SRC_IP, DST_IP, 40001, 8001, 64)
    }

    /// Independent straightforward checksum: sum of big-endian 16-bit words, fold, invert.
    fn naive_csum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            acc += hi | lo;
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    fn naive_udp_csum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
        let mut v = Vec::new();
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.push(0);
        v.push(17);
        v.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        v.extend_from_slice(udp);
        v[18] = 0; // zero the checksum field (12 pseudo + 6)
        v[19] = 0;
        match naive_csum(&v) {
            0 => 0xffff,
            c => c,
        }
    }

    fn payload(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn software_frames_parse_and_match_naive() {
        let t = template();
        for len in 0..=1232usize {
            let p = payload(len, len as u32 + 7);
            let mut frame = vec![0xaau8; UDP_FRAME_HEADER_LEN + len];
            let ident = (len as u16).wrapping_mul(0x9e37);
            t.write(
                &mut frame,
                &p,
                checksum::sum(&p),
                ident,
                ChecksumMode::Software,
            )
            .unwrap();

            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            let er = EthernetRepr::parse(&eth).unwrap();
            assert_eq!(er.src_addr, SRC_MAC);
            assert_eq!(er.dst_addr, DST_MAC);
            assert_eq!(er.ethertype, ethernet::ethertype::IPV4);

            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            assert!(ip.dont_frag());
            assert_eq!(
                ip.checksum(),
                naive_csum(&{
                    let mut h = ip.header().to_vec();
                    h[10] = 0;
                    h[11] = 0;
                    h
                })
            );
            let ir = Ipv4Repr::parse(&ip).unwrap();
            assert_eq!(
                ir,
                Ipv4Repr {
                    src: SRC_IP,
                    dst: DST_IP,
                    protocol: protocol::UDP,
                    payload_len: 8 + len,
                    ttl: 64,
                    ident,
                }
            );

            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(
                UdpRepr::parse(&u, SRC_IP, DST_IP).unwrap(),
                UdpRepr {
                    src_port: 40001,
                    dst_port: 8001
                }
            );
            assert_eq!(usize::from(u.len()), 8 + len);
            assert_eq!(u.checksum(), naive_udp_csum(SRC_IP, DST_IP, u.datagram()));
            assert_eq!(u.payload(), &p[..]);
        }
    }

    #[test]
    fn offload_modes() {
        let t = template();
        for len in [0usize, 1, 2, 3, 100, 1231, 1232] {
            let p = payload(len, 99);
            let sum = checksum::sum(&p);
            let mut sw = vec![0u8; UDP_FRAME_HEADER_LEN + len];
            t.write(&mut sw, &p, sum, 7, ChecksumMode::Software)
                .unwrap();
            for (ip_off, udp_off) in [(true, true), (true, false), (false, true), (false, false)] {
                let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + len];
                let mode = ChecksumMode::Offload {
                    ip: ip_off,
                    udp: udp_off,
                };
                t.write(&mut f, &p, sum, 7, mode).unwrap();
                let ip_field = u16::from_be_bytes([f[IP_CHECKSUM], f[IP_CHECKSUM + 1]]);
                let udp_field = u16::from_be_bytes([f[UDP_CHECKSUM], f[UDP_CHECKSUM + 1]]);
                if ip_off {
                    assert_eq!(ip_field, 0);
                } else {
                    assert_eq!(
                        f[IP_CHECKSUM..IP_CHECKSUM + 2],
                        sw[IP_CHECKSUM..IP_CHECKSUM + 2]
                    );
                }
                if udp_off {
                    // rte_ipv4_phdr_cksum: folded, non-inverted sum of the 12-byte pseudo-header.
                    let mut ph = Vec::new();
                    ph.extend_from_slice(&SRC_IP.octets());
                    ph.extend_from_slice(&DST_IP.octets());
                    ph.extend_from_slice(&[0, 17]);
                    ph.extend_from_slice(&((8 + len) as u16).to_be_bytes());
                    assert_eq!(udp_field, !naive_csum(&ph));
                    // What the NIC does: sum over the UDP datagram with the field as seeded.
                    let nic = checksum::finish(checksum::sum(&f[UDP..]));
                    let nic = if nic == 0 { 0xffff } else { nic };
                    assert_eq!(nic.to_be_bytes(), sw[UDP_CHECKSUM..UDP_CHECKSUM + 2]);
                } else {
                    assert_eq!(
                        f[UDP_CHECKSUM..UDP_CHECKSUM + 2],
                        sw[UDP_CHECKSUM..UDP_CHECKSUM + 2]
                    );
                }
                // Everything else equals the software frame.
                let mut a = f.clone();
                let mut b = sw.clone();
                for x in [&mut a, &mut b] {
                    x[IP_CHECKSUM..IP_CHECKSUM + 2].fill(0);
                    x[UDP_CHECKSUM..UDP_CHECKSUM + 2].fill(0);
                }
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn write_rejects_wrong_lengths() {
        let t = template();
        let p = [1u8; 10];
        let mut f = [0u8; 51];
        assert_eq!(
            t.write(&mut f, &p, checksum::sum(&p), 0, ChecksumMode::Software),
            Err(FrameError::LengthMismatch {
                expected: 52,
                actual: 51
            })
        );
        let mut f = [0u8; 53];
        assert!(t
            .write(&mut f, &p, checksum::sum(&p), 0, ChecksumMode::Software)
            .is_err());
        let mut empty: [u8; 0] = [];
        assert!(t
            .write(&mut empty, &[], 0, 0, ChecksumMode::Software)
            .is_err());
        let big = vec![0u8; MAX_UDP_PAYLOAD + 1];
        let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + big.len()];
        assert_eq!(
            t.write(&mut f, &big, 0, 0, ChecksumMode::Software),
            Err(FrameError::PayloadTooLarge { len: big.len() })
        );
        let ok = vec![0xffu8; MAX_UDP_PAYLOAD];
        let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + ok.len()];
        t.write(
            &mut f,
            &ok,
            checksum::sum(&ok),
            0xffff,
            ChecksumMode::Software,
        )
        .unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.total_len(), u16::MAX);
        assert!(ip.verify_checksum());
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum(SRC_IP, DST_IP));
    }

    #[test]
    fn ttl_and_ports_from_template() {
        let t = UdpLaneTemplate::new(SRC_MAC, DST_MAC, SRC_IP, DST_IP, 1, 65535, 3);
        let mut f = [0u8; UDP_FRAME_HEADER_LEN];
        t.write(&mut f, &[], 0, 1, ChecksumMode::Software).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.ttl(), 3);
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (1, 65535));
        assert!(u.verify_checksum(SRC_IP, DST_IP));
        assert_ne!(u.checksum(), 0);
    }
}
