//! The shipped Grafana dashboard and Prometheus alert rules (deploy/) against a live
//! `swqos control`: `promtool check rules` and `promtool test rules` on the rules,
//! `promtool check metrics` on the live /metrics exposition, and every `swqos_*` metric the
//! dashboard's and the rules' expressions name exists in that exposition. The control plane runs
//! with a relay lane (the rig of tests/tests/relay_lanes.rs) so the relay lanes' metrics are
//! there too. Independent of how the metrics are produced: it reads only the exposition text.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swqos_tests::rig::Rig;
use swqos_tests::{have_root, require, samples, workspace};
use swqos_wire::relay::Provider;

/// Whether promtool is installed (Debian's `prometheus`; scripts/setup.sh installs it).
fn have_promtool(test: &str) -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        test,
        (!ok).then(|| "needs promtool (Debian package prometheus; scripts/setup.sh)".into()),
    )
}

/// Runs promtool with `args` (and `stdin`), in `dir`; panics with its output on failure.
fn promtool(dir: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every `swqos_...` metric name in `text` (expressions, or any text naming metrics).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("swqos_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not the middle of a longer identifier.
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names of a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// GET /metrics from `port`.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

#[test]
fn dashboard_and_alerts_name_only_live_metrics_and_promtool_accepts_them() {
    let test = "dashboard_and_alerts_name_only_live_metrics_and_promtool_accepts_them";
    if !have_root(test) || !have_promtool(test) {
        return;
    }
    let deploy = workspace().join("deploy");
    let rules_dir = deploy.join("prometheus");
    promtool(&rules_dir, &["check", "rules", "swqos-alerts.yml"], b"");
    promtool(&rules_dir, &["test", "rules", "swqos-alerts.test.yml"], b"");
    // The rules without their comments.
    let rules: String = std::fs::read_to_string(rules_dir.join("swqos-alerts.yml"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let dashboard_text = std::fs::read_to_string(deploy.join("grafana/swqos.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    // The expressions only (a panel's title or description may name a metric loosely).
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(d) = var["definition"].as_str() {
            exprs.push_str(d);
            exprs.push('\n');
        }
    }

    // A live control plane with a data plane and a relay lane that has sent, and landing
    // feedback on (its RPC is never reached: its series are there from the start).
    let rig = Rig::start_with(
        "dashboards",
        &[("jito".to_string(), Provider::Jito)],
        1,
        &[],
        "",
        "\n[landing]\nrpc_url = \"http://127.0.0.1:9\"\n",
    );
    let config = std::fs::read_to_string(&rig.config).unwrap();
    let port: u16 = config
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .expect("metrics_listen in the rig's config");
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    rig.warm_up(&valid[0].line);
    // Every family, the relay lanes' included, once the control plane has attached.
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        let text = scrape(port);
        if text.contains("swqos_dataplane_up 1") && text.contains("swqos_relay_lane_fast_enabled") {
            break text;
        }
        assert!(Instant::now() < deadline, "metrics never complete:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let lint = promtool(&rules_dir, &["check", "metrics"], live.as_bytes());
    let names = exposed(&live);
    rig.stop();

    let mut missing = Vec::new();
    for (what, text) in [
        ("deploy/grafana/swqos.json", &exprs),
        ("deploy/prometheus/swqos-alerts.yml", &rules),
    ] {
        let used = referenced(text);
        assert!(used.len() >= 8, "{what}: only {used:?}");
        for name in used {
            if !names.contains(&name) {
                missing.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics named in deploy/ that the live exposition does not have:\n{}\nlive: {names:?}",
        missing.join("\n")
    );
    eprintln!(
        "dashboards: {} live series names; promtool check metrics: {}",
        names.len(),
        if lint.trim().is_empty() {
            "clean"
        } else {
            lint.trim()
        }
    );
}
