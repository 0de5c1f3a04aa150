//! The mock SWQOS relay (`tests/relay/mock_relay.py`) against the requests our data plane
//! writes (`swqos_wire::relay`): every provider's request is recognised, checked and answered
//! over one keep-alive connection; wrong tokens, malformed bodies and invalid transactions are
//! refused with the relay's status; `--reset-after` resets connections. Loopback only, no root.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swqos_tests::{samples, workspace, Sample, Scratch};
use swqos_wire::relay::{Endpoint, Provider, RequestTemplate};
use swqos_wire::solana::Transaction;

/// Every wait in this file is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The token the mock expects from `p` (with characters that need percent-encoding in queries
/// and paths).
fn token(p: Provider) -> String {
    format!("tok/{}+k", p.name())
}

/// A running mock relay.
struct Mock {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, also the Host header we send.
    addr: String,
    log: PathBuf,
    stdout_rest: Option<JoinHandle<String>>,
}

impl Mock {
    /// Starts the mock on an ephemeral loopback port with `--strict` and `args`, and waits for
    /// its ready line.
    fn start(scratch: &Scratch, name: &str, args: &[String]) -> Mock {
        let script = workspace().join("tests/relay/mock_relay.py");
        let log = scratch.path(&format!("{name}.jsonl"));
        let stderr = fs::File::create(scratch.path(&format!("{name}.err"))).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--strict",
                "--body-timeout-ms",
                "300",
            ])
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn python3 tests/relay/mock_relay.py (is python3 installed?)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout_rest = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            rest
        });
        let mut mock = Mock {
            child: Some(child),
            addr: String::new(),
            log,
            stdout_rest: Some(stdout_rest),
        };
        let first = rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "mock relay printed no ready line within {TIMEOUT:?}:\n{}",
                fs::read_to_string(scratch.path(&format!("{name}.err"))).unwrap_or_default()
            )
        });
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; stderr:\n{}",
                    fs::read_to_string(scratch.path(&format!("{name}.err"))).unwrap_or_default()
                )
            })
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        mock.addr = addr;
        mock
    }

    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(&self.addr).expect("connect to the mock relay");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Every log line so far.
    fn log(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
            .collect()
    }

    /// SIGTERM; the mock must exit 0 within the timeout and say so.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill with the pid of our own child and a standard signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mock relay ignored SIGTERM for {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "mock relay exited with {status}");
        let rest = self.stdout_rest.take().unwrap().join().unwrap();
        assert_eq!(rest.trim(), "stopped");
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body {:?}: {e}", self.text()))
    }
}

