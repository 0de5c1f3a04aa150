//! The session table: the control plane's relay connections that the data plane may send on
//! (delegated sends, docs/relay-lanes.md). This module is the whole protocol; both processes
//! call it, and nothing else touches an entry's atomics.
//!
//! Each entry has one owner in the control plane (the connection thread of its index) and, while
//! it is armed, one possible claimer in the data plane. Its state word packs the state with an
//! *arming number* bumped on every arming, and every transition is a compare-and-swap from the
//! exact word expected:
//!
//! ```text
//!            open            arm (n -> n+1)         claim (data plane)
//!   FREE ---------> BUSY ------------------> ARMED ------------------> CLAIMED
//!    ^               ^  <-------------------   |   <------------------    |
//!    |               |   take (control plane)  |   unclaim (data plane,   |
//!    |               |                         |    before it sent)       |
//!    |               +-------------------------+--------------------------+
//!    |                        finish_claim (control plane, after the hand-off)
//!    +---- close (control plane, from any state: the connection is gone)
//! ```
//!
//! Why this is enough:
//! - The data plane reads everything it needs (addresses, TLS key, iv and next sequence number)
//!   *before* its claim, from an [`Armed`] snapshot, and the claim is a CAS on the word it saw.
//!   Any change the control plane made in between (taking the connection back to write a request
//!   of its own, which consumes sequence numbers; new keys; a new connection) moved the word
//!   (arming numbers only grow), so the claim fails. A successful claim therefore proves the
//!   snapshot is the state the control plane armed and has not touched since: the record
//!   sequence numbers the data plane seals with were never used by anyone else.
//! - The control plane changes fields only while the entry is BUSY (or FREE), and publishes them
//!   with the release CAS of `arm`; the data plane's acquire load of the word sees them.
//! - A connection that ends while claimed is closed anyway: the generation (bumped by every
//!   `open`) in the data plane's hand-off record then no longer matches, and the control plane
//!   answers that send as failed instead of writing it anywhere ([`DelegatedSend`]).
//!
//! `tests/session_model.rs` checks these claims under every interleaving with loom.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::net::{Ipv4Addr, SocketAddrV4};

use zeroize::Zeroize;

/// Entry states (the low 32 bits of the state word).
pub mod state {
    /// Unused entry.
    pub const FREE: u32 = 0;
    /// The control plane owns the connection (connecting, sending, reading).
    pub const BUSY: u32 = 1;
    /// Idle and fully answered: the data plane may claim it for one request.
    pub const ARMED: u32 = 2;
    /// The data plane sent a request on it; the control plane completes the send.
    pub const CLAIMED: u32 = 3;
}

fn word(state: u32, arming: u32) -> u64 {
    (arming as u64) << 32 | state as u64
}

fn state_of(word: u64) -> u32 {
    word as u32
}

fn arming_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// One relay connection of the control plane, as the data plane sees it. Fields are private:
/// the methods below are the protocol.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Session {
    /// `arming number << 32 | state`.
    word: AtomicU64,
    /// Bumped by every `open`: tells a connection from the ones that used the entry before.
    generation: AtomicU32,
    /// Config lane id.
    lane: AtomicU32,
    /// Local IPv4 address (`u32::from(Ipv4Addr)`).
    local_ip: AtomicU32,
    /// Remote IPv4 address, likewise.
    remote_ip: AtomicU32,
    /// `local_port << 16 | remote_port`.
    ports: AtomicU32,
    /// TLS: the IANA cipher suite id of the connection's records (0: plain TCP).
    tls_suite: AtomicU32,
    /// TLS: the sequence number of the next record this side sends.
    tls_seq: AtomicU64,
    /// TLS: the write key (16 or 32 bytes, little-endian words, zero-padded).
    tls_key: [AtomicU64; 4],
    /// TLS: the write iv (12 bytes, little-endian words).
    tls_iv: [AtomicU64; 2],
    /// Requests the data plane sent on this entry (statistics).
    fast_sends: AtomicU64,
}

