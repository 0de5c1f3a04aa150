//! The control plane's side of the session table: which relay connections the data plane may
//! send on (delegated sends). See `swqos_shm::layout::session` for the states and who moves
//! them; this type does the control plane's moves for its connection threads.
//!
//! Each pool connection has a fixed entry (its global index). The segment may come and go (a
//! data plane restart): the board remembers every live connection's addresses and publishes
//! them again into each new segment.

use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use swqos_shm::layout::{session, Session, MAX_SESSIONS};
use swqos_shm::Segment;

/// A TLS connection's write state, published when it is armed.
#[derive(Clone, Copy)]
pub(crate) struct TlsTx<'a> {
    /// IANA cipher suite id.
    pub(crate) suite: u16,
    /// Write key (16 or 32 bytes).
    pub(crate) key: &'a [u8],
    /// Write iv.
    pub(crate) iv: &'a [u8; 12],
    /// Sequence number of the next record.
    pub(crate) seq: u64,
}

/// A connection as registered.
#[derive(Debug, Clone, Copy)]
struct Registered {
    lane: u8,
    local: SocketAddrV4,
    remote: SocketAddrV4,
}

#[derive(Default)]
struct Inner {
    seg: Option<Arc<Segment>>,
    entries: Vec<Option<Registered>>,
}

/// The session table as the control plane's connection threads use it.
#[derive(Default)]
pub(crate) struct SessionBoard {
    inner: Mutex<Inner>,
}

impl SessionBoard {
    /// A board for `n` connections (at most `MAX_SESSIONS` get an entry; the rest are never
    /// armed).
    pub(crate) fn new(n: usize) -> Arc<SessionBoard> {
        Arc::new(SessionBoard {
            inner: Mutex::new(Inner {
                seg: None,
                entries: vec![None; n.min(MAX_SESSIONS)],
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches to another segment (or none), publishing every live connection into it.
    pub(crate) fn attach(&self, seg: Option<Arc<Segment>>) {
        let mut inner = self.lock();
        if let Some(old) = &inner.seg {
            for i in 0..inner.entries.len() {
                release(old.session(i));
            }
        }
        inner.seg = seg;
        let Some(new) = &inner.seg else {
            return;
        };
        // Every entry first: a control plane that died (SIGKILL) may have left connections and
        // their keys there.
        for i in 0..MAX_SESSIONS {
            release(new.session(i));
        }
        for (i, r) in inner.entries.iter().enumerate() {
            if let Some(r) = r {
                publish(&inner, i, *r);
            }
        }
    }

    /// Records connection `i`'s addresses; the entry is BUSY until the connection is idle.
    pub(crate) fn register(&self, i: usize, lane: u8, local: SocketAddrV4, remote: SocketAddrV4) {
        let mut inner = self.lock();
        let Some(slot) = inner.entries.get_mut(i) else {
            return;
        };
        let r = Registered {
            lane,
            local,
            remote,
        };
        *slot = Some(r);
        publish(&inner, i, r);
    }

    /// Connection `i` is gone.
    pub(crate) fn unregister(&self, i: usize) {
        let mut inner = self.lock();
        if let Some(slot) = inner.entries.get_mut(i) {
            *slot = None;
        }
        if let (Some(seg), true) = (&inner.seg, i < inner.entries.len()) {
            release(seg.session(i));
        }
    }

    /// Connection `i` is idle and fully answered: the data plane may claim it. A TLS
    /// connection publishes its write keys and next sequence number with it; nothing else
    /// writes on the connection until it is taken back, so the data plane's records continue
    /// exactly that sequence.
    pub(crate) fn arm(&self, i: usize, tls: Option<TlsTx<'_>>) {
        let inner = self.lock();
        if let (Some(seg), Some(Some(_))) = (&inner.seg, inner.entries.get(i)) {
            let e = seg.session(i);
            // Only this thread moves an entry out of BUSY, so it stays BUSY (unread by the data
            // plane) while the fields change; the CAS below publishes them.
            if e.state.load(Ordering::Acquire) != session::BUSY {
                return;
            }
            match tls {
                Some(t) => e.store_tls(t.suite, t.key, t.iv, t.seq),
                None => e.clear_tls(),
            }
            let _ = e.state.compare_exchange(
                session::BUSY,
                session::ARMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Takes connection `i` back for a write of the control plane's own (a fallback request or
    /// a keep-alive). `false`: the data plane has claimed it, and the control plane must not
    /// write anything but the completion of that send.
    pub(crate) fn take(&self, i: usize) -> bool {
        let inner = self.lock();
        let Some(seg) = &inner.seg else {
            return true;
        };
        if i >= inner.entries.len() {
            return true;
        }
        let state = &seg.session(i).state;
        match state.compare_exchange(
            session::ARMED,
            session::BUSY,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(current) => current != session::CLAIMED,
        }
    }

    /// Whether the data plane has claimed connection `i`.
    pub(crate) fn claimed(&self, i: usize) -> bool {
        let inner = self.lock();
        match (&inner.seg, i < inner.entries.len()) {
            (Some(seg), true) => seg.session(i).state.load(Ordering::Acquire) == session::CLAIMED,
            _ => false,
        }
    }

    /// The data plane's claim of connection `i`: (bytes on the wire, plaintext per TLS record;
    /// 0 for plain TCP). Valid while the entry is CLAIMED.
    pub(crate) fn claim(&self, i: usize) -> Option<(u32, u32)> {
        let inner = self.lock();
        let seg = inner.seg.as_ref().filter(|_| i < inner.entries.len())?;
        let e = seg.session(i);
        (e.state.load(Ordering::Acquire) == session::CLAIMED).then(|| {
            (
                e.fast_len.load(Ordering::Relaxed),
                e.fast_record.load(Ordering::Relaxed),
            )
        })
    }

    /// The control plane has completed the data plane's send on connection `i`.
    pub(crate) fn finish_claim(&self, i: usize) {
        let inner = self.lock();
        if let (Some(seg), true) = (&inner.seg, i < inner.entries.len()) {
            let _ = seg.session(i).state.compare_exchange(
                session::CLAIMED,
                session::BUSY,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Frees an entry and zeroes its keys.
fn release(e: &Session) {
    e.state.store(session::FREE, Ordering::Release);
    e.clear_tls();
}

/// Writes entry `i` (BUSY, new generation, addresses) into the attached segment.
fn publish(inner: &Inner, i: usize, r: Registered) {
    let Some(seg) = &inner.seg else {
        return;
    };
    let e = seg.session(i);
    // Not claimable while the fields change.
    e.state.store(session::BUSY, Ordering::Release);
    e.generation.fetch_add(1, Ordering::AcqRel);
    e.lane.store(r.lane as u32, Ordering::Relaxed);
    e.clear_tls();
    e.local_ip
        .store(u32::from(*r.local.ip()), Ordering::Relaxed);
    e.remote_ip
        .store(u32::from(*r.remote.ip()), Ordering::Relaxed);
    e.ports.store(
        (r.local.port() as u32) << 16 | r.remote.port() as u32,
        Ordering::Release,
    );
}
