//! Validation of signed Solana transactions in their wire format.
//!
//! The input is the bincode serialization a client passes to `sendTransaction`:
//!
//! ```text
//! transaction := short_vec<signature: [u8; 64]> message
//! message     := [0x80 | version]?            (absent: legacy; present: version 0 only)
//!                num_required_signatures: u8
//!                num_readonly_signed: u8
//!                num_readonly_unsigned: u8
//!                short_vec<account_key: [u8; 32]>
//!                recent_blockhash: [u8; 32]
//!                short_vec<instruction>
//!                short_vec<address_table_lookup>   (v0 only)
//! instruction := program_id_index: u8  short_vec<u8 account index>  short_vec<u8 data>
//! address_table_lookup := table: [u8; 32]  short_vec<u8 writable>  short_vec<u8 readonly>
//! short_vec<T> := compact-u16 length (1..=3 bytes, 7 bits per byte, little-endian groups)
//!                 followed by that many T
//! ```
//!
//! [`Transaction::parse`] checks the structure, that the whole input is consumed, and the same
//! rules as the Solana runtime's `sanitize` (signature count equals the header's
//! `num_required_signatures`, header counts consistent with the static keys, every program and
//! account index in range, program ids are static non-fee-payer keys, at most 256 keys, each
//! address table lookup loads at least one account). Signatures are **not** verified.
//!
//! Nothing allocates and no input makes it panic.

use core::fmt;

/// The largest transaction the network accepts: the Solana packet data size (IPv6 minimum MTU
/// 1280 minus 40 bytes of IPv6 header and 8 bytes of fragment header).
pub const MAX_TX_SIZE: usize = 1232;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Length of a public key or hash.
pub const PUBKEY_LEN: usize = 32;

/// Most account keys a message can address (indexes are `u8`).
pub const MAX_ACCOUNT_KEYS: usize = 256;

/// Why a transaction was rejected.
///
/// Every variant has a stable numeric [`code`](TxError::code) for shared memory and a short
/// [`reason`](TxError::reason); `Display` prints the reason plus details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxError {
    /// The input is empty.
    Empty,
    /// The input is longer than [`MAX_TX_SIZE`].
    Oversize {
        /// The input length (saturated at 32767 when decoded from a code).
        len: usize,
    },
    /// The signature count is zero.
    NoSignatures,
    /// The data cannot hold the signature count it declares: the signatures run past the end,
    /// or a message cut short where it should start does not declare that many signers (the
    /// count byte, not the message, is wrong).
    SignatureCountExceedsData,
    /// The message ends before its last field.
    Truncated,
    /// A compact-u16 length is overlong, non-canonical or larger than `u16::MAX`.
    InvalidShortVec,
    /// The message has a version prefix other than 0.
    UnsupportedVersion(u8),
    /// The signature count differs from the header's `num_required_signatures`.
    HeaderMismatch,
    /// `num_required_signatures + num_readonly_unsigned` exceeds the static account keys.
    NotEnoughAccountKeys,
    /// `num_readonly_signed >= num_required_signatures`: the fee payer would be read-only.
    ReadonlyFeePayer,
    /// More than [`MAX_ACCOUNT_KEYS`] account keys (static plus loaded by lookups).
    TooManyAccountKeys,
    /// A program id index is 0 (the fee payer) or not a static account key.
    InvalidProgramIndex,
    /// An instruction account index is not below the number of account keys.
    IndexOutOfRange,
    /// An address table lookup loads no accounts.
    EmptyLookup,
    /// Bytes remain after the message.
    TrailingBytes,
}

/// Code ranges: small numbers for plain kinds, `0x0100 | version` for
/// [`TxError::UnsupportedVersion`], `0x8000 | min(len, 0x7fff)` for [`TxError::Oversize`].
const CODE_VERSION_BASE: u16 = 0x0100;
const CODE_OVERSIZE_BASE: u16 = 0x8000;

