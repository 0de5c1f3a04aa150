//! The client library a trading app links: lease a ring, write signed transactions straight into
//! its slots, read completions back.
//!
//! ```no_run
//! # use swqos_shm::{Client, Event};
//! # use std::time::{Duration, Instant};
//! # let tx: Vec<u8> = vec![];
//! let mut client = Client::attach("/dev/shm/swqos/segment".as_ref())?;
//! let lanes = client.all_lanes();
//! client.submit(&tx, lanes, 1)?;
//! let submitted = Instant::now();
//! // One event per lane: its completion, or why none will come (a plane gone, the timeout).
//! while client.awaiting() > 0 {
//!     match client.poll_or_give_up(submitted, Duration::from_secs(10)) {
//!         Some(Event::Done(done)) => println!("{done:?}"),
//!         Some(Event::GaveUp { tag, lane, why }) => println!("{tag} lane {lane}: {why}"),
//!         None => std::hint::spin_loop(),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use swqos_wire::solana::{Transaction, TxError};

use crate::layout::{
    landing, lanes_of, quic_outcome, relay_failure, Completion, DropReason, LaneKind, RingControl,
    Slot, State, Status, MAX_TX_SIZE, RELAY_FAST, SLOT_WATCH_LANDING,
};
use crate::ring::{pack, unpack};
use crate::segment::{pid_alive, Segment, SegmentError, HEARTBEAT_TIMEOUT};
use crate::time::tsc;

/// Why a client could not attach.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The segment could not be used.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Every submit ring is leased to a live process.
    #[error("all {0} submit rings are leased to running clients (raise [shm] rings)")]
    NoFreeRing(u32),
}

/// Why a submission was not accepted. Nothing was written to the ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The bytes are not a valid signed transaction.
    #[error("{0}")]
    Invalid(TxError),
    /// The transaction does not fit a slot (only reachable through `submit_unchecked`); said
    /// in the words of [`TxError::Oversize`], as the data plane says it.
    #[error("{}", TxError::Oversize { len: *.0 })]
    TooLarge(usize),
    /// The lane mask names lanes the dataplane does not have.
    #[error("unknown lane id(s) in mask {0:#x}")]
    UnknownLane(u64),
    /// The lane mask is empty.
    #[error("no lanes selected")]
    NoLanes,
    /// No free slot, or not enough completion credit: read completions and try again.
    #[error("submit ring full")]
    Full,
    /// The dataplane is not accepting submissions.
    #[error("dataplane not accepting submissions (state {0:?})")]
    NotRunning(Option<State>),
}

/// A leased submit ring and its completion ring.
pub struct Client {
    seg: Segment,
    ring: usize,
    pid: u32,
    lease_gen: u32,
    slots: *mut Slot,
    mask: u32,
    capacity: u32,
    tail: u32,
    promised: u32,
    /// Heads of the two completion rings: the dataplane's and the control plane's (relay lanes).
    comp_heads: [u32; 2],
    lane_names: Vec<String>,
    lane_mask: u64,
    /// Lanes the control plane answers (relay lanes).
    relay_mask: u64,
    /// Completion records a predecessor on this ring was still owed at the lease (bounded by
    /// the completion ring's capacity), less those read since.
    inherited: u32,
    /// When the lease was taken, and the ring's tail then: the inherited debt is forgiven once
    /// the data plane has taken every slot up to that tail and [`INHERITED_GRACE`] has passed.
    leased_at: Instant,
    lease_tail: u32,
    /// This lease's submissions with lanes still to answer, oldest first (capacity reserved
    /// at the lease: there are never more entries than completion records owed).
    owed: VecDeque<OwedEntry>,
    /// Lanes still to answer over `owed`.
    owed_lanes: u32,
    /// Owed lanes given up on, still to be reported by [`Client::poll_or_give_up`].
    gave_up: VecDeque<(u64, u8, GiveUp)>,
    /// When the producers' liveness was last checked.
    last_check: Instant,
    /// Whether this client asks for landing answers ([`Client::set_watch_landing`]).
    watch_landing: bool,
    /// The longest landing window of a submission of this lease (landing answers are given
    /// up on this long after the caller's timeout).
    landing_window: Duration,
}

