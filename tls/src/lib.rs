//! The TLS record layer shared by the data plane and the control plane (DESIGN.md section 7).
//!
//! The control plane performs the handshake with rustls and takes the traffic keys out
//! (`dangerous_extract_secrets`, or the kernel-connection API). From then on this crate protects
//! the records in both processes:
//!
//! - the data plane seals the HTTP request as application-data records in place in its mbufs
//!   ([`RecordSealer::seal_in_place`], one record per TCP segment is fine);
//! - the control plane seals the same bytes again for its mirror write to the kernel socket,
//!   opens the relay's responses ([`RecordOpener::open_in_place`]) and handles the TLS 1.3
//!   post-handshake messages ([`PostHandshake`], [`TrafficSecret::next`] for `KeyUpdate`).
//!
//! Suites: TLS 1.3 and TLS 1.2 (ECDHE) with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305
//! ([`Suite`]).
//!
//! **Sequence numbers.** Sealing is deterministic: the same keys, sequence number, content type
//! and plaintext give the same record, byte for byte. The delegated send relies on that (the data
//! plane and the control plane each seal the request at the same sequence number and the relay
//! keeps whichever copy arrives first). The flip side is the one rule a caller must keep: **a
//! sequence number is never used for two different plaintexts under one key**; doing so
//! reveals the XOR of the plaintexts and, for GCM, lets an attacker forge records. The sealer
//! only moves forward on its own; [`RecordSealer::set_seq`] exists for the hand-over between the
//! processes and its caller guarantees the rule.
//!
//! **Secrets.** Nothing here implements `Debug` with key material; keys, IVs and traffic secrets
//! are zeroized on drop, including the expanded AEAD key schedules. (Temporaries that `ring`
//! leaves on its own stack while expanding a key are out of reach.)
//!
//! Sealing and opening do not allocate.

#[cfg(feature = "client-config")]
pub mod client_config;
#[cfg(feature = "client-identity")]
pub mod client_identity;

use core::fmt;
use core::mem::MaybeUninit;
use core::ops::Range;

use ring::{aead, hkdf};
use zeroize::Zeroize;

/// TLS record content types.
pub mod content_type {
    /// `change_cipher_spec`.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// `alert`.
    pub const ALERT: u8 = 21;
    /// `handshake`.
    pub const HANDSHAKE: u8 = 22;
    /// `application_data`.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Record header length: type, legacy version, length.
pub const HEADER_LEN: usize = 5;
/// Largest plaintext in one record (2^14, RFC 8446 section 5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// AEAD tag length of every supported suite.
pub const TAG_LEN: usize = 16;
/// Explicit nonce carried in each TLS 1.2 AES-GCM record.
pub const TLS12_EXPLICIT_NONCE_LEN: usize = 8;
/// The legacy record version every record carries (TLS 1.2's, also used by TLS 1.3).
const RECORD_VERSION: [u8; 2] = [0x03, 0x03];
/// Nonce length of every supported AEAD.
const IV_LEN: usize = 12;

/// Protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2 (RFC 5246; AEAD records of RFC 5288 and RFC 7905).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

/// The AEAD algorithm of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305,
}

impl Aead {
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm | Aead::Chacha20Poly1305 => 32,
        }
    }

    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &aead::AES_128_GCM,
            Aead::Aes256Gcm => &aead::AES_256_GCM,
            Aead::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// A supported cipher suite. The TLS 1.2 suites name the record protection only: the ECDSA and
/// RSA variants of each protect records identically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// `TLS_AES_128_GCM_SHA256` (0x1301).
    Tls13Aes128GcmSha256,
    /// `TLS_AES_256_GCM_SHA384` (0x1302).
    Tls13Aes256GcmSha384,
    /// `TLS_CHACHA20_POLY1305_SHA256` (0x1303).
    Tls13Chacha20Poly1305Sha256,
    /// `TLS_ECDHE_{ECDSA,RSA}_WITH_AES_128_GCM_SHA256` (0xc02b, 0xc02f).
    Tls12EcdheAes128GcmSha256,
    /// `TLS_ECDHE_{ECDSA,RSA}_WITH_AES_256_GCM_SHA384` (0xc02c, 0xc030).
    Tls12EcdheAes256GcmSha384,
    /// `TLS_ECDHE_{ECDSA,RSA}_WITH_CHACHA20_POLY1305_SHA256` (0xcca9, 0xcca8).
    Tls12EcdheChacha20Poly1305Sha256,
}