impl TxError {
    /// Plain kinds with their stable codes. Never renumber; only append.
    const TABLE: [(u16, TxError); 13] = [
        (1, TxError::Empty),
        (3, TxError::NoSignatures),
        (4, TxError::SignatureCountExceedsData),
        (5, TxError::Truncated),
        (6, TxError::InvalidShortVec),
        (8, TxError::HeaderMismatch),
        (9, TxError::NotEnoughAccountKeys),
        (10, TxError::ReadonlyFeePayer),
        (11, TxError::TooManyAccountKeys),
        (12, TxError::InvalidProgramIndex),
        (13, TxError::IndexOutOfRange),
        (14, TxError::EmptyLookup),
        (15, TxError::TrailingBytes),
    ];

    /// A stable non-zero number for this error, for shared memory.
    ///
    /// Plain kinds are `1..=15`; `UnsupportedVersion(v)` is `0x0100 | v`; `Oversize { len }` is
    /// `0x8000 | min(len, 0x7fff)`. [`from_code`](Self::from_code) inverts it (exactly, except
    /// that `Oversize` lengths above 32767 come back as 32767).
    pub const fn code(self) -> u16 {
        match self {
            TxError::Empty => 1,
            TxError::Oversize { len } => {
                let l = if len > 0x7fff { 0x7fff } else { len as u16 };
                CODE_OVERSIZE_BASE | l
            }
            TxError::NoSignatures => 3,
            TxError::SignatureCountExceedsData => 4,
            TxError::Truncated => 5,
            TxError::InvalidShortVec => 6,
            TxError::UnsupportedVersion(v) => CODE_VERSION_BASE | v as u16,
            TxError::HeaderMismatch => 8,
            TxError::NotEnoughAccountKeys => 9,
            TxError::ReadonlyFeePayer => 10,
            TxError::TooManyAccountKeys => 11,
            TxError::InvalidProgramIndex => 12,
            TxError::IndexOutOfRange => 13,
            TxError::EmptyLookup => 14,
            TxError::TrailingBytes => 15,
        }
    }

    /// The error for a [`code`](Self::code), or `None` for 0 and unassigned numbers.
    pub fn from_code(code: u16) -> Option<TxError> {
        if code & CODE_OVERSIZE_BASE != 0 {
            return Some(TxError::Oversize {
                len: usize::from(code & 0x7fff),
            });
        }
        if code & 0xff00 == CODE_VERSION_BASE {
            return Some(TxError::UnsupportedVersion((code & 0xff) as u8));
        }
        Self::TABLE
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(_, e)| e)
    }

    /// A short description without details, e.g. `"truncated message"`.
    pub const fn reason(self) -> &'static str {
        match self {
            TxError::Empty => "empty",
            TxError::Oversize { .. } => "larger than 1232 bytes",
            TxError::NoSignatures => "no signatures",
            TxError::SignatureCountExceedsData => "signature count exceeds data",
            TxError::Truncated => "truncated message",
            TxError::InvalidShortVec => "invalid compact-u16 length",
            TxError::UnsupportedVersion(_) => "unsupported message version",
            TxError::HeaderMismatch => "signature count does not match header",
            TxError::NotEnoughAccountKeys => "header requires more account keys than present",
            TxError::ReadonlyFeePayer => "fee payer is read-only",
            TxError::TooManyAccountKeys => "more than 256 account keys",
            TxError::InvalidProgramIndex => "invalid program id index",
            TxError::IndexOutOfRange => "account index out of range",
            TxError::EmptyLookup => "address table lookup loads no accounts",
            TxError::TrailingBytes => "trailing bytes after message",
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxError::Oversize { len } => write!(f, "{} ({len} bytes)", self.reason()),
            TxError::UnsupportedVersion(v) => write!(f, "{} {v}", self.reason()),
            e => f.write_str(e.reason()),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TxError {}

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxVersion {
    /// A legacy message (no version prefix).
    Legacy,
    /// A version 0 message (address table lookups).
    V0,
}

impl TxVersion {
    /// `"legacy"` or `"v0"`, as in Solana's JSON RPC.
    pub const fn as_str(self) -> &'static str {
        match self {
            TxVersion::Legacy => "legacy",
            TxVersion::V0 => "v0",
        }
    }
}

