//! The QUIC relays' protocols: for each provider, what a connection carries (ALPN, server name,
//! client identity, an authentication stream) and what one transaction is on it (a stream of
//! which kind, and the reply, if any).
//!
//! This is the one owner of those facts: the data plane's QUIC lanes, the configuration's
//! defaults and the benchmark's quinn baseline all read them here. The facts come from the
//! public sol-trade-sdk clients (docs/quic-lanes.md lists them with their sources). Nothing
//! here does I/O or allocates.

use core::fmt;
use core::str::FromStr;

/// A relay reached over QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuicProvider {
    /// Node1: no ALPN, no client certificate; the API key (a UUID, 16 bytes) on the first
    /// bi-stream, answered with one byte (0: accepted); then one bi-stream per transaction,
    /// answered with a [`Reply`] (status 200: accepted).
    Node1,
    /// Astralane: ALPN `astralane-tpu`, SNI `astralane`, a client certificate whose CN is the
    /// API key, one uni-stream per transaction; MEV protection is another port.
    Astralane,
    /// Soyas: ALPN `solana-tpu`, SNI `soyas-landing`, a client certificate whose CN is the
    /// user's Solana public key (base58), one uni-stream per transaction.
    Soyas,
    /// Speedlanding: ALPN `solana-tpu`, SNI `speed-landing`, a client certificate of the
    /// user's Solana keypair itself (Ed25519), one uni-stream per transaction.
    Speedlanding,
    /// Solami: as Speedlanding, SNI `solami-beam`.
    Solami,
    /// Glaive: ALPN `solana-tpu`, SNI `glaive-intake`, 17 bytes of authentication (the API key's
    /// UUID and a flags byte, bit 0 MEV protection) on the first uni-stream, then one
    /// uni-stream per transaction.
    Glaive,
    /// Lunar Lander (HelloMoon): ALPN `lunar-lander-tpu`, a client certificate whose CN is the
    /// API key (MEV protection: a certificate extension), one uni-stream per transaction.
    LunarLander,
}

/// Which kind of stream carries a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Unidirectional: the relay acknowledges the bytes and answers nothing.
    Uni,
    /// Bidirectional: the relay answers on the same stream ([`Reply`]).
    Bi,
}

/// The client certificate a provider expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdentity {
    /// No client certificate.
    None,
    /// A self-signed Ed25519 certificate of a fresh key (it identifies nothing; the provider
    /// authenticates otherwise).
    Ephemeral,
    /// A self-signed ECDSA P-256 certificate of a fresh key whose subject CN is the API key.
    ApiKeyCn,
    /// A self-signed ECDSA P-256 certificate of a fresh key whose subject CN is the user's
    /// Solana public key in base58 (from the keypair file).
    WalletCn,
    /// A self-signed Ed25519 certificate of the user's Solana keypair itself (subject CN
    /// `Solana node`): the relay reads the public key, the account it serves.
    WalletKey,
}

impl ClientIdentity {
    /// Whether the identity comes from the user's Solana keypair file.
    pub const fn needs_keypair(self) -> bool {
        matches!(self, ClientIdentity::WalletCn | ClientIdentity::WalletKey)
    }
}

/// ALPN of Solana's TPU protocol.
pub const ALPN_SOLANA_TPU: &[u8] = b"solana-tpu";
/// ALPN of Astralane's QUIC endpoint.
pub const ALPN_ASTRALANE: &[u8] = b"astralane-tpu";
/// ALPN of Lunar Lander's QUIC endpoint.
pub const ALPN_LUNAR_LANDER: &[u8] = b"lunar-lander-tpu";
/// The object identifier of Lunar Lander's MEV-protection certificate extension (its value is
/// the DER boolean TRUE, [`LUNAR_LANDER_MEV_VALUE`]).
pub const LUNAR_LANDER_MEV_OID: [u64; 4] = [2, 999, 1, 1];
/// The DER value of Lunar Lander's MEV-protection extension: BOOLEAN TRUE.
pub const LUNAR_LANDER_MEV_VALUE: [u8; 3] = [0x01, 0x01, 0xff];
/// Node1's answer to an accepted authentication stream (one byte).
pub const NODE1_AUTH_OK: u8 = 0;
/// Node1's reply status of an accepted transaction.
pub const NODE1_ACCEPTED: u16 = 200;

/// Bytes of Glaive's authentication stream: the key's 16-byte UUID and a flags byte.
pub const GLAIVE_AUTH_LEN: usize = 17;
/// Glaive's flags bit asking for MEV protection.
pub const GLAIVE_FLAG_MEV: u8 = 1;
/// Bytes of Node1's authentication: the key's 16-byte UUID.
pub const NODE1_AUTH_LEN: usize = 16;
/// The largest authentication payload of any provider.
pub const MAX_AUTH_LEN: usize = GLAIVE_AUTH_LEN;

/// Astralane's application close code for an unknown API key.
pub const ASTRALANE_CLOSE_UNKNOWN_KEY: u64 = 1;
/// Astralane's application close code when the key has too many connections.
pub const ASTRALANE_CLOSE_CONNECTION_LIMIT: u64 = 2;

