//! The end-to-end latency report (`swqos bench latency`) on the real relay topology: the mock relay
//! in the peer namespace, the dataplane bridging the host's TAP to its af_packet NIC, and
//! `swqos control`'s kernel TCP connections as four relay lanes. The report must measure the
//! three paths (data plane, reqwest, kernel socket) for one and four lanes per submission,
//! every request must reach the relay exactly once (the relay's own log says so), and the
//! tables, CSV and SVGs must be complete. No timing is asserted: speed belongs in benchmarks.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;
use swqos_tests::rig::Rig;
use swqos_tests::{bin, have_root, samples};
use swqos_wire::relay::Provider;

const COUNT: usize = 12;
const WARMUP: usize = 2;
/// The rig's relay lanes (name, provider), in the order the bench fans out to them.
const LANES: [(&str, &str); 4] = [
    ("jito", "jito"),
    ("blox", "bloxroute"),
    ("zero", "0slot"),
    ("helius", "helius"),
];
/// Fan-out widths measured: each submission goes to the first N lanes.
const LANE_COUNTS: [usize; 2] = [1, 4];
const PATHS: [&str; 3] = ["dataplane", "reqwest", "kernel-socket"];

/// The relay rig with the lanes of [`LANES`], one connection each.
fn start_rig(name: &str) -> Rig {
    let lanes: Vec<(String, Provider)> = LANES
        .iter()
        .map(|(lane, provider)| (lane.to_string(), provider.parse().unwrap()))
        .collect();
    Rig::start_with(name, &lanes, 1, &[], "", "")
}