/// A TLS connection's write state as the control plane publishes it with an arming.
#[derive(Clone, Copy)]
pub struct TlsWriteRef<'a> {
    /// IANA cipher suite id.
    pub suite: u16,
    /// Write key (16 or 32 bytes).
    pub key: &'a [u8],
    /// Write iv.
    pub iv: &'a [u8; 12],
    /// Sequence number of the next record.
    pub seq: u64,
}

/// A TLS write state as the data plane reads it (zeroized when dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsWrite {
    /// IANA cipher suite id.
    pub suite: u16,
    /// The key, zero-padded to 32 bytes (the suite says how many are used).
    pub key: [u8; 32],
    /// The iv.
    pub iv: [u8; 12],
    /// Sequence number of the first record the data plane may seal.
    pub seq: u64,
}

impl Drop for TlsWrite {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl std::fmt::Debug for TlsWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsWrite")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// An armed entry as the data plane read it, before claiming it.
#[derive(Debug)]
pub struct Armed {
    word: u64,
    /// The connection's generation.
    pub generation: u32,
    /// Config lane id.
    pub lane: u32,
    /// (local ip, local port, remote ip, remote port), ips as `u32::from(Ipv4Addr)`.
    pub flow: (u32, u16, u32, u16),
    /// The TLS write state, on a TLS connection.
    pub tls: Option<TlsWrite>,
}

/// What [`Session::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The entry was armed and is BUSY now: the control plane may write.
    Taken,
    /// The entry was not armed (BUSY, or FREE): the control plane owns it anyway.
    NotArmed,
    /// The data plane claimed it: nothing may be written but the completion of its send.
    Claimed,
}