impl QuicProvider {
    /// Every provider, in documentation order.
    pub const ALL: [QuicProvider; 7] = [
        QuicProvider::Node1,
        QuicProvider::Astralane,
        QuicProvider::Soyas,
        QuicProvider::Speedlanding,
        QuicProvider::Solami,
        QuicProvider::Glaive,
        QuicProvider::LunarLander,
    ];

    /// The name used in configuration files (the HTTP provider's name where there is one).
    pub const fn name(self) -> &'static str {
        match self {
            QuicProvider::Node1 => "node1",
            QuicProvider::Astralane => "astralane",
            QuicProvider::Soyas => "soyas",
            QuicProvider::Speedlanding => "speedlanding",
            QuicProvider::Solami => "solami",
            QuicProvider::Glaive => "glaive",
            QuicProvider::LunarLander => "lunarlander",
        }
    }

    /// The relay's UDP port; `mev` selects Astralane's MEV-protected endpoint.
    pub const fn default_port(self, mev: bool) -> u16 {
        match self {
            QuicProvider::Node1 => 16666,
            QuicProvider::Astralane if mev => 9000,
            QuicProvider::Astralane => 7000,
            QuicProvider::Soyas => 9000,
            QuicProvider::Speedlanding => 17778,
            QuicProvider::Solami => 11000,
            QuicProvider::Glaive => 4000,
            QuicProvider::LunarLander => 16888,
        }
    }

    /// The ALPN protocol offered in the handshake (Node1 offers none).
    pub const fn alpn(self) -> Option<&'static [u8]> {
        match self {
            QuicProvider::Node1 => None,
            QuicProvider::Astralane => Some(ALPN_ASTRALANE),
            QuicProvider::LunarLander => Some(ALPN_LUNAR_LANDER),
            _ => Some(ALPN_SOLANA_TPU),
        }
    }

    /// The server name (SNI) the provider expects, when it names one; otherwise the lane's
    /// configured name (the relay's host name) or address is used.
    pub const fn server_name(self) -> Option<&'static str> {
        match self {
            QuicProvider::Astralane => Some("astralane"),
            QuicProvider::Soyas => Some("soyas-landing"),
            QuicProvider::Speedlanding => Some("speed-landing"),
            QuicProvider::Solami => Some("solami-beam"),
            QuicProvider::Glaive => Some("glaive-intake"),
            _ => None,
        }
    }

    /// The client certificate the provider expects.
    pub const fn identity(self) -> ClientIdentity {
        match self {
            QuicProvider::Node1 => ClientIdentity::None,
            QuicProvider::Astralane | QuicProvider::LunarLander => ClientIdentity::ApiKeyCn,
            QuicProvider::Soyas => ClientIdentity::WalletCn,
            QuicProvider::Speedlanding | QuicProvider::Solami => ClientIdentity::WalletKey,
            QuicProvider::Glaive => ClientIdentity::Ephemeral,
        }
    }

    /// Whether the provider needs an API key (in the certificate or an authentication stream).
    pub const fn needs_key(self) -> bool {
        !self.identity().needs_keypair()
    }

    /// Whether the provider answers its authentication stream (with one byte, Node1).
    pub const fn auth_has_reply(self) -> bool {
        matches!(self, QuicProvider::Node1)
    }

    /// Whether the API key must be a UUID (it travels as 16 bytes).
    pub const fn key_is_uuid(self) -> bool {
        matches!(self, QuicProvider::Node1 | QuicProvider::Glaive)
    }

    /// Whether the provider has a MEV-protection switch (Glaive: a flag of the authentication
    /// stream; Astralane: another port; Lunar Lander: a certificate extension).
    pub const fn has_mev(self) -> bool {
        matches!(
            self,
            QuicProvider::Glaive | QuicProvider::Astralane | QuicProvider::LunarLander
        )
    }

    /// The keep-alive interval and idle timeout sol-trade-sdk's client sets for this provider
    /// (the rest of its quinn transport is quinn's default); the benchmark's quinn baseline
    /// uses them.
    pub const fn sdk_keep_alive_idle(self) -> (core::time::Duration, core::time::Duration) {
        let s = core::time::Duration::from_secs;
        match self {
            QuicProvider::Node1 => (s(15), s(60)),
            QuicProvider::Astralane => (s(25), s(30)),
            QuicProvider::Soyas | QuicProvider::Speedlanding | QuicProvider::Solami => {
                (s(25), s(300))
            }
            QuicProvider::Glaive => (s(10), s(30)),
            QuicProvider::LunarLander => (s(2), s(6)),
        }
    }

    /// The stream kind that carries one transaction.
    pub const fn tx_stream(self) -> StreamKind {
        match self {
            QuicProvider::Node1 => StreamKind::Bi,
            _ => StreamKind::Uni,
        }
    }

    /// The authentication stream sent once per connection before any transaction, written
    /// into `out`: its kind and length, or `None` when the provider has none. `key` is the API
    /// key (a UUID for Node1 and Glaive, checked by [`parse_uuid`] at configuration time).
    pub fn auth(
        self,
        key: Option<&str>,
        mev: bool,
        out: &mut [u8; MAX_AUTH_LEN],
    ) -> Option<(StreamKind, usize)> {
        let uuid = parse_uuid(key?)?;
        match self {
            QuicProvider::Node1 => {
                out[..NODE1_AUTH_LEN].copy_from_slice(&uuid);
                Some((StreamKind::Bi, NODE1_AUTH_LEN))
            }
            QuicProvider::Glaive => {
                out[..16].copy_from_slice(&uuid);
                out[16] = if mev { GLAIVE_FLAG_MEV } else { 0 };
                Some((StreamKind::Uni, GLAIVE_AUTH_LEN))
            }
            _ => None,
        }
    }

    /// What an application close code from the relay means, for logs and completions.
    pub fn close_reason(self, code: u64) -> &'static str {
        match (self, code) {
            (QuicProvider::Astralane, ASTRALANE_CLOSE_UNKNOWN_KEY) => "unknown API key",
            (QuicProvider::Astralane, ASTRALANE_CLOSE_CONNECTION_LIMIT) => {
                "too many connections for this API key"
            }
            _ => "closed by the relay",
        }
    }
}

