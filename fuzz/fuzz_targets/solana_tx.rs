//! Solana transaction validation (`swqos_wire::solana::Transaction::parse`, what the data plane
//! and every client run on untrusted bytes): never panics, and an accepted transaction fits the
//! slot and names a signature inside the bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swqos_wire::solana::Transaction;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::parse(data) {
        assert!(data.len() <= swqos_shm::layout::MAX_TX_SIZE);
        let sig = tx.first_signature();
        assert!(data.windows(64).any(|w| w == sig));
    }
});
