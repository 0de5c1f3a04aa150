//! The session-table protocol (`swqos_shm::sessions`) under every interleaving loom can find
//! of the data plane's claim against the control plane's take / arm / close / open:
//!
//! - a record sequence number is never sealed by both processes (AES-GCM nonce reuse), and
//! - a successful claim's snapshot describes one connection (its generation and its addresses
//!   belong together), so a late hand-off names the generation it was made on.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p swqos-shm --test session_model --release`
//! (scripts/test.sh does).
#![cfg(loom)]

use std::net::SocketAddrV4;

use loom::sync::{Arc, Mutex};
use loom::thread;
use swqos_shm::sessions::{state, Session, Take, TlsWriteRef};

const KEY: [u8; 16] = [7; 16];
const IV: [u8; 12] = [9; 12];

fn addr(port: u16) -> (SocketAddrV4, SocketAddrV4) {
    (
        SocketAddrV4::new([10, 0, 0, 1].into(), port),
        SocketAddrV4::new([10, 0, 0, 2].into(), 443),
    )
}

/// Every interleaving with up to three preemptions (loom's recommended bound: bugs need few).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn tls(seq: u64) -> Option<TlsWriteRef<'static>> {
    Some(TlsWriteRef {
        suite: 0x1301,
        key: &KEY,
        iv: &IV,
        seq,
    })
}

/// The control plane writes requests of its own (taking the connection back, sealing one
/// record, re-arming at the next sequence number) while the data plane tries a delegated send:
/// no sequence number is used twice.
#[test]
fn no_record_sequence_number_is_sealed_twice() {
    model(|| {
        let e = Arc::new(Session::default());
        let (l, r) = addr(1);
        e.open(0, l, r);
        assert!(e.arm(tls(0)));
        let used = Arc::new(Mutex::new(Vec::new()));

        let dp = {
            let (e, used) = (e.clone(), used.clone());
            thread::spawn(move || {
                if let Some(a) = e.armed() {
                    if e.claim(&a) {
                        used.lock().unwrap().push(a.tls.as_ref().unwrap().seq);
                    }
                }
            })
        };
        // The control plane: two writes of its own, or the completion of the data plane's.
        let mut next = 0u64;
        for _ in 0..2 {
            match e.take() {
                Take::Taken => {
                    used.lock().unwrap().push(next);
                    next += 1;
                    assert!(e.arm(tls(next)));
                }
                Take::Claimed => {
                    // The hand-off says one record was sealed at `next`.
                    dp_done(&e);
                    next += 1;
                    assert!(e.arm(tls(next)));
                }
                Take::NotArmed => unreachable!("only this thread leaves ARMED but for claims"),
            }
        }
        dp.join().unwrap();
        let mut used = used.lock().unwrap().clone();
        let n = used.len();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), n, "a sequence number was sealed twice");
    });
}

/// Waits for the claim to be the control plane's to finish (in the real system: the hand-off
/// record), then finishes it.
fn dp_done(e: &Session) {
    assert_eq!(e.state(), state::CLAIMED);
    assert!(e.finish_claim());
}

/// The control plane replaces the connection (close, open with a new generation and port,
/// arm) while the data plane reads and claims: a claim that succeeds saw one connection whole,
/// and a claim of the old one is told apart by its generation.
#[test]
fn a_claim_sees_one_connection_and_names_its_generation() {
    model(|| {
        let e = Arc::new(Session::default());
        let (l1, r) = addr(1);
        let g1 = e.open(0, l1, r);
        assert!(e.arm(None));

        let dp = {
            let e = e.clone();
            thread::spawn(move || {
                let a = e.armed()?;
                e.claim(&a).then_some((a.generation, a.flow.1))
            })
        };
        e.close();
        let (l2, _) = addr(2);
        let g2 = e.open(0, l2, r);
        assert!(e.arm(None));
        assert_ne!(g1, g2);

        if let Some((generation, port)) = dp.join().unwrap() {
            let expected_port = if generation == g1 { 1 } else { 2 };
            assert_eq!(port, expected_port, "the snapshot mixed two connections");
            if generation == g1 {
                // Claimed before the close: the control plane answers it as stale (its
                // generation is not the entry's), and the new connection stays armed.
                assert_ne!(e.generation(), generation);
                assert_eq!(e.state(), state::ARMED);
            } else {
                assert_eq!(e.state(), state::CLAIMED);
            }
        }
    });
}