impl fmt::Display for QuicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`QuicProvider::ALL`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownQuicProvider;

impl FromStr for QuicProvider {
    type Err = UnknownQuicProvider;
    fn from_str(s: &str) -> Result<QuicProvider, UnknownQuicProvider> {
        QuicProvider::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or(UnknownQuicProvider)
    }
}

/// The 16 bytes of a hyphenated UUID (`8-4-4-4-12` hex digits), `None` if it is not one.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = hex(b[i])?;
        let lo = hex(b[i + 1])?;
        out[n] = hi << 4 | lo;
        n += 1;
        i += 2;
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Bytes of a Node1 reply header: a big-endian status and message length.
pub const REPLY_HEADER_LEN: usize = 6;

/// A Node1 reply: `status` (u16, [`NODE1_ACCEPTED`] when accepted) and the length of the
/// message that follows (u32), big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The relay's status for the transaction (0: accepted).
    pub status: u16,
    /// Bytes of message after the header.
    pub message_len: u32,
}

impl Reply {
    /// The reply header at the start of `bytes`, `None` until [`REPLY_HEADER_LEN`] bytes came.
    pub fn parse(bytes: &[u8]) -> Option<Reply> {
        let h: &[u8; REPLY_HEADER_LEN] = bytes.get(..REPLY_HEADER_LEN)?.try_into().ok()?;
        Some(Reply {
            status: u16::from_be_bytes([h[0], h[1]]),
            message_len: u32::from_be_bytes([h[2], h[3], h[4], h[5]]),
        })
    }

    /// Whether the relay accepted the transaction.
    pub fn accepted(&self) -> bool {
        self.status == NODE1_ACCEPTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in QuicProvider::ALL {
            assert_eq!(p.name().parse::<QuicProvider>(), Ok(p));
        }
        assert_eq!("jito".parse::<QuicProvider>(), Err(UnknownQuicProvider));
    }

    #[test]
    fn uuids_parse_to_their_bytes() {
        let u = parse_uuid("0123abcd-4567-4890-a1b2-c3d4e5f60718").unwrap();
        assert_eq!(
            u,
            [
                0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x48, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6,
                0x07, 0x18
            ]
        );
        for bad in [
            "",
            "0123abcd-4567-4890-a1b2-c3d4e5f6071",
            "0123abcd_4567-4890-a1b2-c3d4e5f60718",
            "0123abcg-4567-4890-a1b2-c3d4e5f60718",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn glaive_auth_is_the_uuid_and_the_mev_flag() {
        let mut out = [0u8; MAX_AUTH_LEN];
        let key = "0123abcd-4567-4890-a1b2-c3d4e5f60718";
        let (kind, len) = QuicProvider::Glaive
            .auth(Some(key), true, &mut out)
            .unwrap();
        assert_eq!((kind, len), (StreamKind::Uni, 17));
        assert_eq!(out[..16], parse_uuid(key).unwrap());
        assert_eq!(out[16], GLAIVE_FLAG_MEV);
        let (kind, len) = QuicProvider::Node1
            .auth(Some(key), false, &mut out)
            .unwrap();
        assert_eq!((kind, len), (StreamKind::Bi, 16));
        assert_eq!(QuicProvider::Soyas.auth(Some(key), false, &mut out), None);
    }

    #[test]
    fn replies_need_their_whole_header() {
        assert_eq!(Reply::parse(&[0, 0, 0, 0, 0]), None);
        let r = Reply::parse(&[0x01, 0x90, 0, 0, 0, 2, b'n', b'o']).unwrap();
        assert_eq!(
            r,
            Reply {
                status: 400,
                message_len: 2
            }
        );
        assert!(!r.accepted());
        assert!(Reply::parse(&[0, 200, 0, 0, 0, 0]).unwrap().accepted());
    }
}
