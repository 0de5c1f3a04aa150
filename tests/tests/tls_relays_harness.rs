//! The TLS relays of `swqos_tests::tls_relays` checked on their own, without the data plane:
//! clients (curl) run inside the peer namespace and connect to 198.18.77.2 directly. nginx
//! must negotiate each variant's protocol and suite and forward each request once to the mock
//! relay; the untrusted variant must fail verification with the test CA; the s_server relay
//! must answer, log exact bodies, speak TLS 1.2 when told and send KeyUpdates on request.

use std::path::Path;
use std::process::{Command, Output};

use swqos_tests::rig::TOKEN;
use swqos_tests::tls_relays::{
    nginx_tls, s_server_relay, TestPki, NGINX_VARIANTS, RELAY_HOST, RELAY_IP,
    TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256, UNTRUSTED_PORT,
};
use swqos_tests::topology::{wait_for_line, Guard, Topology};
use swqos_tests::{have_root, samples, workspace, Sample, Scratch};
use swqos_wire::relay::{Endpoint, Provider, RequestTemplate};

/// Runs curl in the peer namespace: one request per `(path, options)` of `requests`, to
/// `https://relay.test:<port><path>`, in order over one connection when the server keeps it
/// open, each with `ca` as the only trust anchor. After each response body curl prints
/// `\n=> <http code>\n`.
fn curl_all(topo: &Topology, ca: &Path, port: u16, requests: &[(&str, &[&str])]) -> Output {
    let resolve = format!("{RELAY_HOST}:{port}:{RELAY_IP}");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &topo.ns, "curl", "-sS", "-v"]);
    for (i, (path, extra)) in requests.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["--max-time", "5", "--cacert", ca.to_str().unwrap()])
            .args(["--resolve", &resolve, "-w", "\n=> %{http_code}\n"])
            .args(*extra)
            .arg(format!("https://{RELAY_HOST}:{port}{path}"));
    }
    cmd.output().expect("run curl (apt-get install curl)")
}

/// [`curl_all`] with one request.
fn curl(topo: &Topology, ca: &Path, port: u16, path: &str, extra: &[&str]) -> Output {
    curl_all(topo, ca, port, &[(path, extra)])
}

/// The response bodies and status codes curl printed.
fn answers(out: &Output) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut all = Vec::new();
    let mut rest = text.as_str();
    while let Some((body, after)) = rest.split_once("\n=> ") {
        let (code, next) = after.split_once('\n').unwrap_or((after, ""));
        all.push((body.to_string(), code.to_string()));
        rest = next;
    }
    all
}

/// The only response body and status code curl printed.
fn body_and_code(out: &Output) -> (String, String) {
    let all = answers(out);
    assert_eq!(all.len(), 1, "{}", String::from_utf8_lossy(&out.stdout));
    all[0].clone()
}

/// `SSL connection using <protocol> / <cipher>` from curl's verbose output.
fn curl_negotiated(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("* SSL connection using "))
        .unwrap_or("")
        .to_string()
}

