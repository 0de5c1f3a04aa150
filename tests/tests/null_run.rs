//! The dataplane on `net_null0` moves real traffic through a real DPDK port and shuts down
//! cleanly on SIGINT, with hugepages when the host has them (`hugepages = "auto"`).

use swqos_tests::{config_text, have_root, samples, swqos, two_lanes, DataplaneProcess, Scratch};

#[test]
fn null_port_moves_traffic_and_stops_cleanly_on_sigint() {
    if !have_root("null_port_moves_traffic_and_stops_cleanly_on_sigint") {
        return;
    }
    let scratch = Scratch::new("null");
    let config = scratch.path("null.toml");
    std::fs::write(
        &config,
        config_text("null", "net_null0", "auto", 2, &two_lanes()),
    )
    .unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);

    const ROUNDS: usize = 200;
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let mut input = String::new();
    for _ in 0..ROUNDS {
        for s in &valid {
            input.push_str(&s.line);
            input.push('\n');
        }
    }
    let n = ROUNDS * valid.len();
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap()],
        input.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("accepted ")).count(),
        n
    );
    assert!(
        stderr.contains(&format!("{n} accepted, 0 rejected")),
        "{stderr}"
    );

    let done = dp.stop(libc::SIGINT);
    assert!(
        done.stderr.contains("stopping: draining"),
        "{}",
        done.stderr
    );
    let report = done.stdout;
    assert!(
        report.contains(&format!(
            "submissions {n} rejected 0 unknown-lane 0 sent {} dropped 0",
            2 * n
        )),
        "{report}"
    );
    // The driver itself counted every frame: the packets really went through the port.
    assert!(
        report.contains(&format!("port p0: opackets {} ", 2 * n)),
        "{report}"
    );
    assert!(
        report.contains("submit-to-tx_burst latency: p50"),
        "{report}"
    );
    // The segment is gone with its dataplane.
    let shm = dpdk_config::Config::load(&config).unwrap().shm.path;
    assert!(!shm.exists(), "{} left behind", shm.display());
}
