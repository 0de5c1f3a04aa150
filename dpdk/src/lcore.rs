//! Logical cores: ids, placement and launching work on worker lcores.

use std::any::Any;
use std::ffi::{c_int, c_void};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::eal::{self, LiveToken};
use crate::error::{DpdkError, Result};

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl LcoreId {
    /// The lcore of the calling thread, `None` for non-EAL threads.
    pub fn current() -> Option<LcoreId> {
        // SAFETY: reads a thread-local (LCORE_ID_ANY for non-EAL threads).
        let id = unsafe { dpdk_sys::shim_lcore_id() };
        (id != dpdk_sys::SHIM_LCORE_ID_ANY).then_some(LcoreId(id))
    }

    /// NUMA socket of this lcore.
    pub fn socket_id(self) -> i32 {
        if self.0 >= dpdk_sys::SHIM_RTE_MAX_LCORE {
            return dpdk_sys::SHIM_SOCKET_ID_ANY;
        }
        // SAFETY: index checked above; reads static EAL config.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(self.0) as i32 }
    }
}

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

/// The main lcore (the thread that ran [`crate::Eal::init`]).
pub fn main_lcore() -> LcoreId {
    // SAFETY: reads static EAL config (0 before init).
    LcoreId(unsafe { dpdk_sys::rte_get_main_lcore() })
}

/// Enabled lcores other than the main one, ascending.
pub fn worker_lcores() -> Vec<LcoreId> {
    let mut out = Vec::new();
    let mut i = u32::MAX; // rte_get_next_lcore starts after `i`; -1 = begin.
    loop {
        // SAFETY: reads static EAL config; any `i` is accepted.
        i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
        if i >= dpdk_sys::SHIM_RTE_MAX_LCORE {
            return out;
        }
        out.push(LcoreId(i));
    }
}

/// NUMA socket of the calling thread (`SOCKET_ID_ANY`, -1, if unknown).
pub fn socket_id() -> i32 {
    // SAFETY: reads a thread-local.
    unsafe { dpdk_sys::rte_socket_id() as i32 }
}

/// Number of enabled lcores, main included.
pub fn count() -> u32 {
    // SAFETY: reads static EAL config.
    unsafe { dpdk_sys::rte_lcore_count() }
}

/// A panic that escaped a closure run by [`launch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lcore {lcore} panicked: {message}")]
pub struct LcorePanic {
    /// The lcore that ran the closure.
    pub lcore: u32,
    /// The panic payload if it was a string, else a placeholder.
    pub message: String,
}

/// State shared between [`launch`] and the worker lcore.
struct Job<F, R> {
    f: Option<F>,
    result: Option<std::thread::Result<R>>,
}

/// Entry point DPDK calls on the worker.
extern "C" fn trampoline<F, R>(arg: *mut c_void) -> c_int
where
    F: FnOnce() -> R,
{
    // SAFETY: `arg` is the `Job<F, R>` leaked by `launch`; the main lcore does
    // not touch it until rte_eal_wait_lcore returns, so this is the only
    // access.
    let job = unsafe { &mut *arg.cast::<Job<F, R>>() };
    let f = job.f.take();
    job.result = f.map(|f| panic::catch_unwind(AssertUnwindSafe(f)));
    0
}

/// A closure running on a worker lcore. Join it with [`LcoreHandle::join`];
/// dropping the handle also waits for the closure to finish.
///
/// Not `Send`: DPDK wants launch and wait on the main lcore.
pub struct LcoreHandle<R> {
    lcore: LcoreId,
    /// `Box<Job<F, R>>` type-erased; freed by `drop_job`.
    job: NonNull<c_void>,
    take_result: unsafe fn(NonNull<c_void>) -> Option<std::thread::Result<R>>,
    drop_job: unsafe fn(NonNull<c_void>),
    waited: bool,
    _live: LiveToken,
    _not_send: PhantomData<*const ()>,
}

