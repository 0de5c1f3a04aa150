//! The end-to-end latency report (`swqos bench e2e`) on the real relay topology: the mock relay
//! in the peer namespace, the dataplane bridging the host's TAP to its af_packet NIC, and
//! `swqos control`'s kernel TCP connection as the relay lane. The report must measure both
//! paths, every request must reach the relay exactly once (the relay's own log says so), and
//! the table, CSV and SVG must be complete. No timing is asserted: speed belongs in benchmarks.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::topology::{wait_for_line, Guard, Topology};
use swqos_tests::{
    bin, free_port, have_root, samples, swqos, workspace, DataplaneProcess, Scratch,
};

const TOKEN: &str = "test-token-7f3a";
const COUNT: usize = 40;
const WARMUP: usize = 3;

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
    /// Starts everything with one Jito lane `jito` on one connection.
    fn start(name: &str) -> Rig {
        let scratch = Scratch::new(name);
        let topo = Topology::new();
        let log = scratch.path("relay.jsonl");
        let config = scratch.path("relay.toml");
        let pid = std::process::id();
        let text = format!(
            "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\nfile_prefix = \"swqos-{name}-{pid}\"\n\n\
             [shm]\npath = \"/dev/shm/swqos-{name}-{pid}\"\nrings = 2\n\n{}\n\
             [control]\nmetrics_listen = \"127.0.0.1:{}\"\n\n\
             [[lane]]\nname = \"jito\"\nkind = \"http\"\nprovider = \"jito\"\nport = \"nic\"\n\
             dst_ip = \"198.18.77.2\"\ndst_port = 8080\nconnections = 1\ntoken = \"{TOKEN}\"\n",
            topo.dataplane_ports(),
            free_port()
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

    /// Submits `line` until the relay lane accepts it (control plane attached, connection up).
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
fn the_latency_report_measures_both_paths_and_every_request_reaches_the_relay_once() {
    if !have_root("the_latency_report_measures_both_paths_and_every_request_reaches_the_relay_once")
    {
        return;
    }
    let rig = Rig::start("e2e-report");
    let all = samples();
    let valid: Vec<_> = all.iter().filter(|s| s.invalid.is_none()).collect();
    rig.warm_up(&valid[0].line);

    let out_dir = rig.scratch.path("report");
    let count = COUNT.to_string();
    let warmup = WARMUP.to_string();
    let out = Command::new(bin("swqos"))
        .args([
            "bench",
            "e2e",
            "--config",
            rig.cfg(),
            "--lane",
            "jito",
            "--count",
            &count,
            "--warmup",
            &warmup,
            "--relay-log",
            rig.log.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "swqos bench e2e: {}\n{stdout}\n{stderr}\ncontrol plane:\n{}",
        out.status,
        std::fs::read_to_string(rig.scratch.path("control.err")).unwrap_or_default()
    );

    // The table: both paths, both metrics, COUNT samples each; the ratio; the honest note.
    let mut rows = HashMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 7 && (f[0] == "dataplane" || f[0] == "kernel-socket") {
            for q in &f[3..] {
                assert!(q.parse::<f64>().is_ok(), "not a number in {line:?}");
            }
            rows.insert((f[0], f[1]), f[2].parse::<usize>().unwrap());
        }
    }
    for path in ["dataplane", "kernel-socket"] {
        for metric in ["submit->receipt", "round-trip"] {
            assert_eq!(
                rows.get(&(path, metric)),
                Some(&COUNT),
                "{path} {metric} in:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains("ratio of medians"), "{stdout}");
    assert!(stdout.contains("expected to be"), "{stdout}");

    // The CSV: one row per measured request, alternating paths, each matched to a relay line.
    let csv = std::fs::read_to_string(out_dir.join("latency.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_path, c_sig, c_conn, c_seq) = (
        col("path"),
        col("signature"),
        col("relay_conn"),
        col("relay_seq"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * COUNT, "{csv}");
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{r:?}");
    }
    for path in ["dataplane", "kernel-socket"] {
        assert_eq!(rows.iter().filter(|r| r[c_path] == path).count(), COUNT);
    }

    // The relay's own log: each CSV row names a distinct accepted request with its signature;
    // and there is no accepted request beyond the rig's warm-up, the bench's warm-up and the
    // measured ones (nothing was delivered twice).
    let log = std::fs::read_to_string(&rig.log).unwrap();
    let mut accepted = HashMap::new();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["ok"] != true {
            continue;
        }
        let key = (v["conn"].as_u64().unwrap(), v["seq"].as_u64().unwrap());
        let sig = v["signature"].as_str().unwrap().to_string();
        assert!(accepted.insert(key, sig).is_none(), "{line}");
    }
    assert_eq!(
        accepted.len(),
        1 + 2 * WARMUP + 2 * COUNT,
        "accepted requests in the relay log:\n{log}"
    );
    let mut seen = HashSet::new();
    for r in &rows {
        let key: (u64, u64) = (r[c_conn].parse().unwrap(), r[c_seq].parse().unwrap());
        assert!(
            seen.insert(key),
            "two requests matched one relay line: {r:?}"
        );
        assert_eq!(
            accepted.get(&key).map(String::as_str),
            Some(r[c_sig]),
            "{r:?}"
        );
    }
    // The kernel-socket path is one keep-alive connection; the data-plane path is another one
    // (swqos control's).
    let conns = |path: &str| -> HashSet<&str> {
        rows.iter()
            .filter(|r| r[c_path] == path)
            .map(|r| r[c_conn])
            .collect()
    };
    let (kernel, dataplane) = (conns("kernel-socket"), conns("dataplane"));
    assert_eq!(kernel.len(), 1, "{kernel:?}");
    assert!(kernel.is_disjoint(&dataplane), "{kernel:?} {dataplane:?}");

    // The SVG: the two CDF polylines and its panels.
    let svg = std::fs::read_to_string(out_dir.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    assert!(svg.contains("CDF") && svg.contains("Histogram"));
    assert!(svg.matches("<rect").count() > 4, "histogram bars");

    rig.stop();
}
