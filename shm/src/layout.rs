//! The segment's binary layout: every structure that lives in shared memory.
//!
//! ```text
//! offset 0             Header (magic, layout version, sizes, heartbeat, lane table)
//! rings_offset         n_rings x SubmitRing   { RingControl, ring_slots x Slot }
//! completions_offset   n_rings x CompletionRing { CompletionControl, ring_slots*8 x Completion }
//! stats_offset         n_lcores x LcoreStats
//! ports_offset         n_ports x PortStats  { name, DPDK port counters }
//! ```
//!
//! The session table and the hand-off rings live in the control file beside the segment, which
//! clients never map ([`crate::control_segment`]).
//!
//! Only offsets are stored, never pointers, so every process may map the segment anywhere. Both
//! sides compute the layout from the same four numbers (rings, slots, lcores, ports) with
//! [`Layout::new`]; a client refuses a segment whose recorded size differs from what it computes,
//! and [`LAYOUT_VERSION`] changes whenever any structure here changes.

use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use crate::sessions::{DelegatedSend, Session, TemplateFingerprints};
use crate::stats::{LcoreStats, PortStats};

/// `b"SWQOSSHM"` read as a little-endian u64: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SWQOSSHM");
/// Bumped on every change to a structure in this module or in [`crate::stats`].
///
/// 2: per-lane byte counters in [`LcoreStats`], the ports area ([`PortStats`]).
/// 7: session entries with an arming number ([`crate::sessions`]), hand-off records of their own
/// type ([`HandoffRecord`]) carrying the delegated send, template fingerprints; the
/// `fast_refused` and `bad_timestamp` counters.
/// 8: the session table and the hand-off rings in the control file
/// ([`crate::control_segment`]), which clients never map; the header's `instance` pairs them.
/// 9: the latency budget in [`LcoreStats`] (`stage_ticks`, `stage_samples`, `stage_hist` per
/// [`crate::stats::Stage`]) and `lane_fast_ticks` (delegated sends' submit-to-`tx_burst` per lane).
/// 10: polling that fits the host: [`LcoreStats`] records its lcore's poll mode and start time,
/// and the `work_polls`, `idle_sleeps` and `sleep_ns` counters.
/// 11: no `stage_samples` (a stage's timings are its histogram's sum).
/// 12: landing feedback: [`Status::Landed`] and [`Status::Expired`] completions,
/// [`SLOT_WATCH_LANDING`] passed on in [`HandoffRecord::flags`], and the control plane's landing
/// window in [`ControlRole`] (`landing_ms`, was reserved); [`LaneKind::Quic`] lanes.
pub const LAYOUT_VERSION: u32 = 12;
/// The largest transaction a slot holds: Solana's packet data size.
pub const MAX_TX_SIZE: usize = 1232;
/// Lanes are addressed by bit in a `u64` lane mask.
pub const MAX_LANES: usize = 64;
/// Longest lane name, in bytes, including no terminator (names are zero-padded).
pub const LANE_NAME_LEN: usize = 32;
/// Stats blocks reserved: one per dataplane lcore.
pub const MAX_LCORES: usize = 32;
/// Port stats blocks: at most one per configured port (DPDK's default `RTE_MAX_ETHPORTS`).
pub const MAX_PORTS: usize = 32;
/// Longest port name, in bytes (zero-padded, like lane names).
pub const PORT_NAME_LEN: usize = 32;
/// Completion records per submit slot: a ring's completion ring holds `ring_slots * 8` records.
pub const COMPLETIONS_PER_SLOT: usize = 8;
/// Records per hand-off ring: submissions for relay lanes a TX lcore passes to the control
/// plane ([`HandoffRecord`]s).
pub const HANDOFF_SLOTS: u32 = 1024;
/// Entries of the session table: relay connections the data plane may send on.
pub const MAX_SESSIONS: usize = 64;

/// The session table: the relay request templates' fingerprints, then [`MAX_SESSIONS`]
/// entries. Its protocol is [`crate::sessions`].
#[repr(C)]
#[derive(Debug)]
pub struct SessionTable {
    /// Per lane, written by the data plane at start.
    pub fingerprints: TemplateFingerprints,
    /// One entry per control-plane relay connection.
    pub entries: [Session; MAX_SESSIONS],
}

