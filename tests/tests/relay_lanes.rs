//! HTTP relay lanes end to end: a client submits through shared memory, the TX lcore hands the
//! relay lanes to `swqos control`, whose kernel TCP connections reach the mock relay in the peer
//! namespace through the dataplane's exception path (TAP <-> af_packet NIC); every relay answers,
//! and each answer comes back as one completion per (submission, lane). The mock relay checks
//! each provider's exact request shape and logs what it accepted, so exactly-once delivery is
//! checked on the relay's side.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::topology::{wait_for_line, Guard, Topology};
use swqos_tests::{
    bin, free_port, have_root, samples, swqos, workspace, DataplaneProcess, Scratch,
};
use swqos_wire::relay::Provider;

const TOKEN: &str = "test-token-7f3a";

#[test]
fn every_relay_format_reaches_a_real_relay_through_the_data_plane() {
    if !have_root("every_relay_format_reaches_a_real_relay_through_the_data_plane") {
        return;
    }
    let scratch = Scratch::new("relay");
    let topo = Topology::new();
    let log = scratch.path("relay.jsonl");
    let mock_path = workspace().join("tests/relay/mock_relay.py");
    let mut mock = Guard(topo.spawn_in_ns(&[
        "python3",
        "-u",
        mock_path.to_str().unwrap(),
        "--listen",
        "198.18.77.2:8080",
        "--token-all",
        TOKEN,
        "--log",
        log.to_str().unwrap(),
    ]));
    wait_for_line(&mut mock.0, "listening on");

    let pid = std::process::id();
    let mut text = format!(
        "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\nfile_prefix = \"swqos-relay-{pid}\"\n\n\
         [shm]\npath = \"/dev/shm/swqos-relay-{pid}\"\nrings = 2\n\n{}\n\
         [control]\nmetrics_listen = \"127.0.0.1:{}\"\n",
        topo.dataplane_ports(),
        free_port()
    );
    for p in Provider::ALL {
        let token = if p.needs_token() {
            format!("token = \"{TOKEN}\"\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "\n[[lane]]\nname = \"{p}\"\nkind = \"http\"\nprovider = \"{p}\"\nport = \"nic\"\n\
             dst_ip = \"198.18.77.2\"\ndst_port = 8080\nconnections = 1\n{token}"
        ));
    }
    let config = scratch.path("relay.toml");
    std::fs::write(&config, &text).unwrap();
    let cfg = config.to_str().unwrap();

    let dp = DataplaneProcess::start(&scratch, &config);
    topo.bring_up_host();
    let control_log = scratch.path("control.err");
    let mut control = Command::new(bin("swqos"))
        .args(["control", "--config", cfg])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&control_log).unwrap())
        .spawn()
        .unwrap();

    // Warm up: one transaction (not one of the checked ones) until every relay lane answers,
    // which it does once the control plane is attached and its connections are up.
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let (warmup, checked) = valid.split_first().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = swqos(
            &["submit", "--config", cfg, "--timeout", "5", "-"],
            format!("{}\n", warmup.line).as_bytes(),
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay lanes never all answered: {}\ncontrol plane:\n{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&control_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Every checked transaction to every relay lane at once.
    let input: String = checked.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &["submit", "--config", cfg, "--json", "-"],
        input.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), checked.len());
    for (s, v) in checked.iter().zip(&lines) {
        assert_eq!(v["status"], "accepted", "{}: {v}", s.name);
        let lanes = v["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), Provider::ALL.len(), "{v}");
        assert!(lanes.iter().all(|l| l["status"] == "sent"), "{v}");
    }

    // The relay's side: each checked transaction exactly once per provider, every request of
    // the exact shape that provider wants.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let log_file = std::fs::File::open(&log).unwrap();
    for line in BufReader::new(log_file).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(v["ok"], true, "the relay refused a request: {v}");
        let key = (
            v["provider"].as_str().unwrap().to_string(),
            v["signature"].as_str().unwrap_or("").to_string(),
        );
        *seen.entry(key).or_default() += 1;
    }
    for p in Provider::ALL {
        for s in checked {
            let n = seen
                .get(&(p.name().to_string(), s.signature.clone().unwrap()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "{} reached {p} {n} times", s.name);
        }
    }

    // SAFETY: kill with our child's pid and a standard signal.
    unsafe { libc::kill(control.id() as i32, libc::SIGTERM) };
    let status = control.wait().unwrap();
    assert!(status.success(), "swqos control: {status}");
    let done = dp.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    // The requests went through DPDK: the bridge carried the kernel's connections.
    assert!(done.stdout.contains("handed_off"), "{}", done.stdout);
    assert!(done.stdout.contains("from_kernel"), "{}", done.stdout);
}
