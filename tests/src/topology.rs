//! The test network: a peer network namespace joined to the root namespace by a veth pair,
//! whose root end is the dataplane's "NIC" (`net_af_packet`), with the host's IP on a TAP
//! interface the dataplane bridges. Requires root.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command and insists it succeeds.
pub fn sh(args: &[&str]) -> String {
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
pub struct Topology {
    /// The peer namespace.
    pub ns: String,
    /// The dataplane's veth end (its "NIC").
    pub dp_if: String,
    /// The peer's veth end.
    pub peer_if: String,
    /// The TAP interface name the dataplane is to create.
    pub tap: String,
    /// One topology at a time per process: they share the 198.18.77.0/24 addresses.
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl Topology {
    /// Creates the namespace and the veth pair.
    pub fn new() -> Topology {
        // Unique per topology in this process (tests may run in parallel threads), and short:
        // interface names have at most 15 bytes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let exclusive = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let t = Topology {
            ns: format!("swqos-peer-{tag}"),
            dp_if: format!("swqd{tag}"),
            peer_if: format!("swqp{tag}"),
            tap: format!("swqk{tag}"),
            _exclusive: exclusive,
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

    /// Runs a command in the peer namespace; it must succeed.
    pub fn in_ns(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Starts a command in the peer namespace.
    pub fn spawn_in_ns(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The peer end's MAC address.
    pub fn peer_mac(&self) -> String {
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
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `want` appears on the child's stdout.
pub fn wait_for_line(child: &mut Child, want: &str) {
    let out = child.stdout.take().expect("piped stdout");
    // Keep the pipe open afterwards: the helper may still be writing the rest of its line.
    child.stdout = Some(wait_for(out, want));
}

/// Waits until `want` appears on the child's stderr (tshark and nginx report there).
pub fn wait_for_stderr(child: &mut Child, want: &str) {
    let err = child.stderr.take().expect("piped stderr");
    child.stderr = Some(wait_for(err, want));
}

/// Reads `r` until `want` has appeared (10 s at most); gives the reader back.
fn wait_for<R: Read>(mut r: R, want: &str) -> R {
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "no `{want}` from helper: {seen}");
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "helper exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    r
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Topology {
    /// The dataplane port definitions for this topology: `nic` (af_packet on the veth end) and
    /// `kernel` (the TAP), and a tx lcore 1 that bridges them.
    pub fn dataplane_ports(&self) -> String {
        format!(
            r#"[[port]]
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
"#,
            dp_if = self.dp_if,
            tap = self.tap
        )
    }

    /// Gives the host address 198.18.77.1/24 to the TAP once the dataplane has created it.
    pub fn bring_up_host(&self) {
        sh(&["ip", "addr", "add", "198.18.77.1/24", "dev", &self.tap]);
        sh(&["ip", "link", "set", &self.tap, "up"]);
    }
}