impl Session {
    fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// Moves the word from `expected` to `to`; `false` when it changed meanwhile.
    fn cas(&self, expected: u64, to: u64) -> bool {
        self.word
            .compare_exchange(expected, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The entry's state (a [`state`] value).
    pub fn state(&self) -> u32 {
        state_of(self.load())
    }

    /// The generation of the connection the entry describes.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Requests the data plane sent on this entry.
    pub fn fast_sends(&self) -> u64 {
        self.fast_sends.load(Ordering::Relaxed)
    }

    /// The TLS suite id currently published (0: none or plain TCP).
    pub fn tls_suite(&self) -> u32 {
        self.tls_suite.load(Ordering::Relaxed)
    }

    /// Whether the entry holds any key material (tests and the zeroing checks use it).
    pub fn has_key_material(&self) -> bool {
        self.tls_suite.load(Ordering::Relaxed) != 0
            || self.tls_key.iter().any(|w| w.load(Ordering::Relaxed) != 0)
            || self.tls_iv.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }

    // ---- the data plane's side ----

    /// The lane of an armed entry (a cheap filter before [`Session::armed`]).
    #[inline]
    pub fn armed_lane(&self) -> Option<u32> {
        (state_of(self.load()) == state::ARMED).then(|| self.lane.load(Ordering::Relaxed))
    }

    /// Reads an armed entry: everything a send needs, before claiming it. `None` when it is not
    /// armed. The values are trustworthy only if [`Session::claim`] then succeeds.
    #[inline]
    pub fn armed(&self) -> Option<Armed> {
        let word = self.load();
        if state_of(word) != state::ARMED {
            return None;
        }
        let ports = self.ports.load(Ordering::Relaxed);
        let suite = self.tls_suite.load(Ordering::Relaxed);
        let tls = (suite != 0).then(|| {
            let mut key = [0u8; 32];
            let mut iv = [0u8; 12];
            load_words(&self.tls_key, &mut key);
            load_words(&self.tls_iv, &mut iv);
            TlsWrite {
                suite: suite as u16,
                key,
                iv,
                seq: self.tls_seq.load(Ordering::Relaxed),
            }
        });
        Some(Armed {
            word,
            generation: self.generation.load(Ordering::Relaxed),
            lane: self.lane.load(Ordering::Relaxed),
            flow: (
                self.local_ip.load(Ordering::Relaxed),
                (ports >> 16) as u16,
                self.remote_ip.load(Ordering::Relaxed),
                ports as u16,
            ),
            tls,
        })
    }

    /// Claims the entry read as `armed` (ARMED -> CLAIMED); `false` if anything changed since
    /// it was read. After a successful claim the snapshot is the armed state, and the data
    /// plane is the only writer on the connection until the control plane finishes the claim.
    #[inline]
    pub fn claim(&self, armed: &Armed) -> bool {
        let claimed = word(state::CLAIMED, arming_of(armed.word));
        if self.cas(armed.word, claimed) {
            self.fast_sends.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Gives back a claim before anything was sent (CLAIMED -> ARMED, same arming); `false` if
    /// the control plane closed the entry meanwhile.
    #[inline]
    pub fn unclaim(&self, armed: &Armed) -> bool {
        let n = arming_of(armed.word);
        if self.cas(word(state::CLAIMED, n), armed.word) {
            self.fast_sends.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    // ---- the control plane's side (the entry's one owner) ----

    /// Describes a new connection (any state -> BUSY, new generation); returns the generation.
    /// A claim of the connection that used the entry before stays answered by its own
    /// generation.
    pub fn open(&self, lane: u8, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut current = self.load();
        while !self.cas(current, word(state::BUSY, arming_of(current))) {
            current = self.load();
        }
        let generation = self
            .generation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        self.lane.store(lane as u32, Ordering::Relaxed);
        self.clear_tls();
        self.local_ip
            .store(u32::from(*local.ip()), Ordering::Relaxed);
        self.remote_ip
            .store(u32::from(*remote.ip()), Ordering::Relaxed);
        self.ports.store(
            (local.port() as u32) << 16 | remote.port() as u32,
            Ordering::Relaxed,
        );
        generation
    }

    /// Arms the entry (BUSY -> ARMED, next arming number), publishing the TLS write state (or
    /// none, for plain TCP) with it; `false` if the entry was not BUSY.
    pub fn arm(&self, tls: Option<TlsWriteRef<'_>>) -> bool {
        let current = self.load();
        if state_of(current) != state::BUSY {
            return false;
        }
        // BUSY: the data plane reads none of these until the release CAS below.
        match tls {
            Some(t) => {
                store_words(&self.tls_key, t.key);
                store_words(&self.tls_iv, t.iv);
                self.tls_seq.store(t.seq, Ordering::Relaxed);
                self.tls_suite.store(u32::from(t.suite), Ordering::Relaxed);
            }
            None => self.clear_tls(),
        }
        let next = word(state::ARMED, arming_of(current).wrapping_add(1));
        self.cas(current, next)
    }

    /// Takes an armed entry back for a write of the control plane's own (ARMED -> BUSY).
    pub fn take(&self) -> Take {
        loop {
            let current = self.load();
            match state_of(current) {
                state::ARMED => {
                    if self.cas(current, word(state::BUSY, arming_of(current))) {
                        return Take::Taken;
                    }
                }
                state::CLAIMED => return Take::Claimed,
                _ => return Take::NotArmed,
            }
        }
    }

    /// Whether the data plane has claimed the entry.
    pub fn is_claimed(&self) -> bool {
        state_of(self.load()) == state::CLAIMED
    }

    /// The control plane completed the data plane's send (CLAIMED -> BUSY); `false` if the
    /// entry was not claimed.
    pub fn finish_claim(&self) -> bool {
        let current = self.load();
        state_of(current) == state::CLAIMED
            && self.cas(current, word(state::BUSY, arming_of(current)))
    }

    /// The connection is gone (any state -> FREE); its keys are zeroed.
    pub fn close(&self) {
        let mut current = self.load();
        while !self.cas(current, word(state::FREE, arming_of(current))) {
            current = self.load();
        }
        self.clear_tls();
    }

    fn clear_tls(&self) {
        self.tls_suite.store(0, Ordering::Relaxed);
        self.tls_seq.store(0, Ordering::Relaxed);
        store_words(&self.tls_key, &[]);
        store_words(&self.tls_iv, &[]);
    }
}

/// Stores `bytes` into `words` as little-endian words, zero-padded (extra bytes are cut).
fn store_words(words: &[AtomicU64], bytes: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let chunk = bytes.get(i * 8..).unwrap_or(&[]);
        let n = chunk.len().min(8);
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&chunk[..n]);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        b.zeroize();
    }
}

/// Loads `words` into `out` (as many bytes as it holds), little-endian.
fn load_words(words: &[AtomicU64], out: &mut [u8]) {
    for (w, chunk) in words.iter().zip(out.chunks_mut(8)) {
        let n = chunk.len();
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes()[..n]);
    }
}

/// A delegated send as the data plane reports it in its hand-off record: which connection it
/// wrote on, and exactly what, so that the control plane writes its mirror copy only when it is
/// the same byte stream (same plaintext at the same sequence numbers) and otherwise writes
/// nothing (docs/relay-lanes.md, "one writer per byte").
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelegatedSend {
    /// Session table index.
    pub session: u32,
    /// The connection's generation when claimed.
    pub generation: u32,
    /// TCP sequence number of the first byte.
    pub tcp_seq: u32,
    /// Bytes on the wire (the request, plus the TLS records' overhead).
    pub wire_len: u32,
    /// TLS: plaintext bytes per record (0: plain TCP).
    pub record_plaintext: u32,
    _reserved: u32,
    /// TLS: sequence number of the first record.
    pub tls_seq: u64,
    /// `swqos_wire::relay::request_digest` of the request's plaintext.
    pub digest: u64,
}

impl DelegatedSend {
    /// A delegated send's report.
    pub fn new(
        session: usize,
        generation: u32,
        tcp_seq: u32,
        wire_len: usize,
        tls: Option<(u64, usize)>,
        digest: u64,
    ) -> DelegatedSend {
        DelegatedSend {
            session: session as u32,
            generation,
            tcp_seq,
            wire_len: wire_len as u32,
            record_plaintext: tls.map_or(0, |(_, r)| r as u32),
            _reserved: 0,
            tls_seq: tls.map_or(0, |(s, _)| s),
            digest,
        }
    }

    /// Checks the send against what the control plane is about to write on connection
    /// `generation`: a request whose plaintext has digest `digest` and, on TLS, whose records
    /// of `record_plaintext` bytes take `wire_len` bytes from sequence number `tls_seq`.
    /// `Err` says what differs; the control plane then writes nothing.
    pub fn verify(
        &self,
        generation: u32,
        digest: u64,
        wire_len: usize,
        tls_seq: Option<u64>,
    ) -> Result<(), String> {
        if self.generation != generation {
            return Err(format!(
                "the data plane sent on an earlier connection (generation {}, now {generation})",
                self.generation
            ));
        }
        if self.digest != digest {
            return Err("the data plane's request differs from the control plane's".into());
        }
        if self.wire_len as usize != wire_len {
            return Err(format!(
                "the data plane's send is {} bytes on the wire, the control plane's would be {wire_len}",
                self.wire_len
            ));
        }
        match (tls_seq, self.record_plaintext) {
            (None, 0) => Ok(()),
            (Some(seq), r) if r > 0 && seq == self.tls_seq => Ok(()),
            (Some(seq), r) if r > 0 => Err(format!(
                "the data plane sealed from record {}, the connection's next is {seq}",
                self.tls_seq
            )),
            _ => Err("the data plane's send and the connection disagree about TLS".into()),
        }
    }
}

/// Per-lane fingerprints of the relay request templates, written by the data plane at start:
/// the control plane compares its own and sends fast only on lanes where they match.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct TemplateFingerprints {
    lanes: [AtomicU64; crate::layout::MAX_LANES],
}

impl TemplateFingerprints {
    /// Publishes lane `lane`'s fingerprint (the data plane, before it runs).
    pub fn set(&self, lane: usize, fingerprint: u64) {
        if let Some(f) = self.lanes.get(lane) {
            f.store(fingerprint, Ordering::Release);
        }
    }

    /// Lane `lane`'s fingerprint (0: not a relay lane, or not published).
    pub fn get(&self, lane: usize) -> u64 {
        self.lanes
            .get(lane)
            .map_or(0, |f| f.load(Ordering::Acquire))
    }
}

/// An [`Ipv4Addr`] from its `u32` form (as stored in a flow tuple).
pub fn ip(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        )
    }

