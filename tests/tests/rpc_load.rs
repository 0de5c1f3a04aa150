//! The JSON-RPC endpoint of `swqos control` under hostile callers (the data plane on net_null):
//! hundreds of slowloris connections, a 100 MiB request line with no newline and 100k-character
//! base58 transactions, while a normal `sendTransaction` keeps answering in its usual time; the
//! control plane's memory and thread count stay bounded (read from /proc/PID/status, printed).
//! And the small edges: two `Content-Length`s, a non-UTF-8 header, a non-string encoding.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swqos_tests::{
    bin, config_text, free_port, have_root, samples, two_lanes, DataplaneProcess, Scratch,
};

/// Slow connections held open at once.
const SLOWLORIS: usize = 300;

/// An HTTP answer: status, head, JSON body.
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Sends `request` (raw bytes) on a new connection and reads the answer to the end.
fn raw(port: u16, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// POSTs a JSON-RPC body.
fn post(port: u16, body: &str) -> Answer {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(port, request.as_bytes())
}

fn send_tx(port: u16, params: Value) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": params});
    post(port, &body.to_string())
}

/// (VmRSS in KiB, Threads) of `pid`.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("Threads:"))
}

/// The data plane on net_null and `swqos control` with the endpoint.
struct Setup {
    _scratch: Scratch,
    dp: Option<DataplaneProcess>,
    control: Child,
    port: u16,
}

impl Setup {
    fn start(tag: &str) -> Setup {
        let scratch = Scratch::new(tag);
        let (metrics_port, port) = (free_port(), free_port());
        let mut text = config_text(tag, "net_null0", "off", 2, &two_lanes());
        text.push_str(&format!(
            "\n[control]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nrpc_listen = \"127.0.0.1:{port}\"\n"
        ));
        let config = scratch.path("rpc.toml");
        std::fs::write(&config, text).unwrap();
        let dp = DataplaneProcess::start(&scratch, &config);
        let control = Command::new(bin("swqos"))
            .args(["control", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "no RPC port");
            std::thread::sleep(Duration::from_millis(50));
        }
        Setup {
            _scratch: scratch,
            dp: Some(dp),
            control,
            port,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SAFETY: kill with our child's pid and a standard signal.
        unsafe { libc::kill(self.control.id() as i32, libc::SIGTERM) };
        let _ = self.control.wait();
        if let Some(dp) = self.dp.take() {
            dp.stop(libc::SIGTERM);
        }
    }
}

/// One slowloris: a request head sent a byte a second; returns how long the server let it
/// live after its first byte (None: still open when `give_up` passed).
fn slowloris(port: u16, give_up: Instant) -> Option<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // The wait between bytes is a read: the server's answer or close ends it at once.
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    for b in head {
        if s.write_all(&[*b]).is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => return Some(started.elapsed()), // an answer (408) or the close
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
        if Instant::now() > give_up {
            return None;
        }
    }
    None
}

