//! Transaction validation: the project's sample transactions, every error, compact-u16 edge
//! cases and no-panic properties.

use base64::Engine as _;
use swqos_wire::solana::{
    decode_short_u16, encode_short_u16, Transaction, TxError, TxVersion, MAX_TX_SIZE,
};

const TESTDATA: &str = include_str!("data/solana-txs.jsonl");

/// The reason categories the sample file shares with `TxError::reason`.
const CATEGORIES: [&str; 5] = [
    "empty",
    "larger than 1232 bytes",
    "no signatures",
    "signature count exceeds data",
    "truncated message",
];

struct Sample {
    name: String,
    bytes: Vec<u8>,
    json: serde_json::Value,
}

fn samples() -> Vec<Sample> {
    TESTDATA
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let json: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(json["base64"].as_str().expect("base64 field"))
                .expect("valid base64");
            assert_eq!(Some(bytes.len() as u64), json["size"].as_u64());
            Sample {
                name: json["name"].as_str().unwrap().to_owned(),
                bytes,
                json,
            }
        })
        .collect()
}

fn valid_samples() -> Vec<Vec<u8>> {
    samples()
        .into_iter()
        .filter(|s| s.json.get("invalid").is_none())
        .map(|s| s.bytes)
        .collect()
}

#[test]
fn testdata_valid_transactions_parse() {
    let mut n = 0;
    for s in samples().iter().filter(|s| s.json.get("invalid").is_none()) {
        let tx = Transaction::parse(&s.bytes)
            .unwrap_or_else(|e| panic!("{}: unexpected error: {e}", s.name));
        let want = match s.json["version"].as_str() {
            Some("legacy") => TxVersion::Legacy,
            Some("v0") => TxVersion::V0,
            other => panic!("{}: unknown version {other:?}", s.name),
        };
        assert_eq!(tx.version(), want, "{}", s.name);
        assert_eq!(tx.version().as_str(), s.json["version"].as_str().unwrap());
        let b58 = bs58::decode(s.json["base58"].as_str().unwrap())
            .into_vec()
            .unwrap();
        assert_eq!(b58, s.bytes, "{}: base58 and base64 differ", s.name);
        assert_eq!(
            bs58::encode(tx.first_signature()).into_string(),
            s.json["signature"].as_str().unwrap(),
            "{}",
            s.name
        );
        assert_eq!(tx.signature(0), Some(tx.first_signature()));
        assert_eq!(tx.signatures().count(), tx.num_signatures());
        assert_eq!(tx.signatures().len(), tx.num_signatures());
        assert!(tx.signature(tx.num_signatures()).is_none());
        assert_eq!(tx.as_bytes(), &s.bytes[..]);
        assert_eq!(tx.len(), s.bytes.len());
        assert_eq!(
            tx.message().len(),
            s.bytes.len() - 1 - 64 * tx.num_signatures()
        );
        assert_eq!(
            usize::from(tx.header().num_required_signatures),
            tx.num_signatures()
        );
        assert_eq!(tx.account_keys().count(), tx.num_account_keys());
        assert!(tx.num_instructions() > 0, "{}", s.name);
        if want == TxVersion::Legacy {
            assert_eq!(tx.num_address_table_lookups(), 0);
        }
        println!(
            "{}: {} {} bytes, {} sigs, {} keys (+{} loaded), {} ixs, {} lookups",
            s.name,
            tx.version(),
            tx.len(),
            tx.num_signatures(),
            tx.num_account_keys(),
            tx.num_loaded_accounts(),
            tx.num_instructions(),
            tx.num_address_table_lookups()
        );
        n += 1;
    }
    assert!(n >= 40, "only {n} valid samples");
}

