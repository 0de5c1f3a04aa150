//! The two single-producer single-consumer rings of each client: submissions (client ->
//! dataplane) and completions (dataplane -> client).
//!
//! Counters are 32-bit and wrap; distances are `wrapping_sub`s, valid while under 2^31.
//! The submit ring's producer word packs `tail` with `promised` (completion records owed for
//! everything published), so a single release store publishes a slot and its promise together.
//! The client never publishes a slot unless its completion ring has room for every record owed:
//! the dataplane therefore never waits on a client, and a client that ignores this rule loses only
//! its own completion records (counted), never a packet.
//!
//! The dataplane treats everything a client wrote as untrusted: each slot is copied out once
//! before it is parsed; a tail that runs more than a ring ahead of the head is "corrupt" and the
//! head skips forward to it; a tail behind the head (a backwards or torn store) is "corrupt" and
//! ignored -- the head never moves back, so no slot is ever taken twice; slot lengths are
//! clamped.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::control_segment::ControlSegment;
use crate::layout::{
    Completion, CompletionControl, HandoffRecord, RingControl, Slot, HANDOFF_SLOTS, MAX_TX_SIZE,
};
use crate::segment::Segment;
use crate::sessions::DelegatedSend;

/// Splits a producer word into (tail, promised).
#[inline]
pub(crate) fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// Joins (tail, promised) into a producer word.
#[inline]
pub(crate) fn pack(tail: u32, promised: u32) -> u64 {
    (promised as u64) << 32 | tail as u64
}

/// A submission as the dataplane sees it: header fields and transaction bytes copied out of the
/// slot once, into memory the client cannot reach. Everything after the copy (validation,
/// frames, the relay hand-off) reads only the copy, so a client rewriting its slot meanwhile
/// changes nothing the data plane does.
#[derive(Debug, Clone, Copy)]
pub struct SlotRef<'a> {
    /// The client's tag.
    pub tag: u64,
    /// Lane mask.
    pub lanes: u64,
    /// Client's TSC at submit (untrusted: statistics bound it, see `StatsWriter::latency_since`).
    pub submit_tsc: u64,
    /// Lease generation.
    pub lease_gen: u32,
    /// Length the client claimed (may exceed [`MAX_TX_SIZE`] if the client misbehaves).
    pub tx_len: u16,
    /// The slot's flags ([`crate::layout::SLOT_WATCH_LANDING`]), untrusted, passed on to the
    /// control plane with the hand-off.
    pub flags: u16,
    /// The transaction, `tx_len` bytes clamped to [`MAX_TX_SIZE`], in the consumer's own memory.
    pub tx: &'a [u8],
}

/// The dataplane's end of one submit ring.
pub struct SubmitConsumer {
    seg: Arc<Segment>,
    ring: usize,
    mask: u32,
    slots: *const Slot,
    /// Next slot to take; only ever moves forward.
    head: u32,
    /// The producer's tail as last accepted (`head..tail` are ready).
    tail: u32,
    /// The producer's tail word as last read, to count each bad value once.
    seen: u32,
    /// The private copy of the slot being handled (allocated once, here).
    copy: Box<[u8; MAX_TX_SIZE]>,
}

// SAFETY: the consumer is the only reader of its ring's slots in this process (claimed once in
// `Segment::claim_ring`), and the segment it points into is kept alive by the `Arc`.
unsafe impl Send for SubmitConsumer {}

/// The ring's producer moved its tail to an impossible place: behind the head (nothing is
/// taken; the head never moves back, so no slot is sent twice) or more than a ring ahead (the
/// head jumps forward to it; the slots in between cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCorrupt;

impl SubmitConsumer {
    /// Takes ring `i` of `seg`; `None` if this process already took it.
    pub fn new(seg: Arc<Segment>, i: usize) -> Option<SubmitConsumer> {
        if i >= seg.layout().n_rings as usize || !seg.claim_ring(i) {
            return None;
        }
        let ctl = seg.ring_control(i);
        let head = ctl.head.0.load(Ordering::Acquire) as u32;
        let slots = seg.slots(i);
        Some(SubmitConsumer {
            mask: seg.layout().ring_slots - 1,
            slots,
            ring: i,
            head,
            tail: head,
            seen: head,
            copy: Box::new([0u8; MAX_TX_SIZE]),
            seg,
        })
    }

    fn ctl(&self) -> &RingControl {
        self.seg.ring_control(self.ring)
    }

    /// The ring's index.
    pub fn index(&self) -> usize {
        self.ring
    }