    #[test]
    fn a_claim_fails_after_any_rearming_between_read_and_claim() {
        let e = Session::default();
        let (l, r) = addrs();
        let gen = e.open(3, l, r);
        let key = [7u8; 16];
        let iv = [9u8; 12];
        let tls = |seq| {
            Some(TlsWriteRef {
                suite: 0x1301,
                key: &key,
                iv: &iv,
                seq,
            })
        };
        assert!(e.arm(tls(5)));
        let seen = e.armed().unwrap();
        assert_eq!((seen.generation, seen.lane), (gen, 3));
        assert_eq!(
            seen.flow,
            (u32::from(*l.ip()), 40000, u32::from(*r.ip()), 80)
        );
        assert_eq!(seen.tls.as_ref().unwrap().seq, 5);
        // The control plane takes it back, writes record 5 itself, re-arms at 6: the snapshot
        // (which would seal at 5) must not claim.
        assert_eq!(e.take(), Take::Taken);
        assert!(e.arm(tls(6)));
        assert!(!e.claim(&seen));
        let fresh = e.armed().unwrap();
        assert!(e.claim(&fresh));
        assert_eq!(e.take(), Take::Claimed);
        assert!(e.finish_claim());
        assert_eq!(e.state(), state::BUSY);
        assert_eq!(e.fast_sends(), 1);
    }

