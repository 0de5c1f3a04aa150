//! The JSON-RPC endpoint's HTTP/1.1 server: one thread multiplexes every connection with `mio`
//! (epoll) and parses requests with `httparse`; complete request bodies go to the worker pool
//! ([`Request`]), and their answers come back over a channel with a [`mio::Waker`].
//!
//! Every resource a caller can make it hold is bounded ([`Limits`]): the request head and the
//! body are limited *while* reading (bytes beyond a limit are never buffered), the number of
//! connections is capped (an idle keep-alive connection makes room for a new one; otherwise new
//! connections wait in the kernel's backlog), the bodies being read share one byte budget, and
//! a request must arrive whole within [`Limits::request_deadline`] of its first byte (a byte a
//! second does not hold a connection). A caller that goes away marks its request
//! [`Request::gone`], so the workers stop spending time on it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

/// What the server lets a caller hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections at most.
    pub(crate) max_connections: usize,
    /// Largest request head (request line and headers).
    pub(crate) max_head: usize,
    /// Largest request body.
    pub(crate) max_body: usize,
    /// Bytes of request bodies being read or answered at once, over all connections.
    pub(crate) body_budget: usize,
    /// From a request's first byte to its last.
    pub(crate) request_deadline: Duration,
    /// How long a keep-alive connection may sit between requests (it is closed earlier when a
    /// new connection needs its place).
    pub(crate) idle_timeout: Duration,
    /// How long writing an answer may take (a caller that does not read).
    pub(crate) write_deadline: Duration,
    /// How long a request may stay with the workers before the caller gets a 500.
    pub(crate) work_deadline: Duration,
}

/// A complete request body for the workers.
pub(crate) struct Request {
    /// The body.
    pub(crate) body: Vec<u8>,
    /// Set when the caller has gone (closed its connection): the answer will not be read.
    pub(crate) gone: Arc<AtomicBool>,
    /// Where the answer goes.
    pub(crate) respond: Responder,
}

/// Sends one answer back to the server thread. Dropped unanswered, it answers HTTP 500, so a
/// caller never waits on a request nobody holds.
pub(crate) struct Responder {
    token: Token,
    done: Sender<Answer>,
    waker: Arc<Waker>,
    answered: bool,
}

/// An HTTP answer for one connection.
pub(crate) struct Answer {
    token: Token,
    /// HTTP status.
    pub(crate) status: u16,
    /// Extra headers.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub(crate) body: String,
}

/// A responder whose answer arrives on the returned channel (unit tests of the handlers).
#[cfg(test)]
pub(crate) fn test_responder() -> (Responder, Receiver<Answer>) {
    let poll = Box::leak(Box::new(Poll::new().unwrap()));
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
    let (done, rx) = mpsc::channel();
    let r = Responder {
        token: Token(7),
        done,
        waker,
        answered: false,
    };
    (r, rx)
}

