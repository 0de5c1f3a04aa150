//! The QUIC lanes' benchmark (`scripts/bench-e2e.sh --quic`) runs end to end on its real
//! topology: the data plane's own QUIC connections (eight lanes of six providers, two of them
//! twice on other ports) and the quinn client on its own kernel-owned link, both to
//! `tests/relay/quic_relay.py` in the relay namespace, tcpdump on the relay's ends of both
//! links. The script must succeed, every transaction must reach the relay exactly once (the
//! bench checks the relay's log and says so), and the relay-receipt table, the wire-truth table
//! (every lane count and path, one datagram window per transaction), the ratios, `wire.csv` and
//! the plots must be complete. No timing is asserted: speed belongs in the benchmark itself.

use std::collections::HashMap;
use std::process::Command;

use swqos_tests::{bin, have_root, workspace, Scratch};

const COUNT: usize = 6;
const WARMUP: usize = 2;
const LANE_COUNTS: [usize; 3] = [1, 4, 8];
const PATHS: [&str; 2] = ["dataplane", "quinn"];

/// The numbers of a table row (`f[from..]`), which must all parse.
fn numbers(f: &[&str], from: usize, line: &str) {
    for q in &f[from..] {
        let q = q.strip_suffix('x').unwrap_or(q);
        assert!(q.parse::<f64>().is_ok(), "not a number in {line:?}");
    }
}

#[test]
fn the_quic_benchmark_measures_both_paths_on_the_wire_at_every_width() {
    if !have_root("the_quic_benchmark_measures_both_paths_on_the_wire_at_every_width") {
        return;
    }
    let scratch = Scratch::new("quic-bench");
    let out_dir = scratch.path("report");
    let bin_dir = bin("swqos").parent().unwrap().to_path_buf();
    let counts: Vec<String> = LANE_COUNTS.iter().map(usize::to_string).collect();
    let out = Command::new(workspace().join("scripts/bench-e2e.sh"))
        .arg("--quic")
        .env("BENCH_E2E_BIN", &bin_dir)
        .env("BENCH_E2E_COUNT", COUNT.to_string())
        .env("BENCH_E2E_WARMUP", WARMUP.to_string())
        .env("BENCH_E2E_LANES", counts.join(","))
        .env("BENCH_LOG_DIR", &out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let file = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "bench-e2e.sh --quic: {}\n{stdout}\n{stderr}\nrelay:\n{}\ndataplane:\n{}",
        out.status,
        file("relay.err"),
        file("dataplane.err")
    );

    // Every transaction of both paths reached the relay exactly once.
    let total: usize = LANE_COUNTS.iter().map(|n| COUNT * n).sum::<usize>() * PATHS.len();
    assert!(
        stdout.contains(&format!(
            "relay log: all {total} requests received exactly once"
        )),
        "{stdout}"
    );

    // The relay-receipt table: every lane count, path and metric.
    let mut receipts = HashMap::new();
    // The wire-truth table: lanes, path, n, 8 quantiles, odd.
    let mut wire = HashMap::new();
    let mut ratios = Vec::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 8 && PATHS.contains(&f[1]) {
            numbers(&f, 4, line);
            receipts.insert(
                (f[0].to_string(), f[1], f[2]),
                f[3].parse::<usize>().unwrap(),
            );
        } else if f.len() == 12 && PATHS.contains(&f[1]) {
            numbers(&f, 3, line);
            let (n, odd): (usize, usize) = (f[2].parse().unwrap(), f[11].parse().unwrap());
            wire.insert((f[0].parse::<usize>().unwrap(), f[1]), (n, odd));
        } else if f.len() == 9 && f[1].ends_with('x') && f[2].ends_with('x') {
            numbers(&f, 1, line);
            ratios.push(f[0].parse::<usize>().unwrap());
        }
    }
    for n in LANE_COUNTS {
        for path in PATHS {
            for (metric, want) in [
                ("submit->receipt", COUNT * n),
                ("last-receipt", COUNT),
                ("round-trip", COUNT * n),
            ] {
                assert_eq!(
                    receipts.get(&(n.to_string(), path, metric)),
                    Some(&want),
                    "{n} {path} {metric} in:\n{stdout}"
                );
            }
            // Each transaction in its window, on its own flow: odd windows are left out.
            let (got, odd) = wire[&(n, path)];
            assert_eq!(got + odd * n, COUNT * n, "{n} {path} in:\n{stdout}");
            assert!(
                got > 0,
                "{n} {path}: no transaction seen on the wire:\n{stdout}"
            );
        }
    }
    assert_eq!(ratios, LANE_COUNTS, "the ratio table:\n{stdout}");
    assert!(stdout.contains("first / last datagram"), "{stdout}");
    assert!(stdout.contains("data plane / quinn"), "{stdout}");

    // wire.csv: a row per transaction seen; the plots of every width.
    let csv = file("wire.csv");
    let rows = csv.lines().skip(1).count();
    let seen: usize = wire.values().map(|(n, _)| n).sum();
    assert_eq!(rows, seen, "{csv}");
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert!(PATHS.contains(&f[0]), "{line}");
        assert!(
            f[4].parse::<f64>().unwrap() <= f[5].parse::<f64>().unwrap(),
            "{line}"
        );
    }
    for n in LANE_COUNTS {
        for name in [
            format!("wire-{n}lanes.svg"),
            format!("latency-{n}lanes.svg"),
        ] {
            let svg = file(&name);
            assert!(svg.starts_with("<svg") && svg.contains("quinn"), "{name}");
        }
    }
    // The data plane's report lists the eight QUIC lanes.
    let lanes = stdout.lines().filter(|l| l.starts_with("lane ")).count();
    assert_eq!(lanes, 8, "{stdout}");
}
