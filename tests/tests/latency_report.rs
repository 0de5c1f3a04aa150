//! The end-to-end latency report (`swqos bench e2e`) on the real relay topology: the mock relay
//! in the peer namespace, the dataplane bridging the host's TAP to its af_packet NIC, and
//! `swqos control`'s kernel TCP connections as four relay lanes. The report must measure the
//! three paths (data plane, reqwest, kernel socket) for one and four lanes per submission,
//! every request must reach the relay exactly once (the relay's own log says so), and the
//! tables, CSV and SVGs must be complete. No timing is asserted: speed belongs in benchmarks.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::topology::{wait_for_line, Guard, Topology};
use swqos_tests::{
    bin, free_port, have_root, samples, swqos, workspace, DataplaneProcess, Scratch,
};

const TOKEN: &str = "test-token-7f3a";
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

/// The relay test network (as in relay_lanes.rs): topology, mock relay, dataplane, control.
struct Rig {
    scratch: Scratch,
    mock: Option<Guard>,
    dp: Option<DataplaneProcess>,
    control: Option<std::process::Child>,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    /// Last: the network (and its lock) goes only after every process using it.
    topo: Topology,
}

impl Rig {
    /// Starts everything with the relay lanes of [`LANES`], one connection each.
    fn start(name: &str) -> Rig {
        let scratch = Scratch::new(name);
        let topo = Topology::new();
        let log = scratch.path("relay.jsonl");
        let config = scratch.path("relay.toml");
        let pid = std::process::id();
        let text = format!(
            "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\nfile_prefix = \"swqos-{name}-{pid}\"\n\n\
             [shm]\npath = \"/dev/shm/swqos-{name}-{pid}\"\nrings = 2\n\n{}\n\
             [control]\nmetrics_listen = \"127.0.0.1:{}\"\n{}",
            topo.dataplane_ports(),
            free_port(),
            LANES
                .iter()
                .map(|(name, provider)| format!(
                    "\n[[lane]]\nname = \"{name}\"\nkind = \"http\"\nprovider = \"{provider}\"\n\
                     port = \"nic\"\ndst_ip = \"198.18.77.2\"\ndst_port = 8080\nconnections = 1\n\
                     token = \"{TOKEN}\"\n"
                ))
                .collect::<String>()
        );
        std::fs::write(&config, &text).unwrap();
        let mut rig = Rig {
            scratch,
            topo,
            mock: None,
            dp: None,
            control: None,
            config,
            log,
        };
        let mock_path = workspace().join("tests/relay/mock_relay.py");
        let mut mock = Guard(rig.topo.spawn_in_ns(&[
            "python3",
            "-u",
            mock_path.to_str().unwrap(),
            "--listen",
            "198.18.77.2:8080",
            "--token-all",
            TOKEN,
            "--log",
            rig.log.to_str().unwrap(),
        ]));
        wait_for_line(&mut mock.0, "listening on");
        rig.mock = Some(mock);
        rig.dp = Some(DataplaneProcess::start(&rig.scratch, &rig.config));
        rig.topo.bring_up_host();
        let control_log = std::fs::File::create(rig.scratch.path("control.err")).unwrap();
        rig.control = Some(
            Command::new(bin("swqos"))
                .args(["control", "--config", rig.cfg()])
                .stdout(Stdio::null())
                .stderr(control_log)
                .spawn()
                .unwrap(),
        );
        rig
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// Submits `line` (to every lane) until every relay lane accepts it (control plane attached, connection up).
    fn warm_up(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = swqos(
                &["submit", "--config", self.cfg(), "--timeout", "5", "-"],
                format!("{line}\n").as_bytes(),
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the relay lane never answered: {}\ncontrol plane:\n{}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(self.scratch.path("control.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn stop(mut self) {
        let mut c = self.control.take().expect("control running");
        // SAFETY: kill with our child's pid and a standard signal.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let status = c.wait().unwrap();
        assert!(status.success(), "swqos control: {status}");
        let done = self.dp.take().unwrap().stop(libc::SIGTERM);
        assert!(done.status.success(), "{}", done.stderr);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.control.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_latency_report_measures_all_paths_and_every_request_reaches_the_relay_once() {
    if !have_root("the_latency_report_measures_all_paths_and_every_request_reaches_the_relay_once")
    {
        return;
    }
    let rig = Rig::start("e2e-report");
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
    let mut args = vec!["bench", "e2e", "--config", rig.cfg()];
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
    ]);
    let out = Command::new(bin("swqos")).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "swqos bench e2e: {}\n{stdout}\n{stderr}\ncontrol plane:\n{}",
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
    // measured ones (nothing was delivered twice).
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
            .filter(|r| r[c_path] == path && lane.map_or(true, |l| r[c_lane] == l))
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

    rig.stop();
}