impl Responder {
    /// Answers with `status`, extra `headers` (values must be printable ASCII) and a JSON body.
    pub(crate) fn send(mut self, status: u16, headers: Vec<(&'static str, String)>, body: String) {
        self.answered = true;
        let answer = Answer {
            token: self.token,
            status,
            headers,
            body,
        };
        if self.done.send(answer).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.answered = true;
            let _ = self.done.send(Answer {
                token: self.token,
                status: 500,
                headers: Vec::new(),
                body: error_body("internal error: the request was not answered"),
            });
            let _ = self.waker.wake();
        }
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(100);
/// How long a refused connection is drained before closing (so the caller reads the refusal
/// instead of a reset).
const LINGER: Duration = Duration::from_secs(1);
/// At most this much is read and discarded after a refusal.
const LINGER_BYTES: usize = 64 * 1024;
/// Most headers a request may have.
const MAX_HEADERS: usize = 64;

/// Starts the server thread on `listener`; complete requests go to `requests` (a full queue
/// answers 503). Runs until `stop` is set.
pub(crate) fn spawn(
    listener: std::net::TcpListener,
    limits: Limits,
    requests: SyncSender<Request>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (done_tx, done_rx) = mpsc::channel();
    let mut server = Server {
        poll,
        listener,
        limits,
        conns: HashMap::new(),
        next_token: 2,
        budget: limits.body_budget,
        requests,
        done_tx,
        done_rx,
        waker,
        accept_paused: false,
    };
    std::thread::Builder::new()
        .name("swqos-rpc-io".into())
        .spawn(move || server.run(&stop))
}

/// Where a connection is in its request/answer cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests (keep-alive), or before the first byte.
    Idle,
    /// Reading a request.
    Reading,
    /// The workers have the request.
    Working,
    /// Writing the answer.
    Writing,
    /// Refused: the answer is written, the write side shut; unread bytes are discarded until
    /// the caller closes or [`LINGER`] passes.
    Closing,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes of the head.
    pub(crate) len: usize,
    /// `Content-Length`.
    pub(crate) body: usize,
    /// `Connection: close` (or HTTP/1.0).
    close: bool,
    /// `Expect: 100-continue`.
    expect_continue: bool,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    phase: Phase,
    head: Option<Head>,
    /// When the current phase ends.
    deadline: Instant,
    /// When the connection last became idle (eviction order).
    idle_since: Instant,
    /// Body bytes taken from the shared budget.
    reserved: usize,
    /// Close once the answer is written.
    close: bool,
    out: Vec<u8>,
    written: usize,
    gone: Arc<AtomicBool>,
    /// Bytes read and discarded after a refusal.
    discarded: usize,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    limits: Limits,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Body bytes not reserved by any connection.
    budget: usize,
    requests: SyncSender<Request>,
    done_tx: Sender<Answer>,
    done_rx: Receiver<Answer>,
    waker: Arc<Waker>,
    /// At the connection cap with no idle connection to close: accept again when one closes.
    accept_paused: bool,
}

/// Why a request is refused at the HTTP level.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HttpError(pub(crate) u16, pub(crate) String);

impl Server {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll.poll(&mut events, Some(SWEEP)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("swqos control: JSON-RPC endpoint stopped: poll: {e}");
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(token);
                        }
                        if event.is_writable() {
                            self.flush(token);
                        }
                    }
                }
            }
            while let Ok(answer) = self.done_rx.try_recv() {
                self.answer(answer);
            }
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + SWEEP;
            }
        }
    }

    /// Accepts while there is room (closing the longest-idle connection to make some).
    fn accept(&mut self) {
        loop {
            let full = self.conns.len() >= self.limits.max_connections;
            if full && self.longest_idle().is_none() {
                self.accept_paused = true;
                return;
            }
            self.accept_paused = false;
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors and the like: try again at the next event or close.
                Err(_) => return,
            };
            if let Some(idle) = self.longest_idle().filter(|_| full) {
                self.close(idle);
            }
            let _ = stream.set_nodelay(true);
            let token = Token(self.next_token);
            self.next_token += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, token, interest)
                .is_err()
            {
                continue;
            }
            let now = Instant::now();
            self.conns.insert(
                token,
                Conn {
                    stream,
                    buf: Vec::new(),
                    phase: Phase::Idle,
                    head: None,
                    deadline: now + self.limits.idle_timeout,
                    idle_since: now,
                    reserved: 0,
                    close: false,
                    out: Vec::new(),
                    written: 0,
                    gone: Arc::new(AtomicBool::new(false)),
                    discarded: 0,
                },
            );
        }
    }

    /// The connection idle the longest (between requests, nothing buffered).
    fn longest_idle(&self) -> Option<Token> {
        self.conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Idle && c.buf.is_empty())
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(t, _)| *t)
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            c.gone.store(true, Ordering::Relaxed);
            self.budget += c.reserved;
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        if self.accept_paused {
            self.accept();
        }
    }

    /// Reads what the connection has, within its limit, and moves its request on.
    fn on_readable(&mut self, token: Token) {
        loop {
            let Some(stopped_at_limit) = self.read_some(token) else {
                return; // closed
            };
            let reading = |s: &Self| {
                s.conns
                    .get(&token)
                    .filter(|c| c.phase == Phase::Reading)
                    .map(|c| c.head.is_some())
            };
            let Some(had_head) = reading(self) else {
                return;
            };
            self.advance(token);
            // A head just parsed raises the limit to the body's end: read on (edge-triggered
            // readiness would not report the bytes already waiting in the kernel again).
            if !(stopped_at_limit && !had_head && reading(self) == Some(true)) {
                return;
            }
        }
    }

    /// Reads until the kernel has nothing more or the connection's limit is reached (then
    /// `Some(true)`); `None` when the connection was closed.
    fn read_some(&mut self, token: Token) -> Option<bool> {
        let limits = self.limits;
        let c = self.conns.get_mut(&token)?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let room = match c.phase {
                Phase::Closing => LINGER_BYTES.saturating_sub(c.discarded),
                _ => c.read_limit(&limits).saturating_sub(c.buf.len()),
            };
            if room == 0 && c.phase == Phase::Closing {
                // A caller that keeps sending after its refusal gets a reset.
                self.close(token);
                return None;
            }
            if room == 0 {
                return Some(true); // The rest stays in the kernel for now.
            }
            let want = room.min(chunk.len());
            match c.stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    self.close(token);
                    return None;
                }
                Ok(n) if c.phase == Phase::Closing => c.discarded += n,
                Ok(n) => {
                    if c.phase == Phase::Idle {
                        c.phase = Phase::Reading;
                        c.deadline = Instant::now() + limits.request_deadline;
                    }
                    c.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(token);
                    return None;
                }
            }
        }
    }

    /// Parses what a reading connection has; dispatches a complete request or refuses a bad one.
    fn advance(&mut self, token: Token) {
        let limits = self.limits;
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.head.is_none() {
            match parse_head(&c.buf, &limits) {
                Ok(None) => return,
                Ok(Some(head)) => {
                    if head.body > self.budget {
                        return self.refuse(token, HttpError(503, "busy: retry later".into()));
                    }
                    self.budget -= head.body;
                    c.reserved = head.body;
                    c.head = Some(head);
                    if head.expect_continue && c.buf.len() < head.len + head.body {
                        // Best effort: a caller that does not get it sends the body anyway.
                        let _ = c.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                }
                Err(e) => return self.refuse(token, e),
            }
        }
        let Some(head) = c.head else { return };
        if c.buf.len() < head.len + head.body {
            return;
        }
        let body = c.buf[head.len..head.len + head.body].to_vec();
        c.buf.drain(..head.len + head.body);
        c.close = head.close;
        c.phase = Phase::Working;
        c.deadline = Instant::now() + limits.work_deadline;
        let request = Request {
            body,
            gone: c.gone.clone(),
            respond: Responder {
                token,
                done: self.done_tx.clone(),
                waker: self.waker.clone(),
                answered: false,
            },
        };
        if let Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) =
            self.requests.try_send(request)
        {
            r.respond
                .send(503, Vec::new(), error_body("busy: retry later"));
        }
    }

    /// Answers an HTTP-level refusal and closes the connection after it.
    fn refuse(&mut self, token: Token, HttpError(status, why): HttpError) {
        if let Some(c) = self.conns.get_mut(&token) {
            c.close = true;
            self.write_answer(
                Answer {
                    token,
                    status,
                    headers: Vec::new(),
                    body: error_body(&why),
                },
                true,
            );
        }
    }

    /// An answer from the workers.
    fn answer(&mut self, answer: Answer) {
        match self.conns.get(&answer.token) {
            Some(c) if c.phase == Phase::Working => self.write_answer(answer, false),
            _ => {} // The caller went, or timed out: nobody to answer.
        }
    }

    fn write_answer(&mut self, answer: Answer, refusal: bool) {
        let Some(c) = self.conns.get_mut(&answer.token) else {
            return;
        };
        let mut extra = String::new();
        for (name, value) in &answer.headers {
            extra.push_str(&format!("{name}: {value}\r\n"));
        }
        if c.close {
            extra.push_str("Connection: close\r\n");
        }
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            answer.status,
            reason_phrase(answer.status),
            answer.body.len(),
        );
        c.out = head.into_bytes();
        c.out.extend_from_slice(answer.body.as_bytes());
        c.written = 0;
        c.phase = Phase::Writing;
        c.deadline = Instant::now() + self.limits.write_deadline;
        if refusal {
            c.buf.clear();
        }
        self.flush(answer.token);
    }

    /// Writes what it can of the answer; when done, closes or goes back to idle.
    fn flush(&mut self, token: Token) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.phase != Phase::Writing {
            return;
        }
        while c.written < c.out.len() {
            match c.stream.write(&c.out[c.written..]) {
                Ok(0) => return self.close(token),
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(token),
            }
        }
        self.budget += c.reserved;
        c.reserved = 0;
        c.out = Vec::new();
        c.head = None;
        if c.close {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.phase = Phase::Closing;
            c.deadline = Instant::now() + LINGER;
            return self.on_readable(token);
        }
        let now = Instant::now();
        c.phase = Phase::Idle;
        c.idle_since = now;
        c.deadline = now + self.limits.idle_timeout;
        if !c.buf.is_empty() {
            c.phase = Phase::Reading;
            c.deadline = now + self.limits.request_deadline;
        }
        // A pipelined request may be waiting, here or in the kernel.
        self.on_readable(token);
        if self
            .conns
            .get(&token)
            .is_some_and(|c| c.phase == Phase::Reading)
        {
            self.advance(token);
        }
    }

    /// Ends what is past its deadline: a slow request gets 408, a stuck answer 500.
    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<(Token, Phase)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, c)| (*t, c.phase))
            .collect();
        for (token, phase) in expired {
            match phase {
                Phase::Reading => {
                    self.refuse(token, HttpError(408, "request not complete in time".into()))
                }
                Phase::Working => {
                    if let Some(c) = self.conns.get_mut(&token) {
                        c.gone.store(true, Ordering::Relaxed);
                        c.close = true;
                    }
                    self.refuse(token, HttpError(500, "no answer in time".into()));
                }
                Phase::Idle | Phase::Writing | Phase::Closing => self.close(token),
            }
        }
    }
}

