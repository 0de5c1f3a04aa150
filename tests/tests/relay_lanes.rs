//! HTTP relay lanes end to end: a client submits through shared memory, the TX lcore hands the
//! relay lanes to `swqos control`, whose kernel TCP connections reach the mock relay in the peer
//! namespace through the dataplane's exception path (TAP <-> af_packet NIC); every relay answers,
//! and each answer comes back as one completion per (submission, lane). The mock relay checks
//! each provider's exact request shape and logs what it accepted, so exactly-once delivery is
//! checked on the relay's side.

use std::time::Duration;

use serde_json::Value;
use swqos_tests::capture::RelayCapture;
use swqos_tests::rig::{report_counter, Rig, TOKEN};
use swqos_tests::topology::Guard;
use swqos_tests::{have_root, samples, swqos};
use swqos_wire::relay::Provider;

/// Submits `lines` with `--json`; returns the parsed lines and the exit code.
fn submit_json(
    rig: &Rig,
    lines: &[&swqos_tests::Sample],
    timeout: &str,
) -> (Option<i32>, Vec<Value>) {
    let input: String = lines.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &[
            "submit",
            "--config",
            rig.cfg(),
            "--json",
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

#[test]
fn every_relay_format_reaches_a_real_relay_through_the_data_plane() {
    if !have_root("every_relay_format_reaches_a_real_relay_through_the_data_plane") {
        return;
    }
    let rig = Rig::start("relay", &Provider::ALL, 1, &[]);
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let (warmup, checked) = valid.split_first().unwrap();
    rig.warm_up(&warmup.line);

    // Every checked transaction to every relay lane at once.
    let (code, lines) = submit_json(&rig, checked, "10");
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines.len(), checked.len());
    for (s, v) in checked.iter().zip(&lines) {
        assert_eq!(v["status"], "accepted", "{}: {v}", s.name);
        let lanes = v["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), Provider::ALL.len(), "{v}");
        assert!(lanes.iter().all(|l| l["status"] == "sent"), "{v}");
    }

    // The relay's side: each checked transaction exactly once per provider, every request of
    // the exact shape that provider wants (the mock refuses anything else, logged `ok: false`).
    let seen = rig.delivered();
    for p in Provider::ALL {
        for s in checked {
            let n = seen
                .get(&(p.name().to_string(), s.signature.clone().unwrap()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "{} reached {p} {n} times", s.name);
        }
    }
    let refused = std::fs::read_to_string(&rig.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"ok\": false") || l.contains("\"ok\":false"))
        .count();
    assert_eq!(refused, 0, "the relay refused requests");

    let done = rig.stop();
    // The requests went through DPDK: the bridge carried the kernel's connections.
    assert!(done.stdout.contains("handed_off"), "{}", done.stdout);
    assert!(done.stdout.contains("from_kernel"), "{}", done.stdout);
}

#[test]
fn twenty_percent_loss_delays_but_loses_nothing() {
    if !have_root("twenty_percent_loss_delays_but_loses_nothing") {
        return;
    }
    let providers = [Provider::Jito, Provider::ZeroSlot, Provider::HeliusSender];
    let rig = Rig::start("relay-loss", &providers, 2, &[]);
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let (warmup, rest) = valid.split_first().unwrap();
    let checked = &rest[..20];
    rig.warm_up(&warmup.line);
    // nftables in the relay's namespace drops one in five TCP segments coming to it.
    rig.topo
        .in_ns(&["nft", "add", "table", "inet", "swqos_loss"]);
    rig.topo.in_ns(&[
        "nft",
        "add",
        "chain",
        "inet",
        "swqos_loss",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    rig.topo.in_ns(&[
        "nft",
        "add",
        "rule",
        "inet",
        "swqos_loss",
        "input",
        "tcp",
        "dport",
        "8080",
        "numgen",
        "random",
        "mod",
        "5",
        "==",
        "0",
        "counter",
        "drop",
    ]);
    let (code, lines) = submit_json(&rig, checked, "60");
    let dropped = rig
        .topo
        .in_ns(&["nft", "list", "chain", "inet", "swqos_loss", "input"]);
    assert_eq!(code, Some(0), "{lines:?}\n{dropped}");
    assert!(lines.iter().all(|v| v["status"] == "accepted"), "{lines:?}");
    assert!(
        !dropped.contains("counter packets 0 "),
        "nothing was dropped: {dropped}"
    );
    let seen = rig.delivered();
    for p in providers {
        for s in checked {
            let n = seen
                .get(&(p.name().to_string(), s.signature.clone().unwrap()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "{} reached {p} {n} times under loss", s.name);
        }
    }
    rig.stop();
}

#[test]
fn a_relay_reset_is_reported_and_the_lane_recovers() {
    if !have_root("a_relay_reset_is_reported_and_the_lane_recovers") {
        return;
    }
    // The relay resets each connection on its third request.
    let rig = Rig::start("relay-reset", &[Provider::Jito], 1, &["--reset-after", "2"]);
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line); // request 1 on the connection
    let (code, lines) = submit_json(&rig, &valid[1..2], "10"); // request 2
    assert_eq!(code, Some(0), "{lines:?}");
    let (code, lines) = submit_json(&rig, &valid[2..3], "10"); // request 3: reset
    assert_eq!(code, Some(1), "{lines:?}");
    let reason = lines[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("relay error") || reason.contains("down"),
        "{reason}"
    );
    // Reconnected: the lane works again.
    rig.warm_up(&valid[3].line);
    rig.stop();
}

#[test]
fn the_control_plane_can_die_and_come_back() {
    if !have_root("the_control_plane_can_die_and_come_back") {
        return;
    }
    let mut rig = Rig::start("relay-restart", &[Provider::Bloxroute], 1, &[]);
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line);
    let status = rig.stop_control(libc::SIGKILL);
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(800));
    // No control plane: relay submissions are answered at once with the reason, never lost.
    let (code, lines) = submit_json(&rig, &valid[1..2], "10");
    assert_eq!(code, Some(1), "{lines:?}");
    let reason = lines[0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("no control plane"), "{reason}");
    // A new control plane takes over the role and the lane works again, armed: the data plane
    // sends on its connections (the completions say which path each request took).
    rig.start_control();
    rig.warm_up(&valid[2].line);
    let mut fast = 0;
    for s in &valid[3..8] {
        let (code, lines) = submit_json(&rig, &[s], "10");
        assert_eq!(code, Some(0), "{lines:?}");
        let path = &lines[0]["lanes"][0]["path"];
        assert!(path == "fast" || path == "fallback", "{lines:?}");
        fast += usize::from(path == "fast");
    }
    // Each completion comes after its connection is armed again: every one of them is fast.
    assert_eq!(
        fast, 5,
        "only {fast} of 5 sequential sends after the restart took the fast path"
    );
    let seen = rig.delivered();
    assert_eq!(
        seen.get(&("bloxroute".into(), valid[1].signature.clone().unwrap())),
        None,
        "the refused one never went out"
    );
    rig.stop();
}

/// A control plane stopped (SIGTERM) while its relay requests wait for slow answers answers
/// every one of them before it exits: each submission gets its completion per lane at once,
/// saying the request was sent and the answer never came (maybe delivered), or that it was
/// never sent; nobody waits for their own timeout.
#[test]
fn a_stopping_control_plane_answers_every_request_it_holds() {
    if !have_root("a_stopping_control_plane_answers_every_request_it_holds") {
        return;
    }
    // Every answer takes 3 s; each lane has one connection, so later requests queue.
    let mut rig = Rig::start(
        "relay-stop",
        &[Provider::Jito, Provider::Bloxroute],
        1,
        &["--delay-ms", "3000"],
    );
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line);
    // The data plane's count of (submission, relay lane) pairs handed to the control plane.
    let handed_off = || -> u64 {
        let out = swqos(
            &[
                "stats",
                "--config",
                rig.cfg(),
                "--json",
                "--interval",
                "0.05",
            ],
            b"",
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["lcores"].as_array().map_or(0, |lcores| {
            lcores
                .iter()
                .map(|l| l["counters"]["handed_off"].as_u64().unwrap_or(0))
                .sum()
        })
    };
    let before = handed_off();
    let input: String = valid[1..4]
        .iter()
        .map(|s| format!("{}\n", s.line))
        .collect();
    let mut submit = std::process::Command::new(swqos_tests::bin("swqos"))
        .args([
            "submit",
            "--config",
            rig.cfg(),
            "--json",
            "--timeout",
            "60",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = submit.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    // Stopped once all three submissions (two lanes each) are with the control plane: the
    // first at the relay, the others queued behind them or not yet read from the hand-off ring.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while handed_off() < before + 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the submissions never reached the control plane"
        );
    }
    let status = rig.stop_control(libc::SIGTERM);
    assert!(status.success(), "swqos control: {status}");
    let out = submit.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for v in &lines {
        let lanes = v["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), 2, "one completion per lane: {v}");
        for l in lanes {
            let reason = l["reason"].as_str().unwrap_or("");
            assert!(
                reason.contains("the control plane stopped before the answer (maybe delivered)")
                    || reason.contains("not sent"),
                "every lane says what happened: {v}"
            );
        }
    }
    rig.stop();
}

/// The two processes build a lane's requests from their own configs: when they differ (here the
/// data plane's `token_env` variable held a stale token, the control plane's the right one),
/// the control plane sees the data plane's template fingerprint differ, says so in its log and
/// never arms that lane's connections, so every request of the lane goes its own (right) way:
/// the relay accepts each once, none with the data plane's stale token.
#[test]
fn a_lane_whose_templates_differ_between_the_processes_never_sends_fast() {
    if !have_root("a_lane_whose_templates_differ_between_the_processes_never_sends_fast") {
        return;
    }
    let var = "SWQOS_TEST_TEMPLATE_TOKEN";
    let lane = format!(
        "\n[[lane]]\nname = \"jito\"\nkind = \"http\"\nprovider = \"jito\"\nport = \"nic\"\n\
         dst_ip = \"198.18.77.2\"\ndst_port = 8080\nconnections = 2\ntoken_env = \"{var}\"\n"
    );
    // The data plane (and a first control plane) start with a stale token...
    // SAFETY: no other thread of this test process reads the environment meanwhile.
    unsafe { std::env::set_var(var, "stale-token") };
    let mut rig = Rig::start_with("relay-fingerprint", &[], 1, &[], "", &lane);
    rig.stop_control(libc::SIGTERM);
    // ...then the control plane restarts with the right one.
    // SAFETY: as above.
    unsafe { std::env::set_var(var, swqos_tests::rig::TOKEN) };
    rig.start_control();
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line);
    let mut paths = Vec::new();
    for s in &valid[1..6] {
        let (code, lines) = submit_json(&rig, &[s], "10");
        assert_eq!(code, Some(0), "{lines:?}");
        paths.push(
            lines[0]["lanes"][0]["path"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert!(paths.iter().all(|p| p == "fallback"), "{paths:?}");
    let log = std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default();
    assert!(
        log.contains("relay lane jito: the data plane builds this lane's requests differently"),
        "{log}"
    );
    let seen = rig.delivered();
    for s in &valid[1..6] {
        let n = seen
            .get(&("jito".to_string(), s.signature.clone().unwrap()))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, 1, "{} reached the relay {n} times", s.name);
    }
    let refused = std::fs::read_to_string(&rig.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"ok\": false") || l.contains("\"ok\":false"))
        .count();
    assert_eq!(
        refused, 0,
        "no request with the stale token reached the relay"
    );
    rig.stop();
}

#[test]
fn nginx_as_an_independent_http_server_receives_each_request_once() {
    if !have_root("nginx_as_an_independent_http_server_receives_each_request_once") {
        return;
    }
    let lane = format!(
        "\n[[lane]]\nname = \"nginx\"\nkind = \"http\"\nprovider = \"jito\"\nport = \"nic\"\n\
         dst_ip = \"198.18.77.2\"\ndst_port = 8081\nconnections = 2\ntoken = \"{TOKEN}\"\n"
    );
    let rig = Rig::start_with("relay-nginx", &[], 1, &[], "", &lane);
    let dir = rig.scratch.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  log_format swqos '$request_method $request_uri $status $content_length $http_x_jito_auth';\n\
               access_log {d}/access.log swqos;\n  client_body_temp_path {d};\n\
               server {{\n    listen 198.18.77.2:8081;\n    location / {{\n      default_type application/json;\n\
                     return 200 '{{\"jsonrpc\":\"2.0\",\"result\":\"nginx\",\"id\":1}}';\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let _nginx = Guard(rig.topo.spawn_in_ns(&[
        "nginx",
        "-c",
        conf.to_str().unwrap(),
        "-p",
        dir.to_str().unwrap(),
    ]));
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let (warmup, checked) = valid.split_first().unwrap();
    rig.warm_up(&warmup.line);
    let (code, lines) = submit_json(&rig, checked, "10");
    assert_eq!(code, Some(0), "{lines:?}");

    // nginx's own parser and log: one POST per transaction with Jito's path, token header and
    // a Content-Length equal to Jito's body for that transaction.
    let template = swqos_wire::relay::RequestTemplate::new(
        Provider::Jito,
        swqos_wire::relay::Endpoint {
            host: "198.18.77.2:8081",
            path: None,
            token: Some(TOKEN),
        },
    )
    .unwrap();
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap();
    let posts: Vec<&str> = log.lines().filter(|l| l.starts_with("POST ")).collect();
    assert_eq!(
        posts.len(),
        valid.len(),
        "warm-up plus each checked transaction once:\n{log}"
    );
    let mut lengths: Vec<usize> = posts
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[1], format!("/api/v1/transactions?uuid={TOKEN}"), "{l}");
            assert_eq!(f[2], "200", "{l}");
            assert_eq!(f[4], TOKEN, "{l}");
            f[3].parse().unwrap()
        })
        .collect();
    let mut want: Vec<usize> = valid
        .iter()
        .map(|s| template.body_len(s.bytes.len()))
        .collect();
    lengths.sort_unstable();
    want.sort_unstable();
    assert_eq!(lengths, want);
    rig.stop();
}

#[test]
fn idle_connections_carry_delegated_sends_from_the_data_plane() {
    if !have_root("idle_connections_carry_delegated_sends_from_the_data_plane") {
        return;
    }
    let providers = Provider::ALL;
    let rig = Rig::start("relay-fast", &providers, 1, &[]);
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    let (warmup, rest) = valid.split_first().unwrap();
    let checked = &rest[..20];
    rig.warm_up(&warmup.line);
    // Capture the relay's side of the wire while the data plane sends.
    let capture = RelayCapture::start(&rig.topo, rig.scratch.path("relay-side.pcap"));
    // One submission at a time: each finds its lane's connection idle and armed.
    let mut fast_completions = 0;
    for s in checked {
        let (code, lines) = submit_json(&rig, &[s], "10");
        assert_eq!(code, Some(0), "{lines:?}");
        let lanes = lines[0]["lanes"].as_array().unwrap();
        fast_completions += lanes.iter().filter(|l| l["path"] == "fast").count() as u64;
    }
    // Stopped with SIGINT: tcpdump (immediate mode, a flush per packet) has every frame.
    let pcap = capture.stop();

    // Exactly once at the relay, whoever sent first.
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
    // The wire as tshark sees it (read before `stop` removes the scratch folder).
    let rows = swqos_tests::tshark_fields(
        &pcap,
        &[
            "tcp.checksum.status",
            "tcp.analysis.retransmission",
            "tcp.len",
            "frame.number",
            "ip.src",
            "tcp.srcport",
            "tcp.flags",
            "frame.len",
            "frame.cap_len",
        ],
    );
    let done = rig.stop();
    let fast = report_counter(&done.stdout, "fast_sends");
    let total = (providers.len() * checked.len()) as u64;
    // Sequential: each submission's connections were armed again before its completions
    // came, so every send is fast (the warm-up's may be too, hence `>=`).
    assert_eq!(
        fast_completions, total,
        "{fast_completions} of {total} completions say fast"
    );
    assert!(
        fast >= fast_completions,
        "{fast} fast sends, {fast_completions} completions say fast:\n{}",
        done.stdout
    );

    // Valid TCP checksums on every segment (status 1: verified good), and the kernel's copy of each
    // delegated request seen as a retransmission of bytes the relay already had.
    assert!(!rows.is_empty());
    // (A frame cut short by the capture's own end cannot be verified; it is not counted.)
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r[0] != "1" && r[8] == r[9])
        .collect();
    assert!(bad.is_empty(), "segments with a bad TCP checksum: {bad:?}");
    let retransmissions = rows
        .iter()
        .filter(|r| !r[1].is_empty() && r[2] != "0")
        .count() as u64;
    assert!(
        retransmissions * 10 >= total * 8,
        "{retransmissions} duplicate data segments for {total} requests ({fast} fast sends)"
    );
}