/// Highest number of submit rings (client processes at once).
pub const MAX_RINGS: usize = 64;
/// Fewest and most slots per submit ring (power of two).
pub const MIN_RING_SLOTS: u32 = 16;
/// See [`MIN_RING_SLOTS`].
pub const MAX_RING_SLOTS: u32 = 65536;

/// The dataplane's lifecycle, as published in [`Header::state`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The segment is being written; nothing in it is valid yet.
    Initializing = 0,
    /// Submissions are accepted.
    Running = 1,
    /// Shutting down: what is in the rings is still sent, nothing new is accepted.
    Draining = 2,
    /// The dataplane has exited.
    Stopped = 3,
}

impl State {
    /// Decodes the value stored in the header.
    pub fn from_u32(v: u32) -> Option<State> {
        match v {
            0 => Some(State::Initializing),
            1 => Some(State::Running),
            2 => Some(State::Draining),
            3 => Some(State::Stopped),
            _ => None,
        }
    }

    /// The state's name in `swqos stats` and the metrics (`running`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Initializing => "initializing",
            State::Running => "running",
            State::Draining => "draining",
            State::Stopped => "stopped",
        }
    }
}

/// What kind of destination a lane is (stored in [`LaneInfo::kind`]).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    /// Not a configured lane.
    None = 0,
    /// A UDP datagram target.
    Udp = 1,
    /// An HTTP relay.
    Http = 2,
    /// A QUIC relay (the data plane's own connection).
    Quic = 3,
}

impl LaneKind {
    /// The kind's name in `swqos stats` and the metrics (`udp`, `http`, `quic`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            LaneKind::Udp => "udp",
            LaneKind::Http => "http",
            LaneKind::Quic => "quic",
            LaneKind::None => "none",
        }
    }
}

/// One lane's public description, so clients can resolve lane names without the config.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaneInfo {
    /// UTF-8 name, zero-padded.
    pub name: [u8; LANE_NAME_LEN],
    /// A [`LaneKind`] value.
    pub kind: u8,
    _reserved: [u8; 7],
}

impl LaneInfo {
    /// A lane entry; names longer than [`LANE_NAME_LEN`] are cut (the config forbids them).
    pub fn new(name: &str, kind: LaneKind) -> LaneInfo {
        let mut bytes = [0u8; LANE_NAME_LEN];
        let n = name.len().min(LANE_NAME_LEN);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        LaneInfo {
            name: bytes,
            kind: kind as u8,
            _reserved: [0; 7],
        }
    }

    /// The name, up to the first zero byte (lossy if a writer stored bad UTF-8).
    pub fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LANE_NAME_LEN);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Wraps a value on its own pair of cache lines so producer and consumer never share a line
/// (128 bytes because the adjacent-line prefetcher pulls lines in pairs).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

/// The first structure of the segment.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`]; written last by the dataplane, so a non-zero magic means the rest is valid.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`] of the writer.
    pub layout_version: u32,
    /// `size_of::<Header>()` of the writer.
    pub header_size: u32,
    /// Bytes of the layout (the file may be larger, rounded up to a huge page).
    pub layout_size: u64,
    /// Number of submit rings.
    pub n_rings: u32,
    /// Slots per submit ring.
    pub ring_slots: u32,
    /// Number of stats blocks.
    pub n_lcores: u32,
    /// Number of configured lanes (entries of `lanes` in use).
    pub n_lanes: u32,
    /// Number of port stats blocks (one per configured port).
    pub n_ports: u32,
    _reserved: u32,
    /// Time-stamp counter ticks per second, as the dataplane measured it.
    pub tsc_hz: u64,
    /// Offset of the first [`RingControl`].
    pub rings_offset: u64,
    /// Offset of the first [`CompletionControl`].
    pub completions_offset: u64,
    /// Offset of the first [`LcoreStats`].
    pub stats_offset: u64,
    /// Offset of the first [`PortStats`].
    pub ports_offset: u64,
    /// Process id of the dataplane that owns the segment.
    pub dataplane_pid: AtomicU32,
    /// A [`State`] value.
    pub state: AtomicU32,
    /// `CLOCK_MONOTONIC` nanoseconds, refreshed by the dataplane's main loop every millisecond.
    pub heartbeat_ns: AtomicU64,
    /// The control plane serving this data plane, as published for clients and `swqos stats`
    /// (the data plane trusts only the control file's copy).
    pub control: ControlRole,
    /// A random number the data plane draws at start, also in its control file's header
    /// ([`crate::control_segment`]): pairs the two files.
    pub instance: u64,
    _reserved2: u64,
    /// Lanes by id (bit position in a lane mask).
    pub lanes: [LaneInfo; MAX_LANES],
}