impl Conn {
    /// How many bytes the connection may hold now: a head (one byte more than allowed, to
    /// notice it is too long), then exactly the body.
    fn read_limit(&self, limits: &Limits) -> usize {
        match (self.phase, self.head) {
            (Phase::Idle | Phase::Reading, None) => limits.max_head + 1,
            (Phase::Idle | Phase::Reading, Some(h)) => h.len + h.body,
            // Pipelined bytes while the answer is prepared: at most a head's worth.
            _ => limits.max_head,
        }
    }
}

/// Parses a request head: `Ok(None)` while incomplete, or the refusal for a bad one.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpError> {
    let bad = |s: u16, why: &str| HttpError(s, why.to_string());
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_head => {
            return Err(bad(431, "request head too large"))
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
            return Err(bad(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(bad(431, &format!("more than {MAX_HEADERS} headers")))
        }
        Err(e) => return Err(HttpError(400, format!("malformed request: {e}"))),
    };
    let mut head = Head {
        len,
        body: 0,
        close: req.version == Some(0),
        expect_continue: false,
    };
    let mut length: Option<usize> = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError(400, format!("header {} is not UTF-8", h.name)))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(400, "bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad(400, "conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                411,
                "chunked bodies are not supported; send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            let tokens = || value.split(',').map(str::trim);
            if tokens().any(|t| t.eq_ignore_ascii_case("close")) {
                head.close = true;
            } else if tokens().any(|t| t.eq_ignore_ascii_case("keep-alive")) {
                head.close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue")
        {
            head.expect_continue = true;
        }
    }
    if req.method != Some("POST") {
        return Err(bad(405, "JSON-RPC requests are POSTs"));
    }
    head.body = length.ok_or_else(|| bad(411, "Content-Length required"))?;
    if head.body > limits.max_body {
        return Err(HttpError(
            413,
            format!(
                "body of {} bytes is larger than {} bytes",
                head.body, limits.max_body
            ),
        ));
    }
    Ok(Some(head))
}

