//! HTTP/1.1 responses from a relay: status line, headers (`Content-Length`, chunked, or to the
//! close), interim `1xx` skipped, bounded sizes, a deadline; and the reply's signature or error.

use super::*;

/// A response's status line and the headers that matter.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) reason: String,
    /// The connection must be closed after this response.
    pub(super) close: bool,
}

/// Most headers a relay's response may have.
const MAX_HEADERS: usize = 64;

/// A parsed response head: status, reason, and how the body is framed.
struct RawHead {
    status: u16,
    reason: String,
    close: bool,
    length: Option<usize>,
    chunked: bool,
    other_coding: bool,
}

impl RawHead {
    fn of(resp: &httparse::Response<'_, '_>) -> Result<RawHead, String> {
        let version = resp.version.unwrap_or(1);
        let mut head = RawHead {
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").trim().to_string(),
            close: version == 0,
            length: None,
            chunked: false,
            other_coding: false,
        };
        for h in resp.headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| format!("response header {} is not UTF-8", h.name))?
                .trim();
            if h.name.eq_ignore_ascii_case("content-length") {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {:?}", truncate(value)))?;
                if head.length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length headers".to_string());
                }
                head.length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if last.eq_ignore_ascii_case("chunked") {
                    head.chunked = true;
                } else {
                    head.other_coding = true;
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                        head.close = false;
                    }
                }
            }
        }
        Ok(head)
    }
}

/// Reads responses from a stream, keeping bytes read past a line in a reused buffer.
pub(super) struct ResponseReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ResponseReader {
    pub(super) fn new() -> ResponseReader {
        ResponseReader {
            buf: vec![0; 4096],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes into the buffer (growing it up to `MAX_HEAD` + 4 KiB).
    pub(super) fn fill<R: Read>(&mut self, r: &mut R, deadline: Instant) -> Result<(), String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD + 4096 {
                let len = (self.buf.len() * 2).min(MAX_HEAD + 4096);
                self.buf.resize(len, 0);
            } else {
                return Err(format!("response line longer than {MAX_HEAD} bytes"));
            }
        }
        loop {
            if Instant::now() >= deadline {
                return Err(timeout_message());
            }
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err("connection closed by the relay".to_string()),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(timeout_message())
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// One line without its CRLF (or LF).
    pub(super) fn line<R: Read>(&mut self, r: &mut R, deadline: Instant) -> Result<String, String> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let mut line = &avail[..i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let s = String::from_utf8_lossy(line).into_owned();
                self.start += i + 1;
                return Ok(s);
            }
            if avail.len() >= MAX_HEAD {
                return Err(format!("response line longer than {MAX_HEAD} bytes"));
            }
            self.fill(r, deadline)?;
        }
    }

    /// Appends exactly `n` body bytes to `body`.
    pub(super) fn take<R: Read>(
        &mut self,
        r: &mut R,
        deadline: Instant,
        mut n: usize,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        if body.len() + n > MAX_BODY {
            return Err(format!("response body larger than {MAX_BODY} bytes"));
        }
        while n > 0 {
            if self.start == self.end {
                self.fill(r, deadline)?;
            }
            let k = n.min(self.end - self.start);
            body.extend_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
            n -= k;
        }
        Ok(())
    }

