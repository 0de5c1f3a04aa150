//! Errors carrying the DPDK errno and its `rte_strerror` text.

use std::ffi::CStr;

/// A failed DPDK call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message} ({code})")]
pub struct DpdkError {
    /// The DPDK function (or safe-layer operation) that failed.
    pub op: &'static str,
    /// Positive errno value (DPDK returns `-errno` or sets `rte_errno`).
    pub code: i32,
    /// Human readable text, usually from `rte_strerror`.
    pub message: String,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DpdkError>;

impl DpdkError {
    /// Error from an errno value (sign ignored), text from `rte_strerror`.
    pub(crate) fn from_errno(op: &'static str, code: i32) -> Self {
        let code = code.abs();
        DpdkError {
            op,
            code,
            message: strerror(code),
        }
    }

    /// Error from the current thread's `rte_errno`.
    pub(crate) fn last(op: &'static str) -> Self {
        // SAFETY: reads the thread-local rte_errno.
        let code = unsafe { dpdk_sys::shim_errno() };
        Self::from_errno(op, code)
    }

    /// Error with a custom message.
    pub(crate) fn new(op: &'static str, code: i32, message: impl Into<String>) -> Self {
        DpdkError {
            op,
            code: code.abs(),
            message: message.into(),
        }
    }

    /// `Ok(ret)` if `ret >= 0`, else the error `-ret`.
    pub(crate) fn check(op: &'static str, ret: i32) -> Result<i32> {
        if ret < 0 {
            Err(Self::from_errno(op, ret))
        } else {
            Ok(ret)
        }
    }
}

/// `rte_strerror(code)` as an owned string.
fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror works before EAL init and always returns a valid
    // NUL-terminated string (static or thread-local buffer) that we copy at
    // once.
    unsafe {
        let p = dpdk_sys::rte_strerror(code);
        if p.is_null() {
            return format!("errno {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        let e = DpdkError::from_errno("rte_eth_dev_start", -libc::EINVAL);
        assert_eq!(e.code, libc::EINVAL);
        assert_eq!(e.to_string(), "rte_eth_dev_start: Invalid argument (22)");
        let e = DpdkError::new("x", 5, "boom");
        assert_eq!(e.to_string(), "x: boom (5)");
    }
}
