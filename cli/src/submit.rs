//! `swqos submit`: stream transactions into a submit ring and print one line per transaction,
//! in input order, once every lane has answered.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use swqos_shm::layout::landing;
use swqos_shm::{Client, Completion, Event, GiveUp, SubmitError};
use swqos_wire::solana::Transaction;

use crate::input::{decode_line, is_blank};

/// How the submission behaves.
#[derive(Debug, Clone)]
pub(crate) struct SubmitOptions {
    /// Lane mask.
    pub(crate) lanes: u64,
    /// Validate in the client too (the dataplane always does).
    pub(crate) client_check: bool,
    /// JSON lines instead of text.
    pub(crate) json: bool,
    /// Text mode: a line per lane under each transaction, with its outcome and latency.
    pub(crate) verbose: bool,
    /// Submit the next transaction only when every lane has answered the previous one.
    pub(crate) sequential: bool,
    /// Wait for and print each transaction's landing answer.
    pub(crate) landing: bool,
    /// How long to wait for completions after the last submission.
    pub(crate) timeout: Duration,
}

/// What became of one input line.
#[derive(Debug)]
struct Entry {
    line: usize,
    signature: Option<String>,
    /// Lanes still to answer.
    waiting: u32,
    /// (lane, outcome, latency in ticks)
    lanes: Vec<LaneResult>,
    /// Rejected before reaching the ring.
    local_error: Option<String>,
    /// A blank or comment line: nothing was submitted.
    skipped: bool,
    /// Its landing answer is still to come (counted in `waiting`).
    landing_pending: bool,
    /// Its landing answer: (status word, slot, credited lane, text).
    landing: Option<LandingResult>,
}

/// A transaction's landing answer, as printed.
#[derive(Debug, Clone)]
struct LandingResult {
    /// `landed`, `landed_with_error`, `expired`, `unknown` or `not_watched`.
    status: &'static str,
    slot: Option<u64>,
    lane: Option<String>,
    text: String,
}

impl Entry {
    fn new(line: usize) -> Entry {
        Entry {
            line,
            signature: None,
            waiting: 0,
            landing_pending: false,
            landing: None,
            lanes: Vec::new(),
            local_error: None,
            skipped: false,
        }
    }
}

/// One lane's answer for one transaction.
#[derive(Debug)]
struct LaneResult {
    lane: u8,
    outcome: Outcome,
    /// Submit to completion, in TSC ticks.
    ticks: u64,
    /// "fast" (the data plane sent it) or "fallback" (the control plane's kernel socket).
    path: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The lane sent it.
    Sent,
    /// The lane did not send it, for this reason.
    Failed(String),
    /// No completion came (the client gave up): it may or may not have left.
    Unknown(String),
}

fn describe(c: &Completion) -> Outcome {
    match c.outcome() {
        Ok(()) => Outcome::Sent,
        Err(why) => Outcome::Failed(why),
    }
}

/// A transaction's status word: `accepted` (every lane sent it), `rejected` (no lane did),
/// `partial` (some did, some did not or did not answer), `unknown` (no lane sent it and some
/// never answered), `skipped` (no transaction on the line).
fn status_of(e: &Entry) -> &'static str {
    if e.skipped {
        return "skipped";
    }
    if e.local_error.is_some() {
        return "rejected";
    }
    let sent = e
        .lanes
        .iter()
        .filter(|r| r.outcome == Outcome::Sent)
        .count();
    let unknown = e
        .lanes
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Unknown(_)));
    match (sent, unknown) {
        (n, _) if n == e.lanes.len() => "accepted",
        (0, true) => "unknown",
        (0, false) => "rejected",
        _ => "partial",
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Transactions every lane sent.
    pub(crate) accepted: usize,
    /// Transactions no lane sent (rejected locally or by the dataplane, or not submitted).
    pub(crate) rejected: usize,
    /// Transactions some lanes sent and others did not (or did not answer).
    pub(crate) partial: usize,
    /// Transactions no lane was seen to send, with some lane never answering.
    pub(crate) unknown: usize,
    /// Blank and comment lines.
    pub(crate) skipped: usize,
}

impl Totals {
    /// Whether every transaction was accepted.
    pub(crate) fn all_accepted(&self) -> bool {
        self.rejected + self.partial + self.unknown == 0
    }
}

