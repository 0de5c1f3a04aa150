//! TCP segments (RFC 9293) and the options the delegated-send path needs: MSS, window scale and
//! timestamps (RFC 7323).

use core::net::Ipv4Addr;

use crate::ipv4::protocol;
use crate::{checksum, get_u16, get_u32, set_u16, set_u32, WireError};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// TCP flag bits (low byte of the flags field).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
}

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
}

/// The options of one segment that matter to us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only).
    pub window_scale: Option<u8>,
    /// Timestamps: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
}

/// A zero-copy view of a TCP segment (header, options and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checks; accessors read zero past the end instead of panicking.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header and its options (`20 <= data offset <= len`).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > len {
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

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        let b = self.buffer.as_ref();
        b.get(field::DATA_OFF).map_or(0, |v| (v >> 4) as usize * 4)
    }

    /// Flag bits (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref().get(field::FLAGS).copied().unwrap_or(0)
    }

    /// Whether all of `bits` are set.
    pub fn has(&self, bits: u8) -> bool {
        self.flags() & bits == bits
    }

    /// Raw (unscaled) window.
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload (empty when the header is longer than the buffer).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len().max(HEADER_LEN)..).unwrap_or(&[])
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let f = self.flags();
        self.payload().len() as u32
            + u32::from(f & flags::SYN != 0)
            + u32::from(f & flags::FIN != 0)
    }

    /// Parses the options; malformed options end the walk (what was read so far is kept).
    pub fn options(&self) -> TcpOptions {
        let b = self.buffer.as_ref();
        let opts = b.get(HEADER_LEN..self.header_len()).unwrap_or(&[]);
        let mut out = TcpOptions::default();
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = opts.get(i + 1) else { break };
                    let len = len as usize;
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    let body = &opts[i + 2..i + len];
                    match (kind, len) {
                        (2, 4) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                        (3, 3) => out.window_scale = Some(body[0].min(14)),
                        (4, 2) => out.sack_permitted = true,
                        (8, 10) => out.timestamps = Some((get_u32(body, 0), get_u32(body, 4))),
                        _ => {}
                    }
                    i += len;
                }
            }
        }
        out
    }

    /// Verifies the checksum over the IPv4 pseudo-header, header and payload.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u16::try_from(b.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_ipv4(src, dst, protocol::TCP, len);
        checksum::fold(checksum::combine(ph, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, v);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Sets the raw window.
    pub fn set_window(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and stores the checksum for the given addresses.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = b.len().min(u16::MAX as usize) as u16;
        let ph = checksum::pseudo_header_ipv4(src, dst, protocol::TCP, len);
        let c = checksum::finish(checksum::combine(ph, checksum::sum(b)));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN-ACK as Linux sends it: MSS 1460, SACK permitted, timestamps, window scale 7.
    const SYN_ACK: [u8; 40] = [
        0x1f, 0x90, 0xc3, 0x50, // ports 8080 -> 50000
        0x11, 0x22, 0x33, 0x44, // seq
        0x55, 0x66, 0x77, 0x88, // ack
        0xa0, 0x12, 0xfe, 0x88, // data offset 10 words, SYN|ACK, window 65160
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // TS 1, 2
        0x01, // NOP
        0x03, 0x03, 0x07, // WS 7
    ];

    #[test]
    fn parses_header_and_options() {
        let p = TcpPacket::new_checked(&SYN_ACK[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (8080, 50000));
        assert_eq!((p.seq(), p.ack()), (0x11223344, 0x55667788));
        assert!(p.has(flags::SYN | flags::ACK));
        assert_eq!(p.window(), 65160);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.seq_len(), 1);
        assert_eq!(
            p.options(),
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                timestamps: Some((1, 2)),
                sack_permitted: true
            }
        );
    }

    #[test]
    fn rejects_bad_lengths_and_never_panics() {
        assert_eq!(
            TcpPacket::new_checked(&SYN_ACK[..19]).err(),
            Some(WireError::Truncated)
        );
        let mut short = SYN_ACK;
        short[12] = 0x40; // 16-byte header
        assert_eq!(
            TcpPacket::new_checked(&short[..]).err(),
            Some(WireError::Malformed)
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN_ACK[..30]).err(),
            Some(WireError::Truncated)
        );
        // Garbage options: every prefix and byte value parses without panicking.
        for v in 0..=255u8 {
            let mut b = SYN_ACK;
            b[21] = v;
            let _ = TcpPacket::new_unchecked(&b[..]).options();
            for n in 0..b.len() {
                let p = TcpPacket::new_unchecked(&b[..n]);
                let _ = (p.options(), p.payload(), p.seq_len());
            }
        }
    }

    #[test]
    fn checksum_round_trips() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut seg = [0u8; 45];
        seg[..40].copy_from_slice(&SYN_ACK);
        seg[40..].copy_from_slice(b"hello");
        let mut p = TcpPacket::new_unchecked(&mut seg[..]);
        p.fill_checksum(src, dst);
        assert!(p.verify_checksum(src, dst));
        assert_eq!(p.payload(), b"hello");
        p.set_seq(1);
        assert!(!p.verify_checksum(src, dst));
    }
}
