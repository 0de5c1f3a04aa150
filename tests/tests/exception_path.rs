//! The kernel exception path: the dataplane owns the "NIC" (`net_af_packet` on one end of a veth
//! pair) and bridges it to a TAP interface that carries the host's IP. The peer end of the veth is
//! a real host in its own network namespace. Through the bridge the kernel resolves ARP, pings,
//! and fetches a file over TCP from an HTTP server in the peer namespace; the UDP lanes' frames,
//! built in mbufs, reach a real socket there, checksums checked by the peer's kernel.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swqos_tests::{have_root, samples, swqos, DataplaneProcess, Scratch};

/// Runs a command and insists it succeeds.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The peer namespace and the veth pair; removed on drop, pass or fail.
struct Topology {
    ns: String,
    dp_if: String,
    peer_if: String,
    tap: String,
}

impl Topology {
    fn new() -> Topology {
        let tag = std::process::id() % 100_000;
        let t = Topology {
            ns: format!("swqos-peer-{tag}"),
            dp_if: format!("swqd{tag}"),
            peer_if: format!("swqp{tag}"),
            tap: format!("swqk{tag}"),
        };
        let _ = Command::new("ip").args(["netns", "del", &t.ns]).output();
        sh(&["ip", "netns", "add", &t.ns]);
        sh(&[
            "ip", "link", "add", &t.dp_if, "type", "veth", "peer", "name", &t.peer_if,
        ]);
        sh(&["ip", "link", "set", &t.peer_if, "netns", &t.ns]);
        t.in_ns(&["ip", "link", "set", "lo", "up"]);
        t.in_ns(&["ip", "addr", "add", "198.18.77.2/24", "dev", &t.peer_if]);
        t.in_ns(&["ip", "link", "set", &t.peer_if, "up"]);
        // A real NIC segments and checksums on the wire; a veth hands over whole GSO
        // super-packets and partial checksums instead, which an af_packet "NIC" would have to
        // undo. Turn the offloads off so both ends behave like a wire.
        t.in_ns(&[
            "ethtool", "-K", &t.peer_if, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
        ]);
        sh(&[
            "ethtool", "-K", &t.dp_if, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
        ]);
        // The dataplane's end carries no IP of its own and answers no ARP: only DPDK uses it.
        // (Linux answers ARP for any local address on any interface; without `arp off` the
        // peer may learn this end's MAC for the TAP's address and bypass the data plane.)
        sh(&["ip", "link", "set", &t.dp_if, "arp", "off"]);
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", t.dp_if)])
            .output();
        sh(&["ip", "link", "set", &t.dp_if, "up"]);
        t
    }

    fn in_ns(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn spawn_in_ns(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn peer_mac(&self) -> String {
        self.in_ns(&["cat", &format!("/sys/class/net/{}/address", self.peer_if)])
            .trim()
            .to_string()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.dp_if])
            .output();
    }
}

/// Kills a child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `want` appears on the child's stdout.
fn wait_for_line(child: &mut Child, want: &str) {
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "no `{want}` from helper: {seen}");
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "helper exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Keep the pipe open: the helper may still be writing the rest of its line.
    child.stdout = Some(out);
}

const UDP_SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.77.2", 9999))
print("ready", flush=True)
with open(sys.argv[1], "w") as f:
    while True:
        data, addr = s.recvfrom(2048)
        f.write(f"{addr[0]}:{addr[1]} {data.hex()}\n")
        f.flush()
"#;

#[test]
fn the_kernel_reaches_the_wire_through_the_dataplane() {
    if !have_root("the_kernel_reaches_the_wire_through_the_dataplane") {
        return;
    }
    let scratch = Scratch::new("exception");
    let topo = Topology::new();
    let pid = std::process::id();
    let config = scratch.path("exception.toml");
    std::fs::write(
        &config,
        format!(
            r#"[eal]
lcores = "0-1"
hugepages = "off"
memory_mb = 256
file_prefix = "swqos-exc-{pid}"

[shm]
path = "/dev/shm/swqos-exc-{pid}"
rings = 2

[[port]]
name = "nic"
device = "net_af_packet0,iface={dp_if}"
rx_queues = 1
tx_queues = 1
promiscuous = true

[[port]]
name = "kernel"
device = "net_tap0,iface={tap}"
rx_queues = 1
tx_queues = 1

[[lcore]]
id = 1
role = "tx"
queues = [{{ port = "nic", queue = 0 }}, {{ port = "kernel", queue = 0 }}]
bridge = {{ nic = "nic", kernel = "kernel" }}

[[lane]]
name = "peer"
kind = "udp"
port = "nic"
src_ip = "198.18.77.1"
src_port = 9001
dst_ip = "198.18.77.2"
dst_port = 9999
dst_mac = "{peer_mac}"
"#,
            dp_if = topo.dp_if,
            tap = topo.tap,
            peer_mac = topo.peer_mac(),
        ),
    )
    .unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    // The host's IP lives on the TAP interface the dataplane created.
    sh(&["ip", "addr", "add", "198.18.77.1/24", "dev", &topo.tap]);
    sh(&["ip", "link", "set", &topo.tap, "up"]);

    // ARP and ICMP through the bridge.
    let ping = Command::new("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "3", "198.18.77.2"])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // TCP: a 1 MiB file from a real HTTP server in the peer namespace (hundreds of segments,
    // ACKs both ways, all through DPDK).
    let www = scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let body: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("blob"), &body).unwrap();
    let mut http = Guard(topo.spawn_in_ns(&[
        "python3",
        "-u",
        "-m",
        "http.server",
        "--bind",
        "198.18.77.2",
        "8080",
        "--directory",
        www.to_str().unwrap(),
    ]));
    wait_for_line(&mut http.0, "Serving HTTP");
    let fetched = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen('http://198.18.77.2:8080/blob', timeout=20).read())",
        ])
        .output()
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert!(
        fetched.stdout == body,
        "fetched {} bytes, not the file",
        fetched.stdout.len()
    );

    // The UDP lane: frames built in mbufs reach a socket in the peer namespace.
    let received = scratch.path("udp.txt");
    let mut sink =
        Guard(topo.spawn_in_ns(&["python3", "-u", "-c", UDP_SINK, received.to_str().unwrap()]));
    wait_for_line(&mut sink.0, "ready");
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let input: String = valid.iter().map(|s| format!("{}\n", s.line)).collect();
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap(), "-"],
        input.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= valid.len() || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        lines.len(),
        valid.len(),
        "one datagram per transaction; peer's counters:\n{}\nsink: {:?} {}",
        topo.in_ns(&["grep", "-A1", "^Udp:", "/proc/net/snmp"]),
        sink.0.try_wait(),
        sink.0
            .stderr
            .take()
            .map(swqos_tests::read_all)
            .unwrap_or_default()
    );
    for s in &valid {
        let want = format!("198.18.77.1:9001 {}", swqos_tests::hex(&s.bytes));
        assert!(lines.contains(&want), "{} not received", s.name);
    }

    drop(http);
    drop(sink);
    let done = dp.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    let to_kernel = counter(&done.stdout, "to_kernel");
    let from_kernel = counter(&done.stdout, "from_kernel");
    assert!(
        to_kernel > 700 && from_kernel > 50,
        "bridged {to_kernel} in, {from_kernel} out:\n{}",
        done.stdout
    );
}

/// A counter from the dataplane's exit report line `lcore 1: ... name N ...`.
fn counter(report: &str, name: &str) -> u64 {
    report
        .lines()
        .filter(|l| l.starts_with("lcore "))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(2)
                .filter(|w| w[0] == name)
                .map(|w| w[1].parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .sum()
}
