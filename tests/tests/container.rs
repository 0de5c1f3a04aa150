//! The container images, end to end: builds the runtime image from the locally made Debian base
//! (`scripts/container-build.sh`: debootstrap + `docker import`, no registry), runs the compose
//! capture profile, submits the sample transactions from the host through the mounted segment
//! folder, and checks what DPDK wrote inside the container with tshark on the host; then runs
//! the development profile (dataplane and control plane) and stops it cleanly.
//!
//! Needs root and Docker with compose; skipped (loudly) only without root or without docker.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use swqos_tests::{
    bin, have_root, hex, samples, swqos, tshark_fields, two_lanes, workspace, Scratch, PORT_MAC,
};

/// The image the test builds and runs (kept cached between runs).
const IMAGE: &str = "swqos:latest";

fn have_docker(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    swqos_tests::require(
        test,
        (!ok).then(|| {
            "no usable docker here (docker version failed); the container images were NOT \
             built or tested"
                .to_string()
        }),
    )
}

/// `docker compose` (v2) when present, else `docker-compose` (v1).
fn compose_program() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One compose project (unique name and host folders), taken down on drop.
struct Project {
    program: Vec<String>,
    name: String,
    profile: &'static str,
    env: Vec<(String, String)>,
    shm_dir: PathBuf,
}

impl Project {
    fn new(profile: &'static str, shm_dir: &Path, capture_dir: &Path) -> Project {
        let name = format!("swqos-test-{profile}-{}", std::process::id());
        let _ = std::fs::remove_dir_all(shm_dir);
        // As the README says to (`install -d -m 0700`): the data plane refuses a segment
        // directory that group or others may enter, and never changes one it did not create.
        std::fs::create_dir_all(shm_dir).expect("shm dir");
        std::fs::set_permissions(shm_dir, std::fs::Permissions::from_mode(0o700))
            .expect("shm dir mode");
        let project = Project {
            program: compose_program(),
            name,
            profile,
            env: vec![
                ("SWQOS_IMAGE".into(), IMAGE.into()),
                ("SWQOS_SHM_DIR".into(), shm_dir.display().to_string()),
                (
                    "SWQOS_CAPTURE_DIR".into(),
                    capture_dir.display().to_string(),
                ),
                ("SWQOS_STATS_INTERVAL".into(), "1".into()),
                ("SWQOS_METRICS_PORT".into(), free_port().to_string()),
            ],
            shm_dir: shm_dir.to_path_buf(),
        };
        // Leftovers of an earlier, interrupted run of this pid (unlikely) would block `up`.
        let _ = project.compose(&["down", "--remove-orphans", "--volumes"]);
        project
    }

