//! Forwarding to `[control] rpc_upstream`: the JSON-RPC methods the endpoint does not answer
//! itself (`getLatestBlockhash`, `getSlot`, ...) go to an upstream RPC node, so a bot needs one
//! RPC URL. A small blocking HTTP/1.1 client (std `TcpStream`, `httparse`; no HTTP client stack,
//! issue #13) sends each forward as one `Connection: close` request, bounded by
//! `rpc_upstream_timeout_ms` from connect to last byte and by [`MAX_ANSWER`] bytes.
//!
//! Bounded like the rest of the endpoint: [`FORWARDERS`] threads (started only when an upstream
//! is configured) take forwards from a queue of [`QUEUE`]; a forward that finds the queue full
//! is answered at once with [`code::UPSTREAM`]. The server thread never waits for an upstream.
//!
//! A single call goes upstream as the caller wrote it and the upstream's answer comes back
//! verbatim. The forwarded calls of a batch go upstream as one batch, their ids replaced by
//! their positions (an upstream may answer a batch in any order, and callers may repeat ids);
//! each answer gets its caller's id back.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dpdk_config::RpcUpstream;
use serde_json::{json, Value};

use super::answer::{code, RpcError};
use super::CallReply;

/// Threads talking to the upstream.
pub(crate) const FORWARDERS: usize = 4;
/// Forwards waiting for a thread; more are refused.
const QUEUE: usize = 64;
/// Largest upstream answer accepted (head and body).
pub(crate) const MAX_ANSWER: usize = 8 << 20;
/// Largest upstream answer head.
const MAX_HEAD: usize = 16 * 1024;

/// One forward: the calls of one request that go upstream.
pub(crate) struct Forward {
    /// The call as the caller sent it (a single call) or the calls of a batch, each with its
    /// reply.
    pub(crate) calls: Vec<(Value, CallReply)>,
    /// The caller sent a batch: answers are matched to calls by position.
    pub(crate) batch: bool,
    /// The caller's raw body (a single call is forwarded byte for byte).
    pub(crate) raw: Option<Vec<u8>>,
}

/// Where forwards go: the upstream's pool, or nowhere (no upstream configured).
pub(crate) struct Upstream {
    queue: Option<SyncSender<Forward>>,
}

impl Upstream {
    /// No upstream: every forward is answered with [`code::UPSTREAM`].
    pub(crate) fn none() -> Upstream {
        Upstream { queue: None }
    }

    /// Starts [`FORWARDERS`] threads forwarding to `to`, each exchange bounded by `timeout`.
    pub(crate) fn start(to: RpcUpstream, timeout: Duration) -> io::Result<Upstream> {
        let (tx, rx) = mpsc::sync_channel::<Forward>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let to = Arc::new(to);
        for _ in 0..FORWARDERS {
            let (rx, to) = (rx.clone(), to.clone());
            std::thread::Builder::new()
                .name("swqos-rpc-upstream".into())
                .spawn(move || forwarder(&rx, &to, timeout))?;
        }
        Ok(Upstream { queue: Some(tx) })
    }

    /// Hands `forward` to a forwarder, or answers it with the reason it cannot go.
    pub(crate) fn forward(&self, forward: Forward) {
        let Some(queue) = &self.queue else {
            let methods: Vec<String> = forward
                .calls
                .iter()
                .map(|(c, _)| method_of(c).to_string())
                .collect();
            let e = upstream_error(
                "not_configured",
                format!(
                    "method {} is not answered by swqos and no upstream RPC is configured \
                     ([control] rpc_upstream)",
                    methods.join(", ")
                ),
            );
            return fail_all(forward, &e);
        };
        match queue.try_send(forward) {
            Ok(()) => {}
            Err(TrySendError::Full(f)) => {
                let e = upstream_error(
                    "busy",
                    format!("{QUEUE} calls already wait for the upstream RPC; not forwarded"),
                );
                fail_all(f, &e)
            }
            Err(TrySendError::Disconnected(f)) => fail_all(
                f,
                &upstream_error("stopped", "the upstream forwarders stopped"),
            ),
        }
    }
}

fn method_of(call: &Value) -> &str {
    call.get("method").and_then(Value::as_str).unwrap_or("?")
}

/// A [`code::UPSTREAM`] error whose `data.reason` names the cause.
fn upstream_error(reason: &str, message: impl Into<String>) -> RpcError {
    RpcError {
        code: code::UPSTREAM,
        message: message.into(),
        data: Some(json!({ "reason": reason })),
    }
}

fn fail_all(forward: Forward, e: &RpcError) {
    for (_, reply) in forward.calls {
        reply.answer(Err(e.clone()), None);
    }
}

