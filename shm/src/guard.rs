//! Surviving a segment file that another process truncates or shrinks.
//!
//! A mapped file that shrinks under its mapping turns every access past the new end into a
//! SIGBUS, which kills the process by default: any process of the segment's user could stop the
//! data plane and the control plane with one `open(path, O_TRUNC)`. [`install`] puts a SIGBUS
//! handler in place that, when the faulting address lies inside a registered segment mapping,
//! maps anonymous zero pages over the rest of that mapping (`MAP_FIXED`), marks the segment
//! damaged and returns: the faulting access then reads zeros. The program notices the flag
//! ([`crate::Segment::is_damaged`]) and stops using the segment in an orderly way. A SIGBUS
//! anywhere else goes to the handler that was there before (Rust's own, or the default action).
//!
//! Every segment mapping is registered ([`register`]) whether or not the handler is installed;
//! the handler is opt-in per process (the data plane and `swqos` install it at start; a client
//! application calls [`install`] itself if it wants the same protection).
//!
//! The handler is async-signal-safe: it reads a fixed static table of atomics and calls only
//! `mmap`, `sigaction` and `raise` (system calls; no allocation, no lock).

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many mappings can be guarded at once in one process.
const MAX_RANGES: usize = 64;

/// Replacement granularity: 2 MiB, so a mapping on hugetlbfs is replaced in whole huge pages
/// (and a normal mapping in whole small pages, as 2 MiB is a multiple of them).
const REPLACE_ALIGN: usize = 2 << 20;

/// One registered mapping; `len == 0` marks a free entry.
struct Range {
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the static table
const FREE: Range = Range {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    damaged: AtomicBool::new(false),
};

static RANGES: [Range; MAX_RANGES] = [FREE; MAX_RANGES];
/// Set once any registered mapping was replaced.
static ANY_DAMAGED: AtomicBool = AtomicBool::new(false);
/// Serialises [`install`] (never taken by the handler).
static INSTALL: Mutex<bool> = Mutex::new(false);

/// The SIGBUS action that was in place before [`install`], for faults outside segments.
struct Previous(UnsafeCell<Option<libc::sigaction>>);
// SAFETY: written once under `INSTALL` before the handler that reads it is installed, and never
// written again; the `sigaction` call that installs the handler orders the write before any read.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(None));

/// A registration of one mapping (see [`register`]); dropping it unregisters the mapping.
#[derive(Debug)]
pub struct Registration(Option<usize>);

impl Registration {
    /// Whether a SIGBUS replaced part of this mapping with zero pages.
    pub fn damaged(&self) -> bool {
        self.0
            .is_some_and(|i| RANGES[i].damaged.load(Ordering::Acquire))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            RANGES[i].len.store(0, Ordering::Release);
            RANGES[i].damaged.store(false, Ordering::Relaxed);
            RANGES[i].start.store(0, Ordering::Release);
        }
    }
}

/// Registers the mapping `[start, start + len)`; unregister it (drop the value) before unmapping.
/// With every entry in use the mapping stays unguarded (a SIGBUS in it kills the process).
pub fn register(start: *const u8, len: usize) -> Registration {
    let start = start as usize;
    if start == 0 || len == 0 {
        return Registration(None);
    }
    for (i, r) in RANGES.iter().enumerate() {
        if r.start
            .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            r.damaged.store(false, Ordering::Relaxed);
            r.len.store(len, Ordering::Release);
            return Registration(Some(i));
        }
    }
    Registration(None)
}

/// Whether a SIGBUS replaced part of any segment mapping of this process.
pub fn any_damaged() -> bool {
    ANY_DAMAGED.load(Ordering::Acquire)
}

/// Installs the SIGBUS handler for this process (idempotent).
pub fn install() -> io::Result<()> {
    let mut done = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    // SAFETY: a zeroed sigaction is a valid "no handler, no flags, empty mask" value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the current action into a valid, writable struct.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handler is not installed yet, so nothing reads PREVIOUS concurrently; it is
    // written only here, once (guarded by INSTALL).
    unsafe { *PREVIOUS.0.get() = Some(old) };
    // SAFETY: as above for the zeroed struct; the mask is a valid sigset_t inside it.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
    action.sa_sigaction = handler as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler with the SA_SIGINFO signature `on_sigbus` has.
    if unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    *done = true;
    Ok(())
}

/// The SIGBUS handler: async-signal-safe (atomics, `mmap`, `sigaction`, `raise` only).
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for a memory access (kill() gives SI_USER, <= 0).
    if code > 0 && replace_tail(addr) {
        return;
    }
    chain(sig, info, ctx, code);
}

/// Maps zero pages over the registered mapping holding `addr`, from `addr`'s 2 MiB block to its
/// end; `false` if `addr` is in no registered mapping or the mapping could not be replaced.
fn replace_tail(addr: usize) -> bool {
    for r in RANGES.iter() {
        let len = r.len.load(Ordering::Acquire);
        let start = r.start.load(Ordering::Acquire);
        if len == 0 || start == 0 || addr < start || addr - start >= len {
            continue;
        }
        let from = (addr & !(REPLACE_ALIGN - 1)).max(start);
        // SAFETY: `[from, start + len)` lies inside a live mapping of this process that its
        // owner registered (and unregisters before unmapping); MAP_FIXED replaces exactly those
        // pages with private zero pages, so the memory stays mapped and readable and writable
        // at the same addresses. References into a segment are to atomics and plain integers
        // or bytes, for which zero is a valid value, and every reader already treats the
        // contents as hostile (bounded lengths, resynchronising rings), so zeros are safe input.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                start + len - from,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        r.damaged.store(true, Ordering::Release);
        ANY_DAMAGED.store(true, Ordering::Release);
        return true;
    }
    false
}

/// Hands a SIGBUS that is not ours to the previous action (or the default one).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, code: i32) {
    // SAFETY: PREVIOUS was written before this handler was installed and is never written again.
    let previous = unsafe { *PREVIOUS.0.get() };
    if let Some(old) = previous {
        let h = old.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this
                // signature; we pass the kernel's own arguments through.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO takes the signal number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
            return;
        }
    }
    // SAFETY: a zeroed sigaction with SIG_DFL (0) restores the default action.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: sigaction and raise are async-signal-safe; a kernel-raised SIGBUS re-faults on
    // return and now takes the default action (core dump), a sent one is raised again.
    unsafe {
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        if code <= 0 {
            libc::raise(libc::SIGBUS);
        }
    }
}
