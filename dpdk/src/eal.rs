//! EAL initialisation and cleanup.

use std::ffi::{c_char, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::error::{DpdkError, Result};

/// Where the process is in the EAL life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Uninit,
    Running,
    /// `rte_eal_cleanup` ran (or init failed); DPDK is unusable.
    Done,
}

/// Read-locked while creating DPDK objects, write-locked while cleaning up,
/// so no object can appear during `rte_eal_cleanup`.
static PHASE: RwLock<Phase> = RwLock::new(Phase::Uninit);

/// Mempools, ports and lcore handles alive (or leaked). EAL cleanup would
/// leave them dangling, so it only runs when this is 0.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Proof that EAL is running, held while a DPDK object is being created.
pub(crate) struct Running(#[allow(dead_code)] RwLockReadGuard<'static, Phase>);

/// Fails unless EAL is initialised and not cleaned up.
pub(crate) fn running(op: &'static str) -> Result<Running> {
    let g = PHASE.read().unwrap_or_else(|e| e.into_inner());
    if *g == Phase::Running {
        Ok(Running(g))
    } else {
        Err(DpdkError::new(op, libc::EPERM, "EAL is not initialised"))
    }
}

/// A DPDK object that must not outlive EAL. Counted while alive.
#[derive(Debug)]
pub(crate) struct LiveToken(());

impl LiveToken {
    /// Registers a new live object; the guard proves EAL is running.
    pub(crate) fn new(_running: &Running) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        LiveToken(())
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The initialised DPDK environment abstraction layer.
///
/// Exactly one `Eal` can exist per process, and only once: DPDK cannot be
/// re-initialised after cleanup. The thread that calls [`Eal::init`] becomes
/// the main lcore; `Eal` is not `Send` so it stays there.
///
/// Dropping it calls `rte_eal_cleanup`, unless mempools, ports or lcore
/// handles are still alive: then cleanup is skipped (with a message on
/// stderr) because it would leave them dangling.
#[derive(Debug)]
pub struct Eal {
    _not_send: PhantomData<*const ()>,
}

impl Eal {
    /// Initialises EAL with `args` (without `argv[0]`; a program name is
    /// added). Fails on the second call in a process.
    pub fn init(args: &[String]) -> Result<Eal> {
        let mut phase = PHASE.write().unwrap_or_else(|e| e.into_inner());
        if *phase != Phase::Uninit {
            return Err(DpdkError::new(
                "rte_eal_init",
                libc::EALREADY,
                "EAL can be initialised only once per process",
            ));
        }
        // From here on a retry is never allowed, even if init fails.
        *phase = Phase::Done;

        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("swqos-dpdk").expect("no NUL"));
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| {
                DpdkError::new(
                    "rte_eal_init",
                    libc::EINVAL,
                    format!("NUL in argument {a:?}"),
                )
            })?);
        }
        // EAL may keep pointers into argv (and permutes it), so the strings
        // and the array are leaked: this happens once per process.
        let argv: &'static mut [*mut c_char] = Vec::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect(),
        );
        let argc = (argv.len() - 1) as i32;
        // SAFETY: argv holds argc valid, leaked, NUL-terminated strings plus a
        // terminating NULL; we hold the write lock, so nothing else touches
        // DPDK concurrently, and the Phase check makes this the only call.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::last("rte_eal_init"));
        }
        *phase = Phase::Running;
        Ok(Eal {
            _not_send: PhantomData,
        })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        let mut phase = PHASE.write().unwrap_or_else(|e| e.into_inner());
        let live = LIVE.load(Ordering::SeqCst);
        if live != 0 {
            // Leave DPDK running; the OS reclaims everything at exit.
            tracing::warn!("{live} DPDK object(s) still alive, skipping rte_eal_cleanup");
            return;
        }
        // SAFETY: no mempool, port or lcore handle exists (LIVE == 0) and the
        // write lock keeps new ones from being created; mbufs cannot exist
        // without a live or leaked (still counted) mempool.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            tracing::warn!("rte_eal_cleanup failed: {ret}");
        }
        *phase = Phase::Done;
    }
}
