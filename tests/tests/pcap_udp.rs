//! The dataplane on `net_pcap` sends the sample transactions to two UDP lanes; tshark reads back
//! what DPDK wrote: one datagram per valid transaction per lane, payload equal to the
//! transaction, checksums correct, addresses as configured, invalid ones absent and reported.

use std::collections::HashMap;

use swqos_tests::{
    config_text, have_root, hex, samples, swqos, tshark_fields, two_lanes, DataplaneProcess,
    Scratch, PORT_MAC,
};

#[test]
fn sample_transactions_reach_both_lanes_byte_for_byte() {
    if !have_root("sample_transactions_reach_both_lanes_byte_for_byte") {
        return;
    }
    let scratch = Scratch::new("pcap");
    let pcap = scratch.path("tx.pcap");
    let lanes = two_lanes();
    let config = scratch.path("pcap.toml");
    let device = format!("net_pcap0,tx_pcap={}", pcap.display());
    std::fs::write(&config, config_text("pcap", &device, "off", 4, &lanes)).unwrap();
    let cfg = config.to_str().unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);

    let samples = samples();
    let valid: Vec<_> = samples.iter().filter(|s| s.invalid.is_none()).collect();
    let input: String = samples.iter().map(|s| format!("{}\n", s.line)).collect();

    // 1. Everything, validated by the dataplane alone, to both lanes.
    let out = swqos(
        &[
            "submit",
            "--config",
            cfg,
            "--no-client-check",
            "--json",
            "-",
        ],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "some were rejected: exit 1");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), samples.len(), "one line per transaction");
    for (s, v) in samples.iter().zip(&lines) {
        match &s.invalid {
            None => {
                assert_eq!(v["status"], "accepted", "{}: {v}", s.name);
                assert_eq!(
                    v["signature"].as_str(),
                    s.signature.as_deref(),
                    "{}",
                    s.name
                );
                let lanes_sent: Vec<&str> = v["lanes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| l["status"] == "sent")
                    .map(|l| l["lane"].as_str().unwrap())
                    .collect();
                assert_eq!(lanes_sent, ["udp-a", "udp-b"], "{}", s.name);
            }
            Some(why) => {
                assert_eq!(v["status"], "rejected", "{}: {v}", s.name);
                let reason = v["reason"].as_str().unwrap();
                if s.name != "garbage" {
                    assert!(
                        reason.starts_with(why.as_str()),
                        "{}: `{reason}` vs `{why}`",
                        s.name
                    );
                }
            }
        }
    }

    // 2. The valid ones again, validated in the client, to one lane only.
    let valid_input: String = valid.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &["submit", "--config", cfg, "--lane", "udp-a", "-"],
        valid_input.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let expected: Vec<String> = valid
        .iter()
        .map(|s| format!("accepted {}", s.signature.as_deref().unwrap()))
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);

    // 3. A lane that does not exist: refused before anything is sent.
    let out = swqos(
        &["submit", "--config", cfg, "--lane", "nope", "-"],
        valid_input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown lane `nope`") && err.contains("udp-a, udp-b"),
        "{err}"
    );

    let done = dp.stop(libc::SIGTERM);
    assert!(
        done.stdout.contains("lane udp-a: sent 84 dropped 0"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("lane udp-b: sent 42 dropped 0"),
        "{}",
        done.stdout
    );

    // What DPDK wrote, as tshark reads it.
    let rows = tshark_fields(
        &pcap,
        &[
            "eth.src",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "udp.srcport",
            "udp.dstport",
            "ip.checksum.status",
            "udp.checksum.status",
            "ip.flags.df",
            "data.data",
        ],
    );
    assert_eq!(rows.len(), valid.len() * 3, "42 x 2 lanes + 42 x 1 lane");
    let by_payload: HashMap<String, &str> = valid
        .iter()
        .map(|s| (hex(&s.bytes), s.name.as_str()))
        .collect();
    let mut count: HashMap<(&str, &str), usize> = HashMap::new();
    for row in &rows {
        let lane = lanes
            .iter()
            .find(|l| row[3] == l.dst_ip && row[5] == l.dst_port.to_string())
            .unwrap_or_else(|| panic!("frame to an unconfigured destination: {row:?}"));
        assert_eq!(row[0], PORT_MAC);
        assert_eq!(row[1], lane.dst_mac);
        assert_eq!(row[2], lane.src_ip);
        assert_eq!(row[4], lane.src_port.to_string());
        assert_eq!(row[6], "1", "IPv4 checksum good: {row:?}");
        assert_eq!(row[7], "1", "UDP checksum good: {row:?}");
        assert!(row[8] == "1" || row[8] == "True", "DF set: {row:?}");
        let name = by_payload
            .get(&row[9])
            .unwrap_or_else(|| panic!("payload is no valid sample transaction: {}", &row[9][..40]));
        *count.entry((lane.name, *name)).or_default() += 1;
    }
    for s in &valid {
        assert_eq!(
            count.get(&("udp-a", s.name.as_str())),
            Some(&2),
            "{} on udp-a",
            s.name
        );
        assert_eq!(
            count.get(&("udp-b", s.name.as_str())),
            Some(&1),
            "{} on udp-b",
            s.name
        );
    }
}
