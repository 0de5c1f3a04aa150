//! `swqos stats` and the Prometheus metrics of `swqos control`, read while a real dataplane runs
//! on `net_null0` and checked against the transactions sent; the metrics are scraped by an
//! independent HTTP client (Python's urllib), and the exporter follows the dataplane as it stops
//! and starts again.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_tests::{
    bin, config_text, free_port, have_root, samples, swqos, two_lanes, DataplaneProcess, Scratch,
};

/// Scrapes `url` with Python's urllib: (status, content type, body).
fn scrape(url: &str) -> (u16, String, String) {
    const SCRIPT: &str = r#"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=10)
    code, ctype, body = r.status, r.headers.get("Content-Type", ""), r.read()
except urllib.error.HTTPError as e:
    code, ctype, body = e.code, e.headers.get("Content-Type", ""), e.read()
sys.stdout.write("%d\n%s\n" % (code, ctype))
sys.stdout.write(body.decode("utf-8"))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, url])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 scrape of {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut parts = text.splitn(3, '\n');
    let code = parts.next().unwrap().parse().expect("status code");
    let ctype = parts.next().unwrap_or("").to_string();
    (code, ctype, parts.next().unwrap_or("").to_string())
}

/// One parsed sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses a text exposition, checking its shape: every sample belongs to a family announced by
/// `# HELP` and `# TYPE` lines before it, counters end in `_total`, label syntax is valid.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            helps.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind} of {name}"
            );
            assert!(
                helps.contains(&name.to_string()),
                "TYPE before HELP: {name}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} lacks _total");
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = Vec::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label k=\"v\"");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "label name {k:?}"
                    );
                    labels.push((k.to_string(), v.trim_end_matches('"').to_string()));
                }
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {name} has no # TYPE line before it"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the sample `name` whose labels include every `labels` pair.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

/// Scrapes until `swqos_dataplane_up` has `want`, or panics after 15 s.
fn scrape_until_up(url: &str, want: f64) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, _, body) = scrape(url);
        assert_eq!(code, 200, "{body}");
        let samples = parse_exposition(&body);
        if value(&samples, "swqos_dataplane_up", &[]) == Some(want) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "swqos_dataplane_up never became {want}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `swqos stats --json` once, rates over `interval` seconds.
