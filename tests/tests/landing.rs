//! Landing feedback end to end: `swqos control` with `[landing]` asks a mock validator RPC
//! (this test's own WebSocket and HTTP servers, answering like Solana's RPC) whether each
//! submission landed, and tells the client after the relay lanes' completions: landed (slot,
//! error, credited lane) or expired. Real transactions (`wire/tests/data/solana-txs.jsonl`)
//! go through the real data plane and control plane to the mock relay in the peer namespace.
//!
//! Cases: landed via `signatureNotification`; landed with an error; never landed (expired
//! after `expire_ms`); the client crate's `wait_landed`; WebSocket down, landed via
//! `getSignatureStatuses`; the counters on `/metrics` and in `swqos stats`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use swqos_tests::rig::Rig;
use swqos_tests::{have_root, samples, swqos, Sample};
use swqos_wire::relay::Provider;

/// What the mock chain knows and what the mock RPC was asked.
#[derive(Default)]
struct Chain {
    /// Landed signatures: (slot, err, visible to getSignatureStatuses too).
    landed: HashMap<String, (u64, Value, bool)>,
    /// Signatures subscribed over the WebSocket.
    subscribed: Vec<String>,
    /// Signatures whose notification was sent.
    notified: Vec<String>,
    /// Signatures asked with getSignatureStatuses.
    polled: Vec<String>,
}

/// The mock validator RPC: a WebSocket server and an HTTP JSON-RPC server on loopback.
struct MockRpc {
    chain: Arc<Mutex<Chain>>,
    /// While set, the WebSocket server closes its connections and refuses new ones.
    ws_down: Arc<AtomicBool>,
    ws_port: u16,
    http_port: u16,
}

impl MockRpc {
    fn start() -> MockRpc {
        let chain = Arc::new(Mutex::new(Chain::default()));
        let ws_down = Arc::new(AtomicBool::new(false));
        let ws = TcpListener::bind("127.0.0.1:0").unwrap();
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let (ws_port, http_port) = (
            ws.local_addr().unwrap().port(),
            http.local_addr().unwrap().port(),
        );
        let (c, d) = (chain.clone(), ws_down.clone());
        std::thread::spawn(move || {
            for stream in ws.incoming().flatten() {
                let (c, d) = (c.clone(), d.clone());
                std::thread::spawn(move || serve_ws(stream, &c, &d));
            }
        });
        let c = chain.clone();
        std::thread::spawn(move || {
            for stream in http.incoming().flatten() {
                serve_http(stream, &c);
            }
        });
        MockRpc {
            chain,
            ws_down,
            ws_port,
            http_port,
        }
    }

    fn land(&self, sig: &str, slot: u64, err: Value, pollable: bool) {
        let mut c = self.chain.lock().unwrap();
        c.landed.insert(sig.to_owned(), (slot, err, pollable));
    }
}

/// One WebSocket connection: `signatureSubscribe` -> subscription id; a notification as soon
/// as the signature is landed (checked every 20 ms).
fn serve_ws(stream: TcpStream, chain: &Mutex<Chain>, down: &AtomicBool) {
    if down.load(Ordering::SeqCst) {
        return; // refused: dropped before the handshake
    }
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut subs: Vec<(u64, String)> = Vec::new();
    let mut next_sub = 100;
    loop {
        if down.load(Ordering::SeqCst) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let m: Value = serde_json::from_str(t.as_str()).unwrap();
                let result = match m["method"].as_str() {
                    Some("signatureSubscribe") => {
                        let sig = m["params"][0].as_str().unwrap().to_owned();
                        assert_eq!(m["params"][1]["commitment"], "confirmed", "{m}");
                        chain.lock().unwrap().subscribed.push(sig.clone());
                        next_sub += 1;
                        subs.push((next_sub, sig));
                        json!(next_sub)
                    }
                    _ => json!(true),
                };
                let reply = json!({"jsonrpc": "2.0", "result": result, "id": m["id"]});
                let _ = ws.send(tungstenite::Message::text(reply.to_string()));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        let mut c = chain.lock().unwrap();
        if down.load(Ordering::SeqCst) {
            continue;
        }
        subs.retain(|(id, sig)| {
            let Some((slot, err, _)) = c.landed.get(sig).cloned() else {
                return true;
            };
            let n = json!({"jsonrpc": "2.0", "method": "signatureNotification", "params": {
                "result": {"context": {"slot": slot}, "value": {"err": err}},
                "subscription": id}});
            let _ = ws.send(tungstenite::Message::text(n.to_string()));
            c.notified.push(sig.clone());
            false
        });
    }
}

/// One HTTP request: `getSignatureStatuses` answered from the chain.
fn serve_http(mut stream: TcpStream, chain: &Mutex<Chain>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= head + len {
                break buf[head..head + len].to_vec();
            }
        }
    };
    let call: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(call["method"], "getSignatureStatuses", "{call}");
    let sigs = call["params"][0].as_array().unwrap();
    assert!(sigs.len() <= 256);
    let mut c = chain.lock().unwrap();
    let value: Vec<Value> = sigs
        .iter()
        .map(|s| {
            let s = s.as_str().unwrap();
            c.polled.push(s.to_owned());
            match c.landed.get(s) {
                Some((slot, err, true)) => json!({"slot": slot, "confirmations": 2, "err": err,
                    "status": {"Ok": null}, "confirmationStatus": "confirmed"}),
                _ => Value::Null,
            }
        })
        .collect();
    let answer = json!({"jsonrpc": "2.0", "result": {"context": {"slot": 5000}, "value": value},
        "id": call["id"]})
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
}

