//! One RPC URL for a bot: `swqos control`'s JSON-RPC endpoint answers `getVersion` and
//! `getHealth` itself, sends transactions through the data plane, and forwards every other
//! method to `[control] rpc_upstream` (here a mock RPC node in Python's standard library),
//! passing its answer on verbatim; a slow upstream and a dead one are clear errors (-32093).
//! solana-py (the PyPI package `solana`, installed by scripts/test.sh) drives it as a bot would:
//! `get_slot` goes upstream, `send_raw_transaction` goes out on both lanes (checked in the
//! capture).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swqos_tests::{
    bin, config_text, free_port, have_root, hex, require, samples, tshark_fields, two_lanes,
    DataplaneProcess, Scratch,
};

/// The mock upstream's slot and blockhash.
const SLOT: u64 = 4242;
const BLOCKHASH: &str = "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N";

/// A mock Solana RPC node: `getSlot`, `getLatestBlockhash`, `slowMethod` (answers after 3 s),
/// anything else "method not found"; batches answered in reverse order. Prints its port.
const MOCK_UPSTREAM: &str = r#"
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
SLOT, BLOCKHASH = int(sys.argv[1]), sys.argv[2]
def answer(call):
    m, i = call.get("method"), call.get("id")
    if m == "getSlot":
        return {"jsonrpc": "2.0", "result": SLOT, "id": i}
    if m == "getLatestBlockhash":
        return {"jsonrpc": "2.0", "id": i, "result": {"context": {"slot": SLOT, "apiVersion": "mock"},
                "value": {"blockhash": BLOCKHASH, "lastValidBlockHeight": SLOT + 150}}}
    if m == "slowMethod":
        time.sleep(3)
        return {"jsonrpc": "2.0", "result": "late", "id": i}
    return {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": i}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = [answer(c) for c in reversed(body)] if isinstance(body, list) else answer(body)
        data = json.dumps(out, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// Starts the mock upstream; returns it and its port.
fn start_upstream() -> (Child, u16) {
    let mut child = Command::new("python3")
        .args(["-c", MOCK_UPSTREAM, &SLOT.to_string(), BLOCKHASH])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().expect("mock upstream port"))
}

/// POSTs `body`; returns the answer's body as it came.
fn post_raw(port: u16, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

fn call(port: u16, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    serde_json::from_str(&post_raw(port, &body.to_string())).unwrap()
}

/// Whether solana-py can be imported (scripts/test.sh installs it; see [`require`]).
fn have_solana_py(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import solana.rpc.api, solders"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        test,
        (!ok).then(|| {
            "needs solana-py (python3 -m pip install solana==0.36.12; scripts/test.sh does)".into()
        }),
    )
}

/// What a bot does with solana-py against `url`: reads the slot, the latest blockhash, then
/// sends a signed transaction (hex on argv) with `send_raw_transaction`. Prints a JSON summary.
const SOLANA_PY_BOT: &str = r#"
import json, sys
from solana.rpc.api import Client
from solana.rpc.types import TxOpts
c = Client(sys.argv[1], timeout=10)
slot = c.get_slot().value
blockhash = str(c.get_latest_blockhash().value.blockhash)
sig = c.send_raw_transaction(bytes.fromhex(sys.argv[2]), TxOpts(skip_preflight=True)).value
print(json.dumps({"slot": slot, "blockhash": blockhash, "signature": str(sig)}))
"#;

#[test]
fn one_url_answers_locally_forwards_upstream_and_sends_through_the_data_plane() {
    let test = "one_url_answers_locally_forwards_upstream_and_sends_through_the_data_plane";
    if !have_root(test) || !have_solana_py(test) {
        return;
    }
    let (mut upstream, upstream_port) = start_upstream();
    let scratch = Scratch::new("rpcup");
    let pcap = scratch.path("tx.pcap");
    let (metrics_port, rpc_port) = (free_port(), free_port());
    let mut text = config_text(
        "rpcup",
        &format!("net_pcap0,tx_pcap={}", pcap.display()),
        "off",
        2,
        &two_lanes(),
    );
    text.push_str(&format!(
        "\n[control]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nrpc_listen = \
         \"127.0.0.1:{rpc_port}\"\nrpc_upstream = \"http://127.0.0.1:{upstream_port}/\"\n\
         rpc_upstream_timeout_ms = 500\n"
    ));
    let config = scratch.path("rpcup.toml");
    std::fs::write(&config, text).unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    let mut control = Command::new(bin("swqos"))
        .args(["control", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err() {
        assert!(Instant::now() < deadline, "no RPC port");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Local: getVersion (a version Solana clients treat as current) and getHealth.
    let v = call(rpc_port, "getVersion", json!([]));
    let core = v["result"]["solana-core"].as_str().unwrap();
    let (major, minor) = {
        let mut it = core.split('.').map(|n| n.parse::<u32>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    assert!((major, minor) >= (1, 4), "{v}");
    assert!(v["result"]["feature-set"].is_u64(), "{v}");
    assert_eq!(call(rpc_port, "getHealth", json!([]))["result"], "ok");

    // Forwarded: the upstream's answer, byte for byte (its compact JSON, its key order).
    let body = r#"{"jsonrpc":"2.0","id":"s1","method":"getSlot"}"#;
    assert_eq!(
        post_raw(rpc_port, body),
        format!(r#"{{"jsonrpc":"2.0","result":{SLOT},"id":"s1"}}"#)
    );
    let v = call(
        rpc_port,
        "getLatestBlockhash",
        json!([{"commitment": "processed"}]),
    );
    assert_eq!(v["result"]["value"]["blockhash"], BLOCKHASH, "{v}");
    // The upstream's own errors pass through too.
    let v = call(rpc_port, "getBalance", json!(["x"]));
    assert_eq!(v["error"]["code"], -32601, "{v}");

    // A batch mixing local and forwarded calls: each answered, in order, with its id.
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let batch = json!([
        {"jsonrpc": "2.0", "id": 10, "method": "getSlot"},
        {"jsonrpc": "2.0", "id": 11, "method": "getVersion"},
        {"jsonrpc": "2.0", "id": 12, "method": "sendTransaction",
         "params": [bs58::encode(&valid[0].bytes).into_string()]},
        {"jsonrpc": "2.0", "id": 13, "method": "getLatestBlockhash"},
    ]);
    let v: Value = serde_json::from_str(&post_raw(rpc_port, &batch.to_string())).unwrap();
    assert_eq!(
        v[0],
        json!({"jsonrpc": "2.0", "result": SLOT, "id": 10}),
        "{v}"
    );
    assert_eq!(v[1]["result"]["solana-core"], core, "{v}");
    assert_eq!(
        v[2]["result"].as_str(),
        valid[0].signature.as_deref(),
        "{v}"
    );
    assert_eq!(v[3]["id"], 13, "{v}");
    assert_eq!(v[3]["result"]["value"]["blockhash"], BLOCKHASH, "{v}");

    // A slow upstream: -32093 after rpc_upstream_timeout_ms, not after the upstream's 3 s.
    let started = Instant::now();
    let v = call(rpc_port, "slowMethod", json!([]));
    let took = started.elapsed();
    assert_eq!(v["error"]["code"], -32093, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "timeout", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("500 ms"),
        "{v}"
    );
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // ... and while one caller waits on it, others are answered at once.
    let slow = std::thread::spawn(move || call(rpc_port, "slowMethod", json!([])));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(call(rpc_port, "getVersion", json!([]))["id"], 1);
    assert_eq!(call(rpc_port, "getSlot", json!([]))["result"], SLOT);
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(slow.join().unwrap()["error"]["code"], -32093);

    // solana-py, as a bot: reads through the endpoint, sends through the data plane.
    let bot_tx = &valid[1];
    let out = Command::new("python3")
        .args([
            "-c",
            SOLANA_PY_BOT,
            &format!("http://127.0.0.1:{rpc_port}"),
            &hex(&bot_tx.bytes),
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "solana-py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["slot"], SLOT, "{summary}");
    assert_eq!(summary["blockhash"], BLOCKHASH, "{summary}");
    assert_eq!(
        summary["signature"].as_str(),
        bot_tx.signature.as_deref(),
        "{summary}"
    );

    // The upstream gone: a clear error naming it.
    upstream.kill().unwrap();
    upstream.wait().unwrap();
    let v = call(rpc_port, "getSlot", json!([]));
    assert_eq!(v["error"]["code"], -32093, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "unreachable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{upstream_port}")),
        "{v}"
    );

    // SAFETY: kill with our child's pid and a standard signal.
    unsafe { libc::kill(control.id() as i32, libc::SIGTERM) };
    assert!(control.wait().unwrap().success());
    dp.stop(libc::SIGTERM);

    // The two transactions sent, each once per lane.
    let rows = tshark_fields(&pcap, &["udp.dstport", "data.data"]);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for s in [&valid[0], bot_tx] {
        let h = hex(&s.bytes);
        for port in ["8001", "8002"] {
            let n = rows.iter().filter(|r| r[0] == port && r[1] == h).count();
            assert_eq!(n, 1, "{} on port {port}", s.name);
        }
    }
}
