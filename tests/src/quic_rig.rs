//! The QUIC lane test network (needs root): the [`Topology`], the QUIC relay peer
//! (`tests/relay/quic_relay.py`, aioquic) in the peer namespace playing every QUIC provider on
//! its own port, and the data plane with one QUIC lane per provider, bridging the exception path
//! (the lanes' source address is the host's, on the TAP). No control plane: QUIC lanes are the
//! data plane's own.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::capture::RelayCapture;
use crate::topology::{wait_for_line, Guard, Topology};
use crate::{swqos, workspace, DataplaneProcess, Finished, Scratch};

/// The relay's address in the peer namespace.
pub const RELAY_IP: &str = "198.18.77.2";
/// The host's address (on the TAP), the QUIC lanes' source.
pub const HOST_IP: &str = "198.18.77.1";
/// Node1's and Glaive's API key (a UUID v4).
pub const UUID_KEY: &str = "7f3a0000-0000-4000-8000-0000000e2e7e";
/// Astralane's and Lunar Lander's API key (the client certificate's CN).
pub const CN_KEY: &str = "swqos-test-api-key";
/// Every QUIC provider, in `swqos_wire::quic_relay::QuicProvider::ALL` order.
pub const PROVIDERS: [&str; 7] = [
    "node1",
    "astralane",
    "soyas",
    "speedlanding",
    "solami",
    "glaive",
    "lunarlander",
];

/// Each provider's port at the relay (its default, but Astralane's MEV port is Soyas's).
pub fn port_of(provider: &str) -> u16 {
    match provider {
        "node1" => 16666,
        "astralane" => 7000,
        "soyas" => 9000,
        "speedlanding" => 17778,
        "solami" => 11000,
        "glaive" => 4000,
        "lunarlander" => 16888,
        other => panic!("not a QUIC provider: {other}"),
    }
}

/// How a rig's lanes and relay differ from the defaults.
#[derive(Default)]
pub struct QuicOptions<'a> {
    /// More arguments for quic_relay.py.
    pub relay_args: Vec<&'a str>,
    /// Lanes without the test CA (their relay's certificate is then untrusted).
    pub no_ca: Vec<&'a str>,
    /// (provider, key) the lane uses instead of the relay's.
    pub wrong_key: Vec<(&'a str, &'a str)>,
}

/// The QUIC test network.
pub struct QuicRig {
    /// Scratch folder (config, logs, captures).
    pub scratch: Scratch,
    relay: Option<Guard>,
    dp: Option<DataplaneProcess>,
    /// The config file.
    pub config: PathBuf,
    /// The relay's JSON-lines log.
    pub log: PathBuf,
    /// The relay's TLS key log (to decrypt the capture).
    pub keylog: PathBuf,
    /// The PKI folder (CA, server certificate, the wallet keypair).
    pub pki: PathBuf,
    relay_args: Vec<String>,
    capture: Option<RelayCapture>,
    /// Last: the network goes only after every process using it.
    pub topo: Topology,
}

impl QuicRig {
    /// Starts the relay, the capture and the data plane with a lane per provider in `lanes`
    /// (named after it), and waits until every lane that should connect is up.
    pub fn start(name: &str, lanes: &[&str], opts: QuicOptions<'_>) -> QuicRig {
        let scratch = Scratch::new(name);
        let topo = Topology::new();
        let pki = scratch.path("pki");
        make_pki(&pki);
        let config = scratch.path("quic.toml");
        fs::write(&config, config_text(name, &topo, lanes, &pki, &opts)).unwrap();
        let mut rig = QuicRig {
            log: scratch.path("relay.jsonl"),
            keylog: scratch.path("relay.keys"),
            capture: Some(RelayCapture::start_filtered(
                &topo,
                scratch.path("quic.pcap"),
                "udp",
            )),
            relay_args: opts.relay_args.iter().map(|s| s.to_string()).collect(),
            scratch,
            topo,
            relay: None,
            dp: None,
            config,
            pki,
        };
        rig.start_relay();
        rig.dp = Some(DataplaneProcess::start(&rig.scratch, &rig.config));
        rig.topo.bring_up_host();
        rig
    }

