//! Submit signed Solana transactions to a running swqos data plane over shared memory, and learn
//! what each lane did with them.
//!
//! A thin layer over [`swqos_shm::Client`] (the ring protocol) for bots:
//!
//! - lanes by name: [`LaneSet::from_names`] takes the names of the data plane's `[[lane]]`
//!   table and says which are unknown (listing the known ones);
//! - [`Client::submit`] raw transaction bytes (validated first), or with the `solana` feature
//!   [`Client::submit_transaction`] a `solana_transaction::versioned::VersionedTransaction`;
//! - each lane's outcome: [`Client::completions`] (a blocking iterator), [`Client::wait_all`],
//!   [`Client::wait_first_success`]; with the `async` feature the same as a
//!   `futures::Stream` ([`Client::completion_stream`]) and futures
//!   ([`Client::wait_all_async`], [`Client::wait_first_success_async`]) for tokio bots.
//!
//! Every lane answers exactly once per submission: sent (and how), failed (why), or no answer
//! (the data plane or control plane went away, or the client's timeout passed;
//! [`Client::set_timeout`], default 10 s). Waiting polls the completion rings with a short
//! backoff (spinning briefly, then sleeping up to 1 ms), never a 100% busy loop.
//!
//! ```no_run
//! use swqos_client::{Client, LaneSet};
//!
//! # fn signed_transaction() -> Vec<u8> { Vec::new() }
//! let mut client = Client::attach("/dev/shm/swqos/segment")?;
//! let lanes = LaneSet::from_names(&client, ["jito", "helius"])?;
//! let tx: Vec<u8> = signed_transaction();
//! let submission = client.submit(&tx, &lanes)?;
//! match client.wait_first_success(&submission) {
//!     Ok(first) => println!("left on {} ({})", first.name, first.path().unwrap_or("?")),
//!     Err(all) => println!("sent nowhere: {all}"),
//! }
//! # Ok::<(), swqos_client::Error>(())
//! ```
//!
//! The client is one process's lease of one submit ring: it is `Send`, not `Sync`; keep one per
//! thread (or task) that submits. Dropping it gives the ring back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use swqos_shm::layout::landing;
pub use swqos_shm::{Completion, GiveUp, SubmitError};

/// Submissions whose unread outcomes are kept (the oldest are dropped beyond this).
pub const MAX_BUFFERED_SUBMISSIONS: usize = 4096;

/// Default of [`Client::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The segment could not be attached (no data plane, no free ring, permissions).
    #[error("cannot attach to the swqos segment: {0}")]
    Attach(#[from] swqos_shm::ClientError),
    /// Lane names the data plane does not have.
    #[error("unknown lane(s) {}; the data plane's lanes are {}", list(.unknown), list(.known))]
    UnknownLanes {
        /// The names not found.
        unknown: Vec<String>,
        /// Every lane the data plane has, by id.
        known: Vec<String>,
    },
    /// An empty lane set.
    #[error("no lanes named")]
    NoLanes,
    /// The submission was not accepted; nothing was written to the ring.
    #[error("not submitted: {0}")]
    Submit(#[from] SubmitError),
    /// The transaction could not be serialized (feature `solana`).
    #[error("cannot serialize the transaction: {0}")]
    Serialize(String),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A set of the data plane's lanes, resolved from names once and reused for every submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSet {
    mask: u64,
    names: Vec<String>,
}

impl LaneSet {
    /// The lanes called `names` in the data plane's lane table (its config's `[[lane]]` names).
    /// Unknown names are an error that lists the known lanes; an empty list is an error.
    ///
    /// ```no_run
    /// # use swqos_client::{Client, LaneSet};
    /// # let client = Client::attach("/dev/shm/swqos/segment")?;
    /// let lanes = LaneSet::from_names(&client, ["jito", "helius"])?;
    /// assert_eq!(lanes.len(), 2);
    /// # Ok::<(), swqos_client::Error>(())
    /// ```
    pub fn from_names<I, S>(client: &Client, names: I) -> Result<LaneSet, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut mask = 0u64;
        let mut unknown = Vec::new();
        for name in names {
            let name = name.as_ref();
            match client.shm.lane_id(name) {
                Some(id) => mask |= 1 << id,
                None => unknown.push(name.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::UnknownLanes {
                unknown,
                known: client.lane_names().to_vec(),
            });
        }
        if mask == 0 {
            return Err(Error::NoLanes);
        }
        Ok(LaneSet::of_mask(client, mask))
    }

    fn of_mask(client: &Client, mask: u64) -> LaneSet {
        let names = client
            .lane_names()
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| n.clone())
            .collect();
        LaneSet { mask, names }
    }

    /// The lane mask (bit `i` = lane id `i`).
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// The lanes' names, by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many lanes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none (never, for a set made by [`LaneSet::from_names`]).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One accepted submission: its tag and the lanes that will each answer once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The tag echoed in its completion records.
    pub tag: u64,
    /// The lanes it went to.
    pub lanes: LaneSet,
    /// When it was submitted.
    pub at: Instant,
}