#[test]
fn testdata_invalid_transactions_fail() {
    let mut n = 0;
    for s in samples() {
        let Some(reason) = s.json.get("invalid").and_then(|r| r.as_str()) else {
            continue;
        };
        let err = match Transaction::parse(&s.bytes) {
            Ok(_) => panic!("{}: accepted, expected {reason:?}", s.name),
            Err(e) => e,
        };
        println!(
            "{}: expected {reason:?}, got {err:?} ({err}, code {})",
            s.name,
            err.code()
        );
        if CATEGORIES.contains(&reason) {
            assert_eq!(err.reason(), reason, "{}", s.name);
        }
        n += 1;
    }
    assert!(n >= 5);
}

// ---------------------------------------------------------------------------------------------
// A tiny transaction builder for the unit tests.

fn short_vec(out: &mut Vec<u8>, n: usize) {
    let mut b = [0u8; 3];
    let len = encode_short_u16(u16::try_from(n).unwrap(), &mut b);
    out.extend_from_slice(&b[..len]);
}

struct Ix {
    program: u8,
    accounts: Vec<u8>,
    data: Vec<u8>,
}

struct Lookup {
    writable: Vec<u8>,
    readonly: Vec<u8>,
}

struct Msg {
    v0: bool,
    header: [u8; 3],
    keys: usize,
    ixs: Vec<Ix>,
    lookups: Vec<Lookup>,
}

impl Msg {
    fn legacy() -> Msg {
        Msg {
            v0: false,
            header: [1, 0, 1],
            keys: 3,
            ixs: vec![Ix {
                program: 2,
                accounts: vec![0, 1],
                data: vec![2, 0, 0, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0],
            }],
            lookups: vec![],
        }
    }

