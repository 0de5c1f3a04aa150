//! QUIC lanes in the configuration: defaults per provider, and each mistake refused at the
//! `line:column` of the offending key or value with what was expected.

use std::path::Path;

use dpdk_config::{Config, LaneKind, QuicProvider};

/// A valid configuration with one QUIC lane (line numbers matter).
const BASE: &str = r#"[eal]
lcores = "0-2"

[[port]]
name = "nic"
device = "net_null0"

[[port]]
name = "kernel"
device = "net_tap0,iface=swqk0"

[[lcore]]
id = 1
role = "tx"
queues = [{ port = "nic", queue = 0 }, { port = "kernel", queue = 0 }]
bridge = { nic = "nic", kernel = "kernel" }

[[lane]]
name = "q"
kind = "quic"
provider = "soyas"
port = "nic"
src_ip = "10.0.0.1"
dst_ip = "10.0.0.2"
dst_mac = "02:00:00:00:00:02"
keypair_file = "/etc/swqos/wallet.json"
"#;

fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "BASE has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

#[track_caller]
fn check(text: &str, at: &str, fragment: &str) {
    let err = Config::parse(text, Path::new("t.toml")).expect_err("config should be rejected");
    assert_eq!(format!("{}:{}", err.line, err.column), at, "{err}");
    assert!(err.message.contains(fragment), "{err}");
}

#[test]
fn a_quic_lane_takes_its_providers_defaults() {
    let c = Config::parse(BASE, Path::new("t.toml")).unwrap();
    let LaneKind::Quic(q) = &c.lanes[0].kind else {
        panic!("not a quic lane")
    };
    assert_eq!(q.provider, QuicProvider::Soyas);
    assert_eq!((q.dst_port, q.src_port), (9000, 20000));
    assert_eq!(q.server_name, "soyas-landing");
    assert!(!q.insecure_skip_verify && q.token.is_none());
    let text = edit(&[
        (
            "provider = \"soyas\"",
            "provider = \"astralane\"\nmev = true",
        ),
        ("keypair_file = \"/etc/swqos/wallet.json\"", "token = \"k\""),
    ]);
    let c = Config::parse(&text, Path::new("t.toml")).unwrap();
    let LaneKind::Quic(q) = &c.lanes[0].kind else {
        panic!("not a quic lane")
    };
    assert_eq!(
        (q.dst_port, q.mev, q.server_name.as_str()),
        (9000, true, "astralane")
    );
    assert!(
        !format!("{q:?}").contains("\"k\""),
        "the key is never shown"
    );
}

#[test]
fn quic_lane_mistakes_point_at_the_value() {
    check(
        &edit(&[("provider = \"soyas\"", "provider = \"jito\"")]),
        "21:12",
        "unknown QUIC provider \"jito\"; expected one of `node1`, `astralane`",
    );
    // Soyas identifies the wallet: a keypair, not a token.
    check(
        &edit(&[("keypair_file = \"/etc/swqos/wallet.json\"", "")]),
        "20:8",
        "has no `keypair_file`",
    );
    check(
        &edit(&[(
            "keypair_file = \"/etc/swqos/wallet.json\"",
            "keypair_file = \"wallet.json\"\ntoken = \"x\"",
        )]),
        "27:9",
        "not an API key",
    );
    // Node1's and Glaive's keys travel as 16 bytes: a UUID.
    check(
        &edit(&[
            ("provider = \"soyas\"", "provider = \"node1\""),
            (
                "keypair_file = \"/etc/swqos/wallet.json\"",
                "token = \"not-a-uuid\"",
            ),
        ]),
        "26:9",
        "not a node1 API key; expected a UUID v4",
    );
    check(
        &edit(&[("provider = \"soyas\"", "provider = \"soyas\"\nmev = true")]),
        "22:7",
        "`mev` is not a setting of soyas",
    );
    check(
        &edit(&[(
            "port = \"nic\"\nsrc_ip",
            "port = \"nic\"\nconnections = 2\nsrc_ip",
        )]),
        "23:15",
        "`connections` is for http lanes",
    );
    check(
        &edit(&[(
            "keypair_file = \"/etc/swqos/wallet.json\"",
            "keypair_file = \"wallet.json\"",
        )]),
        "26:16",
        "expected an absolute path",
    );
    check(
        &edit(&[("dst_mac = \"02:00:00:00:00:02\"\n", "")]),
        "20:8",
        "has no `dst_mac`",
    );
}

#[test]
fn a_quic_lane_needs_the_one_tx_lcore_that_bridges_its_port() {
    // Without the bridge, the relay's datagrams would reach no one.
    check(
        &edit(&[("bridge = { nic = \"nic\", kernel = \"kernel\" }\n", "")]),
        "21:8",
        "which its tx lcore does not bridge",
    );
    // A second tx lcore would take submissions for a connection it does not own.
    let two = edit(&[(
        "\n[[lane]]",
        "\n[[lcore]]\nid = 2\nrole = \"tx\"\nqueues = [{ port = \"nic\", queue = 1 }]\n\n[[lane]]",
    )])
    .replace(
        "device = \"net_null0\"",
        "device = \"net_null0\"\ntx_queues = 2",
    );
    check(&two, "26:8", "needs exactly one tx lcore");
}

#[test]
fn quic_keys_on_other_lanes_are_mistakes() {
    let text = edit(&[
        ("kind = \"quic\"", "kind = \"http\""),
        ("provider = \"soyas\"", "provider = \"jito\"\ntoken = \"t\""),
        ("src_ip = \"10.0.0.1\"\n", ""),
        ("dst_mac = \"02:00:00:00:00:02\"\n", ""),
    ]);
    check(&text, "25:16", "`keypair_file` is for quic lanes");
}

#[test]
fn a_fallback_names_an_http_lane() {
    let text = edit(&[(
        "keypair_file = \"/etc/swqos/wallet.json\"",
        "keypair_file = \"/w.json\"\nfallback = \"nope\"",
    )])
        + "\n[[lane]]\nname = \"h\"\nkind = \"http\"\nprovider = \"jito\"\nport = \"nic\"\n\
           dst_ip = \"10.0.0.2\"\ntoken = \"t\"\n";
    check(
        &text,
        "27:12",
        "`fallback` = \"nope\" is not an http lane; expected one of `h`",
    );
    let ok = text.replace("fallback = \"nope\"", "fallback = \"h\"");
    let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
    let LaneKind::Quic(q) = &c.lanes[0].kind else {
        panic!("not a quic lane")
    };
    assert_eq!(q.fallback, Some(1));
}