/// Takes forwards until the endpoint goes.
fn forwarder(queue: &Mutex<Receiver<Forward>>, to: &RpcUpstream, timeout: Duration) {
    loop {
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(forward) => run(forward, to, timeout),
            Err(_) => return,
        }
    }
}

/// Sends one forward and answers its calls.
fn run(forward: Forward, to: &RpcUpstream, timeout: Duration) {
    if forward.calls.iter().all(|(_, r)| r.caller_gone()) {
        return fail_all(
            forward,
            &RpcError::new(code::CANCELLED, "caller gone; not forwarded"),
        );
    }
    let single = !forward.batch && forward.calls.len() == 1;
    let body = match (&forward.raw, single) {
        (Some(raw), true) => raw.clone(),
        _ => {
            let calls: Vec<Value> = forward
                .calls
                .iter()
                .enumerate()
                .map(|(i, (call, _))| {
                    let mut c = call.clone();
                    c["id"] = json!(i);
                    c
                })
                .collect();
            Value::Array(calls).to_string().into_bytes()
        }
    };
    let answer = match exchange(to, &body, timeout) {
        Ok(a) => a,
        Err(e) => return fail_all(forward, &e),
    };
    if single {
        let Some((_, reply)) = forward.calls.into_iter().next() else {
            return;
        };
        return match check_single(&answer) {
            Ok(()) => reply.answer_verbatim(answer.body),
            Err(e) => reply.answer(Err(e), None),
        };
    }
    let parsed = serde_json::from_slice::<Value>(&answer.body).ok();
    let Some(Value::Array(items)) = parsed.filter(|_| answer.status == 200) else {
        let e = bad_answer(&answer, "a JSON array (the batch's answers)");
        return fail_all(forward, &e);
    };
    let mut by_index: Vec<Option<Value>> = vec![None; forward.calls.len()];
    for item in items {
        if let Some(i) = item.get("id").and_then(Value::as_u64) {
            if let Some(slot) = by_index.get_mut(i as usize) {
                *slot = Some(item);
            }
        }
    }
    for ((_, reply), item) in forward.calls.into_iter().zip(by_index) {
        match item {
            Some(item) => reply.answer_object(item),
            None => reply.answer(
                Err(upstream_error(
                    "bad_answer",
                    "the upstream RPC's batch answer has no answer for this call",
                )),
                None,
            ),
        }
    }
}

/// A single call's answer is passed on when it is a JSON-RPC answer (an object with
/// `jsonrpc`), whatever the HTTP status; anything else is an error.
fn check_single(answer: &HttpAnswer) -> Result<(), RpcError> {
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(o)) if o.contains_key("jsonrpc") => Ok(()),
        _ => Err(bad_answer(answer, "a JSON-RPC answer")),
    }
}

fn bad_answer(answer: &HttpAnswer, expected: &str) -> RpcError {
    let snippet: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(200)
        .collect();
    upstream_error(
        "bad_answer",
        format!(
            "the upstream RPC answered HTTP {} without {expected}: {snippet:?}",
            answer.status
        ),
    )
}

/// An upstream's HTTP answer.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// POSTs `body` to the upstream and reads the answer, all within `timeout`.
pub(crate) fn exchange(
    to: &RpcUpstream,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpAnswer, RpcError> {
    let deadline = Instant::now() + timeout;
    let ms = timeout.as_millis();
    let timed_out = || {
        upstream_error(
            "timeout",
            format!(
                "the upstream RPC {} did not answer within {ms} ms \
                 ([control] rpc_upstream_timeout_ms)",
                to.url
            ),
        )
    };
    let unreachable = |e: String| {
        upstream_error(
            "unreachable",
            format!("the upstream RPC {} is unreachable: {e}", to.url),
        )
    };
    let addrs: Vec<SocketAddr> = (to.host.as_str(), to.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {}: {e}", to.host)))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last))?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: \
         application/json\r\nUser-Agent: swqos-control\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        to.path,
        to.authority,
        body.len()
    );
    let io_error = |e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            timed_out()
        } else {
            unreachable(e.to_string())
        }
    };
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    write_all_by(&mut stream, &request, deadline).map_err(io_error)?;
    read_answer(&mut stream, deadline).map_err(|e| match e {
        ReadError::Io(e) => io_error(e),
        ReadError::Bad(why) => upstream_error(
            "bad_answer",
            format!("the upstream RPC {} answered badly: {why}", to.url),
        ),
    })
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
    }
    Ok(left)
}