/// How long after its landing window a landing answer is still waited for (the control plane
/// answers when the window ends; this covers its polling interval and a slow RPC).
pub const LANDING_GRACE: Duration = Duration::from_secs(5);

/// How long a client that took over a dead client's ring keeps counting the completions its
/// predecessor was still owed against its own credit (longer than any relay request takes).
pub const INHERITED_GRACE: Duration = Duration::from_secs(15);

/// How often [`Client::poll_or_give_up`] looks at the data plane's and control plane's
/// heartbeats.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// One submission of this lease whose completions are not all in.
#[derive(Debug, Clone, Copy)]
struct OwedEntry {
    tag: u64,
    /// Lane bits still to answer.
    lanes: u64,
    /// The one answer of a submission with no lanes (lane `u8::MAX`) is still to come.
    no_lane: bool,
    /// The slot's `submit_tsc`: a landing answer names its submission by (tag, submit_tsc).
    submit_tsc: u64,
    /// A landing answer may still come ([`SLOT_WATCH_LANDING`] was set).
    landing: bool,
    /// A relay lane's completion came from the control plane: it got the hand-off, so the
    /// landing answer will come.
    handed: bool,
}

/// A (submission, lane) whose completion has not arrived: see [`Client::owed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// The submission's tag.
    pub tag: u64,
    /// The lane id (`u8::MAX` for a submission that named no lane, [`landing::LANE`] for its
    /// landing answer).
    pub lane: u8,
}

/// Why a client stopped waiting for a completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    /// The data plane stopped (its state, pid or heartbeat says so).
    #[error("no completion: data plane gone")]
    DataPlaneGone,
    /// The control plane, which answers relay lanes, stopped or its heartbeat went stale.
    #[error("no completion: control plane gone")]
    ControlPlaneGone,
    /// The caller's deadline passed first.
    #[error("no completion within {} s", .0.as_secs_f64())]
    Deadline(Duration),
}

/// What [`Client::poll_or_give_up`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A completion of this lease.
    Done(Completion),
    /// The client stopped waiting for this (submission, lane); a record that comes later is
    /// ignored, so every (submission, lane) gets exactly one event.
    GaveUp {
        /// The submission's tag.
        tag: u64,
        /// The lane id (`u8::MAX` for a submission that named no lane, [`landing::LANE`] for
        /// its landing answer).
        lane: u8,
        /// Why.
        why: GiveUp,
    },
}

// SAFETY: the client is the single producer of its leased ring; moving it to another thread
// moves that role with it. It is not `Sync`.
unsafe impl Send for Client {}

impl Client {
    /// Attaches to the segment at `path` and leases a free submit ring (or one whose lessee
    /// died; its published submissions are still sent, its completions are skipped).
    pub fn attach(path: &Path) -> Result<Client, ClientError> {
        let seg = Segment::attach(path)?;
        let pid = std::process::id();
        let n = seg.layout().n_rings;
        for ring in 0..n as usize {
            let ctl = seg.ring_control(ring);
            let owner = ctl.owner_pid.0.load(Ordering::Acquire);
            let free = owner == 0 || (owner != pid && !pid_alive(owner));
            if free
                && ctl
                    .owner_pid
                    .0
                    .compare_exchange(owner, pid, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Ok(Client::lease(seg, ring, pid));
            }
        }
        Err(ClientError::NoFreeRing(n))
    }