/// Control words of one submit ring: a single-producer single-consumer ring leased to one client
/// process at a time. Because each client writes only its own ring, a client killed mid-write
/// leaves at most an unpublished slot in its own ring: it never stalls another client.
#[repr(C)]
pub struct RingControl {
    /// Pid of the client holding the lease, 0 when free.
    pub owner_pid: Padded<AtomicU32>,
    /// Incremented on each lease; stamped into slots and completions so a new lessee can tell its
    /// completions from those of a dead predecessor.
    pub lease_gen: AtomicU32,
    /// The producer's publication word: low 32 bits are the tail (next slot to publish), high 32
    /// bits the completion records promised so far (the lane count of every published slot).
    /// Both wrap; one store publishes both, so a producer killed at any instruction leaves them
    /// consistent with each other. See [`crate::ring`].
    pub tail: Padded<AtomicU64>,
    /// Next slot the dataplane will consume (32-bit wrapping counter, in a u64).
    pub head: Padded<AtomicU64>,
}

/// Size of a slot's header part.
pub const SLOT_HEADER_SIZE: usize = 64;

/// One submission: a transaction and the lanes it goes to. A submission with one transaction per
/// lane is one slot per lane, sharing a tag.
#[repr(C, align(64))]
pub struct Slot {
    /// The client's tag, echoed in every completion.
    pub tag: u64,
    /// Lane mask: bit `i` sends to lane `i`.
    pub lanes: u64,
    /// Client's time-stamp counter at submit.
    pub submit_tsc: u64,
    /// The ring's lease generation when written.
    pub lease_gen: u32,
    /// Transaction length in bytes.
    pub tx_len: u16,
    /// [`SLOT_WATCH_LANDING`], or zero.
    pub flags: u16,
    _reserved: [u8; SLOT_HEADER_SIZE - 32],
    /// The signed transaction (first `tx_len` bytes).
    pub tx: [u8; SLOT_DATA_SIZE],
}

/// [`Slot::flags`] bit: the client wants this submission's landing answer (a
/// [`Status::Landed`] or [`Status::Expired`] completion after its relay lanes' completions).
/// The control plane watches only hand-off records with it set, so the client can reserve
/// the record's room; the data plane only passes it on ([`HandoffRecord::flags`]).
pub const SLOT_WATCH_LANDING: u16 = 1;

/// Slot payload capacity: [`MAX_TX_SIZE`] rounded up to a cache line.
pub const SLOT_DATA_SIZE: usize = MAX_TX_SIZE.div_ceil(64) * 64;

/// A submission for relay lanes, passed by a TX lcore to the control plane (data plane ->
/// control plane). The data plane copies it from its own validated copy of the client's slot.
#[repr(C, align(64))]
pub struct HandoffRecord {
    /// The client's tag.
    pub tag: u64,
    /// The relay lanes this record asks the control plane to complete or send.
    pub lanes: u64,
    /// The client's TSC at submit.
    pub submit_tsc: u64,
    /// The client's lease generation.
    pub lease_gen: u32,
    /// The client's submit ring (where its completions go).
    pub ring: u16,
    /// Transaction length in bytes.
    pub tx_len: u16,
    /// 1 when the data plane already sent the request on a connection (`delegated` says
    /// which and what), 0 when the control plane is to send it.
    pub has_delegated: u32,
    /// The slot's [`Slot::flags`] as the client wrote them (untrusted).
    pub flags: u16,
    /// 0, or 1 + the lane id the completion is reported as: a QUIC lane that could not send
    /// and falls back to this record's (one) HTTP lane (`fallback`, docs/quic-lanes.md).
    pub report_as: u16,
    /// The delegated send (valid when `has_delegated` is 1).
    pub delegated: DelegatedSend,
    _pad: [u8; 48],
    /// The validated transaction (first `tx_len` bytes).
    pub tx: [u8; SLOT_DATA_SIZE],
}

/// Control words of one completion ring (dataplane -> client).
#[repr(C)]
pub struct CompletionControl {
    /// Next record the dataplane will write (32-bit wrapping counter, in a u64).
    pub tail: Padded<AtomicU64>,
    /// Next record the client will read (32-bit wrapping counter, in a u64).
    pub head: Padded<AtomicU64>,
}