    /// Starts quic_relay.py in the peer namespace, every provider on its port.
    pub fn start_relay(&mut self) {
        let script = workspace().join("tests/relay/quic_relay.py");
        let pubkey = fs::read_to_string(self.pki.join("keypair-w1.pubkey")).unwrap();
        let mut args: Vec<String> = vec!["python3".into(), script.to_string_lossy().into()];
        for p in PROVIDERS {
            args.extend(["--listen".into(), format!("{RELAY_IP}:{}={p}", port_of(p))]);
        }
        for (flag, file) in [("--cert", "server.pem"), ("--key", "server.key")] {
            args.extend([flag.into(), self.pki.join(file).to_string_lossy().into()]);
        }
        for p in ["node1", "glaive"] {
            args.extend(["--key".into(), format!("{p}={UUID_KEY}")]);
        }
        for p in ["astralane", "lunarlander"] {
            args.extend(["--key".into(), format!("{p}={CN_KEY}")]);
        }
        for p in ["soyas", "speedlanding", "solami"] {
            args.extend(["--keypair-pubkey".into(), format!("{p}={}", pubkey.trim())]);
        }
        args.extend(["--log".into(), self.log.to_string_lossy().into()]);
        args.extend(["--keylog".into(), self.keylog.to_string_lossy().into()]);
        args.extend(self.relay_args.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self.topo.spawn_in_ns(&argv);
        wait_for_line(&mut child, "listening on");
        self.relay = Some(Guard(child));
    }

    /// Stops the relay (SIGTERM: it closes its connections).
    pub fn stop_relay(&mut self) {
        if let Some(mut g) = self.relay.take() {
            // SAFETY: kill with our child's pid and a standard signal.
            unsafe { libc::kill(g.0.id() as i32, libc::SIGTERM) };
            let _ = g.0.wait();
        }
    }

    /// The config file, as a `--config` argument.
    pub fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// The data plane's log so far.
    pub fn dataplane_log(&self) -> String {
        fs::read_to_string(self.scratch.path("dataplane.err")).unwrap_or_default()
    }

    /// Waits (at most 30 s) until the data plane's log says `count` times that a lane is ready:
    /// "QUIC connection ... up" (and "authenticated" for Node1).
    pub fn wait_ready(&self, lanes: &[&str], count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.dataplane_log();
            let ready = |lane: &str| {
                let up = format!("lane {lane}: QUIC connection to ");
                if lane == "node1" {
                    log.matches(&format!("lane {lane}: authenticated")).count()
                } else {
                    log.lines()
                        .filter(|l| l.contains(&up) && l.contains(") up (handshake"))
                        .count()
                }
            };
            if lanes.iter().all(|l| ready(l) >= count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "QUIC lanes {lanes:?} not ready {count} time(s) within 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits JSON lines to `lanes` (all lanes when empty) with `--json`; returns the parsed
    /// lines and the exit code.
    pub fn submit(
        &self,
        lines: &[&str],
        lanes: &[&str],
        timeout: &str,
    ) -> (Option<i32>, Vec<Value>) {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut args = vec![
            "submit",
            "--config",
            self.cfg(),
            "--json",
            "--timeout",
            timeout,
        ];
        for l in lanes {
            args.extend(["--lane", l]);
        }
        args.push("-");
        let out = swqos(&args, input.as_bytes());
        let parsed = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out.status.code(), parsed)
    }

    /// The relay's log lines.
    pub fn relay_lines(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("relay log line"))
            .collect()
    }

    /// Transactions the relay accepted: (provider, signature) -> count.
    pub fn delivered(&self) -> HashMap<(String, String), usize> {
        let mut seen = HashMap::new();
        for v in self.relay_lines() {
            if v["ok"] == true {
                if let (Some(p), Some(sig)) = (v["provider"].as_str(), v["signature"].as_str()) {
                    *seen.entry((p.to_string(), sig.to_string())).or_insert(0) += 1;
                }
            }
        }
        seen
    }

    /// Stops the data plane (SIGTERM), the relay and the capture; returns the data plane's
    /// end and the capture file (in the scratch folder, which lives as long as the rig).
    pub fn stop(&mut self) -> (Finished, PathBuf) {
        let finished = self.dp.take().expect("running").stop(libc::SIGTERM);
        self.stop_relay();
        let pcap = self.capture.take().expect("capturing").stop();
        (finished, pcap)
    }
}

/// The test PKI (tests/relay/quic_pki.py): CA, server certificate for the relay's address and
/// the providers' names, a wallet keypair.
fn make_pki(dir: &std::path::Path) {
    let out = std::process::Command::new("python3")
        .arg(workspace().join("tests/relay/quic_pki.py"))
        .arg(dir)
        .args(["--ip", RELAY_IP, "--keypair", "w1"])
        .output()
        .expect("spawn python3 tests/relay/quic_pki.py");
    assert!(
        out.status.success(),
        "quic_pki.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data plane's config: the topology's ports and a QUIC lane per provider in `lanes`.
fn config_text(
    name: &str,
    topo: &Topology,
    lanes: &[&str],
    pki: &std::path::Path,
    opts: &QuicOptions<'_>,
) -> String {
    let pid = std::process::id();
    let mut text = format!(
        "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\nfile_prefix = \"swqos-{name}-{pid}\"\n\n\
         [shm]\npath = \"/dev/shm/swqos-test-{name}-{pid}/segment\"\nrings = 2\n\n{}",
        topo.dataplane_ports()
    );
    let mac = topo.peer_mac();
    let ca = pki.join("ca.pem");
    let wallet = pki.join("keypair-w1.json");
    for p in lanes {
        let wrong = opts.wrong_key.iter().find(|(w, _)| w == p).map(|(_, k)| *k);
        let identity = match *p {
            "node1" | "glaive" => format!("token = \"{}\"\n", wrong.unwrap_or(UUID_KEY)),
            "astralane" | "lunarlander" => format!("token = \"{}\"\n", wrong.unwrap_or(CN_KEY)),
            _ => format!("keypair_file = \"{}\"\n", wallet.display()),
        };
        let ca_files = if opts.no_ca.contains(p) {
            String::new()
        } else {
            format!("ca_files = [\"{}\"]\n", ca.display())
        };
        text.push_str(&format!(
            "\n[[lane]]\nname = \"{p}\"\nkind = \"quic\"\nprovider = \"{p}\"\nport = \"nic\"\n\
             src_ip = \"{HOST_IP}\"\ndst_ip = \"{RELAY_IP}\"\ndst_port = {}\ndst_mac = \"{mac}\"\n\
             {identity}{ca_files}",
            port_of(p)
        ));
    }
    text
}
