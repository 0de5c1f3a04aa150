//! Wire truth: when each request's first and last byte reached the relay's NIC, from an
//! independent capture on the relay's side of each path's link.
//!
//! `tcpdump` runs in the relay's network namespace on the relay's end of each veth (one for the
//! data plane's NIC, one for the baselines' own kernel-owned interface), keeping the client ->
//! relay TCP segments that carry data, with the kernel's nanosecond `CLOCK_REALTIME` receive
//! stamps. The benchmark's submit times are `CLOCK_MONOTONIC`; [`ClockMap`] maps them to
//! `CLOCK_REALTIME` with an offset measured before and after the run.
//!
//! Every path sends one submission at a time and waits for all of its completions, so the
//! request bytes of submission `s` are exactly the new bytes (never seen before on their
//! connection) that reach the relay's NIC between its submit and its last completion. A
//! delegated send's kernel copy, retransmissions and the like repeat bytes already seen and are
//! not counted; the fallback's kernel write is new bytes and is. For each connection with new
//! bytes in a window: the first byte is the first such segment, the last byte the segment that
//! completed the connection's new bytes.
//!
//! QUIC lanes: the capture keeps the client -> relay UDP datagrams. Their payload is encrypted,
//! so a datagram that carries (part of) a transaction is told from the connection's ACK and
//! PING datagrams by its size: a UDP payload above [`QUIC_TX_MIN_PAYLOAD`] bytes. Every sample
//! transaction is 267 to 1232 bytes (the payload adds ~30 bytes of QUIC header, frame header
//! and tag), an ACK or PING datagram is 30 to 60 bytes. For each lane's flow (its 5-tuple) in a
//! window, the first and the last such datagram are the transaction's first and last datagram.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RelayLane, Request, Route};
use crate::common::pct;

/// UDP payloads above this many bytes carry a transaction's stream data (see the module's
/// notes); smaller ones are ACK/PING datagrams.
pub(crate) const QUIC_TX_MIN_PAYLOAD: u32 = 200;

/// Where to capture: the relay's network namespace and its ends of the two links.
#[derive(Debug, Clone)]
pub(crate) struct CaptureSpec {
    /// The relay's network namespace (`ip netns` name).
    pub(crate) netns: String,
    /// The relay's end of the data plane's link.
    pub(crate) dataplane_iface: String,
    /// The relay's end of the baselines' link.
    pub(crate) baseline_iface: String,
}

/// A running `tcpdump` writing a pcap file.
pub(crate) struct Capture {
    child: Child,
    stderr: BufReader<ChildStderr>,
    path: PathBuf,
    iface: String,
}

impl Capture {
    /// The capture filter: TCP segments with data towards `ports`, or (`quic`) UDP datagrams
    /// towards them.
    pub(crate) fn filter(ports: &[u16], quic: bool) -> String {
        let ports: Vec<String> = ports.iter().map(|p| format!("dst port {p}")).collect();
        if quic {
            return format!("udp and ({})", ports.join(" or "));
        }
        // TCP with a payload: IP total length minus the IP and TCP header lengths.
        format!(
            "tcp and ({}) and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0",
            ports.join(" or ")
        )
    }

    /// Starts `tcpdump` on `iface` in `netns` with `filter`; returns once it is capturing.
    pub(crate) fn start(
        netns: &str,
        iface: &str,
        filter: &str,
        path: &Path,
    ) -> Result<Capture, String> {
        let _ = std::fs::remove_file(path);
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "tcpdump", "-i", iface, "-n", "-w"])
            .arg(path)
            .args([
                "--time-stamp-precision=nano",
                "--immediate-mode",
                "-U",
                "-Z",
                "root",
                "-s",
                "128",
                "-B",
                "32768",
                filter,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("capture: cannot run tcpdump in {netns}: {e}"))?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = stderr
                .read_line(&mut line)
                .map_err(|e| format!("capture on {iface}: {e}"))?;
            if n == 0 {
                let _ = child.wait();
                return Err(format!(
                    "capture on {iface}: tcpdump exited before capturing"
                ));
            }
            if line.contains("listening on") {
                break;
            }
        }
        Ok(Capture {
            child,
            stderr,
            path: path.to_path_buf(),
            iface: iface.to_string(),
        })
    }

    /// Stops the capture (SIGINT: tcpdump writes out what it holds) and returns the pcap file;
    /// fails if the kernel dropped frames (the capture would miss requests).
    pub(crate) fn stop(mut self) -> Result<PathBuf, String> {
        // SAFETY: kill(2) on the pid of a child this process started and has not waited for
        // yet, so the pid cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("capture on {}: tcpdump did not stop", self.iface));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut rest);
        for line in rest.lines() {
            if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                if n.trim() != "0" {
                    return Err(format!(
                        "capture on {}: the kernel dropped {} frames: the wire figures would \
                         miss requests",
                        self.iface,
                        n.trim()
                    ));
                }
            }
        }
        Ok(self.path)
    }
}