    /// Takes ring `ring` over from whoever held it before. Every control word the predecessor
    /// could write is untrusted: the tail is kept only when it is at most a ring ahead of the
    /// data plane's head, and the credit it promised is reconciled with the completion heads
    /// (at most a completion ring's worth still owed), so nothing it left can make
    /// [`Client::outstanding`] wrap or the ring look full forever.
    fn lease(seg: Segment, ring: usize, pid: u32) -> Client {
        let ctl = seg.ring_control(ring);
        let lease_gen = ctl.lease_gen.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        let capacity = seg.layout().completion_capacity() as u32;
        let slots_n = seg.layout().ring_slots;
        let (mut tail, promised) = unpack(ctl.tail.0.load(Ordering::Acquire));
        let head = ctl.head.0.load(Ordering::Acquire) as u32;
        if tail.wrapping_sub(head) > slots_n {
            tail = head; // behind the head or impossibly far ahead: start where the head is
        }
        let n = seg.layout().n_rings as usize;
        let comp_heads = [ring, n + ring].map(|i| {
            let c = seg.completion_control(i);
            let (h, t) = (
                c.head.0.load(Ordering::Acquire) as u32,
                c.tail.0.load(Ordering::Acquire) as u32,
            );
            // Start at the head: records still unread are the predecessor's and are skipped
            // (paying off the inherited debt). Out-of-range words: start at the tail.
            if t.wrapping_sub(h) <= capacity {
                h
            } else {
                t
            }
        });
        let read = comp_heads[0].wrapping_add(comp_heads[1]);
        let inherited = promised.wrapping_sub(read).min(capacity);
        let inherited = if promised.wrapping_sub(read) > u32::MAX / 2 {
            0
        } else {
            inherited
        };
        ctl.tail
            .0
            .store(pack(tail, read.wrapping_add(inherited)), Ordering::Release);
        let lanes = seg.lanes();
        let lane_mask = if lanes.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << lanes.len()) - 1
        };
        let relay_mask = lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.kind == LaneKind::Http as u8)
            .fold(0u64, |m, (i, _)| m | 1 << i);
        Client {
            slots: seg.slots(ring),
            mask: slots_n - 1,
            capacity,
            lane_names: lanes.iter().map(|l| l.name()).collect(),
            lane_mask,
            relay_mask,
            seg,
            ring,
            pid,
            lease_gen,
            tail,
            promised: read.wrapping_add(inherited),
            comp_heads,
            inherited,
            leased_at: Instant::now(),
            lease_tail: tail,
            owed: VecDeque::with_capacity(capacity as usize),
            owed_lanes: 0,
            gave_up: VecDeque::new(),
            last_check: Instant::now(),
            watch_landing: false,
            landing_window: Duration::ZERO,
        }
    }

    fn ctl(&self) -> &RingControl {
        self.seg.ring_control(self.ring)
    }

    /// Lane names by id.
    pub fn lane_names(&self) -> &[String] {
        &self.lane_names
    }

    /// The id of the lane called `name`.
    pub fn lane_id(&self, name: &str) -> Option<u8> {
        self.lane_names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u8)
    }

    /// A mask with every configured lane.
    pub fn all_lanes(&self) -> u64 {
        self.lane_mask
    }

    /// The leased ring's index.
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// The lease generation stamped in this client's slots and completions.
    pub fn lease_gen(&self) -> u32 {
        self.lease_gen
    }

    /// TSC ticks per second of the dataplane's clock (for converting completion latencies).
    pub fn tsc_hz(&self) -> u64 {
        self.seg.header().tsc_hz
    }

    /// The segment this client is attached to.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Asks for landing answers (off by default): while the control plane watches landings
    /// (`[landing]` in its config, [`Client::landing_window`]), each later submission with a
    /// relay lane that reaches the control plane gets one more completion after its lanes'
    /// ones: [`Status::Landed`] or [`Status::Expired`]. Only relay lanes' submissions are
    /// watched (the control plane never sees the others).
    pub fn set_watch_landing(&mut self, on: bool) {
        self.watch_landing = on;
    }

    /// The control plane's landing window when it watches landings (`[landing] expire_ms`),
    /// `None` when it does not (or no control plane runs).
    pub fn landing_window(&self) -> Option<Duration> {
        match self.seg.landing_ms() {
            0 => None,
            ms => Some(Duration::from_millis(ms as u64)),
        }
    }

    /// Whether a landing answer of submission `tag` may still come.
    pub fn landing_owed(&self, tag: u64) -> bool {
        self.owed.iter().any(|e| e.tag == tag && e.landing)
    }

    /// Completion records still owed to this client: one per lane of every submission of this
    /// lease not yet answered (or given up on), one per landing answer that may still come,
    /// plus what a dead predecessor on the same ring
    /// was still owed when this lease began (never more than the completion ring holds, and
    /// forgiven after [`INHERITED_GRACE`]). Never wraps, whatever the predecessor left behind.
    pub fn outstanding(&self) -> u32 {
        self.inherited + self.owed_lanes
    }

    /// Events [`Client::poll_or_give_up`] still has to return: one per (submission, lane) of
    /// this lease not yet answered, or given up on and not yet reported.
    pub fn awaiting(&self) -> usize {
        self.owed_lanes as usize + self.gave_up.len()
    }

    /// Every (submission, lane) of this lease whose completion has not arrived, oldest first.
    pub fn owed(&self) -> Vec<Owed> {
        let mut v = Vec::new();
        for e in &self.owed {
            v.extend(lanes_of(e.lanes).map(|lane| Owed { tag: e.tag, lane }));
            if e.no_lane {
                v.push(Owed {
                    tag: e.tag,
                    lane: u8::MAX,
                });
            }
            if e.landing {
                v.push(Owed {
                    tag: e.tag,
                    lane: landing::LANE,
                });
            }
        }
        v
    }

    /// Validates `tx` as a signed Solana transaction and submits it to the lanes in `lanes`
    /// (bit `i` = lane `i`) with `tag` echoed in its completions. One completion per lane follows.
    pub fn submit(&mut self, tx: &[u8], lanes: u64, tag: u64) -> Result<(), SubmitError> {
        Transaction::parse(tx).map_err(SubmitError::Invalid)?;
        if lanes == 0 {
            return Err(SubmitError::NoLanes);
        }
        if lanes & !self.lane_mask != 0 {
            return Err(SubmitError::UnknownLane(lanes & !self.lane_mask));
        }
        self.submit_unchecked(tx, lanes, tag)
    }

    /// Submits without validating the transaction or the lanes (the dataplane checks both and
    /// answers with `Rejected` / `UnknownLane` completions). Only the slot size is enforced.
    pub fn submit_unchecked(&mut self, tx: &[u8], lanes: u64, tag: u64) -> Result<(), SubmitError> {
        if tx.len() > MAX_TX_SIZE {
            return Err(SubmitError::TooLarge(tx.len()));
        }
        let state = self.seg.state();
        if state != Some(State::Running) {
            return Err(SubmitError::NotRunning(state));
        }
        let window = self.seg.landing_ms();
        let landing = self.watch_landing && window > 0 && lanes & self.relay_mask != 0;
        let owed = lanes.count_ones().max(1) + u32::from(landing);
        let head = self.ctl().head.0.load(Ordering::Acquire) as u32;
        if self.tail.wrapping_sub(head) > self.mask + 1 {
            // Not a state this client made (someone wrote a control word): continue from the
            // data plane's head; what was published in between is answered by the give-up.
            self.tail = head;
        }
        if self.inherited > 0 {
            self.forgive_inherited(head);
        }
        if self.tail.wrapping_sub(head) > self.mask
            || self.outstanding().wrapping_add(owed) > self.capacity
        {
            return Err(SubmitError::Full);
        }
        let idx = (self.tail & self.mask) as usize;
        let submit_tsc = tsc();
        // SAFETY: `idx` is within the ring and the slot is free (the dataplane's head is past
        // it); the dataplane reads it only after the release store of the tail below.
        unsafe {
            let s = self.slots.add(idx);
            (*s).tag = tag;
            (*s).lanes = lanes;
            (*s).lease_gen = self.lease_gen;
            (*s).tx_len = tx.len() as u16;
            (*s).flags = if landing { SLOT_WATCH_LANDING } else { 0 };
            std::ptr::copy_nonoverlapping(tx.as_ptr(), (*s).tx.as_mut_ptr(), tx.len());
            (*s).submit_tsc = submit_tsc;
        }
        if landing {
            let w = Duration::from_millis(window as u64);
            self.landing_window = self.landing_window.max(w);
        }
        self.tail = self.tail.wrapping_add(1);
        self.promised = self.promised.wrapping_add(owed);
        // Never reallocates: entries <= lanes owed <= capacity, reserved at the lease.
        self.owed.push_back(OwedEntry {
            tag,
            lanes,
            no_lane: lanes == 0,
            submit_tsc,
            landing,
            handed: false,
        });
        self.owed_lanes += owed;
        self.ctl()
            .tail
            .0
            .store(pack(self.tail, self.promised), Ordering::Release);
        Ok(())
    }

    /// Drops the debt inherited from a dead predecessor once the data plane has taken all of
    /// its slots and [`INHERITED_GRACE`] has passed: whatever it was owed is not coming.
    fn forgive_inherited(&mut self, head: u32) {
        let taken = head.wrapping_sub(self.lease_tail) <= self.mask + 1;
        if taken && self.leased_at.elapsed() > INHERITED_GRACE {
            self.inherited = 0;
        }
    }

    /// The next completion for this lease, if any, from the dataplane (UDP lanes, rejections,
    /// drops) or the control plane (relay lanes). Records left for a dead predecessor on the
    /// same ring, and records for nothing this lease still waits for, are skipped.
    pub fn poll(&mut self) -> Option<Completion> {
        self.poll_from(0).or_else(|| self.poll_from(1))
    }

    /// [`Client::poll`], and when nothing came, gives up on owed completions that cannot come
    /// any more, one event per (submission, lane): those of every lane when the data plane is
    /// gone, those of relay lanes when the control plane is gone (heartbeats older than
    /// [`HEARTBEAT_TIMEOUT`], checked every 100 ms), and all of them once `timeout` has passed
    /// since `since` (say, the last submission). Never blocks; `None` means nothing to report
    /// now (and, with [`Client::outstanding`]` == 0`, nothing owed).
    ///
    /// ```no_run
    /// # use swqos_shm::{Client, client::Event};
    /// # use std::time::{Duration, Instant};
    /// # let mut client = Client::attach("/dev/shm/swqos".as_ref())?;
    /// let last_submit = Instant::now();
    /// while client.awaiting() > 0 {
    ///     match client.poll_or_give_up(last_submit, Duration::from_secs(10)) {
    ///         Some(Event::Done(c)) => println!("{} lane {}: {:?}", c.tag, c.lane, c.outcome()),
    ///         Some(Event::GaveUp { tag, lane, why }) => println!("{tag} lane {lane}: {why}"),
    ///         None => std::hint::spin_loop(),
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_or_give_up(&mut self, since: Instant, timeout: Duration) -> Option<Event> {
        if let Some(c) = self.poll() {
            return Some(Event::Done(c));
        }
        if self.gave_up.is_empty() && self.owed_lanes > 0 {
            let now = Instant::now();
            let waited = now.saturating_duration_since(since);
            let landing_deadline = timeout + self.landing_window + LANDING_GRACE;
            if waited >= landing_deadline {
                self.give_up(u64::MAX, true, true, GiveUp::Deadline(landing_deadline));
            } else if waited >= timeout {
                self.give_up(u64::MAX, true, false, GiveUp::Deadline(timeout));
            } else if now.duration_since(self.last_check) >= LIVENESS_CHECK {
                self.last_check = now;
                if self.seg.check_running().is_err() {
                    self.give_up(u64::MAX, true, true, GiveUp::DataPlaneGone);
                } else if !self.seg.control_alive(HEARTBEAT_TIMEOUT.as_nanos() as u64) {
                    self.give_up(self.relay_mask, false, true, GiveUp::ControlPlaneGone);
                }
            }
        }
        self.gave_up
            .pop_front()
            .map(|(tag, lane, why)| Event::GaveUp { tag, lane, why })
    }

    /// Stops waiting for the owed lanes in `lanes` (the no-lane answers with `no_lane`, the
    /// landing answers with `landing`), queueing one [`Event::GaveUp`] for each.
    fn give_up(&mut self, lanes: u64, no_lane: bool, landing: bool, why: GiveUp) {
        for e in &mut self.owed {
            for lane in lanes_of(e.lanes & lanes) {
                self.gave_up.push_back((e.tag, lane, why.clone()));
            }
            if e.no_lane && no_lane {
                self.gave_up.push_back((e.tag, u8::MAX, why.clone()));
            }
            if e.landing && landing {
                self.gave_up.push_back((e.tag, landing::LANE, why.clone()));
            }
            let n = (e.lanes & lanes).count_ones()
                + u32::from(e.no_lane && no_lane)
                + u32::from(e.landing && landing);
            self.owed_lanes -= n;
            e.lanes &= !lanes;
            e.no_lane &= !no_lane;
            e.landing &= !landing;
        }
        self.pop_answered();
    }

    fn pop_answered(&mut self) {
        while self.owed.front().is_some_and(OwedEntry::done) {
            self.owed.pop_front();
        }
    }

    /// Marks what completion `c` answers (a lane, or the landing answer) answered; `false` if
    /// this lease does not wait for it. `from_control`: it came from the control plane's ring.
    /// Finished entries are removed at once, wherever they are, so there are never more
    /// entries than records owed (and the deque never grows past the capacity reserved at the
    /// lease).
    fn answered(&mut self, c: &Completion, from_control: bool) -> bool {
        let (tag, lane) = (c.tag, c.lane);
        let is_landing = c.is_landing();
        let bit = if lane < 64 { 1u64 << lane } else { 0 };
        let found = self.owed.iter().position(|e| {
            e.tag == tag
                && if is_landing {
                    e.landing && e.submit_tsc == c.submit_tsc
                } else {
                    e.lanes & bit != 0 || (lane == u8::MAX && e.no_lane)
                }
        });
        let Some(i) = found else {
            return false;
        };
        let relay_mask = self.relay_mask;
        let e = &mut self.owed[i];
        if is_landing {
            e.landing = false;
        } else if lane == u8::MAX {
            e.no_lane = false;
        } else {
            e.lanes &= !bit;
            e.handed |= from_control && bit & relay_mask != 0;
        }
        self.owed_lanes -= 1;
        if e.landing && !e.handed && e.lanes & relay_mask == 0 {
            // Every relay lane was answered by the data plane (rejected, dropped): the control
            // plane never saw the submission, no landing answer comes.
            e.landing = false;
            self.owed_lanes -= 1;
        }
        if e.done() {
            self.owed.remove(i);
        }
        true
    }

    fn poll_from(&mut self, which: usize) -> Option<Completion> {
        let index = self.ring + which * self.seg.layout().n_rings as usize;
        loop {
            let ctl = self.seg.completion_control(index);
            let head = self.comp_heads[which];
            let tail = ctl.tail.0.load(Ordering::Acquire) as u32;
            if tail == head {
                return None;
            }
            if tail.wrapping_sub(head) > self.capacity {
                // Not a producer's value (a predecessor wrote the word): skip to it.
                self.comp_heads[which] = tail;
                ctl.head.0.store(tail as u64, Ordering::Release);
                return None;
            }
            let idx = (head % self.capacity) as usize;
            // SAFETY: `idx < capacity` and the record was published by its producer's release
            // store of the tail acquired above; it is not rewritten before we advance the head.
            let c = unsafe { std::ptr::read_volatile(self.seg.completion_records(index).add(idx)) };
            self.comp_heads[which] = head.wrapping_add(1);
            ctl.head
                .0
                .store(self.comp_heads[which] as u64, Ordering::Release);
            if c.lease_gen != self.lease_gen {
                self.inherited = self.inherited.saturating_sub(1);
            } else if self.answered(&c, which == 1) {
                return Some(c);
            }
        }
    }
}

