//! The client library a trading app links: lease a ring, write signed transactions straight into
//! its slots, read completions back.
//!
//! ```no_run
//! # use swqos_shm::Client;
//! # let tx: Vec<u8> = vec![];
//! let mut client = Client::attach("/dev/shm/swqos/segment".as_ref())?;
//! let lanes = client.all_lanes();
//! client.submit(&tx, lanes, 1)?;
//! while client.outstanding() > 0 {
//!     if let Some(done) = client.poll() {
//!         println!("{done:?}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::sync::atomic::Ordering;

use swqos_wire::solana::{Transaction, TxError};

use crate::layout::{
    relay_failure, Completion, DropReason, RingControl, Slot, State, Status, MAX_TX_SIZE,
    RELAY_FAST,
};
use crate::ring::{pack, unpack};
use crate::segment::{pid_alive, Segment, SegmentError};
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
    /// The transaction does not fit a slot (only reachable through `submit_unchecked`).
    #[error("larger than {MAX_TX_SIZE} bytes ({0})")]
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

    fn lease(seg: Segment, ring: usize, pid: u32) -> Client {
        let ctl = seg.ring_control(ring);
        let lease_gen = ctl.lease_gen.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        let (tail, promised) = unpack(ctl.tail.0.load(Ordering::Acquire));
        let n = seg.layout().n_rings as usize;
        let comp_heads = [ring, n + ring]
            .map(|i| seg.completion_control(i).head.0.load(Ordering::Acquire) as u32);
        let lanes = seg.lanes();
        let lane_mask = if lanes.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << lanes.len()) - 1
        };
        Client {
            slots: seg.slots(ring),
            mask: seg.layout().ring_slots - 1,
            capacity: seg.layout().completion_capacity() as u32,
            lane_names: lanes.iter().map(|l| l.name()).collect(),
            lane_mask,
            seg,
            ring,
            pid,
            lease_gen,
            tail,
            promised,
            comp_heads,
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

    /// Completion records still owed to this client (across its lease, including those owed to
    /// a dead predecessor on the same ring).
    pub fn outstanding(&self) -> u32 {
        // Every completion ever owed on this ring, less every one read from either ring.
        self.promised
            .wrapping_sub(self.comp_heads[0].wrapping_add(self.comp_heads[1]))
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
        let owed = lanes.count_ones().max(1);
        let head = self.ctl().head.0.load(Ordering::Acquire) as u32;
        if self.tail.wrapping_sub(head) > self.mask
            || self.outstanding().wrapping_add(owed) > self.capacity
        {
            return Err(SubmitError::Full);
        }
        let idx = (self.tail & self.mask) as usize;
        // SAFETY: `idx` is within the ring and the slot is free (the dataplane's head is past
        // it); the dataplane reads it only after the release store of the tail below.
        unsafe {
            let s = self.slots.add(idx);
            (*s).tag = tag;
            (*s).lanes = lanes;
            (*s).lease_gen = self.lease_gen;
            (*s).tx_len = tx.len() as u16;
            (*s).flags = 0;
            std::ptr::copy_nonoverlapping(tx.as_ptr(), (*s).tx.as_mut_ptr(), tx.len());
            (*s).submit_tsc = tsc();
        }
        self.tail = self.tail.wrapping_add(1);
        self.promised = self.promised.wrapping_add(owed);
        self.ctl()
            .tail
            .0
            .store(pack(self.tail, self.promised), Ordering::Release);
        Ok(())
    }

    /// The next completion for this lease, if any, from the dataplane (UDP lanes, rejections,
    /// drops) or the control plane (relay lanes). Records left for a dead predecessor on the
    /// same ring are skipped.
    pub fn poll(&mut self) -> Option<Completion> {
        self.poll_from(0).or_else(|| self.poll_from(1))
    }

    fn poll_from(&mut self, which: usize) -> Option<Completion> {
        let index = self.ring + which * self.seg.layout().n_rings as usize;
        let ctl = self.seg.completion_control(index);
        loop {
            let head = self.comp_heads[which];
            let tail = ctl.tail.0.load(Ordering::Acquire) as u32;
            if tail == head {
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
            if c.lease_gen == self.lease_gen {
                return Some(c);
            }
        }
    }
}

impl Completion {
    /// How the transaction left: `"fast"` when the data plane sent it (UDP lanes, and relay
    /// lanes' delegated sends), `"fallback"` when the control plane's kernel socket did, `None`
    /// when it did not leave.
    pub fn path(&self) -> Option<&'static str> {
        match Status::from_u8(self.status) {
            Some(Status::Sent) => Some("fast"),
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
                .map(|e| e.reason().to_string())
                .unwrap_or_else(|| format!("rejected (code {})", self.reason))),
            Some(Status::UnknownLane) => Err("unknown lane".into()),
            Some(Status::Dropped) => Err(format!(
                "dropped: {}",
                DropReason::from_u16(self.reason).map_or("unknown reason", DropReason::as_str)
            )),
            Some(Status::RelayError) if self.reason & !RELAY_FAST < 100 => Err(format!(
                "relay error: {} (see swqos control's log)",
                relay_failure::describe(self.reason & !RELAY_FAST)
            )),
            Some(Status::RelayError) => {
                Err(format!("relay error: HTTP {}", self.reason & !RELAY_FAST))
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