fn write_all_by(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match stream.write(data) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "closed")),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why reading an answer failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads more into `buf` (up to [`MAX_ANSWER`]); `Ok(false)` at the end of the stream.
fn fill(
    stream: &mut impl TimedRead,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<bool, ReadError> {
    if buf.len() >= MAX_ANSWER {
        return Err(ReadError::Bad(format!(
            "the answer is larger than {MAX_ANSWER} bytes"
        )));
    }
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream.read_within(remaining(deadline)?)?;
        let want = chunk.len().min(MAX_ANSWER - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Something to read an answer from with a deadline (a socket; a byte slice in unit tests).
pub(crate) trait TimedRead: Read {
    /// Limits the next read to `left`.
    fn read_within(&mut self, left: Duration) -> io::Result<()>;
}

impl TimedRead for TcpStream {
    fn read_within(&mut self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

impl TimedRead for &[u8] {
    fn read_within(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an HTTP/1.1 answer: the head, then a `Content-Length` body, a chunked body or the
/// body up to the end of the stream.
pub(crate) fn read_answer(
    stream: &mut impl TimedRead,
    deadline: Instant,
) -> Result<HttpAnswer, ReadError> {
    let mut buf = Vec::new();
    let (status, head_len, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let framing = framing(response.headers)?;
                break (status, len, framing);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(ReadError::Bad(format!("invalid HTTP answer: {e}"))),
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(format!(
                "the answer's head is larger than {MAX_HEAD} bytes"
            )));
        }
        if !fill(stream, &mut buf, deadline)? {
            return Err(ReadError::Bad(
                "the connection closed before an answer".into(),
            ));
        }
    };
    let mut rest = buf.split_off(head_len);
    let body = match framing {
        Framing::Length(n) => {
            if n > MAX_ANSWER {
                return Err(ReadError::Bad(format!(
                    "the answer is larger than {MAX_ANSWER} bytes"
                )));
            }
            while rest.len() < n {
                if !fill(stream, &mut rest, deadline)? {
                    return Err(ReadError::Bad("the answer ended early".into()));
                }
            }
            rest.truncate(n);
            rest
        }
        Framing::Close => {
            while fill(stream, &mut rest, deadline)? {}
            rest
        }
        Framing::Chunked => dechunk(stream, rest, deadline)?,
    };
    Ok(HttpAnswer { status, body })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, ReadError> {
    let mut framing = Framing::Close;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.trim().ends_with("chunked") {
                return Ok(Framing::Chunked);
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ReadError::Bad("invalid Content-Length".into()))?;
            framing = Framing::Length(n);
        }
    }
    Ok(framing)
}

/// Decodes a chunked body; `buf` holds what was read after the head.
fn dechunk(
    stream: &mut impl TimedRead,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        // The chunk-size line.
        let line_end = loop {
            if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                break at + i;
            }
            if !fill(stream, &mut buf, deadline)? {
                return Err(ReadError::Bad("the chunked answer ended early".into()));
            }
        };
        let line = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(format!("invalid chunk size {size_text:?}")))?;
        at = line_end + 2;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_ANSWER {
            return Err(ReadError::Bad(format!(
                "the answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        while buf.len() < at + size + 2 {
            if !fill(stream, &mut buf, deadline)? {
                return Err(ReadError::Bad("the chunked answer ended early".into()));
            }
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
        // Keep the buffer from growing with the whole body.
        buf.drain(..at);
        at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn read(bytes: &[u8]) -> Result<HttpAnswer, ReadError> {
        let mut r: &[u8] = bytes;
        read_answer(&mut r, Instant::now() + Duration::from_secs(1))
    }

    #[test]
    fn answers_are_read_by_length_by_chunks_and_to_the_end() {
        let a = read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdXYZ").unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"abcd"[..]));
        let a = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(&a.body[..], b"abcde");
        let a = read(b"HTTP/1.0 429 Too Many\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((a.status, &a.body[..]), (429, &b"{\"x\":1}"[..]));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
            Err(ReadError::Bad(w)) if w.contains("ended early")
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ReadError::Bad(w)) if w.contains("invalid chunk size")
        ));
        assert!(matches!(read(b"NOPE\r\n\r\n"), Err(ReadError::Bad(_))));
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_ANSWER + 1
        );
        assert!(matches!(read(huge.as_bytes()), Err(ReadError::Bad(w)) if w.contains("larger")));
    }

    fn upstream(port: u16) -> RpcUpstream {
        RpcUpstream {
            url: format!("http://127.0.0.1:{port}"),
            host: "127.0.0.1".into(),
            port,
            authority: format!("127.0.0.1:{port}"),
            path: "/".into(),
        }
    }

    #[test]
    fn a_silent_upstream_times_out_and_a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = Instant::now();
        let e = exchange(&upstream(port), b"{}", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.code, code::UPSTREAM);
        assert_eq!(e.data.unwrap()["reason"], "timeout", "{}", e.message);
        assert!(started.elapsed() < Duration::from_millis(1000));
        drop(listener);
        let e = exchange(&upstream(port), b"{}", Duration::from_millis(500)).unwrap_err();
        assert_eq!(e.data.unwrap()["reason"], "unreachable", "{}", e.message);
    }
}
