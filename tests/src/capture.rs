//! The relay's side of the wire as an independent observer sees it: a capture on the
//! peer namespace's veth end (every frame the data plane's NIC sent and received), and the
//! one-writer-per-byte check every relay and TLS test makes on it. A delegated send puts each
//! request on the wire twice (the data plane's copy, then the kernel's); both copies must carry
//! the same bytes, or the relay may keep either (TLS: a MAC failure; plain TCP: a corrupt
//! request).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::topology::{wait_for_stderr, Guard, Topology};

/// A running capture (tcpdump) in the peer namespace.
pub struct RelayCapture {
    tcpdump: Guard,
    /// The capture file.
    pub file: PathBuf,
}

impl RelayCapture {
    /// Captures every TCP frame on the peer's veth end into `file`.
    pub fn start(topo: &Topology, file: PathBuf) -> RelayCapture {
        RelayCapture::start_filtered(topo, file, "tcp")
    }

    /// Captures the frames on the peer's veth end that match the pcap `filter` into `file`.
    pub fn start_filtered(topo: &Topology, file: PathBuf, filter: &str) -> RelayCapture {
        // Immediate mode and a flush per packet: every frame is in the file as soon as it is
        // captured. (dumpcap, used before, reads the kernel's ring a block at a time and drops
        // the block still being filled when it is stopped: a short test lost every frame after
        // its first 10, seen twice on CI in the nginx test.) `-Z root`: keep writing to the
        // test's root-owned folder; nanosecond stamps.
        let mut c = topo.spawn_in_ns(&[
            "tcpdump",
            "-i",
            &topo.peer_if,
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "--time-stamp-precision=nano",
            "-w",
            file.to_str().expect("utf-8 path"),
            filter,
        ]);
        wait_for_stderr(&mut c, "listening on");
        RelayCapture {
            tcpdump: Guard(c),
            file,
        }
    }

    /// Stops the capture (SIGINT) and returns the file. A capture that ended on its own before
    /// is a failure (it missed frames).
    pub fn stop(mut self) -> PathBuf {
        let child = &mut self.tcpdump.0;
        if let Ok(Some(status)) = child.try_wait() {
            let err = child.stderr.take().map(crate::read_all).unwrap_or_default();
            panic!("the relay-side capture ended early ({status}): {err}");
        }
        // SAFETY: kill with our child's pid and a standard signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().expect("wait for tcpdump");
        let err = child.stderr.take().map(crate::read_all).unwrap_or_default();
        assert!(
            status.success() || status.code() == Some(130),
            "tcpdump: {status}: {err}"
        );
        let dropped = err
            .lines()
            .find_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse::<u64>().ok());
        assert_eq!(
            dropped,
            Some(0),
            "the relay-side capture lost frames: {err}"
        );
        std::mem::take(&mut self.file)
    }
}

/// What [`assert_no_conflicting_copies`] compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    /// TCP segments with data.
    pub segments: usize,
    /// Pairs of segments of one direction of one connection that cover a common byte range
    /// (a delegated send and the kernel's copy, or a retransmission), all found identical.
    pub overlaps: usize,
}

/// One data segment: its raw sequence number and payload.
type Segment = (u32, Vec<u8>);

/// Asserts that no byte range in `pcap` was sent twice with different bytes: tshark's own
/// `tcp.segment.overlap.conflict` (which it can flag only while it reassembles a PDU) on no
/// frame, and, byte for byte, every pair of segments of one direction of one connection that
/// cover common sequence numbers agree on them. Returns what was compared.
pub fn assert_no_conflicting_copies(pcap: &Path) -> Copies {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "tcp.reassemble_out_of_order:TRUE"])
        .args(["-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "frame.number",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.srcport",
        ])
        .args(["-e", "tcp.seq_raw", "-e", "tcp.payload"])
        .args(["-e", "tcp.segment.overlap.conflict"])
        .output()
        .expect("run tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows: HashMap<(String, String), Vec<(String, Segment)>> = HashMap::new();
    let mut copies = Copies::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [frame, stream, port, seq, payload, conflict] = f[..] else {
            continue;
        };
        assert!(
            conflict.is_empty() || conflict == "0",
            "{}: frame {frame}: tshark found tcp.segment.overlap.conflict (a second copy of \
             a byte range with different bytes)",
            pcap.display()
        );
        if payload.is_empty() {
            continue;
        }
        let seq: u32 = seq.parse().expect("tcp.seq_raw");
        let bytes = unhex(payload);
        copies.segments += 1;
        let seen = flows.entry((stream.into(), port.into())).or_default();
        for (earlier, (start, data)) in seen.iter() {
            if let Some(at) = conflict_in(*start, data, seq, &bytes) {
                panic!(
                    "{}: frames {earlier} and {frame} (tcp stream {stream}, from port {port}) \
                     carry different bytes at sequence number {at}: a byte range written twice \
                     with different contents",
                    pcap.display()
                );
            }
            if overlap(*start, data.len(), seq, bytes.len()).is_some() {
                copies.overlaps += 1;
            }
        }
        seen.push((frame.to_string(), (seq, bytes)));
    }
    copies
}