impl Suite {
    /// The suite of an IANA cipher-suite number (what rustls's `CipherSuite` converts to), if
    /// supported.
    pub const fn from_iana(id: u16) -> Option<Suite> {
        Some(match id {
            0x1301 => Suite::Tls13Aes128GcmSha256,
            0x1302 => Suite::Tls13Aes256GcmSha384,
            0x1303 => Suite::Tls13Chacha20Poly1305Sha256,
            0xc02b | 0xc02f => Suite::Tls12EcdheAes128GcmSha256,
            0xc02c | 0xc030 => Suite::Tls12EcdheAes256GcmSha384,
            0xcca9 | 0xcca8 => Suite::Tls12EcdheChacha20Poly1305Sha256,
            _ => return None,
        })
    }

    /// The protocol version the suite belongs to.
    pub const fn version(self) -> Version {
        match self {
            Suite::Tls13Aes128GcmSha256
            | Suite::Tls13Aes256GcmSha384
            | Suite::Tls13Chacha20Poly1305Sha256 => Version::Tls13,
            _ => Version::Tls12,
        }
    }

    /// The suite's AEAD.
    pub const fn aead(self) -> Aead {
        match self {
            Suite::Tls13Aes128GcmSha256 | Suite::Tls12EcdheAes128GcmSha256 => Aead::Aes128Gcm,
            Suite::Tls13Aes256GcmSha384 | Suite::Tls12EcdheAes256GcmSha384 => Aead::Aes256Gcm,
            Suite::Tls13Chacha20Poly1305Sha256 | Suite::Tls12EcdheChacha20Poly1305Sha256 => {
                Aead::Chacha20Poly1305
            }
        }
    }

    /// Length of the suite's hash, which is the length of a TLS 1.3 traffic secret.
    pub const fn hash_len(self) -> usize {
        match self {
            Suite::Tls13Aes256GcmSha384 | Suite::Tls12EcdheAes256GcmSha384 => 48,
            _ => 32,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        if self.hash_len() == 48 {
            hkdf::HKDF_SHA384
        } else {
            hkdf::HKDF_SHA256
        }
    }

    /// TLS 1.2 AES-GCM: records carry an 8-byte explicit nonce before the ciphertext.
    const fn explicit_nonce(self) -> bool {
        matches!(
            self,
            Suite::Tls12EcdheAes128GcmSha256 | Suite::Tls12EcdheAes256GcmSha384
        )
    }

    /// Where a record's plaintext starts: after the 5-byte header, and for TLS 1.2 AES-GCM
    /// also after the 8-byte explicit nonce (so 5 or 13).
    pub const fn plaintext_offset(self) -> usize {
        HEADER_LEN
            + if self.explicit_nonce() {
                TLS12_EXPLICIT_NONCE_LEN
            } else {
                0
            }
    }

    /// Bytes a record adds to its plaintext: header, explicit nonce (TLS 1.2 AES-GCM), inner
    /// content type (TLS 1.3) and tag.
    pub const fn record_overhead(self) -> usize {
        self.plaintext_offset() + TAG_LEN + matches!(self.version(), Version::Tls13) as usize
    }
}

/// What can go wrong sealing, opening or building keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A key, IV or secret of the wrong length for the suite.
    BadKeyMaterial,
    /// The plaintext is longer than [`MAX_PLAINTEXT`].
    TooLarge,
    /// The output buffer cannot hold the record.
    BufferTooSmall,
    /// The sequence number space is used up: the keys must be updated (or the connection closed).
    SeqExhausted,
    /// A malformed record: short, bad header, wrong outer type, or no inner content type.
    BadRecord,
    /// The record failed authentication: wrong keys, wrong sequence number or tampered bytes.
    Decrypt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::BadKeyMaterial => "key material of the wrong length for the cipher suite",
            Error::TooLarge => "plaintext larger than a TLS record allows",
            Error::BufferTooSmall => "buffer too small for the TLS record",
            Error::SeqExhausted => "TLS sequence numbers exhausted",
            Error::BadRecord => "malformed TLS record",
            Error::Decrypt => "TLS record failed authentication",
        })
    }
}

impl std::error::Error for Error {}