/// What happened to one (submission, lane).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Handed to the NIC (`tx_burst` accepted it).
    Sent = 1,
    /// The transaction failed validation; `reason` is a `swqos_wire::solana::TxError` code.
    Rejected = 2,
    /// The lane bit names no configured lane.
    UnknownLane = 3,
    /// Could not be sent; `reason` is a [`DropReason`].
    Dropped = 4,
    /// A relay accepted it; `reason` is the HTTP status, with [`RELAY_FAST`] set when the data
    /// plane sent the request itself (a delegated send) rather than the control plane.
    Relayed = 5,
    /// A relay refused it or could not be reached; `reason` is the HTTP status, or below 100
    /// a [`relay_failure`] code when no response came (the control plane logs the details),
    /// with [`RELAY_FAST`] as for `Relayed`.
    RelayError = 6,
    /// Landing feedback (`[landing]`): the transaction is on chain at the watched commitment.
    /// One per submission, written by the control plane after the submission's relay
    /// completions. `lane` is the lane credited with landing it (the relay lane whose relay
    /// accepted it first, `u8::MAX` when none did), `reason` has [`landing::WITH_ERROR`] set
    /// when it landed with an error (the transaction failed on chain), and `done_tsc` holds
    /// the slot it landed in instead of a time (see [`Completion::slot`]).
    Landed = 7,
    /// Landing feedback: the transaction was not seen on chain within the landing window;
    /// `reason` is a [`landing`] code, `lane` as for [`Status::Landed`], `done_tsc` is 0.
    Expired = 8,
}

/// Landing feedback: the `reason` of [`Status::Landed`] and [`Status::Expired`] completions,
/// and the lane that stands for the landing answer in [`crate::client::Owed`] and
/// [`crate::client::Event::GaveUp`].
pub mod landing {
    /// [`super::Status::Landed`]: the transaction landed with an error (its status's `err`).
    pub const WITH_ERROR: u16 = 1;
    /// [`super::Status::Expired`]: not seen on chain within the landing window.
    pub const NOT_SEEN: u16 = 0;
    /// [`super::Status::Expired`]: the control plane stopped before it could tell.
    pub const CONTROL_STOPPED: u16 = 1;
    /// The lane id standing for a submission's landing answer where a lane id is expected
    /// ([`crate::client::Owed::lane`], [`crate::client::Event::GaveUp`]).
    pub const LANE: u8 = 0xFE;
    /// The `lane` of a landing completion when no relay lane accepted the transaction.
    pub const NO_LANE: u8 = u8::MAX;
}

/// Why a relay request got no HTTP response: [`Status::RelayError`] reasons below 100. Each
/// says whether the request may have reached the relay ([`maybe_delivered`]): a caller must not
/// send such a transaction again blindly.
pub mod relay_failure {
    /// Written, then the connection failed before the answer came: maybe delivered.
    pub const NO_RESPONSE: u16 = 0;
    /// Not sent: no connection of the lane is up, connecting to the relay fails.
    pub const CONNECT: u16 = 1;
    /// Not sent: no connection of the lane is up, the TLS handshake fails for want of a trusted
    /// certificate (unknown issuer, wrong name, expired...).
    pub const TLS_UNTRUSTED: u16 = 2;
    /// Not sent: no connection of the lane is up, the TLS handshake fails otherwise.
    pub const TLS_HANDSHAKE: u16 = 3;
    /// Written, and no complete answer within the relay timeout: maybe delivered.
    pub const TIMEOUT: u16 = 4;
    /// Written, and the answer was malformed or too large: maybe delivered.
    pub const BAD_RESPONSE: u16 = 5;
    /// Sent by the data plane on a connection that closed (or a data plane that went away)
    /// before the send could be completed: maybe delivered.
    pub const STALE: u16 = 6;
    /// Sent by the data plane, but not as the control plane would have written it; the control
    /// plane closed the connection instead of writing anything: maybe delivered.
    pub const MISMATCH: u16 = 7;
    /// Not sent: the lane refused it (the control plane stopping, every connection down, or
    /// its queue full).
    pub const NOT_SENT: u16 = 8;
    /// Written, then the control plane stopped before the answer came: maybe delivered.
    pub const CONTROL_STOPPED: u16 = 9;