impl<R> fmt::Debug for LcoreHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LcoreHandle")
            .field("lcore", &self.lcore)
            .finish()
    }
}

/// Runs `f` on worker `lcore` (`rte_eal_remote_launch`). Must be called on
/// the main lcore, and `lcore` must be an idle worker.
pub fn launch<F, R>(lcore: LcoreId, f: F) -> Result<LcoreHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    const OP: &str = "rte_eal_remote_launch";
    let running = eal::running(OP)?;
    let main = main_lcore();
    if LcoreId::current() != Some(main) {
        return Err(DpdkError::new(
            OP,
            libc::EPERM,
            "must be called on the main lcore",
        ));
    }
    if lcore == main || !worker_lcores().contains(&lcore) {
        return Err(DpdkError::new(
            OP,
            libc::EINVAL,
            format!("{lcore} is not a worker lcore"),
        ));
    }
    let job = Box::into_raw(Box::new(Job::<F, R> {
        f: Some(f),
        result: None,
    }));
    // SAFETY: trampoline::<F, R> matches the job type; the job stays alive
    // until rte_eal_wait_lcore returns (LcoreHandle drop/join). We are on the
    // main lcore, as DPDK requires.
    let ret =
        unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline::<F, R>), job.cast(), lcore.0) };
    if ret < 0 {
        // SAFETY: launch failed, so the worker never saw `job`.
        drop(unsafe { Box::from_raw(job) });
        return Err(DpdkError::from_errno(OP, ret));
    }

    /// # Safety
    /// `p` is a live `Job<F, R>` no other thread accesses.
    unsafe fn take_result<F, R>(p: NonNull<c_void>) -> Option<std::thread::Result<R>> {
        // SAFETY: guaranteed by the caller.
        unsafe { p.cast::<Job<F, R>>().as_mut().result.take() }
    }
    /// # Safety
    /// `p` came from `Box::<Job<F, R>>::into_raw` and is not used afterwards.
    unsafe fn drop_job<F, R>(p: NonNull<c_void>) {
        // SAFETY: guaranteed by the caller.
        drop(unsafe { Box::from_raw(p.cast::<Job<F, R>>().as_ptr()) });
    }

    Ok(LcoreHandle {
        lcore,
        // SAFETY: Box::into_raw never returns null.
        job: unsafe { NonNull::new_unchecked(job.cast()) },
        take_result: take_result::<F, R>,
        drop_job: drop_job::<F, R>,
        waited: false,
        _live: LiveToken::new(&running),
        _not_send: PhantomData,
    })
}

impl<R> LcoreHandle<R> {
    /// The lcore running the closure.
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Waits for the closure (`rte_eal_wait_lcore`) and returns its value, or
    /// the panic it raised.
    pub fn join(mut self) -> std::result::Result<R, LcorePanic> {
        self.wait();
        // SAFETY: the worker finished (wait), so we are the only user of job.
        let result = unsafe { (self.take_result)(self.job) };
        match result {
            Some(Ok(r)) => Ok(r),
            Some(Err(payload)) => Err(LcorePanic {
                lcore: self.lcore.0,
                message: panic_message(payload.as_ref()),
            }),
            None => Err(LcorePanic {
                lcore: self.lcore.0,
                message: "closure did not run".into(),
            }),
        }
    }

    fn wait(&mut self) {
        if !self.waited {
            // SAFETY: this handle is !Send and was created on the main lcore,
            // so we are on the main lcore; the lcore was launched by us.
            unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore.0) };
            self.waited = true;
        }
    }
}

impl<R> Drop for LcoreHandle<R> {
    fn drop(&mut self) {
        self.wait();
        // SAFETY: the worker finished and nobody else holds `job`.
        unsafe { (self.drop_job)(self.job) };
    }
}

/// Text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages() {
        let p = panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static");
        let p = panic::catch_unwind(|| panic!("fmt {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "fmt 1");
        let p = panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "non-string panic payload");
    }
}
