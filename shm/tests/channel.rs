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