/// The submission state: entries not yet printed, in input order.
struct Run<'a, W: Write> {
    client: Client,
    opts: &'a SubmitOptions,
    out: W,
    entries: VecDeque<Entry>,
    /// Tag of `entries[0]`.
    first_tag: u64,
    totals: Totals,
    /// The last submission or completion: `--timeout` counts from it.
    last_progress: Instant,
    /// Set once the data plane is gone: later lines are not submitted, for this reason.
    gone: Option<String>,
}

impl LandingResult {
    fn plain(status: &'static str, text: String) -> LandingResult {
        LandingResult {
            status,
            slot: None,
            lane: None,
            text,
        }
    }
}

impl<W: Write> Run<'_, W> {
    fn entry(&mut self, tag: u64) -> Option<&mut Entry> {
        let i = tag.checked_sub(self.first_tag)? as usize;
        self.entries.get_mut(i)
    }

    /// Reads every completion available now, and gives up on the ones that cannot come (see
    /// [`Client::poll_or_give_up`]); returns how many events there were.
    fn drain_completions(&mut self) -> usize {
        let mut n = 0;
        while let Some(ev) = self
            .client
            .poll_or_give_up(self.last_progress, self.opts.timeout)
        {
            n += 1;
            let (tag, result) = match ev {
                Event::Done(c) if c.is_landing() => {
                    self.last_progress = Instant::now();
                    let l = self.landing_of(&c);
                    self.set_landing(c.tag, l);
                    continue;
                }
                Event::GaveUp { tag, lane, why } if lane == landing::LANE => {
                    let text = format!("landing unknown: {why}");
                    self.set_landing(tag, LandingResult::plain("unknown", text));
                    continue;
                }
                Event::Done(c) => {
                    self.last_progress = Instant::now();
                    let r = LaneResult {
                        lane: c.lane,
                        outcome: describe(&c),
                        ticks: c.done_tsc.wrapping_sub(c.submit_tsc),
                        path: c.path(),
                    };
                    (c.tag, r)
                }
                Event::GaveUp { tag, lane, why } => {
                    if why == GiveUp::DataPlaneGone {
                        self.gone = Some("data plane gone".into());
                    }
                    let r = LaneResult {
                        lane,
                        outcome: Outcome::Unknown(why.to_string()),
                        ticks: 0,
                        path: None,
                    };
                    (tag, r)
                }
            };
            if let Some(e) = self.entry(tag) {
                e.lanes.push(result);
                e.waiting = e.waiting.saturating_sub(1);
            }
        }
        // Landing answers that will not come: the submission never reached the control plane.
        for i in 0..self.entries.len() {
            let tag = self.first_tag + i as u64;
            if self.entries[i].landing_pending && !self.client.landing_owed(tag) {
                let text = "landing not watched (the submission never reached the control plane)";
                self.set_landing(tag, LandingResult::plain("not_watched", text.into()));
            }
        }
        n
    }

    fn landing_of(&self, c: &Completion) -> LandingResult {
        let lane = self.client.lane_names().get(c.lane as usize).cloned();
        match c.slot() {
            Some(slot) => LandingResult {
                status: if c.landed_with_error() {
                    "landed_with_error"
                } else {
                    "landed"
                },
                slot: Some(slot),
                text: format!(
                    "landed in slot {slot}{}, credited to {}",
                    if c.landed_with_error() {
                        " with an error"
                    } else {
                        ""
                    },
                    lane.as_deref().unwrap_or("no relay lane")
                ),
                lane,
            },
            None => LandingResult {
                lane,
                ..LandingResult::plain("expired", c.outcome().err().unwrap_or_default())
            },
        }
    }

    fn set_landing(&mut self, tag: u64, l: LandingResult) {
        if let Some(e) = self.entry(tag).filter(|e| e.landing_pending) {
            e.landing_pending = false;
            e.landing = Some(l);
            e.waiting = e.waiting.saturating_sub(1);
        }
    }

    /// Prints finished entries from the front.
    fn print_ready(&mut self) -> std::io::Result<()> {
        while self.entries.front().is_some_and(|e| e.waiting == 0) {
            let e = self.entries.pop_front().unwrap_or_else(|| unreachable!());
            self.first_tag += 1;
            self.print(&e)?;
        }
        Ok(())
    }

    fn lane_name(&self, lane: u8) -> String {
        self.client
            .lane_names()
            .get(lane as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{lane}"))
    }

    /// Why a transaction was not (or not everywhere) sent: its one reason when every lane that
    /// did not send it says the same, otherwise `lane: reason` for each.
    fn reason(&self, e: &Entry) -> Option<String> {
        if let Some(why) = &e.local_error {
            return Some(why.clone());
        }
        let mut lanes: Vec<_> = e.lanes.iter().collect();
        lanes.sort_by_key(|r| r.lane);
        let why = |r: &LaneResult| match &r.outcome {
            Outcome::Sent => None,
            Outcome::Failed(w) | Outcome::Unknown(w) => Some(w.clone()),
        };
        let failed: Vec<_> = lanes
            .iter()
            .filter_map(|r| Some((r.lane, why(r)?)))
            .collect();
        let first = failed.first()?;
        if failed.len() == lanes.len() && failed.iter().all(|f| f.1 == first.1) {
            return Some(first.1.clone());
        }
        let each: Vec<_> = failed
            .iter()
            .map(|(lane, w)| format!("{}: {w}", self.lane_name(*lane)))
            .collect();
        Some(each.join("; "))
    }

    /// The lanes that sent `e`, by name, in lane order.
    fn sent_on(&self, e: &Entry) -> Vec<String> {
        let mut lanes: Vec<u8> = e
            .lanes
            .iter()
            .filter(|r| r.outcome == Outcome::Sent)
            .map(|r| r.lane)
            .collect();
        lanes.sort_unstable();
        lanes.into_iter().map(|l| self.lane_name(l)).collect()
    }

    fn count(&mut self, status: &str) {
        let t = &mut self.totals;
        match status {
            "accepted" => t.accepted += 1,
            "partial" => t.partial += 1,
            "unknown" => t.unknown += 1,
            "skipped" => t.skipped += 1,
            _ => t.rejected += 1,
        }
    }

    fn print(&mut self, e: &Entry) -> std::io::Result<()> {
        let status = status_of(e);
        self.count(status);
        let reason = self.reason(e);
        if self.opts.json {
            return self.print_json(e, status, reason);
        }
        let sig = e.signature.as_deref().unwrap_or("-");
        match (status, reason) {
            ("skipped", _) => writeln!(self.out, "skipped")?,
            ("accepted", _) | (_, None) => writeln!(self.out, "accepted {sig}")?,
            ("partial", Some(why)) => writeln!(
                self.out,
                "partial {sig} sent: {}; {why}",
                self.sent_on(e).join(", ")
            )?,
            ("unknown", Some(why)) => writeln!(self.out, "unknown {sig} {why}")?,
            (_, Some(why)) => writeln!(self.out, "rejected {why}")?,
        }
        if self.opts.verbose {
            self.print_lanes(e)?;
        }
        if let Some(l) = &e.landing {
            writeln!(self.out, "    landing: {}", l.text)?;
        }
        Ok(())
    }

    fn print_lanes(&mut self, e: &Entry) -> std::io::Result<()> {
        let ticks_per_us = self.client.tsc_hz() as f64 / 1e6;
        let mut lanes: Vec<_> = e.lanes.iter().collect();
        lanes.sort_by_key(|r| r.lane);
        // Every lane name's width, so the columns line up.
        let w = self
            .client
            .lane_names()
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(12);
        for r in lanes {
            let name = self.lane_name(r.lane);
            let path = r.path.map(|p| format!(" ({p})")).unwrap_or_default();
            match &r.outcome {
                Outcome::Sent => writeln!(
                    self.out,
                    "    {name:<w$} sent in {:>9.1} us{path}",
                    r.ticks as f64 / ticks_per_us
                )?,
                Outcome::Failed(why) => writeln!(self.out, "    {name:<w$} failed: {why}{path}")?,
                Outcome::Unknown(why) => writeln!(self.out, "    {name:<w$} {why}")?,
            }
        }
        Ok(())
    }

    fn print_json(
        &mut self,
        e: &Entry,
        status: &str,
        reason: Option<String>,
    ) -> std::io::Result<()> {
        let ticks_per_us = self.client.tsc_hz() as f64 / 1e6;
        let lanes: Vec<serde_json::Value> = e
            .lanes
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({ "lane": self.lane_name(r.lane) });
                match &r.outcome {
                    Outcome::Sent => {
                        v["status"] = "sent".into();
                        v["latency_us"] = (r.ticks as f64 / ticks_per_us).into();
                    }
                    Outcome::Failed(why) => {
                        v["status"] = "failed".into();
                        v["reason"] = why.clone().into();
                    }
                    Outcome::Unknown(why) => {
                        v["status"] = "unknown".into();
                        v["reason"] = why.clone().into();
                    }
                }
                if let Some(path) = r.path {
                    v["path"] = path.into();
                }
                v
            })
            .collect();
        let mut v = serde_json::json!({ "line": e.line, "status": status });
        if !e.skipped {
            v["lanes"] = lanes.into();
        }
        if let Some(sig) = &e.signature {
            v["signature"] = sig.clone().into();
        }
        if let Some(why) = reason.filter(|_| status != "accepted") {
            v["reason"] = why.into();
        }
        if let Some(l) = &e.landing {
            v["landing"] = serde_json::json!({
                "status": l.status, "slot": l.slot, "lane": l.lane, "text": l.text,
            });
        }
        writeln!(self.out, "{v}")
    }

    /// Submits one decoded transaction, waiting for ring space while completions come, the
    /// data plane lives and `--timeout` has not passed without progress.
    fn submit(&mut self, line: usize, tx: &[u8]) -> Result<(), String> {
        let tag = self.first_tag + self.entries.len() as u64;
        let mut entry = Entry::new(line);
        entry.signature = Transaction::parse(tx)
            .ok()
            .map(|t| bs58::encode(t.first_signature()).into_string());
        entry.waiting = self.opts.lanes.count_ones().max(1);
        let mut last_check = Instant::now();
        loop {
            if let Some(why) = &self.gone {
                entry.local_error = Some(format!("not submitted: {why}"));
                break;
            }
            let r = if self.opts.client_check {
                self.client.submit(tx, self.opts.lanes, tag)
            } else {
                self.client.submit_unchecked(tx, self.opts.lanes, tag)
            };
            match r {
                Ok(()) => break,
                Err(SubmitError::Full) => {
                    if self.drain_completions() == 0 {
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    if last_check.elapsed() > Duration::from_millis(200) {
                        last_check = Instant::now();
                        if let Err(e) = self.client.segment().check_running() {
                            self.gone = Some(format!("data plane gone ({e})"));
                        } else if self.last_progress.elapsed() > self.opts.timeout {
                            entry.local_error = Some(format!(
                                "not submitted: submit ring full for {} s",
                                self.opts.timeout.as_secs_f64()
                            ));
                            break;
                        }
                    }
                }
                Err(SubmitError::NotRunning(state)) => {
                    self.gone = Some(format!("data plane gone (state {state:?})"));
                }
                Err(e) => {
                    entry.local_error = Some(e.to_string());
                    break;
                }
            }
        }
        if entry.local_error.is_some() {
            entry.waiting = 0;
        } else {
            self.last_progress = Instant::now();
            if self.client.landing_owed(tag) {
                entry.landing_pending = true;
                entry.waiting += 1;
            }
        }
        self.entries.push_back(entry);
        self.drain_completions();
        self.print_ready().map_err(|e| e.to_string())?;
        if self.opts.sequential {
            self.finish()?;
        }
        Ok(())
    }

    /// A line that is not submitted: blank (`why` is `None`) or unusable.
    fn line_only(&mut self, line: usize, why: Option<String>) -> Result<(), String> {
        let mut e = Entry::new(line);
        e.skipped = why.is_none();
        e.local_error = why;
        self.entries.push_back(e);
        self.print_ready().map_err(|e| e.to_string())
    }

    /// Waits until every lane of every transaction has answered or been given up on (the
    /// data plane or control plane gone, or `--timeout` without progress): each gets its line.
    fn finish(&mut self) -> Result<(), String> {
        while !self.entries.is_empty() {
            if self.drain_completions() == 0 {
                if self.client.awaiting() == 0 {
                    // Nothing more can come (cannot happen: every owed lane gets an event).
                    for e in self.entries.iter_mut().filter(|e| e.waiting > 0) {
                        e.waiting = 0;
                        e.local_error = Some("no completion".into());
                    }
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            self.print_ready().map_err(|e| e.to_string())?;
        }
        self.out.flush().map_err(|e| e.to_string())
    }
}

/// Submits every transaction of `input` and prints the outcomes to `out`: one line per input
/// line, in input order.
pub(crate) fn run<R: BufRead, W: Write>(
    client: Client,
    input: R,
    out: W,
    opts: &SubmitOptions,
) -> Result<Totals, String> {
    let mut client = client;
    client.set_watch_landing(opts.landing);
    let mut run = Run {
        client,
        opts,
        out,
        entries: VecDeque::new(),
        first_tag: 1,
        totals: Totals::default(),
        last_progress: Instant::now(),
        gone: None,
    };
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| format!("reading input: {e}"))?;
        if is_blank(&line) {
            run.line_only(line_no, None)?;
            continue;
        }
        match decode_line(&line) {
            Ok(tx) => run.submit(line_no, &tx)?,
            Err(why) => run.line_only(line_no, Some(format!("line {line_no}: {why}")))?,
        }
    }
    run.finish()?;
    Ok(run.totals)
}