/// A JSON-RPC error body for an HTTP-level refusal.
fn error_body(why: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": why}, "id": null})
        .to_string()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    const TEST_LIMITS: Limits = Limits {
        max_connections: 4,
        max_head: 1024,
        max_body: 4096,
        body_budget: 8192,
        request_deadline: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(30),
        write_deadline: Duration::from_secs(5),
        work_deadline: Duration::from_secs(5),
    };

    fn head(text: &[u8]) -> Result<Option<Head>, HttpError> {
        parse_head(text, &TEST_LIMITS)
    }

    #[test]
    fn heads_are_parsed_and_refused_with_a_status() {
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.body, h.close), (5, false));
        assert_eq!(head(b"POST / HTTP/1.1\r\nContent-Le"), Ok(None));
        let status = |t: &[u8]| head(t).unwrap_err().0;
        // The same length twice is one length; two different ones are refused.
        assert!(head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").is_ok());
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n"),
            Err(HttpError(400, "conflicting Content-Length headers".into()))
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nX-A: caf\xe9\r\nContent-Length: 1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"POST / HTTP/1.1\r\n\r\n"), 411);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n"),
            413
        );
        assert_eq!(
            status(&[b'A'; 1025]),
            431,
            "a head without an end is refused at the limit"
        );
        assert!(
            head(b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
    }

    /// A server with an echo worker: answers each body with itself.
    fn echo_server() -> (u16, Arc<AtomicBool>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::sync_channel::<Request>(8);
        let stop = Arc::new(AtomicBool::new(false));
        spawn(listener, TEST_LIMITS, tx, stop.clone()).unwrap();
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                r.respond.send(200, Vec::new(), body);
            }
        });
        (port, stop)
    }

    fn connect(port: u16) -> StdStream {
        let s = StdStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn read_all(s: &mut StdStream) -> String {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn limits_hold_on_a_real_socket() {
        let (port, stop) = echo_server();
        // Keep-alive: two requests on one connection.
        let mut s = connect(port);
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiPOST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nho").unwrap();
        let text = read_all(&mut s);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.ends_with("ho"), "{text}");
        // A body longer than the head limit, already waiting in the kernel when the head is
        // parsed, is read on (not left until the deadline).
        let mut s = connect(port);
        let body = "b".repeat(3000);
        let request =
            format!("POST / HTTP/1.1\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n{body}");
        s.write_all(request.as_bytes()).unwrap();
        let started = Instant::now();
        let text = read_all(&mut s);
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with(&body),
            "{text:.80}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        // A request line that never ends: refused at the head limit, not buffered; a caller
        // that keeps sending after the refusal is cut off.
        let mut s = connect(port);
        let _ = s.write_all(&[b'P'; 8192]);
        assert!(read_all(&mut s).starts_with("HTTP/1.1 431 "));
        let mut s = connect(port);
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sent = 0;
        while sent < 64 << 20 {
            match s.write(&[b'P'; 65536]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        assert!(sent < 64 << 20, "64 MiB taken after the refusal");
        // A byte at a time, under the per-read pace but over the whole-request deadline.
        let mut s = connect(port);
        let started = Instant::now();
        let mut answer = String::new();
        for b in b"POST / HTTP/1.1\r\nContent-Length: 1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 512];
            s.set_nonblocking(true).unwrap();
            if let Ok(n) = s.read(&mut buf) {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            s.set_nonblocking(false).unwrap();
        }
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // The connection cap: idle connections make room for new ones, oldest first.
        let idle: Vec<StdStream> = (0..TEST_LIMITS.max_connections)
            .map(|_| connect(port))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut s = connect(port);
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:?}");
        let mut first = idle.into_iter().next().unwrap();
        assert_eq!(
            read_all(&mut first),
            "",
            "the longest-idle connection was closed"
        );
        stop.store(true, Ordering::Relaxed);
    }
}