#[test]
fn the_latency_report_measures_all_paths_and_every_request_reaches_the_relay_once() {
    if !have_root("the_latency_report_measures_all_paths_and_every_request_reaches_the_relay_once")
    {
        return;
    }
    let rig = start_rig("e2e-report");
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line);
    // Only what the bench sends counts below (the warm-up may have been retried).
    let before = std::fs::read_to_string(&rig.log).unwrap().lines().count();

    let out_dir = rig.scratch.path("report");
    let count = COUNT.to_string();
    let warmup = WARMUP.to_string();
    let counts: Vec<String> = LANE_COUNTS.iter().map(usize::to_string).collect();
    let counts = counts.join(",");
    let mut args = vec!["bench", "latency", "--config", rig.cfg()];
    for (name, _) in LANES {
        args.extend(["--lane", name]);
    }
    args.extend([
        "--lanes",
        &counts,
        "--count",
        &count,
        "--warmup",
        &warmup,
        "--relay-log",
        rig.log.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        // The wire truth on the rig's one link: both captures on the relay's end of it (each
        // path's submissions have their own time windows).
        "--capture-netns",
        &rig.topo.ns,
        "--capture-dataplane-iface",
        &rig.topo.peer_if,
        "--capture-baseline-iface",
        &rig.topo.peer_if,
    ]);
    let out = Command::new(bin("swqos")).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "swqos bench latency: {}\n{stdout}\n{stderr}\ncontrol plane:\n{}",
        out.status,
        std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default()
    );

    // The table: every lane count, path and metric; COUNT submissions of N requests each.
    let mut rows = HashMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 8 && PATHS.contains(&f[1]) {
            for q in &f[4..] {
                assert!(q.parse::<f64>().is_ok(), "not a number in {line:?}");
            }
            let n: usize = f[0].parse().unwrap();
            assert!(
                rows.insert((n, f[1], f[2]), f[3].parse::<usize>().unwrap())
                    .is_none(),
                "{line}"
            );
        }
    }
    assert_eq!(rows.len(), LANE_COUNTS.len() * PATHS.len() * 3, "{stdout}");
    for n in LANE_COUNTS {
        for path in PATHS {
            for (metric, want) in [
                ("submit->receipt", COUNT * n),
                ("last-receipt", COUNT),
                ("round-trip", COUNT * n),
            ] {
                assert_eq!(
                    rows.get(&(n, path, metric)),
                    Some(&want),
                    "{n} {path} {metric} in:\n{stdout}"
                );
            }
        }
    }
    // The summary: p50/p99 of each path and the two ratios, per lane count and per
    // request/submission.
    let summary: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 10 && (f[1] == "request" || f[1] == "submission"))
        .collect();
    assert_eq!(summary.len(), 2 * LANE_COUNTS.len(), "{stdout}");
    for f in &summary {
        for q in &f[2..8] {
            assert!(q.parse::<f64>().is_ok(), "{f:?}");
        }
        for r in &f[8..] {
            assert!(r.strip_suffix('x').unwrap().parse::<f64>().is_ok(), "{f:?}");
        }
    }
    assert!(stdout.contains("dataplane / reqwest"), "{stdout}");
    assert!(stdout.contains("delegated send"), "{stdout}");

    // The CSV: one row per measured request, each matched to a relay line.
    let csv = std::fs::read_to_string(out_dir.join("latency.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_path, c_lanes, c_sub, c_lane, c_provider, c_sig, c_conn, c_seq) = (
        col("path"),
        col("lanes"),
        col("submission"),
        col("lane"),
        col("provider"),
        col("signature"),
        col("relay_conn"),
        col("relay_seq"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let per_path: usize = LANE_COUNTS.iter().map(|n| COUNT * n).sum();
    assert_eq!(rows.len(), PATHS.len() * per_path, "{csv}");
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{r:?}");
        let lane = LANES.iter().find(|(name, _)| *name == r[c_lane]).unwrap();
        assert_eq!(r[c_provider], lane.1, "{r:?}");
    }
    for path in PATHS {
        assert_eq!(rows.iter().filter(|r| r[c_path] == path).count(), per_path);
    }
    // Each submission of N lanes has exactly its first N lanes, once each, one signature.
    let mut submissions: HashMap<&str, Vec<&Vec<&str>>> = HashMap::new();
    for r in &rows {
        submissions.entry(r[c_sub]).or_default().push(r);
    }
    assert_eq!(submissions.len(), PATHS.len() * COUNT * LANE_COUNTS.len());
    for rs in submissions.values() {
        let n: usize = rs[0][c_lanes].parse().unwrap();
        let mut names: Vec<&str> = rs.iter().map(|r| r[c_lane]).collect();
        names.sort_unstable();
        let mut want: Vec<&str> = LANES[..n].iter().map(|(name, _)| *name).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{rs:?}");
        assert!(rs
            .iter()
            .all(|r| r[c_sig] == rs[0][c_sig] && r[c_path] == rs[0][c_path]));
    }

    // The relay's own log: each CSV row names a distinct accepted request with its provider
    // and signature; and there is no accepted request beyond the bench's warm-ups and the
    // measured ones (nothing was delivered twice). (Each path sends the same transactions, so
    // the rig's per-signature duplicate check at stop leaves them to this count.)
    for s in &valid {
        if let Some(sig) = &s.signature {
            rig.sent_on_purpose_again(sig);
        }
    }
    let log = std::fs::read_to_string(&rig.log).unwrap();
    let mut accepted = HashMap::new();
    for line in log.lines().skip(before) {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["ok"] != true {
            continue;
        }
        let key = (v["conn"].as_u64().unwrap(), v["seq"].as_u64().unwrap());
        let what = (
            v["provider"].as_str().unwrap().to_string(),
            v["signature"].as_str().unwrap().to_string(),
        );
        assert!(accepted.insert(key, what).is_none(), "{line}");
    }
    let warmups: usize = LANE_COUNTS.iter().map(|n| WARMUP * n).sum();
    assert_eq!(
        accepted.len(),
        PATHS.len() * (warmups + per_path),
        "accepted requests in the relay log:\n{log}"
    );
    let mut seen = HashSet::new();
    for r in &rows {
        let key: (u64, u64) = (r[c_conn].parse().unwrap(), r[c_seq].parse().unwrap());
        assert!(
            seen.insert(key),
            "two requests matched one relay line: {r:?}"
        );
        let (provider, sig) = accepted.get(&key).expect("an accepted relay line");
        assert_eq!((provider.as_str(), sig.as_str()), (r[c_provider], r[c_sig]));
    }
    // Each path uses its own connections: the kernel socket one keep-alive connection per
    // lane, reqwest its pool's, the data plane swqos control's.
    let conns = |path: &str, lane: Option<&str>| -> HashSet<&str> {
        rows.iter()
            .filter(|r| r[c_path] == path && lane.is_none_or(|l| r[c_lane] == l))
            .map(|r| r[c_conn])
            .collect()
    };
    for (name, _) in LANES {
        assert_eq!(conns("kernel-socket", Some(name)).len(), 1, "{name}");
    }
    let (kernel, reqwest, dataplane) = (
        conns("kernel-socket", None),
        conns("reqwest", None),
        conns("dataplane", None),
    );
    assert!(kernel.is_disjoint(&dataplane), "{kernel:?} {dataplane:?}");
    assert!(reqwest.is_disjoint(&dataplane), "{reqwest:?} {dataplane:?}");
    assert!(reqwest.is_disjoint(&kernel), "{reqwest:?} {kernel:?}");

    // The SVGs: one per lane count (latency.svg is the first), three CDF polylines each.
    let mut files = vec!["latency.svg".to_string()];
    files.extend(LANE_COUNTS.iter().map(|n| format!("latency-{n}lanes.svg")));
    for file in files {
        let svg = std::fs::read_to_string(out_dir.join(&file)).unwrap();
        assert!(
            svg.starts_with("<svg"),
            "{file}: {}",
            &svg[..svg.len().min(200)]
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{file}");
        assert_eq!(svg.matches("<polyline").count(), PATHS.len(), "{file}");
        assert!(svg.contains("CDF") && svg.contains("Histogram"), "{file}");
        assert!(svg.matches("<rect").count() > 4, "{file}: histogram bars");
    }

    // The wire truth: per lane count and path, one first/last byte per request, every
    // submission's window holding one request per lane (no `odd` ones); wire.csv has them all.
    let wire: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 12 && PATHS.contains(&f[1]))
        .collect();
    assert_eq!(wire.len(), LANE_COUNTS.len() * PATHS.len(), "{stdout}");
    for f in &wire {
        let n: usize = f[0].parse().unwrap();
        assert_eq!(f[2].parse::<usize>().unwrap(), COUNT * n, "{f:?}");
        for q in &f[3..11] {
            assert!(q.parse::<f64>().is_ok_and(|v| v >= 0.0), "{f:?}");
        }
        assert_eq!(
            f[11], "0",
            "submissions without one request per lane: {f:?}"
        );
    }
    let wire_csv = std::fs::read_to_string(out_dir.join("wire.csv")).unwrap();
    assert_eq!(wire_csv.lines().count(), 1 + PATHS.len() * per_path);
    // The latency budget: the delegated sends' stages were timed.
    for stage in [
        "copy-out",
        "validate",
        "build+digest",
        "claim (CAS)",
        "tx_burst",
    ] {
        // "  stage  p50 ns  p99 ns  mean ns  timings  what"
        let row = stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(stage))
            .unwrap_or_else(|| panic!("no budget row {stage:?} in:\n{stdout}"));
        let timings: u64 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(timings > 0, "{stage}{row}");
    }

    rig.stop();
}
