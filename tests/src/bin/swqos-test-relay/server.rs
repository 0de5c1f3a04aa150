//! The HTTP side: one thread per connection, reading requests the way `http.server` does
//! (`readline` for the request line and headers, `Content-Length` for the body) and answering
//! the way `mock_relay.py`'s `Handler` does.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use swqos_shm::time::monotonic_ns;

use crate::check::{self, Headers, Kind, Reject, Spec};
use crate::py::{self, Json};
use crate::Config;

/// `http.server`'s line limit (`readline(65537)`, `http.client._MAXLINE`).
const MAX_LINE: usize = 65536;
/// `http.client._MAXHEADERS` (the blank line that ends the head counts).
const MAX_HEADERS: usize = 100;
/// The largest body the mock reads.
const MAX_BODY: usize = 64 * 1024;

/// Accepts connections on `listener` forever, a thread for each.
pub(crate) fn accept_loop(
    listener: TcpListener,
    label: String,
    pinned: Option<&'static Spec>,
    cfg: Arc<Config>,
) {
    let label: Arc<str> = label.into();
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                // EMFILE and the like: let the peer retry rather than spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let conn_id = cfg.conn_ids.fetch_add(1, Ordering::Relaxed);
        let cfg = Arc::clone(&cfg);
        let label = Arc::clone(&label);
        let spawned = std::thread::Builder::new()
            .name(format!("conn {conn_id}"))
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut conn = Conn {
                    input: Input {
                        stream,
                        buf: Vec::new(),
                        start: 0,
                    },
                    cfg,
                    label,
                    pinned,
                    peer: peer_label(peer),
                    conn_id,
                    seq: 0,
                    t_first: 0,
                    close: true,
                    aborted: false,
                };
                conn.handle();
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `f"[{host}]:{port}"` for IPv6, `f"{host}:{port}"` for IPv4.
fn peer_label(peer: SocketAddr) -> String {
    match peer {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The connection's read side, buffered like the handler's `rfile`.
struct Input {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Input {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        out
    }

    /// One `recv` into the buffer; `Ok(0)` at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// `readline(limit)`: up to and including the next `\n`, at most `limit` bytes, or what is
    /// left at EOF (empty: EOF with nothing buffered).
    fn read_line(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        loop {
            let have = self.buffered();
            if let Some(i) = have.iter().position(|&b| b == b'\n') {
                return Ok(self.consume((i + 1).min(limit)));
            }
            if have.len() >= limit {
                return Ok(self.consume(limit));
            }
            if self.fill()? == 0 {
                let n = self.buffered().len();
                return Ok(self.consume(n));
            }
        }
    }

    /// Up to `n` body bytes, each `recv` waiting at most `timeout` (the mock's socket timeout
    /// during the body); fewer at EOF or on a timeout.
    fn read_body(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let _ = self.stream.set_read_timeout(Some(timeout));
        while self.buffered().len() < n {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.set_read_timeout(None);
        let take = n.min(self.buffered().len());
        self.consume(take)
    }
}

/// A parsed request head.
struct Head {
    command: String,
    /// The request target (after `http.server`'s `//` collapse).
    target: String,
    headers: Headers,
}

/// How reading a head ended other than with a request to serve.
enum HeadEnd {
    /// Nothing to answer: close (EOF, a blank request line, a read error).
    Close,
    /// `send_error(code, message)`: answered 400 and closed.
    Error(u16, String),
}

/// Per-connection state (the mock's `Handler` instance).
struct Conn {
    input: Input,
    cfg: Arc<Config>,
    label: Arc<str>,
    pinned: Option<&'static Spec>,
    peer: String,
    conn_id: u64,
    seq: u64,
    t_first: u64,
    close: bool,
    aborted: bool,
}

/// What a log line says about the request beyond the connection.
#[derive(Default)]
struct Record<'a> {
    provider: Option<&'a str>,
    ok: bool,
    status: Option<u16>,
    error: Option<&'a str>,
    signature: Option<&'a str>,
    tx_len: Option<usize>,
    t_done: Option<u64>,
    bundle: Option<&'a (Vec<String>, String)>,
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Unknown",
    }
}

impl Conn {
    /// `handle`: requests until the connection is to close.
    fn handle(&mut self) {
        loop {
            self.close = true;
            self.handle_one_request();
            if self.close || self.aborted {
                break;
            }
        }
        if !self.aborted {
            let _ = self.input.stream.shutdown(Shutdown::Write);
        }
    }

    fn handle_one_request(&mut self) {
        let line = match self.input.read_line(MAX_LINE + 1) {
            Ok(l) => l,
            Err(_) => return,
        };
        self.t_first = monotonic_ns();
        if line.len() > MAX_LINE {
            return self.send_error(414, "Request-URI Too Long");
        }
        if line.is_empty() {
            return;
        }
        match self.parse_request(&line) {
            Ok(head) => self.serve(head),
            Err(HeadEnd::Close) => {}
            Err(HeadEnd::Error(code, message)) => self.send_error(code, &message),
        }
    }

    /// `BaseHTTPRequestHandler.parse_request`, then the header block through `httparse`.
    fn parse_request(&mut self, raw: &[u8]) -> Result<Head, HeadEnd> {
        self.close = true;
        let requestline = py::latin1(raw);
        let requestline = requestline.trim_end_matches(['\r', '\n']);
        let words: Vec<&str> = requestline
            .split(py::is_py_space)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Err(HeadEnd::Close);
        }
        let mut request_version = "HTTP/0.9".to_string();
        if words.len() >= 3 {
            let version = words[words.len() - 1];
            let bad = || {
                HeadEnd::Error(
                    400,
                    format!("Bad request version ({})", py::repr_str(version)),
                )
            };
            let base = version.strip_prefix("HTTP/").ok_or_else(bad)?;
            let parts: Vec<&str> = base.split('.').collect();
            if parts.len() != 2
                || parts
                    .iter()
                    .any(|p| p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad());
            }
            let num = (
                parts[0].parse::<u64>().unwrap(),
                parts[1].parse::<u64>().unwrap(),
            );
            if num >= (1, 1) {
                self.close = false;
            }
            if num >= (2, 0) {
                return Err(HeadEnd::Error(
                    505,
                    format!("Invalid HTTP version ({base})"),
                ));
            }
            request_version = version.to_string();
        }
        if !(2..=3).contains(&words.len()) {
            return Err(HeadEnd::Error(
                400,
                format!("Bad request syntax ({})", py::repr_str(requestline)),
            ));
        }
        let command = words[0].to_string();
        let mut target = words[1].to_string();
        if words.len() == 2 {
            self.close = true;
            if command != "GET" {
                return Err(HeadEnd::Error(
                    400,
                    format!("Bad HTTP/0.9 request type ({})", py::repr_str(&command)),
                ));
            }
        }
        if target.starts_with("//") {
            target = format!("/{}", target.trim_start_matches('/'));
        }
        let headers = self.read_headers()?;
        let conntype = headers.get("Connection").unwrap_or("").to_lowercase();
        if conntype == "close" {
            self.close = true;
        } else if conntype == "keep-alive" {
            self.close = false;
        }
        let expect = headers.get("Expect").unwrap_or("").to_lowercase();
        if expect == "100-continue" && request_version.as_str() >= "HTTP/1.1" {
            let _ = self
                .input
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        Ok(Head {
            command,
            target,
            headers,
        })
    }

    /// `http.client.parse_headers`: lines up to the blank one (or EOF), then each parsed by
    /// `httparse`. Values keep their trailing blanks, as the mock's do.
    fn read_headers(&mut self) -> Result<Headers, HeadEnd> {
        let mut block = Vec::new();
        let mut lines = 0;
        loop {
            let line = self
                .input
                .read_line(MAX_LINE + 1)
                .map_err(|_| HeadEnd::Close)?;
            if line.len() > MAX_LINE {
                return Err(HeadEnd::Error(431, "Line too long".into()));
            }
            lines += 1;
            if lines > MAX_HEADERS {
                return Err(HeadEnd::Error(431, "Too many headers".into()));
            }
            if line == b"\r\n" || line == b"\n" || line.is_empty() {
                break;
            }
            block.extend_from_slice(&line);
            if !line.ends_with(b"\n") {
                block.extend_from_slice(b"\r\n"); // the last line before EOF
            }
        }
        block.extend_from_slice(b"\r\n");
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&block, &mut parsed) {
            Ok(httparse::Status::Complete((_, headers))) => {
                let base = block.as_ptr() as usize;
                let pairs = headers
                    .iter()
                    .map(|h| {
                        // httparse trims trailing blanks; Python keeps them: extend the value
                        // to the end of its line.
                        let from = h.value.as_ptr() as usize - base;
                        let mut to = from + h.value.len();
                        while to < block.len() && block[to] != b'\r' && block[to] != b'\n' {
                            to += 1;
                        }
                        let value = if h.value.is_empty() {
                            String::new()
                        } else {
                            py::latin1(&block[from..to])
                        };
                        (h.name.to_string(), value)
                    })
                    .collect();
                Ok(Headers(pairs))
            }
            Ok(httparse::Status::Partial) => Err(HeadEnd::Error(
                400,
                "invalid header block (incomplete)".into(),
            )),
            Err(e) => Err(HeadEnd::Error(400, format!("invalid header block ({e})"))),
        }
    }

    /// `send_error`, as the mock overrides it: logged and answered as 400, then closed.
    fn send_error(&mut self, code: u16, message: &str) {
        let reason = format!("bad request head ({code}): {message}");
        self.seq += 1;
        self.close = true;
        self.record(&Record {
            status: Some(400),
            error: Some(&reason),
            ..Record::default()
        });
        let (body, ctype) = check::failure(None, 400, &reason, None);
        self.reply(400, &body, ctype);
    }

    fn reply(&mut self, status: u16, body: &[u8], ctype: &str) {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            reason_phrase(status),
            body.len()
        );
        if self.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        if self.input.stream.write_all(&bytes).is_err() {
            self.close = true;
        }
        if self.cfg.verbose {
            eprintln!(
                "swqos-test-relay conn {} seq {}: {status}",
                self.conn_id, self.seq
            );
        }
    }

    /// One `--log` line, with the mock's keys in the mock's order.
    fn record(&self, r: &Record<'_>) {
        if self.cfg.log.is_none() {
            return;
        }
        let opt_str = |s: Option<&str>| s.map_or("null".to_string(), py::dump_string);
        let mut line = format!(
            "{{\"t_ns\":{},\"t_first_ns\":{},\"listen\":{},\"peer\":{},\"conn\":{},\"seq\":{},\
             \"provider\":{},\"ok\":{},\"status\":{},\"error\":{},\"signature\":{},\"tx_len\":{}",
            r.t_done.unwrap_or_else(monotonic_ns),
            self.t_first,
            py::dump_string(&self.label),
            py::dump_string(&self.peer),
            self.conn_id,
            self.seq,
            opt_str(r.provider),
            r.ok,
            r.status.map_or("null".to_string(), |s| s.to_string()),
            opt_str(r.error),
            opt_str(r.signature),
            r.tx_len.map_or("null".to_string(), |n| n.to_string()),
        );
        if let Some((sigs, id)) = r.bundle {
            let sigs: Vec<String> = sigs.iter().map(|s| py::dump_string(s)).collect();
            line.push_str(&format!(
                ",\"signatures\":[{}],\"bundle_id\":{}",
                sigs.join(","),
                py::dump_string(id)
            ));
        }
        line.push('}');
        self.cfg.write_log(&line);
    }

    /// `read_body`: the body per `Content-Length`.
    fn read_body(&mut self, headers: &Headers) -> Result<Vec<u8>, Reject> {
        if !headers.get_all("Transfer-Encoding").is_empty() {
            return Err(Reject::closing(
                400,
                "Transfer-Encoding is not allowed (Content-Length only)",
            ));
        }
        let cls = headers.get_all("Content-Length");
        if cls.len() != 1 {
            return Err(Reject::closing(
                400,
                "exactly one Content-Length header required",
            ));
        }
        let text = cls[0].trim_matches(py::is_py_space);
        if text.is_empty()
            || !text.bytes().all(|b| b.is_ascii_digit())
            || (text.len() > 1 && text.starts_with('0'))
        {
            return Err(Reject::closing(
                400,
                format!("bad Content-Length {}", py::repr_str(cls[0])),
            ));
        }
        // Digits only: too many for a usize is certainly more than MAX_BODY.
        let n = text.parse::<usize>().unwrap_or(usize::MAX);
        if n > MAX_BODY {
            return Err(Reject::closing(
                400,
                format!("Content-Length {text} exceeds {MAX_BODY}"),
            ));
        }
        let body = self.input.read_body(n, self.cfg.body_timeout);
        if body.len() < n {
            return Err(Reject::closing(
                400,
                format!(
                    "body shorter than Content-Length ({} of {n} bytes)",
                    body.len()
                ),
            ));
        }
        Ok(body)
    }

    /// Closes the connection with RST (`SO_LINGER` 0), sending no FIN.
    fn abort(&mut self) {
        self.aborted = true;
        self.close = true;
        let _ = socket2::SockRef::from(&self.input.stream).set_linger(Some(Duration::ZERO));
        // Dropping the connection thread's stream (when `handle` returns) closes it.
    }

    /// `serve`: check and answer one request.
    fn serve(&mut self, head: Head) {
        let cfg = Arc::clone(&self.cfg);
        self.seq += 1;
        let mut provider: Option<&'static Spec> = None;
        let mut sig: Option<String> = None;
        let mut tx_len: Option<usize> = None;
        let mut rpc_id: Option<Json> = None;
        let mut bundle: Option<(Vec<String>, String)> = None;
        let reset = cfg.reset_after.is_some_and(|n| self.seq > n);
        let reset_reason = || {
            format!(
                "connection reset after {} requests",
                cfg.reset_after.unwrap_or(0)
            )
        };
        let outcome = (|| -> Result<u64, Reject> {
            if head.command != "POST" {
                self.close = true;
                return Err(Reject::closing(
                    400,
                    format!("method must be POST, not {}", head.command),
                ));
            }
            let body = self.read_body(&head.headers)?;
            let t_done = monotonic_ns();
            let (spec, path, query) =
                check::route(&cfg.rules, self.pinned, &head.target, &head.headers, &body)?;
            provider = Some(spec);
            // Shape problems come first, but the transaction is still read for the log.
            let mut shape_error =
                check::check_shape(&cfg.rules, spec, &path, &query, &head.headers).err();
            let extracted = (|| -> Result<(), Reject> {
                if spec.kind == Kind::Bundle {
                    let (raws, id) = check::extract_bundle(&body, cfg.rules.strict)?;
                    rpc_id = Some(id);
                    tx_len = Some(raws.iter().map(Vec::len).sum());
                    let mut sigs = Vec::new();
                    for (i, raw) in raws.iter().enumerate() {
                        sigs.push(check::parse_tx(raw).map_err(|e| {
                            Reject::new(400, format!("invalid transaction {i}: {e}"))
                        })?);
                    }
                    bundle = Some((sigs, check::bundle_id(&raws)));
                } else {
                    let (raw, id) = check::extract_tx(spec, &body, cfg.rules.strict)?;
                    rpc_id = id;
                    tx_len = Some(raw.len());
                    sig = Some(
                        check::parse_tx(&raw)
                            .map_err(|e| Reject::new(400, format!("invalid transaction: {e}")))?,
                    );
                }
                Ok(())
            })();
            if let Err(e) = extracted {
                if e.crash {
                    return Err(e);
                }
                shape_error = shape_error.or(Some(e));
            }
            if reset {
                return Ok(t_done);
            }
            check::check_auth(&cfg.rules, spec, &path, &query, &head.headers)?;
            match shape_error {
                Some(e) => Err(e),
                None => Ok(t_done),
            }
        })();
        let name = provider.map(|p| p.name);
        match outcome {
            Ok(t_done) if reset => {
                let reason = reset_reason();
                self.record(&Record {
                    provider: name,
                    error: Some(&reason),
                    signature: sig.as_deref(),
                    tx_len,
                    t_done: Some(t_done),
                    bundle: bundle.as_ref(),
                    ..Record::default()
                });
                self.abort();
            }
            Ok(t_done) => {
                self.record(&Record {
                    provider: name,
                    ok: true,
                    status: Some(200),
                    signature: sig.as_deref(),
                    tx_len,
                    t_done: Some(t_done),
                    bundle: bundle.as_ref(),
                    ..Record::default()
                });
                if !cfg.delay.is_zero() {
                    std::thread::sleep(cfg.delay);
                }
                let result = match &bundle {
                    Some((_, id)) => id.clone(),
                    None => sig.clone().unwrap_or_default(),
                };
                let (body, ctype) = check::success(provider.unwrap(), &result, rpc_id.as_ref());
                self.reply(200, &body, ctype);
            }
            Err(e) if e.crash => {
                // The mock's handler dies on an uncaught exception: no line, no answer.
                self.close = true;
            }
            Err(e) => {
                if provider.is_none() && e.status != 404 {
                    // The body could not be read: name the provider from the path alone.
                    provider =
                        check::route(&cfg.rules, self.pinned, &head.target, &head.headers, b"")
                            .ok()
                            .map(|(p, _, _)| p);
                }
                let name = provider.map(|p| p.name);
                if reset {
                    let reason = reset_reason();
                    self.record(&Record {
                        provider: name,
                        error: Some(&reason),
                        signature: sig.as_deref(),
                        tx_len,
                        bundle: bundle.as_ref(),
                        ..Record::default()
                    });
                    self.abort();
                    return;
                }
                if e.close {
                    self.close = true;
                }
                self.record(&Record {
                    provider: name,
                    status: Some(e.status),
                    error: Some(&e.reason),
                    signature: sig.as_deref(),
                    tx_len,
                    bundle: bundle.as_ref(),
                    ..Record::default()
                });
                if !cfg.delay.is_zero() {
                    std::thread::sleep(cfg.delay);
                }
                let (body, ctype) = check::failure(provider, e.status, &e.reason, rpc_id.as_ref());
                self.reply(e.status, &body, ctype);
            }
        }
    }
}
