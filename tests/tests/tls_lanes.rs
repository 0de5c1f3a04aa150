//! TLS relay lanes end to end: `swqos control` makes the TLS connections (rustls), the data
//! plane seals each request as TLS records in the mbufs of a delegated send, and independent TLS
//! stacks in the peer namespace decrypt them: Debian's nginx (OpenSSL) in front of the mock
//! relay, and `openssl s_server`. Every TLS 1.3 and 1.2 suite the lanes support, KeyUpdates,
//! the NIC-side capture decrypted by tshark with the key log, loss, resets, a control-plane
//! restart and a relay the lane does not trust.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use swqos_tests::capture::RelayCapture;
use swqos_tests::rig::{Rig, TOKEN};
use swqos_tests::tls_relays::{
    nginx_tls, s_server_relay, NginxTls, TestPki, NGINX_VARIANTS, RELAY_HOST, UNTRUSTED_PORT,
};
use swqos_tests::{have_root, samples, swqos, Sample, Scratch};
use swqos_wire::relay::{Endpoint, Provider, RequestTemplate};

/// The providers of the six suite lanes, in `NGINX_VARIANTS` order (distinct, so the mock
/// relay's log tells the lanes apart; JSON bodies, which tshark prints as text).
const SUITE_PROVIDERS: [Provider; 6] = [
    Provider::Jito,
    Provider::Bloxroute,
    Provider::NextBlock,
    Provider::Node1,
    Provider::Temporal,
    Provider::HeliusSender,
];

/// A TLS lane to `port` on the relay, trusting the test CA.
fn tls_lane(name: &str, p: Provider, port: u16, connections: u32, pki: &TestPki) -> String {
    let token = if p.needs_token() {
        format!("token = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    format!(
        "\n[[lane]]\nname = \"{name}\"\nkind = \"http\"\nprovider = \"{p}\"\nport = \"nic\"\n\
         dst_ip = \"198.18.77.2\"\ndst_port = {port}\nhost = \"{RELAY_HOST}\"\ntls = true\n\
         ca_files = [\"{}\"]\nconnections = {connections}\n{token}",
        pki.ca_pem().display()
    )
}

/// The six suite lanes (nginx ports 8443-8448).
fn suite_lanes(pki: &TestPki, connections: u32) -> String {
    NGINX_VARIANTS
        .iter()
        .filter(|v| !v.untrusted)
        .zip(SUITE_PROVIDERS)
        .map(|(v, p)| tls_lane(p.name(), p, v.port, connections, pki))
        .collect()
}

/// A test CA and its certificates, in a scratch folder of their own: the lanes' config names
/// the CA before the rig (and its scratch folder) exists.
fn test_pki(name: &str) -> (Scratch, TestPki) {
    let dir = Scratch::new(&format!("{name}-pki"));
    let pki = TestPki::new(&dir.path("pki"));
    (dir, pki)
}

/// The relay network with only the `lanes` given (TOML), one connection per mock-relay lane.
fn tls_rig(name: &str, lanes: &str) -> Rig {
    Rig::start_with(name, &[], 1, &[], "", lanes)
}

/// nginx terminating TLS in the rig's peer namespace, in front of its mock relay.
fn start_nginx(rig: &Rig, pki: &TestPki) -> NginxTls {
    nginx_tls(
        &rig.topo,
        &rig.scratch.path("nginx"),
        pki,
        "198.18.77.2:8080",
    )
}

/// The valid samples.
fn valid() -> Vec<Sample> {
    samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect()
}

/// Submits `lines` one after another (`--sequential --json`); returns the exit code and the
/// parsed lines.
fn submit(rig: &Rig, lines: &[Sample], timeout: &str) -> (Option<i32>, Vec<Value>) {
    let input: String = lines.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &[
            "submit",
            "--config",
            rig.cfg(),
            "--json",
            "--sequential",
            "--timeout",
            timeout,
            "-",
        ],
        input.as_bytes(),
    );
    let parsed = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.code(), parsed)
}

/// (fast, all) lane completions of accepted submissions.
fn fast_share(lines: &[Value]) -> (usize, usize) {
    let lanes: Vec<&Value> = lines
        .iter()
        .flat_map(|v| v["lanes"].as_array().unwrap().iter())
        .collect();
    let fast = lanes.iter().filter(|l| l["path"] == "fast").count();
    (fast, lanes.len())
}

