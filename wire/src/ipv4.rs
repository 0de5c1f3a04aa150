//! IPv4 packets (RFC 791).

use core::net::Ipv4Addr;

use crate::{checksum, get_u16, set_u16, WireError};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers used by this crate.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// The "don't fragment" flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// The "more fragments" flag in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;

mod field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const TOTAL_LEN: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr_at(buf: &[u8], at: usize) -> Ipv4Addr {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checks. Accessors never panic: on a short buffer fixed fields read
    /// as zero and [`payload`](Self::payload) is empty.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the fixed header, that IHL is at least 5 and the header fits,
    /// and that `header_len <= total_len <= buffer length` (bytes past `total_len`, such as
    /// Ethernet padding, are allowed and ignored).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    /// IP version (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.byte(field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> u8 {
        (self.byte(field::VER_IHL) & 0x0f) * 4
    }

    /// DSCP (upper six bits of the second byte).
    pub fn dscp(&self) -> u8 {
        self.byte(field::DSCP_ECN) >> 2
    }

    /// ECN (lower two bits of the second byte).
    pub fn ecn(&self) -> u8 {
        self.byte(field::DSCP_ECN) & 0x03
    }

    /// Total length (header plus payload).
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff) << 3
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.byte(field::TTL)
    }

    /// Protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        self.byte(field::PROTOCOL)
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::DST)
    }

    /// The header bytes, options included (empty if the buffer is too short).
    pub fn header(&self) -> &[u8] {
        let hl = usize::from(self.header_len());
        self.buffer.as_ref().get(..hl).unwrap_or(&[])
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        let h = self.header();
        !h.is_empty() && checksum::fold(checksum::sum(h)) == 0xffff
    }

    /// The payload: bytes from the end of the header to `total_len` (empty if the fields are
    /// inconsistent with the buffer, which [`new_checked`](Self::new_checked) rules out).
    pub fn payload(&self) -> &[u8] {
        let hl = usize::from(self.header_len());
        let tl = usize::from(self.total_len());
        self.buffer.as_ref().get(hl..tl).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_byte(&mut self, at: usize, value: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(at) {
            *b = value;
        }
    }

    /// Sets the version (normally 4).
    pub fn set_version(&mut self, value: u8) {
        let b = self.byte(field::VER_IHL);
        self.set_byte(field::VER_IHL, (b & 0x0f) | (value << 4));
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    pub fn set_header_len(&mut self, value: u8) {
        let b = self.byte(field::VER_IHL);
        self.set_byte(field::VER_IHL, (b & 0xf0) | ((value / 4) & 0x0f));
    }

    /// Sets DSCP.
    pub fn set_dscp(&mut self, value: u8) {
        let b = self.byte(field::DSCP_ECN);
        self.set_byte(field::DSCP_ECN, (b & 0x03) | (value << 2));
    }

    /// Sets ECN.
    pub fn set_ecn(&mut self, value: u8) {
        let b = self.byte(field::DSCP_ECN);
        self.set_byte(field::DSCP_ECN, (b & 0xfc) | (value & 0x03));
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, value)
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value)
    }

    /// Sets the whole flags/fragment-offset word, e.g. [`FLAG_DF`].
    pub fn set_flags_frag_raw(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, value)
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.set_byte(field::TTL, value)
    }

    /// Sets the protocol number.
    pub fn set_protocol(&mut self, value: u8) {
        self.set_byte(field::PROTOCOL, value)
    }

    /// Sets the stored header checksum.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        if let Some(d) = self.buffer.as_mut().get_mut(field::SRC..field::SRC + 4) {
            d.copy_from_slice(&addr.octets());
        }
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        if let Some(d) = self.buffer.as_mut().get_mut(field::DST..field::DST + 4) {
            d.copy_from_slice(&addr.octets());
        }
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(self.header()));
        self.set_checksum(c);
    }

    /// The mutable payload (see [`payload`](Self::payload)).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = usize::from(self.header_len());
        let tl = usize::from(self.total_len());
        self.buffer.as_mut().get_mut(hl..tl).unwrap_or(&mut [])
    }
}

/// The owned contents of an IPv4 header without options, fragmentation or DSCP/ECN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number of the payload.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
}

impl Ipv4Repr {
    /// Parses a checked packet and verifies its header checksum.
    ///
    /// Rejects versions other than 4 and fragments ([`WireError::Unsupported`]); options are
    /// skipped.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self, WireError> {
        let repr = Self::parse_ignoring_checksum(packet)?;
        if !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        Ok(repr)
    }

    /// Like [`parse`](Self::parse) but does not verify the header checksum (for frames whose
    /// checksum is left to NIC offload).
    pub fn parse_ignoring_checksum<T: AsRef<[u8]>>(
        packet: &Ipv4Packet<T>,
    ) -> Result<Self, WireError> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(WireError::Unsupported);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(WireError::Unsupported);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with DF set and a filled checksum.
    ///
    /// Fails with [`WireError::Truncated`] if the buffer is shorter than the header and with
    /// [`WireError::Malformed`] if `HEADER_LEN + payload_len` does not fit the 16-bit total
    /// length. The payload itself is not written.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let total =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed)?;
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_frag_raw(FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIKI: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn parse_known_header() {
        let mut buf = [0u8; 0x73];
        buf[..20].copy_from_slice(&WIKI);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.dont_frag());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Ipv4Repr {
                src: Ipv4Addr::new(192, 168, 0, 1),
                dst: Ipv4Addr::new(192, 168, 0, 199),
                protocol: protocol::UDP,
                payload_len: 0x73 - 20,
                ttl: 64,
                ident: 0,
            }
        );
        let mut out = [0u8; 0x73];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out[..20], WIKI);
    }

    #[test]
    fn checked_rejects_bad_lengths() {
        let mut buf = [0u8; 0x73];
        buf[..20].copy_from_slice(&WIKI);
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..19]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..0x72]),
            Err(WireError::Truncated)
        );
        let mut b = buf;
        b[0] = 0x44; // IHL 4
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Malformed));
        let mut b = buf;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Malformed));
        let mut b = buf;
        b[0] = 0x4f; // 60-byte header, total 0x73 ok
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        let mut b = buf;
        b[0] = 0x65;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
        let mut b = buf;
        b[11] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Checksum));
        assert!(Ipv4Repr::parse_ignoring_checksum(&p).is_ok());
    }

    #[test]
    fn never_panics_on_short_or_garbage() {
        let mut x = 0x9e37_79b9u32;
        for len in 0..80 {
            for _ in 0..50 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let p = Ipv4Packet::new_unchecked(&buf[..]);
                let _ = (p.payload(), p.header(), p.verify_checksum(), p.src_addr());
                if let Ok(p) = Ipv4Packet::new_checked(&buf[..]) {
                    let _ = Ipv4Repr::parse(&p);
                    assert!(p.payload().len() + usize::from(p.header_len()) <= len);
                }
            }
        }
    }
}