#[cfg(test)]
mod tests {
    //! `swqos submit` against a real segment, with a thread standing in for the data plane
    //! (and, where a test says so, the control plane).

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use base64::Engine;
    use swqos_shm::layout::{DropReason, LaneInfo, LaneKind, Layout, State, Status};
    use swqos_shm::ring::{CompletionProducer, SubmitConsumer};
    use swqos_shm::Segment;

    use super::*;

    fn sample_tx() -> Vec<u8> {
        let mut tx = vec![1u8];
        tx.extend([7u8; 64]);
        tx.extend([1, 0, 1, 2]);
        tx.extend([1u8; 32]);
        tx.extend([2u8; 32]);
        tx.extend([3u8; 32]);
        tx.extend([1, 1, 1, 0, 2, 0xAA, 0xBB]);
        tx
    }

    /// How the stand-in answers each lane: `None` never answers.
    type Answer = fn(lane: u8) -> Option<(Status, u16)>;

    struct Rig {
        seg: Arc<Segment>,
        path: std::path::PathBuf,
        stop: Arc<AtomicBool>,
        server: Option<std::thread::JoinHandle<()>>,
    }

    impl Rig {
        /// A segment with lanes `a` (UDP) and `r` (relay), served by a thread that answers
        /// with `answer` and heartbeats until `stop`.
        fn new(name: &str, answer: Answer) -> Rig {
            // A directory of its own (created 0700 by `Segment::create`), as segments need.
            let path = std::env::temp_dir()
                .join(format!("swqos-submit-{name}-{}", std::process::id()))
                .join("segment");
            let lanes = [
                LaneInfo::new("a", LaneKind::Udp),
                LaneInfo::new("r", LaneKind::Http),
            ];
            let layout = Layout::new(1, 16, 1, 1).unwrap();
            let seg =
                Arc::new(Segment::create(&path, layout, &lanes, &["p0"], 1_000_000_000).unwrap());
            seg.set_state(State::Running);
            let stop = Arc::new(AtomicBool::new(false));
            let (s, st) = (seg.clone(), stop.clone());
            let server = std::thread::spawn(move || serve(s, st, answer));
            Rig {
                seg,
                path,
                stop,
                server: Some(server),
            }
        }