/// What one lane did with a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It left: `path` is `"fast"` (the data plane sent it) or `"fallback"` (the control
    /// plane's kernel socket did, relay lanes).
    Sent {
        /// `"fast"` or `"fallback"`.
        path: &'static str,
    },
    /// It did not leave on this lane (or, for a relay that took the request and did not
    /// answer, may have: the reason says so).
    Failed(String),
    /// No record came: the data plane or the control plane went away, or the timeout passed.
    NoAnswer(GiveUp),
}

/// One lane's answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneOutcome {
    /// The submission's tag.
    pub tag: u64,
    /// The lane id.
    pub lane: u8,
    /// The lane's name.
    pub name: String,
    /// What it did.
    pub outcome: Outcome,
    /// The completion record, when one came.
    pub completion: Option<Completion>,
    /// From [`Client::submit`] to this answer being read.
    pub elapsed: Duration,
}

impl LaneOutcome {
    /// Whether the transaction left on this lane.
    pub fn is_sent(&self) -> bool {
        matches!(self.outcome, Outcome::Sent { .. })
    }

    /// `"fast"` or `"fallback"` when sent.
    pub fn path(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Sent { path } => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for LaneOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Sent { path } => write!(f, "{}: sent ({path})", self.name),
            Outcome::Failed(why) => write!(f, "{}: failed: {why}", self.name),
            Outcome::NoAnswer(why) => write!(f, "{}: {why}", self.name),
        }
    }
}

/// Whether a submission landed on chain ([`Client::wait_landed`]): landing feedback, when the
/// control plane watches landings (`[landing]` in its config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// On chain at the control plane's commitment.
    Landed {
        /// The slot it landed in.
        slot: u64,
        /// The lane credited with landing it: the relay lane whose relay accepted it first
        /// (`None` when no relay lane accepted it; it may have landed through a UDP lane).
        lane: Option<String>,
        /// It landed with an error: the transaction failed on chain (the control plane logs
        /// the error).
        with_error: bool,
        /// From [`Client::submit`] to this answer being read.
        elapsed: Duration,
    },
    /// Not seen on chain within the control plane's landing window (or the control plane
    /// stopped before it could tell; the text says which).
    Expired(String),
    /// No landing answer came: the control plane or data plane went away, or the timeout
    /// (plus the landing window) passed.
    NoAnswer(GiveUp),
    /// The submission is not watched: landing feedback is off, the submission has no relay
    /// lane (only relay lanes' submissions reach the control plane), or it never reached the
    /// control plane (rejected or dropped by the data plane).
    NotWatched,
}

impl fmt::Display for Landing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Landing::Landed {
                slot,
                lane,
                with_error,
                elapsed,
            } => write!(
                f,
                "landed in slot {slot}{} after {:.3} s, credited to {}",
                if *with_error { " WITH AN ERROR" } else { "" },
                elapsed.as_secs_f64(),
                lane.as_deref().unwrap_or("no relay lane")
            ),
            Landing::Expired(why) => f.write_str(why),
            Landing::NoAnswer(why) => write!(f, "landing unknown: {why}"),
            Landing::NotWatched => f.write_str("landing not watched"),
        }
    }
}

/// Every lane's outcome when none sent the transaction ([`Client::wait_first_success`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sent on no lane: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct AllFailed(pub Vec<LaneOutcome>);

/// A leased submit ring of the data plane at a segment path.
pub struct Client {
    shm: swqos_shm::Client,
    next_tag: u64,
    timeout: Duration,
    /// Outcomes read and not yet taken, by tag (tags only grow, so the first is the oldest).
    unread: BTreeMap<u64, Vec<LaneOutcome>>,
    /// Submissions with lanes whose outcome has not been taken by a reader: tag -> (when
    /// submitted, those lanes).
    submitted: BTreeMap<u64, (Instant, u64)>,
    /// When the last submission was made (the timeout counts from it).
    last_submit: Instant,
    /// Landing answers read and not yet taken, by tag.
    landings: BTreeMap<u64, Landing>,
    /// Submissions whose landing answer may come: tag -> when submitted.
    landing_at: BTreeMap<u64, Instant>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("ring", &self.shm.ring())
            .field("lanes", &self.shm.lane_names())
            .field("awaiting", &self.shm.awaiting())
            .finish()
    }
}