/// Jito's request for `s` through `host`: (path and query, x-jito-auth, body).
fn jito_request(s: &Sample, host: &str) -> (String, String) {
    let template = RequestTemplate::new(
        Provider::Jito,
        Endpoint {
            host,
            path: None,
            token: Some(TOKEN),
        },
    )
    .unwrap();
    let mut buf = vec![0u8; template.len(s.bytes.len())];
    let n = template.write(&s.bytes, &mut [&mut buf[..]]).unwrap();
    let text = String::from_utf8(buf[..n].to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let target = head
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    (target, body.to_string())
}

/// The mock relay on 198.18.77.2:8080 in the peer namespace, logging to `log`.
fn mock_relay(topo: &Topology, log: &Path) -> Guard {
    let script = workspace().join("tests/relay/mock_relay.py");
    let mut mock = Guard(topo.spawn_in_ns(&[
        "python3",
        "-u",
        script.to_str().unwrap(),
        "--listen",
        "198.18.77.2:8080",
        "--token-all",
        TOKEN,
        "--log",
        log.to_str().unwrap(),
    ]));
    wait_for_line(&mut mock.0, "listening on");
    mock
}

#[test]
fn nginx_variants_negotiate_their_suite_and_forward_each_request_once() {
    if !have_root("nginx_variants_negotiate_their_suite_and_forward_each_request_once") {
        return;
    }
    let scratch = Scratch::new("tls-nginx");
    let topo = Topology::new();
    let pki = TestPki::new(&scratch.path("pki"));
    let mock_log = scratch.path("mock.jsonl");
    let _mock = mock_relay(&topo, &mock_log);
    let nginx = nginx_tls(&topo, &scratch.path("nginx"), &pki, "198.18.77.2:8080");

    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let trusted: Vec<_> = NGINX_VARIANTS.iter().filter(|v| !v.untrusted).collect();
    assert_eq!(trusted.len(), 6);
    let mut sent = Vec::new();
    for (v, s) in trusted.iter().zip(&valid) {
        let suite = v.suite.unwrap();
        let host = format!("{RELAY_HOST}:{}", v.port);
        let (target, body) = jito_request(s, &host);
        let auth = format!("x-jito-auth: {TOKEN}");
        let out = curl(
            &topo,
            pki.ca_pem(),
            v.port,
            &target,
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                &auth,
                "--data-binary",
                &body,
            ],
        );
        let (answer, code) = body_and_code(&out);
        assert_eq!(
            code,
            "200",
            "port {}: {answer}\n{}",
            v.port,
            String::from_utf8_lossy(&out.stderr)
        );
        let sig = s.signature.clone().unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["result"], sig.as_str(), "port {}", v.port);
        // The client's view of the handshake.
        assert_eq!(
            curl_negotiated(&out),
            format!("{} / {}", v.protocol, suite.openssl),
            "port {}",
            v.port
        );
        sent.push((v.port, sig, body.len()));
    }

    // nginx's view: one request per variant, with the intended protocol and cipher.
    let entries = nginx.entries();
    assert_eq!(entries.len(), trusted.len(), "{entries:?}");
    for v in &trusted {
        let e: Vec<_> = entries.iter().filter(|e| e.port == v.port).collect();
        assert_eq!(e.len(), 1, "port {}: {entries:?}", v.port);
        let e = e[0];
        assert_eq!(e.protocol, v.protocol, "{e:?}");
        assert_eq!(e.cipher, v.suite.unwrap().openssl, "{e:?}");
        assert_eq!(e.method, "POST", "{e:?}");
        assert!(e.uri.starts_with("/api/v1/transactions?uuid="), "{e:?}");
        assert_eq!(e.status, 200, "{e:?}");
        let (_, _, len) = sent.iter().find(|(p, _, _)| *p == v.port).unwrap();
        assert_eq!(e.content_length, Some(*len as u64), "{e:?}");
    }

    // The mock relay's view: each transaction exactly once, accepted as Jito's.
    let log = std::fs::read_to_string(&mock_log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), sent.len(), "{log}");
    for (port, sig, _) in &sent {
        let hits: Vec<_> = lines
            .iter()
            .filter(|l| l["signature"] == sig.as_str())
            .collect();
        assert_eq!(hits.len(), 1, "port {port}: {log}");
        assert_eq!(hits[0]["ok"], true, "port {port}: {log}");
        assert_eq!(hits[0]["provider"], "jito", "port {port}: {log}");
    }
}

#[test]
fn the_untrusted_variant_fails_verification_with_the_test_ca() {
    if !have_root("the_untrusted_variant_fails_verification_with_the_test_ca") {
        return;
    }
    let scratch = Scratch::new("tls-untrusted");
    let topo = Topology::new();
    let pki = TestPki::new(&scratch.path("pki"));
    let mock_log = scratch.path("mock.jsonl");
    let _mock = mock_relay(&topo, &mock_log);
    let nginx = nginx_tls(&topo, &scratch.path("nginx"), &pki, "198.18.77.2:8080");
    let body = ["--data-binary", "{}"];

    // The test CA does not vouch for it: curl's 60, "SSL certificate problem".
    let out = curl(&topo, pki.ca_pem(), UNTRUSTED_PORT, "/", &body);
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The certificate itself is fine: its own CA accepts it (the mock relay refuses the empty
    // request, but over a verified TLS 1.3 connection).
    let out = curl(&topo, pki.untrusted_ca_pem(), UNTRUSTED_PORT, "/", &body);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        curl_negotiated(&out).starts_with("TLSv1.3 / "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a trusted port's certificate does not verify with the untrusted CA.
    let out = curl(&topo, pki.untrusted_ca_pem(), 8443, "/", &body);
    assert_eq!(out.status.code(), Some(60));
    // Only the verified request got through to nginx's HTTP layer.
    let entries = nginx.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].port, UNTRUSTED_PORT);
}

