//! IPv4 / UDP / TCP checksum helpers (DPDK's `rte_ipv4_*cksum`).
//!
//! All take byte slices and check lengths before DPDK reads the headers, so
//! they work on unaligned data straight out of an mbuf.

/// Length of the IPv4 header in `ip` (IHL * 4), if `ip` holds all of it.
fn ihl_len(ip: &[u8]) -> Option<usize> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let len = usize::from(first & 0x0f) * 4;
    (len >= 20 && ip.len() >= len).then_some(len)
}

/// IPv4 header checksum (`rte_ipv4_cksum`) of the header at the start of
/// `ip`, with options. Put the result in the checksum field as is (it is in
/// network order already, as read by `u16::from_ne_bytes`). `None` if `ip`
/// is not a complete IPv4 header.
pub fn ipv4_cksum(ip: &[u8]) -> Option<u16> {
    ihl_len(ip)?;
    // SAFETY: the whole header (IHL * 4 bytes) is inside `ip`; DPDK reads it
    // through a packed (align 1) struct.
    Some(unsafe { dpdk_sys::shim_ipv4_cksum(ip.as_ptr().cast()) })
}

/// UDP/TCP checksum over the IPv4 pseudo-header and the L4 segment
/// (`rte_ipv4_udptcp_cksum`). `packet` starts at the IPv4 header and holds
/// `total_length` bytes; the L4 checksum field must be 0 when computing.
/// Store the result with `to_ne_bytes`.
pub fn ipv4_udptcp_cksum(packet: &[u8]) -> Option<u16> {
    let hl = ihl_len(packet)?;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < hl || total > packet.len() {
        return None;
    }
    // SAFETY: DPDK reads the IPv4 header (checked) and total - hl bytes after
    // it, all inside `packet`.
    Some(unsafe {
        dpdk_sys::shim_ipv4_udptcp_cksum(packet.as_ptr().cast(), packet[hl..].as_ptr().cast())
    })
}

/// Pseudo-header checksum (`rte_ipv4_phdr_cksum`) to pre-load into the
/// UDP/TCP checksum field when the NIC finishes it
/// ([`crate::offload::mbuf::TX_UDP_CKSUM`]); `ol_flags` are the mbuf's TX
/// flags (matters for TSO). Store with `to_ne_bytes`.
pub fn ipv4_phdr_cksum(ip: &[u8], ol_flags: u64) -> Option<u16> {
    ihl_len(ip)?;
    // SAFETY: the IPv4 header is inside `ip`.
    Some(unsafe { dpdk_sys::shim_ipv4_phdr_cksum(ip.as_ptr().cast(), ol_flags) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte IPv4 + 8-byte UDP + 4 bytes payload, checksums zero.
    fn packet() -> Vec<u8> {
        vec![
            0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ip
            0x30, 0x39, 0x1f, 0x90, 0, 12, 0, 0, // udp
            b'p', b'i', b'n', b'g',
        ]
    }

    /// Plain one's-complement sum for cross-checking.
    fn fold(data: &[u8], mut sum: u32) -> u16 {
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn ipv4_header_checksum() {
        let p = packet();
        let c = ipv4_cksum(&p).unwrap();
        assert_eq!(c.to_ne_bytes(), fold(&p[..20], 0).to_be_bytes());
        // Unaligned input works too.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&p);
        assert_eq!(ipv4_cksum(&shifted[1..]), Some(c));
    }

    #[test]
    fn udp_checksum() {
        let p = packet();
        let c = ipv4_udptcp_cksum(&p).unwrap();
        let mut phdr = Vec::new();
        phdr.extend_from_slice(&p[12..20]);
        phdr.extend_from_slice(&[0, 17, 0, 12]);
        phdr.extend_from_slice(&p[20..]);
        assert_eq!(c.to_ne_bytes(), fold(&phdr, 0).to_be_bytes());
        assert!(ipv4_phdr_cksum(&p, 0).is_some());
    }

    #[test]
    fn rejects_short_or_bad() {
        let p = packet();
        assert_eq!(ipv4_cksum(&p[..19]), None);
        assert_eq!(ipv4_udptcp_cksum(&p[..31]), None);
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(ipv4_cksum(&v6), None);
        let mut bad_ihl = p;
        bad_ihl[0] = 0x44;
        assert_eq!(ipv4_cksum(&bad_ihl), None);
    }
}
