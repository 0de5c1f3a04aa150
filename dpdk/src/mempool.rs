//! Packet mbuf pools.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use arrayvec::ArrayVec;
use dpdk_sys::rte_mempool;

use crate::eal::{self, LiveToken};
use crate::error::{DpdkError, Result};
use crate::mbuf::Mbuf;

/// A pool of packet mbufs (`rte_pktmbuf_pool_create`).
///
/// A cheap handle: clones share the pool, which is freed when the last
/// handle drops and no mbuf of it is in use. If mbufs are still out (held by
/// [`Mbuf`]s or by a driver), the pool is leaked rather than freed under
/// them.
#[derive(Debug, Clone)]
pub struct Mempool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    raw: NonNull<rte_mempool>,
    name: String,
    size: u32,
    /// Keeps EAL from being cleaned up under the pool.
    live: Option<LiveToken>,
}

// SAFETY: the default mempool ops (ring_mp_mc) are safe for concurrent get
// and put from any thread; per-lcore caches are indexed by the caller's lcore
// id, and non-EAL threads bypass them.
unsafe impl Send for Inner {}
// SAFETY: as above; every &self method is a thread-safe DPDK call.
unsafe impl Sync for Inner {}

impl Mempool {
    /// Creates a pool of `n` mbufs with a per-lcore cache of `cache`, each
    /// with `data_room` bytes of buffer (headroom included; use
    /// [`Mempool::DEFAULT_DATA_ROOM`] for a standard 2 KiB + headroom),
    /// on NUMA `socket` (-1 for any). `name` must be unique.
    pub fn create(name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        const OP: &str = "rte_pktmbuf_pool_create";
        let running = eal::running(OP)?;
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new(OP, libc::EINVAL, "pool name contains NUL"))?;
        // SAFETY: EAL is running (guard held), cname is a valid C string.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket)
        };
        let raw = NonNull::new(raw).ok_or_else(|| DpdkError::last(OP))?;
        Ok(Mempool {
            inner: Arc::new(Inner {
                raw,
                name: name.to_owned(),
                size: n,
                live: Some(LiveToken::new(&running)),
            }),
        })
    }

    /// Default mbuf data room: 2048 bytes plus `RTE_PKTMBUF_HEADROOM`.
    pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::SHIM_RTE_MBUF_DEFAULT_BUF_SIZE;

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of mbufs the pool was created with.
    pub fn capacity(&self) -> u32 {
        self.inner.size
    }

    /// One mbuf, or `None` if the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive (we hold a handle).
        let m = unsafe { dpdk_sys::shim_pktmbuf_alloc(self.inner.raw.as_ptr()) };
        // SAFETY: a fresh mbuf, reset, refcnt 1, owned by nobody else.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Allocates exactly `n` mbufs into `out`, all or nothing. Returns false
    /// if `out` has no room for `n` or the pool has fewer than `n` free.
    #[inline]
    pub fn alloc_bulk<const N: usize>(&self, out: &mut ArrayVec<Mbuf, N>, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if n > out.remaining_capacity() {
            return false;
        }
        let mut ptrs = [std::ptr::null_mut(); N];
        // SAFETY: `ptrs` has room for n <= N pointers; the pool is alive.
        let ret = unsafe {
            dpdk_sys::shim_pktmbuf_alloc_bulk(self.inner.raw.as_ptr(), ptrs.as_mut_ptr(), n as u32)
        };
        if ret != 0 {
            return false;
        }
        for p in &ptrs[..n] {
            // SAFETY: alloc_bulk succeeded: n fresh non-null mbufs, each
            // owned only by us; capacity was checked above.
            unsafe { out.push_unchecked(Mbuf::from_raw(NonNull::new_unchecked(*p))) };
        }
        true
    }

    /// Free mbufs (including those in per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { dpdk_sys::shim_mempool_avail_count(self.inner.raw.as_ptr()) }
    }

    /// Mbufs currently allocated (by us or by drivers).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { dpdk_sys::shim_mempool_in_use_count(self.inner.raw.as_ptr()) }
    }

    /// The raw pool pointer, for queue setup.
    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.raw.as_ptr()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the pool is alive until the free below.
        let in_use = unsafe { dpdk_sys::shim_mempool_in_use_count(self.raw.as_ptr()) };
        if in_use != 0 {
            tracing::warn!(
                "mempool {:?} dropped with {in_use} mbuf(s) in use; leaking it",
                self.name
            );
            // Leaked pools stay counted, so EAL is never cleaned up under
            // their mbufs.
            std::mem::forget(self.live.take());
            return;
        }
        // SAFETY: no mbuf is out and no handle remains (last Arc), ports hold
        // a handle while they may allocate from it.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
