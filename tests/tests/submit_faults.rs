//! `swqos submit` when a plane goes away mid-stream: every input line still gets exactly one
//! line, promptly, with the reason for what never got an answer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swqos_tests::rig::Rig;
use swqos_tests::{bin, have_root, samples};
use swqos_wire::relay::Provider;

#[test]
fn a_submit_whose_control_plane_is_killed_mid_stream_answers_every_line() {
    if !have_root("a_submit_whose_control_plane_is_killed_mid_stream_answers_every_line") {
        return;
    }
    let mut rig = Rig::start("submit-ctlkill", &[Provider::NextBlock], 4, &[]);
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    rig.warm_up(&valid[0].line);

    const N: usize = 40_000;
    let mut child = Command::new(bin("swqos"))
        .args(["submit", "--config", rig.cfg(), "--timeout", "60", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<String> = (0..N)
        .map(|i| valid[i % valid.len()].line.clone())
        .collect();
    let feeder = std::thread::spawn(move || {
        for l in lines {
            if writeln!(stdin, "{l}").is_err() {
                return;
            }
        }
    });

    // Kill the control plane once a few hundred transactions are answered.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut got = Vec::new();
    let mut line = String::new();
    while got.len() < 300 {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "submit ended early");
        got.push(line.trim_end().to_string());
    }
    rig.stop_control(libc::SIGKILL);
    let killed = Instant::now();
    // The rest must come promptly: the --timeout of 60 s is not what ends the wait.
    for l in out.lines() {
        got.push(l.unwrap());
    }
    let took = killed.elapsed();
    let status = child.wait().unwrap();
    feeder.join().unwrap();
    assert_eq!(got.len(), N, "one line per input line");
    assert!(
        took < Duration::from_secs(40),
        "took {took:?} after the kill"
    );
    assert_eq!(status.code(), Some(1));
    let accepted = got.iter().filter(|l| l.starts_with("accepted ")).count();
    let gone = got
        .iter()
        .filter(|l| l.contains("no completion: control plane gone"))
        .count();
    let refused = got
        .iter()
        .filter(|l| l.starts_with("rejected dropped: no control plane"))
        .count();
    // Before the kill a stream faster than the relay may also fill the hand-off ring.
    let known = |l: &str| {
        l.starts_with("accepted ")
            || l.contains("no completion: control plane gone")
            || l.starts_with("rejected dropped: no control plane")
            || l.starts_with("rejected dropped: control plane hand-off ring full")
    };
    assert!(
        got.iter().all(|l| known(l)),
        "unexpected lines: {:?}",
        got.iter().filter(|l| !known(l)).take(5).collect::<Vec<_>>()
    );
    assert!(accepted > 0, "nothing was accepted before the kill");
    assert!(refused > 0, "nothing was refused after the kill");
    eprintln!(
        "{accepted} accepted, {gone} no completion, {refused} refused, {took:?} after the kill"
    );
    // The 40,000 lines cycle through the samples: each transaction is submitted hundreds of
    // times on purpose, so the rig's once-per-signature check does not apply (the wire check
    // for conflicting copies still does).
    for s in &valid {
        if let Some(sig) = &s.signature {
            rig.sent_on_purpose_again(sig);
        }
    }
    rig.stop();
}