/// A keep-alive client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Sends `bytes` as MSS-sized writes (a 1232-byte transaction's request is two segments,
    /// as the data plane sends it).
    fn send(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(1448) {
            self.stream.write_all(chunk).expect("write request");
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one response: status line, headers, `Content-Length` body.
    fn response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ascii head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status: u16 = parts.next().unwrap().parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .expect("Content-Length in response")
            .1
            .parse()
            .unwrap();
        while self.buf.len() < head_end + 4 + len {
            self.fill()?;
        }
        let body = self.buf[head_end + 4..head_end + 4 + len].to_vec();
        self.buf.drain(..head_end + 4 + len);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn exchange(&mut self, request: &[u8]) -> Response {
        self.send(request);
        self.response().expect("read response")
    }

    fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    /// After `Connection: close`, the mock closes: the next read sees EOF.
    fn assert_closed(&mut self) {
        assert!(self.buf.is_empty(), "bytes after the last response");
        let mut b = [0u8; 1];
        assert_eq!(self.stream.read(&mut b).expect("read after close"), 0);
    }
}

/// The request the data plane writes for `tx` to `p` at `host` with `token`.
fn request(p: Provider, host: &str, token: &str, tx: &[u8]) -> Vec<u8> {
    let t = RequestTemplate::new(
        p,
        Endpoint {
            host,
            path: None,
            token: Some(token),
        },
    )
    .unwrap();
    let mut buf = vec![0u8; t.len(tx.len())];
    let n = t.write(tx, &mut [&mut buf[..]]).unwrap();
    assert_eq!(n, buf.len());
    buf
}

/// The 200 body each provider's relay answers with (see tests/relay/README.md).
fn expected_success(p: Provider, sig: &str, r: &Response) {
    assert_eq!(r.status, 200, "{p}: {}", r.text());
    match p {
        Provider::ZeroSlot => {
            assert_eq!(r.header("Content-Type"), Some("text/plain"));
            assert_eq!(r.text(), sig);
        }
        Provider::Bloxroute | Provider::NextBlock | Provider::BlockRazor => {
            assert_eq!(r.json(), json!({ "signature": sig }), "{p}");
        }
        Provider::FlashBlock => {
            assert_eq!(
                r.json(),
                json!({"success": true, "data": {"signatures": [sig]}})
            );
        }
        _ => assert_eq!(
            r.json(),
            json!({"jsonrpc": "2.0", "result": sig, "id": 1}),
            "{p}"
        ),
    }
}

/// The error message of a refusal (text for 0slot, a JSON-RPC error for the others).
fn error_message(p: Provider, r: &Response) -> String {
    if p == Provider::ZeroSlot {
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        return r.text().to_string();
    }
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0", "{p}: {v}");
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{p}: no error message in {v}"))
        .to_string()
}

fn token_args() -> Vec<String> {
    Provider::ALL
        .iter()
        .filter(|p| p.needs_token())
        .flat_map(|&p| ["--token".to_string(), format!("{}={}", p.name(), token(p))])
        .collect()
}

fn valid_samples() -> Vec<Sample> {
    let all = samples();
    let pick = ["max-legacy", "max-v0", "tx-0", "tx-1", "tx-3"];
    let chosen: Vec<Sample> = pick
        .iter()
        .map(|n| all.iter().find(|s| &s.name == n).expect(n).clone())
        .collect();
    assert!(chosen.iter().filter(|s| s.bytes.len() == 1232).count() == 2);
    chosen
}

#[test]
fn every_provider_is_accepted_over_one_keep_alive_connection() {
    let scratch = Scratch::new("mock-relay-ok");
    let mock = Mock::start(&scratch, "ok", &token_args());
    let txs = valid_samples();

    let mut ports = Vec::new();
    for p in Provider::ALL {
        let mut conn = mock.connect();
        for s in &txs {
            let sig = s.signature.as_deref().unwrap();
            let r = conn.exchange(&request(p, &mock.addr, &token(p), &s.bytes));
            expected_success(p, sig, &r);
            assert_eq!(r.header("Connection"), None, "{p} keeps the connection");
        }
        ports.push((p, conn.local_port()));
    }

    // Pipelined requests are answered in order on the same connection.
    let mut conn = mock.connect();
    let mut burst = Vec::new();
    for s in &txs {
        burst.extend(request(
            Provider::Jito,
            &mock.addr,
            &token(Provider::Jito),
            &s.bytes,
        ));
    }
    conn.send(&burst);
    for s in &txs {
        let r = conn.response().unwrap();
        expected_success(Provider::Jito, s.signature.as_deref().unwrap(), &r);
    }

    let log = mock.log();
    assert_eq!(log.len(), (Provider::ALL.len() + 1) * txs.len());
    let mut conns = Vec::new();
    for (i, (p, port)) in ports.iter().enumerate() {
        let lines = &log[i * txs.len()..(i + 1) * txs.len()];
        let conn = lines[0]["conn"].as_u64().unwrap();
        assert!(!conns.contains(&conn), "connection ids are distinct");
        conns.push(conn);
        let mut last_t = 0;
        for (j, (line, s)) in lines.iter().zip(&txs).enumerate() {
            assert_eq!(line["provider"], p.name(), "{line}");
            assert_eq!(line["ok"], true, "{line}");
            assert_eq!(line["status"], 200);
            assert_eq!(line["error"], Value::Null);
            assert_eq!(line["signature"], s.signature.as_deref().unwrap());
            assert_eq!(line["tx_len"], s.bytes.len());
            assert_eq!(line["conn"], conn, "one connection per provider");
            assert_eq!(line["seq"], j + 1);
            assert_eq!(line["peer"], format!("127.0.0.1:{port}"));
            assert_eq!(line["listen"], mock.addr.as_str());
            let t = line["t_ns"].as_u64().unwrap();
            assert!(line["t_first_ns"].as_u64().unwrap() <= t);
            assert!(t >= last_t, "monotonic receive timestamps");
            last_t = t;
        }
    }
    mock.stop();
}

#[test]
fn bad_tokens_shapes_and_transactions_are_refused() {
    let scratch = Scratch::new("mock-relay-bad");
    let mock = Mock::start(&scratch, "bad", &token_args());
    let good = &valid_samples()[2];
    let sig = good.signature.as_deref().unwrap();
    let mut refusals = 0;

    // Wrong token: 403 from 0slot, 401 from the others; the connection stays usable.
    for p in Provider::ALL.into_iter().filter(|p| p.needs_token()) {
        let mut conn = mock.connect();
        let r = conn.exchange(&request(p, &mock.addr, "wrong-token", &good.bytes));
        let want = if p == Provider::ZeroSlot { 403 } else { 401 };
        assert_eq!(r.status, want, "{p}: {}", r.text());
        assert!(
            error_message(p, &r).starts_with("invalid token"),
            "{p}: {}",
            r.text()
        );
        refusals += 1;
        expected_success(
            p,
            sig,
            &conn.exchange(&request(p, &mock.addr, &token(p), &good.bytes)),
        );
    }

    // Jito needs the same token in `uuid` and `x-jito-auth`.
    let jito = Provider::Jito;
    let mut conn = mock.connect();
    let req = String::from_utf8(request(jito, &mock.addr, &token(jito), &good.bytes)).unwrap();
    let req = req.replace(
        &format!("x-jito-auth: {}", token(jito)),
        "x-jito-auth: other",
    );
    let r = conn.exchange(req.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    refusals += 1;

    // Every invalid sample, to every provider: 400 with the reason swqos-wire gives.
    let invalid: Vec<Sample> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_some())
        .collect();
    assert_eq!(invalid.len(), 7);
    for p in Provider::ALL {
        let mut conn = mock.connect();
        for s in &invalid {
            let reason = Transaction::parse(&s.bytes).unwrap_err().reason();
            let r = conn.exchange(&request(p, &mock.addr, &token(p), &s.bytes));
            assert_eq!(r.status, 400, "{p} {}: {}", s.name, r.text());
            assert_eq!(
                error_message(p, &r),
                format!("invalid transaction: {reason}"),
                "{p} {}",
                s.name
            );
            refusals += 1;
        }
        // Refusals keep the connection.
        expected_success(
            p,
            sig,
            &conn.exchange(&request(p, &mock.addr, &token(p), &good.bytes)),
        );
    }

    let with_body = |p: Provider, edit: &dyn Fn(&mut Vec<u8>)| -> Vec<u8> {
        let req = request(p, &mock.addr, &token(p), &good.bytes);
        let split = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(req[..split].to_vec()).unwrap();
        let mut body = req[split..].to_vec();
        edit(&mut body);
        let cl = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .to_string();
        let mut out = head
            .replace(
                &format!("Content-Length: {cl}\r\n"),
                &format!("Content-Length: {}\r\n", body.len()),
            )
            .into_bytes();
        out.extend(body);
        out
    };

    let mut conn = mock.connect();
    // A truncated JSON body (Content-Length consistent with it).
    let r = conn.exchange(&with_body(jito, &|b| b.truncate(b.len() - 10)));
    assert_eq!(r.status, 400);
    assert!(
        error_message(jito, &r).starts_with("body is not JSON"),
        "{}",
        r.text()
    );
    // Bad base64 inside the JSON and as BlockRazor's bare body.
    for p in [jito, Provider::BlockRazor] {
        let r = conn.exchange(&with_body(p, &|b| {
            // Inside the base64: after `["` in JSON-RPC, anywhere in a bare body.
            let at = b.windows(2).position(|w| w == b"[\"").map_or(0, |i| i + 2) + 10;
            b[at] = b'!';
        }));
        assert_eq!(r.status, 400, "{p}");
        assert!(
            error_message(p, &r).starts_with("bad base64"),
            "{}",
            r.text()
        );
    }
    // Wrong fixed parameters.
    let r = conn.exchange(&with_body(Provider::HeliusSender, &|b| {
        let s = String::from_utf8(b.clone()).unwrap();
        *b = s
            .replace("\"maxRetries\":0", "\"maxRetries\":false")
            .into_bytes();
    }));
    assert_eq!(r.status, 400);
    assert!(
        error_message(jito, &r).starts_with("params[1] is"),
        "{}",
        r.text()
    );
    // Wrong Content-Type, and (strict) a header the template never writes.
    let req = String::from_utf8(request(jito, &mock.addr, &token(jito), &good.bytes)).unwrap();
    let r = conn.exchange(req.replace("application/json", "text/plain").as_bytes());
    assert_eq!(r.status, 400);
    assert!(
        error_message(jito, &r).contains("Content-Type"),
        "{}",
        r.text()
    );
    let r = conn.exchange(req.replacen("\r\n", "\r\nUser-Agent: x\r\n", 1).as_bytes());
    assert_eq!(r.status, 400);
    assert!(
        error_message(jito, &r).contains("user-agent"),
        "{}",
        r.text()
    );
    // Unknown path.
    let r = conn.exchange(
        req.replace("/api/v1/transactions", "/api/v1/bundles")
            .as_bytes(),
    );
    assert_eq!(r.status, 404);
    refusals += 7;
    // All of these kept the connection.
    expected_success(jito, sig, &conn.exchange(req.as_bytes()));

    // A body shorter than its Content-Length: 400 after the body timeout, and the mock closes
    // (it can no longer tell where the next request starts).
    let full = request(
        Provider::ZeroSlot,
        &mock.addr,
        &token(Provider::ZeroSlot),
        &good.bytes,
    );
    let r = conn.exchange(&full[..full.len() - 5]);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        error_message(Provider::ZeroSlot, &r).starts_with("body shorter than Content-Length"),
        "{}",
        r.text()
    );
    conn.assert_closed();
    refusals += 1;

    let log = mock.log();
    let refused: Vec<&Value> = log.iter().filter(|l| l["ok"] == false).collect();
    assert_eq!(refused.len(), refusals, "one log line per refusal");
    for l in &refused {
        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
        assert!(l["status"].as_u64().unwrap() >= 400, "{l}");
    }
    // Invalid transactions are logged with their reason; valid ones behind a bad token still
    // show their signature.
    assert!(refused
        .iter()
        .any(|l| l["error"] == "invalid transaction: no signatures"));
    assert!(refused
        .iter()
        .any(|l| l["status"] == 403 && l["signature"] == sig));
    mock.stop();
}

