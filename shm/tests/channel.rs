//! The submit/completion channel between a client and a consumer standing in for the dataplane
//! (the real dataplane's use of it is covered by the end-to-end tests).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use swqos_shm::layout::{LaneInfo, LaneKind, Layout, State, Status};
use swqos_shm::ring::{CompletionProducer, SubmitConsumer};
use swqos_shm::{Client, ClientError, Completion, Segment, SegmentError, SubmitError};

fn sample_tx() -> Vec<u8> {
    // One signature, legacy message: header (1,0,1), two keys, blockhash, one instruction.
    let mut tx = vec![1u8];
    tx.extend([7u8; 64]);
    tx.extend([1, 0, 1, 2]);
    tx.extend([1u8; 32]);
    tx.extend([2u8; 32]);
    tx.extend([3u8; 32]);
    tx.extend([1, 1, 1, 0, 2, 0xAA, 0xBB]);
    tx
}

struct Fixture {
    seg: Arc<Segment>,
    path: PathBuf,
}

fn fixture(name: &str, rings: u32) -> Fixture {
    // One private directory per segment (the dataplane creates it 0700 and removes it).
    let path = std::env::temp_dir()
        .join(format!("swqos-shm-test-{name}-{}", std::process::id()))
        .join("segment");
    let lanes = [
        LaneInfo::new("a", LaneKind::Udp),
        LaneInfo::new("b", LaneKind::Udp),
    ];
    let layout = Layout::new(rings, 16, 1, 1).unwrap();
    let seg = Segment::create(&path, layout, &lanes, &["p0"], 1_000_000_000).unwrap();
    seg.set_state(State::Running);
    Fixture {
        seg: Arc::new(seg),
        path,
    }
}

/// Consumes everything ready on `ring` and answers `Sent` for each lane.
fn serve(cons: &mut SubmitConsumer, comp: &mut CompletionProducer) -> usize {
    let n = cons.ready().unwrap();
    for k in 0..n {
        let s = cons.slot(k);
        for lane in 0..64 {
            if s.lanes & (1 << lane) != 0 {
                assert!(comp.push(Completion {
                    tag: s.tag,
                    lease_gen: s.lease_gen,
                    lane,
                    status: Status::Sent as u8,
                    reason: 0,
                    submit_tsc: s.submit_tsc,
                    done_tsc: 0,
                }));
            }
        }
    }
    cons.release(n);
    comp.publish();
    n as usize
}

#[test]
fn segment_is_private_and_removed_with_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture("mode", 1);
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(f.seg);
    assert!(!f.path.exists());
}

#[test]
fn submissions_round_trip_with_one_completion_per_lane() {
    let f = fixture("roundtrip", 2);
    let mut client = Client::attach(&f.path).unwrap();
    assert_eq!(client.lane_names(), ["a", "b"]);
    assert_eq!(client.lane_id("b"), Some(1));
    let mut cons = SubmitConsumer::new(f.seg.clone(), client.ring()).unwrap();
    assert!(
        SubmitConsumer::new(f.seg.clone(), client.ring()).is_none(),
        "one consumer per ring"
    );
    let mut comp = CompletionProducer::new(&cons);

    let tx = sample_tx();
    client.submit(&tx, 0b11, 42).unwrap();
    client.submit(&tx, 0b01, 43).unwrap();
    assert_eq!(client.outstanding(), 3);
    assert_eq!(cons.ready().unwrap(), 2);
    assert_eq!(cons.slot(0).tx, &tx[..]);
    assert_eq!(serve(&mut cons, &mut comp), 2);
    let got: Vec<(u64, u8)> = std::iter::from_fn(|| client.poll())
        .map(|c| (c.tag, c.lane))
        .collect();
    assert_eq!(got, [(42, 0), (42, 1), (43, 0)]);
    assert_eq!(client.outstanding(), 0);
}