    /// Number of published slots not yet released; re-reads the producer's tail only when the
    /// cached one is used up (one shared-line read per batch, not per slot).
    ///
    /// `Err` (once per bad value the producer stores) when the tail is behind the head or more
    /// than a ring ahead of it; see [`RingCorrupt`].
    #[inline]
    pub fn ready(&mut self) -> Result<u32, RingCorrupt> {
        if self.head == self.tail {
            let (tail, _) = unpack(self.ctl().tail.0.load(Ordering::Acquire));
            let fresh = tail != self.seen;
            self.seen = tail;
            let ahead = tail.wrapping_sub(self.head);
            if ahead > self.mask + 1 {
                if ahead > u32::MAX / 2 {
                    // Behind the head: a backwards or torn store. Nothing new; never replay.
                    if !fresh {
                        return Ok(0);
                    }
                    // Say where the head really is (someone may have written the word), so
                    // the producer can resynchronise to it.
                    self.ctl().head.0.store(self.head as u64, Ordering::Release);
                    return Err(RingCorrupt);
                }
                // Impossibly far ahead: skip forward to it; the slots cannot be trusted.
                self.head = tail;
                self.tail = tail;
                self.ctl().head.0.store(tail as u64, Ordering::Release);
                return Err(RingCorrupt);
            }
            self.tail = tail;
        }
        Ok(self.tail.wrapping_sub(self.head))
    }

    /// The `k`-th ready slot (`k < ready()`), copied out of shared memory into this consumer's
    /// own buffer (valid until the next call).
    #[inline]
    pub fn slot(&mut self, k: u32) -> SlotRef<'_> {
        let idx = (self.head.wrapping_add(k) & self.mask) as usize;
        // SAFETY: `idx` is within the ring, so `s` points at a whole slot inside the mapping
        // (kept alive by the `Arc`). The client may write any value to it at any time (it is
        // untrusted and may ignore the protocol), so every field is read exactly once: header
        // fields with volatile reads, and the bytes with one copy of at most `MAX_TX_SIZE` bytes
        // (within the slot's `SLOT_DATA_SIZE` data) into `self.copy`, which no other process
        // can reach. Any value read is acceptable: lengths are clamped here, everything else is
        // validated on the copy, and nothing reads the slot again.
        let (tag, lanes, submit_tsc, lease_gen, tx_len, flags, n) = unsafe {
            let s = self.slots.add(idx);
            let tx_len = std::ptr::read_volatile(&(*s).tx_len);
            let n = (tx_len as usize).min(MAX_TX_SIZE);
            std::ptr::copy_nonoverlapping((*s).tx.as_ptr(), self.copy.as_mut_ptr(), n);
            (
                std::ptr::read_volatile(&(*s).tag),
                std::ptr::read_volatile(&(*s).lanes),
                std::ptr::read_volatile(&(*s).submit_tsc),
                std::ptr::read_volatile(&(*s).lease_gen),
                tx_len,
                std::ptr::read_volatile(&(*s).flags),
                n,
            )
        };
        SlotRef {
            tag,
            lanes,
            submit_tsc,
            lease_gen,
            tx_len,
            flags,
            tx: &self.copy[..n],
        }
    }

    /// Releases `n` slots back to the producer.
    #[inline]
    pub fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        self.ctl().head.0.store(self.head as u64, Ordering::Release);
    }
}

/// The dataplane's end of one completion ring.
pub struct CompletionProducer {
    seg: Arc<Segment>,
    ring: usize,
    records: *mut Completion,
    capacity: u32,
    tail: u32,
    head: u32,
    published: u32,
}

// SAFETY: one producer per completion ring: it is created only together with the ring's
// `SubmitConsumer` claim (see `Segment::claim_ring`), and the `Arc` keeps the mapping alive.
unsafe impl Send for CompletionProducer {}

impl CompletionProducer {
    /// The completion ring paired with a claimed submit ring (the dataplane's).
    pub fn new(consumer: &SubmitConsumer) -> CompletionProducer {
        CompletionProducer::at(consumer.seg.clone(), consumer.ring)
    }

    /// The relay completion ring of client ring `ring`, written by the control plane (the
    /// process that holds [`Segment::claim_control`]).
    pub fn relay(seg: Arc<Segment>, ring: usize) -> CompletionProducer {
        let n = seg.layout().n_rings as usize;
        CompletionProducer::at(seg, n + ring)
    }