#[test]
fn reset_after_n_requests_and_a_new_connection_works() {
    let scratch = Scratch::new("mock-relay-reset");
    let args: Vec<String> = ["--reset-after", "2", "--token-all", "secret-1"]
        .map(String::from)
        .to_vec();
    let mock = Mock::start(&scratch, "reset", &args);
    let txs = valid_samples();
    for p in [Provider::Jito, Provider::ZeroSlot] {
        let mut conn = mock.connect();
        for s in &txs[..2] {
            let r = conn.exchange(&request(p, &mock.addr, "secret-1", &s.bytes));
            expected_success(p, s.signature.as_deref().unwrap(), &r);
        }
        conn.send(&request(p, &mock.addr, "secret-1", &txs[2].bytes));
        match conn.response() {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{p}: {e}"),
            Ok(r) => panic!("{p}: third request answered: {r:?}"),
        }
        // A new connection takes the retry.
        let mut conn = mock.connect();
        let r = conn.exchange(&request(p, &mock.addr, "secret-1", &txs[2].bytes));
        expected_success(p, txs[2].signature.as_deref().unwrap(), &r);
    }

    let log = mock.log();
    assert_eq!(log.len(), 8);
    for (k, p) in [Provider::Jito, Provider::ZeroSlot].iter().enumerate() {
        let lines = &log[k * 4..k * 4 + 4];
        assert!(lines.iter().all(|l| l["provider"] == p.name()));
        assert_eq!(lines.map_ok(), [true, true, false, true]);
        assert_eq!(lines[2]["error"], "connection reset after 2 requests");
        assert_eq!(lines[2]["conn"], lines[0]["conn"]);
        assert_ne!(lines[3]["conn"], lines[0]["conn"]);
        // Delivered exactly once: the reset request's signature is logged ok once, by the retry.
        let sig = txs[2].signature.as_deref().unwrap();
        assert_eq!(lines[2]["signature"], sig);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l["ok"] == true && l["signature"] == sig)
                .count(),
            1
        );
    }
    mock.stop();
}

trait OkColumn {
    fn map_ok(&self) -> Vec<bool>;
}

impl OkColumn for [Value] {
    fn map_ok(&self) -> Vec<bool> {
        self.iter().map(|l| l["ok"].as_bool().unwrap()).collect()
    }
}