#[test]
fn client_checks_input_before_touching_the_ring() {
    let f = fixture("checks", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let tx = sample_tx();
    assert!(matches!(
        client.submit(&tx[..100], 1, 1),
        Err(SubmitError::Invalid(_))
    ));
    assert_eq!(client.submit(&tx, 0, 1), Err(SubmitError::NoLanes));
    assert_eq!(
        client.submit(&tx, 0b100, 1),
        Err(SubmitError::UnknownLane(0b100))
    );
    assert_eq!(
        client.submit_unchecked(&[0u8; 1233], 1, 1),
        Err(SubmitError::TooLarge(1233))
    );
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    assert_eq!(cons.ready().unwrap(), 0, "nothing was published");
}

#[test]
fn a_full_ring_says_so_and_recovers() {
    let f = fixture("full", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let tx = sample_tx();
    let mut n = 0;
    while client.submit(&tx, 1, n).is_ok() {
        n += 1;
    }
    assert_eq!(n, 16, "ring_slots");
    assert_eq!(client.submit(&tx, 1, n), Err(SubmitError::Full));
    serve(&mut cons, &mut comp);
    client.submit(&tx, 1, n).unwrap();
}

#[test]
fn completion_credit_bounds_what_is_owed() {
    // 16 slots x 8 = 128 completion records; two lanes per slot, never read: 64 submissions.
    let f = fixture("credit", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let tx = sample_tx();
    let mut n = 0;
    loop {
        match client.submit(&tx, 0b11, n) {
            Ok(()) => n += 1,
            Err(SubmitError::Full) => {
                if cons.ready().unwrap() == 0 {
                    break;
                }
                serve(&mut cons, &mut comp);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 64);
    assert_eq!(client.outstanding(), 128);
    assert!(client.poll().is_some());
    client.submit(&tx, 0b1, n).unwrap();
}

#[test]
fn a_dead_clients_ring_is_reclaimed_and_its_completions_skipped() {
    let f = fixture("reclaim", 1);
    let tx = sample_tx();
    let mut first = Client::attach(&f.path).unwrap();
    first.submit(&tx, 0b1, 1).unwrap();
    assert!(matches!(
        Client::attach(&f.path),
        Err(ClientError::NoFreeRing(1))
    ));
    // Pretend the lessee died: hand the lease to a pid that no longer exists.
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let ctl_owner = first_owner_swap(&f.seg, dead);
    assert_eq!(ctl_owner, std::process::id());
    std::mem::forget(first);

    let mut second = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    second.submit(&tx, 0b10, 2).unwrap();
    assert_eq!(
        serve(&mut cons, &mut comp),
        2,
        "the dead client's submission is still sent"
    );
    let mine: Vec<u64> = std::iter::from_fn(|| second.poll())
        .map(|c| c.tag)
        .collect();
    assert_eq!(mine, [2]);
    assert_eq!(second.outstanding(), 0);
}

/// Replaces ring 0's owner pid, returning the old one (test-only poke at the layout).
fn first_owner_swap(seg: &Segment, pid: u32) -> u32 {
    let off = seg.layout().ring(0);
    let bytes = std::fs::read(seg.path()).unwrap();
    let old = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&pid.to_le_bytes(), off as u64).unwrap();
    old
}

#[test]
fn a_corrupt_tail_is_detected_and_resynchronised() {
    let f = fixture("corrupt", 1);
    let client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let off = f.seg.layout().ring(0) + std::mem::offset_of!(swqos_shm::layout::RingControl, tail);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&1000u64.to_le_bytes(), off as u64)
        .unwrap();
    assert!(cons.ready().is_err());
    assert_eq!(cons.ready().unwrap(), 0);
    drop(client);
}

#[test]
fn attach_refuses_what_is_not_a_running_segment_of_this_layout() {
    use std::os::unix::fs::PermissionsExt;
    let missing = std::env::temp_dir().join("swqos-shm-test-missing");
    assert!(matches!(
        Client::attach(&missing),
        Err(ClientError::Segment(SegmentError::NotFound(_)))
    ));

    let dir = std::env::temp_dir().join(format!("swqos-shm-test-junk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let junk = dir.join("segment");
    std::fs::write(&junk, vec![0xAB; 8192]).unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = Segment::attach(&junk).err().unwrap();
    assert!(e.to_string().contains("not a swqos segment"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();

    let f = fixture("version", 1);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&999u32.to_le_bytes(), 8).unwrap();
    let e = Segment::attach(&f.path).err().unwrap();
    assert!(e.to_string().contains("layout version 999"), "{e}");
    file.write_all_at(&swqos_shm::layout::LAYOUT_VERSION.to_le_bytes(), 8)
        .unwrap();

    f.seg.set_state(State::Draining);
    let e = Segment::attach(&f.path).err().unwrap();
    assert!(e.to_string().contains("not running"), "{e}");
    f.seg.set_state(State::Running);
    f.seg.header().heartbeat_ns.store(1, Ordering::Relaxed);
    let e = Segment::attach(&f.path).err().unwrap();
    assert!(e.to_string().contains("no heartbeat"), "{e}");
}

#[test]
fn a_live_dataplanes_segment_is_not_replaced() {
    let f = fixture("inuse", 1);
    // Same pid: a restart of ourselves may replace it.
    let layout = Layout::new(1, 16, 1, 0).unwrap();
    // Fake another live owner: pid 1 always exists.
    f.seg.header().dataplane_pid.store(1, Ordering::Relaxed);
    let e = Segment::create(&f.path, layout, &[], &[], 1).err().unwrap();
    assert!(matches!(e, SegmentError::InUse { pid: 1, .. }), "{e}");
    f.seg
        .header()
        .dataplane_pid
        .store(std::process::id(), Ordering::Relaxed);
}

/// Writes `word` into ring 0's tail (producer) word, as a hostile or dying client could.
fn poke_tail(seg: &Segment, tail: u32, promised: u32) {
    use std::os::unix::fs::FileExt;
    let off = seg.layout().ring(0) + std::mem::offset_of!(swqos_shm::layout::RingControl, tail);
    let word = (promised as u64) << 32 | tail as u64;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    file.write_all_at(&word.to_le_bytes(), off as u64).unwrap();
}

/// Ring 0's consumer head word.
fn head_word(seg: &Segment) -> u64 {
    let off = seg.layout().ring(0) + std::mem::offset_of!(swqos_shm::layout::RingControl, head);
    let bytes = std::fs::read(seg.path()).unwrap();
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

#[test]
fn a_tail_moving_backwards_replays_nothing() {
    let f = fixture("backwards", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let tx = sample_tx();
    for tag in 0..3 {
        client.submit(&tx, 0b1, tag).unwrap();
    }
    assert_eq!(serve(&mut cons, &mut comp), 3);
    assert_eq!(head_word(&f.seg), 3);

    // The tail goes back to 1 (a takeover or a torn store): counted once, nothing taken, the
    // head stays where it was.
    poke_tail(&f.seg, 1, 1);
    assert_eq!(cons.ready(), Err(swqos_shm::ring::RingCorrupt));
    assert_eq!(cons.ready(), Ok(0), "the same bad value is counted once");
    assert_eq!(head_word(&f.seg), 3, "the head never moves back");
    // ... and forward again to where it was: the old slots are not sent again.
    poke_tail(&f.seg, 3, 3);
    assert_eq!(cons.ready(), Ok(0), "slots 1 and 2 would be replayed");
    assert_eq!(serve(&mut cons, &mut comp), 0);
    // A new slot after that is taken once.
    poke_tail(&f.seg, 4, 4);
    assert_eq!(cons.ready(), Ok(1));
    cons.release(1);

    // Impossibly far ahead: the head skips forward, never back.
    poke_tail(&f.seg, 4 + 1000, 4);
    assert!(cons.ready().is_err());
    assert_eq!(head_word(&f.seg), 1004);
    assert_eq!(cons.ready(), Ok(0));
    drop(client);
}

#[test]
fn a_slot_is_copied_out_once_and_later_writes_change_nothing() {
    use std::os::unix::fs::FileExt;
    let f = fixture("copyout", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let tx = sample_tx();
    client.submit(&tx, 0b1, 7).unwrap();
    assert_eq!(cons.ready(), Ok(1));
    let slot = cons.slot(0);
    assert_eq!(slot.tx, &tx[..]);
    // The client rewrites the published slot while the data plane holds it.
    let data = f.seg.layout().slots(0) + swqos_shm::layout::SLOT_HEADER_SIZE;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap();
    file.write_all_at(&vec![0xEE; tx.len()], data as u64)
        .unwrap();
    assert_eq!(
        slot.tx,
        &tx[..],
        "the data plane must read its own copy, not the client's memory"
    );
}

#[test]
fn a_takeover_after_a_predecessor_left_bad_words_never_wraps() {
    let f = fixture("takeover", 1);
    let tx = sample_tx();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let mut first = Client::attach(&f.path).unwrap();
    first.submit(&tx, 0b1, 1).unwrap();
    first.submit(&tx, 0b1, 2).unwrap();
    assert_eq!(serve(&mut cons, &mut comp), 2);
    // It dies without reading its two completions, having stored a promise of 0 (a torn or
    // backwards store of the producer word).
    first_owner_swap(&f.seg, dead_pid());
    std::mem::forget(first);
    poke_tail(&f.seg, 2, 0);

    let mut second = Client::attach(&f.path).unwrap();
    assert!(second.outstanding() <= 128);
    second.submit(&tx, 0b1, 3).unwrap();
    assert_eq!(serve(&mut cons, &mut comp), 1);
    let mine: Vec<u64> = std::iter::from_fn(|| second.poll())
        .map(|c| c.tag)
        .collect();
    assert_eq!(mine, [3]);
    assert_eq!(second.outstanding(), 0, "wrapped: {}", second.outstanding());
    second.submit(&tx, 0b1, 4).unwrap();

    // A promise far beyond what the completion ring can hold is bounded by it.
    first_owner_swap(&f.seg, dead_pid());
    std::mem::forget(second);
    poke_tail(&f.seg, 4, 1_000_000);
    let third = Client::attach(&f.path).unwrap();
    assert!(third.outstanding() <= 128, "{}", third.outstanding());
    // A tail behind the data plane's head is not continued from.
    assert_eq!(serve(&mut cons, &mut comp), 1);
    first_owner_swap(&f.seg, dead_pid());
    std::mem::forget(third);
    poke_tail(&f.seg, 0, 0);
    let mut fourth = Client::attach(&f.path).unwrap();
    fourth.submit(&tx, 0b1, 5).unwrap();
    assert_eq!(cons.ready(), Ok(1), "the new submission must be seen");
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn owed_completions_are_listed_and_given_up_on_with_a_reason() {
    use std::time::{Duration, Instant};
    use swqos_shm::{Event, GiveUp, Owed};
    let path = std::env::temp_dir()
        .join(format!("swqos-shm-test-owed-{}", std::process::id()))
        .join("segment");
    let lanes = [
        LaneInfo::new("udp", LaneKind::Udp),
        LaneInfo::new("relay", LaneKind::Http),
    ];
    let layout = Layout::new(1, 16, 1, 1).unwrap();
    let seg = Arc::new(Segment::create(&path, layout, &lanes, &["p0"], 1_000_000_000).unwrap());
    seg.set_state(State::Running);
    let mut client = Client::attach(&path).unwrap();
    let mut cons = SubmitConsumer::new(seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let tx = sample_tx();
    client.submit(&tx, 0b11, 1).unwrap();
    client.submit(&tx, 0b11, 2).unwrap();
    assert_eq!(client.awaiting(), 4);
    // The data plane answers the UDP lane of the first submission only.
    assert_eq!(cons.ready(), Ok(2));
    let s = cons.slot(0);
    assert!(comp.push(Completion {
        tag: s.tag,
        lease_gen: s.lease_gen,
        lane: 0,
        status: Status::Sent as u8,
        reason: 0,
        submit_tsc: s.submit_tsc,
        done_tsc: 0,
    }));
    comp.publish();
    let long = Duration::from_secs(3600);
    let now = Instant::now();
    assert!(matches!(
        client.poll_or_give_up(now, long),
        Some(Event::Done(c)) if c.tag == 1 && c.lane == 0
    ));
    let owed = |tag, lane| Owed { tag, lane };
    assert_eq!(client.owed(), [owed(1, 1), owed(2, 0), owed(2, 1)]);

    // No control plane: the relay lanes are given up on, the UDP lane still waits.
    seg.heartbeat();
    std::thread::sleep(Duration::from_millis(150));
    let mut events = Vec::new();
    while let Some(e) = client.poll_or_give_up(now, long) {
        events.push(e);
    }
    let gave_up = |tag, lane, why| Event::GaveUp { tag, lane, why };
    assert_eq!(
        events,
        [
            gave_up(1, 1, GiveUp::ControlPlaneGone),
            gave_up(2, 1, GiveUp::ControlPlaneGone)
        ]
    );
    assert_eq!(client.owed(), [owed(2, 0)]);
    assert_eq!(client.outstanding(), 1);
    assert_eq!(
        GiveUp::ControlPlaneGone.to_string(),
        "no completion: control plane gone"
    );

    // The deadline ends the rest; a record that comes later is not reported twice.
    let e = client.poll_or_give_up(now, Duration::ZERO);
    assert_eq!(e, Some(gave_up(2, 0, GiveUp::Deadline(Duration::ZERO))));
    assert_eq!(client.awaiting(), 0);
    assert_eq!(client.outstanding(), 0);
    cons.release(0);
    assert_eq!(serve(&mut cons, &mut comp), 2);
    assert_eq!(client.poll(), None);
    assert_eq!(client.outstanding(), 0);

    // The data plane gone: every lane is given up on.
    client.submit(&tx, 0b11, 3).unwrap();
    seg.set_state(State::Stopped);
    std::thread::sleep(Duration::from_millis(150));
    let got: Vec<_> = std::iter::from_fn(|| client.poll_or_give_up(now, long)).collect();
    assert_eq!(
        got,
        [
            gave_up(3, 0, GiveUp::DataPlaneGone),
            gave_up(3, 1, GiveUp::DataPlaneGone)
        ]
    );
    assert_eq!(
        GiveUp::Deadline(Duration::from_secs(10)).to_string(),
        "no completion within 10 s"
    );
}

#[test]
fn an_oversize_transaction_is_worded_alike_by_client_and_data_plane() {
    use swqos_wire::solana::TxError;
    let from_data_plane = Completion {
        tag: 1,
        lease_gen: 1,
        lane: 0,
        status: Status::Rejected as u8,
        reason: TxError::Oversize { len: 1233 }.code(),
        submit_tsc: 0,
        done_tsc: 0,
    };
    let want = "larger than 1232 bytes (1233 bytes)";
    assert_eq!(from_data_plane.outcome(), Err(want.to_string()));
    assert_eq!(SubmitError::TooLarge(1233).to_string(), want);
    assert_eq!(
        SubmitError::Invalid(TxError::Oversize { len: 1233 }).to_string(),
        want
    );
}

/// Writes ring 0's consumer head word, as a hostile process could.
fn poke_head(seg: &Segment, head: u64) {
    use std::os::unix::fs::FileExt;
    let off = seg.layout().ring(0) + std::mem::offset_of!(swqos_shm::layout::RingControl, head);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    file.write_all_at(&head.to_le_bytes(), off as u64).unwrap();
}

#[test]
fn a_client_recovers_from_a_head_word_someone_else_wrote() {
    let f = fixture("headword", 1);
    let mut client = Client::attach(&f.path).unwrap();
    let mut cons = SubmitConsumer::new(f.seg.clone(), 0).unwrap();
    let mut comp = CompletionProducer::new(&cons);
    let tx = sample_tx();
    for tag in 0..40 {
        client.submit(&tx, 0b1, tag).unwrap();
        assert_eq!(serve(&mut cons, &mut comp), 1);
        while client.poll().is_some() {}
    }
    // The head word goes back to 0 (behind the client's tail by more than a ring) ...
    poke_head(&f.seg, 0);
    // ... at most one submission is lost to the confusion, then the ring works again.
    let mut taken = 0;
    for tag in 100..140 {
        client.submit(&tx, 0b1, tag).expect("never full for good");
        let _ = cons.ready();
        taken += serve(&mut cons, &mut comp);
        while client.poll().is_some() {}
    }
    assert!(taken >= 39, "only {taken} of 40 taken");
    // And ahead of it.
    poke_head(&f.seg, 5000);
    let mut taken = 0;
    for tag in 200..240 {
        client.submit(&tx, 0b1, tag).expect("never full for good");
        let _ = cons.ready();
        taken += serve(&mut cons, &mut comp);
        while client.poll().is_some() {}
    }
    assert!(taken >= 39, "only {taken} of 40 taken");
}
