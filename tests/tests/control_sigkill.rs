//! Exactly once across a control-plane SIGKILL *inside* the heartbeat window: `swqos control`
//! dies with relay requests in flight (fast sends on the wire, requests queued on its
//! connections, hand-off records not read yet) and a successor takes over before the data plane
//! notices (its heartbeat timeout is 500 ms), so the data plane keeps handing records over and
//! the successor finds what the dead one left in the rings. Every submission must still end in
//! exactly one completion per lane (sent, or failed with a reason; never "no completion"), and
//! the relay must receive each transaction at most once per lane.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::rig::{Rig, TOKEN};
use swqos_tests::tls_relays::{nginx_tls, TestPki, NGINX_VARIANTS, RELAY_HOST};
use swqos_tests::{bin, have_root, samples, Sample, Scratch};
use swqos_wire::relay::Provider;

/// How long the mock relay waits before each answer: requests stay in flight that long.
const RELAY_DELAY_MS: &str = "150";

/// The valid samples.
fn valid() -> Vec<Sample> {
    samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect()
}

/// A `swqos submit --json` of `batch`, all at once (not sequentially).
fn spawn_submit(rig: &Rig, batch: &[Sample]) -> Child {
    let mut submit = Command::new(bin("swqos"))
        .args([
            "submit",
            "--config",
            rig.cfg(),
            "--json",
            "--timeout",
            "15",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = batch.iter().map(|s| format!("{}\n", s.line)).collect();
    let mut stdin = submit.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap(); // well under a pipe's buffer
    submit
}

/// The JSON lines a submit printed.
fn lines_of(submit: Child) -> Vec<Value> {
    let out = submit.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Submits `first` all at once, SIGKILLs the control plane once the relay has received one of
/// them (the rest in flight: the relay holds each for RELAY_DELAY_MS), submits `second` while
/// no control plane runs (its hand-off records wait in the rings for the successor), starts a
/// successor, and returns both submits' JSON lines and the time from the kill to the
/// successor's start.
fn kill_inside_the_window(
    rig: &mut Rig,
    first: &[Sample],
    second: &[Sample],
) -> (Vec<Value>, Vec<Value>, Duration) {
    let one = spawn_submit(rig, first);
    let sigs: Vec<String> = first.iter().map(|s| s.signature.clone().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rig.delivered().keys().any(|(_, sig)| sigs.contains(sig)) {
        assert!(Instant::now() < deadline, "nothing reached the relay");
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = Instant::now();
    assert!(!rig.stop_control(libc::SIGKILL).success());
    let two = spawn_submit(rig, second);
    std::thread::sleep(Duration::from_millis(50)); // handed over to nobody yet
    rig.start_control();
    let gap = killed.elapsed();
    (lines_of(one), lines_of(two), gap)
}

/// Exactly one completion per (submission, lane), each sent or failed with a reason (none
/// lost, none "no control plane": the kill was inside the window); the relay received each
/// transaction at most once per lane, and exactly once where the completion says sent. Every
/// violation is listed.
fn assert_exactly_once(rig: &Rig, checked: &[Sample], lanes: &[&str], lines: &[Value]) {
    let log = std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default();
    assert_eq!(lines.len(), checked.len(), "{lines:?}\n{log}");
    let seen = rig.delivered();
    let mut problems = Vec::new();
    for (s, v) in checked.iter().zip(lines) {
        assert_eq!(v["signature"].as_str(), s.signature.as_deref(), "{v}");
        let done = v["lanes"].as_array().unwrap();
        for lane in lanes {
            let mine: Vec<&Value> = done.iter().filter(|l| l["lane"] == *lane).collect();
            let reason = mine
                .first()
                .and_then(|l| l["reason"].as_str())
                .or(v["reason"].as_str())
                .unwrap_or("");
            if mine.len() != 1 {
                problems.push(format!(
                    "{} on {lane}: {} completions ({reason})",
                    s.name,
                    mine.len()
                ));
            } else if reason.contains("no control plane") {
                problems.push(format!(
                    "{} on {lane}: the data plane saw no control plane: the kill was not \
                     inside the heartbeat window",
                    s.name
                ));
            } else if mine[0]["status"] != "sent" && reason.is_empty() {
                problems.push(format!("{} on {lane}: failed without a reason", s.name));
            }
            let sent = mine.iter().any(|l| l["status"] == "sent");
            let n = seen
                .get(&(lane.to_string(), s.signature.clone().unwrap()))
                .copied()
                .unwrap_or(0);
            if n > 1 || (sent && n != 1) {
                problems.push(format!(
                    "{} on {lane}: the relay received it {n} times (completion: {})",
                    s.name,
                    if sent { "sent" } else { "failed" }
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "not exactly once across the SIGKILL ({} problems):\n{}\ncontrol plane:\n{log}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn plain_relay_lanes_are_exactly_once_across_a_sigkill_inside_the_heartbeat_window() {
    let name = "plain_relay_lanes_are_exactly_once_across_a_sigkill_inside_the_heartbeat_window";
    if !have_root(name) {
        return;
    }
    let providers = [Provider::Jito, Provider::Bloxroute];
    let mut rig = Rig::start(
        "kill-window",
        &providers,
        2,
        &["--delay-ms", RELAY_DELAY_MS],
    );
    let all = valid();
    rig.warm_up(&all[0].line);
    let (first, second) = (&all[1..25], &all[25..35]);
    let (one, two, gap) = kill_inside_the_window(&mut rig, first, second);
    println!("successor started {gap:?} after the SIGKILL");
    let lines: Vec<Value> = one.into_iter().chain(two).collect();
    assert_exactly_once(&rig, &all[1..35], &["jito", "bloxroute"], &lines);
    rig.stop();
}

#[test]
fn tls_relay_lanes_are_exactly_once_across_a_sigkill_inside_the_heartbeat_window() {
    let name = "tls_relay_lanes_are_exactly_once_across_a_sigkill_inside_the_heartbeat_window";
    if !have_root(name) {
        return;
    }
    let pki_dir = Scratch::new("kill-window-tls-pki");
    let pki = TestPki::new(&pki_dir.path("pki"));
    // Two TLS lanes (TLS 1.3 and 1.2) to nginx, in front of the (slow) mock relay.
    let lanes: String = [(Provider::Jito, 0), (Provider::Bloxroute, 3)]
        .iter()
        .map(|&(p, v)| {
            let port = NGINX_VARIANTS[v].port;
            format!(
                "\n[[lane]]\nname = \"{p}\"\nkind = \"http\"\nprovider = \"{p}\"\nport = \"nic\"\n\
                 dst_ip = \"198.18.77.2\"\ndst_port = {port}\nhost = \"{RELAY_HOST}\"\n\
                 tls = true\nca_files = [\"{}\"]\nconnections = 2\ntoken = \"{TOKEN}\"\n",
                pki.ca_pem().display()
            )
        })
        .collect();
    let mut rig = Rig::start_with(
        "kill-window-tls",
        &[],
        1,
        &["--delay-ms", RELAY_DELAY_MS],
        "",
        &lanes,
    );
    let _nginx = nginx_tls(
        &rig.topo,
        &rig.scratch.path("nginx"),
        &pki,
        "198.18.77.2:8080",
    );
    let all = valid();
    rig.warm_up(&all[0].line);
    let (first, second) = (&all[1..25], &all[25..35]);
    let (one, two, gap) = kill_inside_the_window(&mut rig, first, second);
    println!("successor started {gap:?} after the SIGKILL");
    let lines: Vec<Value> = one.into_iter().chain(two).collect();
    assert_exactly_once(&rig, &all[1..35], &["jito", "bloxroute"], &lines);
    rig.stop();
}