/// A TLS 1.3 traffic secret (`client/server_application_traffic_secret_N`), kept to derive the
/// keys and, on `KeyUpdate`, the next secret. Zeroized on drop; `Debug` shows the suite only.
#[derive(Clone)]
pub struct TrafficSecret {
    suite: Suite,
    secret: [u8; 48],
}

impl TrafficSecret {
    /// A secret of `suite` (a TLS 1.3 suite; `secret` is as long as its hash, e.g. the value in
    /// an `SSLKEYLOGFILE` line).
    pub fn new(suite: Suite, secret: &[u8]) -> Result<Self, Error> {
        if suite.version() != Version::Tls13 || secret.len() != suite.hash_len() {
            return Err(Error::BadKeyMaterial);
        }
        let mut s = TrafficSecret {
            suite,
            secret: [0; 48],
        };
        s.secret[..secret.len()].copy_from_slice(secret);
        Ok(s)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    fn bytes(&self) -> &[u8] {
        &self.secret[..self.suite.hash_len()]
    }

    /// The record keys: HKDF-Expand-Label(secret, "key"/"iv", "", len) (RFC 8446 section 7.3).
    pub fn keys(&self) -> TrafficKeys {
        let mut keys = TrafficKeys {
            suite: self.suite,
            key: [0; 32],
            iv: [0; IV_LEN],
        };
        let key_len = self.suite.aead().key_len();
        expand_label(self.suite, self.bytes(), b"key", &mut keys.key[..key_len]);
        expand_label(self.suite, self.bytes(), b"iv", &mut keys.iv);
        keys
    }

    /// The next secret after a `KeyUpdate`: HKDF-Expand-Label(secret, "traffic upd", "", len)
    /// (RFC 8446 section 7.2).
    pub fn next(&self) -> TrafficSecret {
        let mut next = TrafficSecret {
            suite: self.suite,
            secret: [0; 48],
        };
        let len = self.suite.hash_len();
        expand_label(
            self.suite,
            self.bytes(),
            b"traffic upd",
            &mut next.secret[..len],
        );
        next
    }
}

impl Drop for TrafficSecret {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficSecret")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label with an empty context, into `out` (at most 255 bytes).
fn expand_label(suite: Suite, secret: &[u8], label: &[u8], out: &mut [u8]) {
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret);
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    // Only fails for an output longer than 255 hash lengths; ours are at most 48 bytes.
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-Expand-Label output within bounds");
}

/// The key and IV of one direction of a connection. Zeroized on drop; `Debug` shows the suite
/// only.
#[derive(Clone)]
pub struct TrafficKeys {
    suite: Suite,
    key: [u8; 32],
    iv: [u8; IV_LEN],
}

impl TrafficKeys {
    /// Keys of `suite` from raw bytes, as rustls's secret extraction gives them
    /// (`ConnectionTrafficSecrets`: `key.as_ref()`, `iv.as_ref()`).
    ///
    /// `iv` is 12 bytes, except for TLS 1.2 AES-GCM, which also takes the 4-byte implicit
    /// "salt" of RFC 5288 alone. There the 12-byte form is rustls's: salt followed by 8 bytes
    /// that are XORed with the sequence number to make the explicit nonce (all zero for the
    /// 4-byte form, so the explicit nonce is the sequence number itself, as OpenSSL does).
    pub fn new(suite: Suite, key: &[u8], iv: &[u8]) -> Result<Self, Error> {
        let iv_ok = iv.len() == IV_LEN || (suite.explicit_nonce() && iv.len() == 4);
        if key.len() != suite.aead().key_len() || !iv_ok {
            return Err(Error::BadKeyMaterial);
        }
        let mut keys = TrafficKeys {
            suite,
            key: [0; 32],
            iv: [0; IV_LEN],
        };
        keys.key[..key.len()].copy_from_slice(key);
        keys.iv[..iv.len()].copy_from_slice(iv);
        Ok(keys)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The key bytes (for tests and for handing keys to another process; never log them).
    pub fn key(&self) -> &[u8] {
        &self.key[..self.suite.aead().key_len()]
    }

    /// The 12-byte IV (for TLS 1.2 AES-GCM: salt, then the explicit-nonce mask).
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }
}

impl Drop for TrafficKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// A ready AEAD key and IV; both are zeroized on drop.
struct Cipher {
    suite: Suite,
    /// Always initialized between `new` and `drop`; `MaybeUninit` so that `drop` can overwrite
    /// ring's expanded key schedule with zeros.
    key: MaybeUninit<aead::LessSafeKey>,
    iv: [u8; IV_LEN],
}

impl Cipher {
    fn new(keys: TrafficKeys) -> Cipher {
        // The key length was checked by `TrafficKeys::new` (or fixed by the suite).
        let unbound = aead::UnboundKey::new(keys.suite.aead().ring(), keys.key())
            .expect("key length matches the suite");
        Cipher {
            suite: keys.suite,
            key: MaybeUninit::new(aead::LessSafeKey::new(unbound)),
            iv: *keys.iv(),
        }
        // `keys` is dropped (zeroized) here.
    }

