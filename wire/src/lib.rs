//! DPDK-free wire formats for the SWQOS data plane.
//!
//! Everything here runs on the per-packet path: no allocation, no panics on any input, no
//! `unsafe`. The style follows smoltcp: zero-copy packet *views* over a byte buffer
//! ([`ethernet::EthernetFrame`], [`ipv4::Ipv4Packet`], [`udp::UdpPacket`]) whose `new_checked`
//! constructors validate lengths once so that accessors cannot panic afterwards, separate from
//! owned high-level *representations* ([`ethernet::EthernetRepr`], [`ipv4::Ipv4Repr`],
//! [`udp::UdpRepr`]) with `parse` and `emit`.
//!
//! Modules:
//!
//! * [`solana`]: validation of a signed Solana transaction in its bincode wire format
//!   (legacy and v0 messages), with stable error codes for shared memory.
//! * [`checksum`]: the Internet checksum (RFC 1071), 8 bytes at a time.
//! * [`ethernet`], [`ipv4`], [`udp`]: packet views and representations.
//! * [`udp_lane`]: the per-packet Ethernet/IPv4/UDP frame builder the data plane calls.
//! * [`relay`]: the relays' HTTP/1.1 requests, written across TCP segment buffers with SIMD
//!   base64 (templates are built once per lane; that is the only allocation).
//! * [`quic_relay`]: the QUIC relays' protocols (ALPN, server name, client identity, the
//!   authentication stream, one stream per transaction, replies).
//!
//! The crate is `no_std` when the default `std` feature is disabled; `std` only adds
//! `std::error::Error` implementations.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod checksum;
pub mod delegate;
pub mod ethernet;
pub mod ipv4;
pub mod quic_relay;
pub mod relay;
pub mod solana;
pub mod tcp;
pub mod udp;
pub mod udp_lane;

use core::fmt;

/// Error returned by the packet views and representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the header or than a length field says.
    Truncated,
    /// A field holds a value that is not valid for the protocol (bad IHL, length, ...).
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Valid but not supported by this crate (IPv4 version other than 4, fragments, ...).
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated packet",
            WireError::Malformed => "malformed packet",
            WireError::Checksum => "checksum mismatch",
            WireError::Unsupported => "unsupported packet",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WireError {}

/// Reads a big-endian `u16` at `at`; 0 if out of range (callers guarantee it never is).
#[inline(always)]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Reads a big-endian `u32` at `at`; 0 if out of range.
#[inline(always)]
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Writes a big-endian `u32` at `at`; no-op if out of range.
#[inline(always)]
pub(crate) fn set_u32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes a big-endian `u16` at `at`; no-op if out of range (callers guarantee it never is).
#[inline(always)]
pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = buf.get_mut(at..at + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}
