//! A hostile client process writes raw values into its own submit ring -- lengths past the
//! slot, unknown lane bits, a tail moving backwards, a slot rewritten after it was taken --
//! while a well-behaved `swqos submit` streams on another ring. The data plane refuses the bad
//! slots with reasons, never sends a slot twice, and serves the good client fully: every one of
//! its transactions is on the wire exactly once per lane.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::mem::offset_of;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swqos_shm::layout::{CompletionControl, Layout, RingControl, Slot, Status, SLOT_HEADER_SIZE};
use swqos_tests::{
    bin, config_text, have_root, hex, samples, tshark_fields, two_lanes, DataplaneProcess, Scratch,
};
use swqos_wire::solana::TxError;

/// Ring 0 of a segment, written through the file as any process of the segment's user could.
struct RawRing {
    file: File,
    layout: Layout,
    tail: u32,
}

impl RawRing {
    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, off as u64).unwrap();
        u64::from_le_bytes(b)
    }

    fn put(&self, off: usize, bytes: &[u8]) {
        self.file.write_all_at(bytes, off as u64).unwrap();
    }

    fn store_tail(&self, tail: u32) {
        let off = self.layout.ring(0) + offset_of!(RingControl, tail);
        self.put(off, &(tail as u64).to_le_bytes());
    }

    fn head(&self) -> u64 {
        self.u64_at(self.layout.ring(0) + offset_of!(RingControl, head))
    }

    /// Writes slot `index` raw (no publication).
    fn write_slot(&self, index: u32, tag: u64, lanes: u64, tx_len: u16, tx: &[u8]) {
        let slot = self.layout.slots(0) + (index as usize % 256) * std::mem::size_of::<Slot>();
        self.put(slot + offset_of!(Slot, tag), &tag.to_le_bytes());
        self.put(slot + offset_of!(Slot, lanes), &lanes.to_le_bytes());
        self.put(slot + offset_of!(Slot, submit_tsc), &1u64.to_le_bytes());
        self.put(slot + offset_of!(Slot, lease_gen), &77u32.to_le_bytes());
        self.put(slot + offset_of!(Slot, tx_len), &tx_len.to_le_bytes());
        self.put(slot + SLOT_HEADER_SIZE, tx);
    }

    /// Writes and publishes the next slot.
    fn publish(&mut self, tag: u64, lanes: u64, tx_len: u16, tx: &[u8]) {
        self.write_slot(self.tail, tag, lanes, tx_len, tx);
        self.tail += 1;
        self.store_tail(self.tail);
    }

    /// Waits until the data plane's head is `n`.
    fn wait_head(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.head() != n {
            assert!(Instant::now() < deadline, "head {} != {n}", self.head());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The data plane's completion records on ring 0: (tag, lane, status, reason).
    fn completions(&self) -> Vec<(u64, u8, u8, u16)> {
        let ctl = self.layout.completion_ring(0);
        let tail = self.u64_at(ctl + offset_of!(CompletionControl, tail)) as usize;
        (0..tail)
            .map(|i| {
                let mut r = [0u8; 32];
                let off = self.layout.completion_records(0) + i * 32;
                self.file.read_exact_at(&mut r, off as u64).unwrap();
                let tag = u64::from_le_bytes(r[0..8].try_into().unwrap());
                let reason = u16::from_le_bytes(r[14..16].try_into().unwrap());
                (tag, r[12], r[13], reason)
            })
            .collect()
    }
}

#[test]
fn a_hostile_client_is_refused_and_the_others_are_served() {
    if !have_root("a_hostile_client_is_refused_and_the_others_are_served") {
        return;
    }
    let scratch = Scratch::new("hostile");
    let pcap = scratch.path("tx.pcap");
    let config = scratch.path("hostile.toml");
    let device = format!("net_pcap0,tx_pcap={}", pcap.display());
    std::fs::write(
        &config,
        config_text("hostile", &device, "off", 2, &two_lanes()),
    )
    .unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    let shm = dpdk_config::Config::load(&config).unwrap().shm.path;
    let layout = *swqos_shm::Segment::attach(&shm).unwrap().layout();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&shm)
        .unwrap();
    let mut raw = RawRing {
        file,
        layout,
        tail: 0,
    };
    // Lease ring 0 the way a client does (owner pid), so the good client gets ring 1.
    raw.put(layout.ring(0), &std::process::id().to_le_bytes());

    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let (a, b) = (valid[0].bytes.clone(), valid[1].bytes.clone());
    let good = &valid[2..];
    let good_lines: Vec<String> = (0..20)
        .flat_map(|_| good.iter().map(|s| s.line.clone()))
        .collect();
    let good_n = good_lines.len();
    let input = scratch.path("good.jsonl");
    std::fs::write(&input, good_lines.join("\n") + "\n").unwrap();
    let submitter = Command::new(bin("swqos"))
        .args(["submit", "--config", config.to_str().unwrap()])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Three good slots, then a length past the slot, then unknown lane bits.
    for tag in 1..=3 {
        raw.publish(tag, 0b11, a.len() as u16, &a);
    }
    raw.publish(4, 0b11, 5000, &a);
    raw.publish(5, 1 << 5, a.len() as u16, &a);
    raw.wait_head(5);
    // The tail moves backwards, then forward to where it was: nothing is taken again.
    raw.store_tail(0);
    std::thread::sleep(Duration::from_millis(50));
    raw.store_tail(5);
    std::thread::sleep(Duration::from_millis(50));
    // A slot already taken is rewritten with other bytes and "republished".
    raw.write_slot(0, 1, 0b11, b.len() as u16, &b);
    raw.store_tail(5);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(raw.head(), 5, "the head moved");
    // The ring still works: one new slot is taken once.
    raw.publish(6, 0b11, b.len() as u16, &b);
    raw.wait_head(6);

    let out = submitter.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("accepted ")).count(),
        good_n,
        "{text}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let comps = loop {
        let c = raw.completions();
        if c.len() >= 11 || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let sent = Status::Sent as u8;
    let oversize = TxError::Oversize { len: 5000 }.code();
    let want = [
        (1, 0, sent, 0),
        (1, 1, sent, 0),
        (2, 0, sent, 0),
        (2, 1, sent, 0),
        (3, 0, sent, 0),
        (3, 1, sent, 0),
        (4, 0, Status::Rejected as u8, oversize),
        (4, 1, Status::Rejected as u8, oversize),
        (5, 5, Status::UnknownLane as u8, 0),
        (6, 0, sent, 0),
        (6, 1, sent, 0),
    ];
    let mut got = comps.clone();
    got.sort();
    assert_eq!(got, want, "completions of the hostile ring");

    let done = dp.stop(libc::SIGTERM);
    assert!(done.stdout.contains("ring_corrupt 1"), "{}", done.stdout);
    // Its submit timestamps (1: from the TSC's first tick) stay out of the latency quantiles.
    let bad: u64 = done
        .stdout
        .split("bad_timestamp ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(bad >= 8, "bad_timestamp {bad}:\n{}", done.stdout);
    let p999: f64 = done
        .stdout
        .split("p99.9 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no p99.9 in the report:\n{}", done.stdout));
    assert!(p999 < 1e6, "p99.9 {p999} us:\n{}", done.stdout);

    let rows = tshark_fields(&pcap, &["udp.dstport", "data.data"]);
    let mut frames: HashMap<(String, String), usize> = HashMap::new();
    for row in &rows {
        *frames.entry((row[0].clone(), row[1].clone())).or_default() += 1;
    }
    for port in ["8001", "8002"] {
        let n = |bytes: &[u8]| frames.get(&(port.into(), hex(bytes))).copied().unwrap_or(0);
        assert_eq!(
            n(&a),
            3,
            "port {port}: the hostile ring's first transaction"
        );
        assert_eq!(n(&b), 1, "port {port}: the rewritten slot was sent again");
        let good_frames: usize = good.iter().map(|s| n(&s.bytes)).sum();
        assert_eq!(
            good_frames, good_n,
            "port {port}: the good client's transactions"
        );
    }
}