#[test]
fn s_server_relay_answers_and_logs_exact_bodies() {
    if !have_root("s_server_relay_answers_and_logs_exact_bodies") {
        return;
    }
    let scratch = Scratch::new("tls-s-server");
    let topo = Topology::new();
    let pki = TestPki::new(&scratch.path("pki"));
    let relay = s_server_relay(&topo, &scratch.dir, &pki, 9443, &[], None);
    let all = samples();
    let s = all.iter().find(|s| s.invalid.is_none()).unwrap();
    let (target, body) = jito_request(s, &format!("{RELAY_HOST}:9443"));
    // Two requests over one connection (curl keeps it alive across --next).
    let out = curl_all(
        &topo,
        pki.ca_pem(),
        9443,
        &[
            (
                &target,
                &[
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &body,
                ],
            ),
            ("/second", &["--data-binary", "second body"]),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let want = (
        r#"{"jsonrpc":"2.0","result":"s_server","id":1}"#.to_string(),
        "200".to_string(),
    );
    assert_eq!(answers(&out), [want.clone(), want], "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    assert!(
        curl_negotiated(&out).starts_with("TLSv1.3 / TLS_"),
        "{stderr}"
    );

    let reqs = relay.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["path"], target.as_str());
    assert_eq!(reqs[0]["body"], body.as_str());
    assert_eq!(reqs[0]["len"], body.len());
    assert_eq!(reqs[0]["headers"]["content-type"], "application/json");
    assert_eq!(reqs[0]["headers"]["host"], format!("{RELAY_HOST}:9443"));
    assert_eq!(reqs[1]["path"], "/second");
    assert_eq!(reqs[1]["body"], "second body");
    assert_eq!(reqs[1]["len"], 11);
    for r in &reqs {
        assert_eq!(r["conn"], 1, "one connection: {reqs:?}");
        assert!(r["cipher"].as_str().unwrap().starts_with("TLS_"), "{r}");
    }
    assert!(relay.key_updates().is_empty());
}

#[test]
fn s_server_relay_speaks_tls12_when_told() {
    if !have_root("s_server_relay_speaks_tls12_when_told") {
        return;
    }
    let scratch = Scratch::new("tls-s-server-12");
    let topo = Topology::new();
    let pki = TestPki::new(&scratch.path("pki"));
    let suite = TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256;
    // --key-update-every is ignored on TLS 1.2 (no KeyUpdate there).
    let relay = s_server_relay(
        &topo,
        &scratch.dir,
        &pki,
        9444,
        &["-tls1_2", "-cipher", suite.openssl],
        Some(1),
    );
    let out = curl(
        &topo,
        pki.ca_pem(),
        9444,
        "/tls12",
        &["--data-binary", "hello 1.2"],
    );
    let (answer, code) = body_and_code(&out);
    assert_eq!(code, "200", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answer, r#"{"jsonrpc":"2.0","result":"s_server","id":1}"#);
    assert_eq!(
        curl_negotiated(&out),
        format!("TLSv1.2 / {}", suite.openssl)
    );
    let reqs = relay.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["body"], "hello 1.2");
    assert_eq!(reqs[0]["cipher"], suite.openssl);
    assert_eq!(reqs[0]["key_update_after"], false);
    assert!(relay.key_updates().is_empty());
    // TLS 1.3 is refused.
    let out = curl(&topo, pki.ca_pem(), 9444, "/", &["--tlsv1.3"]);
    assert!(!out.status.success());
}

#[test]
fn s_server_relay_sends_key_updates_the_client_follows() {
    if !have_root("s_server_relay_sends_key_updates_the_client_follows") {
        return;
    }
    let scratch = Scratch::new("tls-s-server-ku");
    let topo = Topology::new();
    let pki = TestPki::new(&scratch.path("pki"));
    let relay = s_server_relay(&topo, &scratch.dir, &pki, 9445, &[], Some(1));
    let out = curl_all(
        &topo,
        pki.ca_pem(),
        9445,
        &[
            ("/r1", &["--data-binary", "r1"]),
            ("/r2", &["--data-binary", "r2"]),
            ("/r3", &["--data-binary", "r3"]),
            ("/r4", &["--data-binary", "r4"]),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = answers(&out);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.iter()
            .all(|(b, c)| c == "200" && b.contains(r#""result":"s_server""#)),
        "{got:?}"
    );
    assert_eq!(
        stderr.matches("Re-using existing connection").count(),
        3,
        "{stderr}"
    );
    // The client saw the server's KeyUpdates and answered. curl reads the KeyUpdate sent after
    // response n with response n + 1 (which the server encrypted under its new keys), and
    // its own KeyUpdate goes out with its next request (which the server then decrypts under
    // the client's new keys): 3 in, 2 out for 4 requests.
    let key_updates_in = stderr.matches("(IN), TLS handshake, Key update").count();
    let key_updates_out = stderr.matches("(OUT), TLS handshake, Key update").count();
    assert!(key_updates_in >= 3, "{stderr}");
    assert!(key_updates_out >= 2, "{stderr}");

    let reqs = relay.requests();
    let bodies: Vec<&str> = reqs.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["r1", "r2", "r3", "r4"], "{reqs:?}");
    assert!(reqs.iter().all(|r| r["conn"] == 1), "{reqs:?}");
    assert!(
        reqs.iter().all(|r| r["key_update_after"] == true),
        "{reqs:?}"
    );
    // s_server's SSL_key_update + SSL_do_handshake succeeded each time it had the chance
    // (the last one may still be pending when curl closes the connection).
    let done = relay.key_updates();
    assert!(done.len() >= 3, "{done:?}");
    assert!(
        done.iter().all(|k| k["result"] == 1 && k["conn"] == 1),
        "{done:?}"
    );

    // A KeyUpdate while a request is half sent: s_server's report of it lands inside that
    // request's bytes on its stdout, and the relay must still log the exact body.
    let out = Command::new("ip")
        .args(["netns", "exec", &topo.ns, "python3", "-c", SPLIT_CLIENT])
        .args([RELAY_IP, "9445", RELAY_HOST, pki.ca_pem().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("HTTP/1.1 200 OK").count(), 3, "{stdout}");
    let reqs = relay.requests();
    let second: Vec<(&str, &str)> = reqs
        .iter()
        .filter(|r| r["conn"] == 2)
        .map(|r| (r["path"].as_str().unwrap(), r["body"].as_str().unwrap()))
        .collect();
    assert_eq!(
        second,
        [
            ("/one", "first body"),
            ("/two", "second body, sent apart from its headers"),
            ("/three", "third"),
        ]
    );
    let done = relay.key_updates();
    assert!(
        done.iter()
            .filter(|k| k["conn"] == 2 && k["result"] == 1)
            .count()
            >= 2,
        "{done:?}"
    );
}

/// A TLS client (python3's ssl) that sends request 2's headers before reading response 1 (and
/// the KeyUpdate after it), then the body in two pieces; request 3's body apart from its
/// headers. Arguments: IP, port, server name, CA file.
const SPLIT_CLIENT: &str = r#"
import socket, ssl, sys, time
ip, port, name, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection((ip, port), timeout=5), server_hostname=name)
def head(path, body):
    return f"POST {path} HTTP/1.1\r\nHost: {name}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
def response():
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    h, rest = data.split(b"\r\n\r\n", 1)
    n = [int(l.split(b":")[1]) for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(rest) < n:
        rest += s.recv(4096)
    print(h.split(b"\r\n")[0].decode(), rest.decode(), flush=True)
b2 = b"second body, sent apart from its headers"
s.sendall(head("/one", "first body") + b"first body")
s.sendall(head("/two", b2.decode()))
response()
time.sleep(0.2)
s.sendall(b2[:7])
time.sleep(0.1)
s.sendall(b2[7:])
response()
s.sendall(head("/three", "third"))
time.sleep(0.1)
s.sendall(b"third")
response()
print(s.version(), s.cipher()[0], flush=True)
s.unwrap()
s.close()
"#;
