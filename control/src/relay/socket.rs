//! Socket helpers of the connection threads: connect with the pool's timeouts, whether an idle
//! connection is still open, bytes the relay has not acknowledged, reconnect backoff.

use super::*;

pub(super) fn connect(addr: SocketAddrV4) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(addr), CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(s)
}

pub(super) enum Peek {
    Open,
    Closed(String),
    Error(io::Error),
}

/// Whether an idle connection is still open, without blocking or consuming anything.
pub(super) fn peek(stream: &TcpStream) -> Peek {
    let mut byte = 0u8;
    // SAFETY: the descriptor belongs to `stream`, which outlives the call; the buffer is one
    // writable byte on this stack frame.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peek::Closed("the relay closed the idle connection".to_string()),
        n if n > 0 => {
            Peek::Closed("the relay sent unrequested bytes on the idle connection".to_string())
        }
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Peek::Open,
                _ => Peek::Error(e),
            }
        }
    }
}

/// Bytes written to `stream` that the peer has not acknowledged yet (`SIOCOUTQ`: unsent plus
/// unacknowledged); an error counts as unsettled.
pub(super) fn unacked(stream: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: the descriptor belongs to `stream`, which outlives the call; TIOCOUTQ (SIOCOUTQ)
    // writes one c_int to the pointer, which points at `n` on this stack frame.
    let rc = unsafe {
        libc::ioctl(
            stream.as_raw_fd(),
            libc::TIOCOUTQ,
            &mut n as *mut libc::c_int,
        )
    };
    if rc == 0 {
        n.max(0) as usize
    } else {
        usize::MAX
    }
}

/// Reconnect delay after `failures` consecutive failures: 100 ms doubling to 5 s, ±20 %.
pub(super) fn backoff(failures: u32, rng: &mut Rng) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = (BACKOFF_MIN * (1u32 << exp)).min(BACKOFF_MAX);
    let factor = 0.8 + 0.4 * rng.unit();
    base.mul_f64(factor)
}

/// xorshift64*: jitter only.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(salt: u64) -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(salt);
        Rng(h.finish() | 1)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}
