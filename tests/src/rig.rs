//! The relay test network (needs root): the [`Topology`], the mock relay in the peer namespace,
//! the dataplane bridging the exception path, and `swqos control` with relay lanes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_wire::relay::Provider;

use crate::capture::{assert_no_conflicting_copies, Copies, RelayCapture};
use crate::topology::{wait_for_line, Guard, Topology};
use crate::{bin, free_port, swqos, workspace, DataplaneProcess, Finished, Scratch};

/// The API token every relay lane and the mock relay use: a UUID v4, the one form a Glaive key
/// takes (the configuration refuses any other for a glaive lane).
pub const TOKEN: &str = "7f3a0000-0000-4000-8000-0000000e2e7e";

/// The relay test network: topology, mock relay, dataplane, control plane.
pub struct Rig {
    /// Scratch folder (config, logs, captures); removed when the test passes.
    pub scratch: Scratch,
    mock: Option<Guard>,
    dp: Option<DataplaneProcess>,
    control: Option<Child>,
    /// The config file.
    pub config: PathBuf,
    /// The mock relay's JSON-lines log.
    pub log: PathBuf,
    /// The relay's side of the wire, captured from the start ([`Rig::stop`] checks it).
    capture: Option<RelayCapture>,
    /// Signatures [`Rig::warm_up`] submitted more than once (each a submission of its own).
    resubmitted: Mutex<Vec<String>>,
    /// Last: the network (and its lock) goes only after every process using it.
    pub topo: Topology,
}

impl Rig {
    /// Starts everything; `providers` get one lane each (named after the provider) with
    /// `connections` connections; the mock relay gets `mock_args` too.
    pub fn start(name: &str, providers: &[Provider], connections: u32, mock_args: &[&str]) -> Rig {
        let lanes: Vec<(String, Provider)> = providers
            .iter()
            .map(|p| (p.name().to_string(), *p))
            .collect();
        Rig::start_with(name, &lanes, connections, mock_args, "", "")
    }

    /// As [`Rig::start`] with named lanes, `control` lines added to `[control]` and `extra`
    /// appended to the config (more lanes).
    pub fn start_with(
        name: &str,
        lanes: &[(String, Provider)],
        connections: u32,
        mock_args: &[&str],
        control: &str,
        extra: &str,
    ) -> Rig {
        let scratch = Scratch::new(name);
        let topo = Topology::new();
        let log = scratch.path("relay.jsonl");
        let config = scratch.path("relay.toml");
        let pid = std::process::id();
        let mut text = format!(
            "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\nfile_prefix = \"swqos-{name}-{pid}\"\n\n\
             [shm]\npath = \"/dev/shm/swqos-test-{name}-{pid}/segment\"\nrings = 2\n\n{}\n\
             [control]\nmetrics_listen = \"127.0.0.1:{}\"\n{control}",
            topo.dataplane_ports(),
            free_port()
        );
        for (lane, p) in lanes {
            let token = if p.needs_token() {
                format!("token = \"{TOKEN}\"\n")
            } else {
                String::new()
            };
            text.push_str(&format!(
                "\n[[lane]]\nname = \"{lane}\"\nkind = \"http\"\nprovider = \"{p}\"\nport = \"nic\"\n\
                 dst_ip = \"198.18.77.2\"\ndst_port = 8080\nconnections = {connections}\n{token}"
            ));
        }
        text.push_str(extra);
        std::fs::write(&config, &text).unwrap();
        let capture = RelayCapture::start(&topo, scratch.path("rig-capture.pcap"));
        let mut rig = Rig {
            capture: Some(capture),
            resubmitted: Mutex::new(Vec::new()),
            scratch,
            topo,
            mock: None,
            dp: None,
            control: None,
            config,
            log,
        };
        rig.start_mock(mock_args);
        rig.dp = Some(DataplaneProcess::start(&rig.scratch, &rig.config));
        rig.topo.bring_up_host();
        rig.start_control();
        rig
    }

