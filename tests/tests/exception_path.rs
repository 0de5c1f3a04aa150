//! The kernel exception path: the dataplane owns the "NIC" (`net_af_packet` on one end of a veth
//! pair) and bridges it to a TAP interface that carries the host's IP. The peer end of the veth is
//! a real host in its own network namespace. Through the bridge the kernel resolves ARP, pings,
//! and fetches a file over TCP from an HTTP server in the peer namespace; the UDP lanes' frames,
//! built in mbufs, reach a real socket there, checksums checked by the peer's kernel.

use std::process::Command;
use std::time::{Duration, Instant};

use swqos_tests::capture::{assert_no_conflicting_copies, RelayCapture};
use swqos_tests::rig::report_counter;
use swqos_tests::topology::{wait_for_line, Guard, Topology};
use swqos_tests::{have_root, samples, swqos, DataplaneProcess, Scratch};

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
path = "/dev/shm/swqos-test-exc-{pid}/segment"
rings = 2

{ports}
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
            ports = topo.dataplane_ports(),
            peer_mac = topo.peer_mac(),
        ),
    )
    .unwrap();
    // The peer's side of the wire, for the one-writer-per-byte check at the end.
    let capture = RelayCapture::start(&topo, scratch.path("peer-side.pcap"));
    let dp = DataplaneProcess::start(&scratch, &config);
    // The host's IP lives on the TAP interface the dataplane created.
    topo.bring_up_host();

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
    // No byte range crossed the bridge twice with different bytes (retransmissions included),
    // and the TCP download was seen.
    let copies = assert_no_conflicting_copies(&capture.stop());
    assert!(copies.segments > 700, "{copies:?}");
    let to_kernel = report_counter(&done.stdout, "to_kernel");
    let from_kernel = report_counter(&done.stdout, "from_kernel");
    assert!(
        to_kernel > 700 && from_kernel > 50,
        "bridged {to_kernel} in, {from_kernel} out:\n{}",
        done.stdout
    );
}