impl fmt::Display for TxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three counts at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Signatures required; the first this many account keys are signers.
    pub num_required_signatures: u8,
    /// How many of the signers are read-only (the last ones).
    pub num_readonly_signed: u8,
    /// How many of the non-signer static keys are read-only (the last ones).
    pub num_readonly_unsigned: u8,
}

/// Decodes a compact-u16 ("short_vec" length) at the start of `bytes`.
///
/// Returns the value and the number of bytes it took (1..=3). Fails with
/// [`TxError::Truncated`] if `bytes` ends inside it and with [`TxError::InvalidShortVec`] for a
/// non-canonical encoding (a final zero byte after the first) or a value above `u16::MAX`.
#[inline]
pub fn decode_short_u16(bytes: &[u8]) -> Result<(u16, usize), TxError> {
    let mut value: u32 = 0;
    for i in 0..3 {
        let b = *bytes.get(i).ok_or(TxError::Truncated)?;
        // The third byte carries only the top 2 bits of a u16 and cannot continue.
        if i == 2 && b > 0x03 {
            return Err(TxError::InvalidShortVec);
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(TxError::InvalidShortVec);
            }
            return Ok((value as u16, i + 1));
        }
    }
    Err(TxError::InvalidShortVec)
}

/// Encodes `value` as a compact-u16 into `out`, returning the number of bytes used (1..=3).
pub fn encode_short_u16(value: u16, out: &mut [u8; 3]) -> usize {
    let mut v = value;
    let mut n = 0;
    for slot in out.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
    }
    n
}

/// A forward-only reader; every method fails with [`TxError::Truncated`] rather than panicking.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn u8(&mut self) -> Result<u8, TxError> {
        let (&b, rest) = self.rest.split_first().ok_or(TxError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    #[inline]
    fn short_len(&mut self) -> Result<usize, TxError> {
        let (v, n) = decode_short_u16(self.rest)?;
        self.rest = self.rest.get(n..).ok_or(TxError::Truncated)?;
        Ok(usize::from(v))
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TxError> {
        if n > self.rest.len() {
            return Err(TxError::Truncated);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], TxError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(TxError::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    /// `count` items of `size` bytes each.
    #[inline]
    fn items(&mut self, count: usize, size: usize) -> Result<&'a [u8], TxError> {
        // count <= u16::MAX and size <= 64: no overflow.
        self.bytes(count * size)
    }
}

/// What the message parser learns.
struct MessageInfo<'a> {
    version: TxVersion,
    header: MessageHeader,
    account_keys: &'a [u8],
    recent_blockhash: &'a [u8; 32],
    num_instructions: u16,
    num_lookups: u16,
    num_loaded_accounts: usize,
}

/// A validated transaction: a view over the input bytes.
///
/// Built by [`Transaction::parse`]; accessors cannot fail or panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction<'a> {
    bytes: &'a [u8],
    signatures: &'a [u8],
    first_signature: &'a [u8; 64],
    message: &'a [u8],
    version: TxVersion,
    header: MessageHeader,
    account_keys: &'a [u8],
    recent_blockhash: &'a [u8; 32],
    num_instructions: u16,
    num_lookups: u16,
    num_loaded_accounts: u16,
}

