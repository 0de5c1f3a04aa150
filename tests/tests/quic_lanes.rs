//! QUIC lanes end to end: the data plane's own QUIC connections (quinn-proto on the bridging
//! lcore, datagrams in mbufs through the af_packet NIC) to an independent QUIC server
//! (`tests/relay/quic_relay.py`, aioquic) that plays each of the seven QUIC providers and checks
//! its exact shape: ALPN, SNI, the client certificate's CN or key, the authentication stream,
//! one stream per transaction. Every transaction reaches each relay exactly once per lane, and
//! tshark, decrypting the relay-side capture with the relay's key log, finds its bytes in the
//! QUIC STREAM frames. Faults: 20% loss, a relay restart, a wrong key, an untrusted relay; a
//! QUIC lane that cannot send falls back to its http lane (Astralane's QUIC with HTTP fallback).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use swqos_tests::quic_rig::{QuicOptions, QuicRig, PROVIDERS};
use swqos_tests::rig::{Rig, TOKEN};
use swqos_tests::{have_root, samples, swqos, Sample};
use swqos_wire::relay::Provider;

fn valid() -> Vec<Sample> {
    samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect()
}

fn lines(s: &[Sample]) -> Vec<&str> {
    s.iter().map(|s| s.line.as_str()).collect()
}

/// Every line accepted with every lane sent.
fn assert_all_sent(code: Option<i32>, out: &[Value], lanes: usize) {
    assert_eq!(code, Some(0), "{out:#?}");
    for v in out {
        assert_eq!(v["status"], "accepted", "{v}");
        let l = v["lanes"].as_array().expect("lanes");
        assert_eq!(l.len(), lanes, "{v}");
        assert!(l.iter().all(|l| l["status"] == "sent"), "{v}");
    }
}

/// Each signature of `sent` reached each of `providers` exactly once.
fn assert_exactly_once(
    seen: &HashMap<(String, String), usize>,
    sent: &[Sample],
    providers: &[&str],
) {
    for p in providers {
        for s in sent {
            let sig = s.signature.clone().unwrap();
            let n = seen.get(&(p.to_string(), sig)).copied().unwrap_or(0);
            assert_eq!(n, 1, "{} reached {p} {n} times", s.name);
        }
    }
}

#[test]
fn every_quic_provider_gets_each_transaction_once_in_its_exact_shape() {
    if !have_root("every_quic_provider_gets_each_transaction_once_in_its_exact_shape") {
        return;
    }
    let mut rig = QuicRig::start("quic", &PROVIDERS, QuicOptions::default());
    rig.wait_ready(&PROVIDERS, 1);
    let txs = valid();
    let (code, out) = rig.submit(&lines(&txs), &[], "20");
    assert_all_sent(code, &out, PROVIDERS.len());
    // The relay (its log) holds each transaction once per provider, and refused nothing.
    assert_exactly_once(&rig.delivered(), &txs, &PROVIDERS);
    let refused: Vec<Value> = rig
        .relay_lines()
        .into_iter()
        .filter(|v| v["ok"] != true)
        .collect();
    assert!(refused.is_empty(), "the relay refused: {refused:#?}");
    // Every lane's completion says the relay acknowledged (or, Node1, replied 200).
    for v in &out {
        for l in v["lanes"].as_array().unwrap() {
            assert_eq!(l["path"], "fast", "{l}");
        }
    }
    let keylog = rig.keylog.clone();
    let (finished, pcap) = rig.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    // An independent dissector decrypts the relay's side of the wire: on each provider's port,
    // every transaction is the whole content of one stream, once.
    let streams = decrypted_streams(&pcap, &keylog);
    for p in PROVIDERS {
        let port = swqos_tests::quic_rig::port_of(p);
        for s in &txs {
            let n = streams
                .iter()
                .filter(|((dst, _, _), data)| *dst == port && **data == s.bytes)
                .count();
            assert_eq!(n, 1, "{}: {n} streams to {p} (port {port}) hold it", s.name);
        }
    }
}

