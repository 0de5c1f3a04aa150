//! The QUIC relay peer (`tests/relay/quic_relay.py`) against an independent aioquic client
//! (`tests/relay/quic_client.py`), on loopback: every provider's right shape is logged `ok`
//! exactly once per transaction; a wrong ALPN, SNI, API key or wallet key, a missing client
//! certificate and a missing or malformed auth stream are refused with the documented close
//! codes (docs/quic-lanes.md); `--max-connections` closes with 2; Node1's replies carry the
//! right bytes; `--close-after` closes after N transactions. Needs python3 with aioquic
//! (`scripts/test.sh` installs it, pinned); no root.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use swqos_tests::{samples, workspace, Scratch};

/// Every wait in this file is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);
const NODE1_KEY: &str = "7b0c4a52-3f7e-4d3a-9a55-1c2d3e4f5a6b";
const GLAIVE_KEY: &str = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
const WRONG_UUID: &str = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0c";
const ASTRALANE_KEY: &str = "astra-key-1";
const LUNAR_KEY: &str = "lunar-key-1";
/// QUIC CRYPTO_ERROR (0x100) + TLS alert.
const ALERT_UNRECOGNIZED_NAME: i64 = 0x100 + 112;
const ALERT_CERTIFICATE_REQUIRED: i64 = 0x100 + 116;
const ALERT_NO_APPLICATION_PROTOCOL: i64 = 0x100 + 120;
const PROVIDERS: [&str; 7] = [
    "node1",
    "astralane",
    "soyas",
    "speedlanding",
    "solami",
    "glaive",
    "lunarlander",
];

fn python(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(workspace().join("tests/relay").join(script));
    c
}

/// The test PKI: CA, server certificate, client certificates and two wallets.
fn pki(dir: &Path) {
    let out = python("quic_pki.py")
        .arg(dir)
        .args(["--client", &format!("astra={ASTRALANE_KEY}")])
        .args(["--client", "other=some-other-key"])
        .args(["--client-mev", &format!("lunarmev={LUNAR_KEY}")])
        .args(["--keypair", "w1", "--keypair", "w2"])
        .output()
        .expect("spawn python3 tests/relay/quic_pki.py");
    assert!(
        out.status.success(),
        "quic_pki.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running quic_relay.py with one listener per provider.
struct Relay {
    child: Child,
    addrs: HashMap<String, String>,
    log: PathBuf,
    pki: PathBuf,
    stdout: Option<ChildStdout>,
}

impl Relay {
    fn start(scratch: &Scratch, extra: &[&str]) -> Relay {
        let dir = scratch.path("pki");
        pki(&dir);
        let w1 = fs::read_to_string(dir.join("keypair-w1.pubkey")).unwrap();
        let log = scratch.path("relay.jsonl");
        let mut cmd = python("quic_relay.py");
        for p in PROVIDERS {
            cmd.args(["--listen", &format!("127.0.0.1:0={p}")]);
        }
        cmd.arg("--cert").arg(dir.join("server.pem"));
        cmd.arg("--key").arg(dir.join("server.key"));
        for (p, k) in [
            ("node1", NODE1_KEY),
            ("glaive", GLAIVE_KEY),
            ("astralane", ASTRALANE_KEY),
            ("lunarlander", LUNAR_KEY),
        ] {
            cmd.args(["--key", &format!("{p}={k}")]);
        }
        for p in ["soyas", "speedlanding", "solami"] {
            cmd.args(["--keypair-pubkey", &format!("{p}={}", w1.trim())]);
        }
        cmd.arg("--log").arg(&log).args(extra);
        let stderr = fs::File::create(scratch.path("relay.err")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn python3 tests/relay/quic_relay.py");
        let (line, stdout) = first_line(child.stdout.take().unwrap());
        let ready = line.strip_prefix("listening on ").unwrap_or_else(|| {
            let err = fs::read_to_string(scratch.path("relay.err")).unwrap_or_default();
            panic!("quic_relay.py did not start (aioquic installed? scripts/test.sh pins it): {line:?}\n{err}")
        });
        let addrs = ready
            .split_whitespace()
            .map(|s| {
                let (a, p) = s.split_once('=').expect("ADDR=PROVIDER");
                (p.to_string(), a.to_string())
            })
            .collect();
        Relay {
            child,
            addrs,
            log,
            pki: dir,
            stdout: Some(stdout),
        }
    }

    fn lines(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json log line"))
            .collect()
    }

    fn file(&self, name: &str) -> String {
        self.pki.join(name).to_string_lossy().into_owned()
    }

    /// Runs quic_client.py for `provider` with `args`; returns its summary.
    fn client(&self, provider: &str, args: &[&str]) -> Value {
        let mut cmd = self.client_cmd(provider, args);
        let out = cmd.output().expect("spawn quic_client.py");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "quic_client.py {provider} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(text.lines().last().unwrap_or("")).expect("client summary")
    }

    fn client_cmd(&self, provider: &str, args: &[&str]) -> Command {
        let mut cmd = python("quic_client.py");
        cmd.arg(&self.addrs[provider]).arg(provider).args(args);
        cmd.args(["--timeout", "10"]).stdin(Stdio::null());
        cmd
    }

    /// The identity sol-trade-sdk's client for `provider` presents (certificate, key, UUID).
    fn identity(&self, provider: &str) -> Vec<String> {
        let pair = |stem: &str| {
            vec![
                "--cert".to_string(),
                self.file(&format!("{stem}.pem")),
                "--key".to_string(),
                self.file(&format!("{stem}.key")),
            ]
        };
        match provider {
            "node1" => vec!["--api-key".into(), NODE1_KEY.into()],
            "astralane" => pair("client-astra"),
            "lunarlander" => pair("client-lunarmev"),
            "soyas" => pair("keypair-w1-cn"),
            "speedlanding" | "solami" => pair("keypair-w1"),
            "glaive" => {
                let mut v = pair("keypair-w2");
                v.extend(["--api-key".into(), GLAIVE_KEY.into(), "--mev".into()]);
                v
            }
            _ => unreachable!(),
        }
    }

    /// `identity(provider)` with `args` after it.
    fn client_as(&self, provider: &str, args: &[&str]) -> Value {
        let mut all: Vec<String> = self.identity(provider);
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.client(provider, &refs)
    }

    /// SIGTERM: the relay prints `stopped` and exits 0.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut rest = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "relay exit: {status:?}");
        assert_eq!(rest.trim(), "stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line of `stdout` (bounded by TIMEOUT) and the stream for the rest.
fn first_line(stdout: ChildStdout) -> (String, ChildStdout) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send((line, r.into_inner()));
    });
    let (line, out) = rx
        .recv_timeout(TIMEOUT)
        .expect("a first line within the timeout");
    (line.trim_end().to_string(), out)
}

fn of<'a>(lines: &'a [Value], provider: &str, kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["provider"] == provider && l["kind"] == kind)
        .collect()
}

