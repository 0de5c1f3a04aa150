//! The control plane's side of the session table: which relay connections the data plane may
//! send on (delegated sends). The protocol itself (states, transitions, key publication) is
//! `swqos_shm::sessions`; this type keeps what the control plane must remember across
//! data-plane restarts and calls it for its connection threads.
//!
//! Each pool connection has a fixed entry (its global index). The segment may come and go (a
//! data plane restart): the board remembers every live connection's addresses and opens them
//! again in each new segment. Every attach starts a new *epoch*; a delegated send is verified
//! against the (epoch, generation) of the connection it names, so a record from a segment or a
//! connection that is gone is never taken for the current one.

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard};

use swqos_shm::layout::MAX_SESSIONS;
use swqos_shm::sessions::{Take, TlsWriteRef};
use swqos_shm::ControlSegment;

/// A TLS connection's write state, published when it is armed.
pub(crate) type TlsTx<'a> = TlsWriteRef<'a>;

/// A connection as registered.
#[derive(Debug, Clone, Copy)]
struct Registered {
    lane: u8,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// The entry's generation in the attached segment (0 while none is attached).
    generation: u32,
}

#[derive(Default)]
struct Inner {
    seg: Option<Arc<ControlSegment>>,
    /// Bumped by every attach.
    epoch: u64,
    /// Config lane ids (bits) whose request templates match the data plane's.
    fast_lanes: u64,
    entries: Vec<Option<Registered>>,
}

/// Where a delegated send must be completed: the attach epoch and the connection generation
/// it was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionId {
    pub(crate) epoch: u64,
    pub(crate) generation: u32,
}

/// The session table as the control plane's connection threads use it.
#[derive(Default)]
pub(crate) struct SessionBoard {
    inner: Mutex<Inner>,
}

impl SessionBoard {
    /// A board for `n` connections (the config allows at most `MAX_SESSIONS`).
    pub(crate) fn new(n: usize) -> Arc<SessionBoard> {
        Arc::new(SessionBoard {
            inner: Mutex::new(Inner {
                entries: vec![None; n.min(MAX_SESSIONS)],
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches to another segment (or none), opening every live connection in it. Connections
    /// of lanes in `fast_lanes` (config lane id bits) are armed from now on; the others never.
    pub(crate) fn attach(&self, seg: Option<Arc<ControlSegment>>, fast_lanes: u64) {
        let mut inner = self.lock();
        if let Some(old) = &inner.seg {
            for i in 0..inner.entries.len() {
                old.session(i).close();
            }
        }
        inner.seg = seg;
        inner.epoch += 1;
        inner.fast_lanes = fast_lanes;
        let Some(new) = inner.seg.clone() else {
            return;
        };
        // Every entry first: a control plane that died (SIGKILL) may have left connections and
        // their keys there.
        for i in 0..MAX_SESSIONS {
            new.session(i).close();
        }
        for r in inner.entries.iter_mut().enumerate() {
            if let (i, Some(r)) = r {
                r.generation = new.session(i).open(r.lane, r.local, r.remote);
            }
        }
    }

    /// The current epoch (the attach a hand-off record was read under).
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Records connection `i`'s addresses; the entry is BUSY until the connection is idle.
    pub(crate) fn register(&self, i: usize, lane: u8, local: SocketAddrV4, remote: SocketAddrV4) {
        let mut inner = self.lock();
        let seg = inner.seg.clone();
        let Some(slot) = inner.entries.get_mut(i) else {
            return;
        };
        let generation = seg.map_or(0, |s| s.session(i).open(lane, local, remote));
        *slot = Some(Registered {
            lane,
            local,
            remote,
            generation,
        });
    }

    /// Connection `i` is gone.
    pub(crate) fn unregister(&self, i: usize) {
        let mut inner = self.lock();
        if let Some(slot) = inner.entries.get_mut(i) {
            *slot = None;
        }
        if let (Some(seg), true) = (&inner.seg, i < inner.entries.len()) {
            seg.session(i).close();
        }
    }

    /// The (epoch, generation) of connection `i` as it is now, if it is registered in an
    /// attached segment.
    pub(crate) fn current(&self, i: usize) -> Option<SessionId> {
        let inner = self.lock();
        inner.seg.as_ref()?;
        let r = inner.entries.get(i).copied().flatten()?;
        Some(SessionId {
            epoch: inner.epoch,
            generation: r.generation,
        })
    }

    /// Connection `i` is idle and fully answered: the data plane may claim it (when its lane's
    /// templates match). A TLS connection publishes its write keys and next sequence number
    /// with it; nothing else writes on the connection until it is taken back, so the data
    /// plane's records continue exactly that sequence.
    pub(crate) fn arm(&self, i: usize, tls: Option<TlsTx<'_>>) {
        let inner = self.lock();
        if let (Some(seg), Some(Some(r))) = (&inner.seg, inner.entries.get(i)) {
            if inner.fast_lanes & (1u64 << (r.lane & 63)) != 0 {
                seg.session(i).arm(tls);
            }
        }
    }

    /// Takes connection `i` back for a write of the control plane's own (a fallback request or
    /// a keep-alive). `false`: the data plane has claimed it, and the control plane must not
    /// write anything but the completion of that send.
    pub(crate) fn take(&self, i: usize) -> bool {
        let inner = self.lock();
        match (&inner.seg, i < inner.entries.len()) {
            (Some(seg), true) => seg.session(i).take() != Take::Claimed,
            _ => true,
        }
    }

    /// Whether the data plane has claimed connection `i`.
    pub(crate) fn claimed(&self, i: usize) -> bool {
        let inner = self.lock();
        match (&inner.seg, i < inner.entries.len()) {
            (Some(seg), true) => seg.session(i).is_claimed(),
            _ => false,
        }
    }

    /// The control plane has completed the data plane's send on connection `i`.
    pub(crate) fn finish_claim(&self, i: usize) {
        let inner = self.lock();
        if let (Some(seg), true) = (&inner.seg, i < inner.entries.len()) {
            seg.session(i).finish_claim();
        }
    }
}
