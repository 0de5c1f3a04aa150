//! Owned packet buffers.

use std::fmt;
use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

/// One packet buffer (`rte_mbuf*`, possibly the head of a segment chain),
/// owned exclusively. Dropping it frees the whole chain back to its pool.
///
/// `Send` (it can be freed on any thread) but not `Sync`.
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: an Mbuf is exclusively owned (refcnt 1, never shared by this
// crate); freeing from another thread is allowed by the mempool.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of `raw`.
    ///
    /// # Safety
    /// `raw` must be a valid, direct mbuf with refcnt 1 that nobody else will
    /// use or free, from a pool that stays alive while any of its mbufs is
    /// in use (this crate's pools leak rather than free in that case).
    #[inline]
    pub(crate) unsafe fn from_raw(raw: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership without freeing.
    #[inline]
    pub(crate) fn into_raw(self) -> NonNull<rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    #[inline]
    fn ptr(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }

    /// Bytes in the first segment.
    #[inline]
    pub fn data_len(&self) -> u16 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::shim_pktmbuf_data_len(self.ptr()) }
    }

    /// Bytes in the whole chain.
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::shim_pktmbuf_pkt_len(self.ptr()) }
    }

    /// Number of segments in the chain.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::shim_pktmbuf_nb_segs(self.ptr()) }
    }

    /// Free space before the data in the first segment.
    #[inline]
    pub fn headroom(&self) -> u16 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::shim_pktmbuf_headroom(self.ptr()) }
    }

    /// Free space after the data in the last segment.
    #[inline]
    pub fn tailroom(&self) -> u16 {
        // SAFETY: we own a valid mbuf; tailroom of the last segment is what
        // append() uses.
        unsafe {
            let mut m = self.ptr();
            loop {
                let next = dpdk_sys::shim_pktmbuf_next(m);
                if next.is_null() {
                    break;
                }
                m = next;
            }
            dpdk_sys::shim_pktmbuf_tailroom(m)
        }
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf's
        // buffer, which we own and which lives as long as &self.
        unsafe {
            let p = dpdk_sys::shim_pktmbuf_mtod(self.ptr());
            std::slice::from_raw_parts(p.cast::<u8>(), usize::from(self.data_len()))
        }
    }

    /// The first segment's data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.data_len());
        // SAFETY: as in data(); &mut self gives exclusive access and the
        // buffer is not shared (refcnt 1, direct mbuf).
        unsafe {
            let p = dpdk_sys::shim_pktmbuf_mtod(self.ptr());
            std::slice::from_raw_parts_mut(p.cast::<u8>(), len)
        }
    }

    /// Grows the packet by `len` bytes at the end (of the last segment) and
    /// returns them, or `None` if there is not enough tailroom. The new bytes
    /// are whatever was in the buffer: overwrite them.
    #[inline]
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: we own the mbuf; on success the returned pointer addresses
        // `len` bytes inside the last segment's buffer, exclusively ours for
        // the lifetime of &mut self. The bytes are plain u8 (any value valid;
        // the buffer memory was initialised by the pool constructor).
        unsafe {
            let p = dpdk_sys::shim_pktmbuf_append(self.ptr(), len);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), len.into()))
        }
    }

    /// Grows the packet by `len` bytes at the front and returns them, or
    /// `None` if there is not enough headroom.
    #[inline]
    pub fn prepend(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: as in append(), for the first segment's headroom.
        unsafe {
            let p = dpdk_sys::shim_pktmbuf_prepend(self.ptr(), len);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), len.into()))
        }
    }

    /// Removes `len` bytes from the front. False if the first segment is
    /// shorter.
    #[inline]
    pub fn adj(&mut self, len: u16) -> bool {
        // SAFETY: we own the mbuf; DPDK checks the length.
        unsafe { !dpdk_sys::shim_pktmbuf_adj(self.ptr(), len).is_null() }
    }

    /// Removes `len` bytes from the end. False if the last segment is
    /// shorter.
    #[inline]
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: we own the mbuf; DPDK checks the length.
        unsafe { dpdk_sys::shim_pktmbuf_trim(self.ptr(), len) == 0 }
    }

    /// Appends `tail` as further segment(s). Gives `tail` back if the chain
    /// would exceed DPDK's segment limit. Sending chains needs
    /// [`crate::offload::TX_MULTI_SEGS`].
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), Mbuf> {
        // SAFETY: both are valid, exclusively owned and distinct (two Mbufs
        // never alias). On success `tail` is owned by our chain, so it must
        // not be freed separately.
        let ret = unsafe { dpdk_sys::shim_pktmbuf_chain(self.ptr(), tail.ptr()) };
        if ret == 0 {
            let _ = tail.into_raw();
            Ok(())
        } else {
            Err(tail)
        }
    }

    /// The mbuf's `ol_flags` (RX checksum results, TX requests, ...).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::shim_mbuf_ol_flags(self.ptr()) }
    }

    /// Requests TX offloads: replaces the TX bits of `ol_flags` with
    /// `ol_flags` (non-TX bits of the argument are ignored; see
    /// [`crate::offload`] for `TX_*` flags) and sets the header lengths the
    /// NIC needs (`l2_len` < 128, `l3_len` < 512).
    #[inline]
    pub fn set_tx_offload(&mut self, ol_flags: u64, l2_len: u8, l3_len: u16, l4_len: u8) {
        debug_assert!(l2_len < 128 && l3_len < 512, "l2_len/l3_len out of range");
        // SAFETY: we own the mbuf; the shim masks flags to TX bits only so
        // the mbuf's ownership flags (EXTERNAL, INDIRECT) cannot change.
        unsafe { dpdk_sys::shim_mbuf_set_tx_offload(self.ptr(), ol_flags, l2_len, l3_len, l4_len) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chain) and nobody uses it after.
        unsafe { dpdk_sys::shim_pktmbuf_free(self.ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("pkt_len", &self.pkt_len())
            .field("data_len", &self.data_len())
            .field("nb_segs", &self.nb_segs())
            .finish()
    }
}