/// Every QUIC stream's bytes in the capture, decrypted by tshark with the key log and put
/// together by offset: (UDP destination port, source port, stream id) -> data.
fn decrypted_streams(pcap: &Path, keylog: &Path) -> HashMap<(u16, u16, u64), Vec<u8>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keylog.display()))
        .args(["-Y", "quic.stream_data", "-T", "json", "-J", "udp quic"])
        // The relays' ports are not QUIC's registered one: name them, so a connection whose
        // first Initial went unanswered (retransmitted after 1 s) is still dissected from its
        // first packet (tshark's heuristic missed that handshake, and so every key of it).
        .args(PROVIDERS.iter().flat_map(|p| {
            [
                "-d".to_string(),
                format!("udp.port=={},quic", swqos_tests::quic_rig::port_of(p)),
            ]
        }))
        .arg("--no-duplicate-keys")
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).expect("tshark json");
    let mut pieces: HashMap<(u16, u16, u64), BTreeMap<u64, Vec<u8>>> = HashMap::new();
    for packet in &packets {
        let layers = &packet["_source"]["layers"];
        let port = |k: &str| layers["udp"][k].as_str().and_then(|p| p.parse().ok());
        let (Some(dst), Some(src)) = (port("udp.dstport"), port("udp.srcport")) else {
            continue;
        };
        for quic in one_or_many(&layers["quic"]) {
            for frame in one_or_many(&quic["quic.frame"]) {
                let field = |k: &str| frame[k].as_str();
                let (Some(id), Some(data)) =
                    (field("quic.stream.stream_id"), field("quic.stream_data"))
                else {
                    continue;
                };
                let offset = field("quic.stream.offset").map_or(0, |o| o.parse().unwrap());
                let bytes = data
                    .split(':')
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
                    .collect();
                pieces
                    .entry((dst, src, id.parse().unwrap()))
                    .or_default()
                    .insert(offset, bytes);
            }
        }
    }
    pieces
        .into_iter()
        .map(|(k, parts)| {
            let mut data = Vec::new();
            for (offset, bytes) in parts {
                // A retransmission repeats bytes already placed; keep what is new.
                let skip = (data.len() as u64).saturating_sub(offset) as usize;
                data.extend(bytes.into_iter().skip(skip));
            }
            (k, data)
        })
        .collect()
}

/// A tshark JSON value that is one object or a list of them.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