/// Asserts each of `checked` reached each provider exactly once at the mock relay.
fn exactly_once(rig: &Rig, providers: &[Provider], checked: &[Sample]) {
    let seen = rig.delivered();
    for p in providers {
        for s in checked {
            let n = seen
                .get(&(p.name().to_string(), s.signature.clone().unwrap()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "{} reached {p} {n} times", s.name);
        }
    }
}

/// The control plane's log so far.
fn control_log(rig: &Rig) -> String {
    std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default()
}

/// The body of the request `p` makes for `tx`.
fn expected_body(p: Provider, tx: &[u8]) -> Vec<u8> {
    let template = RequestTemplate::new(
        p,
        Endpoint {
            host: RELAY_HOST,
            path: None,
            token: p.needs_token().then_some(TOKEN),
        },
    )
    .unwrap();
    let mut request = vec![0u8; template.len(tx.len())];
    template.write(tx, &mut [&mut request[..]]);
    let at = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    request.split_off(at)
}

#[test]
fn tls_lanes_of_every_suite_take_the_fast_path_to_nginx_exactly_once() {
    if !have_root("tls_lanes_of_every_suite_take_the_fast_path_to_nginx_exactly_once") {
        return;
    }
    let (pki_dir, pki) = test_pki("tls-suites");
    let keylog = pki_dir.path("keylog.txt");
    let mut rig = tls_rig("tls-suites", &suite_lanes(&pki, 2));
    let nginx = start_nginx(&rig, &pki);
    // The capture on the relay's side of the wire (what the data plane's NIC sent and
    // received) must hold the handshakes for tshark to decrypt: a control plane that knows the
    // key log starts after it, with new connections.
    let capturing = RelayCapture::start(&rig.topo, rig.scratch.path("nic.pcap"));
    assert!(rig.stop_control(libc::SIGTERM).success());
    std::env::set_var("SSLKEYLOGFILE", &keylog);
    rig.start_control();
    std::env::remove_var("SSLKEYLOGFILE");
    let all = valid();
    let (warmup, rest) = all.split_first().unwrap();
    let checked = &rest[..24];
    rig.warm_up(&warmup.line);
    let log = control_log(&rig);
    assert!(
        log.contains("SSLKEYLOGFILE is set"),
        "the key log is announced:\n{log}"
    );
    for v in NGINX_VARIANTS.iter().filter(|v| !v.untrusted) {
        let suite = v.suite.unwrap();
        assert!(
            log.contains(suite.iana),
            "port {}: {} negotiated:\n{log}",
            v.port,
            suite.iana
        );
    }

    let (code, lines) = submit(&rig, checked, "10");
    assert_eq!(code, Some(0), "{lines:?}\n{}", control_log(&rig));
    assert!(lines.iter().all(|v| v["status"] == "accepted"), "{lines:?}");
    let (fast, total) = fast_share(&lines);
    assert_eq!(total, checked.len() * SUITE_PROVIDERS.len());
    println!("fast path: {fast} of {total} TLS requests");
    // Sequential: every connection is armed again before its completion is published.
    assert_eq!(
        fast, total,
        "only {fast} of {total} sequential TLS requests took the fast path"
    );
    // Stopped with SIGINT: tcpdump (immediate mode, a flush per packet) has every frame.
    let cap = capturing.stop();

    // The mock relay behind nginx: each transaction once per lane, in each provider's shape.
    exactly_once(&rig, &SUITE_PROVIDERS, checked);
    // nginx (OpenSSL) decrypted each: one request per submission and lane, on the intended
    // protocol and suite.
    check_nginx(&nginx, checked.len() + 1);

    // tshark decrypts the capture with the key log: every request is there, in HTTP.
    let decrypted = decrypted_requests(&cap, &keylog);
    for (v, p) in NGINX_VARIANTS
        .iter()
        .filter(|v| !v.untrusted)
        .zip(SUITE_PROVIDERS)
    {
        let bodies = decrypted.get(&v.port).cloned().unwrap_or_default();
        for s in checked {
            let want = hex(&expected_body(p, &s.bytes));
            assert!(
                bodies.contains(&want),
                "port {} ({p}): {} not among the {} requests tshark decrypted",
                v.port,
                s.name,
                bodies.len()
            );
        }
    }
    // `swqos stats` reports the delegated sends' submit-to-tx_burst latency.
    let out = swqos(&["stats", "--config", rig.cfg(), "--json"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lat = &stats["totals"]["delegated_send_latency_us"];
    assert!(
        lat["samples"].as_u64().unwrap() >= fast as u64 && lat["p50"].as_f64().unwrap() > 0.0,
        "{lat}"
    );
    let done = rig.stop();
    assert!(done.stdout.contains("fast"), "{}", done.stdout);
}

/// nginx's access log: per port `want` POSTs (warm-up included), each with status 200, on the
/// variant's protocol and cipher.
fn check_nginx(nginx: &NginxTls, want: usize) {
    let entries = nginx.entries();
    for v in NGINX_VARIANTS.iter().filter(|v| !v.untrusted) {
        let suite = v.suite.unwrap();
        let posts: Vec<_> = entries
            .iter()
            .filter(|e| e.port == v.port && e.method == "POST")
            .collect();
        assert_eq!(posts.len(), want, "port {}: {posts:?}", v.port);
        for e in posts {
            assert_eq!(
                (e.protocol.as_str(), e.cipher.as_str(), e.status),
                (v.protocol, suite.openssl, 200),
                "{e:?}"
            );
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The HTTP request bodies (hex) tshark decrypted from `cap` with `keylog`, per TCP port.
fn decrypted_requests(cap: &Path, keylog: &Path) -> HashMap<u16, Vec<String>> {
    let out = std::process::Command::new("tshark")
        .args(["-r", cap.to_str().unwrap(), "-o"])
        .arg(format!("tls.keylog_file:{}", keylog.display()))
        .args([
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "tcp.dstport",
            "-e",
            "http.file_data",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: HashMap<u16, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let (Some(port), Some(body)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(port) = port.parse() else {
            continue;
        };
        // tshark prints file data as hex bytes separated by colons, or as text.
        let body = if body.len() > 2 && body.as_bytes()[2] == b':' {
            body.replace(':', "")
        } else {
            hex(body.as_bytes())
        };
        map.entry(port).or_default().push(body);
    }
    map
}

#[test]
fn openssl_s_server_decrypts_every_request_once_across_key_updates() {
    if !have_root("openssl_s_server_decrypts_every_request_once_across_key_updates") {
        return;
    }
    let (_pki_dir, pki) = test_pki("tls-s-server");
    // One connection per lane: s_server serves one client at a time.
    let lanes = tls_lane("tls13", Provider::Jito, 8450, 1, &pki)
        + &tls_lane("tls12", Provider::Bloxroute, 8451, 1, &pki);
    let rig = tls_rig("tls-s-server", &lanes);
    let dir = rig.scratch.path("s_server");
    // TLS 1.3: s_server asks for a KeyUpdate after every third response, so the control plane
    // rekeys its reader, sends its own KeyUpdate and re-arms the data plane with new keys.
    let tls13 = s_server_relay(&rig.topo, &dir, &pki, 8450, &[], Some(3));
    let tls12 = s_server_relay(
        &rig.topo,
        &dir,
        &pki,
        8451,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        None,
    );
    let all = valid();
    let (warmup, rest) = all.split_first().unwrap();
    let checked = &rest[..20];
    rig.warm_up(&warmup.line);
    let (code, lines) = submit(&rig, checked, "10");
    assert_eq!(code, Some(0), "{lines:?}\n{}", control_log(&rig));
    let (fast, total) = fast_share(&lines);
    println!("fast path: {fast} of {total} TLS requests");

    // OpenSSL decrypted each request once, byte for byte the provider's body. (The warm-up may
    // have reached one lane more than once while the other was still connecting.)
    for (relay, p, cipher) in [
        (&tls13, Provider::Jito, "TLS_AES_256_GCM_SHA384"),
        (&tls12, Provider::Bloxroute, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ] {
        let requests = relay.requests();
        for s in checked {
            let want = String::from_utf8(expected_body(p, &s.bytes)).unwrap();
            let got: Vec<&Value> = requests
                .iter()
                .filter(|r| r["body"].as_str() == Some(want.as_str()))
                .collect();
            assert_eq!(
                got.len(),
                1,
                "port {}: {} arrived {} times",
                relay.port,
                s.name,
                got.len()
            );
            assert_eq!(got[0]["method"], "POST", "{}", got[0]);
            assert_eq!(got[0]["cipher"], cipher, "{}", got[0]);
        }
        // One TLS connection carried them all (no reconnects).
        assert!(requests.iter().all(|r| r["conn"] == 1), "{requests:?}");
    }
    let updates = tls13.key_updates();
    assert!(
        updates.len() >= 6 && updates.iter().all(|u| u["result"] == 1),
        "s_server's KeyUpdates: {updates:?}"
    );
    // Sequential: a connection is armed again before its completion is published, except
    // while a KeyUpdate it has just written is unacknowledged: only the request after one of
    // s_server's KeyUpdates may go the fallback way, and the TLS 1.2 lane has none.
    let slow = |lane: &str| {
        lines
            .iter()
            .flat_map(|v| v["lanes"].as_array().unwrap().iter())
            .filter(|l| l["lane"] == lane && l["path"] != "fast")
            .count()
    };
    assert_eq!(slow("tls12"), 0, "{lines:?}\n{}", control_log(&rig));
    assert!(
        slow("tls13") <= updates.len(),
        "{} of {total} TLS 1.3 requests went the slow way, {} KeyUpdates\n{}",
        slow("tls13"),
        updates.len(),
        control_log(&rig)
    );
    rig.stop();
}

#[test]
fn a_relay_certificate_the_lane_does_not_trust_fails_with_a_clear_error() {
    if !have_root("a_relay_certificate_the_lane_does_not_trust_fails_with_a_clear_error") {
        return;
    }
    let (_pki_dir, pki) = test_pki("tls-untrusted");
    let lane = tls_lane("untrusted", Provider::Jito, UNTRUSTED_PORT, 1, &pki);
    let rig = tls_rig("tls-untrusted", &lane);
    let _nginx = start_nginx(&rig, &pki);
    let all = valid();
    // The first handshake may still be under way: wait until the lane has failed once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !control_log(&rig).contains("UnknownIssuer") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            control_log(&rig)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, lines) = submit(&rig, &all[..1], "10");
    assert_eq!(code, Some(1), "{lines:?}");
    let reason = lines[0]["lanes"][0]["reason"]
        .as_str()
        .or(lines[0]["reason"].as_str())
        .unwrap_or("");
    assert_eq!(
        reason,
        "relay error: not sent: TLS handshake failed: the relay's certificate is not trusted \
         (see swqos control's log)",
        "{lines:?}"
    );
    assert!(
        lines[0]["lanes"][0]["path"].is_null(),
        "a request that never left has no path: {lines:?}"
    );
    // The log says which certificate problem.
    assert!(
        control_log(&rig).contains(
            "untrusted conn 0 to 198.18.77.2:8449: TLS handshake with relay.test: \
             invalid peer certificate: UnknownIssuer"
        ),
        "{}",
        control_log(&rig)
    );
    assert!(rig.delivered().is_empty(), "nothing reached the relay");
    rig.stop();
}

/// Adds an nftables rule to the relay namespace's input chain (table `swqos_tls`, made on first
/// use); returns the chain's listing command.
fn relay_rule(rig: &Rig, rule: &[&str]) {
    let topo = &rig.topo;
    topo.in_ns(&["nft", "add", "table", "inet", "swqos_tls"]);
    topo.in_ns(&[
        "nft",
        "add",
        "chain",
        "inet",
        "swqos_tls",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    let mut args = vec!["nft", "add", "rule", "inet", "swqos_tls", "input"];
    args.extend_from_slice(rule);
    topo.in_ns(&args);
}

#[test]
fn tls_lanes_lose_nothing_under_twenty_percent_loss() {
    if !have_root("tls_lanes_lose_nothing_under_twenty_percent_loss") {
        return;
    }
    let (_pki_dir, pki) = test_pki("tls-loss");
    // TLS 1.3 (AES-256-GCM) and TLS 1.2 (AES-128-GCM) lanes.
    let lanes = tls_lane("jito", Provider::Jito, 8443, 2, &pki)
        + &tls_lane("bloxroute", Provider::Bloxroute, 8446, 2, &pki);
    let rig = tls_rig("tls-loss", &lanes);
    let _nginx = start_nginx(&rig, &pki);
    let all = valid();
    let (warmup, rest) = all.split_first().unwrap();
    let checked = &rest[..20];
    rig.warm_up(&warmup.line);
    // One in five TCP segments coming to the TLS relays is dropped: fast sends and the
    // kernel's copies alike.
    relay_rule(
        &rig,
        &[
            "tcp", "dport", "{", "8443", ",", "8446", "}", "numgen", "random", "mod", "5", "==",
            "0", "counter", "drop",
        ],
    );
    let (code, lines) = submit(&rig, checked, "60");
    let dropped = rig
        .topo
        .in_ns(&["nft", "list", "chain", "inet", "swqos_tls", "input"]);
    assert_eq!(code, Some(0), "{lines:?}\n{dropped}\n{}", control_log(&rig));
    assert!(
        !dropped.contains("counter packets 0 "),
        "nothing was dropped: {dropped}"
    );
    let (fast, total) = fast_share(&lines);
    println!("under loss: {fast} of {total} TLS requests took the fast path");
    exactly_once(&rig, &[Provider::Jito, Provider::Bloxroute], checked);
    rig.stop();
}

#[test]
fn a_tls_relay_reset_is_reported_and_the_lane_recovers() {
    if !have_root("a_tls_relay_reset_is_reported_and_the_lane_recovers") {
        return;
    }
    let (_pki_dir, pki) = test_pki("tls-reset");
    let lane = tls_lane("jito", Provider::Jito, 8443, 1, &pki);
    let rig = tls_rig("tls-reset", &lane);
    let _nginx = start_nginx(&rig, &pki);
    let all = valid();
    rig.warm_up(&all[0].line);
    let (code, lines) = submit(&rig, &all[1..2], "10");
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines[0]["lanes"][0]["path"], "fast", "{lines:?}");
    // The relay's host answers the next request's segments with a TCP reset.
    relay_rule(
        &rig,
        &[
            "tcp", "dport", "8443", "counter", "reject", "with", "tcp", "reset",
        ],
    );
    let (code, lines) = submit(&rig, &all[2..3], "10");
    assert_eq!(code, Some(1), "{lines:?}");
    let reason = lines[0]["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("relay error: "), "{reason}");
    rig.topo
        .in_ns(&["nft", "delete", "table", "inet", "swqos_tls"]);
    // The lane reconnects (a new TLS session) and the fast path works again.
    rig.warm_up(&all[3].line);
    let (code, lines) = submit(&rig, &all[4..8], "10");
    assert_eq!(code, Some(0), "{lines:?}");
    let (fast, total) = fast_share(&lines);
    assert_eq!(
        fast, total,
        "only {fast} of {total} after the reset went the fast way"
    );
    let log = control_log(&rig);
    assert!(log.contains("reconnected (TLS 1.3"), "{log}");
    let seen = rig.delivered();
    assert_eq!(
        seen.get(&("jito".into(), all[2].signature.clone().unwrap())),
        None,
        "the reset request never reached the relay"
    );
    rig.stop();
}

#[test]
fn tls_lanes_survive_a_control_plane_restart() {
    if !have_root("tls_lanes_survive_a_control_plane_restart") {
        return;
    }
    let (_pki_dir, pki) = test_pki("tls-restart");
    let lane = tls_lane("bloxroute", Provider::Bloxroute, 8445, 1, &pki);
    let mut rig = tls_rig("tls-restart", &lane);
    let _nginx = start_nginx(&rig, &pki);
    let all = valid();
    rig.warm_up(&all[0].line);
    let status = rig.stop_control(libc::SIGKILL);
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(800));
    // No control plane: answered at once, never lost.
    let (code, lines) = submit(&rig, &all[1..2], "10");
    assert_eq!(code, Some(1), "{lines:?}");
    let reason = lines[0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("no control plane"), "{reason}");
    rig.start_control();
    rig.warm_up(&all[2].line);
    let (code, lines) = submit(&rig, &all[3..8], "10");
    assert_eq!(code, Some(0), "{lines:?}");
    let (fast, total) = fast_share(&lines);
    assert_eq!(
        fast, total,
        "only {fast} of {total} sends after the restart took the fast path"
    );
    exactly_once(&rig, &[Provider::Bloxroute], &all[2..8]);
    assert_eq!(
        rig.delivered()
            .get(&("bloxroute".into(), all[1].signature.clone().unwrap())),
        None,
        "the refused one never went out"
    );
    // The armed connection's write key is in the control file (0600, beside the segment)
    // while the connection lives, and zeroed when the control plane stops. A client maps the
    // segment only: the control file is nowhere in its address space.
    let config = dpdk_config::Config::load(&rig.config).unwrap();
    let control = swqos_shm::control_segment::control_path(&config.shm.path);
    let client = swqos_shm::Client::attach(&config.shm.path).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains(config.shm.path.to_str().unwrap()), "{maps}");
    assert!(
        !maps.contains(control.to_str().unwrap()),
        "a client mapped the control file: {maps}"
    );
    drop(client);
    let seg = swqos_shm::Segment::attach(&config.shm.path).unwrap();
    let ctl = swqos_shm::ControlSegment::attach(&seg).unwrap();
    let keyed = |ctl: &swqos_shm::ControlSegment| {
        (0..swqos_shm::layout::MAX_SESSIONS)
            .filter(|&i| ctl.session(i).has_key_material())
            .count()
    };
    assert_eq!(keyed(&ctl), 1, "the live TLS connection's entry");
    assert!(rig.stop_control(libc::SIGTERM).success());
    assert_eq!(keyed(&ctl), 0, "keys left in the control file");
    drop(ctl);
    drop(seg);
    rig.stop();
}
