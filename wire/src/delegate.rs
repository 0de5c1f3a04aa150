//! What the dataplane knows about one kernel TCP connection it bridges, and the rules of a
//! delegated send (DESIGN.md section 6, as OpenOnload's `onload_delegated_send_*`).
//!
//! The dataplane sees every segment of the connection: the kernel's (on the exception
//! interface, going out) and the relay's (from the NIC, coming in). From them it learns where
//! the kernel's sequence space stands, what the kernel acknowledges, the relay's window, the
//! negotiated MSS and window scales, and the kernel's latest timestamps. When the connection is
//! idle and fully acknowledged, and the control plane has armed it, the dataplane may send a
//! request itself at the kernel's `snd_nxt`; the control plane then writes the same bytes to the
//! kernel socket, whose copy follows ours and is dropped by the relay as a duplicate.
//!
//! Two traps this type enforces:
//! - Timestamps: fast segments carry the kernel's most recent TSval and TSecr, never an
//!   extrapolated value, so the relay's `ts_recent` never runs ahead of the kernel (PAWS).
//! - "ACK of unsent data": the relay may acknowledge our bytes before the kernel has sent its
//!   copy; Linux discards such a segment. [`Connection::on_peer`] says [`Verdict::Hold`] for it,
//!   and [`Connection::releasable`] says when the kernel has caught up.

use crate::checksum;
use crate::ipv4::Ipv4Packet;
use crate::tcp::{flags, TcpPacket};
use crate::WireError;

/// Ethernet and IPv4 header bytes a fast segment copies from the kernel's latest frame on its
/// flow (a 20-byte IPv4 header: the flows tracked have no IP options).
pub const L2L3_LEN: usize = 14 + 20;
/// TCP header of a fast segment: 20 bytes and the timestamp option (NOP, NOP, TS).
pub const FAST_TCP_LEN: usize = 32;
/// Header bytes of a fast segment; its payload follows.
pub const FAST_HEADERS_LEN: usize = L2L3_LEN + FAST_TCP_LEN;

/// `a < b` in sequence space.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    !seq_lt(b, a)
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The kernel's SYN went out; no answer yet.
    SynSent,
    /// Handshake complete (the kernel acknowledged the relay's SYN).
    Established,
    /// A FIN or RST was seen either way: never used for fast sends again.
    Closed,
}

/// What to do with a segment from the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it to the kernel now.
    Forward,
    /// It acknowledges bytes only the dataplane has sent: keep it until the kernel's copy of
    /// those bytes has gone out ([`Connection::releasable`]).
    Hold,
}

/// Why a fast send is not possible now (the send goes the slow way, through the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotArmed {
    /// Handshake not complete, or connection closed.
    NotEstablished,
    /// The control plane has not armed it (or a fast send already used the arming).
    Disarmed,
    /// The kernel has unacknowledged bytes in flight.
    InFlight,
    /// The request is larger than the relay's window.
    Window,
}

/// The header fields of a fast send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastSend {
    /// Sequence number of the first byte.
    pub seq: u32,
    /// Acknowledgment number (what the kernel last acknowledged).
    pub ack: u32,
    /// Raw window field (what the kernel last advertised).
    pub window: u16,
    /// (TSval, TSecr) to put in a timestamp option, if the connection uses timestamps.
    pub timestamps: Option<(u32, u32)>,
    /// Largest payload per segment.
    pub mss: u16,
}

