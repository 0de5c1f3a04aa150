//! Ethernet II frames.

use core::fmt;
use core::str::FromStr;

use crate::{get_u16, set_u16, WireError};

/// Length of an Ethernet II header (destination, source, EtherType).
pub const HEADER_LEN: usize = 14;

/// EtherType values used by this crate.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// A six-byte Ethernet (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Returns the address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether the group (multicast/broadcast) bit is set.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is a unicast address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error parsing an [`EthernetAddress`] from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseEthernetAddressError;

impl fmt::Display for ParseEthernetAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid Ethernet address, expected six hex pairs like 02:00:00:00:00:01")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseEthernetAddressError {}

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    /// Parses `xx:xx:xx:xx:xx:xx` (or with `-` separators); hex digits in either case, exactly
    /// two per byte.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 17 {
            return Err(ParseEthernetAddressError);
        }
        let sep = b[2];
        if sep != b':' && sep != b'-' {
            return Err(ParseEthernetAddressError);
        }
        let mut out = [0u8; 6];
        for (i, byte) in out.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && b[at - 1] != sep {
                return Err(ParseEthernetAddressError);
            }
            let hi = hex(b[at]).ok_or(ParseEthernetAddressError)?;
            let lo = hex(b[at + 1]).ok_or(ParseEthernetAddressError)?;
            *byte = (hi << 4) | lo;
        }
        Ok(EthernetAddress(out))
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A zero-copy view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
}

fn mac_at(buf: &[u8], range: core::ops::Range<usize>) -> EthernetAddress {
    let mut out = [0u8; 6];
    if let Some(src) = buf.get(range) {
        out.copy_from_slice(src);
    }
    EthernetAddress(out)
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length. Accessors on a buffer shorter than
    /// [`HEADER_LEN`] return zeros instead of panicking.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds a full header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds a full header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::DST)
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::SRC)
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// The bytes after the header (empty if the buffer is too short).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        if let Some(d) = self.buffer.as_mut().get_mut(field::DST) {
            d.copy_from_slice(&addr.0);
        }
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        if let Some(d) = self.buffer.as_mut().get_mut(field::SRC) {
            d.copy_from_slice(&addr.0);
        }
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value)
    }

    /// The mutable bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// The owned contents of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame` (whose buffer must be at least [`HEADER_LEN`] long;
    /// shorter buffers are left partly unwritten rather than panicking).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text() {
        let a: EthernetAddress = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(a, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(a.to_string(), "02:00:00:00:00:01");
        let b: EthernetAddress = "AA-bb-CC-dd-EE-ff".parse().unwrap();
        assert_eq!(b.to_string(), "aa:bb:cc:dd:ee:ff");
        assert!(b.is_unicast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:",
            "02:00:00:00:00:0g",
            "02:00-00:00:00:01",
            "020:00:00:00:00:1",
            "+2:00:00:00:00:01",
            "02:00:00:00:00:é",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_roundtrip() {
        let mut buf = [0u8; 20];
        let repr = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: ethertype::IPV4,
        };
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        repr.emit(&mut f);
        f.payload_mut().copy_from_slice(b"abcdef");
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), repr);
        assert_eq!(f.payload(), b"abcdef");
        assert_eq!(
            EthernetFrame::new_checked(&buf[..13]),
            Err(WireError::Truncated)
        );
        // Unchecked short buffers never panic.
        let short = EthernetFrame::new_unchecked(&buf[..3]);
        assert_eq!(short.ethertype(), 0);
        assert_eq!(short.payload(), b"");
    }
}