    fn compose(&self, args: &[&str]) -> Output {
        let compose_file = workspace().join("docker/compose.yaml");
        Command::new(&self.program[0])
            .args(&self.program[1..])
            .arg("-f")
            .arg(compose_file)
            .args(["-p", &self.name, "--profile", self.profile])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run docker compose")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}\nlogs:\n{}",
            text(&out),
            self.logs()
        );
        text(&out)
    }

    fn logs(&self) -> String {
        text(&self.compose(&["logs", "--no-color"]))
    }

    /// Exit code of a stopped service's container.
    fn exit_code(&self, service: &str) -> i64 {
        let id = self.compose_ok(&["ps", "-q", service]);
        let id = id.lines().next().unwrap_or("").trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.ExitCode}}",
                &id,
            ])
            .output()
            .expect("docker inspect");
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (running, code) = s.split_once(' ').expect("inspect output");
        assert_eq!(running, "false", "{service} still running");
        code.parse().expect("exit code")
    }

    /// Waits until `log` contains `needle` (or panics with the logs after `secs`).
    fn wait_log(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` not in the logs within {secs} s:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = self.compose(&["down", "--remove-orphans", "--volumes", "-t", "5"]);
        if !out.status.success() {
            eprintln!("compose down failed: {}", text(&out));
        }
        let _ = std::fs::remove_dir_all(&self.shm_dir);
    }
}

/// A TCP port free on the host's loopback right now (for the published metrics port).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// `GET /metrics` from the control plane's published port.
fn scrape(port: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ =
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

/// A host-side copy of a container profile with the segment path moved to the host folder
/// mounted at /dev/shm/swqos-docker.
fn host_config(profile: &str, shm_dir: &Path, into: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("docker/profiles").join(profile))
        .expect("read profile");
    let moved = text.replace(
        "path = \"/dev/shm/swqos-docker/",
        &format!("path = \"{}/", shm_dir.display()),
    );
    assert_ne!(moved, text, "profile has no /dev/shm/swqos-docker path");
    let path = into.join(profile);
    std::fs::write(&path, moved).expect("write host config");
    path
}

fn build_image() {
    let t0 = Instant::now();
    let out = Command::new(workspace().join("scripts/container-build.sh"))
        .env("SWQOS_IMAGE", IMAGE)
        .output()
        .expect("run scripts/container-build.sh");
    assert!(
        out.status.success(),
        "scripts/container-build.sh failed:\n{}",
        text(&out)
    );
    eprintln!(
        "{}container images ready in {:.0} s",
        String::from_utf8_lossy(&out.stderr),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn container_capture_and_dev_profiles() {
    let name = "container_capture_and_dev_profiles";
    if !have_root(name) || !have_docker(name) {
        return;
    }
    // The host client comes from this build, as in the other end-to-end tests.
    let _ = bin("swqos");
    build_image();
    capture_profile();
    dev_profile();
}

/// The capture profile: host submits through the mounted segment, tshark reads the pcap the
/// container wrote.
fn capture_profile() {
    let scratch = Scratch::new("container-capture");
    let capture_dir = scratch.path("capture");
    std::fs::create_dir_all(&capture_dir).unwrap();
    let shm_dir = PathBuf::from(format!(
        "/dev/shm/swqos-test-container-{}",
        std::process::id()
    ));
    let project = Project::new("capture", &shm_dir, &capture_dir);
    let config = host_config("capture.toml", &shm_dir, &scratch.dir);
    let cfg = config.to_str().unwrap();

    project.compose_ok(&["up", "-d"]);
    let segment = shm_dir.join("capture");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = swqos_shm::Segment::attach(&segment) {
        assert!(
            Instant::now() < deadline,
            "cannot attach to the container's segment within 60 s: {e}\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let samples = samples();
    let valid: Vec<_> = samples.iter().filter(|s| s.invalid.is_none()).collect();
    let input: String = samples.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &["submit", "--config", cfg, "--json", "-"],
        input.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "some samples are invalid: exit 1\n{}\n{}",
        text(&out),
        project.logs()
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), samples.len(), "one line per transaction");
    for (s, v) in samples.iter().zip(&lines) {
        let want = if s.invalid.is_none() {
            "accepted"
        } else {
            "rejected"
        };
        assert_eq!(v["status"], want, "{}: {v}", s.name);
    }

    // docker stop (SIGTERM): the dataplane drains, prints its report and exits 0.
    project.compose_ok(&["stop", "-t", "15"]);
    assert_eq!(project.exit_code("capture"), 0, "{}", project.logs());
    let logs = project.logs();
    assert!(
        logs.contains("lane udp-a: sent 42 dropped 0") && logs.contains("lane udp-b: sent 42"),
        "{logs}"
    );
    assert!(
        !segment.exists(),
        "the dataplane removes its segment on exit"
    );
    drop(project);

    let pcap = capture_dir.join("tx.pcap");
    assert!(
        pcap.exists(),
        "no {} written by the container",
        pcap.display()
    );
    let rows = tshark_fields(
        &pcap,
        &[
            "eth.src",
            "ip.dst",
            "udp.dstport",
            "ip.checksum.status",
            "udp.checksum.status",
            "data.data",
        ],
    );
    assert_eq!(rows.len(), valid.len() * 2, "42 valid x 2 lanes");
    let by_payload: HashMap<String, &str> = valid
        .iter()
        .map(|s| (hex(&s.bytes), s.name.as_str()))
        .collect();
    let lanes = two_lanes();
    let mut count: HashMap<(&str, &str), usize> = HashMap::new();
    for row in &rows {
        let lane = lanes
            .iter()
            .find(|l| row[1] == l.dst_ip && row[2] == l.dst_port.to_string())
            .unwrap_or_else(|| panic!("frame to an unconfigured destination: {row:?}"));
        assert_eq!(row[0], PORT_MAC);
        assert_eq!(row[3], "1", "IPv4 checksum good: {row:?}");
        assert_eq!(row[4], "1", "UDP checksum good: {row:?}");
        let name = by_payload
            .get(&row[5])
            .unwrap_or_else(|| panic!("payload is no valid sample transaction: {row:?}"));
        *count.entry((lane.name, *name)).or_default() += 1;
    }
    for s in &valid {
        for lane in ["udp-a", "udp-b"] {
            assert_eq!(
                count.get(&(lane, s.name.as_str())),
                Some(&1),
                "{} on {lane}",
                s.name
            );
        }
    }
}

/// The development profile: dataplane on net_null0 with stats, the control plane serving
/// metrics, a load container submitting through the shared segment; all stop cleanly.
fn dev_profile() {
    let scratch = Scratch::new("container-dev");
    let shm_dir = PathBuf::from(format!(
        "/dev/shm/swqos-test-container-dev-{}",
        std::process::id()
    ));
    let project = Project::new("dev", &shm_dir, &scratch.dir);
    project.compose_ok(&["up", "-d"]);
    project.wait_log(
        "load: submitted the sample transactions (exit 1): 42 accepted",
        90,
    );
    // A stats line (every second here) that counts what the load container sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = project.logs();
        let sent = logs
            .lines()
            .filter_map(|l| l.split("totals: ").nth(1))
            .filter_map(|t| t.split(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if sent >= 84 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stats line with the control plane's frames:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The control plane's metrics, published on the host's loopback.
    let port = &project
        .env
        .iter()
        .find(|(k, _)| k == "SWQOS_METRICS_PORT")
        .unwrap()
        .1;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = scrape(port);
        if metrics.lines().any(|l| l == "swqos_dataplane_up 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `swqos_dataplane_up 1` from the control plane on port {port}:\n{metrics}\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Also reachable from the host through the mounted folder.
    let config = host_config("dev.toml", &shm_dir, &scratch.dir);
    let valid: String = samples()
        .iter()
        .filter(|s| s.invalid.is_none())
        .map(|s| format!("{}\n", s.line))
        .collect();
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap(), "-"],
        valid.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    project.compose_ok(&["stop", "-t", "15"]);
    assert_eq!(project.exit_code("load"), 0, "{}", project.logs());
    assert_eq!(project.exit_code("control"), 0, "{}", project.logs());
    assert_eq!(project.exit_code("dataplane"), 0, "{}", project.logs());
    let logs = project.logs();
    assert!(logs.contains("lane udp-a: sent"), "no report:\n{logs}");
}