    fn key(&self) -> &aead::LessSafeKey {
        // SAFETY: `key` is initialized in `new` and only de-initialized in `drop`.
        unsafe { self.key.assume_init_ref() }
    }

    /// The per-record nonce: the IV XOR the big-endian sequence number (RFC 8446 section 5.3;
    /// RFC 7905 for TLS 1.2 ChaCha20; rustls's TLS 1.2 AES-GCM, whose last 8 bytes are also the
    /// explicit nonce).
    fn nonce(&self, seq: u64) -> [u8; IV_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        // SAFETY: `key` is initialized (see `key`), and is never used again after this.
        unsafe { self.key.assume_init_drop() };
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// TLS 1.2 additional data: seq || type || version || plaintext length.
fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&RECORD_VERSION);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

fn header(content_type: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = (len as u16).to_be_bytes();
    [
        content_type,
        RECORD_VERSION[0],
        RECORD_VERSION[1],
        len[0],
        len[1],
    ]
}

/// Seals records of one direction of a connection (the side that writes).
pub struct RecordSealer {
    cipher: Cipher,
    seq: u64,
}

impl RecordSealer {
    /// A sealer whose next record gets sequence number `seq` (as rustls's extraction reports
    /// it).
    pub fn new(keys: TrafficKeys, seq: u64) -> RecordSealer {
        RecordSealer {
            cipher: Cipher::new(keys),
            seq,
        }
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.cipher.suite
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Sets the sequence number of the next record.
    ///
    /// The caller guarantees that no sequence number is ever used for two different plaintexts
    /// under these keys. Sealing the *same* plaintext (and content type) again at the same
    /// number is safe and gives identical bytes: that is how the data plane and the control
    /// plane produce the one record stream of a delegated send.
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Replaces the keys after a `KeyUpdate` (TLS 1.3); the sequence number restarts at 0.
    pub fn rekey(&mut self, keys: TrafficKeys) {
        self.cipher = Cipher::new(keys);
        self.seq = 0;
    }

    /// Where the plaintext goes in the output buffer: after the 5-byte header, and for TLS 1.2
    /// AES-GCM also after the 8-byte explicit nonce (so 5 or 13).
    pub fn plaintext_offset(&self) -> usize {
        self.cipher.suite.plaintext_offset()
    }

    /// Bytes a record adds to its plaintext: header, explicit nonce (TLS 1.2 AES-GCM), inner
    /// content type (TLS 1.3) and tag.
    pub fn overhead(&self) -> usize {
        self.cipher.suite.record_overhead()
    }

    /// Length of the record that seals `plaintext_len` bytes.
    pub fn record_len(&self, plaintext_len: usize) -> usize {
        plaintext_len + self.overhead()
    }

    /// Seals one record in place and returns its length ([`record_len`](Self::record_len)).
    ///
    /// The plaintext must already be at `out[plaintext_offset()..][..plaintext_len]`; `out`
    /// must hold `record_len(plaintext_len)` bytes. Writes the header (and explicit nonce),
    /// encrypts the plaintext in place, appends the TLS 1.3 inner content type (no padding)
    /// and the tag, and advances the sequence number. For TLS 1.3 the outer type is always
    /// application data and `content_type` is hidden inside.
    pub fn seal_in_place(
        &mut self,
        out: &mut [u8],
        plaintext_len: usize,
        content_type: u8,
    ) -> Result<usize, Error> {
        if plaintext_len > MAX_PLAINTEXT {
            return Err(Error::TooLarge);
        }
        let record_len = self.record_len(plaintext_len);
        if out.len() < record_len {
            return Err(Error::BufferTooSmall);
        }
        let seq = self.seq;
        let next = seq.checked_add(1).ok_or(Error::SeqExhausted)?;
        let nonce = aead::Nonce::assume_unique_for_key(self.cipher.nonce(seq));
        let body_len = record_len - HEADER_LEN;
        let tag = match self.cipher.suite.version() {
            Version::Tls13 => {
                let hdr = header(content_type::APPLICATION_DATA, body_len);
                out[..HEADER_LEN].copy_from_slice(&hdr);
                let inner_end = HEADER_LEN + plaintext_len + 1;
                out[inner_end - 1] = content_type;
                self.cipher.key().seal_in_place_separate_tag(
                    nonce,
                    aead::Aad::from(hdr),
                    &mut out[HEADER_LEN..inner_end],
                )
            }
            Version::Tls12 => {
                out[..HEADER_LEN].copy_from_slice(&header(content_type, body_len));
                let start = self.plaintext_offset();
                if self.cipher.suite.explicit_nonce() {
                    let explicit = &self.cipher.nonce(seq)[4..];
                    out[HEADER_LEN..start].copy_from_slice(explicit);
                }
                self.cipher.key().seal_in_place_separate_tag(
                    nonce,
                    aead::Aad::from(tls12_aad(seq, content_type, plaintext_len)),
                    &mut out[start..start + plaintext_len],
                )
            }
        }
        // ring only refuses inputs far longer than a record.
        .map_err(|_| Error::TooLarge)?;
        out[record_len - TAG_LEN..record_len].copy_from_slice(tag.as_ref());
        self.seq = next;
        Ok(record_len)
    }
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSealer")
            .field("suite", &self.cipher.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// One opened record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The content type (for TLS 1.3 the inner one).
    pub content_type: u8,
    /// Where the plaintext is in the buffer given to [`RecordOpener::open_in_place`].
    pub plaintext: Range<usize>,
    /// Length of the whole record: the next record starts there.
    pub record_len: usize,
}

/// The length of the record that starts `buf` (header included), once its 5-byte header is
/// there; for splitting a byte stream into records.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    let hdr = buf.get(..HEADER_LEN)?;
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([hdr[3], hdr[4]])))
}

/// Opens records of one direction of a connection (the side that reads).
pub struct RecordOpener {
    cipher: Cipher,
    seq: u64,
}

impl RecordOpener {
    /// An opener whose next record has sequence number `seq`.
    pub fn new(keys: TrafficKeys, seq: u64) -> RecordOpener {
        RecordOpener {
            cipher: Cipher::new(keys),
            seq,
        }
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.cipher.suite
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Replaces the keys after the peer's `KeyUpdate` (TLS 1.3); the sequence number restarts
    /// at 0.
    pub fn rekey(&mut self, keys: TrafficKeys) {
        self.cipher = Cipher::new(keys);
        self.seq = 0;
    }

    /// Decrypts the first record of `buf` in place and advances the sequence number.
    ///
    /// `buf` starts with the record header and holds at least the whole record
    /// ([`record_len`]); bytes after it are untouched. For TLS 1.3 the outer type must be
    /// application data, and the inner content type and zero padding are stripped. A record
    /// that fails leaves the sequence number as it was (the connection is then dead anyway).
    pub fn open_in_place(&mut self, buf: &mut [u8]) -> Result<Opened, Error> {
        let record_len = record_len(buf).ok_or(Error::BadRecord)?;
        if buf.len() < record_len || buf[1] != RECORD_VERSION[0] {
            return Err(Error::BadRecord);
        }
        let suite = self.cipher.suite;
        let seq = self.seq;
        let next = seq.checked_add(1).ok_or(Error::SeqExhausted)?;
        let outer_type = buf[0];
        let opened = match suite.version() {
            Version::Tls13 => {
                let len = record_len - HEADER_LEN;
                if outer_type != content_type::APPLICATION_DATA
                    || !(TAG_LEN + 1..=MAX_PLAINTEXT + 256).contains(&len)
                {
                    return Err(Error::BadRecord);
                }
                let hdr: [u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().expect("5 bytes");
                let nonce = aead::Nonce::assume_unique_for_key(self.cipher.nonce(seq));
                let inner = self
                    .cipher
                    .key()
                    .open_in_place(
                        nonce,
                        aead::Aad::from(hdr),
                        &mut buf[HEADER_LEN..record_len],
                    )
                    .map_err(|_| Error::Decrypt)?;
                // The content type is the last non-zero byte; zeros after it are padding.
                let end = inner
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(Error::BadRecord)?;
                Opened {
                    content_type: inner[end],
                    plaintext: HEADER_LEN..HEADER_LEN + end,
                    record_len,
                }
            }
            Version::Tls12 => {
                let start = HEADER_LEN
                    + if suite.explicit_nonce() {
                        TLS12_EXPLICIT_NONCE_LEN
                    } else {
                        0
                    };
                if record_len < start + TAG_LEN || record_len - start > MAX_PLAINTEXT + 2048 {
                    return Err(Error::BadRecord);
                }
                let plaintext_len = record_len - start - TAG_LEN;
                let mut nonce = self.cipher.nonce(seq);
                if suite.explicit_nonce() {
                    // AES-GCM: the salt, then the explicit nonce the sender chose.
                    nonce[..4].copy_from_slice(&self.cipher.iv[..4]);
                    nonce[4..].copy_from_slice(&buf[HEADER_LEN..start]);
                }
                self.cipher
                    .key()
                    .open_in_place(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(tls12_aad(seq, outer_type, plaintext_len)),
                        &mut buf[start..record_len],
                    )
                    .map_err(|_| Error::Decrypt)?;
                Opened {
                    content_type: outer_type,
                    plaintext: start..start + plaintext_len,
                    record_len,
                }
            }
        };
        self.seq = next;
        Ok(opened)
    }
}

impl fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOpener")
            .field("suite", &self.cipher.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A TLS 1.3 post-handshake message, from the plaintext of a record whose content type is
/// handshake (RFC 8446 section 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostHandshake<'a> {
    /// `NewSessionTicket`: the body, which a client that does not resume can ignore.
    NewSessionTicket(&'a [u8]),
    /// `KeyUpdate`: the peer switched its sending keys to [`TrafficSecret::next`]; when
    /// `update_requested`, this side must send a `KeyUpdate` of its own
    /// ([`KEY_UPDATE_NOT_REQUESTED`]) and switch too.
    KeyUpdate {
        /// The peer asked for a `KeyUpdate` back.
        update_requested: bool,
    },
    /// Any other handshake message: its type and body.
    Other(u8, &'a [u8]),
}

/// A complete `KeyUpdate(update_not_requested)` message, to seal as a handshake record.
pub const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [24, 0, 0, 1, 0];
/// A complete `KeyUpdate(update_requested)` message, to seal as a handshake record.
pub const KEY_UPDATE_REQUESTED: [u8; 5] = [24, 0, 0, 1, 1];

impl<'a> PostHandshake<'a> {
    /// Parses the first handshake message of `buf`; returns it and its length (a record may
    /// hold several). `None` if `buf` does not hold a complete, well-formed message (messages
    /// split across records are not supported: post-handshake messages are small).
    pub fn parse(buf: &'a [u8]) -> Option<(PostHandshake<'a>, usize)> {
        let hdr = buf.get(..4)?;
        let len = usize::from(hdr[1]) << 16 | usize::from(hdr[2]) << 8 | usize::from(hdr[3]);
        let body = buf.get(4..4 + len)?;
        let msg = match hdr[0] {
            4 => PostHandshake::NewSessionTicket(body),
            24 => match body {
                [0] => PostHandshake::KeyUpdate {
                    update_requested: false,
                },
                [1] => PostHandshake::KeyUpdate {
                    update_requested: true,
                },
                _ => return None,
            },
            t => PostHandshake::Other(t, body),
        };
        Some((msg, 4 + len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITES: [Suite; 6] = [
        Suite::Tls13Aes128GcmSha256,
        Suite::Tls13Aes256GcmSha384,
        Suite::Tls13Chacha20Poly1305Sha256,
        Suite::Tls12EcdheAes128GcmSha256,
        Suite::Tls12EcdheAes256GcmSha384,
        Suite::Tls12EcdheChacha20Poly1305Sha256,
    ];

    fn keys(suite: Suite) -> TrafficKeys {
        TrafficKeys::new(suite, &[0x42; 32][..suite.aead().key_len()], &[7; 12]).unwrap()
    }

    fn seal(sealer: &mut RecordSealer, plaintext: &[u8]) -> Vec<u8> {
        let mut out = [0u8; 256];
        let at = sealer.plaintext_offset();
        out[at..at + plaintext.len()].copy_from_slice(plaintext);
        let n = sealer
            .seal_in_place(&mut out, plaintext.len(), content_type::APPLICATION_DATA)
            .unwrap();
        out[..n].to_vec()
    }

    /// The delegated send relies on this: the same plaintext at the same sequence number gives
    /// the same record in both processes.
    #[test]
    fn sealing_is_deterministic() {
        for suite in SUITES {
            let mut dataplane = RecordSealer::new(keys(suite), 41);
            let mut control = RecordSealer::new(keys(suite), 0);
            control.set_seq(41);
            let a = seal(&mut dataplane, b"GET / HTTP/1.1\r\n\r\n");
            let b = seal(&mut control, b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(a, b, "{suite:?}");
            assert_eq!(a.len(), dataplane.record_len(18));
            assert_eq!((dataplane.seq(), control.seq()), (42, 42));
            // The next sequence number gives other bytes.
            assert_ne!(seal(&mut control, b"GET / HTTP/1.1\r\n\r\n"), a);
        }
    }

    #[test]
    fn round_trip_and_padding() {
        for suite in SUITES {
            let mut sealer = RecordSealer::new(keys(suite), 5);
            let mut opener = RecordOpener::new(keys(suite), 5);
            for len in [0, 1, 100] {
                let plaintext = vec![0xab; len];
                let mut record = seal(&mut sealer, &plaintext);
                record.extend_from_slice(b"next");
                let opened = opener.open_in_place(&mut record).unwrap();
                assert_eq!(opened.content_type, content_type::APPLICATION_DATA);
                assert_eq!(record[opened.plaintext], plaintext[..]);
                assert_eq!(&record[opened.record_len..], b"next");
            }
        }
        // TLS 1.3 zero padding after the inner content type is stripped. (Sealing with content
        // type 0 makes the last plaintext byte the inner type: "hi", handshake, two zeros.)
        let suite = Suite::Tls13Aes128GcmSha256;
        let mut sealer = RecordSealer::new(keys(suite), 0);
        let mut record = [0u8; 64];
        record[5..10].copy_from_slice(b"hi\x16\0\0");
        sealer.seal_in_place(&mut record, 5, 0).unwrap();
        let opened = RecordOpener::new(keys(suite), 0)
            .open_in_place(&mut record)
            .unwrap();
        assert_eq!(opened.content_type, content_type::HANDSHAKE);
        assert_eq!(&record[opened.plaintext], b"hi");
    }

    #[test]
    fn limits() {
        let mut sealer = RecordSealer::new(keys(Suite::Tls13Aes128GcmSha256), u64::MAX);
        let mut out = [0u8; 64];
        assert_eq!(
            sealer.seal_in_place(&mut out, 10, 23),
            Err(Error::SeqExhausted)
        );
        assert_eq!(
            sealer.seal_in_place(&mut out, 60, 23),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            sealer.seal_in_place(&mut out, MAX_PLAINTEXT + 1, 23),
            Err(Error::TooLarge)
        );
        assert_eq!(
            TrafficKeys::new(Suite::Tls13Aes128GcmSha256, &[0; 32], &[0; 12]).unwrap_err(),
            Error::BadKeyMaterial
        );
        assert!(TrafficKeys::new(Suite::Tls12EcdheAes128GcmSha256, &[0; 16], &[0; 4]).is_ok());
        assert!(TrafficKeys::new(Suite::Tls13Aes128GcmSha256, &[0; 16], &[0; 4]).is_err());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let secret = TrafficSecret::new(Suite::Tls13Aes128GcmSha256, &[0x5a; 32]).unwrap();
        let keys = secret.keys();
        let shown = format!(
            "{secret:?} {keys:?} {:?} {:?}",
            RecordSealer::new(keys.clone(), 3),
            RecordOpener::new(keys.clone(), 3)
        );
        assert!(!shown.contains("90") && !shown.contains("5a"), "{shown}");
        assert!(shown.contains("seq: 3"));
    }

    #[test]
    fn key_update_message() {
        assert_eq!(
            PostHandshake::parse(&KEY_UPDATE_REQUESTED),
            Some((
                PostHandshake::KeyUpdate {
                    update_requested: true
                },
                5
            ))
        );
        assert_eq!(PostHandshake::parse(&[24, 0, 0, 1]), None);
    }
}