impl Client {
    /// Attaches to the data plane's segment at `path` (its config's `[shm] path`) and leases
    /// a submit ring.
    pub fn attach(path: impl AsRef<Path>) -> Result<Client, Error> {
        let shm = swqos_shm::Client::attach(path.as_ref())?;
        Ok(Client::from_shm(shm))
    }

    /// Wraps an attached [`swqos_shm::Client`].
    pub fn from_shm(mut shm: swqos_shm::Client) -> Client {
        shm.set_watch_landing(true);
        Client {
            landings: BTreeMap::new(),
            landing_at: BTreeMap::new(),
            shm,
            next_tag: 1,
            timeout: DEFAULT_TIMEOUT,
            unread: BTreeMap::new(),
            submitted: BTreeMap::new(),
            last_submit: Instant::now(),
        }
    }

    /// The data plane's lane names, by id.
    pub fn lane_names(&self) -> &[String] {
        self.shm.lane_names()
    }

    /// Every lane of the data plane.
    pub fn all_lanes(&self) -> LaneSet {
        LaneSet::of_mask(self, self.shm.all_lanes())
    }

    /// How long after the last submission the client stops waiting for a lane's record and
    /// answers [`Outcome::NoAnswer`] (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Whether to ask for landing answers (on by default; they cost one completion record per
    /// submission with a relay lane while the control plane watches landings).
    pub fn set_watch_landing(&mut self, on: bool) {
        self.shm.set_watch_landing(on);
    }

    /// The control plane's landing window when it watches landings, `None` when it does not.
    pub fn landing_window(&self) -> Option<Duration> {
        self.shm.landing_window()
    }

    /// Whether `s` landed on chain: blocks until the control plane's landing answer for it
    /// comes (after its relay lanes' completions; at most the landing window after it reached
    /// the control plane), or [`Landing::NotWatched`] at once when none will come. Lane
    /// outcomes read meanwhile stay readable with [`Client::completions`].
    pub fn wait_landed(&mut self, s: &Submission) -> Landing {
        let mut backoff = Backoff::default();
        loop {
            if let Some(l) = self.landings.remove(&s.tag) {
                return l;
            }
            let mut any = false;
            while self.pump() {
                any = true;
            }
            if let Some(l) = self.landings.remove(&s.tag) {
                return l;
            }
            if !self.shm.landing_owed(s.tag) {
                self.landing_at.remove(&s.tag);
                return Landing::NotWatched;
            }
            if any {
                backoff.reset();
            }
            backoff.wait();
        }
    }

    /// The underlying ring client.
    pub fn shm(&self) -> &swqos_shm::Client {
        &self.shm
    }

    /// Submits a signed transaction (its wire bytes, validated first) to `lanes`; each lane
    /// answers once (read them with [`Client::completions`] and friends). Nothing is written
    /// when it is refused ([`SubmitError::Full`]: read completions and try again).
    pub fn submit(&mut self, tx: &[u8], lanes: &LaneSet) -> Result<Submission, Error> {
        if lanes.mask == 0 {
            return Err(Error::NoLanes);
        }
        let tag = self.next_tag;
        self.shm.submit(tx, lanes.mask, tag)?;
        self.next_tag += 1;
        let at = Instant::now();
        self.last_submit = at;
        self.submitted.insert(tag, (at, lanes.mask));
        if self.shm.landing_owed(tag) {
            self.landing_at.insert(tag, at);
            while self.landing_at.len() > MAX_BUFFERED_SUBMISSIONS {
                self.landing_at.pop_first();
            }
        }
        Ok(Submission {
            tag,
            lanes: lanes.clone(),
            at,
        })
    }

    /// Serializes `tx` with bincode (Solana's wire format) and [`Client::submit`]s it.
    #[cfg(feature = "solana")]
    pub fn submit_transaction(
        &mut self,
        tx: &solana_transaction::versioned::VersionedTransaction,
        lanes: &LaneSet,
    ) -> Result<Submission, Error> {
        let bytes = bincode::serialize(tx).map_err(|e| Error::Serialize(e.to_string()))?;
        self.submit(&bytes, lanes)
    }