impl FastSend {
    /// Writes the headers of one segment of this send into `frame`, whose payload (the bytes
    /// after [`FAST_HEADERS_LEN`]) is already in place: the kernel's Ethernet and IPv4 headers
    /// `l2l3` with this segment's total length, IP id `ident` and checksum; a TCP header from
    /// `ports` (local, remote), the sequence number `offset` bytes into the send, the
    /// kernel's ACK, window and timestamps, PSH on the last segment (`push`), and the TCP
    /// checksum over the payload. `Err` when `frame` is shorter than the headers or longer
    /// than an IPv4 packet.
    pub fn emit_segment(
        &self,
        frame: &mut [u8],
        l2l3: &[u8; L2L3_LEN],
        ports: (u16, u16),
        offset: u32,
        push: bool,
        ident: u16,
    ) -> Result<(), WireError> {
        if frame.len() < FAST_HEADERS_LEN || frame.len() - 14 > u16::MAX as usize {
            return Err(WireError::Truncated);
        }
        frame[..L2L3_LEN].copy_from_slice(l2l3);
        let ip_len = (frame.len() - 14) as u16;
        let (src, dst) = {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..L2L3_LEN]);
            ip.set_total_len(ip_len);
            ip.set_ident(ident);
            ip.set_checksum(0);
            let sum = checksum::finish(checksum::sum(ip.header()));
            ip.set_checksum(sum);
            (ip.src_addr(), ip.dst_addr())
        };
        let t = &mut frame[L2L3_LEN..FAST_HEADERS_LEN];
        t[0..2].copy_from_slice(&ports.0.to_be_bytes());
        t[2..4].copy_from_slice(&ports.1.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.wrapping_add(offset).to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = ((FAST_TCP_LEN / 4) as u8) << 4;
        t[13] = flags::ACK | if push { flags::PSH } else { 0 };
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        t[16..20].copy_from_slice(&[0, 0, 0, 0]);
        match self.timestamps {
            Some((val, ecr)) => {
                t[20..24].copy_from_slice(&[1, 1, 8, 10]);
                t[24..28].copy_from_slice(&val.to_be_bytes());
                t[28..32].copy_from_slice(&ecr.to_be_bytes());
            }
            None => t[20..32].copy_from_slice(&[1; 12]), // NOPs
        }
        let mut tcp = TcpPacket::new_unchecked(&mut frame[L2L3_LEN..]);
        tcp.fill_checksum(src, dst);
        Ok(())
    }
}

/// The delegated-send state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    phase: Phase,
    /// End of the kernel's sequence space sent so far.
    kernel_snd_nxt: u32,
    /// End of the sequence space sent by anyone (the dataplane may be ahead of the kernel).
    snd_nxt: u32,
    /// Highest acknowledgment from the relay.
    snd_una: u32,
    /// The kernel's latest acknowledgment number (its `rcv_nxt`).
    kernel_ack: u32,
    /// The kernel's latest raw window.
    kernel_window: u16,
    /// The kernel's latest timestamps.
    timestamps: Option<(u32, u32)>,
    /// Relay's window in bytes (scaled).
    peer_window: u32,
    peer_wscale: u8,
    /// Smaller of the two MSS options (536 when absent, as RFC 9293 says).
    mss: u16,
    our_mss: u16,
    /// The relay's SYN-ACK has been seen.
    peer_syn: bool,
    armed: bool,
}