impl<'a> Transaction<'a> {
    /// Validates `bytes` as a signed transaction (see the module docs for the rules; the size
    /// is checked first).
    pub fn parse(bytes: &'a [u8]) -> Result<Transaction<'a>, TxError> {
        if bytes.is_empty() {
            return Err(TxError::Empty);
        }
        if bytes.len() > MAX_TX_SIZE {
            return Err(TxError::Oversize { len: bytes.len() });
        }
        let mut r = Reader { rest: bytes };
        let num_sigs = r.short_len()?;
        if num_sigs == 0 {
            return Err(TxError::NoSignatures);
        }
        let signatures = r
            .items(num_sigs, SIGNATURE_LEN)
            .map_err(|_| TxError::SignatureCountExceedsData)?;
        let Some((first_signature, _)) = signatures.split_first_chunk::<SIGNATURE_LEN>() else {
            return Err(TxError::NoSignatures);
        };
        let message = r.rest;
        let info = match parse_message(message) {
            Ok(info) => info,
            Err(TxError::Truncated) => {
                // Blame the count if the (cut short) message does not declare that many
                // signers: then the signature block does not really end here.
                let declared = match message.first() {
                    Some(&b) if b & 0x80 != 0 => message.get(1).copied(),
                    other => other.copied(),
                };
                return Err(match declared {
                    Some(n) if usize::from(n) != num_sigs => TxError::SignatureCountExceedsData,
                    _ => TxError::Truncated,
                });
            }
            Err(e) => return Err(e),
        };
        if usize::from(info.header.num_required_signatures) != num_sigs {
            return Err(TxError::HeaderMismatch);
        }
        Ok(Transaction {
            bytes,
            signatures,
            first_signature,
            message,
            version: info.version,
            header: info.header,
            account_keys: info.account_keys,
            recent_blockhash: info.recent_blockhash,
            num_instructions: info.num_instructions,
            num_lookups: info.num_lookups,
            // <= MAX_ACCOUNT_KEYS, checked by parse_message.
            num_loaded_accounts: info.num_loaded_accounts as u16,
        })
    }

    /// The whole transaction as given to [`parse`](Self::parse).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length in bytes of the whole transaction.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false`: a valid transaction is never empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The message format.
    pub fn version(&self) -> TxVersion {
        self.version
    }

    /// The message header.
    pub fn header(&self) -> MessageHeader {
        self.header
    }

    /// Number of signatures (at least 1).
    pub fn num_signatures(&self) -> usize {
        self.signatures.len() / SIGNATURE_LEN
    }

    /// The first signature, which is the transaction id.
    pub fn first_signature(&self) -> &'a [u8; 64] {
        self.first_signature
    }

    /// Signature `i`, if `i < num_signatures()`.
    pub fn signature(&self, i: usize) -> Option<&'a [u8; 64]> {
        let start = i.checked_mul(SIGNATURE_LEN)?;
        self.signatures.get(start..)?.first_chunk::<SIGNATURE_LEN>()
    }

    /// All signatures in order.
    pub fn signatures(&self) -> Chunks<'a, SIGNATURE_LEN> {
        Chunks {
            rest: self.signatures,
        }
    }

    /// The signed message bytes (everything after the signatures).
    pub fn message(&self) -> &'a [u8] {
        self.message
    }

    /// Number of static account keys in the message.
    pub fn num_account_keys(&self) -> usize {
        self.account_keys.len() / PUBKEY_LEN
    }

    /// Static account key `i`; key 0 is the fee payer.
    pub fn account_key(&self, i: usize) -> Option<&'a [u8; 32]> {
        let start = i.checked_mul(PUBKEY_LEN)?;
        self.account_keys.get(start..)?.first_chunk::<PUBKEY_LEN>()
    }

    /// All static account keys in order.
    pub fn account_keys(&self) -> Chunks<'a, PUBKEY_LEN> {
        Chunks {
            rest: self.account_keys,
        }
    }

    /// The fee payer (static account key 0).
    pub fn fee_payer(&self) -> Option<&'a [u8; 32]> {
        self.account_key(0)
    }

    /// The recent blockhash (or durable nonce).
    pub fn recent_blockhash(&self) -> &'a [u8; 32] {
        self.recent_blockhash
    }

    /// Number of instructions.
    pub fn num_instructions(&self) -> usize {
        usize::from(self.num_instructions)
    }

    /// Number of address table lookups (0 for legacy messages).
    pub fn num_address_table_lookups(&self) -> usize {
        usize::from(self.num_lookups)
    }

    /// Number of accounts loaded through address table lookups (0 for legacy messages).
    pub fn num_loaded_accounts(&self) -> usize {
        usize::from(self.num_loaded_accounts)
    }
}

/// Iterator over fixed-size items (signatures, keys) of a [`Transaction`].
#[derive(Debug, Clone)]
pub struct Chunks<'a, const N: usize> {
    rest: &'a [u8],
}

impl<'a, const N: usize> Iterator for Chunks<'a, N> {
    type Item = &'a [u8; N];

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(head)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() / N;
        (n, Some(n))
    }
}