    /// The words for a code.
    pub fn describe(code: u16) -> &'static str {
        match code {
            CONNECT => "not sent: cannot connect to the relay",
            TLS_UNTRUSTED => "not sent: TLS handshake failed: the relay's certificate is not trusted",
            TLS_HANDSHAKE => "not sent: TLS handshake failed",
            TIMEOUT => "sent, no answer in time (maybe delivered)",
            BAD_RESPONSE => "sent, the answer was malformed or too large (maybe delivered)",
            STALE => "sent by the data plane on a connection that closed before it was confirmed (maybe delivered)",
            MISMATCH => "sent by the data plane, but not as the control plane would have; connection closed (maybe delivered)",
            NOT_SENT => "not sent: the relay lane refused it",
            CONTROL_STOPPED => "sent, the control plane stopped before the answer (maybe delivered)",
            _ => "sent, the connection failed before the answer (maybe delivered)",
        }
    }

    /// Whether a request that failed with `code` may have reached the relay.
    pub fn maybe_delivered(code: u16) -> bool {
        !matches!(code, CONNECT | TLS_UNTRUSTED | TLS_HANDSHAKE | NOT_SENT)
    }
}

/// The reasons of QUIC lanes' relay completions, above the HTTP statuses (a QUIC lane's
/// transactions are always sent by the data plane; [`RELAY_FAST`] is not set on them). Below
/// 100, [`relay_failure`] codes as for HTTP lanes (`CONNECT`, `TLS_UNTRUSTED`,
/// `TLS_HANDSHAKE`: the lane has no connection, not sent; `TIMEOUT`: no acknowledgement in
/// time; `NO_RESPONSE`: the connection failed with the stream unacknowledged; `NOT_SENT`: the
/// relay's stream limit or the lane's in-flight table is full).
pub mod quic_outcome {
    /// `Relayed`: the relay acknowledged every byte of the transaction's stream.
    pub const ACKED: u16 = 600;
    /// `Relayed` (the provider's accepted status) or `RelayError`: the relay's reply status
    /// `s`, as `REPLY + s` (`s` above 998: 999).
    pub const REPLY: u16 = 4000;
    /// `RelayError`, not sent: the relay refused the lane's authentication stream with answer
    /// `a` (one byte), as `AUTH_REFUSED + a`.
    pub const AUTH_REFUSED: u16 = 5000;
    /// `RelayError`, maybe delivered: the relay closed the connection with application code
    /// `c` while the transaction was in flight, as `CLOSED + c` (`c` above 998: 999).
    pub const CLOSED: u16 = 1000;
    /// `RelayError`, not sent: the lane's connection was closed by the relay with code `c`
    /// and is not back yet, as `REFUSED + c` (`c` above 998: 999).
    pub const REFUSED: u16 = 2000;
    /// `RelayError`, maybe delivered: the relay stopped the transaction's stream with code
    /// `c`, as `STOPPED + c` (`c` above 998: 999).
    pub const STOPPED: u16 = 3000;

    fn clamp(code: u64, max: u64) -> u16 {
        code.min(max) as u16
    }

    /// The reason for reply status `s`.
    pub fn reply(s: u16) -> u16 {
        REPLY + clamp(u64::from(s), 999)
    }

    /// The reason for a close with code `c` while the transaction was in flight.
    pub fn closed(c: u64) -> u16 {
        CLOSED + clamp(c, 999)
    }

    /// The reason for a transaction refused because the relay closed with code `c`.
    pub fn refused(c: u64) -> u16 {
        REFUSED + clamp(c, 999)
    }

    /// The reason for a stream the relay stopped with code `c`.
    pub fn stopped(c: u64) -> u16 {
        STOPPED + clamp(c, 999)
    }

    /// Whether `reason` is a QUIC lane's (as opposed to an HTTP status or a failure code).
    pub fn is_quic(reason: u16) -> bool {
        (ACKED..AUTH_REFUSED + 256).contains(&reason)
    }