impl Connection {
    /// Starts tracking from the kernel's SYN (the first segment of an active open).
    /// Returns `None` for any other segment.
    pub fn from_kernel_syn<T: AsRef<[u8]>>(syn: &TcpPacket<T>) -> Option<Connection> {
        if syn.flags() & (flags::SYN | flags::ACK | flags::RST) != flags::SYN {
            return None;
        }
        let opts = syn.options();
        let isn_end = syn.seq().wrapping_add(1);
        Some(Connection {
            phase: Phase::SynSent,
            kernel_snd_nxt: isn_end,
            snd_nxt: isn_end,
            snd_una: syn.seq(),
            kernel_ack: 0,
            kernel_window: syn.window(),
            timestamps: opts.timestamps,
            peer_window: 0,
            peer_wscale: 0,
            mss: 536,
            our_mss: opts.mss.unwrap_or(536),
            peer_syn: false,
            armed: false,
        })
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The negotiated MSS.
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// End of the kernel's sent sequence space.
    pub fn kernel_snd_nxt(&self) -> u32 {
        self.kernel_snd_nxt
    }

    /// Learns from a segment the kernel sends to the relay.
    pub fn on_kernel<T: AsRef<[u8]>>(&mut self, seg: &TcpPacket<T>) {
        let f = seg.flags();
        if f & (flags::RST | flags::FIN) != 0 {
            self.close();
        }
        let end = seg.seq().wrapping_add(seg.seq_len());
        if seq_lt(self.kernel_snd_nxt, end) {
            self.kernel_snd_nxt = end;
        }
        if seq_lt(self.snd_nxt, self.kernel_snd_nxt) {
            self.snd_nxt = self.kernel_snd_nxt;
        }
        if f & flags::ACK != 0 {
            self.kernel_ack = seg.ack();
            if self.phase == Phase::SynSent && self.peer_syn {
                self.phase = Phase::Established;
            }
        }
        self.kernel_window = seg.window();
        if let Some(ts) = seg.options().timestamps {
            self.timestamps = Some(ts);
        }
    }

    /// Learns from a segment the relay sends, and says whether the kernel may see it now.
    pub fn on_peer<T: AsRef<[u8]>>(&mut self, seg: &TcpPacket<T>) -> Verdict {
        let f = seg.flags();
        if f & flags::RST != 0 {
            self.close();
            return Verdict::Forward;
        }
        if f & flags::FIN != 0 {
            self.close();
        }
        if f & flags::SYN != 0 {
            // SYN-ACK: windows in SYNs are never scaled.
            let opts = seg.options();
            self.peer_wscale = opts.window_scale.unwrap_or(0);
            self.mss = opts.mss.unwrap_or(536).min(self.our_mss);
            self.peer_window = seg.window() as u32;
            self.peer_syn = true;
        }
        if f & flags::ACK == 0 {
            return Verdict::Forward;
        }
        let ack = seg.ack();
        if seq_lt(self.kernel_snd_nxt, ack) && seq_le(ack, self.snd_nxt) {
            // Acknowledges bytes only we have sent: Linux would drop it as "ACK of unsent data".
            return Verdict::Hold;
        }
        if seq_lt(self.snd_una, ack) && seq_le(ack, self.snd_nxt) {
            self.snd_una = ack;
        }
        if f & flags::SYN == 0 {
            self.peer_window = (seg.window() as u32) << self.peer_wscale;
        }
        Verdict::Forward
    }

    /// Whether a held segment acknowledging `ack` may now go to the kernel; pass it through
    /// [`Connection::on_peer`] again then, so its acknowledgment and window are learnt.
    pub fn releasable(&self, ack: u32) -> bool {
        seq_le(ack, self.kernel_snd_nxt)
    }

    /// The control plane's arming: the connection is idle and the dataplane may send once.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// Withdraws the arming (the control plane will write to the socket itself).
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Whether the control plane's arming is in force.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.armed = false;
    }

    /// Checks that a request of `len` bytes may be sent fast now.
    pub fn check(&self, len: usize) -> Result<(), NotArmed> {
        if self.phase != Phase::Established {
            return Err(NotArmed::NotEstablished);
        }
        if !self.armed {
            return Err(NotArmed::Disarmed);
        }
        if self.snd_una != self.kernel_snd_nxt || self.snd_nxt != self.kernel_snd_nxt {
            return Err(NotArmed::InFlight);
        }
        if len as u64 > self.peer_window as u64 {
            return Err(NotArmed::Window);
        }
        Ok(())
    }

    /// Claims the connection for a fast send of `len` bytes: returns the header fields and
    /// advances the sequence space; the connection is disarmed until the control plane re-arms
    /// it after the response.
    pub fn begin_fast_send(&mut self, len: usize) -> Result<FastSend, NotArmed> {
        self.check(len)?;
        let send = FastSend {
            seq: self.kernel_snd_nxt,
            ack: self.kernel_ack,
            window: self.kernel_window,
            timestamps: self.timestamps,
            mss: self.mss,
        };
        self.snd_nxt = self.kernel_snd_nxt.wrapping_add(len as u32);
        self.armed = false;
        Ok(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn fast_segments_are_emitted_over_the_kernels_headers() {
        use crate::ethernet::EthernetFrame;
        // The kernel's Ethernet + IPv4 headers (total length, id and checksum to be replaced).
        let mut l2l3 = [0u8; L2L3_LEN];
        l2l3[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        l2l3[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        l2l3[12..14].copy_from_slice(&[0x08, 0x00]);
        l2l3[14] = 0x45;
        l2l3[22] = 64; // TTL
        l2l3[23] = crate::ipv4::protocol::TCP;
        l2l3[26..30].copy_from_slice(&[198, 18, 77, 1]);
        l2l3[30..34].copy_from_slice(&[198, 18, 77, 2]);
        let send = FastSend {
            seq: 0xffff_fff0,
            ack: 77,
            window: 502,
            timestamps: Some((101, 5000)),
            mss: 1460,
        };
        let mut frame = alloc::vec![0u8; FAST_HEADERS_LEN + 100];
        frame[FAST_HEADERS_LEN..].fill(0xab);
        send.emit_segment(&mut frame, &l2l3, (40001, 443), 0x20, true, 9)
            .unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.total_len(), ip.ident(), ip.ttl()),
            (20 + 32 + 100, 9, 64)
        );
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40001, 443));
        assert_eq!(tcp.seq(), 0x10, "offset 0x20 past 0xfffffff0 wraps");
        assert_eq!((tcp.ack(), tcp.window()), (77, 502));
        assert_eq!(tcp.flags(), flags::ACK | flags::PSH);
        assert_eq!(tcp.options().timestamps, Some((101, 5000)));
        assert_eq!(tcp.payload(), &[0xab; 100][..]);
        // Not the last segment, no timestamps: no PSH, NOPs.
        let plain = FastSend {
            timestamps: None,
            ..send
        };
        plain
            .emit_segment(&mut frame, &l2l3, (40001, 443), 0, false, 10)
            .unwrap();
        let tcp = TcpPacket::new_checked(&frame[L2L3_LEN..]).unwrap();
        assert_eq!((tcp.flags(), tcp.options().timestamps), (flags::ACK, None));
        assert!(send
            .emit_segment(&mut frame[..40], &l2l3, (1, 2), 0, true, 0)
            .is_err());
    }