/// The common range of two segments as offsets into the first: (from, to).
fn overlap(a: u32, a_len: usize, b: u32, b_len: usize) -> Option<(usize, usize)> {
    // Signed distance in sequence space (segments of one flow are close together).
    let d = b.wrapping_sub(a) as i32 as i64;
    let from = d.max(0);
    let to = (d + b_len as i64).min(a_len as i64);
    (from < to).then_some((from as usize, to as usize))
}

/// The first sequence number where segment `b` disagrees with segment `a`, if any.
fn conflict_in(a: u32, a_bytes: &[u8], b: u32, b_bytes: &[u8]) -> Option<u32> {
    let (from, to) = overlap(a, a_bytes.len(), b, b_bytes.len())?;
    let shift = b.wrapping_sub(a) as i32 as i64;
    (from..to)
        .find(|&i| a_bytes[i] != b_bytes[(i as i64 - shift) as usize])
        .map(|i| a.wrapping_add(i as u32))
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.replace(':', "");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex payload"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_are_compared_byte_for_byte() {
        // b starts 2 bytes into a: a[2..4] against b[0..2].
        assert_eq!(overlap(100, 4, 102, 5), Some((2, 4)));
        assert_eq!(conflict_in(100, b"abcd", 102, b"cdef"), None);
        assert_eq!(conflict_in(100, b"abcd", 102, b"cxef"), Some(103));
        // b before a, across the sequence-number wrap.
        assert_eq!(overlap(1, 4, u32::MAX, 3), Some((0, 1)));
        assert_eq!(conflict_in(1, b"abcd", u32::MAX, b"xya"), None);
        assert_eq!(conflict_in(1, b"abcd", u32::MAX, b"xyz"), Some(1));
        // Adjacent, not overlapping.
        assert_eq!(overlap(100, 4, 104, 4), None);
    }

    /// An Ethernet/IPv4/TCP frame from 198.18.77.1:40000 to 198.18.77.2:8080 (checksums
    /// left zero: tshark does not verify them by default).
    fn frame(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        let total = (40 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 77, 1, 198, 18, 77, 2]);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&8080u16.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A pcap of a request sent in two segments, then its first segment again as `again`.
    fn pcap(path: &Path, again: &[u8]) {
        let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody";
        let frames = [
            frame(1000, 0x02, b""),
            frame(1001, 0x18, &request[..20]),
            frame(1021, 0x18, &request[20..]),
            frame(1001, 0x18, again),
        ];
        let mut out = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for (i, f) in frames.iter().enumerate() {
            for w in [i as u32 + 1, 0, f.len() as u32, f.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(f);
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn a_second_copy_with_other_bytes_is_found_in_a_real_capture_file() {
        let dir = crate::Scratch::new("capture-check");
        let same = dir.path("same.pcap");
        pcap(&same, b"POST / HTTP/1.1\r\nHos");
        let copies = assert_no_conflicting_copies(&same);
        assert_eq!(
            copies,
            Copies {
                segments: 3,
                overlaps: 1
            }
        );
        let other = dir.path("other.pcap");
        pcap(&other, b"POST / HTTP/1.1\r\nHOS");
        let failed = std::panic::catch_unwind(|| assert_no_conflicting_copies(&other));
        let why = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(
            why.contains("frames 2 and 4") && why.contains("sequence number 1019"),
            "{why}"
        );
    }
}
