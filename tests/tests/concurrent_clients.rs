//! Two submitting processes at once, one killed with SIGKILL mid-stream: the other's submissions
//! are all sent, the dead client's ring is reclaimed by a newcomer, and the capture holds
//! exactly what the survivors were told was accepted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use swqos_tests::{
    bin, config_text, have_root, hex, samples, swqos, tshark_fields, two_lanes, DataplaneProcess,
    Scratch,
};

/// Starts `swqos submit` fed by a thread that writes `lines`, pausing every `chunk` lines.
fn submitter(cfg: &str, lines: Vec<String>, chunk: usize, pause: Duration) -> Child {
    let mut child = Command::new(bin("swqos"))
        .args(["submit", "--config", cfg, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for (i, l) in lines.iter().enumerate() {
            if writeln!(stdin, "{l}").is_err() {
                return; // killed
            }
            if (i + 1) % chunk == 0 {
                let _ = stdin.flush();
                std::thread::sleep(pause);
            }
        }
    });
    child
}

#[test]
fn a_killed_client_stalls_no_one() {
    if !have_root("a_killed_client_stalls_no_one") {
        return;
    }
    let scratch = Scratch::new("kill");
    let pcap = scratch.path("tx.pcap");
    let config = scratch.path("kill.toml");
    let device = format!("net_pcap0,tx_pcap={}", pcap.display());
    // Two rings: the newcomer can only get in by reclaiming the dead client's ring.
    std::fs::write(
        &config,
        config_text("kill", &device, "off", 2, &two_lanes()),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);

    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let (survivor_set, victim_set) = valid.split_at(valid.len() / 2);
    let repeat = |set: &[swqos_tests::Sample], n: usize| -> Vec<String> {
        (0..n)
            .flat_map(|_| set.iter().map(|s| s.line.clone()))
            .collect()
    };

    // The victim streams fast; the survivor streams slowly so it is mid-stream at the kill.
    let mut victim = submitter(cfg, repeat(victim_set, 1000), 500, Duration::from_millis(1));
    let survivor_lines = repeat(survivor_set, 100);
    let survivor_n = survivor_lines.len();
    let survivor = submitter(cfg, survivor_lines, 100, Duration::from_millis(15));

    // Kill the victim once it has had a good number of submissions accepted.
    let mut victim_out = BufReader::new(victim.stdout.take().unwrap());
    let mut victim_accepted = 0;
    let mut line = String::new();
    while victim_accepted < 200 {
        line.clear();
        assert!(
            victim_out.read_line(&mut line).unwrap() > 0,
            "victim ended early"
        );
        if line.starts_with("accepted ") {
            victim_accepted += 1;
        }
    }
    victim.kill().unwrap();
    victim.wait().unwrap();

    // A newcomer takes the dead client's ring while the survivor still holds the other.
    let newcomer_lines = repeat(survivor_set, 10).join("\n") + "\n";
    let out = swqos(&["submit", "--config", cfg, "-"], newcomer_lines.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let newcomer_n = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("accepted "))
        .count();
    assert_eq!(newcomer_n, survivor_set.len() * 10);

    let out = survivor.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("accepted ")).count(),
        survivor_n
    );
    assert_eq!(text.lines().count(), survivor_n);

    let done = dp.stop(libc::SIGTERM);
    assert!(done.stdout.contains("dropped 0"), "{}", done.stdout);

    // The capture: every survivor and newcomer transaction once per lane per submission; the
    // victim's published submissions were still sent, to both lanes alike.
    let rows = tshark_fields(
        &pcap,
        &[
            "udp.dstport",
            "ip.checksum.status",
            "udp.checksum.status",
            "data.data",
        ],
    );
    let survivor_payloads: HashMap<String, ()> =
        survivor_set.iter().map(|s| (hex(&s.bytes), ())).collect();
    let victim_payloads: HashMap<String, ()> =
        victim_set.iter().map(|s| (hex(&s.bytes), ())).collect();
    let mut survivor_frames: HashMap<&str, usize> = HashMap::new();
    let mut victim_frames: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            ("1", "1"),
            "checksums: {row:?}"
        );
        if survivor_payloads.contains_key(&row[3]) {
            *survivor_frames.entry(&row[0]).or_default() += 1;
        } else {
            assert!(victim_payloads.contains_key(&row[3]), "unknown payload");
            *victim_frames.entry(&row[0]).or_default() += 1;
        }
    }
    let expected = survivor_n + newcomer_n;
    assert_eq!(survivor_frames.get("8001"), Some(&expected));
    assert_eq!(survivor_frames.get("8002"), Some(&expected));
    let va = victim_frames.get("8001").copied().unwrap_or(0);
    assert!(
        va >= victim_accepted,
        "victim had {victim_accepted} accepted, {va} on the wire"
    );
    assert_eq!(victim_frames.get("8002").copied().unwrap_or(0), va);
}
