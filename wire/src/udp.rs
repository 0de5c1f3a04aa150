//! UDP datagrams (RFC 768).

use core::net::Ipv4Addr;

use crate::ipv4::protocol;
use crate::{checksum, get_u16, set_u16, WireError};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// A zero-copy view of a UDP datagram (header and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checks. Accessors never panic: on a short buffer fields read as
    /// zero and [`payload`](Self::payload) is empty.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header and that `8 <= length field <= buffer length`.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if field_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header plus payload).
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum as stored (0 means "no checksum").
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: bytes 8 up to the length field (empty if inconsistent, which
    /// [`new_checked`](Self::new_checked) rules out).
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The datagram bytes covered by the length field (header and payload).
    pub fn datagram(&self) -> &[u8] {
        let end = usize::from(self.len());
        self.buffer.as_ref().get(..end).unwrap_or(&[])
    }

    /// Whether the checksum verifies over the IPv4 pseudo-header, header and payload. A stored
    /// checksum of 0 ("none") is accepted.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = self.datagram();
        if d.len() < HEADER_LEN {
            return false;
        }
        let s = checksum::combine(
            checksum::pseudo_header_ipv4(src, dst, protocol::UDP, self.len()),
            checksum::sum(d),
        );
        checksum::fold(s) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value)
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value)
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value)
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Computes and stores the checksum over the pseudo-header, header and payload (a computed
    /// 0 is stored as `0xffff`).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let s = checksum::combine(
            checksum::pseudo_header_ipv4(src, dst, protocol::UDP, self.len()),
            checksum::sum(self.datagram()),
        );
        let c = checksum::finish(s);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The mutable payload (see [`payload`](Self::payload)).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// The owned contents of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a datagram and verifies its checksum against the IPv4 pseudo-header (a stored 0
    /// means "no checksum" and is accepted). Port 0 as destination is rejected.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Self, WireError> {
        let repr = Self::parse_ignoring_checksum(packet)?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::Checksum);
        }
        Ok(repr)
    }

    /// Like [`parse`](Self::parse) without checksum verification.
    pub fn parse_ignoring_checksum<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
    ) -> Result<Self, WireError> {
        packet.check_len()?;
        if packet.dst_port() == 0 {
            return Err(WireError::Malformed);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Length of the emitted header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for a payload of `payload_len` bytes with checksum 0. Write the payload
    /// into [`UdpPacket::payload_mut`] afterwards, then call [`UdpPacket::fill_checksum`].
    ///
    /// Fails with [`WireError::Truncated`] if the buffer cannot hold header and payload and
    /// with [`WireError::Malformed`] if the length does not fit 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        payload_len: usize,
    ) -> Result<(), WireError> {
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| WireError::Malformed)?;
        if packet.buffer.as_ref().len() < usize::from(len) {
            return Err(WireError::Truncated);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut buf = [0u8; 12];
        let repr = UdpRepr {
            src_port: 1234,
            dst_port: 5678,
        };
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, 2).unwrap();
        p.payload_mut().copy_from_slice(b"hi");
        p.fill_checksum(src, dst);
        assert_eq!(p.checksum(), 0x686e);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), b"hi");
        assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), repr);
        assert_eq!(
            UdpRepr::parse(&p, src, Ipv4Addr::new(10, 0, 0, 3)),
            Err(WireError::Checksum)
        );
        assert_eq!(UdpPacket::new_checked(&buf[..7]), Err(WireError::Truncated));
        assert_eq!(UdpPacket::new_checked(&buf[..9]), Err(WireError::Truncated));
        let mut b = buf;
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(WireError::Malformed));
        assert_eq!(
            repr.emit(&mut UdpPacket::new_unchecked(&mut [0u8; 9][..]), 2),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn zero_checksum_sent_as_ffff() {
        // Find a payload whose checksum computes to 0 and check it is stored as 0xffff.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut buf = [0u8; 10];
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
        };
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, 2).unwrap();
        p.fill_checksum(src, dst);
        // With payload 0, the stored checksum c = !s; choose payload word = !s... = c makes
        // the sum 0xffff and the computed checksum 0.
        let c = p.checksum();
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(src, dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(src, dst));
    }
}