#[test]
fn quic_lanes_lose_nothing_under_loss_and_come_back_after_a_relay_restart() {
    if !have_root("quic_lanes_lose_nothing_under_loss_and_come_back_after_a_relay_restart") {
        return;
    }
    let lanes = ["soyas", "glaive", "node1"];
    let mut rig = QuicRig::start("quicloss", &lanes, QuicOptions::default());
    rig.wait_ready(&lanes, 1);
    let txs = valid();
    let (first, second) = txs.split_at(txs.len() / 2);

    // 20% of the relay's incoming datagrams dropped (nftables in the relay's namespace).
    for rule in [
        vec!["add", "table", "inet", "swqos_loss"],
        vec![
            "add",
            "chain",
            "inet",
            "swqos_loss",
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ],
        vec![
            "add",
            "rule",
            "inet",
            "swqos_loss",
            "input",
            "udp",
            "dport",
            "{",
            "9000",
            ",",
            "4000",
            ",",
            "16666",
            "}",
            "numgen",
            "random",
            "mod",
            "5",
            "==",
            "0",
            "counter",
            "drop",
        ],
    ] {
        let mut args = vec!["nft"];
        args.extend(rule);
        rig.topo.in_ns(&args);
    }
    let (code, out) = rig.submit(&lines(first), &[], "30");
    let rules = rig
        .topo
        .in_ns(&["nft", "list", "table", "inet", "swqos_loss"]);
    assert_all_sent(code, &out, lanes.len());
    assert_exactly_once(&rig.delivered(), first, &lanes);
    assert!(
        !rules.contains("packets 0 "),
        "nothing was dropped: {rules}"
    );
    rig.topo
        .in_ns(&["nft", "delete", "table", "inet", "swqos_loss"]);

    // The relay restarts: every lane connects again, and the rest arrives once.
    rig.stop_relay();
    rig.start_relay();
    rig.wait_ready(&lanes, 2);
    let (code, out) = rig.submit(&lines(second), &[], "20");
    assert_all_sent(code, &out, lanes.len());
    assert_exactly_once(&rig.delivered(), &txs, &lanes);
    let (finished, _) = rig.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn a_wrong_key_and_an_untrusted_relay_fail_with_their_reasons() {
    if !have_root("a_wrong_key_and_an_untrusted_relay_fail_with_their_reasons") {
        return;
    }
    let opts = QuicOptions {
        wrong_key: vec![("astralane", "not-the-key")],
        no_ca: vec!["soyas"],
        ..QuicOptions::default()
    };
    let lanes = ["astralane", "soyas", "glaive"];
    let mut rig = QuicRig::start("quicbad", &lanes, opts);
    rig.wait_ready(&["glaive"], 1);
    // Wait until both bad lanes have failed once (the relay's close, our verifier's refusal).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(rig
        .dataplane_log()
        .contains("lane astralane: QUIC connection")
        && rig.dataplane_log().contains("lane soyas: QUIC connection"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            rig.dataplane_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let txs = valid();
    let (code, out) = rig.submit(&lines(&txs[..3]), &[], "10");
    assert_ne!(code, Some(0), "{out:#?}");
    for v in &out {
        let by_lane: HashMap<&str, &Value> = v["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["lane"].as_str().unwrap(), l))
            .collect();
        assert_eq!(by_lane["glaive"]["status"], "sent", "{v}");
        let astra = by_lane["astralane"]["reason"].as_str().unwrap_or("");
        assert!(
            astra.contains("closed the lane's connection with code 1"),
            "astralane: {v}"
        );
        let soyas = by_lane["soyas"]["reason"].as_str().unwrap_or("");
        assert!(soyas.contains("certificate is not trusted"), "soyas: {v}");
    }
    let seen = rig.delivered();
    assert!(seen.keys().all(|(p, _)| p == "glaive"), "{seen:?}");
    let log = rig.dataplane_log();
    assert!(log.contains("unknown API key"), "{log}");
    let (finished, _) = rig.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn a_quic_lane_that_cannot_send_falls_back_to_its_http_lane() {
    if !have_root("a_quic_lane_that_cannot_send_falls_back_to_its_http_lane") {
        return;
    }
    // Astralane's "QUIC with HTTP fallback": the QUIC lane's relay is unreachable (no QUIC
    // peer, and a MAC nobody has), so each transaction goes to the http lane instead, once,
    // and its completion still names the QUIC lane.
    let extra = format!(
        "\n[[lane]]\nname = \"astralane-quic\"\nkind = \"quic\"\nprovider = \"astralane\"\n\
         port = \"nic\"\nsrc_ip = \"198.18.77.1\"\ndst_ip = \"198.18.77.2\"\n\
         dst_mac = \"02:00:00:00:00:99\"\ntoken = \"{TOKEN}\"\nfallback = \"astralane\"\n"
    );
    let lanes = [("astralane".to_string(), Provider::Astralane)];
    let rig = Rig::start_with("quicfallback", &lanes, 1, &[], "", &extra);
    let txs = valid();
    let (warmup, checked) = txs.split_first().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !swqos(
        &[
            "submit",
            "--config",
            rig.cfg(),
            "--lane",
            "astralane",
            "--timeout",
            "5",
            "-",
        ],
        format!("{}\n", warmup.line).as_bytes(),
    )
    .status
    .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the http lane never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let input: String = checked.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &[
            "submit",
            "--config",
            rig.cfg(),
            "--lane",
            "astralane-quic",
            "--json",
            "--timeout",
            "10",
            "-",
        ],
        input.as_bytes(),
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.status.code(), Some(0), "{lines:#?}");
    assert_eq!(lines.len(), checked.len());
    for v in &lines {
        let l = &v["lanes"][0];
        assert_eq!(
            (l["lane"].as_str(), l["status"].as_str(), l["path"].as_str()),
            (Some("astralane-quic"), Some("sent"), Some("fallback")),
            "{v}"
        );
    }
    let seen = rig.delivered();
    for s in checked {
        let n = seen
            .get(&("astralane".to_string(), s.signature.clone().unwrap()))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, 1, "{} reached the http relay {n} times", s.name);
    }
    let done = rig.stop();
    assert!(done.status.success(), "{}", done.stderr);
}