impl<const N: usize> ExactSizeIterator for Chunks<'_, N> {}

/// What the sanitizer needs of a message's instructions. Index checks need the number of
/// lookup-loaded keys, known only at the end: the extremes are kept.
struct Instructions {
    count: usize,
    max_program: u8,
    payer_is_program: bool,
    max_account: Option<u8>,
}

/// Reads the compiled instructions.
fn read_instructions(r: &mut Reader<'_>) -> Result<Instructions, TxError> {
    let mut ins = Instructions {
        count: r.short_len()?,
        max_program: 0,
        payer_is_program: false,
        max_account: None,
    };
    for _ in 0..ins.count {
        let program = r.u8()?;
        ins.max_program = ins.max_program.max(program);
        ins.payer_is_program |= program == 0;
        let n = r.short_len()?;
        let accounts = r.bytes(n)?;
        if let Some(&m) = accounts.iter().max() {
            ins.max_account = Some(ins.max_account.map_or(m, |a| a.max(m)));
        }
        let data_len = r.short_len()?;
        r.bytes(data_len)?;
    }
    Ok(ins)
}

/// Reads a v0 message's address-table lookups: (lookups, keys they load).
fn read_lookups(r: &mut Reader<'_>) -> Result<(usize, usize), TxError> {
    let num_lookups = r.short_len()?;
    let mut num_loaded = 0usize;
    for _ in 0..num_lookups {
        r.array::<PUBKEY_LEN>()?;
        let w = r.short_len()?;
        r.bytes(w)?;
        let ro = r.short_len()?;
        r.bytes(ro)?;
        if w + ro == 0 {
            return Err(TxError::EmptyLookup);
        }
        num_loaded += w + ro;
    }
    Ok((num_lookups, num_loaded))
}

/// Parses and sanitizes a message; see the module docs.
fn parse_message(message: &[u8]) -> Result<MessageInfo<'_>, TxError> {
    let mut r = Reader { rest: message };
    let first = *message.first().ok_or(TxError::Truncated)?;
    let version = if first & 0x80 != 0 {
        match first & 0x7f {
            0 => {
                r.u8()?;
                TxVersion::V0
            }
            v => return Err(TxError::UnsupportedVersion(v)),
        }
    } else {
        TxVersion::Legacy
    };
    let header = MessageHeader {
        num_required_signatures: r.u8()?,
        num_readonly_signed: r.u8()?,
        num_readonly_unsigned: r.u8()?,
    };
    let num_keys = r.short_len()?;
    let account_keys = r.items(num_keys, PUBKEY_LEN)?;
    let recent_blockhash = r.array::<PUBKEY_LEN>()?;

    let Instructions {
        count: num_instructions,
        max_program,
        payer_is_program,
        max_account,
    } = read_instructions(&mut r)?;
    let (num_lookups, num_loaded) = if version == TxVersion::V0 {
        read_lookups(&mut r)?
    } else {
        (0, 0)
    };
    if !r.rest.is_empty() {
        return Err(TxError::TrailingBytes);
    }

    // Sanitize, in the order of Solana's `Message::sanitize`.
    let required = usize::from(header.num_required_signatures);
    if required + usize::from(header.num_readonly_unsigned) > num_keys {
        return Err(TxError::NotEnoughAccountKeys);
    }
    if header.num_readonly_signed >= header.num_required_signatures {
        return Err(TxError::ReadonlyFeePayer);
    }
    let total_keys = num_keys + num_loaded;
    if total_keys > MAX_ACCOUNT_KEYS {
        return Err(TxError::TooManyAccountKeys);
    }
    if num_instructions > 0 && (payer_is_program || usize::from(max_program) >= num_keys) {
        return Err(TxError::InvalidProgramIndex);
    }
    if let Some(m) = max_account {
        if usize::from(m) >= total_keys {
            return Err(TxError::IndexOutOfRange);
        }
    }
    Ok(MessageInfo {
        version,
        header,
        account_keys,
        recent_blockhash,
        // Both come from a compact-u16.
        num_instructions: num_instructions as u16,
        num_lookups: num_lookups as u16,
        num_loaded_accounts: num_loaded,
    })
}
