//! Shared pieces of the end-to-end tests: locating the built binaries, running the dataplane as a
//! real process, the sample transactions, and tshark as the independent dissector.
//!
//! The tests need root (DPDK's EAL) and the binaries built first
//! (`cargo build --workspace --bins`); `scripts/test.sh` does both.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

pub mod capture;
pub mod quic_rig;
pub mod rig;
pub mod tls_relays;
pub mod topology;

/// Whether a test may run without what it needs: outside CI it skips, loudly; with `CI` set
/// (CI runs as root with docker) a missing requirement is a failure, never a silent pass.
/// `missing` says what is missing (`None`: nothing, run the test). Returns whether to run.
pub fn require(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI is set: CI must run every test (as root, with docker)"
    );
    // Straight to fd 2: the test harness captures `eprintln!`, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n**********************************************************************\n\
         SKIPPED: {test}: {why}\n\
         (this test did NOT run; with CI set it fails instead)\n\
         **********************************************************************\n"
    );
    false
}

/// Whether the tests can use DPDK here (root, for the EAL); see [`require`] for what happens
/// when not.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        test,
        (!root).then(|| "needs root for DPDK's EAL (scripts/test.sh runs as root)".to_string()),
    )
}

/// The path of a workspace binary built in the same profile as this test (or in
/// `$SWQOS_BIN_DIR`, for test crates with a target directory of their own).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = match std::env::var_os("SWQOS_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary inside target/<profile>/deps")
            .to_path_buf(),
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A scratch folder removed when the test passes (kept after a failure for inspection).
pub struct Scratch {
    /// The folder.
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh folder for `name`.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("swqos-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    /// A path inside the folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One UDP lane of a test config.
#[derive(Debug, Clone)]
pub struct TestLane {
    /// Lane name.
    pub name: &'static str,
    /// Source IPv4 address.
    pub src_ip: &'static str,
    /// Source port.
    pub src_port: u16,
    /// Destination IPv4 address.
    pub dst_ip: &'static str,
    /// Destination port.
    pub dst_port: u16,
    /// Destination MAC.
    pub dst_mac: &'static str,
}

/// The two lanes the tests use.
pub fn two_lanes() -> Vec<TestLane> {
    vec![
        TestLane {
            name: "udp-a",
            src_ip: "198.18.0.1",
            src_port: 9001,
            dst_ip: "198.18.0.2",
            dst_port: 8001,
            dst_mac: "02:00:00:00:00:02",
        },
        TestLane {
            name: "udp-b",
            src_ip: "198.18.0.1",
            src_port: 9002,
            dst_ip: "198.19.0.2",
            dst_port: 8002,
            dst_mac: "02:00:00:00:00:03",
        },
    ]
}

/// The MAC the test configs give their port (the source of every frame).
pub const PORT_MAC: &str = "02:00:00:00:00:01";

/// A complete config for `device` with the given lanes; `tag` keeps EAL files and the segment
/// apart from other runs.
pub fn config_text(
    tag: &str,
    device: &str,
    hugepages: &str,
    rings: u32,
    lanes: &[TestLane],
) -> String {
    let pid = std::process::id();
    let mut text = format!(
        r#"[eal]
lcores = "0-1"
main_lcore = 0
memory_mb = 256
hugepages = "{hugepages}"
file_prefix = "swqos-{tag}-{pid}"

[shm]
path = "/dev/shm/swqos-test-{tag}-{pid}/segment"
rings = {rings}
ring_slots = 256

[[port]]
name = "p0"
device = "{device}"
rx_queues = 0
tx_queues = 1
mac = "{PORT_MAC}"

[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "p0", queue = 0 }}]
"#
    );
    for l in lanes {
        text.push_str(&format!(
            "\n[[lane]]\nname = \"{}\"\nkind = \"udp\"\nport = \"p0\"\nsrc_ip = \"{}\"\nsrc_port = {}\ndst_ip = \"{}\"\ndst_port = {}\ndst_mac = \"{}\"\n",
            l.name, l.src_ip, l.src_port, l.dst_ip, l.dst_port, l.dst_mac
        ));
    }
    text
}