/// A TCP connection as the client sees it: (client ip, client port, relay ip, relay port).
type Flow = (u32, u16, u32, u16);

/// One captured client -> relay segment with data.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// `CLOCK_REALTIME`, ns.
    ts_ns: u64,
    flow: Flow,
    seq: u32,
    len: u32,
}

/// The data-carrying TCP segments (`quic`: the UDP datagrams, `seq` 0, `len` the UDP payload)
/// of a pcap file (Ethernet, IPv4), in capture order.
///
/// The classic pcap format is read here directly (a 24-byte file header, then a 16-byte header
/// per record): the `pcap-file` crate (2.0) refuses records whose original length exceeds the
/// snap length, which is every record of a capture snapped to its headers, as this one is.
fn read_segments(path: &Path, quic: bool) -> Result<Vec<Segment>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |what: &str| format!("{}: not a pcap file ({what})", path.display());
    let magic = data.get(..4).ok_or_else(|| bad("too short"))?;
    let (big_endian, nanos) = match magic {
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        _ => return Err(bad("unknown magic")),
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(i..i + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    if u32_at(20) != Some(1) {
        return Err(bad("link type is not Ethernet"));
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let (sec, frac, incl) = (
            u64::from(u32_at(at).unwrap_or(0)),
            u64::from(u32_at(at + 4).unwrap_or(0)),
            u32_at(at + 8).unwrap_or(0) as usize,
        );
        let Some(frame) = data.get(at + 16..at + 16 + incl) else {
            break; // a record cut short by the end of the capture
        };
        let parsed = if quic {
            parse_datagram(frame)
        } else {
            parse_segment(frame)
        };
        if let Some(mut s) = parsed {
            s.ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1_000 };
            out.push(s);
        }
        at += 16 + incl;
    }
    Ok(out)
}

/// Ethernet/IPv4/TCP headers of a (possibly snapped) frame; `None` for anything else or for a
/// segment without data.
fn parse_segment(f: &[u8]) -> Option<Segment> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]));
    let be32 = |i: usize| Some(u32::from_be_bytes(f.get(i..i + 4)?.try_into().ok()?));
    if be16(12)? != 0x0800 || *f.get(23)? != 6 {
        return None;
    }
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    let total = usize::from(be16(16)?);
    let tcp = 14 + ihl;
    let doff = usize::from(f.get(tcp + 12)? >> 4) * 4;
    let len = total.checked_sub(ihl + doff)?;
    if len == 0 {
        return None;
    }
    Some(Segment {
        ts_ns: 0,
        flow: (be32(26)?, be16(tcp)?, be32(30)?, be16(tcp + 2)?),
        seq: be32(tcp + 4)?,
        len: len as u32,
    })
}

/// Ethernet/IPv4/UDP headers of a (possibly snapped) frame: the flow and the UDP payload's
/// length; `None` for anything else.
fn parse_datagram(f: &[u8]) -> Option<Segment> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]));
    let be32 = |i: usize| Some(u32::from_be_bytes(f.get(i..i + 4)?.try_into().ok()?));
    if be16(12)? != 0x0800 || *f.get(23)? != 17 {
        return None;
    }
    let udp = 14 + usize::from(f.get(14)? & 0x0f) * 4;
    Some(Segment {
        ts_ns: 0,
        flow: (be32(26)?, be16(udp)?, be32(30)?, be16(udp + 2)?),
        seq: 0,
        len: u32::from(be16(udp + 4)?.checked_sub(8)?),
    })
}

/// `CLOCK_MONOTONIC` to `CLOCK_REALTIME`, from offsets measured at two moments (linear between
/// them: NTP may slew the real-time clock).
pub(crate) struct ClockMap {
    a: (u64, i128),
    b: (u64, i128),
}