fn valid_signatures(n: usize) -> Vec<String> {
    samples()
        .into_iter()
        .filter_map(|s| s.signature)
        .take(n)
        .collect()
}

#[test]
fn every_provider_right_shape_is_logged_ok_once_per_transaction() {
    let scratch = Scratch::new("quic-relay-shapes");
    let keylog = scratch.path("keys.log");
    let relay = Relay::start(&scratch, &["--keylog", keylog.to_str().unwrap()]);
    let want = valid_signatures(3);
    for p in PROVIDERS {
        let s = relay.client_as(p, &["--count", "3", "--invalid", "truncated"]);
        assert_eq!(s["connected"], true, "{p}: {s}");
        assert_eq!(s["close_code"], Value::Null, "{p}: {s}");
    }
    let lines = relay.lines();
    let (alpn, sni): (HashMap<&str, Value>, HashMap<&str, Value>) = (
        [
            ("node1", Value::Null),
            ("astralane", "astralane-tpu".into()),
            ("soyas", "solana-tpu".into()),
            ("speedlanding", "solana-tpu".into()),
            ("solami", "solana-tpu".into()),
            ("glaive", "solana-tpu".into()),
            ("lunarlander", "lunar-lander-tpu".into()),
        ]
        .into(),
        [
            ("node1", Value::Null),
            ("astralane", "astralane".into()),
            ("soyas", "soyas-landing".into()),
            ("speedlanding", "speed-landing".into()),
            ("solami", "solami-beam".into()),
            ("glaive", "glaive-intake".into()),
            ("lunarlander", Value::Null),
        ]
        .into(),
    );
    for p in PROVIDERS {
        let tx = of(&lines, p, "tx");
        let ok: Vec<&str> = tx
            .iter()
            .filter(|l| l["ok"] == true)
            .map(|l| l["signature"].as_str().unwrap())
            .collect();
        assert_eq!(ok, want, "{p}: each transaction logged ok exactly once");
        let bad: Vec<&&Value> = tx.iter().filter(|l| l["ok"] == false).collect();
        assert_eq!(bad.len(), 1, "{p}: the truncated sample refused");
        assert_eq!(bad[0]["error"], "invalid transaction: truncated message");
        for l in &tx {
            assert_eq!(l["alpn"], alpn[p], "{p}: {l}");
            assert_eq!(l["sni"], sni[p], "{p}: {l}");
            let bidi = l["stream"].as_u64().unwrap() % 4 == 0;
            assert_eq!(bidi, p == "node1", "{p}: stream kind {l}");
            let s = l.to_string();
            for secret in [NODE1_KEY, GLAIVE_KEY, ASTRALANE_KEY, LUNAR_KEY] {
                assert!(!s.contains(secret), "a key reached the log: {s}");
            }
        }
    }
    let auth = of(&lines, "glaive", "auth");
    assert_eq!(auth.len(), 1);
    assert_eq!(
        (&auth[0]["ok"], &auth[0]["mev"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(of(&lines, "lunarlander", "tx")[0]["mev"], true);
    assert_eq!(of(&lines, "node1", "auth")[0]["ok"], true);
    let keys = fs::read_to_string(&keylog).unwrap_or_default();
    assert!(
        keys.contains("CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        "key log: {keys:?}"
    );
    relay.stop();
}

#[test]
fn node1_replies_status_length_message_big_endian() {
    let scratch = Scratch::new("quic-relay-node1");
    let relay = Relay::start(&scratch, &[]);
    let s = relay.client_as("node1", &["--count", "2", "--invalid", "empty"]);
    assert_eq!(s["auth_reply"], 0, "{s}");
    let want = valid_signatures(2);
    let replies = s["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 3, "{s}");
    for (r, sig) in replies.iter().zip(&want) {
        // [status, message, declared length == actual length]
        assert_eq!(r, &serde_json::json!([200, sig, true]));
    }
    assert_eq!(
        replies[2],
        serde_json::json!([400, "invalid transaction: empty", true])
    );
    // A transaction on a uni-stream is not Node1's shape.
    let s = relay.client_as("node1", &["--count", "1", "--stream", "uni"]);
    assert_eq!(s["close_code"], Value::Null, "{s}");
    let lines = relay.lines();
    let uni: Vec<_> = of(&lines, "node1", "tx")
        .into_iter()
        .filter(|l| l["stream"].as_u64().unwrap() % 4 == 2)
        .collect();
    assert_eq!(uni.len(), 1);
    assert_eq!(uni[0]["ok"], false);
    relay.stop();
}

/// (provider, client args replacing the identity, expected close code, error substring).
fn refusals(relay: &Relay) -> Vec<(&'static str, Vec<String>, i64, &'static str)> {
    let id = |p: &str| relay.identity(p);
    let with = |mut v: Vec<String>, extra: &[&str]| {
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let pair = |stem: &str| {
        vec![
            "--cert".to_string(),
            relay.file(&format!("{stem}.pem")),
            "--key".to_string(),
            relay.file(&format!("{stem}.key")),
        ]
    };
    vec![
        (
            "astralane",
            with(id("astralane"), &["--alpn", "solana-tpu"]),
            ALERT_NO_APPLICATION_PROTOCOL,
            "expects ALPN",
        ),
        (
            "lunarlander",
            with(id("lunarlander"), &["--no-alpn"]),
            ALERT_NO_APPLICATION_PROTOCOL,
            "expects ALPN",
        ),
        (
            "node1",
            with(id("node1"), &["--alpn", "solana-tpu"]),
            ALERT_NO_APPLICATION_PROTOCOL,
            "expects no ALPN",
        ),
        (
            "glaive",
            with(id("glaive"), &["--sni", "glaive"]),
            ALERT_UNRECOGNIZED_NAME,
            "expects SNI",
        ),
        (
            "soyas",
            with(id("soyas"), &["--sni", "speed-landing"]),
            ALERT_UNRECOGNIZED_NAME,
            "expects SNI",
        ),
        (
            "astralane",
            vec![],
            ALERT_CERTIFICATE_REQUIRED,
            "no client certificate",
        ),
        (
            "speedlanding",
            vec![],
            ALERT_CERTIFICATE_REQUIRED,
            "no client certificate",
        ),
        (
            "glaive",
            vec!["--api-key".into(), GLAIVE_KEY.into()],
            ALERT_CERTIFICATE_REQUIRED,
            "no client certificate",
        ),
        ("astralane", pair("client-other"), 1, "unknown API key"),
        ("lunarlander", pair("client-astra"), 1, "unknown API key"),
        (
            "soyas",
            pair("keypair-w2-cn"),
            1,
            "unknown wallet public key",
        ),
        (
            "speedlanding",
            pair("keypair-w2"),
            1,
            "unknown wallet public key",
        ),
        ("solami", pair("keypair-w2"), 1, "unknown wallet public key"),
        ("solami", pair("keypair-w1-cn"), 1, "not Ed25519"),
        (
            "node1",
            vec!["--api-key".into(), WRONG_UUID.into()],
            1,
            "unknown API key",
        ),
        (
            "glaive",
            with(pair("keypair-w2"), &["--api-key", WRONG_UUID]),
            1,
            "unknown API key",
        ),
        ("node1", with(id("node1"), &["--no-auth"]), 3, "expected 16"),
        (
            "glaive",
            with(id("glaive"), &["--no-auth"]),
            3,
            "expected 17",
        ),
        (
            "glaive",
            with(
                pair("keypair-w2"),
                &["--api-key", "0f1e2d3c-4b5a-1978-8a6b-5c4d3e2f1a0b"],
            ),
            3,
            "version 4",
        ),
        (
            "glaive",
            with(
                id("glaive"),
                &["--auth-hex", &format!("{}02", GLAIVE_KEY.replace('-', ""))],
            ),
            3,
            "unknown bits",
        ),
    ]
}

#[test]
fn wrong_shapes_are_refused_with_the_documented_codes() {
    let scratch = Scratch::new("quic-relay-refusals");
    let relay = Relay::start(&scratch, &[]);
    let cases = refusals(&relay);
    for (p, args, code, why) in &cases {
        let mut all = args.clone();
        all.extend(["--count", "1", "--expect-close"].map(String::from));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let s = relay.client(p, &refs);
        assert_eq!(s["close_code"], *code, "{p} {args:?}: {s}");
        let reason = s["close_reason"].as_str().unwrap_or("");
        assert!(reason.contains(why), "{p} {args:?}: reason {reason:?}");
        if *p == "node1" && *code == 1 {
            assert_eq!(
                s["auth_reply"], 1,
                "Node1 answers the auth stream first: {s}"
            );
        }
    }
    let lines = relay.lines();
    let accepted: Vec<_> = lines.iter().filter(|l| l["ok"] == true).collect();
    assert!(
        accepted.is_empty(),
        "nothing refused may be accepted: {accepted:?}"
    );
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["ok"] == false && l["close_code"].is_i64())
        .collect();
    assert_eq!(
        refused.len(),
        cases.len(),
        "one log line per refusal: {refused:#?}"
    );
    for ((p, _, code, _), l) in cases.iter().zip(&refused) {
        assert_eq!(
            (&l["provider"], &l["close_code"]),
            (&Value::from(*p), &Value::from(*code))
        );
    }
    relay.stop();
}

#[test]
fn max_connections_closes_with_2_and_close_after_closes_the_connection() {
    let scratch = Scratch::new("quic-relay-limits");
    let relay = Relay::start(&scratch, &["--max-connections", "1", "--close-after", "2"]);
    let mut args = relay.identity("astralane");
    args.extend(["--count", "1", "--hold"].map(String::from));
    let mut holder = relay
        .client_cmd(
            "astralane",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line, _out) = first_line(holder.stdout.take().unwrap());
    assert_eq!(
        line, "holding",
        "the first connection is up and its transaction acknowledged"
    );
    let s = relay.client_as("astralane", &["--count", "1", "--expect-close"]);
    assert_eq!(s["close_code"], 2, "{s}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    assert!(holder.wait().unwrap().success());

    let s = relay.client_as("node1", &["--count", "3"]);
    assert_eq!(s["close_code"], 0, "{s}");
    assert!(s["close_reason"]
        .as_str()
        .unwrap()
        .contains("close after 2"));
    let replies = s["replies"].as_array().unwrap();
    assert_eq!(replies[0][0], 200);
    assert_eq!(
        replies[1][0], 200,
        "the second reply arrives before the close: {s}"
    );
    let lines = relay.lines();
    let ok: Vec<_> = of(&lines, "node1", "tx")
        .into_iter()
        .filter(|l| l["ok"] == true)
        .collect();
    assert_eq!(ok.len(), 2, "no third transaction on a closed connection");
    let limit = of(&lines, "astralane", "connection");
    assert_eq!(limit.len(), 1);
    assert_eq!(limit[0]["close_code"], 2);
    relay.stop();
}
