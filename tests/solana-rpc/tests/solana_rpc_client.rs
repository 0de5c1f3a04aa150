//! Rust's `solana-rpc-client` (`RpcClient::new(url)`, its default configuration) pointed at
//! `swqos control`'s JSON-RPC endpoint: `get_version` parses swqos's answer, `get_health` is
//! "ok", and `send_transaction` of a real signed transaction from the shared test data
//! (deserialized with bincode into a `VersionedTransaction`) returns its signature, with the
//! transaction leaving on both lanes of the data plane (checked in the capture with tshark).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use solana_rpc_client::rpc_client::RpcClient;
use solana_transaction::versioned::VersionedTransaction;
use swqos_tests::{
    config_text, free_port, have_root, hex, samples, tshark_fields, two_lanes, workspace,
    DataplaneProcess, Scratch,
};

#[test]
fn solana_rpc_client_sends_through_the_endpoint() {
    if !have_root("solana_rpc_client_sends_through_the_endpoint") {
        return;
    }
    // The binaries are the main workspace's (scripts/test.sh sets SWQOS_BIN_DIR).
    if std::env::var_os("SWQOS_BIN_DIR").is_none() {
        std::env::set_var("SWQOS_BIN_DIR", workspace().join("target/debug"));
    }
    let scratch = Scratch::new("solrpc");
    let pcap = scratch.path("tx.pcap");
    let (metrics_port, rpc_port) = (free_port(), free_port());
    let mut text = config_text(
        "solrpc",
        &format!("net_pcap0,tx_pcap={}", pcap.display()),
        "off",
        2,
        &two_lanes(),
    );
    text.push_str(&format!(
        "\n[control]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nrpc_listen = \
         \"127.0.0.1:{rpc_port}\"\n"
    ));
    let config = scratch.path("solrpc.toml");
    std::fs::write(&config, text).unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    let mut control = Command::new(swqos_tests::bin("swqos"))
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

    let client = RpcClient::new(format!("http://127.0.0.1:{rpc_port}"));
    let version = client.get_version().expect("getVersion");
    let core: Vec<u32> = version
        .solana_core
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(core[..2] >= [1, 4][..], "{version:?}");
    client.get_health().expect("getHealth");

    let all = samples();
    let sample = all
        .iter()
        .find(|s| s.invalid.is_none())
        .expect("a valid sample");
    let tx: VersionedTransaction = bincode::deserialize(&sample.bytes).expect("bincode");
    let signature = client.send_transaction(&tx).expect("sendTransaction");
    assert_eq!(Some(signature.to_string()), sample.signature);

    // SAFETY: kill with our child's pid and a standard signal.
    unsafe { libc::kill(control.id() as i32, libc::SIGTERM) };
    assert!(control.wait().unwrap().success());
    dp.stop(libc::SIGTERM);
    let rows = tshark_fields(&pcap, &["udp.dstport", "data.data"]);
    let h = hex(&sample.bytes);
    for port in ["8001", "8002"] {
        let n = rows.iter().filter(|r| r[0] == port && r[1] == h).count();
        assert_eq!(n, 1, "{} on port {port}: {rows:?}", sample.name);
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
}