impl ClockMap {
    /// (monotonic ns, realtime - monotonic ns) from the tightest of several readings.
    pub(crate) fn sample() -> (u64, i128) {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec into the valid, exclusive `ts`.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        let mut best = (u64::MAX, 0u64, 0i128);
        for _ in 0..21 {
            let m1 = read(libc::CLOCK_MONOTONIC);
            let r = read(libc::CLOCK_REALTIME);
            let m2 = read(libc::CLOCK_MONOTONIC);
            let spread = (m2 - m1) as u64;
            if spread < best.0 {
                let mid = (m1 + m2) / 2;
                best = (spread, mid as u64, r - mid);
            }
        }
        (best.1, best.2)
    }

    /// A map from a reading before the run and one after it.
    pub(crate) fn new(before: (u64, i128), after: (u64, i128)) -> ClockMap {
        ClockMap {
            a: before,
            b: after,
        }
    }

    /// How much the offset moved during the run, ns.
    pub(crate) fn drift_ns(&self) -> i128 {
        self.b.1 - self.a.1
    }

    /// `mono` (ns) on the real-time clock.
    pub(crate) fn to_real(&self, mono: u64) -> u64 {
        let span = self.b.0.saturating_sub(self.a.0).max(1) as i128;
        let at = mono.saturating_sub(self.a.0).min(span as u64) as i128;
        let offset = self.a.1 + (self.b.1 - self.a.1) * at / span;
        (mono as i128 + offset) as u64
    }
}

/// One submission's window on one link: from its submit to its last completion (real-time
/// ns), and how many requests (lanes) it sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) lanes: u32,
}

/// What the capture says about one window: per connection that carried new bytes in it, when
/// its first and its last new byte reached the relay's NIC (real-time ns).
#[derive(Debug, Clone, Default)]
pub(crate) struct OnWire {
    pub(crate) requests: Vec<(u64, u64)>,
    /// QUIC: per request, how many datagrams it took (above [`QUIC_TX_MIN_PAYLOAD`]).
    pub(crate) datagrams: Vec<u32>,
}

/// Per flow: the first data sequence number seen, and the highest end (relative to it).
struct FlowState {
    base: u32,
    max_end: i64,
}

/// The first and last new byte per connection in each of `windows` (sorted by start, not
/// overlapping), from the segments of the pcap file at `path`.
pub(crate) fn on_wire(path: &Path, windows: &[Window]) -> Result<Vec<OnWire>, String> {
    let mut segments = read_segments(path, false)?;
    segments.sort_by_key(|s| s.ts_ns);
    let mut flows: HashMap<Flow, FlowState> = HashMap::new();
    // Per window: flow -> index in its `requests`.
    let mut out: Vec<OnWire> = vec![OnWire::default(); windows.len()];
    let mut index: Vec<HashMap<Flow, usize>> = vec![HashMap::new(); windows.len()];
    for s in &segments {
        let state = flows.entry(s.flow).or_insert(FlowState {
            base: s.seq,
            max_end: 0,
        });
        let start = i64::from(s.seq.wrapping_sub(state.base) as i32);
        let end = start + i64::from(s.len);
        if end <= state.max_end {
            continue; // bytes already seen: a delegated send's kernel copy, a retransmission
        }
        state.max_end = end;
        // The window that holds this segment, if any.
        let w = windows.partition_point(|w| w.start_ns <= s.ts_ns);
        if w == 0 || s.ts_ns > windows[w - 1].end_ns {
            continue;
        }
        let w = w - 1;
        let n = out[w].requests.len();
        let k = *index[w].entry(s.flow).or_insert(n);
        if k == n {
            out[w].requests.push((s.ts_ns, s.ts_ns));
        } else {
            out[w].requests[k].1 = s.ts_ns;
        }
    }
    Ok(out)
}

