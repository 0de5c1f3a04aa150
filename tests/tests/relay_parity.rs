//! The compiled relay (`swqos-test-relay`) against the Python mock (`tests/relay/mock_relay.py`,
//! the request-shape oracle): the same requests, sent to both, must get byte-identical answers
//! (status line, headers, body; how the connection ends) and the same `--log` lines apart from
//! the times and the client's port. Every provider, valid and invalid transactions, bundles,
//! wrong tokens, malformed heads, bodies and query strings, pinned listeners and path overrides,
//! `--strict`, `--reset-after`, the body timeout, and a few hundred seeded random body
//! mutations. Then the compiled relay alone: a connection holding a half-sent request does not
//! hold up another connection's answer. Loopback only, no root.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::{require, samples, workspace, Sample, Scratch};
use swqos_wire::relay::{jito_bundle_request, Endpoint, Provider, RequestTemplate};

/// Every wait in this file is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The Host header of every request (both relays only require one, non-empty).
const HOST: &str = "relay.test:8080";

/// The compiled relay, built with this test by Cargo.
const COMPILED: &str = env!("CARGO_BIN_EXE_swqos-test-relay");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavor {
    Python,
    Compiled,
}

/// A running relay.
struct Relay {
    flavor: Flavor,
    child: Option<Child>,
    /// The listeners, as printed on the ready line (`ADDR:PORT[=PROVIDER]`).
    labels: Vec<String>,
    log: PathBuf,
    stdout_rest: Option<JoinHandle<String>>,
}

impl Relay {
    fn start(flavor: Flavor, scratch: &Scratch, name: &str, args: &[String]) -> Relay {
        let tag = format!("{name}-{flavor:?}");
        let log = scratch.path(&format!("{tag}.jsonl"));
        let err_path = scratch.path(&format!("{tag}.err"));
        let stderr = fs::File::create(&err_path).unwrap();
        let mut cmd = match flavor {
            Flavor::Python => {
                let mut c = Command::new("python3");
                c.arg(workspace().join("tests/relay/mock_relay.py"));
                c
            }
            Flavor::Compiled => Command::new(COMPILED),
        };
        let mut child = cmd
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {flavor:?} relay: {e}"));
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
        let mut relay = Relay {
            flavor,
            child: Some(child),
            labels: Vec::new(),
            log,
            stdout_rest: Some(stdout_rest),
        };
        let first = rx.recv_timeout(TIMEOUT).unwrap_or_default();
        let Some(labels) = first.trim().strip_prefix("listening on ") else {
            panic!(
                "{flavor:?} relay: no ready line ({first:?}); stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            )
        };
        relay.labels = labels.split(' ').map(String::from).collect();
        relay
    }

    /// `ADDR:PORT` of listener `i`.
    fn addr(&self, i: usize) -> &str {
        self.labels[i].split('=').next().unwrap()
    }

    fn connect(&self, i: usize) -> TcpStream {
        let s = TcpStream::connect(self.addr(i)).expect("connect to the relay");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    fn log(&self) -> Vec<Value> {
        read_log(&self.log)
    }

    /// SIGTERM: exit 0 and say `stopped`.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill with the pid of our own child and a standard signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} ignored SIGTERM",
                self.flavor
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "{:?} relay exited with {status}",
            self.flavor
        );
        let rest = self.stdout_rest.take().unwrap().join().unwrap();
        assert_eq!(rest.trim(), "stopped", "{:?}", self.flavor);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_log(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

/// One exchange: `chunks` written on a fresh connection to listener `listener` (a pause between
/// chunks), then, with `half_close`, our write side shut; everything the relay sends is read
/// until it closes.
#[derive(Clone)]
struct Case {
    name: String,
    listener: usize,
    chunks: Vec<Vec<u8>>,
    half_close: bool,
}

impl Case {
    fn new(name: impl Into<String>, listener: usize, bytes: Vec<u8>) -> Case {
        Case {
            name: name.into(),
            listener,
            chunks: vec![bytes],
            half_close: true,
        }
    }
}

/// What a relay did with a case: every byte it sent, and how the connection ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    bytes: Vec<u8>,
    end: String,
}

impl Outcome {
    fn show(&self) -> String {
        format!(
            "{:?} then {}",
            String::from_utf8_lossy(&self.bytes),
            self.end
        )
    }
}

fn run_case(relay: &Relay, case: &Case) -> Outcome {
    let mut s = relay.connect(case.listener);
    for (i, chunk) in case.chunks.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    if case.half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "RST".to_string(),
            Err(e) => panic!("{:?} {}: read: {e}", relay.flavor, case.name),
        }
    };
    Outcome { bytes, end }
}