impl OwedEntry {
    /// Nothing more to come for it.
    fn done(&self) -> bool {
        self.lanes == 0 && !self.no_lane && !self.landing
    }
}

impl Completion {
    /// Whether this is a landing answer ([`Status::Landed`] or [`Status::Expired`]).
    pub fn is_landing(&self) -> bool {
        matches!(
            Status::from_u8(self.status),
            Some(Status::Landed | Status::Expired)
        )
    }

    /// The slot a [`Status::Landed`] transaction landed in (`None` for other records).
    pub fn slot(&self) -> Option<u64> {
        (Status::from_u8(self.status) == Some(Status::Landed)).then_some(self.done_tsc)
    }

    /// For a [`Status::Landed`] record: whether the transaction landed with an error (it
    /// failed on chain; the control plane logs the error).
    pub fn landed_with_error(&self) -> bool {
        Status::from_u8(self.status) == Some(Status::Landed)
            && self.reason & landing::WITH_ERROR != 0
    }

    /// How the transaction left: `"fast"` when the data plane sent it (UDP lanes, and relay
    /// lanes' delegated sends), `"fallback"` when the control plane's kernel socket did, `None`
    /// when it did not leave.
    pub fn path(&self) -> Option<&'static str> {
        match Status::from_u8(self.status) {
            Some(Status::Sent) => Some("fast"),
            // A QUIC lane's transaction is the data plane's own send, unless it never left.
            Some(Status::Relayed) | Some(Status::RelayError)
                if quic_outcome::is_quic(self.reason) =>
            {
                quic_outcome::maybe_delivered(self.reason).then_some("fast")
            }
            // A relay request that never left has no path.
            Some(Status::RelayError)
                if self.reason & !RELAY_FAST < 100
                    && !relay_failure::maybe_delivered(self.reason & !RELAY_FAST) =>
            {
                None
            }
            Some(Status::Relayed) | Some(Status::RelayError) if self.reason & RELAY_FAST != 0 => {
                Some("fast")
            }
            Some(Status::Relayed) | Some(Status::RelayError) => Some("fallback"),
            _ => None,
        }
    }

    /// What the record says: `Ok` when the transaction left on its lane (sent by the dataplane,
    /// or accepted by a relay), otherwise why not, in words.
    pub fn outcome(&self) -> Result<(), String> {
        match Status::from_u8(self.status) {
            Some(Status::Sent) | Some(Status::Relayed) => Ok(()),
            Some(Status::Rejected) => Err(TxError::from_code(self.reason)
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("rejected (code {})", self.reason))),
            Some(Status::UnknownLane) => Err("unknown lane".into()),
            Some(Status::Dropped) => Err(format!(
                "dropped: {}",
                DropReason::from_u16(self.reason).map_or("unknown reason", DropReason::as_str)
            )),
            Some(Status::RelayError) if quic_outcome::is_quic(self.reason) => {
                let (what, code) = quic_outcome::describe(self.reason);
                Err(format!("relay error: {what} {code}"))
            }
            Some(Status::RelayError) if self.reason & !RELAY_FAST < 100 => Err(format!(
                "relay error: {} (see swqos control's log)",
                relay_failure::describe(self.reason & !RELAY_FAST)
            )),
            Some(Status::RelayError) => {
                Err(format!("relay error: HTTP {}", self.reason & !RELAY_FAST))
            }
            Some(Status::Landed) if self.landed_with_error() => Err(format!(
                "landed in slot {} with an error (see swqos control's log)",
                self.done_tsc
            )),
            Some(Status::Landed) => Ok(()),
            Some(Status::Expired) if self.reason == landing::CONTROL_STOPPED => {
                Err("landing unknown: the control plane stopped before it could tell".into())
            }
            Some(Status::Expired) => {
                Err("expired: not seen on chain within the landing window".into())
            }
            None => Err(format!("unknown completion status {}", self.status)),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Give the ring back; submissions already published are still sent.
        let _ = self.ctl().owner_pid.0.compare_exchange(
            self.pid,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}