/// The first and last transaction-carrying datagram (UDP payload above
/// [`QUIC_TX_MIN_PAYLOAD`]) per flow in each of `windows` (sorted by start, not overlapping),
/// from the datagrams of the pcap file at `path`.
pub(crate) fn on_wire_quic(path: &Path, windows: &[Window]) -> Result<Vec<OnWire>, String> {
    let mut datagrams = read_segments(path, true)?;
    datagrams.sort_by_key(|s| s.ts_ns);
    let mut out: Vec<OnWire> = vec![OnWire::default(); windows.len()];
    let mut index: Vec<HashMap<Flow, usize>> = vec![HashMap::new(); windows.len()];
    for d in datagrams.iter().filter(|d| d.len > QUIC_TX_MIN_PAYLOAD) {
        let w = windows.partition_point(|w| w.start_ns <= d.ts_ns);
        if w == 0 || d.ts_ns > windows[w - 1].end_ns {
            continue;
        }
        let w = w - 1;
        let n = out[w].requests.len();
        let k = *index[w].entry(d.flow).or_insert(n);
        if k == n {
            out[w].requests.push((d.ts_ns, d.ts_ns));
            out[w].datagrams.push(1);
        } else {
            out[w].requests[k].1 = d.ts_ns;
            out[w].datagrams[k] += 1;
        }
    }
    Ok(out)
}

/// The two captures of a run.
pub(crate) struct Captures {
    spec: CaptureSpec,
    dataplane: Capture,
    baseline: Capture,
    quic: bool,
}

/// The pcap files of a finished run.
pub(crate) struct Pcaps {
    spec: CaptureSpec,
    dataplane: PathBuf,
    baseline: PathBuf,
    /// UDP datagrams of QUIC lanes, not TCP segments.
    quic: bool,
}

impl Captures {
    /// Starts capturing requests to the lanes' relay ports on both links, into `out`.
    pub(crate) fn start(
        spec: &CaptureSpec,
        lanes: &[RelayLane],
        out: &Path,
    ) -> Result<Captures, String> {
        let mut ports: Vec<u16> = lanes.iter().map(|l| l.addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        let quic = lanes.iter().any(RelayLane::is_quic);
        let filter = Capture::filter(&ports, quic);
        let dataplane = Capture::start(
            &spec.netns,
            &spec.dataplane_iface,
            &filter,
            &out.join("wire-dataplane.pcap"),
        )?;
        let baseline = Capture::start(
            &spec.netns,
            &spec.baseline_iface,
            &filter,
            &out.join("wire-baselines.pcap"),
        )?;
        Ok(Captures {
            spec: spec.clone(),
            dataplane,
            baseline,
            quic,
        })
    }

    /// Stops both captures.
    pub(crate) fn stop(self) -> Result<Pcaps, String> {
        Ok(Pcaps {
            spec: self.spec,
            dataplane: self.dataplane.stop()?,
            baseline: self.baseline.stop()?,
            quic: self.quic,
        })
    }
}

/// Submit -> first byte, submit -> last byte (per request) and submit -> last byte of the
/// submission's last lane, ns, for one (lane count, path).
#[derive(Default)]
struct Samples {
    first: Vec<u64>,
    last: Vec<u64>,
    all: Vec<u64>,
    /// Submissions whose window held a different number of requests than lanes.
    odd: u32,
    /// QUIC: transactions that took more than one datagram.
    split: u32,
}

/// p50, p99, p99.9 of unsorted ns samples, in us.
fn quantiles(v: &[u64]) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    [0.5, 0.99, 0.999].map(|q| pct(&s, q) as f64 / 1e3)
}

