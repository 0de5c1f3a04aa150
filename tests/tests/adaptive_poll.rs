//! `lcore.poll`: an adaptive lcore sleeps while idle and still sends every submission that
//! arrives after an idle spell, exactly once per lane; a busy lcore never sleeps. Behaviour and
//! counters only (`idle_sleeps`, `sleep_ns`, `work_polls` in the stats block and in
//! `swqos stats --json`), never durations: how fast the lcore wakes is the benchmark's business
//! (`scripts/bench-poll.sh`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use swqos_shm::layout::Status;
use swqos_shm::stats::{Counter, Snapshot};
use swqos_shm::{Client, Segment};
use swqos_tests::{
    config_text, have_root, samples, swqos, two_lanes, DataplaneProcess, Finished, Scratch,
};

/// Submissions, each after the lcore has been seen asleep.
const ROUNDS: u64 = 12;
/// How long the test waits for something that must happen (not a timing requirement).
const PATIENCE: Duration = Duration::from_secs(30);

/// The test config with `poll` lines added to the tx lcore.
fn write_config(scratch: &Scratch, tag: &str, poll: &str) -> std::path::PathBuf {
    let text = config_text(tag, "net_null0", "off", 1, &two_lanes());
    let lcore = "queues = [{ port = \"p0\", queue = 0 }]\n";
    assert!(text.contains(lcore));
    let text = text.replacen(lcore, &format!("{lcore}{poll}"), 1);
    let config = scratch.path("poll.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// The tx lcore's counter `c`, read from the segment.
fn counter(seg: &Segment, c: Counter) -> u64 {
    Snapshot::read(seg).lcores[0].get(c)
}

/// Waits until the lcore's counter `c` exceeds `than`; gives its value.
fn wait_above(seg: &Segment, c: Counter, than: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = counter(seg, c);
        if v > than {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{} stayed at {v} for {PATIENCE:?}",
            c.name()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Submits `tx` to both lanes with `tag` and collects its completions (every one that arrives
/// for the tag, by lane) until both lanes answered.
fn submit_and_collect(client: &mut Client, tx: &[u8], tag: u64) -> HashMap<u8, Vec<u8>> {
    client.submit(tx, 0b11, tag).expect("submit");
    let mut by_lane: HashMap<u8, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while by_lane.len() < 2 {
        match client.poll() {
            Some(c) => {
                assert_eq!(c.tag, tag, "a completion of another submission: {c:?}");
                by_lane.entry(c.lane).or_default().push(c.status);
            }
            None => {
                assert!(Instant::now() < deadline, "no completion for tag {tag}");
                std::thread::yield_now();
            }
        }
    }
    by_lane
}

/// `swqos stats --json` of the config's dataplane: its one lcore.
fn stats_lcore(config: &Path) -> Value {
    let out = swqos(
        &[
            "stats",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "--interval",
            "0.2",
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["lcores"][0].clone()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn one_valid_tx() -> Vec<u8> {
    samples()
        .into_iter()
        .find(|s| s.invalid.is_none())
        .expect("a valid sample")
        .bytes
}

fn stop(dp: DataplaneProcess) -> Finished {
    dp.stop(libc::SIGINT)
}

#[test]
fn adaptive_lcore_sleeps_when_idle_and_sends_every_later_submission_once_per_lane() {
    if !have_root("adaptive_lcore_sleeps_when_idle_and_sends_every_later_submission_once_per_lane")
    {
        return;
    }
    let scratch = Scratch::new("poll-adaptive");
    let config = write_config(
        &scratch,
        "poll-adaptive",
        "poll = \"adaptive\"\nidle_polls = 1000\nmax_sleep_us = 200\n",
    );
    let dp = DataplaneProcess::start(&scratch, &config);
    let shm = dpdk_config::Config::load(&config).unwrap().shm.path;
    let mut client = Client::attach(&shm).unwrap();
    let seg = Segment::attach(&shm).unwrap();
    let tx = one_valid_tx();

    // Each submission arrives while the lcore sleeps: after a sleep that began after the last
    // submission was sent.
    let mut sleeps = counter(&seg, Counter::IdleSleeps);
    for tag in 1..=ROUNDS {
        // Two more sleeps: the first may have started before the last completion.
        sleeps = wait_above(&seg, Counter::IdleSleeps, sleeps + 1);
        let by_lane = submit_and_collect(&mut client, &tx, tag);
        for lane in [0u8, 1] {
            assert_eq!(
                by_lane.get(&lane).map(Vec::as_slice),
                Some(&[Status::Sent as u8][..]),
                "tag {tag}: lane {lane} answered {by_lane:?}"
            );
        }
    }
    assert_eq!(client.outstanding(), 0, "nothing owed");
    // Nothing more comes: exactly one completion per (submission, lane).
    sleeps = wait_above(&seg, Counter::IdleSleeps, sleeps + 1);
    assert!(client.poll().is_none(), "an extra completion");

    let lcore = stats_lcore(&config);
    assert_eq!(lcore["poll"], "adaptive", "{lcore}");
    let c = &lcore["counters"];
    assert!(u(&c["idle_sleeps"]) >= sleeps, "{c}");
    assert!(u(&c["sleep_ns"]) > 0, "{c}");
    assert!(u(&c["work_polls"]) >= ROUNDS, "{c}");
    assert_eq!(u(&c["submissions"]), ROUNDS, "{c}");
    assert_eq!(u(&c["tx_packets"]), 2 * ROUNDS, "{c}");
    assert_eq!(u(&c["tx_dropped"]), 0, "{c}");
    // It slept, so it kept its CPU for less than all of the time.
    let since_start = lcore["since_start"]["busy_share"]
        .as_f64()
        .expect("busy share");
    assert!((0.0..1.0).contains(&since_start), "{lcore}");
    let interval = lcore["busy_share"].as_f64().expect("busy share");
    assert!((0.0..=1.0).contains(&interval), "{lcore}");

    drop((client, seg));
    let done = stop(dp);
    assert!(
        done.stderr
            .contains("lcore 1: poll adaptive (idle_polls 1000, max_sleep_us 200)"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("tuning: lcore 1: timer slack 1 ns: ok"),
        "{}",
        done.stderr
    );
    assert!(
        done.stdout.contains(&format!(
            "submissions {ROUNDS} rejected 0 unknown-lane 0 sent {} dropped 0",
            2 * ROUNDS
        )),
        "{}",
        done.stdout
    );
}

#[test]
fn busy_lcore_never_sleeps() {
    if !have_root("busy_lcore_never_sleeps") {
        return;
    }
    let scratch = Scratch::new("poll-busy");
    // The default, said out loud.
    let config = write_config(&scratch, "poll-busy", "poll = \"busy\"\n");
    let dp = DataplaneProcess::start(&scratch, &config);
    let shm = dpdk_config::Config::load(&config).unwrap().shm.path;
    let mut client = Client::attach(&shm).unwrap();
    let seg = Segment::attach(&shm).unwrap();
    let tx = one_valid_tx();

    for tag in 1..=3 {
        let by_lane = submit_and_collect(&mut client, &tx, tag);
        assert_eq!(by_lane.len(), 2, "{by_lane:?}");
    }
    // Idle for a good many polls (far more than an adaptive lcore's idle_polls).
    let polls = counter(&seg, Counter::Polls);
    wait_above(&seg, Counter::Polls, polls + 1_000_000);

    let lcore = stats_lcore(&config);
    assert_eq!(lcore["poll"], "busy", "{lcore}");
    let c = &lcore["counters"];
    assert_eq!((u(&c["idle_sleeps"]), u(&c["sleep_ns"])), (0, 0), "{c}");
    assert!(u(&c["work_polls"]) >= 3, "{c}");
    assert_eq!(lcore["busy_share"].as_f64(), Some(1.0), "{lcore}");
    assert_eq!(
        lcore["since_start"]["busy_share"].as_f64(),
        Some(1.0),
        "{lcore}"
    );

    drop((client, seg));
    let done = stop(dp);
    assert!(
        done.stderr.contains("lcore 1: poll busy"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("timer slack"), "{}", done.stderr);
}