    /// Reads what the rings have now (never blocks); `true` when something came.
    fn pump(&mut self) -> bool {
        let Some(event) = self.shm.poll_or_give_up(self.last_submit, self.timeout) else {
            return false;
        };
        let (tag, lane, outcome, completion) = match event {
            swqos_shm::Event::Done(c) if c.is_landing() => {
                self.landed(c);
                return true;
            }
            swqos_shm::Event::GaveUp { tag, lane, why } if lane == landing::LANE => {
                if self.landing_at.remove(&tag).is_some() {
                    self.landings.insert(tag, Landing::NoAnswer(why));
                }
                return true;
            }
            swqos_shm::Event::Done(c) => {
                let outcome = match (c.outcome(), c.path()) {
                    (Ok(()), path) => Outcome::Sent {
                        path: path.unwrap_or("fast"),
                    },
                    (Err(why), _) => Outcome::Failed(why),
                };
                (c.tag, c.lane, outcome, Some(c))
            }
            swqos_shm::Event::GaveUp { tag, lane, why } => {
                (tag, lane, Outcome::NoAnswer(why), None)
            }
        };
        let Some((at, _)) = self.submitted.get(&tag).copied() else {
            return true; // not one of ours (a raw submission through `shm()`)
        };
        let name = self
            .shm
            .lane_names()
            .get(lane as usize)
            .cloned()
            .unwrap_or_else(|| format!("lane {lane}"));
        self.unread.entry(tag).or_default().push(LaneOutcome {
            tag,
            lane,
            name,
            outcome,
            completion,
            elapsed: at.elapsed(),
        });
        while self.unread.len() > MAX_BUFFERED_SUBMISSIONS {
            self.unread.pop_first();
        }
        true
    }

    /// Keeps a landing record for [`Client::wait_landed`].
    fn landed(&mut self, c: Completion) {
        let Some(at) = self.landing_at.remove(&c.tag) else {
            return;
        };
        let landing = match c.slot() {
            Some(slot) => Landing::Landed {
                slot,
                lane: self.shm.lane_names().get(c.lane as usize).cloned(),
                with_error: c.landed_with_error(),
                elapsed: at.elapsed(),
            },
            None => Landing::Expired(c.outcome().err().unwrap_or_default()),
        };
        self.landings.insert(c.tag, landing);
        while self.landings.len() > MAX_BUFFERED_SUBMISSIONS {
            self.landings.pop_first();
        }
    }

    /// Lanes of `s` whose outcome has not been taken yet.
    fn untaken(&self, s: &Submission) -> u64 {
        self.submitted.get(&s.tag).map_or(0, |(_, m)| *m)
    }

    /// The next unread outcome of `s`, if one has been read from the rings.
    fn take(&mut self, s: &Submission) -> Option<LaneOutcome> {
        let list = self.unread.get_mut(&s.tag)?;
        let o = list.remove(0);
        if list.is_empty() {
            self.unread.remove(&s.tag);
        }
        if let Some((_, untaken)) = self.submitted.get_mut(&s.tag) {
            *untaken &= !(1 << o.lane);
            if *untaken == 0 {
                self.submitted.remove(&s.tag);
            }
        }
        Some(o)
    }

    /// One step of waiting for `s`: an outcome, `None` when every lane's outcome has been
    /// taken, or `Some(Err(()))` when nothing is there yet.
    fn step(&mut self, s: &Submission) -> Option<Result<LaneOutcome, ()>> {
        if let Some(o) = self.take(s) {
            return Some(Ok(o));
        }
        if self.untaken(s) == 0 {
            return None;
        }
        while self.pump() {
            if let Some(o) = self.take(s) {
                return Some(Ok(o));
            }
        }
        Some(Err(()))
    }

    /// `s`'s lanes' outcomes as they come, as a blocking iterator: one item per lane, then
    /// the end. Other submissions' outcomes read meanwhile are kept for their own readers.
    pub fn completions<'a>(&'a mut self, s: &Submission) -> Completions<'a> {
        Completions {
            submission: s.clone(),
            client: self,
            backoff: Backoff::default(),
        }
    }

    /// Every lane's outcome of `s` (blocks until each has answered or given up).
    pub fn wait_all(&mut self, s: &Submission) -> Vec<LaneOutcome> {
        self.completions(s).collect()
    }

    /// The first lane that sent `s` (returns as soon as one has; the other lanes' outcomes
    /// stay readable with [`Client::completions`]), or every lane's outcome when none did.
    pub fn wait_first_success(&mut self, s: &Submission) -> Result<LaneOutcome, AllFailed> {
        let mut failed = Vec::new();
        for o in self.completions(s) {
            if o.is_sent() {
                return Ok(o);
            }
            failed.push(o);
        }
        Err(AllFailed(failed))
    }
}