    /// Words for a QUIC reason, with its code: `(what, code)`.
    pub fn describe(reason: u16) -> (&'static str, u16) {
        match reason {
            ACKED => ("acknowledged by the relay", 0),
            r if (REPLY..REPLY + 1000).contains(&r) => ("the relay replied with status", r - REPLY),
            r if (AUTH_REFUSED..AUTH_REFUSED + 256).contains(&r) => (
                "not sent: the relay refused the lane's authentication with answer",
                r - AUTH_REFUSED,
            ),
            r if (CLOSED..CLOSED + 1000).contains(&r) => (
                "sent, then the relay closed the connection (maybe delivered) with code",
                r - CLOSED,
            ),
            r if (REFUSED..REFUSED + 1000).contains(&r) => (
                "not sent: the relay closed the lane's connection with code",
                r - REFUSED,
            ),
            r if (STOPPED..STOPPED + 1000).contains(&r) => (
                "sent, then the relay stopped its stream (maybe delivered) with code",
                r - STOPPED,
            ),
            r => ("unknown QUIC reason", r),
        }
    }

    /// Whether a `RelayError` with this QUIC reason may have reached the relay.
    pub fn maybe_delivered(reason: u16) -> bool {
        !(REFUSED..REFUSED + 1000).contains(&reason)
            && !(AUTH_REFUSED..AUTH_REFUSED + 256).contains(&reason)
    }
}

/// Whether a `RelayError` reason says the transaction was certainly not sent (HTTP and QUIC
/// lanes alike): safe to send elsewhere.
pub fn not_sent(reason: u16) -> bool {
    if quic_outcome::is_quic(reason) {
        !quic_outcome::maybe_delivered(reason)
    } else {
        reason < 100 && !relay_failure::maybe_delivered(reason)
    }
}

/// Bit of a relay completion's `reason`: the data plane sent the request (the fast path).
pub const RELAY_FAST: u16 = 0x8000;

impl Status {
    /// Decodes a stored status byte.
    pub fn from_u8(v: u8) -> Option<Status> {
        match v {
            1 => Some(Status::Sent),
            2 => Some(Status::Rejected),
            3 => Some(Status::UnknownLane),
            4 => Some(Status::Dropped),
            5 => Some(Status::Relayed),
            6 => Some(Status::RelayError),
            7 => Some(Status::Landed),
            8 => Some(Status::Expired),
            _ => None,
        }
    }
}

/// Why a packet was dropped (the `reason` of a [`Status::Dropped`] completion).
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The NIC queue stayed full past the dataplane's send timeout.
    TxTimeout = 1,
    /// No mbuf could be allocated past the send timeout.
    NoMbuf = 2,
    /// The dataplane shut down before it could send.
    Shutdown = 3,
    /// The frame does not fit the port's MTU or the mbuf.
    TooLarge = 4,
    /// A relay lane's submission found no control plane running to send it.
    NoControlPlane = 5,
    /// The hand-off ring to the control plane was full.
    HandoffFull = 6,
}

impl DropReason {
    /// Decodes a stored reason.
    pub fn from_u16(v: u16) -> Option<DropReason> {
        match v {
            1 => Some(DropReason::TxTimeout),
            2 => Some(DropReason::NoMbuf),
            3 => Some(DropReason::Shutdown),
            4 => Some(DropReason::TooLarge),
            5 => Some(DropReason::NoControlPlane),
            6 => Some(DropReason::HandoffFull),
            _ => None,
        }
    }

    /// A short human-readable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TxTimeout => "NIC queue full past the send timeout",
            DropReason::NoMbuf => "no mbuf available past the send timeout",
            DropReason::Shutdown => "dataplane shut down",
            DropReason::TooLarge => "frame larger than the port allows",
            DropReason::NoControlPlane => {
                "no control plane running for relay lanes (start swqos control)"
            }
            DropReason::HandoffFull => "control plane hand-off ring full",
        }
    }
}

/// One completion record: the outcome of one (submission slot, lane).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The slot's tag.
    pub tag: u64,
    /// The slot's lease generation.
    pub lease_gen: u32,
    /// Lane id.
    pub lane: u8,
    /// A [`Status`] value.
    pub status: u8,
    /// Status-specific reason code (0 when sent).
    pub reason: u16,
    /// The slot's `submit_tsc`.
    pub submit_tsc: u64,
    /// Dataplane TSC when the outcome was decided (after `tx_burst` for sent packets).
    pub done_tsc: u64,
}

/// The lane ids set in a lane mask, lowest first.
pub fn lanes_of(mut mask: u64) -> impl Iterator<Item = u8> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let lane = mask.trailing_zeros() as u8;
        mask &= mask - 1;
        Some(lane)
    })
}

