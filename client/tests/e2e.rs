//! `swqos-client` against a real data plane on DPDK's `net_null0` (root; run one at a time):
//! lanes by name, raw and `VersionedTransaction` submissions, every lane's completion through
//! the blocking iterator, `wait_all`, `wait_first_success` and the async stream; unknown lane
//! names are a clear error that lists the lanes; a data plane that stops is reported as such.

use std::time::Duration;

use futures_util::StreamExt;
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::{Message, VersionedMessage};
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use swqos_client::{Client, Error, GiveUp, LaneSet, Outcome};
use swqos_tests::{config_text, have_root, samples, two_lanes, DataplaneProcess, Scratch};

/// A data plane on net_null0 with the lanes `udp-a` and `udp-b`; the segment path.
fn start(tag: &str) -> (Scratch, DataplaneProcess, String) {
    let scratch = Scratch::new(tag);
    let config = scratch.path("client.toml");
    let text = config_text(tag, "net_null0", "off", 2, &two_lanes());
    std::fs::write(&config, &text).unwrap();
    let shm = text
        .lines()
        .find_map(|l| l.strip_prefix("path = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let dp = DataplaneProcess::start(&scratch, &config);
    (scratch, dp, shm)
}

fn signed_transfer() -> VersionedTransaction {
    let payer = Keypair::new();
    let ix = solana_system_interface::instruction::transfer(&payer.pubkey(), &payer.pubkey(), 1);
    let msg = Message::new_with_blockhash(&[ix], Some(&payer.pubkey()), &Hash::new_unique());
    VersionedTransaction::try_new(VersionedMessage::Legacy(msg), &[&payer]).unwrap()
}

#[test]
fn submissions_through_the_crate_get_every_lanes_completion() {
    if !have_root("submissions_through_the_crate_get_every_lanes_completion") {
        return;
    }
    let (_scratch, dp, shm) = start("client-e2e");
    let mut client = Client::attach(&shm).unwrap();
    assert_eq!(client.lane_names(), ["udp-a", "udp-b"]);

    // Unknown names: an error naming them and the known lanes; nothing submitted.
    let e = LaneSet::from_names(&client, ["udp-a", "jito", "helius"]).unwrap_err();
    assert!(matches!(&e, Error::UnknownLanes { unknown, .. } if unknown == &["jito", "helius"]));
    assert_eq!(
        e.to_string(),
        "unknown lane(s) `jito`, `helius`; the data plane's lanes are `udp-a`, `udp-b`"
    );
    assert!(matches!(
        LaneSet::from_names(&client, Vec::<String>::new()),
        Err(Error::NoLanes)
    ));

    let both = LaneSet::from_names(&client, ["udp-b", "udp-a"]).unwrap();
    assert_eq!(both.names(), ["udp-a", "udp-b"]);
    assert_eq!(both, client.all_lanes());
    let only_b = LaneSet::from_names(&client, ["udp-b"]).unwrap();

    // Raw bytes, blocking iterator: one outcome per lane, each sent on the fast path.
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    let s = client.submit(&valid[0].bytes, &both).unwrap();
    let mut got: Vec<_> = client.completions(&s).collect();
    got.sort_by_key(|o| o.lane);
    assert_eq!(got.len(), 2, "{got:?}");
    for (o, name) in got.iter().zip(["udp-a", "udp-b"]) {
        assert_eq!((o.tag, &o.name[..]), (s.tag, name));
        assert_eq!(o.outcome, Outcome::Sent { path: "fast" }, "{o}");
        assert!(o.completion.is_some());
    }
    assert_eq!(client.completions(&s).count(), 0, "each lane answers once");

    // Invalid bytes: refused before the ring.
    let bad = samples().into_iter().find(|s| s.invalid.is_some()).unwrap();
    assert!(matches!(
        client.submit(&bad.bytes, &both),
        Err(Error::Submit(_))
    ));

    // A signed VersionedTransaction, wait_first_success then the rest, and wait_all.
    let tx = signed_transfer();
    let s = client.submit_transaction(&tx, &both).unwrap();
    let first = client.wait_first_success(&s).unwrap();
    assert!(first.is_sent());
    let rest = client.wait_all(&s);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_ne!(rest[0].lane, first.lane);
    let s = client.submit(&valid[1].bytes, &only_b).unwrap();
    let all = client.wait_all(&s);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "udp-b");

    // Interleaved submissions: each reader gets its own submission's outcomes.
    let s1 = client.submit(&valid[2].bytes, &both).unwrap();
    let s2 = client.submit(&valid[3].bytes, &only_b).unwrap();
    assert_eq!(client.wait_all(&s2).len(), 1);
    assert_eq!(client.wait_all(&s1).len(), 2);

    // Async: the stream and the futures, on a current-thread tokio runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = client
            .submit_transaction(&signed_transfer(), &both)
            .unwrap();
        let outcomes: Vec<_> = client.completion_stream(&s).collect().await;
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| o.is_sent()));
        let s = client.submit(&valid[4].bytes, &both).unwrap();
        assert!(client.wait_first_success_async(&s).await.unwrap().is_sent());
        assert_eq!(client.wait_all_async(&s).await.len(), 1);
    });

    dp.stop(libc::SIGTERM);
}

#[test]
fn a_data_plane_that_stops_answering_is_reported_not_waited_on_forever() {
    if !have_root("a_data_plane_that_stops_answering_is_reported_not_waited_on_forever") {
        return;
    }
    let (_scratch, dp, shm) = start("client-gone");
    let mut client = Client::attach(&shm).unwrap();
    client.set_timeout(Duration::from_secs(2));
    let lanes = client.all_lanes();
    let valid: Vec<_> = samples()
        .into_iter()
        .filter(|s| s.invalid.is_none())
        .collect();
    // Freeze the data plane, then submit: nothing answers; the client gives up. SIGSTOP is
    // delivered asynchronously (a busy-polling lcore stops at its next entry into the kernel),
    // so the submission waits until every thread is seen stopped.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(dp.pid() as i32, libc::SIGSTOP) };
    wait_stopped(dp.pid());
    let s = client.submit(&valid[0].bytes, &lanes).unwrap();
    let started = std::time::Instant::now();
    let all = client.wait_all(&s);
    // SAFETY: as above.
    unsafe { libc::kill(dp.pid() as i32, libc::SIGCONT) };
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter().all(|o| matches!(
            o.outcome,
            Outcome::NoAnswer(GiveUp::DataPlaneGone) | Outcome::NoAnswer(GiveUp::Deadline(_))
        )),
        "{all:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    dp.stop(libc::SIGTERM);
}

/// Waits until every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn wait_stopped(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let all_stopped = tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('T' | 't')))
        });
        if all_stopped {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not stop within 10 s of SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