    fn v0() -> Msg {
        Msg {
            v0: true,
            lookups: vec![Lookup {
                writable: vec![0, 1],
                readonly: vec![2],
            }],
            ixs: vec![Ix {
                program: 2,
                accounts: vec![0, 1, 3, 4, 5],
                data: vec![9; 20],
            }],
            ..Msg::legacy()
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = Vec::new();
        if self.v0 {
            m.push(0x80);
        }
        m.extend_from_slice(&self.header);
        short_vec(&mut m, self.keys);
        for k in 0..self.keys {
            m.extend_from_slice(&[k as u8 + 0x10; 32]);
        }
        m.extend_from_slice(&[0xbb; 32]);
        short_vec(&mut m, self.ixs.len());
        for ix in &self.ixs {
            m.push(ix.program);
            short_vec(&mut m, ix.accounts.len());
            m.extend_from_slice(&ix.accounts);
            short_vec(&mut m, ix.data.len());
            m.extend_from_slice(&ix.data);
        }
        if self.v0 {
            short_vec(&mut m, self.lookups.len());
            for l in &self.lookups {
                m.extend_from_slice(&[0xcc; 32]);
                short_vec(&mut m, l.writable.len());
                m.extend_from_slice(&l.writable);
                short_vec(&mut m, l.readonly.len());
                m.extend_from_slice(&l.readonly);
            }
        }
        m
    }

    fn tx(&self, sigs: usize) -> Vec<u8> {
        let mut t = Vec::new();
        short_vec(&mut t, sigs);
        for i in 0..sigs {
            t.extend_from_slice(&[0xa0 + i as u8; 64]);
        }
        t.extend_from_slice(&self.bytes());
        t
    }
}

fn err(bytes: &[u8]) -> TxError {
    match Transaction::parse(bytes) {
        Ok(_) => panic!("accepted {} bytes", bytes.len()),
        Err(e) => e,
    }
}

#[test]
fn builder_transactions_are_valid() {
    let legacy = Msg::legacy().tx(1);
    let tx = Transaction::parse(&legacy).unwrap();
    assert_eq!(tx.version(), TxVersion::Legacy);
    assert_eq!(tx.first_signature(), &[0xa0; 64]);
    assert_eq!(tx.num_account_keys(), 3);
    assert_eq!(tx.fee_payer(), Some(&[0x10; 32]));
    assert_eq!(tx.account_key(2), Some(&[0x12; 32]));
    assert_eq!(tx.account_key(3), None);
    assert_eq!(tx.account_key(usize::MAX), None);
    assert_eq!(tx.signature(usize::MAX), None);
    assert_eq!(tx.recent_blockhash(), &[0xbb; 32]);
    assert_eq!(tx.num_instructions(), 1);
    assert_eq!(tx.message(), &Msg::legacy().bytes()[..]);

    let v0 = Msg::v0().tx(1);
    let tx = Transaction::parse(&v0).unwrap();
    assert_eq!(tx.version(), TxVersion::V0);
    assert_eq!(tx.num_address_table_lookups(), 1);
    assert_eq!(tx.num_loaded_accounts(), 3);

    // Two signers, one read-only signer.
    let m = Msg {
        header: [2, 1, 1],
        keys: 4,
        ixs: vec![Ix {
            program: 3,
            accounts: vec![0, 1, 2],
            data: vec![],
        }],
        ..Msg::legacy()
    };
    let t = m.tx(2);
    let tx = Transaction::parse(&t).unwrap();
    let sigs: Vec<_> = tx.signatures().collect();
    assert_eq!(sigs, [&[0xa0; 64], &[0xa1; 64]]);
    assert_eq!(tx.signature(1), Some(&[0xa1; 64]));

    // No instructions at all is structurally fine.
    let m = Msg {
        ixs: vec![],
        ..Msg::legacy()
    };
    Transaction::parse(&m.tx(1)).unwrap();
}

#[test]
fn error_empty_and_oversize() {
    assert_eq!(err(&[]), TxError::Empty);
    assert_eq!(err(&[]).reason(), "empty");
    // Size is checked before anything else, even on garbage.
    let big = vec![0u8; MAX_TX_SIZE + 1];
    assert_eq!(err(&big), TxError::Oversize { len: 1233 });
    assert_eq!(err(&big).reason(), "larger than 1232 bytes");
    assert_eq!(err(&big).to_string(), "larger than 1232 bytes (1233 bytes)");
    // Exactly MAX_TX_SIZE: pad instruction data until the tx is 1232 bytes.
    let mut m = Msg::legacy();
    let base = m.tx(1).len();
    let new_len = m.ixs[0].data.len() + MAX_TX_SIZE - base - 1; // the data short-vec grows by 1
    m.ixs[0].data.resize(new_len, 7);
    let t = m.tx(1);
    assert_eq!(t.len(), MAX_TX_SIZE);
    Transaction::parse(&t).unwrap();
    m.ixs[0].data.push(0);
    assert_eq!(err(&m.tx(1)), TxError::Oversize { len: 1233 });
}

#[test]
fn error_signatures() {
    let mut t = Msg::legacy().tx(1);
    t[0] = 0;
    assert_eq!(err(&t[..]), TxError::NoSignatures);
    assert_eq!(err(&[0]), TxError::NoSignatures);
    assert_eq!(err(&[0]).reason(), "no signatures");
    // Count larger than the data.
    assert_eq!(err(&[1]), TxError::SignatureCountExceedsData);
    assert_eq!(err(&[1; 64]), TxError::SignatureCountExceedsData);
    let mut t = Msg::legacy().tx(1);
    t[0] = 20;
    assert_eq!(err(&t), TxError::SignatureCountExceedsData);
    // Count fits the data, but the message found after the signatures is cut short and does
    // not declare that many signers: the count is blamed (like the sample file's
    // "sig-count-mismatch").
    let mut t = Msg::legacy().tx(1);
    t[0] = 2;
    assert_eq!(err(&t), TxError::SignatureCountExceedsData);
    assert_eq!(err(&t).reason(), "signature count exceeds data");
    // Count fits and the message is complete but declares a different signer count.
    let t = Msg::legacy().tx(2);
    assert_eq!(err(&t), TxError::HeaderMismatch);
    let m = Msg {
        header: [2, 0, 1],
        ..Msg::legacy()
    };
    assert_eq!(err(&m.tx(1)), TxError::HeaderMismatch);
    // Signature count short-vec itself cut short / non-canonical.
    assert_eq!(err(&[0x80]), TxError::Truncated);
    assert_eq!(err(&[0x81, 0x00]), TxError::InvalidShortVec);
}

#[test]
fn error_truncated_every_prefix() {
    for m in [Msg::legacy(), Msg::v0()] {
        let t = m.tx(1);
        // Prefixes that keep the whole signature block are "truncated message".
        for len in 65..t.len() {
            assert_eq!(
                err(&t[..len]),
                TxError::Truncated,
                "len {len} of {}",
                t.len()
            );
            assert_eq!(err(&t[..len]).reason(), "truncated message");
        }
        for len in 1..65 {
            assert_eq!(err(&t[..len]), TxError::SignatureCountExceedsData);
        }
    }
}

#[test]
fn error_version() {
    for v in 1..=127u8 {
        let mut t = Msg::v0().tx(1);
        t[65] = 0x80 | v;
        assert_eq!(err(&t), TxError::UnsupportedVersion(v));
        assert_eq!(err(&t).reason(), "unsupported message version");
    }
    let mut t = Msg::v0().tx(1);
    t[65] = 0x85;
    assert_eq!(err(&t).to_string(), "unsupported message version 5");
    // Version is checked before the message is found to be short.
    assert_eq!(err(&t[..66]), TxError::UnsupportedVersion(5));
}

#[test]
fn error_trailing_bytes() {
    for m in [Msg::legacy(), Msg::v0()] {
        let mut t = m.tx(1);
        t.push(0);
        assert_eq!(err(&t), TxError::TrailingBytes);
        assert_eq!(err(&t).reason(), "trailing bytes after message");
    }
    // A v0 message read as legacy leaves the lookup vector over.
    let mut t = Msg::v0().tx(1);
    t.remove(65);
    let e = err(&t);
    assert!(
        e == TxError::TrailingBytes || e == TxError::IndexOutOfRange,
        "{e:?}"
    );
}

#[test]
fn error_header_sanity() {
    // num_required + num_readonly_unsigned > keys.
    let m = Msg {
        header: [1, 0, 3],
        ..Msg::legacy()
    };
    assert_eq!(err(&m.tx(1)), TxError::NotEnoughAccountKeys);
    let m = Msg {
        header: [1, 0, 0],
        keys: 0,
        ixs: vec![],
        ..Msg::legacy()
    };
    assert_eq!(err(&m.tx(1)), TxError::NotEnoughAccountKeys);
    // Read-only fee payer.
    let m = Msg {
        header: [1, 1, 1],
        ..Msg::legacy()
    };
    assert_eq!(err(&m.tx(1)), TxError::ReadonlyFeePayer);
    let m = Msg {
        header: [0, 0, 1],
        ..Msg::legacy()
    };
    // Zero required signatures with one signature: the header is inconsistent either way.
    assert_eq!(err(&m.tx(1)), TxError::ReadonlyFeePayer);
}

#[test]
fn error_indexes() {
    // Program index out of range, or the fee payer.
    for program in [0u8, 3, 255] {
        let mut m = Msg::legacy();
        m.ixs[0].program = program;
        assert_eq!(err(&m.tx(1)), TxError::InvalidProgramIndex, "{program}");
    }
    // v0: a program may not come from a lookup table.
    let mut m = Msg::v0();
    m.ixs[0].program = 3;
    assert_eq!(err(&m.tx(1)), TxError::InvalidProgramIndex);
    // Account index out of range.
    let mut m = Msg::legacy();
    m.ixs[0].accounts = vec![0, 3];
    assert_eq!(err(&m.tx(1)), TxError::IndexOutOfRange);
    let mut m = Msg::v0();
    m.ixs[0].accounts.push(6); // 3 static + 3 loaded: 0..=5
    assert_eq!(err(&m.tx(1)), TxError::IndexOutOfRange);
    let mut m = Msg::v0();
    m.ixs[0].accounts = vec![5];
    Transaction::parse(&m.tx(1)).unwrap();
    // Error in the second instruction only.
    let mut m = Msg::legacy();
    m.ixs.push(Ix {
        program: 1,
        accounts: vec![200],
        data: vec![],
    });
    assert_eq!(err(&m.tx(1)), TxError::IndexOutOfRange);
}

#[test]
fn error_lookups() {
    let mut m = Msg::v0();
    m.lookups.push(Lookup {
        writable: vec![],
        readonly: vec![],
    });
    assert_eq!(err(&m.tx(1)), TxError::EmptyLookup);
    // More than 256 keys: 3 static + 254 loaded.
    let mut m = Msg::v0();
    m.lookups = vec![Lookup {
        writable: (0..=253).collect(),
        readonly: vec![],
    }];
    m.ixs[0].accounts = vec![0];
    assert_eq!(err(&m.tx(1)), TxError::TooManyAccountKeys);
    m.lookups[0].writable.pop(); // exactly 256
    Transaction::parse(&m.tx(1)).unwrap();
}

#[test]
fn error_codes_are_stable_and_roundtrip() {
    let all = [
        (TxError::Empty, 1),
        (TxError::NoSignatures, 3),
        (TxError::SignatureCountExceedsData, 4),
        (TxError::Truncated, 5),
        (TxError::InvalidShortVec, 6),
        (TxError::HeaderMismatch, 8),
        (TxError::NotEnoughAccountKeys, 9),
        (TxError::ReadonlyFeePayer, 10),
        (TxError::TooManyAccountKeys, 11),
        (TxError::InvalidProgramIndex, 12),
        (TxError::IndexOutOfRange, 13),
        (TxError::EmptyLookup, 14),
        (TxError::TrailingBytes, 15),
        (TxError::UnsupportedVersion(5), 0x0105),
        (TxError::UnsupportedVersion(127), 0x017f),
        (TxError::Oversize { len: 1233 }, 0x8000 | 1233),
    ];
    for (e, code) in all {
        assert_eq!(e.code(), code, "{e:?}");
        assert_ne!(e.code(), 0);
        assert_eq!(TxError::from_code(code), Some(e));
        assert!(!e.reason().is_empty());
        assert!(e.to_string().starts_with(e.reason()));
    }
    assert_eq!(
        TxError::from_code(TxError::Oversize { len: 1 << 20 }.code()),
        Some(TxError::Oversize { len: 0x7fff })
    );
    assert_eq!(TxError::from_code(0), None);
    assert_eq!(TxError::from_code(2), None);
    assert_eq!(TxError::from_code(7), None);
    assert_eq!(TxError::from_code(16), None);
    assert_eq!(TxError::from_code(0x0200), None);
    for code in 0..=u16::MAX {
        if let Some(e) = TxError::from_code(code) {
            assert_eq!(e.code(), code);
        }
    }
}

#[test]
fn short_vec_edge_cases() {
    // Every value round-trips with the minimal length.
    for v in 0..=u16::MAX {
        let mut b = [0u8; 3];
        let n = encode_short_u16(v, &mut b);
        let want = if v < 0x80 {
            1
        } else if v < 0x4000 {
            2
        } else {
            3
        };
        assert_eq!(n, want, "{v}");
        assert_eq!(decode_short_u16(&b[..n]), Ok((v, n)));
        // Extra bytes after it are not consumed.
        let mut long = b[..n].to_vec();
        long.push(0xff);
        assert_eq!(decode_short_u16(&long), Ok((v, n)));
        // Every proper prefix is truncated.
        for k in 0..n {
            assert_eq!(decode_short_u16(&b[..k]), Err(TxError::Truncated));
        }
    }
    type Case = (&'static [u8], Result<(u16, usize), TxError>);
    let cases: &[Case] = &[
        (&[0x00], Ok((0, 1))),
        (&[0x7f], Ok((0x7f, 1))),
        (&[0x80, 0x01], Ok((0x80, 2))),
        (&[0xff, 0x7f], Ok((0x3fff, 2))),
        (&[0x80, 0x80, 0x01], Ok((0x4000, 3))),
        (&[0xff, 0xff, 0x03], Ok((0xffff, 3))),
        // Overflow past u16::MAX.
        (&[0xff, 0xff, 0x04], Err(TxError::InvalidShortVec)),
        (&[0x80, 0x80, 0x04], Err(TxError::InvalidShortVec)),
        (&[0xff, 0xff, 0x7f], Err(TxError::InvalidShortVec)),
        // A fourth byte is never allowed.
        (&[0x80, 0x80, 0x80, 0x01], Err(TxError::InvalidShortVec)),
        (&[0xff, 0xff, 0x83], Err(TxError::InvalidShortVec)),
        // Non-canonical (aliased) encodings: a trailing zero group.
        (&[0x80, 0x00], Err(TxError::InvalidShortVec)),
        (&[0x81, 0x00], Err(TxError::InvalidShortVec)),
        (&[0xff, 0x80, 0x00], Err(TxError::InvalidShortVec)),
        (&[0x80, 0x80, 0x00], Err(TxError::InvalidShortVec)),
        // Truncated.
        (&[], Err(TxError::Truncated)),
        (&[0x80], Err(TxError::Truncated)),
        (&[0xff, 0xff], Err(TxError::Truncated)),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode_short_u16(bytes), *want, "{bytes:02x?}");
    }
    // Non-canonical lengths inside a message are rejected too.
    let mut t = Msg::legacy().tx(1);
    // key count 3 -> [0x83, 0x00]
    let at = 65 + 3;
    assert_eq!(t[at], 3);
    t[at] = 0x83;
    t.insert(at + 1, 0x00);
    assert_eq!(err(&t), TxError::InvalidShortVec);
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Exercises every accessor of a parsed transaction.
fn touch(tx: &Transaction<'_>) {
    let _ = tx.first_signature();
    assert_eq!(tx.signatures().count(), tx.num_signatures());
    assert_eq!(tx.account_keys().count(), tx.num_account_keys());
    for i in 0..tx.num_signatures() + 2 {
        let _ = tx.signature(i);
    }
    let _ = (tx.message(), tx.recent_blockhash(), tx.fee_payer());
    let _ = (tx.num_instructions(), tx.num_loaded_accounts(), tx.header());
}

fn check(bytes: &[u8]) {
    match Transaction::parse(bytes) {
        Ok(tx) => touch(&tx),
        Err(e) => {
            assert_ne!(e.code(), 0);
            assert_eq!(TxError::from_code(e.code()), Some(e));
        }
    }
}

#[test]
fn no_panic_on_truncations() {
    let mut all = valid_samples();
    all.push(Msg::legacy().tx(1));
    all.push(Msg::v0().tx(1));
    for t in &all {
        for len in 0..=t.len() {
            check(&t[..len]);
            check(&t[t.len() - len..]);
        }
    }
}

#[test]
fn no_panic_on_byte_flips() {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut all = valid_samples();
    all.push(Msg::legacy().tx(1));
    all.push(Msg::v0().tx(1));
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    for t in &all {
        for _ in 0..2000 {
            let mut m = t.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = match rng.below(4) {
                    0 => m[i] ^ (1 << rng.below(8)),
                    1 => rng.next() as u8,
                    2 => 0xff,
                    _ => 0x80,
                };
            }
            match rng.below(6) {
                0 => m.truncate(rng.below(m.len() + 1)),
                1 => m.push(rng.next() as u8),
                2 => {
                    m.remove(rng.below(m.len()));
                }
                _ => {}
            }
            match Transaction::parse(&m) {
                Ok(tx) => {
                    touch(&tx);
                    accepted += 1
                }
                Err(_) => rejected += 1,
            }
        }
    }
    println!(
        "byte flips: {accepted} accepted (e.g. flips inside signatures/keys), {rejected} rejected"
    );
    assert!(rejected > 0 && accepted > 0);
}

#[test]
fn no_panic_on_random_input() {
    let mut rng = Rng(7);
    for _ in 0..200_000 {
        let len = rng.below(300);
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias towards plausible prefixes so the parser gets past the signature count.
        if len > 0 && rng.below(2) == 0 {
            v[0] = 1;
        }
        check(&v);
    }
}
