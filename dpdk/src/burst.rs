//! Fixed-size burst batches and the RX/TX fast path.
//!
//! Bursts are arrays of raw `rte_mbuf*` (what `rte_eth_{rx,tx}_burst` take)
//! owned by the batch; no heap, lock or syscall per packet.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use dpdk_sys::rte_mbuf;

use crate::mbuf::Mbuf;
use crate::port::{RxQueue, TxQueue};

/// Up to `N` received mbufs (`N` <= 65535).
pub struct RxBurst<const N: usize> {
    ptrs: [*mut rte_mbuf; N],
    /// Next mbuf to hand out.
    head: usize,
    /// One past the last received mbuf; `ptrs[head..tail]` are owned.
    tail: usize,
}

// SAFETY: the batch exclusively owns its mbufs, and mbufs are Send.
unsafe impl<const N: usize> Send for RxBurst<N> {}

impl<const N: usize> RxBurst<N> {
    const CHECK: () = assert!(
        N > 0 && N <= u16::MAX as usize,
        "burst size must be 1..=65535"
    );

    /// An empty batch.
    pub fn new() -> Self {
        let () = Self::CHECK;
        RxBurst {
            ptrs: [ptr::null_mut(); N],
            head: 0,
            tail: 0,
        }
    }

    /// Mbufs not yet taken out.
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// No mbufs left.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Takes the next mbuf, in receive order.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.head == self.tail {
            return None;
        }
        let p = self.ptrs[self.head];
        self.head += 1;
        // SAFETY: ptrs[head..tail] are non-null mbufs from rx_burst, owned by
        // the batch; advancing `head` hands this one over.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    /// Iterates over (and takes) all mbufs; those left when the iterator is
    /// dropped are freed.
    pub fn drain(&mut self) -> RxDrain<'_, N> {
        RxDrain { burst: self }
    }

    /// Frees all remaining mbufs.
    pub fn clear(&mut self) {
        let n = self.tail - self.head;
        if n > 0 {
            // SAFETY: ptrs[head..tail] are owned mbufs, forgotten right after.
            unsafe {
                dpdk_sys::rte_pktmbuf_free_bulk(self.ptrs[self.head..].as_mut_ptr(), n as u32)
            };
        }
        self.head = 0;
        self.tail = 0;
    }

    /// Moves the owned range to the front so the tail has room.
    fn compact(&mut self) {
        if self.head > 0 {
            self.ptrs.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }
}

impl<const N: usize> Default for RxBurst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Drop for RxBurst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<const N: usize> fmt::Debug for RxBurst<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBurst")
            .field("len", &self.len())
            .field("cap", &N)
            .finish()
    }
}

/// Draining iterator from [`RxBurst::drain`].
#[derive(Debug)]
pub struct RxDrain<'a, const N: usize> {
    burst: &'a mut RxBurst<N>,
}

impl<const N: usize> Iterator for RxDrain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        self.burst.pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.burst.len(), Some(self.burst.len()))
    }
}

impl<const N: usize> ExactSizeIterator for RxDrain<'_, N> {}

impl<const N: usize> Drop for RxDrain<'_, N> {
    fn drop(&mut self) {
        self.burst.clear();
    }
}

impl RxQueue {
    /// Receives into the free space of `burst` (mbufs already in it are
    /// kept, in front). Returns how many were received.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut RxBurst<N>) -> usize {
        burst.compact();
        let room = N - burst.tail;
        if room == 0 {
            return 0;
        }
        // SAFETY: ptrs[tail..N] has `room` (<= u16::MAX) slots; this is the
        // only handle to (port, queue), so nobody else polls it.
        let n = unsafe {
            dpdk_sys::shim_eth_rx_burst(
                self.port,
                self.queue,
                burst.ptrs[burst.tail..].as_mut_ptr(),
                room as u16,
            )
        };
        let n = usize::from(n).min(room);
        burst.tail += n;
        n
    }
}