/// A log line without what legitimately differs: the times (checked for order), the client's
/// port, and the listener's port (replaced by its index).
fn normalize(mut line: Value, labels: &[String]) -> Value {
    let obj = line.as_object_mut().expect("log line is an object");
    let t = obj.remove("t_ns").and_then(|v| v.as_u64()).expect("t_ns");
    let t_first = obj
        .remove("t_first_ns")
        .and_then(|v| v.as_u64())
        .expect("t_first_ns");
    assert!(t_first <= t, "t_first_ns {t_first} after t_ns {t}");
    let peer = obj.remove("peer").expect("peer");
    assert!(
        peer.as_str().is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{peer}"
    );
    let listen = obj["listen"].as_str().expect("listen").to_string();
    let index = labels
        .iter()
        .position(|l| l.split('=').next() == Some(listen.as_str()))
        .unwrap_or_else(|| panic!("listen {listen} is none of {labels:?}"));
    obj.insert("listen".into(), Value::from(index));
    line
}

/// Starts both relays with `args`, runs every case on both (one connection at a time, in
/// order), and requires the same outcomes and the same log lines.
fn compare(name: &str, args: &[String], cases: &[Case]) {
    let scratch = Scratch::new(&format!("relay-parity-{name}"));
    let py = Relay::start(Flavor::Python, &scratch, name, args);
    let rs = Relay::start(Flavor::Compiled, &scratch, name, args);
    assert_eq!(py.labels.len(), rs.labels.len());
    for (a, b) in py.labels.iter().zip(&rs.labels) {
        assert_eq!(
            a.split_once('=').map(|x| x.1),
            b.split_once('=').map(|x| x.1)
        );
    }
    let mut mismatches = Vec::new();
    for case in cases {
        let want = run_case(&py, case);
        let got = run_case(&rs, case);
        if want != got {
            mismatches.push(format!(
                "case {}:\n  python:   {}\n  compiled: {}",
                case.name,
                want.show(),
                got.show()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases answered differently:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // Every line is written before its answer: the logs are complete now.
    let want: Vec<Value> = py
        .log()
        .into_iter()
        .map(|l| normalize(l, &py.labels))
        .collect();
    let got: Vec<Value> = rs
        .log()
        .into_iter()
        .map(|l| normalize(l, &rs.labels))
        .collect();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w, g, "log line {i} differs");
    }
    assert_eq!(want.len(), got.len(), "log line counts");
    assert!(!want.is_empty());
    py.stop();
    rs.stop();
}

/// Whether python3 is here (the oracle); without it the parity tests skip, or fail under CI.
fn have_python(test: &str) -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(test, (!ok).then(|| "python3 is not installed".to_string()))
}

// ---------------------------------------------------------------------------------------------
// requests

fn token(p: Provider) -> String {
    format!("tok/{}+k", p.name())
}

fn request_with(p: Provider, path: Option<&str>, token: &str, tx: &[u8]) -> Vec<u8> {
    let t = RequestTemplate::new(
        p,
        Endpoint {
            host: HOST,
            path,
            token: Some(token),
        },
    )
    .unwrap();
    let mut buf = vec![0u8; t.len(tx.len())];
    let n = t.write(tx, &mut [&mut buf[..]]).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn request(p: Provider, token: &str, tx: &[u8]) -> Vec<u8> {
    request_with(p, None, token, tx)
}

fn bundle(token: &str, txs: &[&[u8]]) -> Vec<u8> {
    jito_bundle_request(
        Endpoint {
            host: HOST,
            path: None,
            token: Some(token),
        },
        txs,
    )
    .unwrap()
}

/// (head, body) of a request.
fn split(req: &[u8]) -> (String, Vec<u8>) {
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8(req[..at].to_vec()).unwrap(),
        req[at..].to_vec(),
    )
}

/// `req` with its body replaced (Content-Length follows).
fn with_body(req: &[u8], body: &[u8]) -> Vec<u8> {
    let (head, old) = split(req);
    let mut out = head
        .replace(
            &format!("Content-Length: {}\r\n", old.len()),
            &format!("Content-Length: {}\r\n", body.len()),
        )
        .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `req` with its head edited as text.
fn with_head(req: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let (head, body) = split(req);
    let mut out = edit(&head).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A named edit of a request head.
type HeadEdit = Box<dyn Fn(&str) -> String>;

/// `head` without its `name` line.
fn without_header(head: &str, name: &str) -> String {
    head.split_inclusive("\r\n")
        .filter(|l| !l.starts_with(&format!("{name}:")))
        .collect()
}

fn valid() -> Vec<Sample> {
    let all = samples();
    ["max-legacy", "max-v0", "tx-0", "tx-3"]
        .iter()
        .map(|n| all.iter().find(|s| &s.name == n).expect(n).clone())
        .collect()
}

fn invalid() -> Vec<Sample> {
    samples()
        .into_iter()
        .filter(|s| s.invalid.is_some())
        .collect()
}

fn token_args() -> Vec<String> {
    Provider::ALL
        .iter()
        .filter(|p| p.needs_token())
        .flat_map(|&p| ["--token".to_string(), format!("{}={}", p.name(), token(p))])
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Hand-written body edits for JSON bodies: each (name, new body).
fn json_body_edits(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut edit = |name: &str, b: String| out.push((name.to_string(), b.into_bytes()));
    // Around the id.
    for (label, id) in [
        ("id2", "2"),
        ("id-str", "\"abc\""),
        ("id-true", "true"),
        ("id-float", "1.0"),
        ("id-null", "null"),
        ("id-list", "[1]"),
        ("id-big", "123456789012345678901234567890"),
        ("id-neg0", "-0"),
        ("id-esc", "\"a\\u00e9\\ud800\\n\\\"\""),
    ] {
        edit(label, text.replacen("\"id\":1", &format!("\"id\":{id}"), 1));
    }
    edit("jsonrpc-1", text.replacen("\"2.0\"", "\"1.0\"", 1));
    edit("jsonrpc-num", text.replacen("\"2.0\"", "2.0", 1));
    edit(
        "method",
        text.replacen("\"sendTransaction\"", "\"sendTx\"", 1),
    );
    edit("dup-key", text.replacen("{", "{\"id\":7,", 1));
    edit(
        "dup-key-quote",
        text.replacen("{", "{\"a'b\":1,\"a'b\":2,", 1),
    );
    edit(
        "extra-key",
        text.replacen("{", "{\"x\":[1,2.5e3,-0.0,1e400,NaN],", 1),
    );
    edit("spaces", text.replace(',', " ,\n\t").replace(':', " : "));
    edit("reordered", {
        let v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&String> = v.keys().collect();
        keys.reverse();
        let parts: Vec<String> = keys.iter().map(|k| format!("{:?}:{}", k, v[*k])).collect();
        format!("{{{}}}", parts.join(","))
    });
    edit("encoding", text.replacen("\"base64\"", "\"base58\"", 1));
    edit("true-as-1", text.replacen("true", "1", 1));
    edit("false-as-0", text.replacen("false", "0", 1));
    edit("zero-as-false", text.replacen(":0", ":false", 1));
    edit("zero-as-float", text.replacen(":0", ":0.0", 1));
    edit("params-3", text.replacen("]}", ",3]}", 1));
    edit(
        "params-obj",
        text.replacen("\"params\":[", "\"params\":{\"a\":[", 1),
    );
    edit("not-object", format!("[{text}]"));
    edit("trailing", format!("{text} x"));
    edit("trailing-ws", format!("\n {text}\r\n\t"));
    edit("bom", format!("\u{feff}{text}"));
    edit("trailing-comma", text.replacen("}", ",}", 1));
    edit("unterminated", text[..text.len() - 3].to_string());
    edit("empty", String::new());
    edit("ctrl-char", text.replacen("\"2.0\"", "\"2.\u{1}0\"", 1));
    edit("bad-escape", text.replacen("\"2.0\"", "\"2.\\x0\"", 1));
    edit("bad-u-escape", text.replacen("\"2.0\"", "\"\\u12g4\"", 1));
    edit(
        "surrogates",
        text.replacen("\"2.0\"", "\"\\ud83d\\ude00\\udc00\"", 1),
    );
    edit("utf8-key", text.replacen("{", "{\"é€😀\":\"ü\",", 1));
    edit(
        "deep-ok",
        text.replacen(
            "{",
            &format!("{{\"d\":{}1{},", "[".repeat(200), "]".repeat(200)),
            1,
        ),
    );
    edit(
        "big-int",
        text.replacen("{", &format!("{{\"n\":{},", "7".repeat(4301)), 1),
    );
    // Inside the base64.
    let b64_at = text
        .find("AAAA")
        .or_else(|| text.find("\"A"))
        .unwrap_or(text.len() / 2);
    for (label, repl) in [
        ("b64-bang", "!"),
        ("b64-pad-mid", "="),
        ("b64-space", " "),
        ("b64-nonascii", "é"),
        ("b64-escape", "\\u0041"),
    ] {
        let mut t = text.clone();
        t.replace_range(b64_at..b64_at + 1, repl);
        edit(label, t);
    }
    // Padding and trailing bits: the base64 ends right before the first `"` after it.
    if let Some(end) = text[b64_at..].find('"').map(|i| b64_at + i) {
        let mut t = text.clone();
        t.insert(end, '=');
        edit("b64-extra-pad", t);
        let mut t = text.clone();
        t.insert(end, 'Q');
        edit("b64-one-more", t);
        let mut t = text.clone();
        t.insert_str(end, "QQ");
        edit("b64-two-more", t);
        let mut t = text.clone();
        t.insert_str(end, "QR==");
        edit("b64-trailing-bits", t);
        let mut t = text.clone();
        t.insert_str(end, "QQ==QQ==");
        edit("b64-after-pad", t);
        let mut t = text.clone();
        t.replace_range(b64_at..end, "");
        edit("b64-empty", t);
        let mut t = text.clone();
        t.replace_range(b64_at..end, "=AAA");
        edit("b64-leading-pad", t);
    }
    out
}

/// A small deterministic generator for the random mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Up to three random byte edits, biased towards JSON's and base64's special characters.
fn mutate(body: &[u8], rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] =
        b"\"\\{}[],:0123456789-+.eE=/ntfuANI \t\r\n\x00\x01\x7f\x80\xbf\xc3\xed\xf0\xff";
    let mut b = body.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len().max(1));
        let byte = ALPHABET[rng.below(ALPHABET.len())];
        match rng.below(4) {
            0 if !b.is_empty() => b[at] = byte,
            1 if !b.is_empty() => {
                b.remove(at);
            }
            2 => b.insert(at.min(b.len()), byte),
            _ => {
                let cut = rng.below(b.len() + 1);
                b.truncate(cut);
            }
        }
    }
    b
}

/// The cases for every provider on an unpinned listener (0) of a relay started with
/// `token_args()`.
fn provider_cases(strict: bool) -> Vec<Case> {
    let good = valid();
    let mut cases = Vec::new();
    for p in Provider::ALL {
        let tok = token(p);
        // Valid transactions, pipelined on one connection, then every invalid one.
        let mut burst = Vec::new();
        for s in &good {
            burst.extend(request(p, &tok, &s.bytes));
        }
        cases.push(Case::new(format!("{p} valid pipelined"), 0, burst));
        let mut burst = Vec::new();
        for s in invalid() {
            burst.extend(request(p, &tok, &s.bytes));
        }
        cases.push(Case::new(format!("{p} invalid"), 0, burst));
        let base = request(p, &tok, &good[2].bytes);
        if p.needs_token() {
            cases.push(Case::new(
                format!("{p} wrong token"),
                0,
                request(p, "wrong", &good[2].bytes),
            ));
            // The token missing from every place it can be.
            let stripped = with_head(&base, |h| {
                h.replace(&format!("{}\r\n", tok), "\r\n")
                    .replace("tok%2Fjito%2Bk", "")
                    .replace(&format!("tok%2F{}%2Bk", p.name()), "")
            });
            cases.push(Case::new(format!("{p} missing token"), 0, stripped));
            // A trailing blank after a header token (kept by the mock: a different token).
            let padded = with_head(&base, |h| {
                h.replace(&format!("{tok}\r\n"), &format!("{tok}  \r\n"))
            });
            cases.push(Case::new(format!("{p} token with blanks"), 0, padded));
        }
        // Head edits.
        let edits: Vec<(&str, HeadEdit)> = vec![
            (
                "ctype",
                Box::new(|h: &str| h.replace("Content-Type: ", "Content-Type: x")),
            ),
            (
                "no ctype",
                Box::new(|h: &str| without_header(h, "Content-Type")),
            ),
            (
                "two ctypes",
                Box::new(|h: &str| {
                    let ct = h
                        .lines()
                        .find(|l| l.starts_with("Content-Type"))
                        .unwrap()
                        .to_string();
                    h.replacen("\r\n", &format!("\r\n{ct}\r\n"), 1)
                }),
            ),
            (
                "no host",
                Box::new(|h: &str| h.replacen(&format!("Host: {HOST}\r\n"), "", 1)),
            ),
            (
                "empty host",
                Box::new(|h: &str| h.replacen(&format!("Host: {HOST}"), "Host:", 1)),
            ),
            (
                "user-agent",
                Box::new(|h: &str| h.replacen("\r\n", "\r\nUser-Agent: x\r\nAccept: */*\r\n", 1)),
            ),
            (
                "repeated header",
                Box::new(|h: &str| h.replacen("\r\n", &format!("\r\nhost: {HOST}\r\n"), 1)),
            ),
            (
                "extra query",
                Box::new(|h: &str| {
                    let (line, rest) = h.split_once("\r\n").unwrap();
                    let (m, rest2) = line.split_once(' ').unwrap();
                    let (target, v) = rest2.rsplit_once(' ').unwrap();
                    let sep = if target.contains('?') { '&' } else { '?' };
                    format!("{m} {target}{sep}zz=1&aa=%41+b {v}\r\n{rest}")
                }),
            ),
            (
                "bad query",
                Box::new(|h: &str| h.replacen(" HTTP/1.1", "&novalue HTTP/1.1", 1)),
            ),
            (
                "empty query field",
                Box::new(|h: &str| h.replacen(" HTTP/1.1", "?&x=1 HTTP/1.1", 1)),
            ),
            (
                "path suffix",
                Box::new(|h: &str| {
                    h.replacen(" HTTP/1.1", "", 1)
                        .replacen("\r\n", "/x HTTP/1.1\r\n", 1)
                }),
            ),
            (
                "double slash",
                Box::new(|h: &str| h.replacen(" /", " //", 1)),
            ),
            (
                "http/1.0",
                Box::new(|h: &str| h.replacen("HTTP/1.1", "HTTP/1.0", 1)),
            ),
            (
                "http/1.0 keep-alive",
                Box::new(|h: &str| {
                    h.replacen("HTTP/1.1", "HTTP/1.0", 1).replacen(
                        "\r\n",
                        "\r\nConnection: keep-alive\r\n",
                        1,
                    )
                }),
            ),
            (
                "connection close",
                Box::new(|h: &str| h.replacen("\r\n", "\r\nConnection: close\r\n", 1)),
            ),
            (
                "expect 100",
                Box::new(|h: &str| h.replacen("\r\n", "\r\nExpect: 100-continue\r\n", 1)),
            ),
            ("lf only", Box::new(|h: &str| h.replace("\r\n", "\n"))),
            (
                "transfer-encoding",
                Box::new(|h: &str| h.replacen("\r\n", "\r\nTransfer-Encoding: chunked\r\n", 1)),
            ),
            (
                "no length",
                Box::new(|h: &str| without_header(h, "Content-Length")),
            ),
            (
                "length +",
                Box::new(|h: &str| h.replacen("Content-Length: ", "Content-Length: +", 1)),
            ),
            (
                "length 0-padded",
                Box::new(|h: &str| h.replacen("Content-Length: ", "Content-Length:  0", 1)),
            ),
            (
                "length blanks",
                Box::new(|h: &str| {
                    h.replacen("Content-Length: ", "Content-Length: \t", 1)
                        .replacen("\r\n\r\n", " \r\n\r\n", 1)
                }),
            ),
            (
                "length huge",
                Box::new(|h: &str| {
                    h.replacen(
                        "Content-Length: ",
                        "Content-Length: 99999999999999999999",
                        1,
                    )
                }),
            ),
            ("GET", Box::new(|h: &str| h.replacen("POST", "GET", 1))),
            (
                "lowercase post",
                Box::new(|h: &str| h.replacen("POST", "post", 1)),
            ),
        ];
        for (label, f) in &edits {
            cases.push(Case::new(
                format!("{p} head {label}"),
                0,
                with_head(&base, f),
            ));
        }
        // Body edits.
        let (_, body) = split(&base);
        if body.first() == Some(&b'{') {
            for (label, b) in json_body_edits(&body) {
                cases.push(Case::new(
                    format!("{p} body {label}"),
                    0,
                    with_body(&base, &b),
                ));
            }
        } else if p == Provider::BlockRazor {
            for (label, b) in [
                ("non-ascii", b"\xc3\xa9AAA".to_vec()),
                ("bang", b"AA!A".to_vec()),
                ("pad", b"QR==".to_vec()),
                ("short", b"QQ".to_vec()),
                ("empty", Vec::new()),
            ] {
                cases.push(Case::new(
                    format!("{p} body {label}"),
                    0,
                    with_body(&base, &b),
                ));
            }
        }
        let _ = strict;
    }
    // Bundles.
    let txs: Vec<&[u8]> = good.iter().map(|s| s.bytes.as_slice()).collect();
    let tok = token(Provider::Jito);
    cases.push(Case::new("bundle 1", 0, bundle(&tok, &txs[..1])));
    cases.push(Case::new("bundle 4", 0, bundle(&tok, &txs)));
    let bad: Vec<Sample> = invalid();
    let mut mixed: Vec<&[u8]> = vec![txs[0], bad[1].bytes.as_slice()];
    mixed.push(txs[1]);
    cases.push(Case::new("bundle invalid tx", 0, bundle(&tok, &mixed)));
    cases.push(Case::new(
        "bundle wrong token",
        0,
        bundle("nope", &txs[..2]),
    ));
    let b = bundle(&tok, &txs[..2]);
    let (_, body) = split(&b);
    for (label, edited) in json_body_edits(&body) {
        cases.push(Case::new(
            format!("bundle body {label}"),
            0,
            with_body(&b, &edited),
        ));
    }
    let six: Vec<&[u8]> = [txs.clone(), txs[..2].to_vec()].concat();
    let text = String::from_utf8(bundle(&tok, &txs[..1])).unwrap();
    let (_, one) = split(text.as_bytes());
    let one = String::from_utf8(one).unwrap();
    let inner = &one[one.find("[[").unwrap() + 2..one.find("]").unwrap()];
    let six_body = one.replacen(inner, &vec![inner; six.len()].join(","), 1);
    cases.push(Case::new("bundle 6", 0, with_body(&b, six_body.as_bytes())));
    cases.push(Case::new(
        "bundle 0",
        0,
        with_body(&b, one.replacen(inner, "", 1).as_bytes()),
    ));
    // A transaction body on the bundle path, a bundle body on the transaction path.
    let tx_req = request(Provider::Jito, &tok, &good[0].bytes);
    cases.push(Case::new(
        "tx on bundle path",
        0,
        with_head(&tx_req, |h| {
            h.replacen("/api/v1/transactions", "/api/v1/bundles", 1)
        }),
    ));
    cases.push(Case::new(
        "bundle on tx path",
        0,
        with_head(&b, |h| {
            h.replacen("/api/v1/bundles", "/api/v1/transactions", 1)
        }),
    ));
    // Request lines and paths no provider serves.
    for (label, raw) in [
        ("unknown path", "POST /a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("latin-1 path", "POST /a/caf\u{e9}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("blank line", "\r\n".to_string()),
        ("one word", "POST\r\n\r\n".to_string()),
        ("http/0.9 get", "GET /x\r\n\r\n".to_string()),
        ("http/0.9 post", "POST /x\r\n\r\n".to_string()),
        ("four words", "POST /x y HTTP/1.1\r\n\r\n".to_string()),
        ("bad version", "POST /x HTTP/1.x\r\n\r\n".to_string()),
        ("version text", "POST /x HTTPS/1.1\r\n\r\n".to_string()),
        ("http/2", "POST /x HTTP/2.0\r\n\r\n".to_string()),
        ("http/1.2", "POST /txb?api-key=a HTTP/1.2\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("tabs", "POST\t/txb?api-key=a\tHTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("long line", format!("POST /{} HTTP/1.1\r\n\r\n", "a".repeat(70000))),
        ("many headers", format!("POST / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(99))),
        ("too many headers", format!("POST / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(100))),
        ("long header", format!("POST / HTTP/1.1\r\nX-A: {}\r\n\r\n", "b".repeat(70000))),
        ("eof in head", "POST /txb HTTP/1.1\r\nHost: x\r\nContent-Length: 5".to_string()),
        ("eof in line", "POST /txb".to_string()),
        ("root no auth", "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_string()),
        ("root lightspeed", "POST /?k=v HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"preflightCommitment\":1}".to_string()),
        ("stellium escapes", "POST /a%2Fb%zz%C3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("query escapes", "POST /txb?api-key=%C3%A9%ED%A0%80%F0%9F%98%80%zz+%2B& HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("query repeated", "POST /txb?api-key=a&api-key=b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string()),
    ] {
        cases.push(Case::new(format!("raw {label}"), 0, raw.into_bytes()));
    }
    // Latin-1 bytes in the head, as bytes.
    let raw = b"POST /txb?api-key=\xe9 HTTP/1.1\r\nHost: \xff\r\nContent-Type: application/octet-stream\r\nContent-Length: 1\r\n\r\nx".to_vec();
    cases.push(Case::new("raw latin-1 bytes", 0, raw));
    let raw = b"POST /txb?api-key=a HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n".to_vec();
    cases.push(Case::new("raw latin-1 length", 0, raw));
    // Random body mutations.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(strict));
    for i in 0..300 {
        let p = Provider::ALL[rng.below(Provider::ALL.len())];
        let base = if rng.below(8) == 0 {
            bundle(&tok, &txs[..2])
        } else {
            request(p, &token(p), &good[rng.below(good.len())].bytes)
        };
        let (_, body) = split(&base);
        let mutated = mutate(&body, &mut rng);
        cases.push(Case::new(
            format!("random {i} ({p})"),
            0,
            with_body(&base, &mutated),
        ));
    }
    // Short random JSON-ish bodies: the decoder's error paths.
    const JSONISH: &[u8] = b"\"\\{}[],:0-1.eE+ ntrufalsNIy\tu\xc3\xa9\xed\xa0\x80";
    let jito = request(Provider::Jito, &token(Provider::Jito), &good[0].bytes);
    for i in 0..300 {
        let len = rng.below(24);
        let body: Vec<u8> = (0..len)
            .map(|_| JSONISH[rng.below(JSONISH.len())])
            .collect();
        cases.push(Case::new(
            format!("jsonish {i}"),
            0,
            with_body(&jito, &body),
        ));
    }
    // Nesting past Python's recursion limit: its handler dies (no answer, no log line).
    let deep = format!("{{\"id\":{}", "[".repeat(3000));
    cases.push(Case::new(
        "nesting too deep",
        0,
        with_body(&jito, deep.as_bytes()),
    ));
    cases
}

#[test]
fn every_request_shape_is_answered_like_the_python_mock() {
    if !have_python("every_request_shape_is_answered_like_the_python_mock") {
        return;
    }
    let mut a = args(&["--listen", "127.0.0.1:0", "--body-timeout-ms", "300"]);
    a.extend(token_args());
    compare("lenient", &a, &provider_cases(false));
}

#[test]
fn strict_request_shapes_are_answered_like_the_python_mock() {
    if !have_python("strict_request_shapes_are_answered_like_the_python_mock") {
        return;
    }
    let mut a = args(&[
        "--listen",
        "127.0.0.1:0",
        "--strict",
        "--body-timeout-ms",
        "300",
    ]);
    a.extend(token_args());
    compare("strict", &a, &provider_cases(true));
}

#[test]
fn pinned_listeners_path_overrides_and_token_all_match_the_python_mock() {
    if !have_python("pinned_listeners_path_overrides_and_token_all_match_the_python_mock") {
        return;
    }
    let a = args(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0=stellium",
        "--listen",
        "127.0.0.1:0=jito",
        "--listen",
        "127.0.0.1:0=lightspeed",
        "--token-all",
        "all-1",
        "--token",
        "lightspeed=ls%tok",
        "--token",
        "helius=h-2",
        "--path",
        "jito=/be/api/v1/transactions",
        "--path",
        "bloxroute=/bx",
        "--path",
        "node1=/n1/rpc",
        "--path",
        "stellium=/st",
        "--path",
        "bloxroute=/bx2",
        "--path",
        "glaive=/g/binary",
        "--path",
        "lunarlander=/ll/send-bin",
        "--body-timeout-ms",
        "300",
    ]);
    let good = valid();
    let tx = &good[2].bytes;
    let txs: Vec<&[u8]> = good.iter().map(|s| s.bytes.as_slice()).collect();
    let mut cases = Vec::new();
    for p in Provider::ALL {
        let tok = if p == Provider::HeliusSender {
            "h-2"
        } else {
            "all-1"
        };
        for listener in [0, 1, 2, 3] {
            cases.push(Case::new(
                format!("{p} default path on {listener}"),
                listener,
                request(p, tok, tx),
            ));
        }
    }
    let overrides = [
        (Provider::Jito, "/be/api/v1/transactions"),
        (Provider::Bloxroute, "/bx2"),
        (Provider::NextBlock, "/bx2"),
        (Provider::Node1, "/n1/rpc"),
        (Provider::Stellium, "/st"),
        (Provider::Lightspeed, "/ls%tok/x"),
        (Provider::Lightspeed, "/x"),
        (Provider::Glaive, "/g/binary"),
        (Provider::LunarLander, "/ll/send-bin"),
    ];
    for (p, path) in overrides {
        for listener in [0, 1, 2, 3] {
            cases.push(Case::new(
                format!("{p} at {path} on {listener}"),
                listener,
                request_with(p, Some(path), "all-1", tx),
            ));
        }
    }
    let lightspeed_query = with_head(&request(Provider::Lightspeed, "x", tx), |h| {
        h.replacen(" HTTP/1.1", "?key=ls%25tok HTTP/1.1", 1)
    });
    cases.push(Case::new(
        "lightspeed token in query",
        0,
        lightspeed_query.clone(),
    ));
    cases.push(Case::new(
        "lightspeed token in query, pinned",
        3,
        lightspeed_query,
    ));
    for listener in [0, 2] {
        let b = jito_bundle_request(
            Endpoint {
                host: HOST,
                path: Some("/be/api/v1/transactions"),
                token: Some("all-1"),
            },
            &txs,
        )
        .unwrap();
        cases.push(Case::new(
            format!("bundle at the override on {listener}"),
            listener,
            b,
        ));
        cases.push(Case::new(
            format!("bundle at the default on {listener}"),
            listener,
            bundle("all-1", &txs[..1]),
        ));
    }
    compare("pinned", &a, &cases);
}

#[test]
fn reset_after_delay_and_body_timeout_match_the_python_mock() {
    if !have_python("reset_after_delay_and_body_timeout_match_the_python_mock") {
        return;
    }
    let a = args(&[
        "--listen",
        "127.0.0.1:0",
        "--token-all",
        "t",
        "--reset-after",
        "2",
        "--delay-ms",
        "5",
        "--body-timeout-ms",
        "300",
    ]);
    let good = valid();
    let mut cases = Vec::new();
    for p in [Provider::Jito, Provider::ZeroSlot, Provider::BlockRazor] {
        let reqs: Vec<Vec<u8>> = good.iter().map(|s| request(p, "t", &s.bytes)).collect();
        // Two answered, the third reset (logged, with its signature).
        cases.push(Case {
            name: format!("{p} reset after 2"),
            listener: 0,
            chunks: reqs[..3].to_vec(),
            half_close: false,
        });
        // The third refused by its token: still reset, not answered.
        cases.push(Case {
            name: format!("{p} reset of a refusal"),
            listener: 0,
            chunks: vec![
                reqs[0].clone(),
                reqs[1].clone(),
                request(p, "wrong", &good[0].bytes),
            ],
            half_close: false,
        });
        // A body shorter than its Content-Length: 400 after the body timeout, closed.
        let full = &reqs[0];
        cases.push(Case {
            name: format!("{p} short body"),
            listener: 0,
            chunks: vec![full[..full.len() - 7].to_vec()],
            half_close: false,
        });
        // The body trickling in slower than one read per timeout is fine.
        let (head, body) = split(full);
        cases.push(Case {
            name: format!("{p} trickled body"),
            listener: 0,
            chunks: vec![head.into_bytes(), body[..10].to_vec(), body[10..].to_vec()],
            half_close: true,
        });
    }
    // A request whose head is not complete when the client stops sending.
    cases.push(Case {
        name: "half a head, then EOF".into(),
        listener: 0,
        chunks: vec![b"POST /txb?api-key=t HTTP/1.1\r\nHost: x\r\n".to_vec()],
        half_close: true,
    });
    compare("reset", &a, &cases);
}

// ---------------------------------------------------------------------------------------------
// the compiled relay alone: concurrency

/// Reads one response (head and Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, body))
}

#[test]
fn a_half_sent_request_does_not_hold_up_another_connection() {
    let scratch = Scratch::new("relay-parity-concurrency");
    let a = args(&[
        "--listen",
        "127.0.0.1:0",
        "--token-all",
        "t",
        "--body-timeout-ms",
        "60000",
    ]);
    let relay = Relay::start(Flavor::Compiled, &scratch, "concurrency", &a);
    let good = valid();
    let slow_req = request(Provider::Jito, "t", &good[0].bytes);
    let fast_req = request(Provider::HeliusSender, "t", &good[1].bytes);

    // Connection A: the head and half the body, then nothing.
    let mut slow = relay.connect(0);
    let half = slow_req.len() - 600;
    slow.write_all(&slow_req[..half]).unwrap();
    // Connection B, opened after A: a whole request, answered while A is still incomplete.
    let mut fast = relay.connect(0);
    fast.write_all(&fast_req).unwrap();
    let (status, body) = read_response(&mut fast).expect("B answered while A is incomplete");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Only now does A finish, and it is answered too.
    slow.write_all(&slow_req[half..]).unwrap();
    let (status, body) = read_response(&mut slow).expect("A answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let log = relay.log();
    assert_eq!(log.len(), 2);
    // B's line first although A connected (and started its request) first.
    assert_eq!(log[0]["provider"], "helius");
    assert_eq!(log[0]["conn"], 2);
    assert_eq!(log[1]["provider"], "jito");
    assert_eq!(log[1]["conn"], 1);
    assert_eq!(log[1]["signature"], good[0].signature.as_deref().unwrap());
    // A's body was complete only after B's answer (when the relay first sees A's request
    // line depends on thread scheduling, so t_first_ns is not compared).
    let t = |i: usize, k: &str| log[i][k].as_u64().unwrap();
    assert!(t(1, "t_ns") > t(0, "t_ns"));
    assert!(t(1, "t_first_ns") <= t(1, "t_ns"));
    relay.stop();
}

#[test]
fn many_concurrent_keep_alive_connections_are_all_answered() {
    let scratch = Scratch::new("relay-parity-many");
    let a = args(&["--listen", "127.0.0.1:0", "--token-all", "t"]);
    let relay = Relay::start(Flavor::Compiled, &scratch, "many", &a);
    let good = valid();
    const CONNS: usize = 16;
    const PER_CONN: usize = 25;
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let mut s = relay.connect(0);
            let p = Provider::ALL[c % Provider::ALL.len()];
            let reqs: Vec<(Vec<u8>, String)> = (0..PER_CONN)
                .map(|i| {
                    let sample = &good[i % good.len()];
                    (
                        request(p, "t", &sample.bytes),
                        sample.signature.clone().unwrap(),
                    )
                })
                .collect();
            std::thread::spawn(move || {
                for (req, sig) in reqs {
                    s.write_all(&req).unwrap();
                    let (status, body) = read_response(&mut s).unwrap();
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    assert!(String::from_utf8_lossy(&body).contains(&sig));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let log = relay.log();
    assert_eq!(log.len(), CONNS * PER_CONN);
    assert!(log.iter().all(|l| l["ok"] == true));
    for c in 1..=CONNS as u64 {
        let seqs: Vec<u64> = log
            .iter()
            .filter(|l| l["conn"] == c)
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=PER_CONN as u64).collect::<Vec<_>>(), "conn {c}");
    }
    relay.stop();
}