    fn at(seg: Arc<Segment>, ring: usize) -> CompletionProducer {
        let tail = seg.completion_control(ring).tail.0.load(Ordering::Acquire) as u32;
        CompletionProducer {
            records: seg.completion_records(ring),
            capacity: seg.layout().completion_capacity() as u32,
            tail,
            head: tail,
            published: tail,
            ring,
            seg,
        }
    }

    fn ctl(&self) -> &CompletionControl {
        self.seg.completion_control(self.ring)
    }

    /// Writes a record (visible after [`CompletionProducer::publish`]); `false` if the client's
    /// ring is full, which only a client ignoring its credits can cause.
    #[inline]
    pub fn push(&mut self, c: Completion) -> bool {
        if self.tail.wrapping_sub(self.head) >= self.capacity {
            self.head = self.ctl().head.0.load(Ordering::Acquire) as u32;
            if self.tail.wrapping_sub(self.head) >= self.capacity {
                return false;
            }
        }
        let idx = (self.tail % self.capacity) as usize;
        // SAFETY: `idx < capacity`; the record is free (the client's head is past it) and is
        // published to the client only by the release store in `publish`.
        unsafe { std::ptr::write_volatile(self.records.add(idx), c) };
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Makes every pushed record visible to the client (one release store per batch).
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.tail {
            self.ctl().tail.0.store(self.tail as u64, Ordering::Release);
            self.published = self.tail;
        }
    }
}

/// A submission for relay lanes, as the control plane receives it from a TX lcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The client's submit ring (where its completions go).
    pub ring: u16,
    /// The relay lanes to send to.
    pub lanes: u64,
    /// The client's tag.
    pub tag: u64,
    /// The client's lease generation.
    pub lease_gen: u32,
    /// The client's TSC at submit.
    pub submit_tsc: u64,
    /// The validated transaction.
    pub tx: Vec<u8>,
    /// The send the data plane already made on one of the control plane's connections: the
    /// control plane completes it there (after checking it, see [`DelegatedSend::verify`]).
    /// `None`: the control plane sends.
    pub delegated: Option<DelegatedSend>,
    /// The slot's flags as the client wrote them ([`crate::layout::SLOT_WATCH_LANDING`]).
    pub flags: u16,
    /// The lane the completion is reported as, when it is not the record's lane: a QUIC lane
    /// falling back to this HTTP lane.
    pub report_as: Option<u8>,
}

/// A TX lcore's end of its hand-off ring (dataplane -> control plane).
pub struct HandoffProducer {
    seg: Arc<ControlSegment>,
    index: usize,
    records: *mut HandoffRecord,
    tail: u32,
    head: u32,
    published: u32,
}

// SAFETY: one producer per hand-off ring: the ring is indexed by the TX lcore's stats block,
// which `StatsWriter::new` hands out once; the `Arc` keeps the mapping alive.
unsafe impl Send for HandoffProducer {}

impl HandoffProducer {
    /// Hand-off ring `index` (the TX lcore's stats block index).
    pub fn new(seg: Arc<ControlSegment>, index: usize) -> HandoffProducer {
        let tail = seg.handoff_control(index).tail.0.load(Ordering::Acquire) as u32;
        HandoffProducer {
            records: seg.handoff_records(index),
            seg,
            index,
            tail,
            head: tail,
            published: tail,
        }
    }

    /// Whether at least `n` more records fit now.
    #[inline]
    pub fn has_room(&mut self, n: u32) -> bool {
        if self.tail.wrapping_sub(self.head) + n <= HANDOFF_SLOTS {
            return true;
        }
        self.head = self
            .seg
            .handoff_control(self.index)
            .head
            .0
            .load(Ordering::Acquire) as u32;
        self.tail.wrapping_sub(self.head) + n <= HANDOFF_SLOTS
    }

    /// Copies a submission for the relay lanes `lanes` into the ring (visible after
    /// [`HandoffProducer::publish`]); `delegated` is the send the data plane made, if it did.
    /// `false` if the ring is full.
    #[inline]
    pub fn push(
        &mut self,
        ring: usize,
        slot: &SlotRef<'_>,
        lanes: u64,
        delegated: Option<&DelegatedSend>,
    ) -> bool {
        self.write(ring, slot, lanes, delegated, slot.flags, 0)
    }