/// Sleeps between empty polls: spins a little, then sleeps from 20 us up to 1 ms.
#[derive(Debug, Default)]
struct Backoff {
    empty: u32,
}

impl Backoff {
    fn next_pause(&mut self) -> Option<Duration> {
        self.empty = self.empty.saturating_add(1);
        match self.empty {
            0..=64 => None,
            n => Some(Duration::from_micros(
                (20u64 << ((n - 64).min(6))).min(1_000),
            )),
        }
    }

    fn reset(&mut self) {
        self.empty = 0;
    }

    fn wait(&mut self) {
        match self.next_pause() {
            None => std::hint::spin_loop(),
            Some(d) => std::thread::sleep(d),
        }
    }
}

/// A submission's lanes' outcomes as they come ([`Client::completions`]).
#[derive(Debug)]
pub struct Completions<'a> {
    client: &'a mut Client,
    submission: Submission,
    backoff: Backoff,
}

impl Iterator for Completions<'_> {
    type Item = LaneOutcome;

    fn next(&mut self) -> Option<LaneOutcome> {
        loop {
            match self.client.step(&self.submission)? {
                Ok(o) => {
                    self.backoff.reset();
                    return Some(o);
                }
                Err(()) => self.backoff.wait(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.client.untaken(&self.submission).count_ones() as usize;
        (n, Some(n))
    }
}

#[cfg(feature = "async")]
mod asynchronous {
    use super::*;
    use futures_util::stream::{self, Stream};
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Gives other tasks a turn once (the async form of a spin).
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Client {
        /// The next outcome of `s` (`None` once every lane's has been taken), polling the
        /// rings with yields, then `tokio::time::sleep`, between empty polls.
        async fn next_async(&mut self, s: &Submission) -> Option<LaneOutcome> {
            let mut backoff = Backoff::default();
            loop {
                match self.step(s)? {
                    Ok(o) => return Some(o),
                    Err(()) => match backoff.next_pause() {
                        None => YieldOnce(false).await,
                        Some(d) => tokio::time::sleep(d).await,
                    },
                }
            }
        }

        /// `s`'s lanes' outcomes as a `futures::Stream`: one item per lane, then the end.
        /// Needs a tokio runtime with the timer enabled.
        ///
        /// ```no_run
        /// # async fn f(client: &mut swqos_client::Client, s: &swqos_client::Submission) {
        /// use futures_util::StreamExt;
        /// let mut outcomes = std::pin::pin!(client.completion_stream(s));
        /// while let Some(o) = outcomes.next().await {
        ///     println!("{o}");
        /// }
        /// # }
        /// ```
        pub fn completion_stream<'a>(
            &'a mut self,
            s: &Submission,
        ) -> impl Stream<Item = LaneOutcome> + 'a {
            stream::unfold((self, s.clone()), |(client, s)| async move {
                let o = client.next_async(&s).await?;
                Some((o, (client, s)))
            })
        }

        /// Every lane's outcome of `s`, awaited.
        pub async fn wait_all_async(&mut self, s: &Submission) -> Vec<LaneOutcome> {
            let mut all = Vec::new();
            while let Some(o) = self.next_async(s).await {
                all.push(o);
            }
            all
        }

        /// The first lane that sent `s`, awaited (the other lanes' outcomes stay readable), or
        /// every lane's outcome when none did.
        pub async fn wait_first_success_async(
            &mut self,
            s: &Submission,
        ) -> Result<LaneOutcome, AllFailed> {
            let mut failed = Vec::new();
            while let Some(o) = self.next_async(s).await {
                if o.is_sent() {
                    return Ok(o);
                }
                failed.push(o);
            }
            Err(AllFailed(failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_lanes_are_listed_with_the_known_ones() {
        let e = Error::UnknownLanes {
            unknown: vec!["jitto".into()],
            known: vec!["jito".into(), "helius".into()],
        };
        assert_eq!(
            e.to_string(),
            "unknown lane(s) `jitto`; the data plane's lanes are `jito`, `helius`"
        );
    }

    #[test]
    fn backoff_spins_then_sleeps_at_most_a_millisecond() {
        let mut b = Backoff::default();
        let pauses: Vec<Option<Duration>> = (0..200).map(|_| b.next_pause()).collect();
        assert!(pauses[..64].iter().all(Option::is_none));
        assert_eq!(pauses[64], Some(Duration::from_micros(40)));
        assert_eq!(pauses[199], Some(Duration::from_millis(1)));
        b.reset();
        assert_eq!(b.next_pause(), None);
    }
}