    /// Reads and parses one response head (status line and headers, with `httparse`), at most
    /// `MAX_HEAD` bytes, and says how its body is framed.
    fn head<R: Read>(&mut self, r: &mut R, deadline: Instant) -> Result<RawHead, String> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(avail) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = RawHead::of(&resp)?;
                    self.start += n;
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if avail.len() >= MAX_HEAD => {
                    return Err(format!("response head larger than {MAX_HEAD} bytes"));
                }
                Ok(httparse::Status::Partial) => self.fill(r, deadline)?,
                Err(e) => {
                    let line = avail.split(|&b| b == b'\n').next().unwrap_or(&[]);
                    return Err(format!(
                        "bad status line or headers ({e}): {:?}",
                        truncate(&String::from_utf8_lossy(line))
                    ));
                }
            }
        }
    }

    /// Reads one complete response (skipping interim 1xx ones) into `body`.
    pub(super) fn read_response<R: Read>(
        &mut self,
        r: &mut R,
        deadline: Instant,
        body: &mut Vec<u8>,
    ) -> Result<Head, String> {
        body.clear();
        loop {
            let head = self.head(r, deadline)?;
            let (status, reason) = (head.status, head.reason);
            let (mut close, length, chunked, other_coding) =
                (head.close, head.length, head.chunked, head.other_coding);
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err("the relay switched protocols (101)".to_string());
                }
                continue; // interim response: the real one follows
            }
            if status == 204 || status == 304 {
                // No body by definition.
            } else if chunked && !other_coding {
                self.read_chunked(r, deadline, body)?;
            } else if other_coding {
                self.read_to_close(r, deadline, body)?;
                close = true;
            } else if let Some(n) = length {
                self.take(r, deadline, n, body)?;
            } else {
                self.read_to_close(r, deadline, body)?;
                close = true;
            }
            if self.start != self.end {
                // Bytes beyond the response: the stream is out of step; start over.
                self.start = 0;
                self.end = 0;
                close = true;
            }
            return Ok(Head {
                status,
                reason,
                close,
            });
        }
    }

    pub(super) fn read_chunked<R: Read>(
        &mut self,
        r: &mut R,
        deadline: Instant,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        loop {
            let line = self.line(r, deadline)?;
            let size = line.split(';').next().unwrap_or("").trim();
            let n = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size {:?}", truncate(&line)))?;
            if n == 0 {
                // Trailers up to the empty line.
                while !self.line(r, deadline)?.is_empty() {}
                return Ok(());
            }
            self.take(r, deadline, n, body)?;
            if !self.line(r, deadline)?.is_empty() {
                return Err("chunk not followed by CRLF".to_string());
            }
        }
    }

    pub(super) fn read_to_close<R: Read>(
        &mut self,
        r: &mut R,
        deadline: Instant,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        loop {
            let k = self.end - self.start;
            if body.len() + k > MAX_BODY {
                return Err(format!("response body larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&self.buf[self.start..self.end]);
            self.start = 0;
            self.end = 0;
            match self.fill(r, deadline) {
                Ok(()) => {}
                Err(e) if e == "connection closed by the relay" => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

pub(super) fn timeout_message() -> String {
    format!("no response within {} s", READ_TIMEOUT.as_secs_f64())
}

/// At most `MAX_ERROR_TEXT` bytes of `s`, on a character boundary.
pub(super) fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The relay's answer from its status and body.
pub(super) fn parse_reply(status: u16, reason: &str, body: &[u8]) -> Reply {
    let ok = (200..300).contains(&status);
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut signature = None;
    let mut error = None;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            let str_at = |v: Option<&serde_json::Value>| {
                v.and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            signature = str_at(v.get("result"))
                .or_else(|| str_at(v.get("signature")))
                .or_else(|| str_at(v.pointer("/data/signatures/0")))
                .or_else(|| str_at(Some(&v)));
            error = match v.get("error") {
                Some(serde_json::Value::Null) | None => None,
                Some(e) => Some(
                    e.get("message")
                        .and_then(|m| m.as_str())
                        .map(truncate)
                        .unwrap_or_else(|| truncate(&e.to_string())),
                ),
            };
        }
        Err(_) => {
            if ok && !text.is_empty() && !text.contains(char::is_whitespace) && text.len() <= 128 {
                signature = Some(text.to_string());
            }
        }
    }
    if !ok && error.is_none() {
        error = Some(if text.is_empty() {
            format!("HTTP {status} {reason}").trim_end().to_string()
        } else {
            truncate(text)
        });
    }
    if !ok {
        // A refusal carries no accepted signature, whatever the body says.
        signature = None;
    }
    Reply {
        status,
        signature,
        error,
    }
}
