//! `swqos submit`: stream transactions into a submit ring and print one line per transaction,
//! in input order, once every lane has answered.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use swqos_shm::{Client, Completion, SubmitError};
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
    Sent,
    Failed(String),
}

fn describe(c: &Completion) -> Outcome {
    match c.outcome() {
        Ok(()) => Outcome::Sent,
        Err(why) => Outcome::Failed(why),
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Transactions every lane sent.
    pub(crate) accepted: usize,
    /// Transactions rejected (locally or by the dataplane) or not sent on some lane.
    pub(crate) rejected: usize,
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
}

impl<W: Write> Run<'_, W> {
    fn entry(&mut self, tag: u64) -> Option<&mut Entry> {
        let i = tag.checked_sub(self.first_tag)? as usize;
        self.entries.get_mut(i)
    }

    /// Reads every completion available now; returns how many.
    fn drain_completions(&mut self) -> usize {
        let mut n = 0;
        while let Some(c) = self.client.poll() {
            n += 1;
            let outcome = describe(&c);
            let latency = c.done_tsc.wrapping_sub(c.submit_tsc);
            if let Some(e) = self.entry(c.tag) {
                e.lanes.push(LaneResult {
                    lane: c.lane,
                    outcome,
                    ticks: latency,
                    path: c.path(),
                });
                e.waiting = e.waiting.saturating_sub(1);
            }
        }
        n
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

    fn print(&mut self, e: &Entry) -> std::io::Result<()> {
        let failure = e.local_error.clone().or_else(|| {
            e.lanes.iter().find_map(|r| match &r.outcome {
                Outcome::Sent => None,
                // The same reason on every lane (a rejected transaction) is said once.
                Outcome::Failed(why) if e.lanes.iter().all(|o| o.outcome == r.outcome) => {
                    Some(why.clone())
                }
                Outcome::Failed(why) => Some(format!("lane {}: {why}", self.lane_name(r.lane))),
            })
        });
        if failure.is_some() {
            self.totals.rejected += 1;
        } else {
            self.totals.accepted += 1;
        }
        if self.opts.json {
            let ticks_per_us = self.client.tsc_hz() as f64 / 1e6;
            let lanes: Vec<serde_json::Value> = e
                .lanes
                .iter()
                .map(|r| {
                    let mut v = serde_json::json!({
                        "lane": self.lane_name(r.lane),
                        "status": if r.outcome == Outcome::Sent { "sent" } else { "failed" },
                    });
                    match &r.outcome {
                        Outcome::Sent => v["latency_us"] = (r.ticks as f64 / ticks_per_us).into(),
                        Outcome::Failed(why) => v["reason"] = why.clone().into(),
                    }
                    if let Some(path) = r.path {
                        v["path"] = path.into();
                    }
                    v
                })
                .collect();
            let mut v = serde_json::json!({
                "line": e.line,
                "status": if failure.is_some() { "rejected" } else { "accepted" },
                "lanes": lanes,
            });
            if let Some(sig) = &e.signature {
                v["signature"] = sig.clone().into();
            }
            if let Some(why) = &failure {
                v["reason"] = why.clone().into();
            }
            writeln!(self.out, "{v}")
        } else {
            match failure {
                None => writeln!(
                    self.out,
                    "accepted {}",
                    e.signature.as_deref().unwrap_or("-")
                )?,
                Some(why) => writeln!(self.out, "rejected {why}")?,
            }
            if self.opts.verbose {
                let ticks_per_us = self.client.tsc_hz() as f64 / 1e6;
                let mut lanes: Vec<_> = e.lanes.iter().collect();
                lanes.sort_by_key(|r| r.lane);
                for r in lanes {
                    let name = self.lane_name(r.lane);
                    let path = r.path.map(|p| format!(" ({p})")).unwrap_or_default();
                    match &r.outcome {
                        Outcome::Sent => writeln!(
                            self.out,
                            "    {name:<12} sent in {:>9.1} us{path}",
                            r.ticks as f64 / ticks_per_us
                        )?,
                        Outcome::Failed(why) => {
                            writeln!(self.out, "    {name:<12} failed: {why}{path}")?
                        }
                    }
                }
            }
            Ok(())
        }
    }

    /// Submits one decoded transaction, waiting for ring space as long as the dataplane lives.
    fn submit(&mut self, line: usize, tx: &[u8]) -> Result<(), String> {
        let tag = self.first_tag + self.entries.len() as u64;
        let signature = Transaction::parse(tx)
            .ok()
            .map(|t| bs58::encode(t.first_signature()).into_string());
        let mut entry = Entry {
            line,
            signature,
            waiting: self.opts.lanes.count_ones().max(1),
            lanes: Vec::new(),
            local_error: None,
        };
        let mut last_check = Instant::now();
        loop {
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
                        self.client
                            .segment()
                            .check_running()
                            .map_err(|e| e.to_string())?;
                        last_check = Instant::now();
                    }
                }
                Err(SubmitError::NotRunning(state)) => {
                    return Err(format!(
                        "the dataplane stopped accepting submissions ({state:?})"
                    ))
                }
                Err(e) => {
                    entry.local_error = Some(e.to_string());
                    entry.waiting = 0;
                    break;
                }
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

    fn reject_line(&mut self, line: usize, why: String) -> Result<(), String> {
        self.entries.push_back(Entry {
            line,
            signature: None,
            waiting: 0,
            lanes: Vec::new(),
            local_error: Some(why),
        });
        self.print_ready().map_err(|e| e.to_string())
    }

    /// Waits for every outstanding completion; what has not come by the timeout is reported.
    fn finish(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last_check = Instant::now();
        while !self.entries.is_empty() {
            self.drain_completions();
            self.print_ready().map_err(|e| e.to_string())?;
            if self.entries.is_empty() {
                break;
            }
            let alive = if last_check.elapsed() > Duration::from_millis(200) {
                last_check = Instant::now();
                self.client
                    .segment()
                    .check_running()
                    .map_err(|e| e.to_string())
            } else {
                Ok(())
            };
            if Instant::now() > deadline || alive.is_err() {
                let why = match alive {
                    Err(e) => format!("no completion: {e}"),
                    Ok(()) => format!("no completion within {:?}", self.opts.timeout),
                };
                for e in &mut self.entries {
                    if e.waiting > 0 {
                        e.waiting = 0;
                        e.local_error = Some(why.clone());
                    }
                }
                self.print_ready().map_err(|e| e.to_string())?;
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        self.out.flush().map_err(|e| e.to_string())
    }
}

/// Submits every transaction of `input` and prints the outcomes to `out`.
pub(crate) fn run<R: BufRead, W: Write>(
    client: Client,
    input: R,
    out: W,
    opts: &SubmitOptions,
) -> Result<Totals, String> {
    let mut run = Run {
        client,
        opts,
        out,
        entries: VecDeque::new(),
        first_tag: 1,
        totals: Totals::default(),
    };
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| format!("reading input: {e}"))?;
        if is_blank(&line) {
            continue;
        }
        match decode_line(&line) {
            Ok(tx) => run.submit(line_no, &tx)?,
            Err(why) => run.reject_line(line_no, format!("line {line_no}: {why}"))?,
        }
    }
    run.finish()?;
    Ok(run.totals)
}
