//! The drop-in JSON-RPC endpoint of `swqos control`, driven by an independent client (Python's
//! standard library): `sendTransaction` fans a transaction out to the data plane's lanes, errors
//! follow JSON-RPC conventions, and the capture shows exactly what was accepted; `sendBundle`
//! reaches the mock Jito relay through a relay lane (over the data plane's exception path) and
//! answers with the relay's bundle id.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use swqos_tests::rig::Rig;
use swqos_tests::{
    bin, config_text, free_port, have_root, hex, samples, tshark_fields, two_lanes,
    DataplaneProcess, Scratch,
};
use swqos_wire::relay::Provider;

/// POSTs `body` to `url` with urllib; returns (HTTP status, parsed JSON body).
fn post(url: &str, body: &str) -> (u16, Value) {
    let script = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={"Content-Type": "application/json"})
try:
    r = urllib.request.urlopen(req, timeout=10)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let out = Command::new("python3")
        .args(["-c", script, url, body])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, body) = text.split_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

fn call(url: &str, method: &str, params: Value) -> Value {
    let (status, v) = post(
        url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn send_transaction_fans_out_through_the_data_plane() {
    if !have_root("send_transaction_fans_out_through_the_data_plane") {
        return;
    }
    let scratch = Scratch::new("rpc");
    let pcap = scratch.path("tx.pcap");
    let (metrics_port, rpc_port) = (free_port(), free_port());
    let mut text = config_text(
        "rpc",
        &format!("net_pcap0,tx_pcap={}", pcap.display()),
        "off",
        2,
        &two_lanes(),
    );
    text.push_str(&format!(
        "\n[control]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nrpc_listen = \"127.0.0.1:{rpc_port}\"\n"
    ));
    let config = scratch.path("rpc.toml");
    std::fs::write(&config, text).unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    let mut control = Command::new(bin("swqos"))
        .args(["control", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{rpc_port}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "swqos control did not open the RPC port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call(&url, "getHealth", json!([]))["result"], "ok");

    // Every valid sample, alternating the two encodings Solana clients use.
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    for (i, s) in valid.iter().enumerate() {
        let params = if i % 2 == 0 {
            use base64::Engine;
            json!([base64::engine::general_purpose::STANDARD.encode(&s.bytes), {"encoding": "base64"}])
        } else {
            json!([bs58::encode(&s.bytes).into_string()]) // base58 is the default encoding
        };
        let v = call(&url, "sendTransaction", params);
        assert_eq!(
            v["result"].as_str(),
            s.signature.as_deref(),
            "{}: {v}",
            s.name
        );
    }
    // Invalid transactions: JSON-RPC invalid-params errors with the reason; nothing is sent.
    for s in all.iter().filter(|s| s.invalid.is_some()) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&s.bytes);
        let v = call(
            &url,
            "sendTransaction",
            json!([b64, {"encoding": "base64"}]),
        );
        assert_eq!(v["error"]["code"], -32602, "{}: {v}", s.name);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid transaction"),
            "{v}"
        );
    }
    // Malformed requests.
    let (status, v) = post(&url, "{not json");
    assert_eq!((status, v["error"]["code"].as_i64()), (200, Some(-32700)));
    // Not answered here and no `rpc_upstream` to forward it to: -32093, reason named.
    let v = call(&url, "getBalance", json!([]));
    assert_eq!(v["error"]["code"], -32093, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "not_configured", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[control] rpc_upstream"),
        "{v}"
    );
    assert_eq!(
        call(&url, "sendTransaction", json!([]))["error"]["code"],
        -32602
    );
    assert_eq!(
        call(
            &url,
            "sendTransaction",
            json!(["AQ==", {"encoding": "hex"}])
        )["error"]["code"],
        -32602
    );
    // No Jito relay lane here (UDP lanes only): no bundles.
    let v = call(
        &url,
        "sendBundle",
        json!([[base64::engine::general_purpose::STANDARD.encode(&valid[0].bytes)], {"encoding": "base64"}]),
    );
    assert_eq!(v["error"]["code"], -32601, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sendBundle needs a Jito relay lane"),
        "{v}"
    );
    // A batch answers each call.
    let (_, v) = post(
        &url,
        r#"[{"jsonrpc":"2.0","id":1,"method":"getHealth"},{"jsonrpc":"2.0","id":2,"method":"swqos_nope"}]"#,
    );
    assert_eq!(
        (v[0]["result"].as_str(), v[1]["error"]["code"].as_i64()),
        (Some("ok"), Some(-32601))
    );

    dp.stop(libc::SIGTERM);
    // Without a data plane the endpoint says the node is unhealthy.
    let v = call(&url, "getHealth", json!([]));
    assert_eq!(v["error"]["code"], -32005, "{v}");
    // SAFETY: kill with our child's pid and a standard signal.
    unsafe { libc::kill(control.id() as i32, libc::SIGTERM) };
    let status = control.wait().unwrap();
    assert!(status.success(), "swqos control exit {status}");

    let rows = tshark_fields(&pcap, &["udp.dstport", "udp.checksum.status", "data.data"]);
    assert_eq!(
        rows.len(),
        valid.len() * 2,
        "each valid transaction once per lane"
    );
    for s in &valid {
        let h = hex(&s.bytes);
        for port in ["8001", "8002"] {
            let n = rows.iter().filter(|r| r[0] == port && r[2] == h).count();
            assert_eq!(n, 1, "{} on port {port}", s.name);
        }
    }
    assert!(rows.iter().all(|r| r[1] == "1"), "UDP checksums good");
}

/// Waits until something listens on `port` on loopback.
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "swqos control did not open the RPC port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mock relay's bundle id: hex sha256 of the transactions' first signatures, concatenated
/// (tests/relay/README.md), computed independently with Python's hashlib.
fn mock_bundle_id(signatures: &[&str]) -> String {
    let raw: Vec<u8> = signatures
        .iter()
        .flat_map(|s| bs58::decode(s).into_vec().unwrap())
        .collect();
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib, sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).hexdigest())",
            &hex(&raw),
        ])
        .output()
        .expect("run python3");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn send_bundle_reaches_the_jito_relay_lane() {
    if !have_root("send_bundle_reaches_the_jito_relay_lane") {
        return;
    }
    // The relay network of tests/tests/relay_lanes.rs, reduced to one Jito lane: the mock relay
    // in the peer namespace, the dataplane bridging the control plane's kernel TCP to it.
    let rpc_port = free_port();
    let rig = Rig::start_with(
        "rpc-bundle",
        &[("jito".to_string(), Provider::Jito)],
        1,
        &["--strict"],
        &format!("rpc_listen = \"127.0.0.1:{rpc_port}\"\n"),
        "",
    );
    wait_for_port(rpc_port);
    let url = format!("http://127.0.0.1:{rpc_port}/");
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    // Warm up: one transaction through the lane, until the relay connection is up.
    rig.warm_up(&valid[0].line);

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let enc = json!({"encoding": "base64"});
    // Refused before anything is sent: six transactions, an invalid one (named by index).
    let six: Vec<String> = valid[1..7].iter().map(|s| b64(&s.bytes)).collect();
    let v = call(&url, "sendBundle", json!([six, enc]));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let bad = all
        .iter()
        .find(|s| s.invalid.is_some() && !s.bytes.is_empty())
        .unwrap();
    let v = call(
        &url,
        "sendBundle",
        json!([[b64(&valid[1].bytes), b64(&bad.bytes)], enc]),
    );
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("transaction 1") && msg.contains("invalid transaction"),
        "{v}"
    );

    // Three valid transactions: one bundle, answered with the relay's bundle id.
    let bundle = &valid[1..4];
    let txs: Vec<String> = bundle.iter().map(|s| b64(&s.bytes)).collect();
    let sigs: Vec<&str> = bundle
        .iter()
        .map(|s| s.signature.as_deref().unwrap())
        .collect();
    let v = call(&url, "sendBundle", json!([txs, enc]));
    assert_eq!(
        v["result"].as_str(),
        Some(&mock_bundle_id(&sigs)[..]),
        "{v}"
    );
    // base58 (the default encoding) is accepted too; not sent here to keep the count exact.

    let lines: Vec<Value> = std::fs::read_to_string(&rig.log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bundles: Vec<&Value> = lines
        .iter()
        .filter(|l| l["provider"] == "jito-bundle")
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    assert_eq!(bundles[0]["ok"], true, "{}", bundles[0]);
    assert_eq!(bundles[0]["signatures"], json!(sigs), "{}", bundles[0]);
    assert!(
        lines.iter().all(|l| l["ok"] == true),
        "the relay refused requests: {lines:?}"
    );

    rig.stop();
}