    #[test]
    fn transitions_are_refused_from_the_wrong_state() {
        let e = Session::default();
        let (l, r) = addrs();
        assert!(!e.arm(None), "FREE is not armable");
        assert!(!e.finish_claim());
        e.open(0, l, r);
        assert!(e.armed().is_none(), "BUSY is not claimable");
        assert!(e.arm(None));
        let a = e.armed().unwrap();
        assert!(!e.unclaim(&a), "not claimed");
        assert!(e.claim(&a));
        assert!(!e.arm(None), "a claimed entry is not re-armed");
        assert!(e.unclaim(&a));
        assert_eq!(e.state(), state::ARMED);
        // Closed while claimed: the claim's unclaim fails, the entry stays FREE.
        assert!(e.claim(&e.armed().unwrap()));
        e.close();
        assert!(!e.unclaim(&a));
        assert_eq!(e.state(), state::FREE);
    }

    #[test]
    fn open_bumps_the_generation_and_close_zeroes_keys() {
        let e = Session::default();
        let (l, r) = addrs();
        let g1 = e.open(0, l, r);
        assert!(e.arm(Some(TlsWriteRef {
            suite: 0x1302,
            key: &[1; 32],
            iv: &[2; 12],
            seq: 0,
        })));
        assert!(e.has_key_material());
        e.close();
        assert!(!e.has_key_material());
        let g2 = e.open(0, l, r);
        assert_eq!(g2, g1.wrapping_add(1));
    }

    #[test]
    fn a_delegated_send_is_verified_field_by_field() {
        let d = DelegatedSend::new(4, 7, 1000, 1500, Some((12, 1426)), 0xabc);
        assert_eq!(d.verify(7, 0xabc, 1500, Some(12)), Ok(()));
        assert!(d
            .verify(8, 0xabc, 1500, Some(12))
            .unwrap_err()
            .contains("earlier"));
        assert!(d
            .verify(7, 0xabd, 1500, Some(12))
            .unwrap_err()
            .contains("differs"));
        assert!(d.verify(7, 0xabc, 1501, Some(12)).is_err());
        assert!(d
            .verify(7, 0xabc, 1500, Some(13))
            .unwrap_err()
            .contains("record 12"));
        assert!(d.verify(7, 0xabc, 1500, None).is_err());
        let plain = DelegatedSend::new(4, 7, 1000, 1500, None, 0xabc);
        assert_eq!(plain.verify(7, 0xabc, 1500, None), Ok(()));
        assert!(plain.verify(7, 0xabc, 1500, Some(0)).is_err());
    }
}