/// The wire-truth report: matches every measured submission to its requests in the captures,
/// prints the table and the ratios, writes `wire.csv` and `wire-<N>lanes.svg` into `out`;
/// returns the files written.
pub(crate) fn report(
    pcaps: &Pcaps,
    requests: &[Request],
    clock: &ClockMap,
    lane_counts: &[u32],
    routes: &[Route],
    out: &Path,
) -> Result<Vec<String>, String> {
    // One window per measured submission: (route, lanes, submit, last completion), real time.
    let mut subs: BTreeMap<u32, (Route, u32, u64, u64)> = BTreeMap::new();
    for r in requests {
        let e = subs
            .entry(r.submission)
            .or_insert((r.route, r.lanes, r.send_ns, r.done_ns));
        e.3 = e.3.max(r.done_ns);
    }
    let mut samples: BTreeMap<(u32, &str), Samples> = BTreeMap::new();
    let mut csv = String::from("path,lanes,submission,request,first_us,last_us\n");
    for (pcap, dataplane) in [(&pcaps.dataplane, true), (&pcaps.baseline, false)] {
        let mine: Vec<(u32, Route, u32, u64)> = subs
            .iter()
            .filter(|(_, s)| (s.0 == Route::Dataplane) == dataplane)
            .map(|(&k, s)| (k, s.0, s.1, clock.to_real(s.2)))
            .collect();
        let windows: Vec<Window> = mine
            .iter()
            .map(|&(k, _, lanes, start_ns)| Window {
                start_ns,
                end_ns: clock.to_real(subs[&k].3),
                lanes,
            })
            .collect();
        let seen = if pcaps.quic {
            on_wire_quic(pcap, &windows)?
        } else {
            on_wire(pcap, &windows)?
        };
        for ((&(k, route, lanes, start), w), got) in mine.iter().zip(&windows).zip(&seen) {
            let s = samples.entry((lanes, route.name())).or_default();
            if got.requests.len() != w.lanes as usize {
                s.odd += 1;
                continue;
            }
            let mut all = 0;
            for (j, &(first, last)) in got.requests.iter().enumerate() {
                let (f, l) = (first.saturating_sub(start), last.saturating_sub(start));
                s.first.push(f);
                s.last.push(l);
                if got.datagrams.get(j).is_some_and(|&d| d > 1) {
                    s.split += 1;
                }
                all = all.max(l);
                csv.push_str(&format!(
                    "{},{lanes},{k},{j},{:.3},{:.3}\n",
                    route.name(),
                    f as f64 / 1e3,
                    l as f64 / 1e3
                ));
            }
            s.all.push(all);
        }
    }
    print_table(&pcaps.spec, clock, lane_counts, routes, &samples);
    let mut written = Vec::new();
    let path = out.join("wire.csv");
    std::fs::write(&path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
    written.push(path.display().to_string());
    written.extend(write_plots(&samples, lane_counts, routes, out)?);
    Ok(written)
}

/// `wire-<N>lanes.svg`: submit -> last byte per path, one plot per lane count.
fn write_plots(
    samples: &BTreeMap<(u32, &str), Samples>,
    lane_counts: &[u32],
    routes: &[Route],
    out: &Path,
) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let quic = routes == Route::QUIC;
    for &n in lane_counts {
        let data: Vec<(Route, Vec<f64>)> = routes
            .iter()
            .map(|&r| {
                let v = samples.get(&(n, r.name())).map_or(Vec::new(), |s| {
                    s.last.iter().map(|&ns| ns as f64 / 1e3).collect()
                });
                (r, v)
            })
            .collect();
        let title = format!(
            "swqos wire truth: submit \u{2192} last {} at the relay's NIC, {n} lane(s)",
            if quic {
                "datagram of the transaction"
            } else {
                "byte of the request"
            }
        );
        let path = out.join(format!("wire-{n}lanes.svg"));
        let labels = crate::plot::Labels {
            title: &title,
            what: [
                "submit (client CLOCK_MONOTONIC, mapped to CLOCK_REALTIME) to the kernel's receive \
                 stamp of the request's last byte on the relay's interface (tcpdump)",
                if quic {
                    "data plane: its own NIC link; quinn: its own kernel-owned link to the same \
                     relay"
                } else {
                    "data plane: its own NIC link; reqwest and the kernel socket: their own \
                     kernel-owned link to the same relay"
                },
            ],
            axis: if quic {
                "submit &#8594; last datagram at the relay's NIC"
            } else {
                "submit &#8594; last byte at the relay's NIC"
            },
        };
        std::fs::write(&path, crate::plot::svg(&labels, &data))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// Prints the wire-truth table and the ratios against the targets of issue #12.
fn print_table(
    spec: &CaptureSpec,
    clock: &ClockMap,
    lane_counts: &[u32],
    routes: &[Route],
    samples: &BTreeMap<(u32, &str), Samples>,
) {
    let quic = routes == Route::QUIC;
    println!();
    println!(
        "wire truth: submit -> the {} at the relay's NIC (tcpdump in {} on {} (data plane) and \
         {} (baselines, their own kernel-owned link); kernel receive stamps; submit times mapped \
         from CLOCK_MONOTONIC, offset drift {} ns over the run)",
        if quic {
            "transaction's first / last datagram (UDP payload > 200 bytes: not an ACK or PING)"
        } else {
            "request's first / last byte"
        },
        spec.netns,
        spec.dataplane_iface,
        spec.baseline_iface,
        clock.drift_ns()
    );
    println!(
        "{:>5} {:<14} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5}",
        "lanes",
        "path",
        "n",
        "first p50",
        "p99",
        "p99.9",
        "last p50",
        "p99",
        "p99.9",
        "all p50",
        "all p99",
        "odd"
    );
    for &n in lane_counts {
        for &r in routes {
            let Some(s) = samples.get(&(n, r.name())) else {
                continue;
            };
            let (f, l, a) = (quantiles(&s.first), quantiles(&s.last), quantiles(&s.all));
            println!(
                "{:>5} {:<14} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>5}",
                n, r.name(), s.last.len(), f[0], f[1], f[2], l[0], l[1], l[2], a[0], a[1], s.odd
            );
        }
    }
    println!(
        "(us; first/last: per request; all: the last {} of the submission's last lane; odd: \
         submissions whose window did not hold one request per lane, left out)",
        if quic { "datagram" } else { "byte" }
    );
    if quic {
        let split: Vec<String> = samples
            .iter()
            .map(|((n, path), s)| format!("{path} {n}: {}", s.split))
            .collect();
        println!(
            "(transactions that took more than one datagram > {QUIC_TX_MIN_PAYLOAD} bytes, of \
             the measured ones: {})",
            split.join(", ")
        );
        print_quic_ratios(lane_counts, samples);
    } else {
        print_ratios(lane_counts, samples);
    }
}

/// The ratios of the data plane's submit -> last datagram to the quinn client's.
fn print_quic_ratios(lane_counts: &[u32], samples: &BTreeMap<(u32, &str), Samples>) {
    println!();
    println!("ratios, submit -> last datagram of the transaction at the relay's NIC (data plane / quinn)");
    println!(
        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>10}",
        "lanes",
        "p50 dp/qn",
        "p99 dp/qn",
        "p50 dp",
        "p50 qn",
        "p99 dp",
        "p99 qn",
        "p99.9 dp",
        "p99.9 qn"
    );
    for &n in lane_counts {
        let q = |r: Route| samples.get(&(n, r.name())).map(|s| quantiles(&s.last));
        let (Some(dp), Some(qn)) = (q(Route::Dataplane), q(Route::Quinn)) else {
            continue;
        };
        println!(
            "{:>5} {:>9.3}x {:>9.3}x {:>10.1} {:>10.1} {:>10.1} {:>11.1} {:>11.1} {:>10.1}",
            n,
            dp[0] / qn[0],
            dp[1] / qn[1],
            dp[0],
            qn[0],
            dp[1],
            qn[1],
            dp[2],
            qn[2]
        );
    }
}

/// The ratios of the data plane's submit -> last byte to the baselines', and the targets of
/// issue #12 they meet or miss.
fn print_ratios(lane_counts: &[u32], samples: &BTreeMap<(u32, &str), Samples>) {
    println!();
    println!("ratios, submit -> last byte at the relay's NIC (targets: dataplane p50 <= 0.1x reqwest and <= 0.5x kernel socket; p99 <= both baselines' p99)");
    println!(
        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10}  targets",
        "lanes", "p50 dp/rq", "p50 dp/ks", "p99 dp", "p99 rq", "p99 ks"
    );
    for &n in lane_counts {
        let q = |r: Route| samples.get(&(n, r.name())).map(|s| quantiles(&s.last));
        let (Some(dp), Some(rq), Some(ks)) =
            (q(Route::Dataplane), q(Route::Reqwest), q(Route::Kernel))
        else {
            continue;
        };
        let (vs_rq, vs_ks) = (dp[0] / rq[0], dp[0] / ks[0]);
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "{:>5} {:>9.3}x {:>9.3}x {:>10.1} {:>10.1} {:>10.1}  <=0.1x rq {}, <=0.5x ks {}, p99 {}",
            n,
            vs_rq,
            vs_ks,
            dp[1],
            rq[1],
            ks[1],
            verdict(vs_rq <= 0.1),
            verdict(vs_ks <= 0.5),
            verdict(dp[1] <= rq[1] && dp[1] <= ks[1])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32, payload: usize, sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + 32 + payload) as u16).to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[198, 18, 79, 1]);
        f[30..34].copy_from_slice(&[198, 18, 79, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&8080u16.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[46] = 8 << 4;
        f
    }

    #[test]
    fn segments_are_parsed_from_snapped_frames() {
        let s = parse_segment(&frame(7, 1448, 40000)).unwrap();
        assert_eq!((s.seq, s.len, s.flow.1, s.flow.3), (7, 1448, 40000, 8080));
        assert!(
            parse_segment(&frame(7, 0, 40000)).is_none(),
            "no data, no segment"
        );
    }

    #[test]
    fn repeated_bytes_do_not_move_the_first_or_last_byte() {
        let dir = std::env::temp_dir().join(format!("swqos-wire-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        // A nanosecond pcap file, little-endian, Ethernet, snapped at 128 bytes.
        let mut file = Vec::new();
        for v in [0xa1b2_3c4du32, 0x0004_0002, 0, 0, 128, 1] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        let mut put = |ts: u64, seq: u32, len: usize, sport: u16| {
            let f = frame(seq, len, sport);
            let orig = f.len() + len;
            for v in [(ts / 1_000_000_000) as u32, (ts % 1_000_000_000) as u32] {
                file.extend_from_slice(&v.to_le_bytes());
            }
            file.extend_from_slice(&(f.len() as u32).to_le_bytes());
            file.extend_from_slice(&(orig as u32).to_le_bytes());
            file.extend_from_slice(&f);
        };
        put(100, 1000, 500, 1); // before any window: learnt, not counted
        put(1_000, 1500, 1448, 1); // window 0, flow 1: first
        put(1_100, 2948, 100, 1); // window 0, flow 1: last
        put(1_200, 1500, 1448, 1); // the kernel's copy: repeated bytes
        put(1_250, 2948, 100, 1);
        put(1_300, 50, 10, 2); // window 0, flow 2
        put(5_000, 3048, 10, 1); // window 1
        std::fs::write(&path, &file).unwrap();
        let windows = [
            Window {
                start_ns: 900,
                end_ns: 2_000,
                lanes: 2,
            },
            Window {
                start_ns: 4_000,
                end_ns: 6_000,
                lanes: 1,
            },
        ];
        let got = on_wire(&path, &windows).unwrap();
        assert_eq!(got[0].requests, vec![(1_000, 1_100), (1_300, 1_300)]);
        assert_eq!(got[1].requests, vec![(5_000, 5_000)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn udp_frame(payload: usize, sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 79, 1]);
        f[30..34].copy_from_slice(&[198, 18, 79, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&9000u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        f
    }

    #[test]
    fn quic_windows_keep_the_transaction_datagrams_not_acks_or_pings() {
        let dir = std::env::temp_dir().join(format!("swqos-wire-quic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.pcap");
        let mut file = Vec::new();
        for v in [0xa1b2_3c4du32, 0x0004_0002, 0, 0, 128, 1] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        let mut put = |ts: u64, len: usize, sport: u16| {
            let f = udp_frame(len, sport);
            for v in [0u32, ts as u32, f.len() as u32, (f.len()) as u32] {
                file.extend_from_slice(&v.to_le_bytes());
            }
            file.extend_from_slice(&f);
        };
        put(100, 1300, 1); // before any window (a handshake, a probe)
        put(1_000, 35, 1); // an ACK: not the transaction
        put(1_100, 1263, 1); // flow 1's transaction
        put(1_150, 90, 1); // small: an ACK/PING, even after the transaction
        put(1_200, 1170, 2); // flow 2's transaction in two datagrams
        put(1_300, 240, 2);
        put(5_000, 30, 1); // a PING alone in window 1: no request
        std::fs::write(&path, &file).unwrap();
        let windows = [
            Window {
                start_ns: 900,
                end_ns: 2_000,
                lanes: 2,
            },
            Window {
                start_ns: 4_000,
                end_ns: 6_000,
                lanes: 1,
            },
        ];
        let got = on_wire_quic(&path, &windows).unwrap();
        assert_eq!(got[0].requests, vec![(1_100, 1_100), (1_200, 1_300)]);
        assert_eq!(got[0].datagrams, vec![1, 2]);
        assert!(got[1].requests.is_empty());
        let d = parse_datagram(&udp_frame(1263, 7)).unwrap();
        assert_eq!((d.len, d.flow.1, d.flow.3), (1263, 7, 9000));
        assert!(
            parse_datagram(&frame(1, 10, 7)).is_none(),
            "TCP is not a datagram"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_clock_map_interpolates_the_offset() {
        let m = ClockMap::new((1_000, 500), (2_000, 700));
        assert_eq!(m.to_real(1_000), 1_500);
        assert_eq!(m.to_real(1_500), 2_100);
        assert_eq!(m.drift_ns(), 200);
    }
}
