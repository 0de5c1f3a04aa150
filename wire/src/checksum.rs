//! The Internet checksum (RFC 1071).
//!
//! # Byte order
//!
//! All sums in this module are ones'-complement sums of **big-endian (network order) 16-bit
//! words**: the bytes `[0x12, 0x34]` contribute `0x1234`. An odd trailing byte is the high byte of
//! a word whose low byte is zero. The 16-bit values returned by [`fold`] and [`finish`] are
//! therefore written into a packet with `u16::to_be_bytes`.
//!
//! # Partial sums
//!
//! [`sum`] returns an unfolded 32-bit partial sum. Partial sums of consecutive pieces of a
//! packet are added with [`combine`], provided every piece except the last has an **even**
//! length (an odd-length piece would shift the following bytes to the other half of a word).
//! [`fold`] reduces a partial sum to 16 bits; [`finish`] also inverts it, giving the value to
//! store in a checksum field.
//!
//! Verifying a received header: `fold(sum(header)) == 0xffff` (the stored checksum included).
//!
//! A UDP checksum that comes out as `0x0000` must be sent as `0xffff`, because `0` in the UDP
//! checksum field means "no checksum" (RFC 768).

use core::net::Ipv4Addr;

/// Adds two values with end-around carry (ones'-complement addition on 64 bits).
#[inline(always)]
fn add64(acc: u64, word: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(word);
    s + u64::from(carry)
}

/// Reduces a 64-bit ones'-complement accumulator to an equivalent 32-bit partial sum.
#[inline(always)]
fn fold64(acc: u64) -> u32 {
    // (hi + lo) fits in 33 bits; adding the carry back cannot carry again.
    let s = (acc >> 32) + (acc & 0xffff_ffff);
    let s = (s >> 32) + (s & 0xffff_ffff);
    s as u32
}

/// Returns the partial checksum of `data` (big-endian 16-bit words, see the module docs).
///
/// Adds the data as native little-endian `u64` words, 32 bytes per loop iteration into two
/// independent accumulators (two carry chains in flight), and swaps the bytes of the folded
/// result once: a ones'-complement sum is independent of byte order up to that swap (RFC 1071,
/// section 2(B)). Works for any length and alignment. The result can be passed to [`combine`],
/// [`fold`] or [`finish`].
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let (mut x, mut y): (u64, u64) = (0, 0);
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        let (a, rest) = split8(c);
        let (b, rest) = split8(rest);
        let (d, rest) = split8(rest);
        let (e, _) = split8(rest);
        x = add64(x, a);
        y = add64(y, b);
        x = add64(x, d);
        y = add64(y, e);
    }
    let mut acc = add64(x, y);
    let mut rest = chunks.remainder();
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        acc = add64(acc, u64::from_le_bytes(*w));
        rest = tail;
    }
    if !rest.is_empty() {
        // 1..=7 bytes: pad with zeros on the right, which keeps them in the same word halves.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        acc = add64(acc, u64::from_le_bytes(last));
    }
    // The sum of little-endian words, folded to 16 bits, is the byte-swapped sum of big-endian
    // words.
    u32::from(fold(fold64(acc)).swap_bytes())
}

/// Splits the first 8 bytes off as a little-endian `u64`; `0` if fewer (never, by
/// construction).
#[inline(always)]
fn split8(b: &[u8]) -> (u64, &[u8]) {
    match b.split_first_chunk::<8>() {
        Some((w, rest)) => (u64::from_le_bytes(*w), rest),
        None => (0, &[]),
    }
}

/// Combines two partial sums (ones'-complement addition). The data summed into `a` must have an
/// even length.
#[inline(always)]
pub const fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
}

/// Folds a partial sum to 16 bits (ones'-complement sum, **not** inverted).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// Returns the checksum field value for a partial sum: the inverted 16-bit fold.
///
/// For UDP, a result of `0` must be sent as `0xffff`.
#[inline(always)]
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Returns the partial sum of the IPv4 pseudo-header used by UDP and TCP: source and destination
/// address, a zero byte, the protocol number and the UDP/TCP length (header plus payload).
#[inline]
pub const fn pseudo_header_ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        proto as u16,
        len,
    ];
    // Six 16-bit words cannot overflow a u32.
    let mut acc = 0u32;
    let mut i = 0;
    while i < words.len() {
        acc += words[i] as u32;
        i += 1;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward RFC 1071 reference: 16-bit big-endian words, fold at the end.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            acc += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            acc += u64::from(data[i]) << 8;
        }
        while acc > 0xffff {
            acc = (acc >> 16) + (acc & 0xffff);
        }
        acc as u16
    }

    /// xorshift64* so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn matches_reference_all_lengths_and_offsets() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut buf = vec![0u8; 1600 + 16];
        for b in buf.iter_mut() {
            *b = rng.next() as u8;
        }
        for len in 0..=1600 {
            for off in 0..8 {
                let d = &buf[off..off + len];
                // fold(0) == 0 and reference of empty is 0.
                assert_eq!(fold(sum(d)), reference(d), "len {len} off {off}");
            }
        }
    }

    #[test]
    fn all_ones_and_saturation() {
        for len in [0usize, 1, 2, 3, 7, 8, 9, 31, 32, 33, 1500, 65535] {
            let d = vec![0xffu8; len];
            assert_eq!(fold(sum(&d)), reference(&d), "len {len}");
        }
    }

    #[test]
    fn combine_even_pieces() {
        let mut rng = Rng(42);
        let data: Vec<u8> = (0..1501).map(|_| rng.next() as u8).collect();
        for split in (0..=1500).step_by(2) {
            let (a, b) = data.split_at(split);
            assert_eq!(
                fold(combine(sum(a), sum(b))),
                reference(&data),
                "split {split}"
            );
        }
        assert_eq!(combine(0xffff_ffff, 1), 1);
        assert_eq!(combine(0xffff_ffff, 0xffff_ffff), 0xffff_ffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(finish(0), 0xffff);
    }

    #[test]
    fn known_ipv4_header() {
        // Wikipedia's IPv4 header checksum example: checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&hdr)), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&hdr)), 0xffff);
    }

    #[test]
    fn known_udp_datagram() {
        // 10.0.0.1:1234 -> 10.0.0.2:5678, payload "hi", checked by hand against the reference.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let udp = [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 17, 0, 10]);
        pseudo.extend_from_slice(&udp);
        let want = !reference(&pseudo);
        let got = finish(combine(pseudo_header_ipv4(src, dst, 17, 10), sum(&udp)));
        assert_eq!(got, want);
        // Hand computation: 0x0a00+0x0001+0x0a00+0x0002+0x0011+0x000a
        //   +0x04d2+0x162e+0x000a+0x6869 = 0x9791 -> !0x9791 = 0x686e.
        assert_eq!(got, 0x686e);
    }
}