/// Which process is the data plane's one control plane, and its heartbeat: in the control
/// file's header (what the data plane trusts) and in the segment's (for clients to read).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ControlRole {
    /// Process id of the control plane (0: none).
    pid: AtomicU32,
    /// Landing feedback: the landing window in milliseconds (`[landing] expire_ms`), 0 when
    /// the control plane does not watch landings. Only the segment's copy is used.
    landing_ms: AtomicU32,
    /// `CLOCK_MONOTONIC` nanoseconds, refreshed by the control plane every few milliseconds.
    heartbeat_ns: AtomicU64,
}

impl ControlRole {
    /// Makes this process the control plane: takes the role when it is free or its holder is
    /// dead. `Err(pid)` names the live control plane that holds it.
    pub fn claim(&self) -> Result<(), u32> {
        let me = std::process::id();
        loop {
            let cur = self.pid.load(Ordering::Acquire);
            if cur == me {
                return Ok(());
            }
            if cur != 0 && crate::segment::pid_alive(cur) {
                return Err(cur);
            }
            if self
                .pid
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.beat();
                return Ok(());
            }
        }
    }

    /// Publishes the landing window (milliseconds, 0: landing feedback off).
    pub fn set_landing_ms(&self, ms: u32) {
        self.landing_ms.store(ms, Ordering::Release);
    }

    /// The landing window the control plane published (0: landing feedback off).
    pub fn landing_ms(&self) -> u32 {
        self.landing_ms.load(Ordering::Acquire)
    }

    /// Gives the role back (a clean exit).
    pub fn release(&self) {
        self.heartbeat_ns.store(0, Ordering::Release);
        self.landing_ms.store(0, Ordering::Release);
        let _ =
            self.pid
                .compare_exchange(std::process::id(), 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Refreshes the heartbeat.
    pub fn beat(&self) {
        self.heartbeat_ns
            .store(crate::time::monotonic_ns(), Ordering::Release);
    }

    /// Whether a process holds the role and its heartbeat is younger than `max_age_ns`.
    pub fn alive(&self, max_age_ns: u64) -> bool {
        let beat = self.heartbeat_ns.load(Ordering::Acquire);
        beat != 0
            && self.pid.load(Ordering::Relaxed) != 0
            && crate::time::monotonic_ns().saturating_sub(beat) <= max_age_ns
    }
}

/// Where everything is, computed identically by every process from four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Submit rings.
    pub n_rings: u32,
    /// Slots per ring.
    pub ring_slots: u32,
    /// Stats blocks.
    pub n_lcores: u32,
    /// Port stats blocks.
    pub n_ports: u32,
    /// Offset of the rings.
    pub rings_offset: usize,
    /// Bytes of one submit ring (control plus slots).
    pub ring_stride: usize,
    /// Offset of the completion rings.
    pub completions_offset: usize,
    /// Bytes of one completion ring.
    pub completion_stride: usize,
    /// Offset of the stats blocks.
    pub stats_offset: usize,
    /// Offset of the port stats blocks.
    pub ports_offset: usize,
    /// Total bytes.
    pub size: usize,
}

fn align_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

impl Layout {
    /// The layout for these parameters, or why they are out of range.
    pub fn new(
        n_rings: u32,
        ring_slots: u32,
        n_lcores: u32,
        n_ports: u32,
    ) -> Result<Layout, String> {
        if n_rings == 0 || n_rings as usize > MAX_RINGS {
            return Err(format!("rings must be 1..={MAX_RINGS}, not {n_rings}"));
        }
        if !ring_slots.is_power_of_two() || !(MIN_RING_SLOTS..=MAX_RING_SLOTS).contains(&ring_slots)
        {
            return Err(format!(
                "ring_slots must be a power of two in {MIN_RING_SLOTS}..={MAX_RING_SLOTS}, not {ring_slots}"
            ));
        }
        if n_lcores as usize > MAX_LCORES {
            return Err(format!("at most {MAX_LCORES} lcores, not {n_lcores}"));
        }
        if n_ports as usize > MAX_PORTS {
            return Err(format!("at most {MAX_PORTS} ports, not {n_ports}"));
        }
        let page = 4096;
        let rings_offset = align_up(size_of::<Header>(), page);
        let ring_stride = align_up(
            size_of::<RingControl>() + ring_slots as usize * size_of::<Slot>(),
            page,
        );
        let completions_offset = rings_offset + n_rings as usize * ring_stride;
        let completion_stride = align_up(
            size_of::<CompletionControl>()
                + Self::completion_capacity_of(ring_slots) * size_of::<Completion>(),
            page,
        );
        // Two completion rings per client: the dataplane's, then the control plane's (relay
        // lanes), so each has a single producer.
        let stats_offset = completions_offset + 2 * n_rings as usize * completion_stride;
        let ports_offset = stats_offset + n_lcores as usize * size_of::<LcoreStats>();
        let size = align_up(
            ports_offset + n_ports as usize * size_of::<PortStats>(),
            page,
        );
        Ok(Layout {
            n_rings,
            ring_slots,
            n_lcores,
            n_ports,
            rings_offset,
            ring_stride,
            completions_offset,
            completion_stride,
            stats_offset,
            ports_offset,
            size,
        })
    }