    /// Copies a submission of QUIC lane `quic_lane`, which could not send it, for its fallback
    /// HTTP lane `http_lane`: the control plane sends it there and reports the completion as
    /// `quic_lane`'s. The submission's landing watch stays with its own relay lanes (the client
    /// reserved none for this one). `false` if the ring is full.
    pub fn push_fallback(
        &mut self,
        ring: usize,
        slot: &SlotRef<'_>,
        http_lane: u8,
        quic_lane: u8,
    ) -> bool {
        let flags = slot.flags & !crate::layout::SLOT_WATCH_LANDING;
        let report_as = u16::from(quic_lane) + 1;
        self.write(ring, slot, 1 << http_lane, None, flags, report_as)
    }

    fn write(
        &mut self,
        ring: usize,
        slot: &SlotRef<'_>,
        lanes: u64,
        delegated: Option<&DelegatedSend>,
        flags: u16,
        report_as: u16,
    ) -> bool {
        let cap = HANDOFF_SLOTS;
        if self.tail.wrapping_sub(self.head) >= cap {
            self.head = self
                .seg
                .handoff_control(self.index)
                .head
                .0
                .load(Ordering::Acquire) as u32;
            if self.tail.wrapping_sub(self.head) >= cap {
                return false;
            }
        }
        let idx = (self.tail % cap) as usize;
        let n = slot.tx.len().min(MAX_TX_SIZE);
        // SAFETY: `idx < cap`; the record is free (the control plane's head is past it) and is
        // published only by the release store in `publish`.
        unsafe {
            let r = self.records.add(idx);
            (*r).tag = slot.tag;
            (*r).lanes = lanes;
            (*r).submit_tsc = slot.submit_tsc;
            (*r).lease_gen = slot.lease_gen;
            (*r).tx_len = n as u16;
            (*r).ring = ring as u16;
            (*r).has_delegated = u32::from(delegated.is_some());
            (*r).flags = flags;
            (*r).report_as = report_as;
            (*r).delegated = delegated.copied().unwrap_or_default();
            std::ptr::copy_nonoverlapping(slot.tx.as_ptr(), (*r).tx.as_mut_ptr(), n);
        }
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Makes every pushed record visible to the control plane.
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.tail {
            self.seg
                .handoff_control(self.index)
                .tail
                .0
                .store(self.tail as u64, Ordering::Release);
            self.published = self.tail;
        }
    }
}

/// The control plane's end of one hand-off ring.
pub struct HandoffConsumer {
    seg: Arc<ControlSegment>,
    index: usize,
    head: u32,
}

impl HandoffConsumer {
    /// Hand-off ring `index`; the caller must hold the control-plane role
    /// ([`ControlSegment::claim_control`]) so it is the only consumer.
    pub fn new(seg: Arc<ControlSegment>, index: usize) -> HandoffConsumer {
        let head = seg.handoff_control(index).head.0.load(Ordering::Acquire) as u32;
        HandoffConsumer { seg, index, head }
    }

    /// The next submission, if any.
    pub fn pop(&mut self) -> Option<Handoff> {
        let ctl = self.seg.handoff_control(self.index);
        let tail = ctl.tail.0.load(Ordering::Acquire) as u32;
        if tail == self.head {
            return None;
        }
        let idx = (self.head % HANDOFF_SLOTS) as usize;
        // SAFETY: `idx` is within the ring; the record was published by the producer's release
        // store acquired above and is not rewritten before the head moves past it.
        let h = unsafe {
            let r = self.seg.handoff_records(self.index).add(idx);
            let n = (std::ptr::read_volatile(&(*r).tx_len) as usize).min(MAX_TX_SIZE);
            let delegated = std::ptr::read_volatile(&(*r).has_delegated) != 0;
            Handoff {
                delegated: delegated.then(|| std::ptr::read_volatile(&(*r).delegated)),
                flags: std::ptr::read_volatile(&(*r).flags),
                report_as: match std::ptr::read_volatile(&(*r).report_as) {
                    0 => None,
                    n => u8::try_from(n - 1).ok(),
                },
                ring: std::ptr::read_volatile(&(*r).ring),
                lanes: std::ptr::read_volatile(&(*r).lanes),
                tag: std::ptr::read_volatile(&(*r).tag),
                lease_gen: std::ptr::read_volatile(&(*r).lease_gen),
                submit_tsc: std::ptr::read_volatile(&(*r).submit_tsc),
                tx: std::slice::from_raw_parts((*r).tx.as_ptr(), n).to_vec(),
            }
        };
        self.head = self.head.wrapping_add(1);
        ctl.head.0.store(self.head as u64, Ordering::Release);
        Some(h)
    }
}