/// Streams up to 100 MiB of request line with no newline; returns the bytes the server took
/// before refusing.
fn oversize_line(port: u16) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![b'A'; 64 * 1024];
    let mut sent = 0;
    while sent < 100 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn hostile_callers_do_not_grow_the_control_plane_or_slow_a_normal_send() {
    if !have_root("hostile_callers_do_not_grow_the_control_plane_or_slow_a_normal_send") {
        return;
    }
    let setup = Setup::start("rpcload");
    let (port, pid) = (setup.port, setup.control.id());
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let tx = bs58::encode(&valid[0].bytes).into_string();

    // The usual time of a normal send, quiet.
    let mut quiet = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let a = send_tx(port, json!([tx]));
        quiet.push(t.elapsed());
        assert_eq!(
            a.body["result"].as_str(),
            valid[0].signature.as_deref(),
            "{}",
            a.body
        );
        assert!(
            a.head
                .contains("X-Swqos-Lanes: udp-a=sent (fast); udp-b=sent (fast)"),
            "{}",
            a.head
        );
    }
    quiet.sort();
    let (rss0, threads0) = rss_and_threads(pid);

    // The attack, from other threads.
    let attacking = Arc::new(AtomicBool::new(true));
    let give_up = Instant::now() + Duration::from_secs(25);
    let lorises: Vec<_> = (0..SLOWLORIS)
        .map(|_| std::thread::spawn(move || slowloris(port, give_up)))
        .collect();
    let line = std::thread::spawn(move || oversize_line(port));
    let long_b58 = std::thread::spawn(move || {
        let long = "2".repeat(100_000);
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let a = send_tx(port, json!([long]));
                (t.elapsed(), a.body)
            })
            .collect::<Vec<_>>()
    });
    let monitor = {
        let attacking = attacking.clone();
        std::thread::spawn(move || {
            let mut peak = (0, 0);
            while attacking.load(Ordering::Relaxed) {
                let (rss, threads) = rss_and_threads(pid);
                peak = (peak.0.max(rss), peak.1.max(threads));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    // A normal send keeps answering meanwhile.
    let mut loaded = Vec::new();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let t = Instant::now();
        let a = send_tx(port, json!([tx]));
        loaded.push(t.elapsed());
        assert_eq!(
            a.body["result"].as_str(),
            valid[0].signature.as_deref(),
            "{}",
            a.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let line_bytes = line.join().unwrap();
    let long = long_b58.join().unwrap();
    let lived: Vec<Option<Duration>> = lorises.into_iter().map(|t| t.join().unwrap()).collect();
    attacking.store(false, Ordering::Relaxed);
    let (rss_peak, threads_peak) = monitor.join().unwrap();
    loaded.sort();

    let held = lived.iter().flatten().max().copied().unwrap_or_default();
    let unanswered = lived.iter().filter(|l| l.is_none()).count();
    eprintln!(
        "rpc load: quiet send median {:?} max {:?}; under attack median {:?} max {:?} ({} sends); \
         control plane RSS {} KiB -> peak {} KiB, threads {} -> peak {}; {} slowloris held at most \
         {:?} ({} never closed); 100 MiB line: {} bytes taken; 100k base58: {:?}",
        quiet[quiet.len() / 2],
        quiet[quiet.len() - 1],
        loaded[loaded.len() / 2],
        loaded[loaded.len() - 1],
        loaded.len(),
        rss0,
        rss_peak,
        threads0,
        threads_peak,
        SLOWLORIS,
        held,
        unanswered,
        line_bytes,
        long.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
    );
    // A request must arrive whole within its deadline (10 s; deadlines are checked every
    // 100 ms), however slowly it trickles.
    assert_eq!(unanswered, 0, "slow connections held past 25 s");
    assert!(held < Duration::from_secs(11), "a slowloris lived {held:?}");
    // The 100 MiB line is refused at the head limit, not read to its end.
    assert!(line_bytes < 100 << 20, "the whole 100 MiB line was taken");
    // 100k characters of base58 are refused before decoding (decoding takes seconds).
    for (took, body) in &long {
        assert_eq!(body["error"]["code"], -32602, "{body}");
        assert!(
            *took < Duration::from_secs(1),
            "100k base58 answered in {took:?}"
        );
    }
    // No thread per connection, no buffer per byte.
    assert!(
        threads_peak <= threads0 + 2,
        "threads {threads0} -> {threads_peak}"
    );
    assert!(
        rss_peak < rss0 + 48 * 1024,
        "RSS {rss0} KiB -> {rss_peak} KiB"
    );
    // The normal send stays within its usual time: well under a second, quiet or not.
    assert!(
        loaded[loaded.len() - 1] < Duration::from_secs(1),
        "{loaded:?}"
    );
}

#[test]
fn malformed_heads_and_encodings_get_an_answer_that_says_why() {
    if !have_root("malformed_heads_and_encodings_get_an_answer_that_says_why") {
        return;
    }
    let setup = Setup::start("rpcedge");
    let port = setup.port;
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let tx = bs58::encode(&valid[0].bytes).into_string();
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [tx]}).to_string();

    // Two different Content-Lengths: refused, not "the last one wins".
    let a = raw(
        port,
        format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\nContent-Length: 2\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(a.status, 400, "{}", a.head);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Content-Length"));
    // A header that is not UTF-8: an answer, not a silent close.
    let mut request = b"POST / HTTP/1.1\r\nX-Name: caf\xe9\r\n".to_vec();
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let a = raw(port, &request);
    assert_eq!(a.status, 400, "{}", a.head);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not UTF-8"),
        "{}",
        a.body
    );
    // An encoding that is not a known name is an error, not base58.
    for config in [
        json!({"encoding": 64}),
        json!({"encoding": true}),
        json!({"encoding": "hex"}),
    ] {
        let a = send_tx(port, json!([tx, config]));
        assert_eq!(a.body["error"]["code"], -32602, "{config}: {}", a.body);
    }
    // The same call with the default encoding is sent.
    let a = send_tx(port, json!([tx]));
    assert_eq!(a.body["result"].as_str(), valid[0].signature.as_deref());
}

/// A relay that takes the request and never answers, next to a UDP lane that sends at once: the
/// caller gets the signature (it left), the header names the silent lane as "unknown", and the
/// answer comes after the relay pool's own timeout, not before it (no -32005 race).
#[test]
fn a_silent_relay_next_to_a_sent_lane_answers_the_signature_with_the_lanes() {
    use swqos_tests::rig::Rig;
    use swqos_wire::relay::Provider;
    if !have_root("a_silent_relay_next_to_a_sent_lane_answers_the_signature_with_the_lanes") {
        return;
    }
    let port = free_port();
    let udp =
        "\n[[lane]]\nname = \"udp\"\nkind = \"udp\"\nport = \"nic\"\nsrc_ip = \"198.18.77.1\"\n\
               src_port = 9100\ndst_ip = \"198.18.77.2\"\ndst_port = 9999\n\
               dst_mac = \"02:00:00:00:00:99\"\n";
    let _rig = Rig::start_with(
        "rpc-silent",
        &[("jito".to_string(), Provider::Jito)],
        1,
        &["--delay-ms", "30000"],
        &format!("rpc_listen = \"127.0.0.1:{port}\"\n"),
        udp,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no RPC port");
        std::thread::sleep(Duration::from_millis(50));
    }
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let tx = bs58::encode(&valid[0].bytes).into_string();
    let started = Instant::now();
    let a = send_tx(port, json!([tx]));
    let took = started.elapsed();
    eprintln!("silent relay: answered in {took:?}: {}\n{}", a.head, a.body);
    assert_eq!(
        a.body["result"].as_str(),
        valid[0].signature.as_deref(),
        "{}",
        a.body
    );
    let lanes = a
        .head
        .lines()
        .find_map(|l| l.strip_prefix("X-Swqos-Lanes: "))
        .unwrap_or_else(|| panic!("no X-Swqos-Lanes in {}", a.head));
    assert!(lanes.contains("udp=sent"), "{lanes}");
    assert!(lanes.contains("jito=unknown"), "{lanes}");
    // After the relay's own 5 s read timeout (its report), not a wait that races it.
    assert!(took >= Duration::from_secs(5), "{took:?}");
    // The same as details, for callers that want them in the body.
    let body =
        json!({"jsonrpc": "2.0", "id": 2, "method": "swqos_sendTransaction", "params": [tx]});
    let a = post(port, &body.to_string());
    assert_eq!(a.body["result"]["sent"][0]["lane"], "udp", "{}", a.body);
    // The relay lane is either written again and unanswered (unknown), or, while its one
    // connection is still reconnecting after the first timeout, refused before anything was
    // written (failed, saying so): never reported sent, never lost.
    let r = &a.body["result"];
    let jito_unknown = r["unknown"][0]["lane"] == "jito";
    let jito_not_sent = r["failed"][0]["lane"] == "jito"
        && r["failed"][0]["reason"]
            .as_str()
            .is_some_and(|why| why.contains("not sent"));
    assert!(jito_unknown || jito_not_sent, "{}", a.body);
}