/// One entry of the shared test data.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its name.
    pub name: String,
    /// The raw bytes (empty for the "empty" sample).
    pub bytes: Vec<u8>,
    /// base58 of the first signature, for valid ones.
    pub signature: Option<String>,
    /// Why it is invalid, for invalid ones.
    pub invalid: Option<String>,
    /// The JSON line as in the file.
    pub line: String,
}

/// The sample transactions (valid and invalid), in file order.
pub fn samples() -> Vec<Sample> {
    let path = workspace().join("wire/tests/data/solana-txs.jsonl");
    fs::read_to_string(&path)
        .expect("read test data")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            Sample {
                name: s("name").unwrap_or_default(),
                bytes: base64::engine::general_purpose::STANDARD
                    .decode(s("base64").unwrap_or_default())
                    .expect("base64"),
                signature: s("signature"),
                invalid: s("invalid"),
                line: line.to_string(),
            }
        })
        .collect()
}

/// A running `swqos-dataplane`.
pub struct DataplaneProcess {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// The config file it runs.
    pub config: PathBuf,
}

/// What the dataplane printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Its report.
    pub stdout: String,
    /// Its log.
    pub stderr: String,
}

impl DataplaneProcess {
    /// Starts the dataplane on `config` and waits until its segment accepts clients.
    pub fn start(scratch: &Scratch, config: &Path) -> DataplaneProcess {
        let stdout = scratch.path("dataplane.out");
        let stderr = scratch.path("dataplane.err");
        let child = Command::new(bin("swqos-dataplane"))
            .arg("--config")
            .arg(config)
            .args(["--stats-interval", "0"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn swqos-dataplane");
        let mut dp = DataplaneProcess {
            child: Some(child),
            stdout,
            stderr,
            config: config.to_path_buf(),
        };
        let shm = dpdk_config::Config::load(config).expect("config").shm.path;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if swqos_shm::Segment::attach(&shm).is_ok() {
                return dp;
            }
            if let Some(status) = dp.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "swqos-dataplane exited early ({status}):\n{}",
                    fs::read_to_string(&dp.stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "swqos-dataplane did not open {} within 60 s:\n{}",
                shm.display(),
                fs::read_to_string(&dp.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `within`) for the process to exit on its own, whatever its status.
    pub fn wait(mut self, within: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "swqos-dataplane did not exit within {within:?}:\n{}",
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal`, waits (at most 30 s) for the process to exit, and requires a clean exit
    /// (status 0: the dataplane drained, stopped its ports and removed its segment).
    pub fn stop(mut self, signal: i32) -> Finished {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill with a valid pid of our own child and a standard signal.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("swqos-dataplane ignored signal {signal} for 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let done = Finished {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        };
        assert!(
            done.status.success(),
            "swqos-dataplane exit {:?} after signal {signal}:\n{}",
            done.status,
            done.stderr
        );
        done
    }
}

impl Drop for DataplaneProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            // A killed dataplane cannot remove its segment; do it for it.
            if let Ok(config) = dpdk_config::Config::load(&self.config) {
                remove_segment(&config.shm.path);
            }
        }
    }
}

/// Removes a test's segment and its private directory (each test has its own, named after the
/// test and the process: `/dev/shm/swqos-test-NAME-PID/segment`).
pub fn remove_segment(path: &Path) {
    let _ = fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
}

/// Runs `swqos` with `args`, feeding `stdin`.
pub fn swqos(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin("swqos"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn swqos");
    // Feed stdin from a thread so a large output cannot deadlock us; a process that exits
    // before reading everything (a usage error) is not a test failure by itself.
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("swqos output");
    let _ = feeder.join();
    out
}

/// Reads `fields` of every frame of `pcap` with tshark, IPv4/UDP/TCP checksum validation on. One row per
/// frame, one string per field.
pub fn tshark_fields(pcap: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-E", "separator=\t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Lowercase hex of `bytes` (tshark prints payloads so, without separators).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads whatever a child's pipe holds until EOF.
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