/// Up to `N` mbufs to send, each with a caller tag `T` reported back when
/// the driver accepts the mbuf (`N` <= 65535).
pub struct TxBurst<T: Copy, const N: usize> {
    ptrs: [*mut rte_mbuf; N],
    tags: [MaybeUninit<T>; N],
    /// `ptrs[..len]` and `tags[..len]` are owned/initialised.
    len: usize,
}

// SAFETY: the batch exclusively owns its mbufs (Send) and tags (T: Send).
unsafe impl<T: Copy + Send, const N: usize> Send for TxBurst<T, N> {}

impl<T: Copy, const N: usize> TxBurst<T, N> {
    const CHECK: () = assert!(
        N > 0 && N <= u16::MAX as usize,
        "burst size must be 1..=65535"
    );

    /// An empty batch.
    pub fn new() -> Self {
        let () = Self::CHECK;
        TxBurst {
            ptrs: [ptr::null_mut(); N],
            tags: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Queued mbufs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room left.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Capacity (`N`).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Queues `m` with `tag`; gives both back if the batch is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf, tag: T) -> Result<(), (Mbuf, T)> {
        if self.len == N {
            return Err((m, tag));
        }
        self.ptrs[self.len] = m.into_raw().as_ptr();
        self.tags[self.len] = MaybeUninit::new(tag);
        self.len += 1;
        Ok(())
    }

    /// Takes every queued (mbuf, tag) out, in order.
    pub fn drain(&mut self, mut f: impl FnMut(Mbuf, T)) {
        let len = std::mem::replace(&mut self.len, 0);
        // If `f` panics, the rest leak (not freed twice).
        for i in 0..len {
            // SAFETY: entries < len were owned/initialised and are handed out
            // exactly once (len already reset).
            let (m, tag) = unsafe {
                (
                    Mbuf::from_raw(NonNull::new_unchecked(self.ptrs[i])),
                    self.tags[i].assume_init(),
                )
            };
            f(m, tag);
        }
    }
}

impl<T: Copy, const N: usize> Default for TxBurst<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> Drop for TxBurst<T, N> {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: ptrs[..len] are owned mbufs, not used afterwards.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}

impl<T: Copy, const N: usize> fmt::Debug for TxBurst<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBurst")
            .field("len", &self.len)
            .field("cap", &N)
            .finish()
    }
}

impl TxQueue {
    /// Offers every queued mbuf to the driver (`rte_eth_tx_burst`). For each
    /// accepted one, in order, calls `on_sent(tag)`; the driver now owns it.
    /// Rejected ones stay queued, in order, at the front. Returns the number
    /// accepted.
    #[inline]
    pub fn tx_burst<T: Copy, const N: usize>(
        &mut self,
        burst: &mut TxBurst<T, N>,
        mut on_sent: impl FnMut(T),
    ) -> usize {
        let len = burst.len;
        if len == 0 {
            return 0;
        }
        // SAFETY: ptrs[..len] are owned mbufs (len <= N <= u16::MAX); this is
        // the only handle to (port, queue), so nobody else sends on it.
        let sent = unsafe {
            dpdk_sys::shim_eth_tx_burst(self.port, self.queue, burst.ptrs.as_mut_ptr(), len as u16)
        };
        let sent = usize::from(sent).min(len);
        // Update the batch before running caller code so a panicking
        // `on_sent` cannot make Drop free mbufs the driver now owns. The sent
        // tags are rotated behind the kept ones.
        burst.ptrs.copy_within(sent..len, 0);
        burst.tags[..len].rotate_left(sent);
        burst.len = len - sent;
        for slot in &burst.tags[burst.len..len] {
            // SAFETY: these were initialised tags (rotated, T: Copy).
            on_sent(unsafe { slot.assume_init() });
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bursts_need_no_dpdk() {
        let mut rx = RxBurst::<32>::new();
        assert!(rx.is_empty());
        assert!(rx.pop().is_none());
        assert_eq!(rx.drain().count(), 0);
        let tx = TxBurst::<u64, 4>::new();
        assert_eq!(tx.len(), 0);
        assert!(!tx.is_full());
        assert_eq!(tx.capacity(), 4);
    }
}
