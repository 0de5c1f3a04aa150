//! The DPDK poll-mode data plane.
//!
//! [`runtime::run`] is the process from start to exit. Each submit/TX lcore runs
//! [`tx::TxWorker::poll`] in a loop: it pops submissions from the shared-memory rings, writes one
//! Ethernet/IPv4/UDP frame per lane straight into an mbuf and bursts them. RX lcores run
//! [`rx::RxWorker::poll`]; [`idle`] is what either does with polls that find no work (busy or
//! adaptive polling). [`quic`] holds the QUIC lanes' connections, on the lcore that bridges
//! their port. Everything slow lives elsewhere (the `swqos` control plane and CLI).

pub mod budget;
pub mod fast;
pub mod hugepages;
pub mod idle;
pub mod lanes;
pub mod quic;
pub mod report;
pub mod runtime;
pub mod rx;
pub mod tally;
pub mod tx;