    fn completion_capacity_of(ring_slots: u32) -> usize {
        ring_slots as usize * COMPLETIONS_PER_SLOT
    }

    /// Completion records per completion ring.
    pub fn completion_capacity(&self) -> usize {
        Self::completion_capacity_of(self.ring_slots)
    }

    /// Offset of ring `i`'s control block; its slots follow it.
    pub fn ring(&self, i: usize) -> usize {
        self.rings_offset + i * self.ring_stride
    }

    /// Offset of slot 0 of ring `i`.
    pub fn slots(&self, i: usize) -> usize {
        self.ring(i) + size_of::<RingControl>()
    }

    /// Offset of completion ring `i`'s control block: `i < n_rings` are written by the
    /// dataplane, `n_rings + r` by the control plane for client ring `r`.
    pub fn completion_ring(&self, i: usize) -> usize {
        self.completions_offset + i * self.completion_stride
    }

    /// Offset of record 0 of completion ring `i`.
    pub fn completion_records(&self, i: usize) -> usize {
        self.completion_ring(i) + size_of::<CompletionControl>()
    }

    /// Offset of stats block `i`.
    pub fn stats(&self, i: usize) -> usize {
        self.stats_offset + i * size_of::<LcoreStats>()
    }

    /// Offset of port stats block `i`.
    pub fn port_stats(&self, i: usize) -> usize {
        self.ports_offset + i * size_of::<PortStats>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of};

    #[test]
    fn lanes_of_lists_set_bits_in_order() {
        assert_eq!(lanes_of(0).count(), 0);
        assert_eq!(lanes_of(0b1011).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(lanes_of(1 << 63).collect::<Vec<_>>(), [63]);
    }

    #[test]
    fn structures_have_the_documented_shape() {
        assert_eq!(size_of::<Slot>(), SLOT_HEADER_SIZE + SLOT_DATA_SIZE);
        assert_eq!(offset_of!(Slot, tx), SLOT_HEADER_SIZE);
        assert_eq!(size_of::<Completion>(), 32);
        assert_eq!(offset_of!(HandoffRecord, tx), 128);
        assert_eq!(size_of::<Session>(), 128);
        assert_eq!(size_of::<LaneInfo>(), 40);
        assert_eq!(align_of::<RingControl>(), 128);
        assert!(size_of::<Header>() <= 4096);
        assert_eq!(size_of::<PortStats>() % 128, 0);
        assert_eq!(size_of::<LcoreStats>() % 128, 0);
    }

    #[test]
    fn layout_offsets_do_not_overlap() {
        let l = Layout::new(4, 64, 3, 2).unwrap();
        assert!(l.slots(0) + 64 * size_of::<Slot>() <= l.ring(1));
        assert!(l.ring(3) + l.ring_stride <= l.completion_ring(0));
        assert!(l.completion_records(3) + l.completion_capacity() * 32 <= l.stats(0));
        assert!(l.stats(2) + size_of::<LcoreStats>() <= l.port_stats(0));
        assert!(l.port_stats(1) + size_of::<PortStats>() <= l.size);
        assert_eq!(l.port_stats(0) % 128, 0);
        assert_eq!(l.size % 4096, 0);
    }

    #[test]
    fn layout_rejects_bad_parameters() {
        assert!(Layout::new(0, 64, 1, 1).is_err());
        assert!(Layout::new(1, 100, 1, 1).is_err());
        assert!(Layout::new(1, 8, 1, 1).is_err());
        assert!(Layout::new(65, 64, 1, 1).is_err());
        assert!(Layout::new(1, 64, 33, 1).is_err());
        assert!(Layout::new(1, 64, 1, 33).is_err());
        assert!(Layout::new(1, 64, 1, 0).is_ok());
    }
}