    /// Builds a TCP segment with optional MSS/WS/TS options and `payload` bytes.
    fn seg(
        seq: u32,
        ack: u32,
        fl: u8,
        window: u16,
        ts: Option<(u32, u32)>,
        syn_opts: Option<(u16, u8)>,
        payload: usize,
    ) -> Vec<u8> {
        let mut opts = Vec::new();
        if let Some((mss, ws)) = syn_opts {
            opts.extend_from_slice(&[2, 4]);
            opts.extend_from_slice(&mss.to_be_bytes());
            opts.extend_from_slice(&[1, 3, 3, ws]);
        }
        if let Some((v, e)) = ts {
            opts.extend_from_slice(&[1, 1, 8, 10]);
            opts.extend_from_slice(&v.to_be_bytes());
            opts.extend_from_slice(&e.to_be_bytes());
        }
        while opts.len() % 4 != 0 {
            opts.push(1);
        }
        let hl = 20 + opts.len();
        let mut b = alloc::vec![0u8; hl + payload];
        b[0..2].copy_from_slice(&50000u16.to_be_bytes());
        b[2..4].copy_from_slice(&80u16.to_be_bytes());
        b[4..8].copy_from_slice(&seq.to_be_bytes());
        b[8..12].copy_from_slice(&ack.to_be_bytes());
        b[12] = ((hl / 4) as u8) << 4;
        b[13] = fl;
        b[14..16].copy_from_slice(&window.to_be_bytes());
        b[20..hl].copy_from_slice(&opts);
        b
    }

    const ISN: u32 = 0xffff_fff0; // wraps during the test
    const PEER_ISN: u32 = 1000;

    /// Handshake: kernel SYN, relay SYN-ACK (MSS 1400, WS 7), kernel ACK.
    fn established() -> Connection {
        let syn = seg(
            ISN,
            0,
            flags::SYN,
            64240,
            Some((100, 0)),
            Some((1460, 7)),
            0,
        );
        let mut c = Connection::from_kernel_syn(&TcpPacket::new_unchecked(&syn[..])).unwrap();
        assert_eq!(c.phase(), Phase::SynSent);
        let syn_ack = seg(
            PEER_ISN,
            ISN.wrapping_add(1),
            flags::SYN | flags::ACK,
            65160,
            Some((5000, 100)),
            Some((1400, 7)),
            0,
        );
        assert_eq!(
            c.on_peer(&TcpPacket::new_unchecked(&syn_ack[..])),
            Verdict::Forward
        );
        let ack = seg(
            ISN.wrapping_add(1),
            PEER_ISN + 1,
            flags::ACK,
            502,
            Some((101, 5000)),
            None,
            0,
        );
        c.on_kernel(&TcpPacket::new_unchecked(&ack[..]));
        assert_eq!(c.phase(), Phase::Established);
        assert_eq!(c.mss(), 1400);
        c
    }