    /// Starts the mock relay in the peer namespace.
    pub fn start_mock(&mut self, extra: &[&str]) {
        let mock_path = workspace().join("tests/relay/mock_relay.py");
        let mut args = vec![
            "python3",
            "-u",
            mock_path.to_str().unwrap(),
            "--listen",
            "198.18.77.2:8080",
            "--token-all",
            TOKEN,
            "--log",
            self.log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut mock = Guard(self.topo.spawn_in_ns(&args));
        wait_for_line(&mut mock.0, "listening on");
        self.mock = Some(mock);
    }

    /// Starts `swqos control` (its log: `control.err` in the scratch folder).
    pub fn start_control(&mut self) {
        let control_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.path("control.err"))
            .unwrap();
        self.control = Some(
            Command::new(bin("swqos"))
                .args(["control", "--config", self.config.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(control_log)
                .spawn()
                .unwrap(),
        );
    }

    /// The config path as a string.
    pub fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// Submits `line` until every lane accepts it (the control plane attached, connections up).
    pub fn warm_up(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 0.. {
            if attempt == 1 {
                let v: Value = serde_json::from_str(line).unwrap_or_default();
                if let Some(sig) = v["signature"].as_str() {
                    self.resubmitted.lock().unwrap().push(sig.to_string());
                }
            }
            let out = swqos(
                &["submit", "--config", self.cfg(), "--timeout", "5", "-"],
                format!("{line}\n").as_bytes(),
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay lanes never all answered: {}\ncontrol plane:\n{}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(self.scratch.path("control.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Accepted requests the relay logged, per (provider, signature).
    pub fn delivered(&self) -> HashMap<(String, String), usize> {
        let mut seen = HashMap::new();
        let log_file = std::fs::File::open(&self.log).unwrap();
        for line in BufReader::new(log_file).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if v["ok"] != true {
                continue;
            }
            let key = (
                v["provider"].as_str().unwrap().to_string(),
                v["signature"].as_str().unwrap_or("").to_string(),
            );
            *seen.entry(key).or_default() += 1;
        }
        seen
    }

    /// Stops the control plane with `signal`.
    pub fn stop_control(&mut self, signal: i32) -> ExitStatus {
        let mut c = self.control.take().expect("control running");
        // SAFETY: kill with our child's pid and a standard signal.
        unsafe { libc::kill(c.id() as i32, signal) };
        c.wait().unwrap()
    }

    /// Stops the control plane (SIGTERM) and the dataplane; both must exit 0. Then checks what
    /// every relay test must hold: the relay's side of the wire has no byte range sent twice
    /// with different bytes ([`assert_no_conflicting_copies`]; the kernel's copy of each of
    /// the data plane's sends among the ranges compared), and the relay accepted no
    /// transaction twice on a lane unless it was submitted twice.
    pub fn stop(mut self) -> Finished {
        if self.control.is_some() {
            let status = self.stop_control(libc::SIGTERM);
            assert!(status.success(), "swqos control: {status}");
        }
        let done = self.dp.take().unwrap().stop(libc::SIGTERM);
        let pcap = self.capture.take().expect("capturing").stop();
        let copies = assert_no_conflicting_copies(&pcap);
        let fast = report_counter(&done.stdout, "fast_sends");
        assert!(
            fast == 0 || copies.overlaps > 0,
            "{fast} fast sends, yet no second copy of any byte range on the relay's side: \
             {copies:?}"
        );
        self.assert_no_duplicates();
        done
    }

    /// What [`Rig::stop`] will check on the wire so far (the capture keeps running).
    pub fn copies_so_far(&self) -> Copies {
        let file = &self.capture.as_ref().expect("capturing").file;
        assert_no_conflicting_copies(file)
    }

    /// Marks `signature` as sent more than once on purpose by the test itself (the latency
    /// benchmark sends each transaction on three paths to the same relay): the duplicate check
    /// at [`Rig::stop`] leaves it out, and the test checks its own counts.
    pub fn sent_on_purpose_again(&self, signature: &str) {
        self.resubmitted.lock().unwrap().push(signature.to_string());
    }

    /// The relay accepted each transaction at most once per lane, except those
    /// [`Rig::warm_up`] submitted again.
    pub fn assert_no_duplicates(&self) {
        let again = self.resubmitted.lock().unwrap().clone();
        let twice: Vec<_> = self
            .delivered()
            .into_iter()
            .filter(|((_, sig), n)| *n > 1 && !again.contains(sig))
            .collect();
        assert!(
            twice.is_empty(),
            "the relay accepted these (lane, signature) more than once: {twice:?}"
        );
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

/// A counter from the dataplane's exit report (`lcore N: ... name value ...`), summed over
/// lcores.
pub fn report_counter(report: &str, name: &str) -> u64 {
    report
        .lines()
        .filter(|l| l.starts_with("lcore "))
        .flat_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.windows(2)
                .filter(|p| p[0] == name)
                .map(|p| p[1].parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .sum()
}