/// `swqos submit --landing --json` of `lines`; the parsed lines.
fn submit_landing(rig: &Rig, lines: &[&Sample]) -> Vec<Value> {
    let input: String = lines.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &[
            "submit",
            "--config",
            rig.cfg(),
            "--landing",
            "--json",
            "--timeout",
            "10",
            "-",
        ],
        input.as_bytes(),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", control_log(rig));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn control_log(rig: &Rig) -> String {
    std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default()
}

/// The control plane's `/metrics`.
fn metrics(rig: &Rig) -> String {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn sample_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn each_submission_gets_its_landing_answer_after_its_relay_completions() {
    if !have_root("each_submission_gets_its_landing_answer_after_its_relay_completions") {
        return;
    }
    let rpc = MockRpc::start();
    let landing = format!(
        "\n[landing]\nrpc_url = \"http://127.0.0.1:{}\"\nws_url = \"ws://127.0.0.1:{}\"\n\
         expire_ms = 3000\npoll_interval_ms = 200\n",
        rpc.http_port, rpc.ws_port
    );
    let lanes = [("jito".to_string(), Provider::Jito)];
    let rig = Rig::start_with("landing", &lanes, 1, &[], "", &landing);
    let all = samples();
    let valid: Vec<&Sample> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let sig = |s: &Sample| s.signature.clone().unwrap();
    rig.warm_up(&valid[0].line);

    // Landed (WebSocket only: the HTTP mock does not know it), landed with an error, never.
    let (a, b, c) = (valid[1], valid[2], valid[3]);
    rpc.land(&sig(a), 1001, Value::Null, false);
    let failed = json!({"InstructionError": [0, {"Custom": 1}]});
    rpc.land(&sig(b), 1002, failed, false);
    let lines = submit_landing(&rig, &[a, b, c]);
    assert_eq!(lines.len(), 3);
    for v in &lines {
        assert_eq!(v["status"], "accepted", "{v}");
        assert_eq!(v["lanes"][0]["status"], "sent", "{v}");
    }
    assert_eq!(lines[0]["landing"]["status"], "landed", "{}", lines[0]);
    assert_eq!(lines[0]["landing"]["slot"], 1001);
    assert_eq!(lines[0]["landing"]["lane"], "jito");
    assert_eq!(
        lines[1]["landing"]["status"], "landed_with_error",
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["landing"]["slot"], 1002);
    assert_eq!(lines[2]["landing"]["status"], "expired", "{}", lines[2]);
    assert_eq!(lines[2]["landing"]["lane"], "jito");
    {
        let chain = rpc.chain.lock().unwrap();
        for s in [a, b, c] {
            assert!(
                chain.subscribed.contains(&sig(s)),
                "{} not subscribed",
                s.name
            );
        }
        assert!(chain.notified.contains(&sig(a)) && chain.notified.contains(&sig(b)));
        // The one that never landed was polled too once its window ran (ws_timeout is 10 s,
        // longer than its 3 s window): it was answered by the expiry, not by a poll.
        assert!(!chain.notified.contains(&sig(c)));
    }

    // The client crate: wait_landed after the lane's outcome.
    let e = valid[4];
    rpc.land(&sig(e), 1004, Value::Null, false);
    let mut client = swqos_client::Client::attach(rig_segment(&rig)).unwrap();
    assert_eq!(client.landing_window(), Some(Duration::from_millis(3000)));
    let lanes = swqos_client::LaneSet::from_names(&client, ["jito"]).unwrap();
    let s = client.submit(&e.bytes, &lanes).unwrap();
    let outcomes = client.wait_all(&s);
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    match client.wait_landed(&s) {
        swqos_client::Landing::Landed {
            slot,
            lane,
            with_error,
            ..
        } => {
            assert_eq!(
                (slot, lane.as_deref(), with_error),
                (1004, Some("jito"), false)
            );
        }
        other => panic!("expected landed, got {other:?}\n{}", control_log(&rig)),
    }
    drop(client);

    // WebSocket down: landed through getSignatureStatuses (the WebSocket never notifies
    // while down, so only a poll can have found it).
    rpc.ws_down.store(true, Ordering::SeqCst);
    let d = valid[5];
    rpc.land(&sig(d), 1003, Value::Null, true);
    let lines = submit_landing(&rig, &[d]);
    assert_eq!(lines[0]["landing"]["status"], "landed", "{}", lines[0]);
    assert_eq!(lines[0]["landing"]["slot"], 1003);
    {
        let chain = rpc.chain.lock().unwrap();
        assert!(chain.polled.contains(&sig(d)));
        assert!(!chain.notified.contains(&sig(d)));
    }
    assert!(
        control_log(&rig).contains("getSignatureStatuses"),
        "the control plane says it polls: {}",
        control_log(&rig)
    );

    // The counters, by credited lane.
    let m = metrics(&rig);
    assert_eq!(
        sample_value(&m, "swqos_landing_landed_total{lane=\"jito\"}"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        sample_value(&m, "swqos_landing_landed_with_error_total{lane=\"jito\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&m, "swqos_landing_expired_total{lane=\"jito\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&m, "swqos_landing_latency_seconds_count{lane=\"jito\"}"),
        Some(4.0)
    );
    let out = swqos(
        &[
            "stats",
            "--config",
            rig.cfg(),
            "--interval",
            "0.1",
            "--json",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jito = &v["landing"]["jito"];
    assert_eq!(
        (
            &jito["landed"],
            &jito["landed_with_error"],
            &jito["expired"]
        ),
        (&json!(4.0), &json!(1.0), &json!(1.0)),
        "{v}"
    );
    let out = swqos(&["stats", "--config", rig.cfg(), "--interval", "0.1"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("landing (credited lane"), "{text}");
    rig.stop();
}

/// The segment path of the rig's config.
fn rig_segment(rig: &Rig) -> std::path::PathBuf {
    dpdk_config::Config::load(&rig.config).unwrap().shm.path
}