    #[test]
    fn a_fast_send_uses_the_kernels_state_and_holds_early_acks() {
        let mut c = established();
        assert_eq!(c.check(100), Err(NotArmed::Disarmed));
        c.arm();
        let f = c.begin_fast_send(2000).unwrap();
        assert_eq!(f.seq, ISN.wrapping_add(1));
        assert_eq!(f.ack, PEER_ISN + 1);
        assert_eq!(f.window, 502);
        assert_eq!(
            f.timestamps,
            Some((101, 5000)),
            "the kernel's latest, not extrapolated"
        );
        assert_eq!(f.mss, 1400);
        // Used up: a second fast send waits for re-arming.
        assert_eq!(c.check(1), Err(NotArmed::Disarmed));

        // The relay acknowledges our 2000 bytes before the kernel's copy went out: hold it.
        let end = ISN.wrapping_add(1 + 2000);
        let early = seg(
            PEER_ISN + 1,
            end,
            flags::ACK,
            500,
            Some((5001, 101)),
            None,
            0,
        );
        assert_eq!(
            c.on_peer(&TcpPacket::new_unchecked(&early[..])),
            Verdict::Hold
        );
        assert!(!c.releasable(end));
        // The kernel's copy goes out in two segments; then the held ACK may pass.
        for (off, len) in [(0u32, 1400usize), (1400, 600)] {
            let k = seg(
                ISN.wrapping_add(1 + off),
                PEER_ISN + 1,
                flags::ACK | flags::PSH,
                502,
                Some((102, 5000)),
                None,
                len,
            );
            c.on_kernel(&TcpPacket::new_unchecked(&k[..]));
        }
        assert!(c.releasable(end));
        assert_eq!(
            c.on_peer(&TcpPacket::new_unchecked(&early[..])),
            Verdict::Forward
        );
        assert_eq!(c.check(1), Err(NotArmed::Disarmed));
        c.arm();
        assert_eq!(c.check(1), Ok(()));
        assert_eq!(c.begin_fast_send(1).unwrap().timestamps, Some((102, 5000)));
    }

    #[test]
    fn no_fast_send_with_bytes_in_flight_or_beyond_the_window() {
        let mut c = established();
        c.arm();
        // The kernel sent 10 bytes the relay has not acknowledged.
        let k = seg(
            ISN.wrapping_add(1),
            PEER_ISN + 1,
            flags::ACK,
            502,
            Some((103, 5000)),
            None,
            10,
        );
        c.on_kernel(&TcpPacket::new_unchecked(&k[..]));
        assert_eq!(c.check(1), Err(NotArmed::InFlight));
        let a = seg(
            PEER_ISN + 1,
            ISN.wrapping_add(11),
            flags::ACK,
            2,
            Some((5002, 103)),
            None,
            0,
        );
        assert_eq!(
            c.on_peer(&TcpPacket::new_unchecked(&a[..])),
            Verdict::Forward
        );
        // Window 2 << 7 = 256 bytes.
        assert_eq!(c.check(256), Ok(()));
        assert_eq!(c.check(257), Err(NotArmed::Window));
    }

    #[test]
    fn fin_or_rst_closes_for_good() {
        let mut c = established();
        c.arm();
        let rst = seg(PEER_ISN + 1, 0, flags::RST, 0, None, None, 0);
        assert_eq!(
            c.on_peer(&TcpPacket::new_unchecked(&rst[..])),
            Verdict::Forward
        );
        assert_eq!(c.phase(), Phase::Closed);
        c.arm();
        assert_eq!(c.check(1), Err(NotArmed::NotEstablished));
        let mut c = established();
        let fin = seg(
            ISN.wrapping_add(1),
            PEER_ISN + 1,
            flags::FIN | flags::ACK,
            502,
            None,
            None,
            0,
        );
        c.on_kernel(&TcpPacket::new_unchecked(&fin[..]));
        assert_eq!(c.phase(), Phase::Closed);
    }

    #[test]
    fn only_a_plain_syn_starts_tracking() {
        let s = seg(1, 0, flags::SYN | flags::ACK, 1, None, None, 0);
        assert!(Connection::from_kernel_syn(&TcpPacket::new_unchecked(&s[..])).is_none());
        assert!(seq_lt(0xffff_fff0, 5));
        assert!(seq_le(5, 5));
        assert!(!seq_lt(5, 0xffff_fff0));
    }
}