fn stats_json(config: &Path, interval: &str) -> Value {
    let out = swqos(
        &[
            "stats",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "--interval",
            interval,
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats --json prints one JSON object")
}

fn lane<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no lane {name} in {stats}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// Sends `signal` to `child` and waits (at most 20 s) for its exit code.
fn stop_child(child: &mut Child, signal: i32) -> Option<i32> {
    // SAFETY: kill with our own child's pid and a standard signal.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child ignored signal {signal} for 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the control plane if the test fails before stopping it.
struct ControlProcess(Child);

impl Drop for ControlProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn stats_and_metrics_match_the_traffic_sent() {
    if !have_root("stats_and_metrics_match_the_traffic_sent") {
        return;
    }
    let scratch = Scratch::new("observability");
    let config = scratch.path("obs.toml");
    let port = free_port();
    let mut text = config_text("obs", "net_null0", "off", 2, &two_lanes());
    text.push_str(&format!(
        "\n[control]\nmetrics_listen = \"127.0.0.1:{port}\"\n"
    ));
    fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");

    // Before any dataplane: stats says so (exit 2), control serves up 0 and keeps trying.
    let out = swqos(&["stats", "--config", config_arg], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no dataplane running"), "{stderr}");

    let control_log = scratch.path("control.err");
    let mut control = ControlProcess(
        Command::new(bin("swqos"))
            .args(["control", "--config", config_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&control_log).unwrap())
            .spawn()
            .expect("spawn swqos control"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListenerProbe::closed(port) {
        assert!(
            Instant::now() < deadline,
            "swqos control did not listen on {port}:\n{}",
            fs::read_to_string(&control_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = scrape_until_up(&url, 0.0);
    let about_dataplane = samples
        .iter()
        .filter(|s| !s.name.starts_with("swqos_control_"))
        .count();
    assert_eq!(
        about_dataplane, 1,
        "only swqos_dataplane_up (and the control plane's own figures) without a dataplane"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name == "swqos_control_wakeup_latency_seconds_count"),
        "the control plane's wake-up latency histogram"
    );

    let dp = DataplaneProcess::start(&scratch, &config);

    // Submit N transactions to both lanes while reading the stats concurrently.
    const ROUNDS: usize = 40;
    let valid: Vec<_> = samples_valid();
    let mut input = String::new();
    for _ in 0..ROUNDS {
        for s in &valid {
            input.push_str(&s.line);
            input.push('\n');
        }
    }
    let n = (ROUNDS * valid.len()) as u64;
    let submit = {
        let config = config_arg.to_string();
        std::thread::spawn(move || swqos(&["submit", "--config", &config], input.as_bytes()))
    };
    let mut last_sent = 0;
    while !submit.is_finished() {
        let s = stats_json(&config, "0.1");
        let a = u(&lane(&s, "udp-a")["packets"]);
        let b = u(&lane(&s, "udp-b")["packets"]);
        let sent = u(&s["totals"]["completions"]["sent"]);
        assert!(a <= n && b <= n && sent == a + b, "{s}");
        assert!(sent >= last_sent, "counters went backwards: {s}");
        last_sent = sent;
    }
    let out = submit.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{n} accepted, 0 rejected")),
        "{stderr}"
    );

    // The dataplane still runs: stats equal what was sent.
    let s = stats_json(&config, "0.3");
    assert_eq!(s["dataplane"]["up"], true, "{s}");
    assert_eq!(s["dataplane"]["state"], "running", "{s}");
    for name in ["udp-a", "udp-b"] {
        let l = lane(&s, name);
        assert_eq!(u(&l["packets"]), n, "{l}");
        assert_eq!(u(&l["dropped"]), 0, "{l}");
        assert_eq!(
            u(&l["fast"]),
            n,
            "UDP lanes send everything on the fast path: {l}"
        );
        assert_eq!(u(&l["fallback"]), 0, "{l}");
        assert_eq!(l["kind"], "udp");
    }
    let totals = &s["totals"];
    assert_eq!(u(&totals["submissions"]), n, "{totals}");
    assert_eq!(u(&totals["tx_packets"]), 2 * n, "{totals}");
    let c = &totals["completions"];
    assert_eq!(
        (
            u(&c["sent"]),
            u(&c["rejected"]),
            u(&c["unknown_lane"]),
            u(&c["dropped"])
        ),
        (2 * n, 0, 0, 0),
        "{c}"
    );
    let lat = &totals["latency_us"];
    assert_eq!(u(&lat["samples"]), 2 * n, "{lat}");
    let (p50, p99, p999) = (
        lat["p50"].as_f64().expect("p50"),
        lat["p99"].as_f64().expect("p99"),
        lat["p999"].as_f64().expect("p99.9"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{lat}");
    let lcores = s["lcores"].as_array().unwrap();
    assert_eq!(lcores.len(), 1);
    assert_eq!(lcores[0]["lcore"], 1);
    assert_eq!(lcores[0]["role"], "tx");
    assert_eq!(u(&lcores[0]["counters"]["tx_packets"]), 2 * n);
    let ports = s["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "p0");
    assert_eq!(u(&ports[0]["counters"]["opackets"]), 2 * n, "{}", ports[0]);
    // (net_null counts packets but not bytes: its obytes stay 0, and the stats say so.)
    assert_eq!(u(&ports[0]["counters"]["oerrors"]), 0);
    // Nothing moves any more: the rates over the last interval are zero.
    assert_eq!(lcores[0]["rates"]["tx_packets_per_s"].as_f64(), Some(0.0));

    // The human-readable form has a row per lcore, port and lane.
    let out = swqos(&["stats", "--config", config_arg, "--interval", "0.2"], b"");
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("running"), "{table}");
    for row in ["\n1 ", "\np0 ", "\nudp-a ", "\nudp-b "] {
        assert!(table.contains(row), "no {row:?} row:\n{table}");
    }

    // Metrics: same figures, conventional names, scraped by an independent client.
    let samples = scrape_until_up(&url, 1.0);
    let (code, ctype, _) = scrape(&url);
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let nf = n as f64;
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    assert_eq!(get("swqos_lane_packets_total", &[("lane", "udp-a")]), nf);
    assert_eq!(get("swqos_lane_packets_total", &[("lane", "udp-b")]), nf);
    assert_eq!(get("swqos_lane_dropped_total", &[("lane", "udp-a")]), 0.0);
    assert_eq!(
        get(
            "swqos_lane_path_packets_total",
            &[("lane", "udp-b"), ("path", "fast")]
        ),
        nf
    );
    assert_eq!(
        get(
            "swqos_lcore_tx_packets_total",
            &[("lcore", "1"), ("role", "tx")]
        ),
        2.0 * nf
    );
    assert_eq!(get("swqos_lcore_submissions_total", &[("lcore", "1")]), nf);
    assert_eq!(
        get("swqos_port_tx_packets_total", &[("port", "p0")]),
        2.0 * nf
    );
    assert_eq!(get("swqos_port_tx_errors_total", &[("port", "p0")]), 0.0);
    for (outcome, want) in [
        ("sent", 2.0 * nf),
        ("rejected", 0.0),
        ("unknown_lane", 0.0),
        ("dropped", 0.0),
    ] {
        assert_eq!(
            get("swqos_completions_total", &[("outcome", outcome)]),
            want
        );
    }
    let age = get("swqos_heartbeat_age_seconds", &[]);
    assert!((0.0..2.0).contains(&age), "heartbeat age {age}");
    // The latency histogram: cumulative buckets ending in +Inf = _count = 2N, a positive _sum.
    let hist = "swqos_submit_to_tx_latency_seconds";
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{hist}_bucket"))
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    let mut last = (0.0f64, 0.0f64);
    for b in &buckets {
        let le = &b.labels.iter().find(|(k, _)| k == "le").expect("le").1;
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        assert!(le > last.0 && b.value >= last.1, "{buckets:?}");
        last = (le, b.value);
    }
    assert_eq!(last, (f64::INFINITY, 2.0 * nf));
    assert_eq!(get(&format!("{hist}_count"), &[]), 2.0 * nf);
    assert!(get(&format!("{hist}_sum"), &[]) > 0.0);

    // Other paths are 404; concurrent scrapes are all answered.
    let (code, _, _) = scrape(&format!("http://127.0.0.1:{port}/nope"));
    assert_eq!(code, 404);
    let parallel: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || scrape(&url))
        })
        .collect();
    for t in parallel {
        let (code, _, body) = t.join().unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("swqos_dataplane_up 1"), "{body}");
    }

    // The dataplane stops: the next scrape says so, and so does stats.
    dp.stop(libc::SIGINT);
    let (code, _, body) = scrape(&url);
    assert_eq!(code, 200);
    let samples = parse_exposition(&body);
    assert_eq!(
        value(&samples, "swqos_dataplane_up", &[]),
        Some(0.0),
        "{body}"
    );
    let out = swqos(&["stats", "--config", config_arg, "--json"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dataplane running"));

    // A new dataplane: the control plane attaches to its new segment, counters from zero.
    let dp = DataplaneProcess::start(&scratch, &config);
    let samples = scrape_until_up(&url, 1.0);
    assert_eq!(
        value(&samples, "swqos_lane_packets_total", &[("lane", "udp-a")]),
        Some(0.0)
    );
    dp.stop(libc::SIGTERM);
    scrape_until_up(&url, 0.0);

    // SIGTERM: a clean exit 0.
    assert_eq!(stop_child(&mut control.0, libc::SIGTERM), Some(0));
    let log = fs::read_to_string(&control_log).unwrap();
    assert!(
        log.contains("serving metrics on http://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("attached to"), "{log}");
}

/// The valid sample transactions.
fn samples_valid() -> Vec<swqos_tests::Sample> {
    samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect()
}

/// Whether nothing accepts connections on a loopback port yet.
struct TcpListenerProbe;

impl TcpListenerProbe {
    fn closed(port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }
}