        /// The stand-in dies (stops answering and heartbeating).
        fn kill(&mut self) {
            self.stop.store(true, Ordering::Release);
            if let Some(t) = self.server.take() {
                t.join().unwrap();
            }
        }

        fn submit(&self, input: &str, lanes: u64, timeout: Duration) -> (String, Totals) {
            let client = Client::attach(&self.path).unwrap();
            let opts = SubmitOptions {
                lanes,
                client_check: false,
                json: false,
                verbose: false,
                sequential: false,
                landing: false,
                timeout,
            };
            let mut out = Vec::new();
            let t = run(client, input.as_bytes(), &mut out, &opts).unwrap();
            (String::from_utf8(out).unwrap(), t)
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn serve(seg: Arc<Segment>, stop: Arc<AtomicBool>, answer: Answer) {
        let mut cons = SubmitConsumer::new(seg.clone(), 0).unwrap();
        let mut udp = CompletionProducer::new(&cons);
        let mut relay = CompletionProducer::relay(seg.clone(), 0);
        while !stop.load(Ordering::Acquire) {
            seg.heartbeat();
            let n = cons.ready().unwrap_or(0);
            for k in 0..n {
                let s = cons.slot(k);
                for lane in 0..2u8 {
                    if s.lanes & (1 << lane) == 0 {
                        continue;
                    }
                    let Some((status, reason)) = answer(lane) else {
                        continue;
                    };
                    let c = Completion {
                        tag: s.tag,
                        lease_gen: s.lease_gen,
                        lane,
                        status: status as u8,
                        reason,
                        submit_tsc: s.submit_tsc,
                        done_tsc: s.submit_tsc + 1000,
                    };
                    let to = if lane == 1 { &mut relay } else { &mut udp };
                    assert!(to.push(c));
                }
            }
            cons.release(n);
            udp.publish();
            relay.publish();
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn b64(tx: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(tx)
    }

    fn sig() -> String {
        bs58::encode([7u8; 64]).into_string()
    }

    #[test]
    fn one_line_per_input_line_with_blank_lines_skipped() {
        let rig = Rig::new("blank", |_| Some((Status::Sent, 0)));
        let tx = b64(&sample_tx());
        let input = format!("{tx}\n\n# a comment\n{tx}\n!!\n");
        let (out, t) = rig.submit(&input, 0b1, Duration::from_secs(10));
        let s = sig();
        assert_eq!(
            out,
            format!("accepted {s}\nskipped\nskipped\naccepted {s}\nrejected line 5: neither base64 nor base58\n")
        );
        assert_eq!((t.accepted, t.skipped, t.rejected), (2, 2, 1));
    }

    #[test]
    fn lanes_that_disagree_are_partial_with_the_lanes() {
        let rig = Rig::new("partial", |lane| match lane {
            0 => Some((Status::Sent, 0)),
            _ => Some((Status::Dropped, DropReason::NoControlPlane as u16)),
        });
        let tx = b64(&sample_tx());
        let (out, t) = rig.submit(&format!("{tx}\n"), 0b11, Duration::from_secs(10));
        assert_eq!(
            out,
            format!(
                "partial {} sent: a; r: dropped: {}\n",
                sig(),
                DropReason::NoControlPlane.as_str()
            )
        );
        assert_eq!(t.partial, 1);
        assert!(!t.all_accepted());
    }

    #[test]
    fn relay_lanes_in_flight_when_the_control_plane_is_gone_are_answered() {
        // The relay lane is never answered and no control plane heartbeats.
        let rig = Rig::new("nocontrol", |lane| (lane == 0).then_some((Status::Sent, 0)));
        let tx = b64(&sample_tx());
        let input = format!("{tx}\n").repeat(100);
        let start = Instant::now();
        let (out, t) = rig.submit(&input, 0b11, Duration::from_secs(600));
        let want = format!(
            "partial {} sent: a; r: no completion: control plane gone\n",
            sig()
        );
        assert_eq!(out, want.repeat(100));
        assert_eq!(t.partial, 100);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn transactions_in_flight_when_the_data_plane_dies_are_answered() {
        // Nothing is ever answered; the data plane dies mid-stream, with the ring full.
        let rig = Rig::new("dpdies", |_| None);
        let tx = b64(&sample_tx());
        let input = format!("{tx}\n").repeat(40);
        let stop = rig.stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Release);
        });
        let start = Instant::now();
        let (out, t) = rig.submit(&input, 0b1, Duration::from_secs(600));
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 40, "{out}");
        let in_flight = format!("unknown {} no completion: data plane gone", sig());
        assert_eq!(lines[0], in_flight, "{out}");
        let n = lines.iter().filter(|l| **l == in_flight).count();
        assert!(n >= 1, "{out}");
        assert!(
            lines[n..]
                .iter()
                .all(|l| l.starts_with("rejected not submitted: data plane gone")),
            "{out}"
        );
        assert_eq!((t.unknown, t.rejected), (n, 40 - n));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_silent_lane_ends_at_the_timeout() {
        let rig = Rig::new("silent", |lane| (lane == 0).then_some((Status::Sent, 0)));
        // A live control plane that never answers.
        rig.seg.claim_control().unwrap();
        let beat = {
            let seg = rig.seg.clone();
            let stop = rig.stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    seg.control_heartbeat();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let tx = b64(&sample_tx());
        let (out, _) = rig.submit(&format!("{tx}\n{tx}\n"), 0b11, Duration::from_millis(500));
        let want = format!("partial {} sent: a; r: no completion within 0.5 s\n", sig());
        assert_eq!(out, want.repeat(2));
        drop(rig);
        beat.join().unwrap();
    }
}
